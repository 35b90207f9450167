#include "worker/model_source.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/builtin_model.h"
#include "worker/loader/load.h"
#include "worker/random_model.h"

namespace hipserve::worker {

namespace {

// Converts the loader's canonical tensors (HF layout, fp32) into the forward pass's weights.
absl::StatusOr<LoadedSource> FromLoaded(loader::LoadedModel m) {
  const loader::ModelConfig& c = m.config;
  if (!m.rope_freqs.empty()) {
    return absl::UnimplementedError(
        "this model carries rope_freqs (llama.cpp's baked Llama 3.1 scaling); load the Hugging "
        "Face directory instead, whose config.json has rope_scaling");
  }
  LoadedSource src;
  ModelWeights& w = src.weights;
  ModelDims& d = w.dims;
  d.name = c.name.empty() ? std::filesystem::path(m.source).filename().string() : c.name;
  d.arch = c.arch;
  d.vocab_size = static_cast<int>(c.vocab_size);
  d.hidden = static_cast<int>(c.hidden_size);
  d.intermediate = static_cast<int>(c.intermediate_size);
  d.num_layers = static_cast<int>(c.num_layers);
  d.num_heads = static_cast<int>(c.num_heads);
  d.num_kv_heads = static_cast<int>(c.num_kv_heads);
  d.head_dim = static_cast<int>(c.head_dim);
  d.rms_eps = c.rms_eps;
  d.rope.theta = c.rope_theta;
  switch (c.rope_scaling.type) {
    case loader::RopeScalingType::kNone:
      d.rope.scaling = kernels::RopeScaling::kNone;
      break;
    case loader::RopeScalingType::kLlama3:
      d.rope.scaling = kernels::RopeScaling::kLlama3;
      break;
  }
  d.rope.factor = c.rope_scaling.factor;
  d.rope.low_freq_factor = c.rope_scaling.low_freq_factor;
  d.rope.high_freq_factor = c.rope_scaling.high_freq_factor;
  d.rope.original_max_position = static_cast<int>(c.rope_scaling.original_max_position);
  d.max_context = static_cast<int>(c.max_position > 0 ? c.max_position : 2048);
  d.qkv_bias = c.qkv_bias;
  d.tie_word_embeddings = c.tie_word_embeddings;
  w.vocab_begin = 0;
  w.vocab_end = d.vocab_size;
  w.token_embd = std::move(m.token_embd.data);
  w.output_norm = std::move(m.output_norm.data);
  w.lm_head = std::move(m.lm_head.data);
  w.layers.resize(m.layers.size());
  for (size_t i = 0; i < m.layers.size(); ++i) {
    loader::LayerTensors& s = m.layers[i];
    LayerWeights& l = w.layers[i];
    l.attn_norm = std::move(s.attn_norm.data);
    l.wq = std::move(s.wq.data);
    l.wk = std::move(s.wk.data);
    l.wv = std::move(s.wv.data);
    l.bq = std::move(s.bq.data);
    l.bk = std::move(s.bk.data);
    l.bv = std::move(s.bv.data);
    l.wo = std::move(s.wo.data);
    l.ffn_norm = std::move(s.ffn_norm.data);
    l.w_gate = std::move(s.w_gate.data);
    l.w_up = std::move(s.w_up.data);
    l.w_down = std::move(s.w_down.data);
  }
  v1::control::TokenizerSpec& t = src.tokenizer;
  t.set_model(m.tok.model);
  for (auto& s : m.tok.tokens) t.add_tokens(std::move(s));
  for (auto& s : m.tok.merges) t.add_merges(std::move(s));
  t.mutable_token_types()->Add(m.tok.token_types.begin(), m.tok.token_types.end());
  t.set_bos_token_id(m.tok.bos);
  t.mutable_eos_token_ids()->Add(m.tok.eos.begin(), m.tok.eos.end());
  t.set_chat_template(m.tok.chat_template);
  t.set_add_bos(m.tok.add_bos);
  t.set_pre(m.tok.pre);
  return src;
}

// Byte tokenizer: ids 0..255 are bytes, then <|endoftext|>, <|im_start|>, <|im_end|>.
// The coordinator rebuilds the table itself (raw bytes are not valid proto strings).
v1::control::TokenizerSpec ByteTokenizer() {
  v1::control::TokenizerSpec t;
  t.set_model("byte");
  t.set_bos_token_id(-1);
  t.add_eos_token_ids(256);
  t.add_eos_token_ids(258);
  return t;
}

// The character of byte b in GPT-2's byte-level alphabet (printable Latin-1 bytes are
// themselves, the others U+0100.. in byte order), UTF-8 encoded.
std::string ByteLevelChar(int b) {
  int cp = b;
  const auto printable = [](int i) {
    return (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE;
  };
  if (!printable(b)) {
    cp = 256;
    for (int i = 0; i < b; ++i) cp += printable(i) ? 0 : 1;
  }
  if (cp < 0x80) return std::string(1, static_cast<char>(cp));
  return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

}  // namespace

absl::StatusOr<v1::control::TokenizerSpec> ByteLevelTokenizerSpec(int vocab_size) {
  if (vocab_size < 259) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte-level tokenizer needs a vocabulary of >= 259, not ", vocab_size));
  }
  v1::control::TokenizerSpec t;
  t.set_model("gpt2");
  t.set_pre("gpt2");
  constexpr int kNormal = 1, kControl = 3;
  for (int b = 0; b < 256; ++b) {
    t.add_tokens(ByteLevelChar(b));
    t.add_token_types(kNormal);
  }
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    t.add_tokens(special);
    t.add_token_types(kControl);
  }
  const std::string space = ByteLevelChar(' ');
  for (int id = 259; id < vocab_size; ++id) {
    std::string word;
    for (int64_t n = id - 259 + 1; n > 0; n = (n - 1) / 26) {
      word.insert(word.begin(), static_cast<char>('a' + (n - 1) % 26));
    }
    t.add_tokens(space + word);
    t.add_token_types(kNormal);
  }
  t.set_bos_token_id(-1);
  t.add_eos_token_ids(256);
  t.add_eos_token_ids(258);
  t.set_add_bos(false);
  t.set_chat_template(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|im_start|>assistant\\n' }}{% endif %}");
  return t;
}

std::string DefaultModelPath() {
  const char* cache = std::getenv("HIPSERVE_MODEL_CACHE");
  const char* home = std::getenv("HOME");
  std::string dir = cache ? cache : absl::StrCat(home ? home : "", "/.cache/hipserve/models");
  return absl::StrCat(dir, "/", kDefaultModelFile);
}

absl::StatusOr<LoadedSource> LoadModelSource(const std::string& model, uint64_t seed) {
  LoadedSource src;
  if (model == kBuiltinTiny || model == "builtin:tiny6") {
    BuiltinModelOptions o;
    if (model != kBuiltinTiny) {  // 6 KV heads: tensor-parallel tests at TP = 1, 2, 3
      o.hidden = 96;
      o.intermediate = 192;
      o.num_heads = 12;
      o.num_kv_heads = 6;
    }
    if (seed != 0) o.seed = seed;
    ASSIGN_OR_RETURN(src.weights, MakeBuiltinModel(o));
    src.tokenizer = ByteTokenizer();
    return src;
  }
  if (absl::StartsWith(model, kRandomModelPrefix)) {
    RandomWeightsOptions o;
    if (seed != 0) o.seed = seed;
    ASSIGN_OR_RETURN(src.weights, MakeRandomModel(model.substr(sizeof(kRandomModelPrefix) - 1), o));
    ASSIGN_OR_RETURN(src.tokenizer, ByteLevelTokenizerSpec(src.weights.dims.vocab_size));
    return src;
  }
  if (model.empty()) return absl::InvalidArgumentError("--model is empty");
  std::string path = model;
  if (model == kDefaultModel) {
    path = DefaultModelPath();
    if (!std::filesystem::exists(path)) {
      return absl::NotFoundError(
          absl::StrCat("default model not found at ", path, "; run scripts/fetch-model.sh"));
    }
  }
  LOG(INFO) << "loading " << path;
  ASSIGN_OR_RETURN(loader::LoadedModel loaded, loader::LoadModel(path));
  return FromLoaded(std::move(loaded));
}

}  // namespace hipserve::worker
