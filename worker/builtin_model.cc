#include "worker/builtin_model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/dtype/bf16.h"

namespace hipserve::worker {
namespace {

// splitmix64: tiny, portable, identical on every platform (std distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1).
  float Uniform() { return static_cast<float>((Next() >> 40) * (1.0 / (1ull << 23)) - 1.0); }

 private:
  uint64_t state_;
};

std::vector<float> RandomMatrix(Rng& rng, int64_t rows, int64_t cols, float scale) {
  std::vector<float> m(rows * cols);
  // Uniform(-1,1) has variance 1/3: scale so each output has ~unit variance.
  const float s = scale * std::sqrt(3.0f / static_cast<float>(cols));
  for (float& x : m) x = kernels::RoundToBf16(rng.Uniform() * s);
  return m;
}

std::vector<float> NormWeight(Rng& rng, int64_t n) {
  std::vector<float> w(n);
  for (float& x : w) x = kernels::RoundToBf16(1.0f + 0.1f * rng.Uniform());
  return w;
}

std::vector<float> SliceRows(const std::vector<float>& m, int64_t cols, int64_t begin,
                             int64_t end) {
  return std::vector<float>(m.begin() + begin * cols, m.begin() + end * cols);
}

std::vector<float> SliceCols(const std::vector<float>& m, int64_t rows, int64_t cols, int64_t begin,
                             int64_t end) {
  std::vector<float> out;
  out.reserve(rows * (end - begin));
  for (int64_t r = 0; r < rows; ++r) {
    out.insert(out.end(), m.begin() + r * cols + begin, m.begin() + r * cols + end);
  }
  return out;
}

}  // namespace

absl::StatusOr<ModelWeights> MakeBuiltinModel(const BuiltinModelOptions& o) {
  if (o.vocab_size <= 0 || o.hidden <= 0 || o.intermediate <= 0 || o.num_layers <= 0 ||
      o.num_heads <= 0 || o.num_kv_heads <= 0 || o.head_dim <= 0 || o.head_dim % 2 != 0 ||
      o.num_heads % o.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        "builtin model: all sizes must be > 0, head_dim even, num_heads % num_kv_heads == 0");
  }
  ModelWeights w;
  ModelDims& d = w.dims;
  d.name = absl::StrCat("builtin-tiny-seed", o.seed);
  d.vocab_size = o.vocab_size;
  d.hidden = o.hidden;
  d.intermediate = o.intermediate;
  d.num_layers = o.num_layers;
  d.num_heads = o.num_heads;
  d.num_kv_heads = o.num_kv_heads;
  d.head_dim = o.head_dim;
  d.max_context = o.max_context;
  d.rope.theta = 10000.f;
  Rng rng(o.seed);
  const int64_t q_rows = int64_t{o.num_heads} * o.head_dim;
  const int64_t kv_rows = int64_t{o.num_kv_heads} * o.head_dim;
  // Embeddings with a larger scale so that the random model's logits are not flat.
  w.token_embd = RandomMatrix(rng, o.vocab_size, o.hidden, 1.0f);
  for (float& x : w.token_embd) x = kernels::RoundToBf16(x * std::sqrt(float(o.hidden)));
  w.layers.resize(o.num_layers);
  for (LayerWeights& l : w.layers) {
    l.attn_norm = NormWeight(rng, o.hidden);
    l.wq = RandomMatrix(rng, q_rows, o.hidden, 1.0f);
    l.wk = RandomMatrix(rng, kv_rows, o.hidden, 1.0f);
    l.wv = RandomMatrix(rng, kv_rows, o.hidden, 1.0f);
    l.wo = RandomMatrix(rng, o.hidden, q_rows, 0.5f);
    l.ffn_norm = NormWeight(rng, o.hidden);
    l.w_gate = RandomMatrix(rng, o.intermediate, o.hidden, 1.0f);
    l.w_up = RandomMatrix(rng, o.intermediate, o.hidden, 1.0f);
    l.w_down = RandomMatrix(rng, o.hidden, o.intermediate, 0.5f);
  }
  w.output_norm = NormWeight(rng, o.hidden);
  w.lm_head = RandomMatrix(rng, o.vocab_size, o.hidden, 4.0f);
  w.vocab_begin = 0;
  w.vocab_end = o.vocab_size;
  return w;
}

absl::StatusOr<ModelWeights> ShardWeights(ModelWeights full, int rank, int world_size) {
  const ModelDims& d = full.dims;
  if (full.world_size != 1) return absl::InvalidArgumentError("ShardWeights needs full weights");
  if (world_size <= 0 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", rank, " outside a tensor-parallel group of ", world_size));
  }
  if (d.num_kv_heads % world_size != 0 || d.intermediate % world_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor parallel degree ", world_size, " must divide num_kv_heads (",
                     d.num_kv_heads, ") and intermediate size (", d.intermediate, ")"));
  }
  if (world_size == 1) return std::move(full);  // no copy of a multi-GB model
  ModelWeights w;
  w.dims = d;
  w.rank = rank;
  w.world_size = world_size;
  const int64_t hd = d.head_dim;
  const int64_t q_per = int64_t{d.num_heads / world_size} * hd;
  const int64_t kv_per = int64_t{d.num_kv_heads / world_size} * hd;
  const int64_t inter_per = d.intermediate / world_size;
  const int64_t q_total = int64_t{d.num_heads} * hd;
  // Vocab: ceil split; the last shard may be shorter (logits are padded when gathered).
  const int64_t vocab_per = (d.vocab_size + world_size - 1) / world_size;
  w.vocab_begin = std::min<int64_t>(d.vocab_size, rank * vocab_per);
  w.vocab_end = std::min<int64_t>(d.vocab_size, w.vocab_begin + vocab_per);
  w.token_embd = SliceRows(full.token_embd, d.hidden, w.vocab_begin, w.vocab_end);
  w.lm_head = SliceRows(full.lm_head, d.hidden, w.vocab_begin, w.vocab_end);
  w.output_norm = full.output_norm;
  w.layers.resize(d.num_layers);
  for (int i = 0; i < d.num_layers; ++i) {
    const LayerWeights& f = full.layers[i];
    LayerWeights& l = w.layers[i];
    l.attn_norm = f.attn_norm;
    l.ffn_norm = f.ffn_norm;
    l.wq = SliceRows(f.wq, d.hidden, rank * q_per, (rank + 1) * q_per);
    l.wk = SliceRows(f.wk, d.hidden, rank * kv_per, (rank + 1) * kv_per);
    l.wv = SliceRows(f.wv, d.hidden, rank * kv_per, (rank + 1) * kv_per);
    if (!f.bq.empty()) {
      l.bq.assign(f.bq.begin() + rank * q_per, f.bq.begin() + (rank + 1) * q_per);
      l.bk.assign(f.bk.begin() + rank * kv_per, f.bk.begin() + (rank + 1) * kv_per);
      l.bv.assign(f.bv.begin() + rank * kv_per, f.bv.begin() + (rank + 1) * kv_per);
    }
    l.wo = SliceCols(f.wo, d.hidden, q_total, rank * q_per, (rank + 1) * q_per);
    l.w_gate = SliceRows(f.w_gate, d.hidden, rank * inter_per, (rank + 1) * inter_per);
    l.w_up = SliceRows(f.w_up, d.hidden, rank * inter_per, (rank + 1) * inter_per);
    l.w_down =
        SliceCols(f.w_down, d.hidden, d.intermediate, rank * inter_per, (rank + 1) * inter_per);
  }
  return w;
}

}  // namespace hipserve::worker
