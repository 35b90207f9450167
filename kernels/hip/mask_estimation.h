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
//
// Stage-1 representatives (HIP.md 2.1, PruningSpec::stage1; stages after the first use the
// binary descent above unless PruningSpec::later_stages says otherwise, see below). They
// replace only the chunk score; selection, ties and everything else are unchanged. "Rows" are
// the stage's scoring rows as above, and a key's scoring position is the probe's: 0 in kRelative
// (the left probe's), the chunk's index in kChunkIndexed, its real position in kReal.
// - kPageBound: page p = keys [64p, 64p + 64) (kHipPageSize), full when 64p + 64 <= num_kv.
//   Summary of a full page: element-wise min and max of its un-rotated keys (KeyPageMinMax).
//   Chunk score = max over the pages overlapping the chunk and over rows of:
//     full page, kRelative (keys at 0: no key rotation):  PageBound(row, min, max);
//     full page, kChunkIndexed (every key of the chunk at the chunk's index i):
//         PageBound(RotateInverse(row, i), min, max) -- exact: R(i)k . row = k . R(-i)row;
//     full page, kReal (keys at 64 different positions): PageBoundAnyRotation(row, min, max),
//         which bounds every rotation pair by |row pair| * max |key pair|;
//     open page (not full): the exact probe score of each of its keys inside the chunk.
//   A full page's bound covers all its keys, also those outside the chunk (pages and chunks
//   align when n_sink is a multiple of 64). Every key of the chunk scores at most the chunk's
//   score (up to fp32 rounding of the bound), so a chunk holding a key that scores above the
//   keep_chunks(0)-th best score of the other chunks is always kept.
// - kBlockMeans: the chunk's keys in blocks of mean_block_size from its start (the last block
//   may be partial); representative = BlockMeanKey of the block, rotated at the scoring
//   position of the block's key lo + (n - 1) / 2 (lo = first key, n = keys in the block).
//   Chunk score = max over blocks and rows of row . representative (as a probe score).
// - kExact: chunk score = max over the chunk's keys of the key's probe score (key at its
//   scoring position as above). No summary; costs one probe per key.
//
// Later stages (PruningSpec::later_stages, issue 12: stage 2's ~10 probes per 32-key chunk
// miss short spans just like stage 1's): stage s >= 1 scores its chunks with
// spec.representatives(s), defined exactly as above with the stage's own granularity:
// - kPageBound: pages of g = min(kHipPageSize, chunk_sizes[s]) keys, aligned to absolute
//   positions (page p = keys [g p, g p + g), full when g p + g <= num_kv); stage 1 keeps
//   g = kHipPageSize whatever its chunk size. The rotation rules are the same per mode: in
//   kChunkIndexed every key of a stage-s chunk sits at that chunk's index in the stage-s
//   input, so the row is un-rotated by that index once per chunk and the bound stays exact
//   for the box.
// - kBlockMeans: blocks of min(mean_block_size, chunk_sizes[s]) keys from the chunk start.
// - kExact and kProbes: unchanged (they have no granularity).
// With later_stages empty every stage after the first uses probes (HIP.md 2), bit for bit.
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

// Element-wise min and max over the un-rotated keys [first, first + count) (count > 0), written
// to mn[0, head_dim) and mx[0, head_dim).
void KeyPageMinMax(const float* k, int64_t k_token_stride, int head_dim, int32_t first, int count,
                   float* mn, float* mx);
// sum_c max(q[c] * mx[c], q[c] * mn[c]) in fp32, sequential over c: >= q . k for every k with
// mn <= k <= mx element-wise.
float PageBound(const float* q, const float* mn, const float* mx, int head_dim);
// sum over rotation pairs (c, c + head_dim / 2) of |q pair| * |(M_c, M_{c+half})|, with
// M = max(|mn|, |mx|): >= q . R k for every rotation R of RoPE's pairs and every k in the box.
float PageBoundAnyRotation(const float* q, const float* mn, const float* mx, int head_dim);
// Mean of the un-rotated keys [first, first + count): fp32 sum in key order, then / count.
void BlockMeanKey(const float* k, int64_t k_token_stride, int head_dim, int32_t first, int count,
                  float* out);

// CPU reference. InvalidArgument on inconsistent parameters (named).
absl::Status EstimateMaskRef(const MaskEstimationParams& p, MaskEstimationResult* out);

}  // namespace hipserve::kernels
