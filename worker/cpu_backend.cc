#include "worker/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/dtype/bf16.h"
#include "kernels/embedding/embedding.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/sampling/candidates.h"
#include "kernels/swiglu/swiglu.h"
#include "kvstore/simple_store.h"
#include "worker/hip_attention.h"

namespace hipserve::worker {
namespace {

using common::LayerId;
using common::SequenceId;
using kernels::DType;

absl::Status CheckSize(const std::vector<float>& v, int64_t want, const std::string& name) {
  if (static_cast<int64_t>(v.size()) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", name, " has ", v.size(), " values, expected ", want));
  }
  return absl::OkStatus();
}

// One linear weight [n, k] as the CPU forward pass reads it: fp32 (pointing into the backend's
// ModelWeights) or an owned bf16 copy.
struct CpuLinear {
  kernels::CpuWeightType type = kernels::CpuWeightType::kFloat32;
  const float* f32 = nullptr;
  std::vector<uint16_t> bf16;
  const std::vector<float>* bias = nullptr;  // [n] or null/empty
  int n = 0, k = 0;
  const void* data() const {
    return type == kernels::CpuWeightType::kBf16 ? static_cast<const void*>(bf16.data()) : f32;
  }
};

// Points `out` at `w` ([n, k]) or, for bf16, converts it and frees the fp32 vector.
void MakeLinear(std::vector<float>& w, const std::vector<float>* bias, int n, int k,
                kernels::CpuWeightType type, CpuLinear* out) {
  out->type = type;
  out->n = n;
  out->k = k;
  out->bias = bias;
  if (type == kernels::CpuWeightType::kBf16) {
    out->bf16.resize(w.size());
    kernels::FloatToBf16Array(w.data(), out->bf16.data(), static_cast<int64_t>(w.size()));
    std::vector<float>().swap(w);
    out->f32 = nullptr;
  } else {
    out->f32 = w.data();
  }
}

float* F(const Tensor& t) { return static_cast<float*>(t.data); }

void RoundVector(std::vector<float>& v) {
  kernels::RoundToBf16InPlace(v.data(), static_cast<int64_t>(v.size()));
}

class CheckpointImpl final : public BackendCheckpoint {
 public:
  HipAttention::Snapshot hip;
};

class CpuBackend final : public ForwardBackend {
 public:
  CpuBackend(ModelWeights w, const ModelOptions& o, std::unique_ptr<kvstore::SimpleKvStore> kv,
             std::unique_ptr<HipAttention> hip)
      : w_(std::move(w)), options_(o), kv_(std::move(kv)), hip_(std::move(hip)) {
    emulate_ = options_.cpu_emulate_bf16;
    if (emulate_) {
      options_.cpu_weights = kernels::CpuWeightType::kBf16;
      RoundVector(w_.token_embd);
      RoundVector(w_.output_norm);
      for (LayerWeights& l : w_.layers) {
        for (std::vector<float>* v : {&l.attn_norm, &l.ffn_norm, &l.bq, &l.bk, &l.bv}) {
          RoundVector(*v);
        }
      }
    }
    PrepareLinears();
  }

  std::string name() const override { return "cpu"; }
  void* stream() override { return nullptr; }
  std::string dtype_name() const override {
    return kernels::CpuWeightTypeName(options_.cpu_weights);
  }

  MemoryPlan memory_plan() const override {
    const ModelDims& d = w_.dims;
    MemoryPlan m;
    m.device = "cpu";
    const int64_t wsize = options_.cpu_weights == kernels::CpuWeightType::kBf16 ? 2 : 4;
    const int64_t h = d.hidden, q = int64_t{w_.local_heads()} * d.head_dim;
    const int64_t kv = int64_t{w_.local_kv_heads()} * d.head_dim, inter = w_.local_intermediate();
    const int64_t vrows = w_.vocab_end - w_.vocab_begin;
    const int64_t linear = d.num_layers * ((q + 2 * kv) * h + h * q + 3 * inter * h) + vrows * h;
    m.weights_bytes = linear * wsize + (vrows * h + (2 * d.num_layers + 1) * h) * 4;
    m.kv_tokens = options_.kv_budget_tokens;
    m.kv_bytes = m.kv_tokens * d.num_layers * 2 * kv * 4;  // fp32 K and V
    m.kv_dtype = "fp32";
    m.budget_bytes = m.weights_bytes + m.kv_bytes;
    return m;
  }

  bool Contains(SequenceId seq) const override { return kv_->Contains(seq); }
  absl::StatusOr<int64_t> Length(SequenceId seq) const override { return kv_->Length(seq); }
  absl::Status AddSequence(SequenceId seq) override { return kv_->AddSequence(seq); }
  absl::Status Truncate(SequenceId seq, int64_t tokens) override {
    return kv_->Truncate(seq, tokens);
  }
  absl::Status Free(SequenceId seq) override {
    RETURN_IF_ERROR(kv_->Free(seq));
    if (hip_ != nullptr) hip_->Release(seq);
    return absl::OkStatus();
  }
  int64_t TokensInUse() const override { return kv_->TokensInUse(); }
  int64_t CapacityTokens() const override { return options_.kv_budget_tokens; }
  int NumSequences() const override { return kv_->NumSequences(); }
  std::unique_ptr<BackendCheckpoint> Save(const std::vector<SequenceId>& seqs) const override {
    auto c = std::make_unique<CheckpointImpl>();
    if (hip_ != nullptr) c->hip = hip_->Save(seqs);
    return c;
  }
  void Restore(const BackendCheckpoint& checkpoint) override {
    if (hip_ != nullptr) hip_->Restore(static_cast<const CheckpointImpl&>(checkpoint).hip);
  }
  const HipAttention* hip() const override { return hip_.get(); }
  CacheCounters cache_counters() const override {
    CacheCounters c;  // one KV tier (host memory): no tier lookups
    if (hip_ != nullptr) {
      c.hip_mask_hits = hip_->mask_cache_counts().hits;
      c.hip_mask_misses = hip_->mask_cache_counts().misses;
    }
    return c;
  }

  absl::StatusOr<StepBuffers> BeginStep(const StepLayout& layout, int world_size,
                                        int vocab_shard) override {
    layout_ = &layout;
    const ModelDims& d = w_.dims;
    const int64_t rows = layout.rows(), lr = static_cast<int64_t>(layout.logit_rows.size());
    const int64_t q = int64_t{w_.local_heads()} * d.head_dim;
    const int64_t kv = int64_t{w_.local_kv_heads()} * d.head_dim;
    const int64_t inter = w_.local_intermediate();
    StepBuffers b;
    b.x = Buffer(0, rows, d.hidden);
    b.norm = Buffer(1, rows, d.hidden);
    b.q = Buffer(2, rows, q);
    b.k = Buffer(3, rows, kv);
    b.v = Buffer(4, rows, kv);
    b.attn = Buffer(5, rows, q);
    b.proj = Buffer(6, rows, d.hidden);
    b.gate = Buffer(7, rows, inter);
    b.up = Buffer(8, rows, inter);
    b.logits = Buffer(9, lr, vocab_shard);
    b.gathered = world_size == 1 ? b.logits : Buffer(10, world_size * lr, vocab_shard);
    if (hip_ != nullptr) {
      for (const StepLayout::Item& it : layout.items) {
        hip_->BeginStep(it.seq, it.start_pos, it.tokens, it.mask_refresh_interval, it.ends_prompt,
                        it.hip_k);
      }
    }
    return b;
  }

  absl::Status Embed(const Tensor& x) override {
    kernels::EmbeddingParams e;
    e.table = w_.token_embd.data();
    e.vocab_begin = w_.vocab_begin;
    e.vocab_end = w_.vocab_end;
    e.hidden = w_.dims.hidden;
    e.ids = layout_->ids.data();
    e.num_tokens = layout_->rows();
    e.out = F(x);
    RETURN_IF_ERROR(kernels::EmbeddingRef(e));
    return Round(x);
  }

  absl::Status RmsNorm(const Tensor& in, int layer, NormId norm, const Tensor& out) override {
    return Norm(in, nullptr, layer, norm, out);
  }
  absl::Status AddRmsNorm(const Tensor& residual, const Tensor& in, int layer, NormId norm,
                          const Tensor& out) override {
    return Norm(in, &residual, layer, norm, out);
  }

  absl::Status Linear(const Tensor& in, int layer, LinearId id, const Tensor& out) override {
    const CpuLinear& w = LinearFor(layer, id);
    kernels::CpuMatmulParams p;
    p.a = F(in);
    p.b = w.data();
    p.b_type = w.type;
    p.c = F(out);
    p.bias = (w.bias == nullptr || w.bias->empty()) ? nullptr : w.bias->data();
    p.m = static_cast<int>(in.rows);
    p.n = w.n;
    p.k = w.k;
    RETURN_IF_ERROR(kernels::CpuMatmul(p));
    return Round(out);
  }

  absl::Status Swiglu(const Tensor& gate, const Tensor& up) override {
    kernels::SwigluParams sw{F(gate), F(up), F(gate), gate.numel()};
    RETURN_IF_ERROR(kernels::SwigluRef(sw));
    return Round(gate);
  }

  absl::Status Attention(int layer, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out) override {
    const int64_t lq = q.cols, lkv = k.cols;
    for (const StepLayout::Item& it : layout_->items) {
      RETURN_IF_ERROR(AttentionItem(layer, it, F(q) + it.row * lq, F(k) + it.row * lkv,
                                    F(v) + it.row * lkv, F(out) + it.row * lq));
    }
    return Round(out);
  }

  absl::Status LmHead(const Tensor& normed, const Tensor& logits) override {
    const int h = w_.dims.hidden;
    const int ns = static_cast<int>(logits.rows), shard = static_cast<int>(logits.cols);
    const int local = static_cast<int>(w_.vocab_end - w_.vocab_begin);
    std::fill_n(F(logits), logits.numel(), -std::numeric_limits<float>::infinity());
    if (local <= 0 || ns == 0) return absl::OkStatus();
    std::vector<float> rows(int64_t{ns} * h), tmp(int64_t{ns} * local);
    for (int i = 0; i < ns; ++i) {
      std::copy_n(F(normed) + int64_t{layout_->logit_rows[i]} * h, h, rows.data() + int64_t{i} * h);
    }
    kernels::CpuMatmulParams g;
    g.a = rows.data();
    g.b = lm_head_.data();
    g.b_type = lm_head_.type;
    g.c = local == shard ? F(logits) : tmp.data();
    g.m = ns;
    g.n = lm_head_.n;
    g.k = lm_head_.k;
    RETURN_IF_ERROR(kernels::CpuMatmul(g));
    if (local != shard) {
      for (int i = 0; i < ns; ++i) {
        std::copy_n(tmp.data() + int64_t{i} * local, local, F(logits) + int64_t{i} * shard);
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<kernels::SampleResult>> Sample(
      const Tensor& gathered, int world_size, int vocab_size,
      const std::vector<kernels::SamplingOptions>& options) override {
    ASSIGN_OR_RETURN(std::vector<float> logits, ReadLogits(gathered, world_size, vocab_size));
    std::vector<kernels::SampleResult> out;
    for (size_t i = 0; i < options.size(); ++i) {
      ASSIGN_OR_RETURN(kernels::SampleResult r,
                       kernels::SampleRef(logits.data() + i * vocab_size, vocab_size, options[i]));
      out.push_back(r);
    }
    return out;
  }

  absl::StatusOr<std::vector<float>> ReadLogits(const Tensor& gathered, int world_size,
                                                int vocab_size) override {
    const int rows = static_cast<int>(gathered.rows / world_size);
    std::vector<float> logits(int64_t{rows} * vocab_size);
    UnshardLogits(F(gathered), world_size, rows, static_cast<int>(gathered.cols), vocab_size,
                  logits.data());
    return logits;
  }

  absl::Status Candidates(const Tensor& logits, int c, const std::vector<float>& temperatures,
                          const Tensor& records) override {
    const int local = static_cast<int>(w_.vocab_end - w_.vocab_begin);
    const int words = kernels::CandidateRecordWords(c);
    if (static_cast<int64_t>(temperatures.size()) != logits.rows || records.rows != logits.rows ||
        records.cols != words || local > logits.cols) {
      return absl::InternalError(absl::StrCat("candidates: ", logits.rows, " logit rows, ",
                                              temperatures.size(), " temperatures, records [",
                                              records.rows, ", ", records.cols, "]"));
    }
    int32_t* out = static_cast<int32_t*>(records.data);
    for (int64_t i = 0; i < logits.rows; ++i) {
      RETURN_IF_ERROR(kernels::CandidatesRef(F(logits) + i * logits.cols, std::max(local, 0),
                                             w_.vocab_begin, c, temperatures[i], out + i * words));
    }
    return absl::OkStatus();
  }

  absl::Status SelectRows(const Tensor& logits, const std::vector<int>& rows,
                          const Tensor& out) override {
    for (size_t i = 0; i < rows.size(); ++i) {
      std::copy_n(F(logits) + rows[i] * logits.cols, logits.cols, F(out) + i * out.cols);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Tensor> Scratch(int slot, int64_t rows, int64_t cols, DType dtype) override {
    if (slot < 0 || slot >= static_cast<int>(std::size(scratch_))) {
      return absl::InternalError(absl::StrCat("scratch slot ", slot, " is out of range"));
    }
    std::vector<char>& v = scratch_[slot];
    const int64_t bytes = rows * cols * kernels::DTypeSize(dtype);
    if (static_cast<int64_t>(v.size()) < bytes) v.resize(bytes);
    return Tensor{v.data(), dtype, rows, cols};
  }
  absl::Status ToHost(const Tensor& t, void* host) override {
    std::memcpy(host, t.data, t.numel() * kernels::DTypeSize(t.dtype));
    return absl::OkStatus();
  }
  absl::Status FromHost(const void* host, const Tensor& t) override {
    std::memcpy(t.data, host, t.numel() * kernels::DTypeSize(t.dtype));
    return absl::OkStatus();
  }

  absl::Status Finish() override { return absl::OkStatus(); }

 private:
  struct LayerLinears {
    CpuLinear wq, wk, wv, wo, gate, up, down;
  };

  Tensor Buffer(int slot, int64_t rows, int64_t cols) {
    std::vector<float>& v = buffers_[slot];
    if (static_cast<int64_t>(v.size()) < rows * cols) v.resize(rows * cols);
    return Tensor{v.data(), DType::kFloat32, rows, cols};
  }

  const CpuLinear& LinearFor(int layer, LinearId id) const {
    const LayerLinears& l = linears_[layer];
    switch (id) {
      case LinearId::kWq:
        return l.wq;
      case LinearId::kWk:
        return l.wk;
      case LinearId::kWv:
        return l.wv;
      case LinearId::kWo:
        return l.wo;
      case LinearId::kGate:
        return l.gate;
      case LinearId::kUp:
        return l.up;
      case LinearId::kDown:
        return l.down;
    }
    return l.wq;
  }

  const std::vector<float>& NormWeight(int layer, NormId norm) const {
    switch (norm) {
      case NormId::kAttn:
        return w_.layers[layer].attn_norm;
      case NormId::kFfn:
        return w_.layers[layer].ffn_norm;
      case NormId::kOutput:
        return w_.output_norm;
    }
    return w_.output_norm;
  }

  absl::Status Norm(const Tensor& in, const Tensor* residual, int layer, NormId norm,
                    const Tensor& out) {
    kernels::RmsNormParams p;
    p.in = F(in);
    p.weight = NormWeight(layer, norm).data();
    p.out = F(out);
    p.residual = residual == nullptr ? nullptr : F(*residual);
    p.rows = static_cast<int>(in.rows);
    p.dim = static_cast<int>(in.cols);
    p.eps = w_.dims.rms_eps;
    RETURN_IF_ERROR(kernels::RmsNormRef(p));
    if (residual != nullptr) RETURN_IF_ERROR(Round(*residual));
    return Round(out);
  }

  // Rounds a stored activation to bf16 when emulating the CUDA backend.
  absl::Status Round(const Tensor& t) {
    if (emulate_) kernels::RoundToBf16InPlace(F(t), t.numel());
    return absl::OkStatus();
  }

  void PrepareLinears() {
    const ModelDims& d = w_.dims;
    const kernels::CpuWeightType t = options_.cpu_weights;
    const int h = d.hidden, q = w_.local_heads() * d.head_dim;
    const int kv = w_.local_kv_heads() * d.head_dim, inter = w_.local_intermediate();
    linears_.resize(d.num_layers);
    for (int i = 0; i < d.num_layers; ++i) {
      LayerWeights& l = w_.layers[i];
      LayerLinears& o = linears_[i];
      MakeLinear(l.wq, &l.bq, q, h, t, &o.wq);
      MakeLinear(l.wk, &l.bk, kv, h, t, &o.wk);
      MakeLinear(l.wv, &l.bv, kv, h, t, &o.wv);
      MakeLinear(l.wo, nullptr, h, q, t, &o.wo);
      MakeLinear(l.w_gate, nullptr, inter, h, t, &o.gate);
      MakeLinear(l.w_up, nullptr, inter, h, t, &o.up);
      MakeLinear(l.w_down, nullptr, h, inter, t, &o.down);
    }
    MakeLinear(w_.lm_head, nullptr, static_cast<int>(w_.vocab_end - w_.vocab_begin), h, t,
               &lm_head_);
  }

  absl::Status AttentionItem(int layer, const StepLayout::Item& s, const float* q, const float* k,
                             const float* v, float* out) {
    const ModelDims& d = w_.dims;
    const int n = s.tokens;
    const int lh = w_.local_heads(), lkv = w_.local_kv_heads(), hd = d.head_dim;
    if (hip_ != nullptr) {
      // HiP stores keys without RoPE and rotates what it reads with its own, possibly
      // rewritten, positions (HIP.md 5).
      RETURN_IF_ERROR(kv_->Append(s.seq, LayerId(layer), k, v, n));
      ASSIGN_OR_RETURN(kvstore::KvView view, kv_->View(s.seq, LayerId(layer)));
      return hip_->Run(s.seq, layer, q, n, s.start_pos, view.k, view.v,
                       static_cast<int>(view.tokens), out);
    }
    // Dense attention only ever uses real positions, so keys are rotated once, when appended,
    // and stored rotated: no per-step pass over the whole cache.
    const int32_t* positions = layout_->positions.data() + s.row;
    std::vector<float> k_rot(k, k + int64_t{n} * lkv * hd);
    kernels::RopeParams rk;
    rk.x = k_rot.data();
    rk.positions = positions;
    rk.tokens = n;
    rk.heads = lkv;
    rk.head_dim = hd;
    rk.config = d.rope;
    RETURN_IF_ERROR(kernels::RopeRef(rk));
    if (emulate_) RoundVector(k_rot);
    std::vector<float> q_rot(q, q + int64_t{n} * lh * hd);
    kernels::RopeParams rq = rk;
    rq.x = q_rot.data();
    rq.heads = lh;
    RETURN_IF_ERROR(kernels::RopeRef(rq));
    if (emulate_) RoundVector(q_rot);
    RETURN_IF_ERROR(kv_->Append(s.seq, LayerId(layer), k_rot.data(), v, n));
    ASSIGN_OR_RETURN(kvstore::KvView view, kv_->View(s.seq, LayerId(layer)));
    kernels::DenseAttentionParams a;
    a.q = q_rot.data();
    a.k = view.k;
    a.v = view.v;
    a.out = out;
    a.num_q = n;
    a.num_kv = static_cast<int>(view.tokens);
    a.num_heads = lh;
    a.num_kv_heads = lkv;
    a.head_dim = hd;
    a.q_offset = s.start_pos;
    a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    return kernels::DenseAttentionBlocked(a);
  }

  ModelWeights w_;
  ModelOptions options_;
  std::unique_ptr<kvstore::SimpleKvStore> kv_;
  std::unique_ptr<HipAttention> hip_;
  std::vector<LayerLinears> linears_;  // [num_layers]
  CpuLinear lm_head_;
  std::vector<float> buffers_[11];
  std::vector<char> scratch_[4];        // Scratch slots (candidate records, masks, packed rows)
  const StepLayout* layout_ = nullptr;  // the step in progress (valid until the next BeginStep)
  bool emulate_ = false;                // ModelOptions::cpu_emulate_bf16
};

}  // namespace

absl::Status CheckWeights(const ModelWeights& w) {
  const ModelDims& d = w.dims;
  if (d.num_layers <= 0 || d.hidden <= 0 || d.head_dim <= 0 || d.num_heads <= 0 ||
      d.num_kv_heads <= 0 || d.num_heads % d.num_kv_heads != 0 ||
      d.num_kv_heads % w.world_size != 0) {
    return absl::InvalidArgumentError("inconsistent model dimensions");
  }
  const int64_t h = d.hidden, hd = d.head_dim;
  const int64_t vocab_rows = w.vocab_end - w.vocab_begin;
  RETURN_IF_ERROR(CheckSize(w.token_embd, vocab_rows * h, "token_embd"));
  RETURN_IF_ERROR(CheckSize(w.lm_head, vocab_rows * h, "lm_head"));
  RETURN_IF_ERROR(CheckSize(w.output_norm, h, "output_norm"));
  if (static_cast<int>(w.layers.size()) != d.num_layers) {
    return absl::InvalidArgumentError("layer count does not match dims");
  }
  const int64_t q = w.local_heads() * hd, kv = w.local_kv_heads() * hd;
  const int64_t inter = w.local_intermediate();
  for (int i = 0; i < d.num_layers; ++i) {
    const LayerWeights& l = w.layers[i];
    const std::string p = absl::StrCat("layers.", i, ".");
    RETURN_IF_ERROR(CheckSize(l.attn_norm, h, p + "attn_norm"));
    RETURN_IF_ERROR(CheckSize(l.wq, q * h, p + "wq"));
    RETURN_IF_ERROR(CheckSize(l.wk, kv * h, p + "wk"));
    RETURN_IF_ERROR(CheckSize(l.wv, kv * h, p + "wv"));
    RETURN_IF_ERROR(CheckSize(l.wo, h * q, p + "wo"));
    RETURN_IF_ERROR(CheckSize(l.ffn_norm, h, p + "ffn_norm"));
    RETURN_IF_ERROR(CheckSize(l.w_gate, inter * h, p + "w_gate"));
    RETURN_IF_ERROR(CheckSize(l.w_up, inter * h, p + "w_up"));
    RETURN_IF_ERROR(CheckSize(l.w_down, h * inter, p + "w_down"));
    if (!l.bq.empty()) {
      RETURN_IF_ERROR(CheckSize(l.bq, q, p + "bq"));
      RETURN_IF_ERROR(CheckSize(l.bk, kv, p + "bk"));
      RETURN_IF_ERROR(CheckSize(l.bv, kv, p + "bv"));
    }
  }
  return absl::OkStatus();
}

HipAttentionOptions HipOptionsFor(const ModelWeights& w, const ModelOptions& options) {
  const ModelDims& d = w.dims;
  HipAttentionOptions ho;
  ho.config = options.hip;
  ho.rope = d.rope;
  ho.num_layers = d.num_layers;
  ho.num_heads = w.local_heads();
  ho.num_kv_heads = w.local_kv_heads();
  ho.head_dim = d.head_dim;
  ho.pretrained_context = d.max_context;
  ho.measure_recall = options.hip_measure_recall;
  return ho;
}

void UnshardLogits(const float* gathered, int world_size, int rows, int shard, int vocab_size,
                   float* out) {
  for (int i = 0; i < rows; ++i) {
    for (int r = 0; r < world_size; ++r) {
      const int begin = r * shard;
      const int count = std::min(shard, vocab_size - begin);
      if (count <= 0) break;
      std::copy_n(gathered + (int64_t{r} * rows + i) * shard, count,
                  out + int64_t{i} * vocab_size + begin);
    }
  }
}

absl::StatusOr<std::unique_ptr<ForwardBackend>> MakeCpuBackend(ModelWeights w,
                                                               const ModelOptions& options) {
  RETURN_IF_ERROR(CheckWeights(w));
  const ModelDims& d = w.dims;
  kvstore::SimpleKvStoreOptions kv_options;
  kv_options.num_layers = d.num_layers;
  kv_options.num_kv_heads = w.local_kv_heads();
  kv_options.head_dim = d.head_dim;
  kv_options.max_tokens_total = options.kv_budget_tokens;
  std::unique_ptr<HipAttention> hip;
  if (options.attention == "hip") {
    ASSIGN_OR_RETURN(hip, HipAttention::Create(HipOptionsFor(w, options)));
  }
  ASSIGN_OR_RETURN(kvstore::SimpleKvStore * store, kvstore::SimpleKvStore::Create(kv_options));
  return std::unique_ptr<ForwardBackend>(new CpuBackend(
      std::move(w), options, std::unique_ptr<kvstore::SimpleKvStore>(store), std::move(hip)));
}

}  // namespace hipserve::worker
