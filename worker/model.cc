#include "worker/model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/dtype/bf16.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/swiglu/swiglu.h"

namespace hipserve::worker {
namespace {

absl::Status CheckSize(const std::vector<float>& v, int64_t want, const std::string& name) {
  if (static_cast<int64_t>(v.size()) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", name, " has ", v.size(), " values, expected ", want));
  }
  return absl::OkStatus();
}

// y[rows, w.n] = x[rows, w.k] w^T (+ bias): kernels::CpuMatmul (GEMV for decode rows).
absl::Status Linear(const float* x, const CpuLinear& w, const std::vector<float>& bias, int rows,
                    float* y) {
  kernels::CpuMatmulParams p;
  p.a = x;
  p.b = w.data();
  p.b_type = w.type;
  p.c = y;
  p.bias = bias.empty() ? nullptr : bias.data();
  p.m = rows;
  p.n = w.n;
  p.k = w.k;
  return kernels::CpuMatmul(p);
}

// Points `out` at `w` ([n, k]) or, for bf16, converts it and frees the fp32 vector.
void MakeLinear(std::vector<float>& w, int n, int k, kernels::CpuWeightType type, CpuLinear* out) {
  out->type = type;
  out->n = n;
  out->k = k;
  if (type == kernels::CpuWeightType::kBf16) {
    out->bf16.resize(w.size());
    kernels::FloatToBf16Array(w.data(), out->bf16.data(), static_cast<int64_t>(w.size()));
    std::vector<float>().swap(w);
    out->f32 = nullptr;
  } else {
    out->f32 = w.data();
  }
}

absl::Status RmsNorm(const float* in, const std::vector<float>& weight, int rows, int dim,
                     float eps, float* out) {
  kernels::RmsNormParams p;
  p.in = in;
  p.weight = weight.data();
  p.out = out;
  p.residual = nullptr;
  p.rows = rows;
  p.dim = dim;
  p.eps = eps;
  return kernels::RmsNormRef(p);
}

}  // namespace

absl::StatusOr<kernels::CpuWeightType> ParseCpuWeights(const std::string& name) {
  if (name == "fp32") return kernels::CpuWeightType::kFloat32;
  if (name == "bf16") return kernels::CpuWeightType::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("cpu weights '", name, "' are unknown; use 'fp32' or 'bf16'"));
}

void Model::PrepareLinears() {
  const ModelDims& d = weights_.dims;
  const kernels::CpuWeightType t = options_.cpu_weights;
  const int h = d.hidden, q = weights_.local_heads() * d.head_dim;
  const int kv = weights_.local_kv_heads() * d.head_dim, inter = weights_.local_intermediate();
  linears_.resize(d.num_layers);
  for (int i = 0; i < d.num_layers; ++i) {
    LayerWeights& l = weights_.layers[i];
    LayerLinears& o = linears_[i];
    MakeLinear(l.wq, q, h, t, &o.wq);
    MakeLinear(l.wk, kv, h, t, &o.wk);
    MakeLinear(l.wv, kv, h, t, &o.wv);
    MakeLinear(l.wo, h, q, t, &o.wo);
    MakeLinear(l.w_gate, inter, h, t, &o.gate);
    MakeLinear(l.w_up, inter, h, t, &o.up);
    MakeLinear(l.w_down, h, inter, t, &o.down);
  }
  MakeLinear(weights_.lm_head, static_cast<int>(weights_.vocab_end - weights_.vocab_begin), h, t,
             &lm_head_);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(ModelWeights w, Communicator* comm,
                                                     const ModelOptions& options) {
  const ModelDims& d = w.dims;
  if (comm == nullptr) return absl::InvalidArgumentError("Model needs a communicator");
  if (comm->world_size() != w.world_size || comm->rank() != w.rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "weights are for rank ", w.rank, "/", w.world_size, ", communicator is rank ",
        comm->rank(), "/", comm->world_size()));
  }
  if (options.attention != "dense" && options.attention != "hip") {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention mode '", options.attention, "' is unknown; use 'dense' or 'hip'"));
  }
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
  kvstore::SimpleKvStoreOptions kv_options;
  kv_options.num_layers = d.num_layers;
  kv_options.num_kv_heads = w.local_kv_heads();
  kv_options.head_dim = d.head_dim;
  kv_options.max_tokens_total = options.kv_budget_tokens;
  std::unique_ptr<HipAttention> hip;
  if (options.attention == "hip") {
    HipAttentionOptions ho;
    ho.config = options.hip;
    ho.rope = d.rope;
    ho.num_layers = d.num_layers;
    ho.num_heads = w.local_heads();
    ho.num_kv_heads = w.local_kv_heads();
    ho.head_dim = d.head_dim;
    ho.pretrained_context = d.max_context;
    ho.measure_recall = options.hip_measure_recall;
    ASSIGN_OR_RETURN(hip, HipAttention::Create(ho));
  }
  ASSIGN_OR_RETURN(kvstore::SimpleKvStore * store, kvstore::SimpleKvStore::Create(kv_options));
  auto model = std::unique_ptr<Model>(
      new Model(std::move(w), comm, options, std::unique_ptr<kvstore::SimpleKvStore>(store)));
  model->hip_ = std::move(hip);
  return model;
}

Model::Model(ModelWeights weights, Communicator* comm, const ModelOptions& options,
             std::unique_ptr<kvstore::SimpleKvStore> kv)
    : weights_(std::move(weights)), comm_(comm), options_(options), kv_(std::move(kv)) {
  max_context_ = options_.max_context > 0 ? options_.max_context : weights_.dims.max_context;
  PrepareLinears();
}

absl::Status Model::Release(SequenceId seq) {
  RETURN_IF_ERROR(kv_->Free(seq));
  live_.erase(seq);
  if (hip_ != nullptr) hip_->Release(seq);
  return absl::OkStatus();
}

void Model::ReleaseAll() {
  for (SequenceId seq : live_) kv_->Free(seq).IgnoreError();
  live_.clear();
  if (hip_ != nullptr) hip_->ReleaseAll();
}

absl::Status Model::Validate(const StepBatch& batch, std::optional<SequenceId>* failed) const {
  absl::flat_hash_set<SequenceId> seen;
  for (const SeqStep& s : batch.work) {
    *failed = s.seq;
    const std::string who = absl::StrCat("sequence ", s.seq.value(), ": ");
    if (!seen.insert(s.seq).second) {
      return absl::InvalidArgumentError(who + "appears twice in one step");
    }
    if (s.tokens.empty()) return absl::InvalidArgumentError(who + "no tokens");
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= weights_.dims.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            who, "token id ", t, " outside the vocabulary [0, ", weights_.dims.vocab_size, ")"));
      }
    }
    const bool released =
        std::find(batch.release.begin(), batch.release.end(), s.seq) != batch.release.end();
    int64_t have = 0;
    if (!released && kv_->Contains(s.seq)) {
      ASSIGN_OR_RETURN(have, kv_->Length(s.seq));
    }
    if (s.start_pos != have) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, "step starts at position ", s.start_pos, " but the KV holds ", have, " tokens"));
    }
    if (have + static_cast<int64_t>(s.tokens.size()) > max_context_) {
      return absl::InvalidArgumentError(absl::StrCat(
          who, have + s.tokens.size(), " tokens exceed the maximum context ", max_context_));
    }
  }
  failed->reset();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SampledToken>> Model::Step(const StepBatch& batch) {
  last_failed_.reset();
  for (SequenceId seq : batch.release) {
    if (kv_->Contains(seq)) RETURN_IF_ERROR(Release(seq));
  }
  RETURN_IF_ERROR(Validate(batch, &last_failed_));
  // Remember lengths so that a failure rolls every sequence back.
  std::vector<std::pair<SequenceId, int64_t>> before;
  for (const SeqStep& s : batch.work) {
    if (!kv_->Contains(s.seq)) {
      RETURN_IF_ERROR(kv_->AddSequence(s.seq));
      live_.insert(s.seq);
      before.emplace_back(s.seq, -1);
    } else {
      before.emplace_back(s.seq, s.start_pos);
    }
  }
  HipAttention::Snapshot hip_before;
  if (hip_ != nullptr) {
    std::vector<SequenceId> seqs;
    for (const SeqStep& s : batch.work) seqs.push_back(s.seq);
    hip_before = hip_->Save(seqs);
  }
  std::vector<SampledToken> out;
  absl::Status status = Forward(batch, &out);
  if (!status.ok()) {
    if (hip_ != nullptr) hip_->Restore(hip_before);
    for (const auto& [seq, len] : before) {
      if (len < 0) {
        kv_->Free(seq).IgnoreError();
        live_.erase(seq);
      } else {
        kv_->Truncate(seq, len).IgnoreError();
      }
    }
    return status;
  }
  return out;
}

absl::Status Model::Attention(int layer, const SeqStep& s, const float* q, const float* k,
                              const float* v, float* out) {
  const ModelDims& d = weights_.dims;
  const int n = static_cast<int>(s.tokens.size());
  const int lh = weights_.local_heads(), lkv = weights_.local_kv_heads(), hd = d.head_dim;
  if (hip_ != nullptr) {
    // HiP stores keys without RoPE and rotates what it reads with its own, possibly rewritten,
    // positions (HIP.md 5).
    RETURN_IF_ERROR(kv_->Append(s.seq, common::LayerId(layer), k, v, n));
    ASSIGN_OR_RETURN(kvstore::KvView view, kv_->View(s.seq, common::LayerId(layer)));
    return hip_->Run(s.seq, layer, q, n, s.start_pos, view.k, view.v,
                     static_cast<int>(view.tokens), out);
  }
  // Dense attention only ever uses real positions, so keys are rotated once, when appended,
  // and stored rotated: no per-step pass over the whole cache.
  std::vector<int32_t> positions(n);
  for (int i = 0; i < n; ++i) positions[i] = s.start_pos + i;
  std::vector<float> k_rot(k, k + int64_t{n} * lkv * hd);
  kernels::RopeParams rk;
  rk.x = k_rot.data();
  rk.positions = positions.data();
  rk.tokens = n;
  rk.heads = lkv;
  rk.head_dim = hd;
  rk.config = d.rope;
  RETURN_IF_ERROR(kernels::RopeRef(rk));
  std::vector<float> q_rot(q, q + int64_t{n} * lh * hd);
  kernels::RopeParams rq = rk;
  rq.x = q_rot.data();
  rq.heads = lh;
  RETURN_IF_ERROR(kernels::RopeRef(rq));
  RETURN_IF_ERROR(kv_->Append(s.seq, common::LayerId(layer), k_rot.data(), v, n));
  ASSIGN_OR_RETURN(kvstore::KvView view, kv_->View(s.seq, common::LayerId(layer)));
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

absl::Status Model::Forward(const StepBatch& batch, std::vector<SampledToken>* sampled) {
  const ModelDims& d = weights_.dims;
  const int h = d.hidden, hd = d.head_dim;
  const int lq = weights_.local_heads() * hd, lkv = weights_.local_kv_heads() * hd;
  const int inter = weights_.local_intermediate();
  std::vector<int32_t> ids;
  std::vector<int> offsets;  // first row of each work item
  for (const SeqStep& s : batch.work) {
    offsets.push_back(static_cast<int>(ids.size()));
    ids.insert(ids.end(), s.tokens.begin(), s.tokens.end());
  }
  const int rows = static_cast<int>(ids.size());
  if (rows == 0) return absl::OkStatus();
  if (hip_ != nullptr) {
    for (const SeqStep& s : batch.work) {
      hip_->BeginStep(s.seq, s.start_pos, static_cast<int>(s.tokens.size()));
    }
  }

  std::vector<float> x(int64_t{rows} * h);
  kernels::EmbeddingParams e;
  e.table = weights_.token_embd.data();
  e.vocab_begin = weights_.vocab_begin;
  e.vocab_end = weights_.vocab_end;
  e.hidden = h;
  e.ids = ids.data();
  e.num_tokens = rows;
  e.out = x.data();
  RETURN_IF_ERROR(kernels::EmbeddingRef(e));
  RETURN_IF_ERROR(comm_->AllReduceSum(x.data(), x.size()));  // vocab-sharded rows

  std::vector<float> norm(x.size()), q(int64_t{rows} * lq), k(int64_t{rows} * lkv),
      v(int64_t{rows} * lkv), attn(int64_t{rows} * lq), proj(x.size()),
      gate(int64_t{rows} * inter), up(int64_t{rows} * inter);
  for (int li = 0; li < d.num_layers; ++li) {
    const LayerWeights& l = weights_.layers[li];
    RETURN_IF_ERROR(RmsNorm(x.data(), l.attn_norm, rows, h, d.rms_eps, norm.data()));
    const LayerLinears& ll = linears_[li];
    RETURN_IF_ERROR(Linear(norm.data(), ll.wq, l.bq, rows, q.data()));
    RETURN_IF_ERROR(Linear(norm.data(), ll.wk, l.bk, rows, k.data()));
    RETURN_IF_ERROR(Linear(norm.data(), ll.wv, l.bv, rows, v.data()));
    for (size_t i = 0; i < batch.work.size(); ++i) {
      const int r = offsets[i];
      RETURN_IF_ERROR(Attention(li, batch.work[i], q.data() + int64_t{r} * lq,
                                k.data() + int64_t{r} * lkv, v.data() + int64_t{r} * lkv,
                                attn.data() + int64_t{r} * lq));
    }
    RETURN_IF_ERROR(Linear(attn.data(), ll.wo, {}, rows, proj.data()));
    RETURN_IF_ERROR(comm_->AllReduceSum(proj.data(), proj.size()));
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
    RETURN_IF_ERROR(RmsNorm(x.data(), l.ffn_norm, rows, h, d.rms_eps, norm.data()));
    RETURN_IF_ERROR(Linear(norm.data(), ll.gate, {}, rows, gate.data()));
    RETURN_IF_ERROR(Linear(norm.data(), ll.up, {}, rows, up.data()));
    kernels::SwigluParams sw{gate.data(), up.data(), gate.data(), int64_t{rows} * inter};
    RETURN_IF_ERROR(kernels::SwigluRef(sw));
    RETURN_IF_ERROR(Linear(gate.data(), ll.down, {}, rows, proj.data()));
    RETURN_IF_ERROR(comm_->AllReduceSum(proj.data(), proj.size()));
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
  }
  if (capture_hidden_ != nullptr) *capture_hidden_ = x;  // PrefillLogits (model_logits.cc)

  // Logits for the last token of each sampled sequence.
  std::vector<int> sample_rows;
  for (size_t i = 0; i < batch.work.size(); ++i) {
    if (batch.work[i].sample) {
      sample_rows.push_back(offsets[i] + static_cast<int>(batch.work[i].tokens.size()) - 1);
    }
  }
  if (sample_rows.empty()) return absl::OkStatus();
  const int ns = static_cast<int>(sample_rows.size());
  std::vector<float> last(int64_t{ns} * h);
  for (int i = 0; i < ns; ++i) {
    std::copy_n(x.data() + int64_t{sample_rows[i]} * h, h, last.data() + int64_t{i} * h);
  }
  RETURN_IF_ERROR(RmsNorm(last.data(), weights_.output_norm, ns, h, d.rms_eps, last.data()));
  // Each rank computes its vocab shard, padded to an equal width so AllGather can stack them.
  const int ws = weights_.world_size;
  const int shard = (d.vocab_size + ws - 1) / ws;
  const int local = static_cast<int>(weights_.vocab_end - weights_.vocab_begin);
  std::vector<float> local_logits(int64_t{ns} * shard, -std::numeric_limits<float>::infinity());
  std::vector<float> tmp(int64_t{ns} * std::max(local, 1));
  if (local > 0) {
    RETURN_IF_ERROR(Linear(last.data(), lm_head_, {}, ns, tmp.data()));
    for (int i = 0; i < ns; ++i) {
      std::copy_n(tmp.data() + int64_t{i} * local, local, local_logits.data() + int64_t{i} * shard);
    }
  }
  std::vector<float> gathered(int64_t{ws} * ns * shard);
  RETURN_IF_ERROR(comm_->AllGather(local_logits.data(), local_logits.size(), gathered.data()));
  if (weights_.rank != 0) return absl::OkStatus();
  std::vector<float> logits(d.vocab_size);
  int si = 0;
  for (const SeqStep& s : batch.work) {
    if (!s.sample) continue;
    for (int r = 0; r < ws; ++r) {
      const int begin = r * shard;
      const int count = std::min(shard, d.vocab_size - begin);
      if (count <= 0) break;
      std::copy_n(gathered.data() + (int64_t{r} * ns + si) * shard, count, logits.data() + begin);
    }
    ASSIGN_OR_RETURN(kernels::SampleResult r,
                     kernels::SampleRef(logits.data(), d.vocab_size, s.sampling));
    sampled->push_back(SampledToken{s.seq, r.token, r.logprob});
    ++si;
  }
  return absl::OkStatus();
}

}  // namespace hipserve::worker
