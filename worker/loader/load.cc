#include "worker/loader/load.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/loader/gguf.h"
#include "worker/loader/json_util.h"
#include "worker/loader/safetensors.h"

namespace hipserve::worker::loader {
namespace {

constexpr uint64_t kProgressBytes = 64ull << 20;  // log per-layer progress above this size

absl::StatusOr<Tensor> RopeRows(const Tensor& w, int64_t n_heads, bool to_gguf) {
  if (w.shape.empty() || w.shape.size() > 2 || n_heads <= 0 || w.shape[0] % n_heads != 0 ||
      (w.shape[0] / n_heads) % 2 != 0 || static_cast<int64_t>(w.data.size()) != w.numel()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot permute rope rows of a ",
                                                   ShapeString(w.shape), " tensor over ", n_heads,
                                                   " heads"));
  }
  const int64_t d = w.shape[0] / n_heads;
  const int64_t half = d / 2;
  const int64_t cols = w.shape.size() == 2 ? w.shape[1] : 1;
  Tensor out;
  out.shape = w.shape;
  out.data.resize(w.data.size());
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t g = h * d + 2 * i + s;     // GGUF (interleaved) row
        const int64_t f = h * d + s * half + i;  // HF (rotate_half) row
        const int64_t src = to_gguf ? f : g;
        const int64_t dst = to_gguf ? g : f;
        std::copy_n(w.data.begin() + src * cols, cols, out.data.begin() + dst * cols);
      }
    }
  }
  return out;
}

absl::Status CheckShape(const Tensor& t, const std::vector<int64_t>& want, const std::string& name,
                        const std::string& source) {
  if (t.shape != want) {
    return absl::InvalidArgumentError(absl::StrCat("'", source, "': tensor '", name, "' has shape ",
                                                   ShapeString(t.shape), ", expected ",
                                                   ShapeString(want), " from the config"));
  }
  return absl::OkStatus();
}

// Reads tensors by name from either source and checks shapes.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool Has(const std::string& name) const = 0;
  virtual absl::StatusOr<Tensor> ReadRaw(const std::string& name) const = 0;
  virtual const std::string& path() const = 0;

  absl::StatusOr<Tensor> Read(const std::string& name, const std::vector<int64_t>& shape) {
    ASSIGN_OR_RETURN(Tensor t, ReadRaw(name));
    RETURN_IF_ERROR(CheckShape(t, shape, name, path()));
    bytes_ += t.data.size() * sizeof(float);
    ++count_;
    return t;
  }
  uint64_t bytes() const { return bytes_; }
  int count() const { return count_; }

 private:
  uint64_t bytes_ = 0;
  int count_ = 0;
};

class GgufSource : public TensorSource {
 public:
  explicit GgufSource(const GgufFile& g) : g_(g) {}
  bool Has(const std::string& name) const override { return g_.FindTensor(name) != nullptr; }
  absl::StatusOr<Tensor> ReadRaw(const std::string& name) const override {
    return g_.ReadTensor(name);
  }
  const std::string& path() const override { return g_.path(); }

 private:
  const GgufFile& g_;
};

class SafetensorsSource : public TensorSource {
 public:
  SafetensorsSource(const SafetensorsModel& m, std::string dir) : m_(m), dir_(std::move(dir)) {}
  bool Has(const std::string& name) const override { return m_.Has(name); }
  absl::StatusOr<Tensor> ReadRaw(const std::string& name) const override { return m_.Read(name); }
  const std::string& path() const override { return dir_; }

 private:
  const SafetensorsModel& m_;
  std::string dir_;
};

// Per-layer tensor names of one source format.
struct Names {
  std::string token_embd, output_norm, lm_head;
  std::string attn_norm, q, k, v, bq, bk, bv, o, ffn_norm, gate, up, down;  // with {} = layer
};

const Names kGgufNames = {
    "token_embd.weight",       "output_norm.weight",        "output.weight",
    "blk.{}.attn_norm.weight", "blk.{}.attn_q.weight",      "blk.{}.attn_k.weight",
    "blk.{}.attn_v.weight",    "blk.{}.attn_q.bias",        "blk.{}.attn_k.bias",
    "blk.{}.attn_v.bias",      "blk.{}.attn_output.weight", "blk.{}.ffn_norm.weight",
    "blk.{}.ffn_gate.weight",  "blk.{}.ffn_up.weight",      "blk.{}.ffn_down.weight"};
const Names kHfNames = {"model.embed_tokens.weight",
                        "model.norm.weight",
                        "lm_head.weight",
                        "model.layers.{}.input_layernorm.weight",
                        "model.layers.{}.self_attn.q_proj.weight",
                        "model.layers.{}.self_attn.k_proj.weight",
                        "model.layers.{}.self_attn.v_proj.weight",
                        "model.layers.{}.self_attn.q_proj.bias",
                        "model.layers.{}.self_attn.k_proj.bias",
                        "model.layers.{}.self_attn.v_proj.bias",
                        "model.layers.{}.self_attn.o_proj.weight",
                        "model.layers.{}.post_attention_layernorm.weight",
                        "model.layers.{}.mlp.gate_proj.weight",
                        "model.layers.{}.mlp.up_proj.weight",
                        "model.layers.{}.mlp.down_proj.weight"};

std::string Layer(const std::string& pattern, int64_t i) {
  const size_t pos = pattern.find("{}");
  return absl::StrCat(pattern.substr(0, pos), i, pattern.substr(pos + 2));
}

// Fills everything but config/tok/source. `unpermute_qk`: the source is a llama-arch GGUF.
absl::Status ReadWeights(TensorSource& src, const Names& n, bool unpermute_qk, uint64_t file_bytes,
                         LoadedModel& m) {
  const ModelConfig& c = m.config;
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t q_rows = c.num_heads * c.head_dim, kv_rows = c.num_kv_heads * c.head_dim;
  ASSIGN_OR_RETURN(m.token_embd, src.Read(n.token_embd, {V, H}));
  m.layers.resize(c.num_layers);
  const bool log_progress = file_bytes >= kProgressBytes;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerTensors& l = m.layers[i];
    ASSIGN_OR_RETURN(l.attn_norm, src.Read(Layer(n.attn_norm, i), {H}));
    ASSIGN_OR_RETURN(l.wq, src.Read(Layer(n.q, i), {q_rows, H}));
    ASSIGN_OR_RETURN(l.wk, src.Read(Layer(n.k, i), {kv_rows, H}));
    ASSIGN_OR_RETURN(l.wv, src.Read(Layer(n.v, i), {kv_rows, H}));
    if (c.qkv_bias) {
      ASSIGN_OR_RETURN(l.bq, src.Read(Layer(n.bq, i), {q_rows}));
      ASSIGN_OR_RETURN(l.bk, src.Read(Layer(n.bk, i), {kv_rows}));
      ASSIGN_OR_RETURN(l.bv, src.Read(Layer(n.bv, i), {kv_rows}));
    }
    if (unpermute_qk) {
      ASSIGN_OR_RETURN(l.wq, UnpermuteGgufRopeRows(l.wq, c.num_heads));
      ASSIGN_OR_RETURN(l.wk, UnpermuteGgufRopeRows(l.wk, c.num_kv_heads));
      if (c.qkv_bias) {
        ASSIGN_OR_RETURN(l.bq, UnpermuteGgufRopeRows(l.bq, c.num_heads));
        ASSIGN_OR_RETURN(l.bk, UnpermuteGgufRopeRows(l.bk, c.num_kv_heads));
      }
    }
    ASSIGN_OR_RETURN(l.wo, src.Read(Layer(n.o, i), {H, q_rows}));
    ASSIGN_OR_RETURN(l.ffn_norm, src.Read(Layer(n.ffn_norm, i), {H}));
    ASSIGN_OR_RETURN(l.w_gate, src.Read(Layer(n.gate, i), {I, H}));
    ASSIGN_OR_RETURN(l.w_up, src.Read(Layer(n.up, i), {I, H}));
    ASSIGN_OR_RETURN(l.w_down, src.Read(Layer(n.down, i), {H, I}));
    if (log_progress && ((i + 1) % 8 == 0 || i + 1 == c.num_layers)) {
      LOG(INFO) << "loaded layer " << i + 1 << "/" << c.num_layers << " (" << src.count()
                << " tensors, " << (src.bytes() >> 20) << " MiB fp32)";
    }
  }
  ASSIGN_OR_RETURN(m.output_norm, src.Read(n.output_norm, {H}));
  if (src.Has(n.lm_head) && !c.tie_word_embeddings) {
    ASSIGN_OR_RETURN(m.lm_head, src.Read(n.lm_head, {V, H}));
  } else if (c.tie_word_embeddings) {
    m.lm_head = m.token_embd;
  } else {
    return absl::NotFoundError(absl::StrCat("'", src.path(), "': no '", n.lm_head,
                                            "' and the config does not tie word embeddings"));
  }
  return absl::OkStatus();
}

absl::Status CheckTokenizer(const LoadedModel& m) {
  if (m.tok.tokens.size() > static_cast<size_t>(m.config.vocab_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", m.source, "': tokenizer has ", m.tok.tokens.size(),
                     " tokens but the model's vocab is ", m.config.vocab_size));
  }
  return absl::OkStatus();
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

absl::StatusOr<LoadedModel> LoadGguf(const GgufFile& g) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string& path = g.path();
  const bool big = g.file_size() >= kProgressBytes;
  if (big)
    LOG(INFO) << "loading GGUF '" << path << "': v" << g.version() << ", " << g.tensors().size()
              << " tensors, " << g.metadata().size() << " metadata keys, " << (g.file_size() >> 20)
              << " MiB";
  LoadedModel m;
  m.source = path;
  ASSIGN_OR_RETURN(m.config, ConfigFromGguf(g));
  ASSIGN_OR_RETURN(m.tok, TokenizerFromGguf(g));
  GgufSource src(g);
  RETURN_IF_ERROR(ReadWeights(src, kGgufNames, m.config.arch == "llama", g.file_size(), m));
  if (src.Has("rope_freqs.weight")) {
    ASSIGN_OR_RETURN(m.rope_freqs, src.Read("rope_freqs.weight", {m.config.head_dim / 2}));
  }
  RETURN_IF_ERROR(CheckTokenizer(m));
  if (big)
    LOG(INFO) << "loaded '" << m.config.name << "' (" << m.config.arch << ", "
              << m.config.num_layers << " layers) from GGUF: " << src.count() << " tensors, "
              << (src.bytes() >> 20) << " MiB fp32 in " << SecondsSince(t0) << " s";
  return m;
}

absl::StatusOr<LoadedModel> LoadHfDir(const std::string& dir) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel m;
  m.source = dir;
  const std::string config_path = absl::StrCat(dir, "/config.json");
  ASSIGN_OR_RETURN(std::string config_text, internal::ReadSmallFile(config_path));
  ASSIGN_OR_RETURN(m.config, ConfigFromHfJson(config_text, config_path));
  if (m.config.name.empty()) m.config.name = dir.substr(dir.find_last_of('/') + 1);
  ASSIGN_OR_RETURN(m.tok, TokenizerFromHfDir(dir));
  ASSIGN_OR_RETURN(SafetensorsModel st, SafetensorsModel::OpenDir(dir));
  const bool big = st.total_bytes() >= kProgressBytes;
  if (big)
    LOG(INFO) << "loading Hugging Face checkpoint '" << dir << "': " << st.num_files()
              << " safetensors file(s), " << st.Names().size() << " tensors, "
              << (st.total_bytes() >> 20) << " MiB";
  SafetensorsSource src(st, dir);
  RETURN_IF_ERROR(ReadWeights(src, kHfNames, /*unpermute_qk=*/false, st.total_bytes(), m));
  RETURN_IF_ERROR(CheckTokenizer(m));
  if (big)
    LOG(INFO) << "loaded '" << m.config.name << "' (" << m.config.arch << ", "
              << m.config.num_layers << " layers) from safetensors: " << src.count() << " tensors, "
              << (src.bytes() >> 20) << " MiB fp32 in " << SecondsSince(t0) << " s";
  return m;
}

}  // namespace

absl::StatusOr<Tensor> PermuteHfToGgufRopeRows(const Tensor& w, int64_t n_heads) {
  return RopeRows(w, n_heads, /*to_gguf=*/true);
}

absl::StatusOr<Tensor> UnpermuteGgufRopeRows(const Tensor& w, int64_t n_heads) {
  return RopeRows(w, n_heads, /*to_gguf=*/false);
}

absl::StatusOr<LoadedModel> LoadModel(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("model path '", path, "' does not exist"));
  }
  if (S_ISDIR(st.st_mode)) return LoadHfDir(path);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model path '", path, "' is neither a file nor a directory"));
  }
  ASSIGN_OR_RETURN(GgufFile g, GgufFile::Open(path));
  return LoadGguf(g);
}

absl::StatusOr<LoadedModel> LoadModelFromGguf(const GgufFile& gguf) { return LoadGguf(gguf); }

}  // namespace hipserve::worker::loader
