#include "coordinator/request_validation.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace hipserve::coordinator {

namespace {

absl::Status Invalid(const std::string& msg) { return absl::InvalidArgumentError(msg); }

}  // namespace

void SetHipLimitsFromJson(const std::string& hip_config_json, RequestLimits* limits) {
  const nlohmann::json j = nlohmann::json::parse(hip_config_json, nullptr,
                                                 /*allow_exceptions=*/false);
  if (!j.is_object()) return;
  auto it = j.find("mask_refresh_interval");
  if (it != j.end() && it->is_array()) {
    std::vector<int> v;
    for (const nlohmann::json& e : *it) {
      if (!e.is_number_integer()) return;
      v.push_back(e.get<int>());
    }
    limits->hip_mask_refresh_interval = std::move(v);
  }
  it = j.find("k");
  if (it != j.end() && it->is_number_integer()) limits->hip_k = it->get<int>();
  // chunk_sizes gives the block size and the stage count; stage_keep the last stage's input.
  std::vector<int> chunks = {256, 32, 8}, keep = {32768, 8192};
  for (auto [key, dst] : {std::pair<const char*, std::vector<int>*>{"chunk_sizes", &chunks},
                          std::pair<const char*, std::vector<int>*>{"stage_keep", &keep}}) {
    it = j.find(key);
    if (it == j.end() || !it->is_array()) continue;
    std::vector<int> v;
    for (const nlohmann::json& e : *it) {
      if (!e.is_number_integer()) return;
      v.push_back(e.get<int>());
    }
    *dst = std::move(v);
  }
  if (chunks.empty()) return;
  limits->hip_block_size = chunks.back();
  limits->hip_last_stage_keep = chunks.size() > 1 && !keep.empty() ? keep.back() : 0;
}

int MaxRequestHipK(const RequestLimits& l) {
  if (l.hip_last_stage_keep > 0) return l.hip_last_stage_keep;
  const int block = std::max(l.hip_block_size, 1);
  return std::max(block, l.max_context / block * block);
}

absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& req,
                                                  const Tokenizer& tok) {
  switch (req.input_case()) {
    case v1::GenerateRequest::kText:
      if (req.text().empty()) return Invalid("input.text is empty");
      return tok.Encode(req.text(), /*add_special=*/true, /*parse_special=*/false);
    case v1::GenerateRequest::kTokenIds: {
      if (req.token_ids().ids_size() == 0) return Invalid("input.token_ids is empty");
      std::vector<int32_t> ids(req.token_ids().ids().begin(), req.token_ids().ids().end());
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= tok.vocab_size()) {
          return Invalid(absl::StrCat("input.token_ids[", i, "] = ", ids[i],
                                      " is outside the vocabulary [0, ", tok.vocab_size(), ")"));
        }
      }
      return ids;
    }
    case v1::GenerateRequest::kChat: {
      if (req.chat().messages_size() == 0) return Invalid("input.chat.messages is empty");
      std::vector<ChatMessageIn> msgs;
      for (int i = 0; i < req.chat().messages_size(); ++i) {
        const v1::ChatMessage& m = req.chat().messages(i);
        if (m.role() != "system" && m.role() != "user" && m.role() != "assistant") {
          return Invalid(absl::StrCat("input.chat.messages[", i, "].role '", m.role(),
                                      "' must be system, user or assistant"));
        }
        msgs.push_back(ChatMessageIn{m.role(), m.content()});
      }
      std::string text = ApplyChatTemplate(DetectChatTemplate(tok.spec()), msgs,
                                           /*add_generation_prompt=*/true);
      return tok.Encode(text, /*add_special=*/true, /*parse_special=*/true);
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return Invalid("input is required: set text, token_ids or chat");
  }
  return Invalid("input is required: set text, token_ids or chat");
}

absl::StatusOr<SequenceRequest> ToSequenceRequest(const v1::GenerateRequest& req,
                                                  const Tokenizer& tok,
                                                  const RequestLimits& limits) {
  SequenceRequest out;
  const v1::SamplingParams& sp = req.sampling();
  if (sp.has_max_tokens()) {
    if (sp.max_tokens() <= 0) {
      return Invalid(absl::StrCat("sampling.max_tokens must be > 0, got ", sp.max_tokens()));
    }
    if (sp.max_tokens() > limits.max_tokens_limit) {
      return Invalid(absl::StrCat("sampling.max_tokens ", sp.max_tokens(),
                                  " exceeds this server's limit ", limits.max_tokens_limit));
    }
    out.max_tokens = sp.max_tokens();
  } else {
    out.max_tokens = limits.default_max_tokens;
  }
  const float temperature = sp.has_temperature() ? sp.temperature() : 1.0f;
  if (!std::isfinite(temperature) || temperature < 0.f || temperature > 100.f) {
    return Invalid(absl::StrCat("sampling.temperature must be in [0, 100], got ", temperature));
  }
  const float top_p = sp.has_top_p() ? sp.top_p() : 1.0f;
  if (!std::isfinite(top_p) || top_p <= 0.f || top_p > 1.f) {
    return Invalid(absl::StrCat("sampling.top_p must be in (0, 1], got ", top_p));
  }
  const int top_k = sp.has_top_k() ? sp.top_k() : 0;
  if (top_k < 0) return Invalid(absl::StrCat("sampling.top_k must be >= 0, got ", top_k));
  if (sp.stop_size() > limits.max_stop_strings) {
    return Invalid(absl::StrCat("sampling.stop has ", sp.stop_size(), " strings; at most ",
                                limits.max_stop_strings, " allowed"));
  }
  for (int i = 0; i < sp.stop_size(); ++i) {
    if (sp.stop(i).empty()) return Invalid(absl::StrCat("sampling.stop[", i, "] is empty"));
    out.stop.push_back(sp.stop(i));
  }
  for (int i = 0; i < sp.stop_token_ids_size(); ++i) {
    const int32_t id = sp.stop_token_ids(i);
    if (id < 0 || id >= tok.vocab_size()) {
      return Invalid(absl::StrCat("sampling.stop_token_ids[", i, "] = ", id,
                                  " is outside the vocabulary [0, ", tok.vocab_size(), ")"));
    }
    out.stop_token_ids.push_back(id);
  }
  out.ignore_eos = sp.ignore_eos();
  out.sampling.temperature = temperature;
  out.sampling.top_p = top_p;
  out.sampling.top_k = top_k;
  if (sp.has_seed()) {
    out.sampling.seed = sp.seed();
  } else {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    out.sampling.seed = rng();
  }

  // Per-request HiP overrides. One server runs one attention mode; the decode refresh
  // intervals and k apply per sequence (they travel with its step work to every rank).
  const v1::HipOverrides& hip = req.hip();
  if (hip.attention() != v1::ATTENTION_MODE_UNSPECIFIED) {
    const std::string wanted = hip.attention() == v1::ATTENTION_MODE_HIP ? "hip" : "dense";
    if (wanted != limits.attention) {
      return Invalid(absl::StrCat("hip.attention = ", wanted, ", but this server runs '",
                                  limits.attention,
                                  "' attention and cannot switch per request yet (start it "
                                  "with --attention=",
                                  wanted, ")"));
    }
  }
  out.applied_hip.attention = limits.attention;
  if (limits.attention == "hip") {
    out.applied_hip.mask_refresh_interval = limits.hip_mask_refresh_interval;
    out.applied_hip.k = limits.hip_k;
  }
  if (hip.mask_refresh_interval_size() != 0) {
    const int stages = static_cast<int>(limits.hip_mask_refresh_interval.size());
    if (limits.attention != "hip") {
      return Invalid(
          absl::StrCat("hip.mask_refresh_interval applies to HiP attention, but this "
                       "server runs '",
                       limits.attention, "' attention (start it with --attention=hip)"));
    }
    if (hip.mask_refresh_interval_size() != stages) {
      return Invalid(absl::StrCat("hip.mask_refresh_interval needs exactly ", stages,
                                  " values (one per pruning stage of the server's HiP config), "
                                  "got ",
                                  hip.mask_refresh_interval_size()));
    }
    for (int i = 0; i < stages; ++i) {
      const int v = hip.mask_refresh_interval(i);
      if (v <= 0) {
        return Invalid(
            absl::StrCat("hip.mask_refresh_interval values must be > 0, got [", i, "] = ", v));
      }
    }
    out.hip_mask_refresh_interval.assign(hip.mask_refresh_interval().begin(),
                                         hip.mask_refresh_interval().end());
    out.applied_hip.mask_refresh_interval = out.hip_mask_refresh_interval;
    out.applied_hip.overridden = true;
  }
  if (hip.has_k()) {
    if (limits.attention != "hip") {
      return Invalid(absl::StrCat("hip.k applies to HiP attention, but this server runs '",
                                  limits.attention, "' attention (start it with --attention=hip)"));
    }
    const int block = limits.hip_block_size;
    if (hip.k() <= 0 || hip.k() % block != 0) {
      return Invalid(absl::StrCat("hip.k must be a positive multiple of ", block,
                                  " (the HiP block size: the last of the server's chunk_sizes), "
                                  "got ",
                                  hip.k()));
    }
    const int max_k = MaxRequestHipK(limits);
    if (hip.k() > max_k) {
      return Invalid(
          absl::StrCat("hip.k = ", hip.k(), " exceeds this server's limit ", max_k,
                       limits.hip_last_stage_keep > 0
                           ? " (the keep of the stage before the last, stage_keep in --hip_config)"
                           : " (the maximum context)"));
    }
    // k replaces the server's k for the layers without a layer override (as "k" in
    // --hip_config would).
    out.hip_k = hip.k();
    out.applied_hip.k = hip.k();
    out.applied_hip.overridden = true;
  }

  ASSIGN_OR_RETURN(out.prompt, PromptTokens(req, tok));
  if (out.prompt.empty()) return Invalid("input encodes to zero tokens");
  const int n = static_cast<int>(out.prompt.size());
  if (n > limits.max_prompt_tokens) {
    return Invalid(absl::StrCat("prompt has ", n, " tokens; this server accepts at most ",
                                limits.max_prompt_tokens));
  }
  if (limits.max_context > 0 && n >= limits.max_context) {
    return Invalid(absl::StrCat("prompt has ", n, " tokens; the model's maximum context is ",
                                limits.max_context, " (prompt + at least 1 generated token)"));
  }
  if (limits.max_context > 0) {
    out.max_tokens = std::min(out.max_tokens, limits.max_context - n);
  }
  out.request_id = req.request_id();
  out.report_prefill_progress = req.report_prefill_progress();
  return out;
}

}  // namespace hipserve::coordinator
