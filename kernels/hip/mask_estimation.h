// HiP mask estimation (HIP.md 2): the hierarchical pruning stages for one (query block, KV head).
//
// Stage s takes a list of chunks of chunk_sizes[s] tokens, scores every chunk by binary descent,
// keeps the best keep_chunks(s), sorts them by position and splits each kept chunk into
// sub-chunks of chunk_sizes[s + 1] for the next stage. The last stage's kept chunks are the BSA
// blocks. Each stage's kept list is returned so that decode can cache it and later restart from
// any stage with the cached input (HIP.md 4).
//
// Definitions (the CUDA kernels must match them exactly):
// - Chunk [start, end) with end = min(start + chunk_size, range_end): the last chunk of a range
//   may be partial; sub-chunks are made only where start < end.
// - Binary descent on [lo, hi) = chunk: up to ceil(log2(chunk_size)) times, while hi - lo >= 2:
//   mid = lo + (hi - lo) / 2; probe the middle key of each half, left = lo + (mid - lo) / 2,
//   right = mid + (hi - mid) / 2; keep the half whose probe scored higher (left on ties). A
//   chunk of one key probes that key once (as a "left" probe). Chunk score = best probe score.
// - Probe score = max over scoring rows and over the group's query heads of q . k in fp32
//   (sequential accumulation over head_dim), with q and k rotated per `positions`:
//     kReal: query at its real position, key at its real position;
//     kRelative: query at n_window + 1, left probe at 0, right probe at 1;
//     kChunkIndexed: key at its chunk's index in the stage input, query at
//                    min(pos, n_chunks + n_window), n_chunks = chunks in the stage input.
//   NaN scores count as -inf.
// - Scoring rows of stage s: the block's queries, each rotated at its own (rewritten) position,
//   averaged in consecutive groups of stride_q[s] (the last group may be smaller).
// - Selection: the keep_chunks(s) chunks with the highest score; ties broken by lower position.
//   When the input has no more chunks than that, all are kept and nothing is scored (the
//   result is the same).
// - The final list drops starts after the block's last query (causal) and duplicates; it is
//   sorted ascending.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"

namespace hipserve::kernels {

// A list of chunks: chunk i covers [starts[i], min(starts[i] + chunk_size, range_end)).
struct ChunkList {
  int32_t chunk_size = 0;
  int32_t range_end = 0;
  std::vector<int32_t> starts;  // ascending, unique, each < range_end
};

// Stage 1's input: [range_begin, range_end) cut into chunks of chunk_size.
ChunkList ChunksOfRange(int32_t range_begin, int32_t range_end, int32_t chunk_size);
// Splits every chunk of `in` into sub-chunks of `sub_size` (which must divide in.chunk_size).
ChunkList SplitChunks(const ChunkList& in, int32_t sub_size);

struct MaskEstimationParams {
  // The block's queries for the KV head's group, un-rotated:
  // q[i * q_token_stride + g * head_dim + c] is query i (0 <= i < num_q), group head g.
  const float* q = nullptr;
  int64_t q_token_stride = 0;
  const int32_t* q_pos = nullptr;  // [num_q] real positions, ascending
  int num_q = 0;                   // > 0
  int group = 0;                   // query heads sharing the KV head (> 0)
  int head_dim = 0;                // > 0, even
  // Keys of the KV head, un-rotated: k[j * k_token_stride + c] for key j < num_kv.
  const float* k = nullptr;
  int64_t k_token_stride = 0;
  int num_kv = 0;
  // Candidate range (see CandidateRangeFor); used when start_stage == 0.
  int32_t range_begin = 0;
  int32_t range_end = 0;  // <= num_kv
  const PruningSpec* spec = nullptr;
  // Covers every position the mode needs: num_kv (kReal), n_window + 2 (kRelative),
  // n_chunks + n_window + 1 (kChunkIndexed).
  const RopeTable* rope = nullptr;
  // Restart (decode mask refresh): stage to start from, and for start_stage > 0 the cached
  // kept list of stage start_stage - 1 (its chunk_size must be chunk_sizes[start_stage - 1]).
  int start_stage = 0;
  const ChunkList* start_input = nullptr;
};

struct MaskEstimationResult {
  // [stages]: kept chunks of each stage, sorted; entries before start_stage are left empty.
  // kept.back() is the final block list (chunk_size = the last chunk size).
  std::vector<ChunkList> kept;

  const std::vector<int32_t>& block_starts() const { return kept.back().starts; }
  int count() const { return static_cast<int>(kept.back().starts.size()); }
};

// CPU reference. InvalidArgument on inconsistent parameters (named).
absl::Status EstimateMaskRef(const MaskEstimationParams& p, MaskEstimationResult* out);

}  // namespace hipserve::kernels
