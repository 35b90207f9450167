#include "worker/loader/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/loader/gguf.h"
#include "worker/loader/json_util.h"

namespace hipserve::worker::loader {

namespace {
// double -> float without undefined behaviour: out-of-range values become +-inf (rejected by
// ValidateConfig), NaN stays NaN.
float ToFloat(double d) {
  if (std::isnan(d)) return std::numeric_limits<float>::quiet_NaN();
  if (d > std::numeric_limits<float>::max()) return std::numeric_limits<float>::infinity();
  if (d < -std::numeric_limits<float>::max()) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}
}  // namespace

const char* RopeScalingName(RopeScalingType t) {
  switch (t) {
    case RopeScalingType::kNone:
      return "none";
    case RopeScalingType::kLlama3:
      return "llama3";
  }
  return "unknown";
}

absl::Status ValidateConfig(const ModelConfig& c) {
  auto bad = [&](const std::string& msg) {
    return absl::InvalidArgumentError(absl::StrCat("model config (", c.arch, "): ", msg));
  };
  auto in_range = [](int64_t v, int64_t hi) { return v > 0 && v <= hi; };
  if (c.arch != "llama" && c.arch != "mistral" && c.arch != "qwen2") {
    return absl::UnimplementedError(
        absl::StrCat("unsupported architecture '", c.arch, "'; supported: llama, mistral, qwen2"));
  }
  if (!in_range(c.vocab_size, 1 << 24)) return bad(absl::StrCat("vocab_size ", c.vocab_size));
  if (!in_range(c.hidden_size, 1 << 20)) return bad(absl::StrCat("hidden_size ", c.hidden_size));
  if (!in_range(c.intermediate_size, 1 << 20)) {
    return bad(absl::StrCat("intermediate_size ", c.intermediate_size));
  }
  if (!in_range(c.num_layers, 1024)) return bad(absl::StrCat("num_layers ", c.num_layers));
  if (!in_range(c.num_heads, 1 << 12)) return bad(absl::StrCat("num_heads ", c.num_heads));
  if (!in_range(c.num_kv_heads, 1 << 12) || c.num_heads % c.num_kv_heads != 0) {
    return bad(
        absl::StrCat("num_kv_heads ", c.num_kv_heads, " must divide num_heads ", c.num_heads));
  }
  if (!in_range(c.head_dim, 1 << 12) || c.head_dim % 2 != 0) {
    return bad(absl::StrCat("head_dim ", c.head_dim, " must be even and positive"));
  }
  if (c.num_heads * c.head_dim > (1 << 20)) {
    return bad(absl::StrCat("num_heads * head_dim = ", c.num_heads * c.head_dim, " too large"));
  }
  if (!(c.rms_eps > 0 && c.rms_eps < 1)) return bad(absl::StrCat("rms_eps ", c.rms_eps));
  if (!(c.rope_theta > 0 && std::isfinite(c.rope_theta))) {
    return bad(absl::StrCat("rope_theta ", c.rope_theta));
  }
  if (c.max_position <= 0) return bad(absl::StrCat("max_position ", c.max_position));
  if (c.rope_scaling.type == RopeScalingType::kLlama3) {
    const RopeScaling& r = c.rope_scaling;
    if (!(r.factor >= 1) || !(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) ||
        r.original_max_position <= 0) {
      return bad(absl::StrCat("llama3 rope_scaling factor ", r.factor, " low_freq_factor ",
                              r.low_freq_factor, " high_freq_factor ", r.high_freq_factor,
                              " original_max_position ", r.original_max_position,
                              ": need factor >= 1, 0 < low < high, original > 0"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& g) {
  ModelConfig c;
  ASSIGN_OR_RETURN(std::string arch, g.GetString("general.architecture"));
  if (arch != "llama" && arch != "qwen2") {
    return absl::UnimplementedError(absl::StrCat("GGUF '", g.path(), "': architecture '", arch,
                                                 "' is not supported (llama, qwen2)"));
  }
  c.arch = arch;
  if (g.Find("general.name") != nullptr) {
    ASSIGN_OR_RETURN(c.name, g.GetString("general.name"));
  }
  const std::string p = arch + ".";
  ASSIGN_OR_RETURN(uint64_t hidden, g.GetUint(p + "embedding_length"));
  ASSIGN_OR_RETURN(uint64_t layers, g.GetUint(p + "block_count"));
  ASSIGN_OR_RETURN(uint64_t ffn, g.GetUint(p + "feed_forward_length"));
  ASSIGN_OR_RETURN(uint64_t heads, g.GetUint(p + "attention.head_count"));
  uint64_t kv_heads = heads;
  if (g.Find(p + "attention.head_count_kv") != nullptr) {
    ASSIGN_OR_RETURN(kv_heads, g.GetUint(p + "attention.head_count_kv"));
  }
  ASSIGN_OR_RETURN(double eps, g.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  double theta = 10000.0;
  if (g.Find(p + "rope.freq_base") != nullptr) {
    ASSIGN_OR_RETURN(theta, g.GetFloat(p + "rope.freq_base"));
  }
  uint64_t ctx = 2048;
  if (g.Find(p + "context_length") != nullptr) {
    ASSIGN_OR_RETURN(ctx, g.GetUint(p + "context_length"));
  }
  // Clamp before narrowing so absurd values fail validation instead of wrapping.
  auto clamp = [](uint64_t v) { return static_cast<int64_t>(std::min<uint64_t>(v, 1ull << 40)); };
  c.hidden_size = clamp(hidden);
  c.num_layers = clamp(layers);
  c.intermediate_size = clamp(ffn);
  c.num_heads = clamp(heads);
  c.num_kv_heads = clamp(kv_heads);
  c.rms_eps = ToFloat(eps);
  c.rope_theta = ToFloat(theta);
  c.max_position = clamp(ctx);
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  if (g.Find(p + "attention.key_length") != nullptr) {
    ASSIGN_OR_RETURN(uint64_t kl, g.GetUint(p + "attention.key_length"));
    c.head_dim = clamp(kl);
  }
  if (g.Find(p + "rope.dimension_count") != nullptr) {
    ASSIGN_OR_RETURN(uint64_t rd, g.GetUint(p + "rope.dimension_count"));
    if (clamp(rd) != c.head_dim) {
      return absl::UnimplementedError(
          absl::StrCat("GGUF '", g.path(), "': partial rotary embedding (rope.dimension_count ", rd,
                       " != head_dim ", c.head_dim, ") is not supported"));
    }
  }
  if (g.Find(p + "rope.scaling.type") != nullptr) {
    ASSIGN_OR_RETURN(std::string st, g.GetString(p + "rope.scaling.type"));
    if (st != "none") {
      return absl::UnimplementedError(
          absl::StrCat("GGUF '", g.path(), "': rope scaling '", st, "' is not supported"));
    }
  }
  if (g.Find(p + "vocab_size") != nullptr) {
    ASSIGN_OR_RETURN(uint64_t v, g.GetUint(p + "vocab_size"));
    c.vocab_size = clamp(v);
  } else if (const GgufValue* toks = g.Find("tokenizer.ggml.tokens")) {
    c.vocab_size = clamp(toks->array_size);
  } else {
    return absl::NotFoundError(absl::StrCat("GGUF '", g.path(), "': neither ", p,
                                            "vocab_size nor tokenizer.ggml.tokens present"));
  }
  c.tie_word_embeddings = g.FindTensor("output.weight") == nullptr;
  c.qkv_bias = g.FindTensor("blk.0.attn_q.bias") != nullptr;
  auto st = ValidateConfig(c);
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("GGUF '", g.path(), "': ", st.message()));
  }
  return c;
}

absl::StatusOr<ModelConfig> ConfigFromHfJson(const std::string& json_text,
                                             const std::string& what) {
  using internal::OptBool;
  using internal::OptInt;
  using internal::OptNumber;
  using internal::OptString;
  ASSIGN_OR_RETURN(nlohmann::json j, internal::ParseJsonObject(json_text, what));
  ModelConfig c;
  ASSIGN_OR_RETURN(auto model_type, OptString(j, "model_type", what));
  if (!model_type) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no 'model_type'"));
  }
  c.arch = *model_type;
  if (c.arch != "llama" && c.arch != "mistral" && c.arch != "qwen2") {
    return absl::UnimplementedError(
        absl::StrCat(what, ": model_type '", c.arch, "' is not supported (llama, mistral, qwen2)"));
  }
  ASSIGN_OR_RETURN(auto name, OptString(j, "_name_or_path", what));
  c.name = name.value_or("");
  auto require = [&](const std::string& key) -> absl::StatusOr<int64_t> {
    ASSIGN_OR_RETURN(auto v, OptInt(j, key, what));
    if (!v) return absl::InvalidArgumentError(absl::StrCat(what, ": missing '", key, "'"));
    return *v;
  };
  ASSIGN_OR_RETURN(c.vocab_size, require("vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, require("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, require("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_layers, require("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_heads, require("num_attention_heads"));
  ASSIGN_OR_RETURN(auto kv, OptInt(j, "num_key_value_heads", what));
  c.num_kv_heads = kv.value_or(c.num_heads);
  ASSIGN_OR_RETURN(auto hd, OptInt(j, "head_dim", what));
  c.head_dim = hd ? *hd : (c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  ASSIGN_OR_RETURN(auto eps, OptNumber(j, "rms_norm_eps", what));
  c.rms_eps = ToFloat(eps.value_or(1e-6));
  ASSIGN_OR_RETURN(auto theta, OptNumber(j, "rope_theta", what));
  c.rope_theta = ToFloat(theta.value_or(10000.0));
  ASSIGN_OR_RETURN(auto maxpos, OptInt(j, "max_position_embeddings", what));
  c.max_position = maxpos.value_or(2048);
  ASSIGN_OR_RETURN(auto tie, OptBool(j, "tie_word_embeddings", what));
  c.tie_word_embeddings = tie.value_or(false);
  ASSIGN_OR_RETURN(auto attn_bias, OptBool(j, "attention_bias", what));
  c.qkv_bias = c.arch == "qwen2" || attn_bias.value_or(false);
  ASSIGN_OR_RETURN(auto partial, OptNumber(j, "partial_rotary_factor", what));
  if (partial && *partial != 1.0) {
    return absl::UnimplementedError(
        absl::StrCat(what, ": partial_rotary_factor ", *partial, " is not supported"));
  }

  ASSIGN_OR_RETURN(auto window, OptInt(j, "sliding_window", what));
  ASSIGN_OR_RETURN(auto use_window, OptBool(j, "use_sliding_window", what));
  if (window && use_window.value_or(true) && *window < c.max_position) {
    LOG(WARNING) << what << ": sliding_window " << *window << " < max_position " << c.max_position
                 << " is ignored (full attention); outputs beyond " << *window
                 << " tokens of context differ from the reference";
  }

  auto rs = j.find("rope_scaling");
  if (rs != j.end() && !rs->is_null()) {
    if (!rs->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": rope_scaling is not an object"));
    }
    const std::string rwhat = absl::StrCat(what, " rope_scaling");
    ASSIGN_OR_RETURN(auto rope_type, OptString(*rs, "rope_type", rwhat));
    if (!rope_type) {
      ASSIGN_OR_RETURN(rope_type, OptString(*rs, "type", rwhat));
    }
    const std::string type = rope_type.value_or("");
    if (type == "llama3") {
      RopeScaling& r = c.rope_scaling;
      r.type = RopeScalingType::kLlama3;
      ASSIGN_OR_RETURN(auto factor, OptNumber(*rs, "factor", rwhat));
      ASSIGN_OR_RETURN(auto lo, OptNumber(*rs, "low_freq_factor", rwhat));
      ASSIGN_OR_RETURN(auto hi, OptNumber(*rs, "high_freq_factor", rwhat));
      ASSIGN_OR_RETURN(auto orig, OptInt(*rs, "original_max_position_embeddings", rwhat));
      if (!factor || !lo || !hi || !orig) {
        return absl::InvalidArgumentError(
            absl::StrCat(rwhat,
                         ": llama3 needs factor, low_freq_factor, high_freq_factor and "
                         "original_max_position_embeddings"));
      }
      r.factor = ToFloat(*factor);
      r.low_freq_factor = ToFloat(*lo);
      r.high_freq_factor = ToFloat(*hi);
      r.original_max_position = *orig;
    } else if (type != "default" && type != "none") {
      return absl::UnimplementedError(
          absl::StrCat(rwhat, ": type '", type, "' is not supported (llama3 only)"));
    }
  }
  auto st = ValidateConfig(c);
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat(what, ": ", st.message()));
  return c;
}

}  // namespace hipserve::worker::loader
