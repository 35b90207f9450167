// CudaHipAttention: HiP sparse attention for the worker's CUDA forward pass, the GPU twin of
// HipAttention (worker/hip_attention.h). Same options, same per-sequence schedule (BeginStep),
// same selection, called per (sequence, layer) exactly as the CPU backend calls
// HipAttention::Run, on bf16 device tensors (K/V bf16 or fp8 e5m2), or (RunDecodeBatch) for the
// decode tokens of many sequences of one layer at once. Built on the tested kernels:
//   - prefill rows (64-query blocks aligned to absolute positions): HipPrefillMaskGpu
//     (kernels/hip_cuda/prefill_mask.h) + BsaPrefillAttentionGpu (attention_cuda/bsa_prefill.h);
//   - the last HipConfig::tail_queries queries of a prefill step (one row each) and decode
//     steps: HipDecodeMaskGpu (hip_cuda/mask_estimation.h; batch = those queries, kv_start 0,
//     kv_len = position + 1) + BsaDecodeAttentionGpu (attention_cuda/decode_attention.h) with
//     in-kernel RoPE and the HIP.md 5 position rewrites;
//   - decode mask reuse (HIP.md 4): each sequence keeps per layer the kept list of every stage
//     in device memory; a step restarts from its refresh stage or reuses the final list;
//   - batched decode (RunDecodeBatch): one small kernel gathers each sequence's cached input
//     list (and, for reuse, its final list) into batch-major workspace arrays, one
//     HipDecodeMaskGpu call (per-sequence refresh stages through seq_start_stage) and one
//     BsaDecodeAttentionGpu call serve all sequences, and one kernel scatters the refreshed
//     stages back into the sequences' lists (tiered K/V: per-sequence tables through
//     TieredKvSource::entries).
// The selected block lists equal HipAttention's exactly (the kernels are bit-exact against the
// CPU reference); outputs agree within bf16 rounding (bf16 q/k/v/out, fp32 math).
//
// Supported (Create returns InvalidArgument otherwise): head_dim 64 or 128, group
// (num_heads / num_kv_heads) 1..8, config.block_q == 64, last chunk size 8, at most 4 stages.
// measure_recall is CPU-only (InvalidArgument); options.threads is ignored.
//
// Owns (device memory, cudaMalloc): the RoPE table (HipRopeRows layout, grown geometrically),
// one workspace shared by all Runs (grown geometrically), and pooled per-(sequence, layer,
// stage) mask lists. Growing a table or workspace synchronises the Run's stream once.
// Stream rule: Runs of one object must be ordered on one stream (or the caller serialises
// them): they share the workspace, and pooled list buffers are recycled in stream order.
// Lifetime: the destructor synchronises the device; snapshots may outlive the object.
// Thread-safety: not thread-safe; driven by the backend's thread.
// Host syncs: none in a Run or RunDecodeBatch, except when the RoPE table or workspace grows.
// CUDA builds only (compiled with cuda_backend.cu); the header carries no CUDA types.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/strong_id.h"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/dtype/dtype.h"
#include "kernels/hip/hip_params.h"
#include "worker/hip_attention.h"

namespace hipserve::worker {

class CudaHipAttention {
 public:
  // Validates `options` (as HipAttention::Create, plus the GPU limits above) and allocates the
  // initial RoPE table on the current device.
  static absl::StatusOr<std::unique_ptr<CudaHipAttention>> Create(
      const HipAttentionOptions& options);
  ~CudaHipAttention();
  CudaHipAttention(const CudaHipAttention&) = delete;
  CudaHipAttention& operator=(const CudaHipAttention&) = delete;

  // As HipAttention::BeginStep: one token at start_pos > 0 is decode step i (i = decode steps
  // since the last prefill chunk, refresh stage DecodeRefreshStage(config, i)); anything else
  // is a prefill chunk, which resets the counter and drops the cached lists. Host only.
  // `refresh_interval`: the sequence's own intervals (per-request override), empty = config's;
  // RunDecodeBatch follows each sequence's own refresh stage, so overrides mix in one batch.
  // `ends_prompt`, `k`: as HipAttention::BeginStep (k: the sequence's final keep for layers
  // without a layer override, 0 = config's; RunDecodeBatch groups sequences by k).
  void BeginStep(common::SequenceId seq, int start_pos, int num_tokens,
                 const std::vector<int>& refresh_interval = {}, bool ends_prompt = true, int k = 0);

  // Attention of one layer for the step's num_q queries at positions start_pos.. over all
  // num_kv = start_pos + num_q keys of the sequence. Device tensors, 16-byte aligned, contiguous
  // rows; q / out bf16 (uint16_t storage), k / v in `kv_dtype` (bf16, or fp8 e5m2 codes: the
  // backend's pool with --kv_dtype=fp8; every kernel decodes them exactly):
  //   q:    [num_q][num_heads][head_dim], un-rotated
  //   k, v: [num_kv][num_kv_heads][head_dim], the sequence's rows (k un-rotated)
  //   out:  [num_q][num_heads][head_dim]; must not alias q, k, v
  // Enqueued on `stream` (a cudaStream_t; null = legacy default stream); asynchronous.
  absl::Status Run(common::SequenceId seq, int layer, const void* q, int num_q, int start_pos,
                   const void* k, const void* v, int num_kv, void* out, void* stream,
                   kernels::KvDtype kv_dtype = kernels::KvDtype::kBf16);
  // The same over offloaded K/V (worker/cuda_kv_tiers.h): every kernel reads the sequence's
  // keys and values through `tiered` (fp8 e5m2 hot rows or cold pages; one sequence, b = 0).
  absl::Status RunTiered(common::SequenceId seq, int layer, const void* q, int num_q, int start_pos,
                         const kernels::TieredKvSource& tiered, int num_kv, void* out,
                         void* stream);

  // One decode query of a RunDecodeBatch.
  struct DecodeItem {
    common::SequenceId seq;
    const void* q = nullptr;         // [num_heads][head_dim] bf16, the query at position num_kv - 1
    void* out = nullptr;             // [num_heads][head_dim] bf16; must not alias q or K/V
    int num_kv = 0;                  // the sequence's keys, the new one included (start_pos + 1)
    int64_t kv_row = 0;              // contiguous K/V: row of the sequence's key 0 in k / v
    kernels::TieredKvSource tiered;  // offloaded K/V: the sequence's source (one sequence)
  };
  // The decode attention of one layer for many sequences at once: the same lists, cached state
  // and outputs as calling Run / RunTiered(item.seq, layer, item.q, 1, num_kv - 1, ...) for each
  // item in turn, with one mask and one BSA call for all items whose step has the same extend
  // mode (cfg.extend && num_kv > extend_min_tokens) and the same final keep (BeginStep's k):
  // one group per (extend, k) pair present, two at most when no request overrides k. Every item's
  // sequence must be in a decode step (BeginStep with one token at num_kv - 1 > 0:
  // FailedPrecondition otherwise) and appear once. K/V: the contiguous pool `k`, `v` (`kv_dtype`)
  // ([rows][num_kv_heads] [head_dim], item i's token t at row kv_row + t) when non-null; null: each
  // item's `tiered` (CudaKvTiers::Source), all with the same bank_k / bank_v. q / out rows that are
  // consecutive in item order ([n][num_heads][head_dim]) are used in place; others are copied
  // through the workspace. Outputs equal the per-sequence path's up to the BSA kernel's
  // partition plan, which depends on the batch (SetBsaDecodePlanForTesting fixes it).
  // LastRunBlocks then reports lists[i * num_kv_heads + kvh] for item i. On error no sequence's
  // cached lists are replaced, but (as with Run) kernels may have been enqueued and lists that
  // no snapshot holds may have been rewritten in place: roll a failed step back with Restore.
  absl::Status RunDecodeBatch(int layer, const std::vector<DecodeItem>& items, const void* k,
                              const void* v, void* stream,
                              kernels::KvDtype kv_dtype = kernels::KvDtype::kBf16);

  // Profiling (HIPSERVE_PROFILE): when set, called with the stream right before each mask
  // estimation (kMask), each BSA call (kBsa), and after them (kDone), so the caller can record
  // an event per phase (StepProfiler in cuda_backend.cu). Unset (the default): no cost.
  enum class Phase { kMask, kBsa, kDone };
  void SetPhaseHook(std::function<void(Phase, void* stream)> hook);

  // Tests: fixes BsaDecodeGpuParams::num_splits / keys_per_step of every decode BSA call (0 =
  // automatic, the default), so outputs do not depend on the batch (for keys lists of one
  // logical length: sequences longer than n_sink and n_window + 1).
  void SetBsaDecodePlanForTesting(int num_splits, int keys_per_step);

  // The decision of BeginStep for the sequence's current step (NotFound before any).
  absl::StatusOr<HipStepInfo> CurrentStep(common::SequenceId seq) const;

  // Diagnostics and tests (copy from the device and synchronise `stream`):
  // Final block starts cached for (seq, layer, kv_head) by the latest decode step, as
  // HipAttention::CachedBlocks; NotFound when there is none.
  absl::StatusOr<std::vector<int32_t>> CachedBlocks(common::SequenceId seq, int layer, int kv_head,
                                                    void* stream) const;
  // The block lists the latest Run (or RunDecodeBatch: query i = item i) attended with:
  // lists[i * num_kv_heads + kvh] = ascending block starts of query i of that Run (queries of
  // one prefill row share a list). Valid until the next Run; FailedPrecondition when there was
  // no successful Run since.
  struct RunBlocks {
    int num_q = 0;
    int num_kv_heads = 0;
    std::vector<std::vector<int32_t>> lists;  // [num_q * num_kv_heads]
  };
  absl::StatusOr<RunBlocks> LastRunBlocks(void* stream) const;

  // Saved state of some sequences (absent ones included), for rolling a failed step back, as
  // HipAttention::Save / Restore. Cheap: the saved lists are shared, and a Run never writes a
  // list buffer that a snapshot still holds (it takes a fresh one from the pool).
  struct SeqState;  // defined in cuda_hip_attention.cu
  using Snapshot = std::vector<std::pair<common::SequenceId, std::shared_ptr<const SeqState>>>;
  Snapshot Save(const std::vector<common::SequenceId>& seqs) const;
  void Restore(const Snapshot& snapshot);

  // Drop a sequence's state (its list buffers go back to the pool once no snapshot holds them).
  void Release(common::SequenceId seq);
  void ReleaseAll();
  int num_sequences() const;
  // Decode mask cache lookups since Create, as HipAttention::mask_cache_counts (one per
  // sequence and layer of a decode Run or RunDecodeBatch item; host-side counters).
  const HipMaskCacheCounts& mask_cache_counts() const;
  const kernels::HipConfig& config() const;
  // Keys a sequence must exceed for its steps to use the context extension (config.extend on).
  int extend_min_tokens() const;

 private:
  struct Impl;
  explicit CudaHipAttention(std::unique_ptr<Impl> impl);
  // k, v contiguous in k_dtype when tiered.slot_table is null, else ignored (fp8 tiers).
  absl::Status RunImpl(common::SequenceId seq, int layer, const void* q, int num_q, int start_pos,
                       const void* k, const void* v, kernels::KvDtype k_dtype,
                       const kernels::TieredKvSource& tiered, int num_kv, void* out, void* stream);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hipserve::worker
