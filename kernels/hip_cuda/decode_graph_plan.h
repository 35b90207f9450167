// Host-side index math of the HiP decode CUDA graphs (decode_graph.h): which batch bucket a
// step uses, each sequence's refresh stage from its own decode step (HIP.md 4), which refresh
// mode (graph) a step needs, and the values of padding rows. Plain C++ (no CUDA), compiled in
// every build and tested on the CPU (decode_graph_plan_test.cc).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/hip/hip_params.h"

namespace hipserve::kernels {

// Refresh mode of a step = the stage the graph starts the mask estimation from; kBsaOnly means
// no mask kernel runs (every sequence reuses its cached block list). A graph of mode m runs
// stages [m, stages) and BSA; each sequence is recomputed only from its own start stage.
inline constexpr int kRefreshBsaOnly = -1;

// Values written into the padding rows [batch, bucket) of a step: a 1-token sequence at KV row
// 0 that no mask stage touches (start stage -1). BSA attends that one key (sink and window are
// both key 0), so a padding row costs one key per (row, KV head) and always reads row 0 of K/V,
// which exists. Its output row is written and must be ignored.
inline constexpr int32_t kPadKvLen = 1;
inline constexpr int64_t kPadKvStart = 0;
inline constexpr int32_t kPadStartStage = kRefreshBsaOnly;

// InvalidArgument unless `buckets` is non-empty, strictly increasing and every value is in
// [1, 65535].
absl::Status ValidateBatchBuckets(absl::Span<const int> buckets);

// Index of the smallest bucket >= batch, or -1 when batch < 1 or batch > buckets.back().
// `buckets` must be valid (ValidateBatchBuckets).
int BatchBucketIndex(absl::Span<const int> buckets, int batch);

// Start stage of each sequence from its own decode step: DecodeRefreshStage(config, step[b])
// (-1 = reuse the cached block list). Steps must be >= 0.
std::vector<int32_t> SeqStartStages(const HipConfig& config,
                                    absl::Span<const int64_t> decode_steps);

// The refresh mode a step needs: the smallest non-negative start stage, or kRefreshBsaOnly
// when every sequence reuses its list. InvalidArgument for a stage outside [-1, num_stages).
absl::StatusOr<int> RefreshModeFor(absl::Span<const int32_t> seq_start_stage, int num_stages);

// Graph index of (bucket index, mode) in a table of buckets x (num_stages + 1) graphs, mode
// kRefreshBsaOnly first: bucket * (num_stages + 1) + mode + 1.
inline int DecodeGraphIndex(int bucket_index, int mode, int num_stages) {
  return bucket_index * (num_stages + 1) + mode + 1;
}

}  // namespace hipserve::kernels
