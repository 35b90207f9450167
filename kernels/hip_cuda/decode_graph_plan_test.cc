// Index math of the decode CUDA graphs on the CPU (ctest label cpu): bucket choice, per-sequence
// refresh stages (HIP.md 4: (96, 24, 8) gives 1 / 3 / 8 / 84 per cycle), refresh mode choice,
// graph indices.
#include "kernels/hip_cuda/decode_graph_plan.h"

#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/testing/attention_cases.h"

namespace hipserve::kernels {
namespace {

const std::vector<int> kBuckets(testing::kDecodeBatchBuckets.begin(),
                                testing::kDecodeBatchBuckets.end());

TEST(DecodeGraphPlan, BucketIsSmallestAtLeastBatch) {
  ASSERT_TRUE(ValidateBatchBuckets(kBuckets).ok());
  const int expected[33] = {-1, 0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4,
                            5,  5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5};
  for (int b = 0; b <= 32; ++b) {
    EXPECT_EQ(BatchBucketIndex(kBuckets, b), expected[b]) << "batch " << b;
    if (b > 0) {
      EXPECT_GE(kBuckets[expected[b]], b);
      if (expected[b] > 0) {
        EXPECT_LT(kBuckets[expected[b] - 1], b);
      }
    }
  }
  EXPECT_EQ(BatchBucketIndex(kBuckets, 33), -1);
  EXPECT_EQ(BatchBucketIndex(kBuckets, -3), -1);
  const std::vector<int> odd = {3, 7, 20};
  EXPECT_EQ(BatchBucketIndex(odd, 1), 0);
  EXPECT_EQ(BatchBucketIndex(odd, 4), 1);
  EXPECT_EQ(BatchBucketIndex(odd, 7), 1);
  EXPECT_EQ(BatchBucketIndex(odd, 8), 2);
  EXPECT_EQ(BatchBucketIndex(odd, 21), -1);
}

TEST(DecodeGraphPlan, BadBucketsRejected) {
  EXPECT_EQ(ValidateBatchBuckets({}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateBatchBuckets({0, 2}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateBatchBuckets({2, 2}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateBatchBuckets({4, 2}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateBatchBuckets({1, 70000}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateBatchBuckets({5}).ok());
}

TEST(DecodeGraphPlan, RefreshCycleCounts) {
  const HipConfig config;  // (96, 24, 8)
  std::vector<int64_t> steps(96);
  for (int i = 0; i < 96; ++i) steps[i] = 96 * 5 + i;  // a later cycle: same pattern
  const std::vector<int32_t> ss = SeqStartStages(config, steps);
  int counts[4] = {0, 0, 0, 0};
  for (int32_t s : ss) counts[s < 0 ? 3 : s]++;
  EXPECT_EQ(counts[0], 1);
  EXPECT_EQ(counts[1], 3);
  EXPECT_EQ(counts[2], 8);
  EXPECT_EQ(counts[3], 84);
  EXPECT_EQ(ss[0], 0);
  EXPECT_EQ(ss[24], 1);
  EXPECT_EQ(ss[8], 2);
  EXPECT_EQ(ss[1], -1);
  EXPECT_EQ(SeqStartStages(config, std::vector<int64_t>{0})[0], 0);
}

TEST(DecodeGraphPlan, ModeIsSmallestRefreshingStage) {
  const int S = 3;
  EXPECT_EQ(*RefreshModeFor(std::vector<int32_t>{-1, -1, -1}, S), kRefreshBsaOnly);
  EXPECT_EQ(*RefreshModeFor(std::vector<int32_t>{-1, 2, -1}, S), 2);
  EXPECT_EQ(*RefreshModeFor(std::vector<int32_t>{2, 1, -1, 2}, S), 1);
  EXPECT_EQ(*RefreshModeFor(std::vector<int32_t>{-1, 2, 0, 1}, S), 0);
  EXPECT_EQ(*RefreshModeFor(std::vector<int32_t>{}, S), kRefreshBsaOnly);
  EXPECT_EQ(RefreshModeFor(std::vector<int32_t>{3}, S).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RefreshModeFor(std::vector<int32_t>{-2}, S).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DecodeGraphPlan, StaggeredSequencesKeepTheirOwnCounters) {
  // Sequence b started decoding b * 5 steps before step 0 of this window; at each window step
  // the mode is the smallest of their stages, and a sequence's own stage never changes with
  // the others in its batch (HIP.md 4: per-sequence counters).
  const HipConfig config;
  for (int step = 0; step < 96; ++step) {
    std::vector<int64_t> steps = {step, step + 5, step + 10};
    const std::vector<int32_t> ss = SeqStartStages(config, steps);
    for (int b = 0; b < 3; ++b) {
      EXPECT_EQ(ss[b], DecodeRefreshStage(config, steps[b]));
      EXPECT_EQ(ss[b], SeqStartStages(config, {steps[b]})[0]) << "alone vs batched";
    }
    int expected = -1;
    for (int32_t s : ss) {
      if (s >= 0 && (expected < 0 || s < expected)) expected = s;
    }
    EXPECT_EQ(*RefreshModeFor(ss, 3), expected);
  }
}

TEST(DecodeGraphPlan, GraphIndicesAreDistinctAndDense) {
  const int S = 3;
  std::set<int> seen;
  for (int bi = 0; bi < 6; ++bi) {
    for (int mode = kRefreshBsaOnly; mode < S; ++mode) {
      const int g = DecodeGraphIndex(bi, mode, S);
      EXPECT_GE(g, 0);
      EXPECT_LT(g, 6 * (S + 1));
      EXPECT_TRUE(seen.insert(g).second);
    }
  }
  EXPECT_EQ(seen.size(), 24u);
}

}  // namespace
}  // namespace hipserve::kernels
