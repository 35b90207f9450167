#include "worker/loader/tokenizer_data.h"

#include <algorithm>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/loader/gguf.h"
#include "worker/loader/json_util.h"

namespace hipserve::worker::loader {
namespace {

constexpr int64_t kMaxVocab = 1 << 24;

void AddEos(TokenizerData& t, int32_t id) {
  if (std::find(t.eos.begin(), t.eos.end(), id) == t.eos.end()) t.eos.push_back(id);
}

// Strict UTF-8 (no overlongs, surrogates or code points over U+10FFFF): token text travels
// in protobuf `string` fields, which must be valid UTF-8.
bool ValidUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    int len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

absl::Status CheckUtf8(const std::vector<std::string>& v, const std::string& path,
                       const char* key) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!ValidUtf8(v[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("GGUF '", path, "': ", key, " entry ", i, " is not valid UTF-8"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> GgufTokenId(const GgufFile& g, const std::string& key, size_t vocab) {
  ASSIGN_OR_RETURN(uint64_t id, g.GetUint(key));
  if (id >= vocab) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF '", g.path(), "': ", key, " = ", id,
                                                   " is outside the vocabulary of ", vocab));
  }
  return static_cast<int32_t>(id);
}

}  // namespace

absl::StatusOr<TokenizerData> TokenizerFromGguf(const GgufFile& g) {
  TokenizerData t;
  ASSIGN_OR_RETURN(t.model, g.GetString("tokenizer.ggml.model"));
  if (t.model != "gpt2" && t.model != "llama") {
    return absl::UnimplementedError(absl::StrCat("GGUF '", g.path(), "': tokenizer model '",
                                                 t.model, "' is not supported (gpt2, llama)"));
  }
  ASSIGN_OR_RETURN(t.tokens, g.GetStringArray("tokenizer.ggml.tokens"));
  const size_t n = t.tokens.size();
  if (n == 0 || n > static_cast<size_t>(kMaxVocab)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF '", g.path(), "': tokenizer.ggml.tokens has ", n, " entries"));
  }
  RETURN_IF_ERROR(CheckUtf8(t.tokens, g.path(), "tokenizer.ggml.tokens"));
  if (g.Find("tokenizer.ggml.merges") != nullptr) {
    ASSIGN_OR_RETURN(t.merges, g.GetStringArray("tokenizer.ggml.merges"));
    RETURN_IF_ERROR(CheckUtf8(t.merges, g.path(), "tokenizer.ggml.merges"));
  }
  if (g.Find("tokenizer.ggml.token_type") != nullptr) {
    ASSIGN_OR_RETURN(std::vector<int64_t> types, g.GetIntArray("tokenizer.ggml.token_type"));
    if (types.size() != n) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF '", g.path(),
                                                     "': tokenizer.ggml.token_type has ",
                                                     types.size(), " entries for ", n, " tokens"));
    }
    t.token_types.reserve(n);
    for (int64_t v : types) t.token_types.push_back(static_cast<int32_t>(v));
  } else {
    t.token_types.assign(n, kTokenNormal);
  }
  if (g.Find("tokenizer.ggml.bos_token_id") != nullptr) {
    ASSIGN_OR_RETURN(t.bos, GgufTokenId(g, "tokenizer.ggml.bos_token_id", n));
  }
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    if (g.Find(key) == nullptr) continue;
    ASSIGN_OR_RETURN(int32_t id, GgufTokenId(g, key, n));
    AddEos(t, id);
  }
  if (g.Find("tokenizer.chat_template") != nullptr) {
    ASSIGN_OR_RETURN(t.chat_template, g.GetString("tokenizer.chat_template"));
  }
  t.add_bos = t.model == "llama";
  if (g.Find("tokenizer.ggml.add_bos_token") != nullptr) {
    ASSIGN_OR_RETURN(t.add_bos, g.GetBool("tokenizer.ggml.add_bos_token"));
  }
  t.pre = "default";
  if (g.Find("tokenizer.ggml.pre") != nullptr) {
    ASSIGN_OR_RETURN(t.pre, g.GetString("tokenizer.ggml.pre"));
  }
  return t;
}

namespace {

// Name of a token given as "text" or {"content": "text"} in tokenizer_config.json.
std::string TokenContent(const nlohmann::json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  return "";
}

// Walks a pre_tokenizer (possibly a Sequence) and names it as llama.cpp would.
std::string PreName(const nlohmann::json& pre) {
  std::vector<const nlohmann::json*> parts;
  if (pre.is_object()) {
    auto seq = pre.find("pretokenizers");
    if (seq != pre.end() && seq->is_array()) {
      for (const auto& p : *seq) parts.push_back(&p);
    } else {
      parts.push_back(&pre);
    }
  }
  bool byte_level = false, digits = false;
  std::string regex;
  for (const nlohmann::json* p : parts) {
    if (!p->is_object()) continue;
    auto type = p->find("type");
    if (type == p->end() || !type->is_string()) continue;
    const std::string t = type->get<std::string>();
    if (t == "ByteLevel") byte_level = true;
    if (t == "Digits") digits = true;
    if (t == "Split") {
      auto pat = p->find("pattern");
      if (pat != p->end() && pat->is_object()) {
        auto r = pat->find("Regex");
        if (r != pat->end() && r->is_string()) regex = r->get<std::string>();
      }
    }
  }
  if (!regex.empty()) {
    if (absl::StrContains(regex, "\\p{N}{1,3}")) return "llama3";
    if (absl::StrContains(regex, "\\p{N}")) return "qwen2";
  }
  if (digits && byte_level) return "smollm";
  if (byte_level) return "gpt2";
  return "default";
}

}  // namespace

absl::StatusOr<TokenizerData> TokenizerFromHfJson(const std::string& tokenizer_json,
                                                  const std::string& tokenizer_config_json,
                                                  const std::string& generation_config_json,
                                                  const std::string& config_json) {
  using internal::ParseJsonObject;
  ASSIGN_OR_RETURN(nlohmann::json tj, ParseJsonObject(tokenizer_json, "tokenizer.json"));
  nlohmann::json tc = nlohmann::json::object(), gc = nlohmann::json::object(),
                 cc = nlohmann::json::object();
  if (!tokenizer_config_json.empty()) {
    ASSIGN_OR_RETURN(tc, ParseJsonObject(tokenizer_config_json, "tokenizer_config.json"));
  }
  if (!generation_config_json.empty()) {
    ASSIGN_OR_RETURN(gc, ParseJsonObject(generation_config_json, "generation_config.json"));
  }
  if (!config_json.empty()) {
    ASSIGN_OR_RETURN(cc, ParseJsonObject(config_json, "config.json"));
  }

  auto bad = [](const std::string& msg) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", msg));
  };
  auto model = tj.find("model");
  if (model == tj.end() || !model->is_object()) return bad("no 'model' object");
  auto mtype = model->find("type");
  if (mtype != model->end() && mtype->is_string() && mtype->get<std::string>() != "BPE") {
    return absl::UnimplementedError(absl::StrCat("tokenizer.json: model type '",
                                                 mtype->get<std::string>(),
                                                 "' is not supported (BPE only)"));
  }
  auto vocab = model->find("vocab");
  if (vocab == model->end() || !vocab->is_object()) return bad("model has no 'vocab' object");

  // id -> text, from the vocab and the added tokens.
  std::vector<std::pair<int64_t, std::string>> entries;
  std::unordered_map<int64_t, int32_t> added_type;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= kMaxVocab) {
      return bad(absl::StrCat("vocab entry '", it.key(), "' has an invalid id"));
    }
    entries.emplace_back(it.value().get<int64_t>(), it.key());
  }
  auto added = tj.find("added_tokens");
  if (added != tj.end() && added->is_array()) {
    for (const auto& a : *added) {
      if (!a.is_object()) return bad("added_tokens entry is not an object");
      auto id = a.find("id");
      auto content = a.find("content");
      if (id == a.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
          id->get<int64_t>() >= kMaxVocab || content == a.end() || !content->is_string()) {
        return bad("added_tokens entry needs an id in range and a string content");
      }
      auto special = a.find("special");
      const bool is_special = special != a.end() && special->is_boolean() && special->get<bool>();
      entries.emplace_back(id->get<int64_t>(), content->get<std::string>());
      added_type[id->get<int64_t>()] = is_special ? kTokenControl : kTokenUserDefined;
    }
  }
  if (entries.empty()) return bad("empty vocabulary");
  int64_t max_id = 0;
  for (const auto& e : entries) max_id = std::max(max_id, e.first);
  TokenizerData t;
  t.tokens.assign(max_id + 1, "");
  t.token_types.assign(max_id + 1, kTokenUnused);
  std::vector<bool> seen(max_id + 1, false);
  for (const auto& [id, text] : entries) {
    if (seen[id] && t.tokens[id] != text) {
      return bad(absl::StrCat("id ", id, " is both '", t.tokens[id], "' and '", text, "'"));
    }
    seen[id] = true;
    t.tokens[id] = text;
    t.token_types[id] = kTokenNormal;
  }
  for (int64_t id = 0; id <= max_id; ++id) {
    if (!seen[id]) t.tokens[id] = absl::StrCat("[PAD", id, "]");  // as llama.cpp names holes
  }
  for (const auto& [id, type] : added_type) t.token_types[id] = type;

  bool byte_fallback = false;
  auto bf = model->find("byte_fallback");
  if (bf != model->end() && bf->is_boolean()) byte_fallback = bf->get<bool>();
  std::string pre = "default";
  auto pre_tok = tj.find("pre_tokenizer");
  if (pre_tok != tj.end()) pre = PreName(*pre_tok);
  auto decoder = tj.find("decoder");
  const bool byte_level_decoder = decoder != tj.end() && decoder->is_object() &&
                                  absl::StrContains(decoder->dump(), "\"ByteLevel\"");
  t.model = (pre != "default" || byte_level_decoder || !byte_fallback) ? "gpt2" : "llama";
  t.pre = pre;
  if (t.model == "llama") {
    for (int64_t id = 0; id <= max_id; ++id) {
      const std::string& s = t.tokens[id];
      if (s.size() == 6 && absl::StartsWith(s, "<0x") && s.back() == '>') {
        t.token_types[id] = kTokenByte;
      }
    }
  }
  auto unk = model->find("unk_token");
  std::unordered_map<std::string, int32_t> ids;
  ids.reserve(t.tokens.size());
  for (size_t i = 0; i < t.tokens.size(); ++i) ids.emplace(t.tokens[i], static_cast<int32_t>(i));
  if (unk != model->end() && unk->is_string()) {
    auto it = ids.find(unk->get<std::string>());
    if (it != ids.end()) t.token_types[it->second] = kTokenUnknown;
  }

  auto merges = model->find("merges");
  if (merges != model->end() && merges->is_array()) {
    t.merges.reserve(merges->size());
    for (const auto& m : *merges) {
      if (m.is_string()) {
        t.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        t.merges.push_back(absl::StrCat(m[0].get<std::string>(), " ", m[1].get<std::string>()));
      } else {
        return bad("merges entry is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  }

  // Special tokens: tokenizer_config names them; config / generation_config give ids.
  auto id_of = [&](const std::string& text) -> int32_t {
    auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  };
  auto add_ids = [&](const nlohmann::json& j, const char* key, bool is_eos) {
    auto it = j.find(key);
    if (it == j.end()) return;
    std::vector<nlohmann::json> vals;
    if (it->is_array()) {
      vals.assign(it->begin(), it->end());
    } else {
      vals.push_back(*it);
    }
    for (const auto& v : vals) {
      if (!v.is_number_integer()) continue;
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id > max_id) continue;
      if (is_eos) {
        AddEos(t, static_cast<int32_t>(id));
      } else if (t.bos < 0) {
        t.bos = static_cast<int32_t>(id);
      }
    }
  };
  if (std::string b = TokenContent(tc, "bos_token"); !b.empty()) t.bos = id_of(b);
  if (std::string e = TokenContent(tc, "eos_token"); !e.empty() && id_of(e) >= 0) {
    AddEos(t, id_of(e));
  }
  add_ids(gc, "bos_token_id", false);
  add_ids(gc, "eos_token_id", true);
  add_ids(cc, "bos_token_id", false);
  add_ids(cc, "eos_token_id", true);

  auto ct = tc.find("chat_template");
  if (ct != tc.end()) {
    if (ct->is_string()) {
      t.chat_template = ct->get<std::string>();
    } else if (ct->is_array()) {  // [{"name": "default", "template": "..."}, ...]
      for (const auto& e : *ct) {
        if (!e.is_object()) continue;
        auto name = e.find("name");
        auto tmpl = e.find("template");
        if (name != e.end() && name->is_string() && name->get<std::string>() == "default" &&
            tmpl != e.end() && tmpl->is_string()) {
          t.chat_template = tmpl->get<std::string>();
        }
      }
    }
  }

  auto ab = tc.find("add_bos_token");
  if (ab != tc.end() && ab->is_boolean()) {
    t.add_bos = ab->get<bool>();
  } else if (t.bos >= 0) {
    // A TemplateProcessing post-processor that starts "single" with the bos token adds it.
    auto pp = tj.find("post_processor");
    if (pp != tj.end() && pp->is_object()) {
      const std::string dumped = pp->dump();
      t.add_bos = absl::StrContains(dumped, "TemplateProcessing") &&
                  absl::StrContains(
                      dumped, absl::StrCat("\"id\":", nlohmann::json(t.tokens[t.bos]).dump()));
    } else {
      t.add_bos = t.model == "llama";
    }
  }
  return t;
}

absl::StatusOr<TokenizerData> TokenizerFromHfDir(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string tok,
                   internal::ReadSmallFile(absl::StrCat(dir, "/tokenizer.json"), 256ull << 20));
  auto opt = [&](const char* name) -> absl::StatusOr<std::string> {
    const std::string p = absl::StrCat(dir, "/", name);
    if (!internal::FileExists(p)) return std::string();
    return internal::ReadSmallFile(p);
  };
  ASSIGN_OR_RETURN(std::string tc, opt("tokenizer_config.json"));
  ASSIGN_OR_RETURN(std::string gc, opt("generation_config.json"));
  ASSIGN_OR_RETURN(std::string cc, opt("config.json"));
  return TokenizerFromHfJson(tok, tc, gc, cc);
}

}  // namespace hipserve::worker::loader
