// Model: one rank's share of a Llama-family decoder and the KV of its sequences, over one
// forward backend (worker/forward_backend.h: CPU or CUDA, chosen by ModelOptions::backend).
//
// The one backend-neutral home of the step logic: validation, rollback of a failed step, batch
// layout, the forward pass's sequence of operations and collectives, sampling bookkeeping. The
// backend owns the weights, activations, KV and attention state. Owns the backend; borrows the
// Communicator (must outlive the Model).
// Thread-safety: not thread-safe; one thread (the worker's step executor) drives it.
// A failed Step leaves every sequence exactly as it was before the step.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/strong_id.h"
#include "kernels/sampling/sampling.h"
#include "worker/communicator.h"
#include "worker/forward_backend.h"
#include "worker/hip_attention.h"
#include "worker/model_options.h"
#include "worker/weights.h"

namespace hipserve::worker {

using common::SequenceId;

// One sequence's part of a step: append `tokens` at positions start_pos.. and optionally
// sample the next token after the last one.
struct SeqStep {
  SequenceId seq;
  std::vector<int32_t> tokens;
  int32_t start_pos = 0;  // must equal the tokens the sequence already holds
  bool sample = false;
  kernels::SamplingOptions sampling;
  // HiP attention: this sequence's decode refresh intervals (per-request override; one value
  // >= 1 per pruning stage), empty = ModelOptions::hip's. Sent with every step of the sequence.
  std::vector<int> mask_refresh_interval;
  // HiP attention: this sequence's final keep in tokens for the layers without a layer override
  // (per-request override: a positive multiple of the block size, at most the last stage_keep
  // when there are several stages), 0 = ModelOptions::hip's k. Sent with every step.
  int hip_k = 0;
  // KV tokens the sequence may grow to (SeqWork.reserve_tokens), 0 = unknown; a hint.
  int64_t reserve_tokens = 0;
};

struct StepBatch {
  std::vector<SequenceId> release;  // freed before the work runs; unknown ids are ignored
  std::vector<SeqStep> work;        // at most one entry per sequence
};

struct SampledToken {
  SequenceId seq;
  int32_t token = 0;
  float logprob = 0.f;
};

// How the rows of sharded steps (world size > 1) were sampled, since the Model was created (every
// rank counts the same). Rows that were sampled from the gathered candidates alone, and rows
// whose whole logits were gathered (the options need the whole row, or the candidates could not
// prove the result; see kernels/sampling/candidates.h).
struct ShardedSamplingStats {
  int64_t candidate_rows = 0;
  int64_t fallback_rows = 0;
};

class Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Create(ModelWeights weights, Communicator* comm,
                                                       const ModelOptions& options);

  // Runs the batch; returns the sampled tokens (in work order, sample=true entries only) on
  // rank 0 and an empty list on other ranks.
  absl::StatusOr<std::vector<SampledToken>> Step(const StepBatch& batch);
  // Appends `tokens` to `seq` at start_pos (like a SeqStep without sampling) and returns the
  // logits of every appended position, row-major [tokens.size()][vocab_size]. Single-rank
  // models only (FailedPrecondition otherwise). For accuracy tools (perplexity, reference
  // checks); implemented in model_logits.cc.
  absl::StatusOr<std::vector<float>> PrefillLogits(SequenceId seq,
                                                   const std::vector<int32_t>& tokens,
                                                   int start_pos);
  // After a failed Step: the sequence the failure belongs to (a validation error names one
  // sequence; an error of the whole batch, e.g. a backend failure, names none). Reset by every
  // Step. The scheduler fails only that request and retries the rest.
  std::optional<SequenceId> last_failed_sequence() const { return last_failed_; }
  // Frees a sequence's KV. NotFound when unknown.
  absl::Status Release(SequenceId seq);
  // Frees every sequence.
  void ReleaseAll();

  const ModelDims& dims() const { return dims_; }
  // The backend's name ("cpu" / "cuda") and weight dtype ("fp32", "bf16").
  std::string backend_name() const { return backend_->name(); }
  std::string dtype_name() const { return backend_->dtype_name(); }
  MemoryPlan memory_plan() const { return backend_->memory_plan(); }
  int max_context() const { return max_context_; }
  int64_t kv_tokens() const { return backend_->TokensInUse(); }
  CacheCounters cache_counters() const { return backend_->cache_counters(); }
  int64_t kv_capacity_tokens() const { return backend_->CapacityTokens(); }
  int num_sequences() const { return backend_->NumSequences(); }
  // The HiP state (per-sequence schedule and mask cache) of the CPU backend in hip mode;
  // nullptr otherwise.
  const HipAttention* hip() const { return backend_->hip(); }
  const ShardedSamplingStats& sharded_sampling_stats() const { return sharded_stats_; }

 private:
  Model(const ModelWeights& weights, Communicator* comm, const ModelOptions& options,
        std::unique_ptr<ForwardBackend> backend);
  // On failure sets *failed to the offending sequence.
  absl::Status Validate(const StepBatch& batch, std::optional<SequenceId>* failed) const;
  // Runs the layers; samples (or, with logits_out, returns every logit row) on rank 0.
  absl::Status Forward(const StepBatch& batch, bool all_logits, std::vector<SampledToken>* out,
                       std::vector<float>* logits_out);
  // Step's body after release; all_logits as Forward.
  absl::StatusOr<std::vector<SampledToken>> RunStep(const StepBatch& batch, bool all_logits,
                                                    std::vector<float>* logits_out);
  // World size > 1: samples the logit rows of `b` (one per options entry) from the ranks'
  // candidate records, gathering whole rows only for those the records can't settle
  // (model_sampling.cc). Every rank calls it; `out` is filled on rank 0.
  absl::Status SampleSharded(const StepBuffers& b,
                             const std::vector<kernels::SamplingOptions>& options,
                             std::vector<kernels::SampleResult>* out);
  absl::Status AllReduce(const Tensor& t) {
    return comm_->AllReduceSum(t.data, t.numel(), t.dtype, backend_->stream());
  }

  ModelDims dims_;
  int rank_ = 0, world_size_ = 1;
  int64_t vocab_begin_ = 0, vocab_end_ = 0;
  Communicator* comm_;
  ModelOptions options_;
  int max_context_;
  std::unique_ptr<ForwardBackend> backend_;
  std::optional<SequenceId> last_failed_;
  absl::flat_hash_set<SequenceId> live_;  // sequences with KV in the backend
  ShardedSamplingStats sharded_stats_;
};

}  // namespace hipserve::worker
