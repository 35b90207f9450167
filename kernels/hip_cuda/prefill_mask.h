// HiP mask estimation on the GPU for PREFILL (HIP.md 2, 5, 6): one prefill chunk of one sequence
// (batch 1). The chunk's queries are cut into query blocks of block_q queries aligned to absolute
// positions (block b covers positions [b * block_q, (b + 1) * block_q)), exactly as
// worker/hip_attention.cc does it, so a chunk boundary at a multiple of block_q changes no
// selection. Plan row r is block first_block + r, first_block = q_offset / block_q; its queries
// are the chunk's queries inside that block (the first and last rows may be partial).
//
// For every (row, KV head) all stages of kernels/hip/mask_estimation.h run with that
// definition: scoring rows of stage s = the row's queries of every group head, each rotated at
// its own (rewritten) pruning position, averaged in consecutive groups of stride_q[s]; probe
// score = max over scoring rows of q . k, each sum sequential over head_dim in fp32 with no FMA
// contraction, so the kept lists EQUAL EstimateMaskRef's on the same inputs (q bf16; k bf16 or
// fp8 e5m2, contiguous or tiered, given to the reference as its exactly decoded values). The row's
// candidate range is CandidateRangeFor(config, last query position of the row).
//
// Every stage scores with its representatives (PruningSpec::representatives): page_bound,
// block_means and exact as mask_estimation.h defines them, with the same exactness, in
// prefill_rep_kernel.cuh (page boxes and block means computed on the fly from the keys, per
// (row, KV head, chunk)); probes as below.
//
// Kernels per stage: score (probes: one thread per (chunk, probe side); rows staged in shared
// memory in tiles, recomputed from q per tile; see tensor_core_filter) and select (the decode
// kernels' radix select, one block per (row, KV head), writing the kept chunks in position order).
// A last small kernel writes the final block lists (the last stage's list, causal filter applied)
// into the plan.
//
// Plan / run (FlashInfer style): HipPrefillMaskGpu fills a HipPrefillPlan whose device arrays
// live in the caller's workspace; BsaPrefillAttentionGpu (kernels/attention_cuda/bsa_prefill.h)
// consumes it. No host synchronisation and no allocation: the call can be captured in a graph.
// Thread-safety: reentrant; concurrent calls must not share a workspace. CPU builds return
// UnimplementedError.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip_cuda/mask_estimation.h"

namespace hipserve::kernels {

// The plan of one prefill chunk: device arrays (views into the mask workspace).
struct HipPrefillPlan {
  int num_rows = 0;      // query blocks of the chunk
  int first_block = 0;   // absolute index of row 0's query block
  int block_q = 0;       // queries per block
  int num_kv_heads = 0;  //
  int max_blocks = 0;    // keep_chunks(last stage): row stride of block_starts
  int block_size = 0;    // chunk_sizes.back()
  // Final BSA block lists: starts[(r * num_kv_heads + kvh) * max_blocks + i], i < count[r *
  // num_kv_heads + kvh]; ascending, unique, each <= the row's last query position.
  const int32_t* block_starts = nullptr;  // [num_rows, num_kv_heads, max_blocks]
  const int32_t* block_count = nullptr;   // [num_rows, num_kv_heads]
  // Every stage's kept list (as HipDecodeMaskGpuState; stage s has stride keep_chunks(s)), for
  // tests and for restarting. The last stage's list is the block list before the causal filter.
  HipDecodeMaskGpuState stages;
};

struct HipPrefillMaskGpuParams {
  // Device tensors, un-rotated, 16-byte aligned, contiguous rows. q is bf16 (uint16_t storage).
  const void* q = nullptr;  // [num_q, num_heads, head_dim]: query i sits at q_offset + i
  // [num_kv, num_kv_heads, head_dim] k_dtype, num_kv = q_offset + num_q (unused when tiered).
  const void* k = nullptr;
  // Element type of k and of a tiered source's bank rows; fp8 e5m2 decodes exactly (the lists
  // equal EstimateMaskRef's on the decoded keys).
  KvDtype k_dtype = KvDtype::kBf16;
  // Tiered keys, as HipDecodeMaskGpuParams::tiered with one sequence (b = 0): list kvh of the
  // slot / page tables holds KV head kvh; tokens [0, num_kv) must be covered. Null slot_table:
  // contiguous k.
  TieredKvSource tiered;
  int num_q = 0;     // > 0
  int q_offset = 0;  // >= 0
  // Keys of the sequence after this step, when the step holds keys past the chunk's queries (the
  // prefill tail's, which the decode mask scores); 0 = q_offset + num_q. Only page-bound stages
  // read it: a page ending after it is open (scored key by key), as EstimateMaskRef's num_kv.
  int num_kv = 0;
  int num_heads = 0;     // multiple of num_kv_heads
  int num_kv_heads = 0;  // > 0; group = num_heads / num_kv_heads in 1..8
  int head_dim = 0;      // 64 or 128
  int block_q = 64;      // HipConfig::block_q (> 0, <= 1024)
  int n_sink = 256;      // HipConfig::n_sink
  // Host copy of the layer's spec (PruningSpecForLayer): 1..kHipGpuMaxStages stages.
  const PruningSpec* spec = nullptr;
  // RoPE table in device memory ([positions][head_dim] fp32: cos | sin; HipRopeRows builds it),
  // covering HipPrefillMaskRopePositions(params) positions.
  const float* rope = nullptr;
  int rope_positions = 0;
  // HipPrefillMaskWorkspaceBytes(params) bytes of device memory, 16-byte aligned: plan lists,
  // chunk scores and per-row lengths. The plan points into it.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // Score kernel. true (default): filter-then-verify (kernels/hip_cuda/prefill_score_tc.cuh):
  // approximate dots on the tensor cores with a rigorous error bound, exact sequential dots only
  // for the rows that can hold the max; the scores, hence the lists, are bit for bit those of
  // the exact kernel. false: the exact kernel, every (probe, row) dot sequentially on CUDA cores
  // (the reference path; slower).
  bool tensor_core_filter = true;
  // Filter kernel: prefetch into L2, one descent step ahead, the probe keys of both possible
  // decisions (contiguous keys only). A performance hint; the results do not depend on it.
  bool prefetch_keys = true;
  // Filter kernel block size: 256 (default: 128 chunks sharing each row tile, 1 block per SM;
  // the tile's fp16 mma fragments are built once per tile, which only fits at this size) or 128
  // (64 chunks, 2 blocks per SM at head_dim 128; fragments converted per warp). Performance only.
  int filter_block_threads = 256;
  // Filter kernel for the stages whose scoring rows span several 64-row tiles (stage 2 of the
  // presets: 256 rows). 1 (default, automatic): the resident-rows kernel (PrefillScoreResKernel
  // in prefill_score_tc.cuh: every row built once per block and kept in shared memory, one
  // verification per descent step) where the stage's rows fit its shared memory (up to 256 rows;
  // at head_dim 128 only on parts with >= 216 KB per block, e.g. H100, not A100) and the keys
  // are not tiered (it reads each probe key twice); elsewhere the tile kernel. 0: the tile
  // kernel always (the previous behaviour). 2: the resident kernel for every stage where it
  // fits, single-tile stages and tiered keys included (tests, benchmarks). Performance only:
  // the scores, hence the lists, are bit for bit the same. Needs tensor_core_filter.
  int resident_rows = 1;
};

// RoPE positions the call needs.
absl::StatusOr<int> HipPrefillMaskRopePositions(const HipPrefillMaskGpuParams& p);
// Workspace bytes. Validates the shape and spec (pointers aside).
absl::StatusOr<size_t> HipPrefillMaskWorkspaceBytes(const HipPrefillMaskGpuParams& p);
// The plan's layout for these params (pointers into p.workspace); valid after a successful
// HipPrefillMaskGpu on `stream` has run.
absl::StatusOr<HipPrefillPlan> HipPrefillPlanFor(const HipPrefillMaskGpuParams& p);
// Resident blocks per SM of the filter score kernel for head_dim 64 / 128 and a
// filter_block_threads value (occupancy report for benchmarks; sets the kernel's shared-memory
// attributes as a launch does).
absl::StatusOr<int> HipPrefillMaskScoreBlocksPerSm(int head_dim, int threads);
// Bit s set: stage s runs the resident-rows filter kernel with these params on the current
// device (see resident_rows).
absl::StatusOr<int> HipPrefillMaskResidentStages(const HipPrefillMaskGpuParams& p);
// Runs all stages on `stream` (a cudaStream_t) and returns the plan (as HipPrefillPlanFor).
absl::StatusOr<HipPrefillPlan> HipPrefillMaskGpu(const HipPrefillMaskGpuParams& p, void* stream);

}  // namespace hipserve::kernels
