// HiP block-sparse attention for PREFILL on the GPU (HIP.md 3, 5, 6), FlashAttention-2 style on
// the tensor cores (mma.sync m16n8k16 bf16, fp32 accumulate), consuming a HipPrefillPlan
// (kernels/hip_cuda/prefill_mask.h).
//
// Semantics = BsaRef (kernels/hip/bsa.h) with q_plan_row[i] = (q_offset + i) / 64 - first_block:
// query i (position q_offset + i, head h, KV head h / group) attends exactly once each the keys
// of BsaKeysForQuery (sink, its plan row's blocks, window; causal), with keys stored UN-rotated
// and rotated in-kernel: extend on = sink + block keys renumbered to end just before the
// window, window keys and the query at real positions; extend off = real positions everywhere.
//
// How one query tile shares tensor-core work: a thread block is one aligned 64-query block (one
// plan row) x one query head. The sink + block keys of query i are a PREFIX of length M_i of the
// list L of the block's last query (BsaKeysForQuery clips blocks at E_i = min(window_first_i,
// pos_i + 1), and both E_i and the lists are monotone), so phase A runs over L once with the
// mask "slot < M_i". With extension, key slot j of query i sits at E_i - M_i + j; the kernel
// rotates slot j at E_last - M_last + j (the last query's exact positions) and query i at
// pos_i - (E_i - M_i) + (E_last - M_last), which keeps every query-key relative distance of the
// reference (RoPE scores depend only on the distance). Phase B runs over the union of the
// windows [window_first(first query), last position] with the mask window_first_i <= key <=
// pos_i, keys and queries at real positions. One online softmax covers both phases.
//
// Numerics: bf16 q/out; K/V bf16 or fp8 e5m2 (`kv_dtype`; fp8 codes are decoded exactly to bf16
// in shared memory, then used as the bf16 path uses bf16 K/V); rotations in fp32 (fp32 cos/sin
// table) rounded once to bf16; scores, softmax and accumulation fp32 (probabilities rounded to bf16
// for P V); output rounded once. Tiered K/V (HIP.md 7, `tiered`): keys and values are read through
// a slot table from a GPU cache bank (bf16 or fp8 rows) or, for absent tokens, straight from fp8
// e5m2 host pages in mapped memory; the output is bit-identical to the contiguous path holding the
// same values. Supported: head_dim 64, 128; kv_dtype bf16, fp8_e5m2 (InvalidArgument names them).
// Asynchronous on `stream`, no allocation (graph-capturable). Thread-safety: reentrant. CPU builds
// return UnimplementedError.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/hip_cuda/prefill_mask.h"

namespace hipserve::kernels {

inline constexpr int kBsaPrefillBlockQ = 64;  // queries per plan row (HipConfig::block_q)

struct BsaPrefillGpuParams {
  // Device tensors, 16-byte aligned, contiguous rows, un-rotated. q / out bf16 (uint16_t
  // storage); k / v in `kv_dtype` (bf16, or fp8 e5m2 codes: uint8_t, kvstore/FORMAT.md).
  const void* q = nullptr;  // [num_q, num_heads, head_dim] bf16; query i sits at q_offset + i
  const void* k = nullptr;  // [num_kv, num_kv_heads, head_dim] kv_dtype, num_kv = q_offset + num_q
  const void* v = nullptr;  // [num_kv, num_kv_heads, head_dim] kv_dtype
  KvDtype kv_dtype = KvDtype::kBf16;  // element type of k and v (and of tiered's bank rows)
  void* out = nullptr;   // [num_q, num_heads, head_dim] bf16; must not alias the inputs
  int num_q = 0;         // > 0
  int q_offset = 0;      // >= 0
  int num_heads = 0;     // multiple of num_kv_heads
  int num_kv_heads = 0;  // > 0
  int head_dim = 0;      // 64 or 128
  // The plan (device arrays; HipPrefillPlan gives them): row r is query block first_block + r
  // of kBsaPrefillBlockQ positions; lists ascending and unique.
  const int32_t* block_starts = nullptr;  // [num_rows, num_kv_heads, max_blocks]
  const int32_t* block_count = nullptr;   // [num_rows, num_kv_heads], each in [0, max_blocks]
  int num_rows = 0;                       // must be (q_offset + num_q - 1) / 64 - first_block + 1
  int first_block = 0;                    // must be q_offset / 64
  int max_blocks = 0;                     // >= 0
  int block_size = 0;                     // > 0
  int n_sink = 0;                         // >= 0
  int n_window = 0;                       // >= 0
  bool extend = true;
  // RoPE table in device memory ([positions][head_dim] fp32: cos | sin, as HipRopeRows), covering
  // positions [0, num_kv).
  const float* rope = nullptr;
  int rope_positions = 0;
  float scale = 0.f;  // finite, > 0; usually 1/sqrt(head_dim)
  // Tiered reads (HIP.md 7; the semantics of BsaDecodeGpuParams::tiered, one sequence: b = 0):
  // when tiered.slot_table is non-null every key / value (sink, blocks, window) is read through
  // `tiered` and k, v are ignored (may be null). Token t of KV head h is bank row
  // slot_table[h * slot_stride + t] when >= 0 (bank_k / bank_v rows in kv_dtype), else the fp8
  // e5m2 row of host page cold_pages[h * page_stride + t / 64]. Needs slot_stride >= num_kv and
  // page_stride >= ceil(num_kv / 64); bank_k, bank_v 16-byte aligned, cold_pages non-null.
  TieredKvSource tiered;
};

// Copies the plan's lists and geometry into `p`.
inline void SetBsaPrefillPlan(const HipPrefillPlan& plan, BsaPrefillGpuParams* p) {
  p->block_starts = plan.block_starts;
  p->block_count = plan.block_count;
  p->num_rows = plan.num_rows;
  p->first_block = plan.first_block;
  p->max_blocks = plan.max_blocks;
  p->block_size = plan.block_size;
}

// Runs the attention on `stream` (a cudaStream_t).
absl::Status BsaPrefillAttentionGpu(const BsaPrefillGpuParams& p, void* stream);

}  // namespace hipserve::kernels
