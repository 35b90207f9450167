#include "worker/loader/testing/writers.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "nlohmann/json.hpp"

namespace hipserve::worker::loader::testing {

void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
void PutStr(std::string& out, const std::string& s) {
  PutU64(out, s.size());
  out += s;
}

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xFF);
  uint32_t mant = x & 0x7FFFFF;
  if (exp == 0xFF) return static_cast<uint16_t>(sign | 0x7C00 | (mant ? 0x200 : 0));
  int32_t e = exp - 127 + 15;
  if (e >= 0x1F) return static_cast<uint16_t>(sign | 0x7C00);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    const int shift = 14 - e;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // may carry into the exponent: fine
  return static_cast<uint16_t>(sign | h);
}

uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  x += 0x7FFF + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}
std::string F16Bytes(const std::vector<float>& v) {
  std::string out;
  for (float f : v) {
    const uint16_t h = FloatToHalf(f);
    out.append(reinterpret_cast<const char*>(&h), 2);
  }
  return out;
}
std::string Bf16Bytes(const std::vector<float>& v) {
  std::string out;
  for (float f : v) {
    const uint16_t h = FloatToBf16(f);
    out.append(reinterpret_cast<const char*>(&h), 2);
  }
  return out;
}

void GgufWriter::SetAlignment(uint32_t a) {
  if (a != 0 && (a & (a - 1)) == 0) alignment_ = a;  // invalid values: write key, pad to 32
  AddU32("general.alignment", a);
}

void GgufWriter::AddRaw(const std::string& key, GgufType type, const std::string& raw) {
  std::string rec;
  PutStr(rec, key);
  PutU32(rec, static_cast<uint32_t>(type));
  rec += raw;
  kv_.push_back(std::move(rec));
}
void GgufWriter::AddU32(const std::string& key, uint32_t v) {
  std::string r;
  PutU32(r, v);
  AddRaw(key, GgufType::kUint32, r);
}
void GgufWriter::AddI32(const std::string& key, int32_t v) {
  AddRaw(key, GgufType::kInt32, std::string(reinterpret_cast<const char*>(&v), 4));
}
void GgufWriter::AddU64(const std::string& key, uint64_t v) {
  std::string r;
  PutU64(r, v);
  AddRaw(key, GgufType::kUint64, r);
}
void GgufWriter::AddF32(const std::string& key, float v) {
  AddRaw(key, GgufType::kFloat32, std::string(reinterpret_cast<const char*>(&v), 4));
}
void GgufWriter::AddF64(const std::string& key, double v) {
  AddRaw(key, GgufType::kFloat64, std::string(reinterpret_cast<const char*>(&v), 8));
}
void GgufWriter::AddBool(const std::string& key, bool v) {
  AddRaw(key, GgufType::kBool, std::string(1, v ? '\1' : '\0'));
}
void GgufWriter::AddString(const std::string& key, const std::string& v) {
  std::string r;
  PutStr(r, v);
  AddRaw(key, GgufType::kString, r);
}
void GgufWriter::AddStringArray(const std::string& key, const std::vector<std::string>& v) {
  std::string r;
  PutU32(r, static_cast<uint32_t>(GgufType::kString));
  PutU64(r, v.size());
  for (const auto& s : v) PutStr(r, s);
  AddRaw(key, GgufType::kArray, r);
}
void GgufWriter::AddI32Array(const std::string& key, const std::vector<int32_t>& v) {
  std::string r;
  PutU32(r, static_cast<uint32_t>(GgufType::kInt32));
  PutU64(r, v.size());
  r.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  AddRaw(key, GgufType::kArray, r);
}
void GgufWriter::AddF32Array(const std::string& key, const std::vector<float>& v) {
  std::string r;
  PutU32(r, static_cast<uint32_t>(GgufType::kFloat32));
  PutU64(r, v.size());
  r.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  AddRaw(key, GgufType::kArray, r);
}

void GgufWriter::AddTensor(const std::string& name, std::vector<int64_t> ne, GgmlType type,
                           std::string data) {
  tensors_.push_back({name, std::move(ne), type, std::move(data)});
}

void GgufWriter::AddFloatTensor(const std::string& name, const Tensor& t, GgmlType type) {
  std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
  std::string data;
  switch (type) {
    case GgmlType::kF32:
      data = F32Bytes(t.data);
      break;
    case GgmlType::kF16:
      data = F16Bytes(t.data);
      break;
    case GgmlType::kBF16:
      data = Bf16Bytes(t.data);
      break;
    default:
      CHECK(false) << "AddFloatTensor supports F32/F16/BF16";
  }
  AddTensor(name, std::move(ne), type, std::move(data));
}

std::string GgufWriter::Build() const {
  std::string out = "GGUF";
  PutU32(out, version_);
  PutU64(out, tensors_.size());
  PutU64(out, kv_.size());
  for (const auto& r : kv_) out += r;
  auto pad = [&](uint64_t n) { return (alignment_ - n % alignment_) % alignment_; };
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors_) {
    PutStr(out, t.name);
    PutU32(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) PutU64(out, static_cast<uint64_t>(d));
    PutU32(out, static_cast<uint32_t>(t.type));
    PutU64(out, offset);
    offsets.push_back(offset);
    offset += t.data.size();
    offset += pad(offset);
  }
  out.append(pad(out.size()), '\0');
  for (const auto& t : tensors_) {
    out += t.data;
    out.append(pad(t.data.size()), '\0');
  }
  return out;
}

std::string BuildSafetensors(const std::vector<StEntry>& entries,
                             const std::map<std::string, std::string>& metadata) {
  nlohmann::json h = nlohmann::json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::string data;
  for (const auto& e : entries) {
    h[e.name] = {{"dtype", e.dtype},
                 {"shape", e.shape},
                 {"data_offsets", {data.size(), data.size() + e.data.size()}}};
    data += e.data;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out;
  PutU64(out, header.size());
  return out + header + data;
}

StEntry StFloat(const std::string& name, const Tensor& t, const std::string& dtype) {
  std::string data = dtype == "F16"    ? F16Bytes(t.data)
                     : dtype == "BF16" ? Bf16Bytes(t.data)
                                       : F32Bytes(t.data);
  return {name, dtype, t.shape, std::move(data)};
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  CHECK(out.good()) << "cannot write " << path;
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CHECK(in.good()) << "cannot read " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
// Directories made by MakeTempDir, removed at process exit (kept when HIPSERVE_KEEP_TMP is set).
std::vector<std::string>& TempDirs() {
  static auto* dirs = new std::vector<std::string>();
  return *dirs;
}
void RemoveTempDirs() {
  if (std::getenv("HIPSERVE_KEEP_TMP") != nullptr) return;
  for (const auto& d : TempDirs()) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
  }
}
}  // namespace

std::string MakeTempDir(const std::string& tag) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/hipserve_", tag, "_XXXXXX");
  CHECK(::mkdtemp(tmpl.data()) != nullptr) << "mkdtemp " << tmpl;
  if (TempDirs().empty()) std::atexit(RemoveTempDirs);
  TempDirs().push_back(tmpl);
  return tmpl;
}

namespace {

Tensor RandomTensor(std::vector<int64_t> shape, std::mt19937_64& rng) {
  Tensor t;
  t.shape = std::move(shape);
  t.data.resize(t.numel());
  std::uniform_int_distribution<int> d(-128, 128);
  for (float& v : t.data) v = static_cast<float>(d(rng)) / 64.0f;
  return t;
}

TokenizerData TinyTokenizer(int64_t vocab) {
  TokenizerData t;
  t.model = "gpt2";
  t.pre = "gpt2";
  t.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  t.token_types = {kTokenControl, kTokenControl, kTokenControl};
  for (int64_t i = static_cast<int64_t>(t.tokens.size()); i < vocab; ++i) {
    t.tokens.push_back(i < 3 + 26 ? std::string(1, static_cast<char>('a' + i - 3))
                                  : absl::StrCat("t", i));
    t.token_types.push_back(kTokenNormal);
  }
  t.merges = {"a b", "c d", "ab cd"};
  t.bos = 1;
  t.eos = {2};
  t.chat_template = "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}";
  t.add_bos = false;
  return t;
}

}  // namespace

LoadedModel MakeTinyModel(const TinyModelOptions& o) {
  std::mt19937_64 rng(o.seed);
  LoadedModel m;
  ModelConfig& c = m.config;
  c.arch = o.arch;
  c.name = "tiny-" + o.arch;
  c.vocab_size = o.vocab;
  c.hidden_size = o.hidden;
  c.intermediate_size = o.intermediate;
  c.num_layers = o.layers;
  c.num_heads = o.heads;
  c.num_kv_heads = o.kv_heads;
  c.head_dim = o.hidden / o.heads;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position = 128;
  c.tie_word_embeddings = o.tie;
  c.qkv_bias = o.arch == "qwen2";
  const int64_t H = o.hidden, q = o.heads * c.head_dim, kv = o.kv_heads * c.head_dim;
  m.token_embd = RandomTensor({o.vocab, H}, rng);
  for (int64_t i = 0; i < o.layers; ++i) {
    LayerTensors l;
    l.attn_norm = RandomTensor({H}, rng);
    l.wq = RandomTensor({q, H}, rng);
    l.wk = RandomTensor({kv, H}, rng);
    l.wv = RandomTensor({kv, H}, rng);
    if (c.qkv_bias) {
      l.bq = RandomTensor({q}, rng);
      l.bk = RandomTensor({kv}, rng);
      l.bv = RandomTensor({kv}, rng);
    }
    l.wo = RandomTensor({H, q}, rng);
    l.ffn_norm = RandomTensor({H}, rng);
    l.w_gate = RandomTensor({o.intermediate, H}, rng);
    l.w_up = RandomTensor({o.intermediate, H}, rng);
    l.w_down = RandomTensor({H, o.intermediate}, rng);
    m.layers.push_back(std::move(l));
  }
  m.output_norm = RandomTensor({H}, rng);
  m.lm_head = o.tie ? m.token_embd : RandomTensor({o.vocab, H}, rng);
  m.tok = TinyTokenizer(o.vocab);
  return m;
}

std::string TinyModelToGguf(const LoadedModel& m, GgmlType type) {
  const ModelConfig& c = m.config;
  const std::string a = c.arch == "qwen2" ? "qwen2" : "llama";
  GgufWriter w;
  w.AddString("general.architecture", a);
  w.AddString("general.name", c.name);
  w.AddU32(a + ".block_count", static_cast<uint32_t>(c.num_layers));
  w.AddU32(a + ".context_length", static_cast<uint32_t>(c.max_position));
  w.AddU32(a + ".embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.AddU32(a + ".feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.AddU32(a + ".attention.head_count", static_cast<uint32_t>(c.num_heads));
  w.AddU32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads));
  w.AddF32(a + ".rope.freq_base", c.rope_theta);
  w.AddF32(a + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.AddU32(a + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
  w.AddU32(a + ".rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  const TokenizerData& t = m.tok;
  w.AddString("tokenizer.ggml.model", t.model);
  w.AddString("tokenizer.ggml.pre", t.pre);
  w.AddStringArray("tokenizer.ggml.tokens", t.tokens);
  w.AddI32Array("tokenizer.ggml.token_type", t.token_types);
  w.AddStringArray("tokenizer.ggml.merges", t.merges);
  w.AddU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(t.bos));
  w.AddU32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(t.eos.at(0)));
  w.AddBool("tokenizer.ggml.add_bos_token", t.add_bos);
  w.AddString("tokenizer.chat_template", t.chat_template);
  const bool permute = c.arch != "qwen2";
  auto perm = [&](const Tensor& x, int64_t heads) {
    if (!permute || x.empty()) return x;
    return PermuteHfToGgufRopeRows(x, heads).value();
  };
  auto add2d = [&](const std::string& name, const Tensor& x) { w.AddFloatTensor(name, x, type); };
  add2d("token_embd.weight", m.token_embd);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const LayerTensors& l = m.layers[i];
    const std::string p = absl::StrCat("blk.", i, ".");
    w.AddFloatTensor(p + "attn_norm.weight", l.attn_norm);
    add2d(p + "attn_q.weight", perm(l.wq, c.num_heads));
    add2d(p + "attn_k.weight", perm(l.wk, c.num_kv_heads));
    add2d(p + "attn_v.weight", l.wv);
    if (c.qkv_bias) {
      w.AddFloatTensor(p + "attn_q.bias", perm(l.bq, c.num_heads));
      w.AddFloatTensor(p + "attn_k.bias", perm(l.bk, c.num_kv_heads));
      w.AddFloatTensor(p + "attn_v.bias", l.bv);
    }
    add2d(p + "attn_output.weight", l.wo);
    w.AddFloatTensor(p + "ffn_norm.weight", l.ffn_norm);
    add2d(p + "ffn_gate.weight", l.w_gate);
    add2d(p + "ffn_up.weight", l.w_up);
    add2d(p + "ffn_down.weight", l.w_down);
  }
  w.AddFloatTensor("output_norm.weight", m.output_norm);
  if (!c.tie_word_embeddings) add2d("output.weight", m.lm_head);
  return w.Build();
}

void TinyModelToHfDir(const LoadedModel& m, const std::string& dir, int shards,
                      const std::string& dtype) {
  const ModelConfig& c = m.config;
  nlohmann::json cfg = {
      {"model_type", c.arch},
      {"architectures", {c.arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"_name_or_path", c.name},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"rms_norm_eps", c.rms_eps},
      {"rope_theta", c.rope_theta},
      {"max_position_embeddings", c.max_position},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"rope_scaling", nullptr}};
  WriteFile(dir + "/config.json", cfg.dump(2));
  const TokenizerData& t = m.tok;
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    if (t.token_types[i] == kTokenControl) {
      added.push_back({{"id", i}, {"content", t.tokens[i]}, {"special", true}});
    } else {
      vocab[t.tokens[i]] = i;
    }
  }
  nlohmann::json tok = {{"version", "1.0"},
                        {"added_tokens", added},
                        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                        {"decoder", {{"type", "ByteLevel"}}},
                        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", t.merges}}}};
  WriteFile(dir + "/tokenizer.json", tok.dump());
  nlohmann::json tc = {{"bos_token", t.tokens[t.bos]},
                       {"eos_token", t.tokens[t.eos.at(0)]},
                       {"chat_template", t.chat_template},
                       {"add_bos_token", t.add_bos}};
  WriteFile(dir + "/tokenizer_config.json", tc.dump());

  std::vector<StEntry> all;
  auto add = [&](const std::string& name, const Tensor& x, bool is_norm = false) {
    all.push_back(StFloat(name, x, is_norm ? "F32" : dtype));
  };
  add("model.embed_tokens.weight", m.token_embd);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const LayerTensors& l = m.layers[i];
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add(p + "input_layernorm.weight", l.attn_norm, true);
    add(p + "self_attn.q_proj.weight", l.wq);
    add(p + "self_attn.k_proj.weight", l.wk);
    add(p + "self_attn.v_proj.weight", l.wv);
    if (c.qkv_bias) {
      add(p + "self_attn.q_proj.bias", l.bq);
      add(p + "self_attn.k_proj.bias", l.bk);
      add(p + "self_attn.v_proj.bias", l.bv);
    }
    add(p + "self_attn.o_proj.weight", l.wo);
    add(p + "post_attention_layernorm.weight", l.ffn_norm, true);
    add(p + "mlp.gate_proj.weight", l.w_gate);
    add(p + "mlp.up_proj.weight", l.w_up);
    add(p + "mlp.down_proj.weight", l.w_down);
  }
  add("model.norm.weight", m.output_norm, true);
  if (!c.tie_word_embeddings) add("lm_head.weight", m.lm_head);
  if (shards <= 1) {
    WriteFile(dir + "/model.safetensors", BuildSafetensors(all, {{"format", "pt"}}));
    return;
  }
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map", nlohmann::json::object()}};
  for (int s = 0; s < shards; ++s) {
    std::vector<StEntry> part;
    const std::string file = absl::StrCat("model-", s + 1, "-of-", shards, ".safetensors");
    for (size_t k = s; k < all.size(); k += shards) {
      part.push_back(all[k]);
      index["weight_map"][all[k].name] = file;
    }
    WriteFile(dir + "/" + file, BuildSafetensors(part));
  }
  WriteFile(dir + "/model.safetensors.index.json", index.dump(2));
}

}  // namespace hipserve::worker::loader::testing
