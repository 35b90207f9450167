#include "kernels/hip/hip_params.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace hipserve::kernels {
namespace {

TEST(HipParamsTest, DefaultsAreHipMdPreset) {
  HipConfig c;
  EXPECT_TRUE(ValidateHipConfig(c).ok());
  EXPECT_EQ(c.n_sink, 256);
  EXPECT_EQ(c.n_window, 1024);
  EXPECT_EQ(c.block_q, 64);
  EXPECT_EQ(c.chunk_sizes, (std::vector<int>{256, 32, 8}));
  EXPECT_EQ(c.stage_keep, (std::vector<int>{32768, 8192}));
  EXPECT_EQ(c.k, 2048);
  EXPECT_EQ(c.stride_q, (std::vector<int>{4, 4, 1}));
  EXPECT_EQ(c.mask_refresh_interval, (std::vector<int>{96, 24, 8}));
  // Stages 2 and 3 always score exactly 1024 candidates (HIP.md 2).
  PruningSpec s = PruningSpecForLayer(c, 10);
  EXPECT_EQ(s.keep_chunks(0) * (c.chunk_sizes[0] / c.chunk_sizes[1]), 1024);
  EXPECT_EQ(s.keep_chunks(1) * (c.chunk_sizes[1] / c.chunk_sizes[2]), 1024);
  EXPECT_EQ(s.keep_chunks(2), 256);
}

TEST(HipParamsTest, PerLayerSpec) {
  HipConfig c;
  for (int layer : {0, 1, 2}) {
    PruningSpec s = PruningSpecForLayer(c, layer);
    EXPECT_EQ(s.keep_tokens, (std::vector<int>{32768, 8192, 4096})) << layer;
    EXPECT_EQ(s.positions, PruningPositions::kChunkIndexed) << layer;
  }
  PruningSpec s = PruningSpecForLayer(c, 3);
  EXPECT_EQ(s.keep_tokens, (std::vector<int>{32768, 8192, 2048}));
  EXPECT_EQ(s.positions, PruningPositions::kRelative);
  EXPECT_EQ(s.n_window, 1024);
  c.extend = false;
  EXPECT_EQ(PruningSpecForLayer(c, 0).positions, PruningPositions::kReal);
  EXPECT_EQ(PruningSpecForLayer(c, 7).positions, PruningPositions::kReal);
  EXPECT_EQ(PruningSpecForLayer(c, 0).keep_tokens.back(), 4096);  // budget stays per layer
}

TEST(HipParamsTest, CandidateRange) {
  HipConfig c;
  CandidateRange r = CandidateRangeFor(c, 5000);
  EXPECT_EQ(r.begin, 256);
  EXPECT_EQ(r.end, 5000 - 1024);
  r = CandidateRangeFor(c, 1000);  // short context: empty
  EXPECT_EQ(r.begin, 256);
  EXPECT_EQ(r.end, 256);
}

TEST(HipParamsTest, RefreshScheduleFlashPreset) {
  HipConfig c;
  EXPECT_EQ(DecodeRefreshStage(c, 0), 0);
  EXPECT_EQ(DecodeRefreshStage(c, 1), -1);
  EXPECT_EQ(DecodeRefreshStage(c, 8), 2);
  EXPECT_EQ(DecodeRefreshStage(c, 16), 2);
  EXPECT_EQ(DecodeRefreshStage(c, 24), 1);
  EXPECT_EQ(DecodeRefreshStage(c, 72), 1);
  EXPECT_EQ(DecodeRefreshStage(c, 95), -1);
  EXPECT_EQ(DecodeRefreshStage(c, 96), 0);
  EXPECT_EQ(DecodeRefreshStage(c, 96 * 1000 + 8), 2);
  // HIP.md 4: of every 96 steps 1 recomputes all, 3 stages 2-3, 8 stage 3, 84 only BSA.
  int counts[4] = {0, 0, 0, 0};
  for (int i = 96; i < 192; ++i) ++counts[DecodeRefreshStage(c, i) + 1];
  EXPECT_EQ(counts[0], 84);
  EXPECT_EQ(counts[1], 1);
  EXPECT_EQ(counts[2], 3);
  EXPECT_EQ(counts[3], 8);
}

struct BadCase {
  std::string name;
  std::function<void(HipConfig&)> mutate;
  std::string expect;  // substring of the error
};

class HipConfigValidationTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(HipConfigValidationTest, RejectsWithFieldName) {
  HipConfig c;
  GetParam().mutate(c);
  absl::Status s = ValidateHipConfig(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(GetParam().expect), std::string::npos) << s;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HipConfigValidationTest,
    ::testing::Values(
        BadCase{"NegativeSink", [](HipConfig& c) { c.n_sink = -1; }, "n_sink"},
        BadCase{"NegativeWindow", [](HipConfig& c) { c.n_window = -5; }, "n_window"},
        BadCase{"ZeroBlockQ", [](HipConfig& c) { c.block_q = 0; }, "block_q"},
        BadCase{"NegativeTail", [](HipConfig& c) { c.tail_queries = -1; }, "tail_queries"},
        BadCase{"ExtendMinTokens", [](HipConfig& c) { c.extend_min_tokens = -2; },
                "extend_min_tokens"},
        BadCase{"NoStages", [](HipConfig& c) { c.chunk_sizes.clear(); }, "chunk_sizes"},
        BadCase{"ChunkNotDividing",
                [](HipConfig& c) {
                  c.chunk_sizes = {256, 48, 8};
                },
                "chunk_sizes[1] = 48"},
        BadCase{"ChunkIncreasing",
                [](HipConfig& c) {
                  c.chunk_sizes = {32, 256, 8};
                },
                "chunk_sizes"},
        BadCase{"StageKeepCount", [](HipConfig& c) { c.stage_keep = {32768}; }, "stage_keep"},
        BadCase{"StageKeepMultiple",
                [](HipConfig& c) {
                  c.stage_keep = {32700, 8192};
                },
                "stage_keep[0]"},
        BadCase{"StageKeepIncreasing",
                [](HipConfig& c) {
                  c.stage_keep = {8192, 32768};
                },
                "non-increasing"},
        BadCase{"KNotMultiple", [](HipConfig& c) { c.k = 2044; }, "k = 2044"},
        BadCase{"KTooBig", [](HipConfig& c) { c.k = 16384; }, "exceeds stage_keep"},
        BadCase{"StrideCount",
                [](HipConfig& c) {
                  c.stride_q = {4, 4};
                },
                "stride_q"},
        BadCase{"StrideZero",
                [](HipConfig& c) {
                  c.stride_q = {4, 0, 1};
                },
                "stride_q[1]"},
        BadCase{"IntervalZero",
                [](HipConfig& c) {
                  c.mask_refresh_interval = {96, 24, 0};
                },
                "mask_refresh_interval[2]"},
        BadCase{"OverrideLayerNegative",
                [](HipConfig& c) {
                  c.layer_overrides[0].layers = {0, -1};
                },
                "layer -1"},
        BadCase{"OverrideLayerTwice",
                [](HipConfig& c) { c.layer_overrides.push_back(c.layer_overrides[0]); },
                "a second time"},
        BadCase{"OverrideK", [](HipConfig& c) { c.layer_overrides[0].k = 12; },
                "layer_overrides[0].k"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hipserve::kernels
