#include "kernels/hip_cuda/decode_graph_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace hipserve::kernels {

absl::Status ValidateBatchBuckets(absl::Span<const int> buckets) {
  if (buckets.empty()) return absl::InvalidArgumentError("batch_buckets is empty");
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i] < 1 || buckets[i] > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch_buckets[", i, "] = ", buckets[i], " outside [1, 65535]"));
    }
    if (i > 0 && buckets[i] <= buckets[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat("batch_buckets must be strictly increasing; [",
                                                     i - 1, "] = ", buckets[i - 1], ", [", i,
                                                     "] = ", buckets[i]));
    }
  }
  return absl::OkStatus();
}

int BatchBucketIndex(absl::Span<const int> buckets, int batch) {
  if (batch < 1) return -1;
  const auto it = std::lower_bound(buckets.begin(), buckets.end(), batch);
  return it == buckets.end() ? -1 : static_cast<int>(it - buckets.begin());
}

std::vector<int32_t> SeqStartStages(const HipConfig& config,
                                    absl::Span<const int64_t> decode_steps) {
  std::vector<int32_t> out(decode_steps.size());
  for (size_t b = 0; b < decode_steps.size(); ++b) {
    out[b] = DecodeRefreshStage(config, decode_steps[b]);
  }
  return out;
}

absl::StatusOr<int> RefreshModeFor(absl::Span<const int32_t> seq_start_stage, int num_stages) {
  int mode = kRefreshBsaOnly;
  for (size_t b = 0; b < seq_start_stage.size(); ++b) {
    const int32_t s = seq_start_stage[b];
    if (s < kRefreshBsaOnly || s >= num_stages) {
      return absl::InvalidArgumentError(absl::StrCat("start stage of sequence ", b, " is ", s,
                                                     ", outside [-1, ", num_stages, ")"));
    }
    if (s >= 0 && (mode == kRefreshBsaOnly || s < mode)) mode = s;
  }
  return mode;
}

}  // namespace hipserve::kernels
