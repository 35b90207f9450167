// Model: one rank's share of a Llama-family decoder and the KV of its sequences.
//
// Owns its weights shard and KV store; borrows the Communicator (must outlive the Model).
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
#include "kernels/cpu_gemv/gemv.h"
#include "kernels/hip/hip_params.h"
#include "kernels/sampling/sampling.h"
#include "kvstore/simple_store.h"
#include "worker/communicator.h"
#include "worker/hip_attention.h"
#include "worker/weights.h"

namespace hipserve::worker {

using common::SequenceId;

struct ModelOptions {
  // "dense" (exact causal attention) or "hip" (HiP sparse attention, HIP.md; see
  // worker/hip_attention.h).
  std::string attention = "dense";
  // HiP parameters, used when attention == "hip" (see worker/hip_config.h for the JSON form).
  kernels::HipConfig hip;
  // Diagnostic: HipAttentionOptions::measure_recall (benchmarks only; slow).
  bool hip_measure_recall = false;
  // Longest sequence accepted (prompt + generated). 0 = the model's pretrained length.
  int max_context = 0;
  // KV budget over all sequences, in tokens (each token: all layers, K and V).
  int64_t kv_budget_tokens = 1 << 20;
  // Storage of the linear weights (Q/K/V/O, MLP, LM head) on the CPU backend (--cpu_weights).
  // kFloat32: as loaded. kBf16: rounded to bf16 (round-to-nearest-even) once in Create, the
  // fp32 copies freed; products still accumulate in fp32 (kernels/cpu_gemv/gemv.h). Halves the
  // bytes a decode step streams; logits move by ~1e-2 (tests/reference/logits_test.cc).
  // Embeddings, norms and biases stay fp32 in both modes.
  kernels::CpuWeightType cpu_weights = kernels::CpuWeightType::kFloat32;
};

// Parses "fp32" / "bf16" (the --cpu_weights flag values).
absl::StatusOr<kernels::CpuWeightType> ParseCpuWeights(const std::string& name);

// One linear weight [n, k] as the CPU forward pass reads it: fp32 (pointing into the Model's
// ModelWeights) or an owned bf16 copy.
struct CpuLinear {
  kernels::CpuWeightType type = kernels::CpuWeightType::kFloat32;
  const float* f32 = nullptr;
  std::vector<uint16_t> bf16;
  int n = 0, k = 0;
  const void* data() const {
    return type == kernels::CpuWeightType::kBf16 ? static_cast<const void*>(bf16.data()) : f32;
  }
};

// One sequence's part of a step: append `tokens` at positions start_pos.. and optionally
// sample the next token after the last one.
struct SeqStep {
  SequenceId seq;
  std::vector<int32_t> tokens;
  int32_t start_pos = 0;  // must equal the tokens the sequence already holds
  bool sample = false;
  kernels::SamplingOptions sampling;
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

  const ModelDims& dims() const { return weights_.dims; }
  kernels::CpuWeightType cpu_weights() const { return options_.cpu_weights; }
  int max_context() const { return max_context_; }
  int64_t kv_tokens() const { return kv_->TokensInUse(); }
  int64_t kv_capacity_tokens() const { return options_.kv_budget_tokens; }
  int num_sequences() const { return kv_->NumSequences(); }
  // The HiP state (per-sequence schedule and mask cache); nullptr unless attention == "hip".
  const HipAttention* hip() const { return hip_.get(); }

 private:
  Model(ModelWeights weights, Communicator* comm, const ModelOptions& options,
        std::unique_ptr<kvstore::SimpleKvStore> kv);
  // On failure sets *failed to the offending sequence.
  absl::Status Validate(const StepBatch& batch, std::optional<SequenceId>* failed) const;
  absl::Status Forward(const StepBatch& batch, std::vector<SampledToken>* out);
  absl::Status Attention(int layer, const SeqStep& s, const float* q, const float* k,
                         const float* v, float* out);
  // Sets up linears_ / lm_head_ (converting to bf16 and freeing fp32 when asked).
  void PrepareLinears();

  struct LayerLinears {
    CpuLinear wq, wk, wv, wo, gate, up, down;
  };

  ModelWeights weights_;
  Communicator* comm_;
  ModelOptions options_;
  int max_context_;
  std::unique_ptr<kvstore::SimpleKvStore> kv_;
  std::optional<SequenceId> last_failed_;
  absl::flat_hash_set<SequenceId> live_;  // sequences with KV in kv_
  std::unique_ptr<HipAttention> hip_;     // set when options_.attention == "hip"
  std::vector<LayerLinears> linears_;     // [num_layers]
  CpuLinear lm_head_;
  // When set, Forward copies the final hidden states (all rows, before the output norm) here.
  std::vector<float>* capture_hidden_ = nullptr;
};

}  // namespace hipserve::worker
