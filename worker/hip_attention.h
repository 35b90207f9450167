// HipAttention: HiP sparse attention for the worker's CPU forward pass (HIP.md 4 and 6), built
// on the kernels/hip references: per query block mask estimation, then block-sparse attention.
//
// Owns the per-sequence HiP state: the decode step counter and, per (layer, local KV head),
// the kept chunk list of every pruning stage from the latest refresh (the decode mask cache).
// Sequences are independent: a sequence's schedule never depends on what else is batched.
// Thread-safety: not thread-safe; driven by the Model's thread (Run itself may fan out over
// HipAttentionOptions::threads internally). Snapshot/Restore make a step
// transactional (the cache entries are immutable and shared, so a snapshot is cheap).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/strong_id.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/hip/rope_table.h"
#include "kernels/rope/rope.h"

namespace hipserve::worker {

struct HipAttentionOptions {
  kernels::HipConfig config;  // validated by Create
  kernels::RopeConfig rope;   // the model's RoPE
  int num_layers = 0;         // > 0
  int num_heads = 0;          // local query heads (> 0, multiple of num_kv_heads)
  int num_kv_heads = 0;       // local KV heads (> 0)
  int head_dim = 0;           // > 0, even
  // The model's pretrained context length; resolves config.extend_min_tokens = -1 (0 there =
  // unknown: extend always).
  int pretrained_context = 0;
  // Diagnostic (benchmarks only; costs a dense attention pass per measured query): for the
  // last query of every query block, measure the dense attention mass the selection keeps
  // (kernels/hip/selection_recall.h) and accumulate it per layer (recall_stats()).
  bool measure_recall = false;
  // Parallelism of mask estimation and BSA inside one Run: 1 runs inline; anything else (0 =
  // the machine's hardware threads) fans out over the shared CPU pool (common::ParallelFor,
  // sized by HIPSERVE_CPU_THREADS). Results do not depend on it.
  int threads = 0;
};

// Sums of kernels::SelectionRecall over measured (query, KV head) pairs.
struct HipRecallSums {
  double fixed = 0, selected = 0, oracle = 0;
  double worst_selected = 1;  // lowest single "selected" value
  int64_t samples = 0;
  void Add(double fixed_mass, double selected_mass, double oracle_mass);
};
// One layer's recall: every measured query, and only the queries that produce a token (the
// last query of a step: decode steps and the last prompt position).
struct HipRecallStats {
  HipRecallSums all;
  HipRecallSums last;
};

// Decode mask cache lookups, per (decode step, sequence, layer) Run: hits reuse the cached final
// block lists (no mask estimation), misses estimate (from the refresh stage, or from stage 0 when
// nothing is cached). Prefill steps always estimate and are not lookups.
struct HipMaskCacheCounts {
  int64_t hits = 0;
  int64_t misses = 0;
};

// What BeginStep decided for a sequence's current step.
struct HipStepInfo {
  bool decode = false;      // one new token after existing ones; else a prefill chunk
  int64_t decode_step = 0;  // decode steps since the last prefill chunk (0 = first decode)
  // Stage recomputed from (0 = all stages), or -1 = cached final blocks reused. Prefill: 0.
  int refresh_stage = 0;
  // Prefill: the step's last HipConfig::tail_queries queries get one selection each. Only the
  // step that ends the prompt (the one that samples) does this, so where earlier chunks end
  // (which depends on what else is batched) changes no selection when the cuts fall on
  // multiples of block_q and leave tail_queries tokens to the last step (the scheduler's cuts).
  bool tail = true;
};

// The per-sequence schedule (HIP.md 4), shared by HipAttention and CudaHipAttention: a step of
// one token at start_pos > 0 is decode step i = *next_decode_step (which advances), refreshing
// from DecodeRefreshStage(config, i); anything else is a prefill chunk, which restarts the count
// (result.decode == false: the caller drops its cached masks). A non-empty `refresh_interval`
// (the sequence's own mask_refresh_interval, one value >= 1 per stage: a per-request override)
// replaces config.mask_refresh_interval for this step.
// `ends_prompt`: a prefill step that ends the prompt (HipStepInfo::tail).
HipStepInfo NextHipStep(const kernels::HipConfig& config, int start_pos, int num_tokens,
                        int64_t* next_decode_step, const std::vector<int>& refresh_interval = {},
                        bool ends_prompt = true);

// The largest final keep a request may ask for (GenerateRequest.hip.k, SeqStep::hip_k, which
// replaces config.k for the layers without a layer override): the last stage_keep when there
// are several stages (a stage never keeps more than its input), else `max_context` rounded
// down to the block size (at least one block). Valid request values are the positive multiples
// of config.block_size() up to this bound.
int MaxRequestK(const kernels::HipConfig& config, int max_context);

class HipAttention {
 public:
  static absl::StatusOr<std::unique_ptr<HipAttention>> Create(const HipAttentionOptions& options);

  // Starts a step of `seq` (call once per step, before Run for its layers): a step of one
  // token at start_pos > 0 is decode step i = number of decode steps since the last prefill
  // chunk; anything else is a prefill chunk, which resets the counter and drops the cache.
  // `refresh_interval`: the sequence's own decode refresh intervals (per-request override; one
  // value >= 1 per stage, the caller validates), empty = config().mask_refresh_interval. Only
  // this sequence's schedule changes; the batch does not matter.
  // `ends_prompt`: false for a prefill chunk that does not end the prompt (no tail queries).
  // `k`: the sequence's own final keep for the layers without a layer override (per-request
  // override: a positive multiple of config().block_size(), at most
  // MaxRequestK(config(), ...); the caller validates), 0 = config().k. A sequence
  // keeps one k for its life (a prefill chunk with another k drops the cache anyway).
  void BeginStep(common::SequenceId seq, int start_pos, int num_tokens,
                 const std::vector<int>& refresh_interval = {}, bool ends_prompt = true, int k = 0);

  // Attention of one layer for the step's `num_q` queries at positions start_pos.. over all
  // `num_kv` keys of the sequence (the new ones included: start_pos + num_q == num_kv).
  // q: [num_q][num_heads][head_dim] un-rotated; k, v: [num_kv][num_kv_heads][head_dim]
  // (k un-rotated); out: [num_q][num_heads][head_dim].
  absl::Status Run(common::SequenceId seq, int layer, const float* q, int num_q, int start_pos,
                   const float* k, const float* v, int num_kv, float* out);

  // The decision of BeginStep for the sequence's current step (NotFound before any).
  absl::StatusOr<HipStepInfo> CurrentStep(common::SequenceId seq) const;
  // Final block starts cached for (seq, layer, kv_head) by the latest decode step; nullptr
  // when there is none.
  const std::vector<int32_t>* CachedBlocks(common::SequenceId seq, int layer, int kv_head) const;

  // Saved state of some sequences (absent ones included), for rolling a failed step back.
  struct SeqState;
  using Snapshot = std::vector<std::pair<common::SequenceId, std::shared_ptr<const SeqState>>>;
  Snapshot Save(const std::vector<common::SequenceId>& seqs) const;
  void Restore(const Snapshot& snapshot);

  void Release(common::SequenceId seq);
  void ReleaseAll();
  int num_sequences() const { return static_cast<int>(states_.size()); }
  const kernels::HipConfig& config() const { return options_.config; }
  // Keys a sequence must exceed for its steps to use the context extension (config.extend on).
  int extend_min_tokens() const { return extend_min_tokens_; }
  // [num_layers]; all zero unless options.measure_recall.
  const std::vector<HipRecallStats>& recall_stats() const { return recall_; }
  // Since Create (failed steps included).
  const HipMaskCacheCounts& mask_cache_counts() const { return mask_cache_; }

  // Per (layer, KV head): the kept list of every stage from the latest refresh.
  struct HeadCache {
    std::vector<kernels::ChunkList> kept;  // [stages]
  };
  struct SeqState {
    HipStepInfo step;
    int64_t next_decode_step = 0;
    int k = 0;  // BeginStep's k (0 = config's)
    // [num_layers * num_kv_heads]; null = nothing cached. Entries are immutable once stored.
    std::vector<std::shared_ptr<const HeadCache>> cache;
  };

 private:
  HipAttention(const HipAttentionOptions& options, kernels::RopeTable rope);
  absl::Status EnsureRope(int positions);

  // The pruning specs of every layer for a final keep k (0 = config's).
  struct LayerSpecs {
    std::vector<kernels::PruningSpec> ext;   // [num_layers], extension on
    std::vector<kernels::PruningSpec> real;  // [num_layers], real positions
  };
  static LayerSpecs MakeLayerSpecs(const kernels::HipConfig& config, int num_layers);
  const LayerSpecs& SpecsFor(int k);

  HipAttentionOptions options_;
  kernels::RopeTable rope_;
  // By final keep: 0 = the configured k; others built on a sequence's first use (per-request
  // k, a bounded set of multiples of the block size).
  absl::flat_hash_map<int, std::unique_ptr<const LayerSpecs>> specs_;
  int extend_min_tokens_ = 0;
  absl::flat_hash_map<common::SequenceId, SeqState> states_;
  std::vector<HipRecallStats> recall_;
  HipMaskCacheCounts mask_cache_;
};

}  // namespace hipserve::worker
