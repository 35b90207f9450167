// Decode attention on the GPU (one new query token per sequence), FlashDecoding style: the keys
// of each (sequence, KV head) are split into partitions processed by separate thread blocks in
// parallel; each block keeps an online softmax (running max, running sum, fp32 accumulator) for
// all query heads of the KV head's GQA group, and a second small kernel merges the partitions
// by log-sum-exp. Two key sets:
//   - dense: keys [0, T) of the sequence (the query sits at position T - 1 and sees itself);
//   - BSA (HiP block-sparse attention): sink [0, n_sink) + selected blocks of kBsaBlockSize keys
//     + window [T - 1 - n_window, T), each key counted once (blocks overlapping sink or window are
//     masked there). By default keys are used as stored (already rotated). With a RoPE table
//     (BsaDecodeGpuParams::rope) K is stored un-rotated and every key is rotated in-kernel at
//     the position kernels/hip/bsa.h's BsaKeysForQuery gives it (HIP.md 5), the query at T - 1.
//     With a TieredKvSource (kv_source.h) K/V are read through a slot table from a GPU cache
//     bank or, for absent tokens, straight from fp8 host memory (HIP.md 7).
//
// Numerics: bf16 q/out; K/V bf16 or fp8 e5m2 (kv_dtype; fp8 decodes exactly, bit-identical to
// kvstore's codec); fp32 dot products, softmax and accumulation; the output is rounded to bf16
// once. Supported head_dim: 64, 128. Supported group size (num_heads / num_kv_heads): 1..8.
// Anything else returns InvalidArgument naming what is supported.
//
// Window convention (the same as BsaRef and HipConfig::n_window): the query at pos = T - 1
// attends the window [pos - n_window, pos], i.e. the n_window keys before it and itself, so a
// HipConfig's n_window is passed unchanged and the window meets the candidate range
// (CandidateRangeFor ends at pos - n_window) with no key missing.
//
// Thread-safety: the functions are reentrant; concurrent calls must not share a workspace.
// Asynchronous: the kernels run on `stream` (a cudaStream_t, null = legacy default stream);
// errors inside the kernels surface on the next synchronising call. No allocation happens, so
// a call can be captured in a CUDA graph (device arrays are read when the kernel runs, which
// lets a graph be replayed with new lengths / block lists written in place). CPU builds return
// UnimplementedError.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/attention_cuda/kv_source.h"

namespace hipserve::kernels {

// Keys per selected block in BSA (HiP's last-stage chunk size c_3).
inline constexpr int kBsaBlockSize = 8;

struct DecodeAttentionGpuParams {
  // Tensors in device memory, 16-byte aligned; rows are contiguous (no extra strides). q and
  // out are bf16 (uint16_t storage, kernels/dtype/bf16.h); k and v are kv_dtype.
  const void* q = nullptr;            // [batch, num_heads, head_dim]: the query of sequence b
  const void* k = nullptr;            // [kv_rows, num_kv_heads, head_dim]: shared by all sequences
  const void* v = nullptr;            // [kv_rows, num_kv_heads, head_dim]
  KvDtype kv_dtype = KvDtype::kBf16;  // of k and v (and of a tiered source's bank)
  void* out = nullptr;                // [batch, num_heads, head_dim]; must not alias q, k, v
  // Sequence b's token t is row kv_start[b] + t of k and v, for t in [0, kv_len[b]).
  const int64_t* kv_start = nullptr;  // [batch], device
  const int32_t* kv_len = nullptr;    // [batch], device; each in [1, max_kv_len]
  int batch = 0;                      // > 0
  int num_heads = 0;                  // > 0, multiple of num_kv_heads
  int num_kv_heads = 0;               // > 0; query head h reads kv head h / group
  int head_dim = 0;                   // 64 or 128
  int max_kv_len = 0;                 // host-side bound on every kv_len[b] (> 0); sizes the grid
  float scale = 0.f;                  // softmax scale (finite, > 0), usually 1/sqrt(head_dim)
  // Scratch for the partition partials: DecodeAttentionWorkspaceBytes(...) bytes of device
  // memory, 16-byte aligned. May be null when that size is 0 (a single partition).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // Partitions per (sequence, KV head); 0 = choose from the shape and the device's SM count.
  // Must be the same value in the workspace query and the run.
  int num_splits = 0;  // >= 0, <= kDecodeMaxSplits
};

inline constexpr int kDecodeMaxSplits = 256;

// HiP block-sparse decode. The selection is per (sequence, KV head) and shared by the group's
// query heads (HIP.md 4.3).
struct BsaDecodeGpuParams {
  DecodeAttentionGpuParams attn;  // as for dense; T = kv_len[b]
  // block_starts[(b * num_kv_heads + kvh) * max_blocks + i], i < block_count[b * num_kv_heads
  // + kvh]: position of the first key of selected block i. Per (b, kvh) the used entries must
  // be strictly increasing and non-overlapping (start[i+1] >= start[i] + kBsaBlockSize), each
  // in [0, T); keys of a block at or after T are skipped. Device memory, int32.
  const int32_t* block_starts = nullptr;  // [batch, num_kv_heads, max_blocks]
  const int32_t* block_count = nullptr;   // [batch, num_kv_heads], each in [0, max_blocks]
  int max_blocks = 0;                     // >= 0 (row stride of block_starts)
  int n_sink = 256;                       // >= 0: keys [0, n_sink) always attended
  int n_window = 1024;                    // >= 0: keys [T - 1 - n_window, T) always attended
  // In-kernel RoPE (HIP.md 5). Null: q and keys are used as stored. Otherwise K is un-rotated
  // and this is the device table [rope_positions][head_dim] fp32 (cos in [0, head_dim/2), sin
  // in [head_dim/2, head_dim): the layout of HipRopeRows, kernels/hip_cuda/mask_estimation.h),
  // 16-byte aligned, rope_positions >= max_kv_len. The query is rotated at T - 1; keys at
  //   extend off: their real position;
  //   extend on: window keys at their real position; the M sink + block keys, in list order,
  //     at W - M, ..., W - 1 with W = max(T - 1 - n_window, min(n_sink, T)), the window start
  // (exactly BsaKeysForQuery(T - 1, ..., n_window, extend)).
  const float* rope = nullptr;
  int rope_positions = 0;
  bool extend = true;
  // Tiered reads (HIP.md 7): when IsTiered(tiered) (slot_table or per-entry tables
  // tiered.entries non-null) every key / value (sink and window included) is read through
  // `tiered` and attn.k, attn.v, attn.kv_start are ignored (may be null). Bank rows are in
  // attn.kv_dtype; absent tokens come from fp8 host pages.
  TieredKvSource tiered;
  // Keys each slot of the kernel takes per step, for group sizes <= 4 (larger groups always
  // use 2): 0 = automatic (4 when batch * num_kv_heads >= the device's SM count, else 8), or
  // 4 / 8. Must be the same value in the workspace query and the run.
  int keys_per_step = 0;
};

// Device bytes the call needs as workspace (0 when one partition suffices). Reads the current
// device's SM count when num_splits == 0. Validates the params like the run does (pointers
// aside).
absl::StatusOr<size_t> DenseDecodeAttentionWorkspaceBytes(const DecodeAttentionGpuParams& p);
absl::StatusOr<size_t> BsaDecodeAttentionWorkspaceBytes(const BsaDecodeGpuParams& p);

// Runs the attention. `stream` is a cudaStream_t.
absl::Status DenseDecodeAttentionGpu(const DecodeAttentionGpuParams& p, void* stream);
absl::Status BsaDecodeAttentionGpu(const BsaDecodeGpuParams& p, void* stream);

}  // namespace hipserve::kernels
