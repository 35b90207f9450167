// HiP mask estimation on the GPU for DECODE (HIP.md 2, 4, 5): one query token per sequence; the
// selection is made per (sequence, KV head) from the group's query heads (HIP.md 4.3).
//
// For every stage s in [start_stage, stages) two kernels run:
//   - score: every chunk of the stage input is scored as spec.representatives(s) says
//     (kernels/hip/mask_estimation.h; every option at every stage):
//       probes: binary descent (two threads per chunk, one per probe side; each rotates its
//         probe key and accumulates the dot products of all the group's heads);
//       exact: every key of the chunk, as a probe (a team of up to 32 lanes per chunk);
//       page_bound / block_means: one warp per chunk folds each page's (block's) keys into
//         element-wise min / max (the mean) on the fly, read from the keys wherever they are
//         (no summary array: a refresh reads every key of the scored chunks, see
//         docs/HIP_NOTES.md 7), then bounds (scores) the group's rows against it;
//     every sum sequential over head_dim in fp32 without FMA contraction, so that scores are
//     bit-identical to the CPU reference kernels/hip/mask_estimation_ref.cc;
//   - select: one block per (sequence, KV head) keeps the keep_chunks(s) best chunks by an
//     in-block radix select (unordered top-k), then writes them in position order (a stable
//     compaction of the ascending stage input, so no sort is needed).
// Ties: equal scores are broken by lower position (= lower index in the ascending stage input),
// exactly as the CPU reference; -0 and +0 compare equal, NaN scores count as -inf. Hence the
// kept lists equal EstimateMaskRef's exactly on the same inputs (q bf16; keys bf16, or fp8
// e5m2 contiguous / tiered, given to the reference as their exactly decoded values).
//
// Positions (PruningSpec::positions): the kernels rotate the query and the probe keys at use
// time from un-rotated bf16 keys with a device RoPE table (kRelative: query at n_window + 1,
// left probe at 0, right probe at 1; kReal: real positions, the query at T - 1; kChunkIndexed:
// key at its chunk index in the stage input, query at min(T - 1, n_chunks + n_window)).
//
// Decode reuse (HIP.md 4): each stage's kept list is cached in HipDecodeMaskGpuState (per
// sequence and KV head, with the range_end it was made for), so a later step can restart from
// stage s with the cached input of stage s - 1. The last stage's list is the BSA block list:
// pass state.starts[S-1] / state.count[S-1] / keep_chunks(S-1) as BsaDecodeGpuParams'
// block_starts / block_count / max_blocks.
//
// No host synchronisation and no allocation: the call can be captured in a CUDA graph (lengths,
// queries and cached lists are read from device memory when the kernels run).
// Thread-safety: reentrant; concurrent calls must not share a state or workspace.
// CPU builds return UnimplementedError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"

namespace hipserve::kernels {

inline constexpr int kHipGpuMaxStages = 4;

// Device buffers owned by the caller that carry the mask between decode steps. Stage s's list
// for (b, kvh) is starts[s][(b * num_kv_heads + kvh) * spec.keep_chunks(s) + i], i < count[s][b
// * num_kv_heads + kvh], ascending; chunk i covers [start, min(start + chunk_sizes[s],
// range_end[s][...])). Entries at or after the count are left unwritten.
struct HipDecodeMaskGpuState {
  int32_t* starts[kHipGpuMaxStages] = {};     // [batch, num_kv_heads, keep_chunks(s)]
  int32_t* count[kHipGpuMaxStages] = {};      // [batch, num_kv_heads]
  int32_t* range_end[kHipGpuMaxStages] = {};  // [batch, num_kv_heads]
};

struct HipDecodeMaskGpuParams {
  // Device tensors, un-rotated, 16-byte aligned, contiguous rows. q is bf16 (uint16_t storage).
  const void* q = nullptr;  // [batch, num_heads, head_dim]: the decode query of sequence b
  const void* k = nullptr;  // [kv_rows, num_kv_heads, head_dim] k_dtype (unused when tiered)
  // Element type of k and of a tiered source's bank rows (attention_cuda/kv_source.h). fp8
  // e5m2 decodes exactly, so the lists equal EstimateMaskRef's on the decoded keys.
  KvDtype k_dtype = KvDtype::kBf16;
  // Tiered keys (HIP.md 7), the layout BSA decode reads: when IsTiered(tiered) (slot_table or
  // per-entry tables non-null), token t of (b, kvh) comes from mask-cache row
  // tiered.bank_k[slot] (k_dtype) when its slot table entry is >= 0, else from the fp8 cold
  // page in mapped host memory (read over PCIe); k and kv_start are then ignored (may be null)
  // and bank_v is not read. slot_stride and page_stride must cover max_kv_len tokens; with
  // tiered.entries (sequences with separate tables) each entry's strides cover its kv_len.
  TieredKvSource tiered;
  // Sequence b's token t is row kv_start[b] + t of k, t in [0, kv_len[b]); the query sits at
  // position kv_len[b] - 1, so its candidate range is CandidateRangeFor(config, kv_len[b] - 1)
  // = [n_sink, max(n_sink, kv_len[b] - 1 - n_window)).
  const int64_t* kv_start = nullptr;  // [batch], device (contiguous keys only)
  const int32_t* kv_len = nullptr;    // [batch], device; each in [1, max_kv_len]
  int batch = 0;                      // > 0
  int num_heads = 0;                  // multiple of num_kv_heads
  int num_kv_heads = 0;               // > 0; group = num_heads / num_kv_heads in 1..8
  int head_dim = 0;                   // 64 or 128
  int max_kv_len = 0;                 // host bound on every kv_len[b]; sizes the stage-1 grid
  int n_sink = 256;                   // HipConfig::n_sink
  // Host copy of the layer's spec (PruningSpecForLayer): chunk sizes, keeps, positions,
  // n_window. 1..kHipGpuMaxStages stages. stride_q is irrelevant in decode (one query).
  const PruningSpec* spec = nullptr;
  // RoPE table in device memory, the layout of RopeTable ([positions][head_dim] fp32: cos in
  // [0, head_dim/2), sin in [head_dim/2, head_dim)); HipRopeRows() builds it from a RopeTable.
  // Must cover HipDecodeMaskRopePositions(params) positions.
  const float* rope = nullptr;
  int rope_positions = 0;
  // Stages [start_stage, stages) are recomputed; stage s > 0 reads the cached list of s - 1.
  int start_stage = 0;
  // Optional [batch] device array: sequence b is recomputed only by stages s >= value (and not
  // at all when the value is < 0), so that sequences keep their own refresh counters (HIP.md 4).
  // Pass start_stage = the smallest value among sequences that refresh. Null: all sequences.
  const int32_t* seq_start_stage = nullptr;
  HipDecodeMaskGpuState state;
  // Chunk scores: HipDecodeMaskWorkspaceBytes(params) bytes of device memory.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// RoPE positions the call needs (see `rope`).
absl::StatusOr<int> HipDecodeMaskRopePositions(const HipDecodeMaskGpuParams& p);
// Workspace bytes. Validates the shape and spec (pointers aside).
absl::StatusOr<size_t> HipDecodeMaskWorkspaceBytes(const HipDecodeMaskGpuParams& p);
// Runs stages [start_stage, stages) on `stream` (a cudaStream_t).
absl::Status HipDecodeMaskGpu(const HipDecodeMaskGpuParams& p, void* stream);

// Host rows [0, num_positions) of `table` in the device layout above (fp32 cos | sin), obtained
// through RopeTable::Rotate so they are bit-identical to what the CPU reference uses.
inline std::vector<float> HipRopeRows(const RopeTable& table, int num_positions) {
  const int d = table.head_dim();
  std::vector<float> unit(d, 0.f), rows(static_cast<size_t>(num_positions) * d);
  for (int i = 0; i < d / 2; ++i) unit[i] = 1.f;
  for (int pos = 0; pos < num_positions; ++pos) {
    table.Rotate(unit.data(), pos, rows.data() + static_cast<size_t>(pos) * d);
  }
  return rows;
}

}  // namespace hipserve::kernels
