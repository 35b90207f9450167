// ForwardBackend: the operations of one rank's forward pass on one device kind, below the one
// backend-neutral Model (worker/model.h), as ggml_backend is below ggml's graph builder.
//
// Model writes the forward pass once (embedding, norms, linears, attention, MLP, LM head,
// sampling, with the communicator's collectives between them) over this interface; a backend
// owns what depends on the device: its copy of the weights (CPU: fp32 or bf16 host arrays;
// CUDA: bf16 device memory), its activation buffers (host vectors; device memory and a stream),
// the sequences' KV and the attention state (dense or HiP). Buffers handed to Model are Tensors
// of the backend's own memory, passed back to the backend's ops and to the communicator with the
// backend's stream; Model never reads them.
//
// Implementations: CpuBackend (worker/cpu_backend.h; fp32 math, the reference) and CudaBackend
// (worker/cuda_backend.h; bf16 activations and weights, fp32 accumulation), chosen when the
// worker is configured.
//
// Thread-safety: not thread-safe; the Model's thread drives it. Lifetime: owned by the Model.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "common/strong_id.h"
#include "kernels/dtype/dtype.h"
#include "kernels/sampling/sampling.h"

namespace hipserve::worker {

class HipAttention;

// A 2-D activation buffer in a backend's memory (host or device), row-major [rows, cols].
struct Tensor {
  void* data = nullptr;
  kernels::DType dtype = kernels::DType::kFloat32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t numel() const { return rows * cols; }
};

// Linear weights of a layer, PyTorch layout [out, in] (worker/weights.h).
enum class LinearId { kWq, kWk, kWv, kWo, kGate, kUp, kDown };
// RMSNorm weights: a layer's two, or the output norm (layer ignored).
enum class NormId { kAttn, kFfn, kOutput };

// Where each sequence's rows sit in a step. Built by Model from a validated StepBatch.
struct StepLayout {
  struct Item {
    common::SequenceId seq;
    int row = 0;        // first row of the step's [rows, ...] activations
    int tokens = 0;     // > 0
    int start_pos = 0;  // position of the first token (== tokens the sequence holds)
    // HiP: the sequence's own decode refresh intervals (per-request override, validated by
    // Model), empty = the configured ones.
    std::vector<int> mask_refresh_interval;
    // HiP: the sequence's own final keep (per-request override, validated by Model), 0 = the
    // configured k.
    int hip_k = 0;
    // KV rows the sequence may grow to (SeqStep::reserve_tokens), 0 = unknown: a hint for
    // backends that allocate a sequence's KV contiguously.
    int64_t reserve_tokens = 0;
    // The item's last token ends the prompt (its logits are computed): HiP's tail queries
    // (HipStepInfo::tail) run only then.
    bool ends_prompt = true;
  };
  std::vector<int32_t> ids;        // [rows] token ids
  std::vector<int32_t> positions;  // [rows] absolute positions
  std::vector<Item> items;         // in work order
  std::vector<int> logit_rows;     // rows whose logits are computed, in order
  int rows() const { return static_cast<int>(ids.size()); }
};

// Activations of one step, sized by BeginStep. Shapes per rank (local heads / MLP slice / vocab
// shard); dtype: the backend's activation type (fp32 CPU, bf16 CUDA) except logits (fp32).
struct StepBuffers {
  Tensor x;         // [rows, hidden] residual stream
  Tensor norm;      // [rows, hidden]
  Tensor q;         // [rows, local_heads * head_dim]
  Tensor k, v;      // [rows, local_kv_heads * head_dim]
  Tensor attn;      // [rows, local_heads * head_dim]
  Tensor proj;      // [rows, hidden]
  Tensor gate, up;  // [rows, local_intermediate]
  Tensor logits;    // [logit_rows, vocab_shard] fp32; columns past this rank's vocab are -inf
  Tensor gathered;  // [world_size * logit_rows, vocab_shard] fp32; == logits when world is 1
};

// Where a backend's memory goes, decided at creation (GetServerInfo reports rank 0's).
struct MemoryPlan {
  std::string device;        // "cuda:0 <name>", "cpu"
  int64_t budget_bytes = 0;  // what the backend may use
  int64_t weights_bytes = 0;
  int64_t workspace_bytes = 0;
  int64_t kv_bytes = 0;       // the KV pool (CUDA; offload: hot pool + tables) or budget (CPU)
  int64_t kv_tokens = 0;      // tokens the KV store holds (offload: the host tier)
  int64_t host_kv_bytes = 0;  // KV offload: pinned host tier budget
  int64_t gpu_kv_tokens = 0;  // KV offload: tokens the hot page pool holds
  // Element type of the KV as stored: "fp32" (CPU), "bf16" or "fp8_e5m2" (CUDA pool,
  // --kv_dtype; always "fp8_e5m2" with offload), kernels::KvDtypeName's spelling.
  std::string kv_dtype;
};

// Opaque per-backend state saved before a step and restored if it fails (HiP schedules, ...).
// Lookups of a backend's caches since it was created (monotonic; proto CacheCounts says what
// each one counts). Host-side counters: reading them costs no device work.
struct CacheCounters {
  int64_t hip_mask_hits = 0, hip_mask_misses = 0;        // HiP attention only
  int64_t kv_hot_page_hits = 0, kv_hot_page_misses = 0;  // CUDA with KV offload only
};

class BackendCheckpoint {
 public:
  virtual ~BackendCheckpoint() = default;
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;
  virtual std::string name() const = 0;  // "cpu" / "cuda"
  // cudaStream_t of the backend's work (null on the CPU); collectives are queued on it.
  virtual void* stream() = 0;
  // What GetModelInfo reports as the weight/activation dtype ("fp32", "bf16", ...).
  virtual std::string dtype_name() const = 0;
  virtual MemoryPlan memory_plan() const = 0;

  // ---- Sequences' KV -------------------------------------------------------------------
  virtual bool Contains(common::SequenceId seq) const = 0;
  virtual absl::StatusOr<int64_t> Length(common::SequenceId seq) const = 0;  // NotFound
  virtual absl::Status AddSequence(common::SequenceId seq) = 0;
  virtual absl::Status Truncate(common::SequenceId seq, int64_t tokens) = 0;
  virtual absl::Status Free(common::SequenceId seq) = 0;  // NotFound when unknown
  virtual int64_t TokensInUse() const = 0;
  virtual int64_t CapacityTokens() const = 0;
  virtual int NumSequences() const = 0;
  // Attention state of `seqs` for rollback; Restore puts it back after a failed step.
  virtual std::unique_ptr<BackendCheckpoint> Save(
      const std::vector<common::SequenceId>& seqs) const = 0;
  virtual void Restore(const BackendCheckpoint& checkpoint) = 0;
  // HiP state (CPU backend in hip mode), for tests and tools; nullptr otherwise.
  virtual const HipAttention* hip() const { return nullptr; }
  virtual CacheCounters cache_counters() const { return {}; }

  // ---- One step --------------------------------------------------------------------------
  // Sizes the step's buffers (reusing earlier ones when large enough) and stages ids and
  // positions. `world_size` and `vocab_shard` size `logits` / `gathered`.
  virtual absl::StatusOr<StepBuffers> BeginStep(const StepLayout& layout, int world_size,
                                                int vocab_shard) = 0;
  // x = this rank's embedding rows of the step's ids (zero rows for ids outside its shard).
  virtual absl::Status Embed(const Tensor& x) = 0;
  // out = rmsnorm(in) * weight.
  virtual absl::Status RmsNorm(const Tensor& in, int layer, NormId norm, const Tensor& out) = 0;
  // residual += in; out = rmsnorm(residual) * weight.
  virtual absl::Status AddRmsNorm(const Tensor& residual, const Tensor& in, int layer, NormId norm,
                                  const Tensor& out) = 0;
  // out = in W^T (+ bias).
  virtual absl::Status Linear(const Tensor& in, int layer, LinearId w, const Tensor& out) = 0;
  // gate = silu(gate) * up.
  virtual absl::Status Swiglu(const Tensor& gate, const Tensor& up) = 0;
  // The attention block's projections: q, k, v = in Wq^T, in Wk^T, in Wv^T (+ biases). A
  // backend may run them as one GEMM over its concatenated weights.
  virtual absl::Status LinearQkv(const Tensor& in, int layer, const Tensor& q, const Tensor& k,
                                 const Tensor& v) {
    RETURN_IF_ERROR(Linear(in, layer, LinearId::kWq, q));
    RETURN_IF_ERROR(Linear(in, layer, LinearId::kWk, k));
    return Linear(in, layer, LinearId::kWv, v);
  }
  // The MLP's first half: gate = silu(in Wgate^T) * (in Wup^T); `up` is scratch of gate's shape.
  // A backend may run both projections as one GEMM and fuse the product.
  virtual absl::Status MlpGateUp(const Tensor& in, int layer, const Tensor& gate,
                                 const Tensor& up) {
    RETURN_IF_ERROR(Linear(in, layer, LinearId::kGate, gate));
    RETURN_IF_ERROR(Linear(in, layer, LinearId::kUp, up));
    return Swiglu(gate, up);
  }
  // Appends the step's k, v (un-rotated) to each item's sequence at layer `layer` and writes
  // the attention of q over the sequence's keys (causal) to out. Positions from the layout.
  virtual absl::Status Attention(int layer, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& out) = 0;
  // logits[i] = LM head of normed row layout.logit_rows[i] (vocab-shard columns; padding -inf).
  virtual absl::Status LmHead(const Tensor& normed, const Tensor& logits) = 0;
  // Samples one token per logit row from `gathered` (this rank's layout: [world][rows][shard]).
  virtual absl::StatusOr<std::vector<kernels::SampleResult>> Sample(
      const Tensor& gathered, int world_size, int vocab_size,
      const std::vector<kernels::SamplingOptions>& options) = 0;
  // Host copy of the gathered logits as [rows][vocab_size] fp32 (accuracy tools).
  virtual absl::StatusOr<std::vector<float>> ReadLogits(const Tensor& gathered, int world_size,
                                                        int vocab_size) = 0;

  // ---- Candidate sampling at world size > 1 (worker/model_sampling.cc) ------------------
  // records row i = this rank's candidate record (kernels/sampling/candidates.h) of `logits` row
  // i: the best `c` of its vocabulary shard's columns with global ids, and the shard's
  // normalisers at temperatures[i]. records: [logits.rows, CandidateRecordWords(c)] kInt32.
  virtual absl::Status Candidates(const Tensor& logits, int c,
                                  const std::vector<float>& temperatures,
                                  const Tensor& records) = 0;
  // out row i = logits row rows[i] (packs the rows the candidates could not settle).
  virtual absl::Status SelectRows(const Tensor& logits, const std::vector<int>& rows,
                                  const Tensor& out) = 0;
  // A [rows, cols] `dtype` buffer in the backend's memory (collective operands); slot s's
  // buffer is reused, its contents lost, by the next Scratch(s, ...). Slots 0..3.
  virtual absl::StatusOr<Tensor> Scratch(int slot, int64_t rows, int64_t cols,
                                         kernels::DType dtype) = 0;
  // Copies t.numel() elements between a backend tensor and host memory; waits for them.
  virtual absl::Status ToHost(const Tensor& t, void* host) = 0;
  virtual absl::Status FromHost(const void* host, const Tensor& t) = 0;
  // Waits for the step's device work; returns the first asynchronous error.
  virtual absl::Status Finish() = 0;
};

// Copies gathered logits [world][rows][shard] into [rows][vocab] (host memory; helper shared by
// the backends' host paths).
void UnshardLogits(const float* gathered, int world_size, int rows, int shard, int vocab_size,
                   float* out);

}  // namespace hipserve::worker
