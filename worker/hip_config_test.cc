#include "worker/hip_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hipserve::worker {
namespace {

using kernels::HipConfig;
using kernels::PruningPositions;

TEST(HipConfigTest, EmptyIsDefaults) {
  for (const char* text : {"", "  \n", "{}"}) {
    auto c = ParseHipConfig(text);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(HipConfigToJson(*c), HipConfigToJson(HipConfig{})) << text;
  }
}

TEST(HipConfigTest, ParsesEveryKey) {
  auto c = ParseHipConfig(R"({
    "n_sink": 4, "n_window": 16, "block_q": 8, "tail_queries": 3, "chunk_sizes": [64, 16, 4],
    "stage_keep": [256, 64], "k": 32, "stride_q": [2, 2, 1],
    "mask_refresh_interval": [16, 4, 2], "extend": false, "extend_min_tokens": 100, "pruning_positions": "chunk_indexed",
    "layer_overrides": [{"layers": [1], "k": 64, "pruning_positions": "relative"},
                        {"layers": [0, 3], "k": 16}]
  })");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->n_sink, 4);
  EXPECT_EQ(c->n_window, 16);
  EXPECT_EQ(c->block_q, 8);
  EXPECT_EQ(c->tail_queries, 3);
  EXPECT_EQ(c->chunk_sizes, (std::vector<int>{64, 16, 4}));
  EXPECT_EQ(c->stage_keep, (std::vector<int>{256, 64}));
  EXPECT_EQ(c->k, 32);
  EXPECT_EQ(c->stride_q, (std::vector<int>{2, 2, 1}));
  EXPECT_EQ(c->mask_refresh_interval, (std::vector<int>{16, 4, 2}));
  EXPECT_FALSE(c->extend);
  EXPECT_EQ(c->extend_min_tokens, 100);
  EXPECT_EQ(c->pruning_positions, PruningPositions::kChunkIndexed);
  ASSERT_EQ(c->layer_overrides.size(), 2u);
  EXPECT_EQ(c->layer_overrides[0].layers, (std::vector<int>{1}));
  EXPECT_EQ(c->layer_overrides[0].k, 64);
  EXPECT_EQ(c->layer_overrides[0].pruning_positions, PruningPositions::kRelative);
  EXPECT_EQ(c->layer_overrides[1].layers, (std::vector<int>{0, 3}));
  EXPECT_EQ(c->layer_overrides[1].k, 16);
  EXPECT_EQ(c->layer_overrides[1].pruning_positions, kernels::HipLayerOverride{}.pruning_positions);
  // Round trip.
  auto again = ParseHipConfig(HipConfigToJson(*c));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(HipConfigToJson(*again), HipConfigToJson(*c));
}

TEST(HipConfigTest, Stage1RepresentativesRoundTrip) {
  EXPECT_EQ(ParseHipConfig("")->stage1_representatives, kernels::Stage1Representatives::kProbes);
  for (const auto& [name, value] : {std::pair<std::string, kernels::Stage1Representatives>{
                                        "probes", kernels::Stage1Representatives::kProbes},
                                    {"page_bound", kernels::Stage1Representatives::kPageBound},
                                    {"block_means", kernels::Stage1Representatives::kBlockMeans}}) {
    auto c = ParseHipConfig(
        absl::StrCat(R"({"stage1_representatives": ")", name, R"(", "mean_block_size": 8})"));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->stage1_representatives, value) << name;
    EXPECT_EQ(c->mean_block_size, 8);
    const std::string text = HipConfigToJson(*c);
    EXPECT_NE(text.find(absl::StrCat(R"("stage1_representatives":")", name, R"(")")),
              std::string::npos)
        << text;
    auto again = ParseHipConfig(text);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->stage1_representatives, value);
    EXPECT_EQ(again->mean_block_size, 8);
    EXPECT_EQ(HipConfigToJson(*again), text);
  }
}

TEST(HipConfigTest, StageRepresentativesForEveryStage) {
  using R = kernels::Stage1Representatives;
  // Absent: stage 1's option, then probes (today's behaviour); nothing new in the JSON.
  auto d = ParseHipConfig(R"({"stage1_representatives": "page_bound"})");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->later_stage_representatives.empty());
  EXPECT_EQ(HipConfigToJson(*d).find("stage_representatives"), std::string::npos);
  EXPECT_EQ(HipConfigToJson(*ParseHipConfig("")).find("stage_representatives"), std::string::npos);
  // One name: every stage.
  auto all = ParseHipConfig(R"({"stage_representatives": "block_means", "mean_block_size": 8})");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->stage1_representatives, R::kBlockMeans);
  EXPECT_EQ(all->later_stage_representatives, (std::vector<R>{R::kBlockMeans, R::kBlockMeans}));
  EXPECT_EQ(all->mean_block_size, 8);
  // A list: one per stage; agreeing stage1_representatives is accepted.
  auto list = ParseHipConfig(
      R"({"stage1_representatives": "page_bound",
          "stage_representatives": ["page_bound", "page_bound", "exact"]})");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->stage1_representatives, R::kPageBound);
  EXPECT_EQ(list->later_stage_representatives, (std::vector<R>{R::kPageBound, R::kExact}));
  const std::string text = HipConfigToJson(*list);
  EXPECT_NE(text.find(R"("stage_representatives":["page_bound","page_bound","exact"])"),
            std::string::npos)
      << text;
  auto again = ParseHipConfig(text);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->stage1_representatives, R::kPageBound);
  EXPECT_EQ(again->later_stage_representatives, list->later_stage_representatives);
  EXPECT_EQ(HipConfigToJson(*again), text);
  // Two stages: the list follows chunk_sizes wherever it appears in the object.
  auto two = ParseHipConfig(
      R"({"stage_representatives": ["probes", "exact"], "chunk_sizes": [256, 8],
          "stage_keep": [32768], "mask_refresh_interval": [8, 8], "stride_q": [4, 1]})");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->stage1_representatives, R::kProbes);
  EXPECT_EQ(two->later_stage_representatives, std::vector<R>{R::kExact});
}

TEST(HipConfigTest, EmptyOverrideListDisablesDefaults) {
  auto c = ParseHipConfig(R"({"layer_overrides": []})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->layer_overrides.empty());
}

struct ErrorCase {
  std::string name;
  std::string json;
  std::string expect;  // substring of the message
};

class HipConfigErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(HipConfigErrorTest, InvalidArgumentNamingTheKey) {
  auto c = ParseHipConfig(GetParam().json);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(GetParam().expect), std::string::npos) << c.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HipConfigErrorTest,
    ::testing::Values(
        ErrorCase{"NotJson", "{n_sink: 3", "not valid JSON"},
        ErrorCase{"NotObject", "[1, 2]", "object"},
        ErrorCase{"UnknownKey", R"({"n_sinks": 3})", "n_sinks: unknown key"},
        ErrorCase{"WrongType", R"({"n_sink": "many"})", "n_sink: expected an integer"},
        ErrorCase{"Float", R"({"k": 2048.5})", "k: expected an integer"},
        ErrorCase{"ListElement", R"({"chunk_sizes": [256, "x", 8]})", "chunk_sizes[1]"},
        ErrorCase{"NotList", R"({"stride_q": 4})", "stride_q: expected a list"},
        ErrorCase{"BoolType", R"({"extend": 1})", "extend: expected a bool"},
        ErrorCase{"BadPositions", R"({"pruning_positions": "absolute"})", "pruning_positions"},
        ErrorCase{"ChunkNotDividing", R"({"chunk_sizes": [256, 30, 8]})", "chunk_sizes"},
        ErrorCase{"KNotMultiple", R"({"k": 2047})", "k = 2047"},
        ErrorCase{"StageKeepLength", R"({"stage_keep": [32768]})", "stage_keep"},
        ErrorCase{"IntervalZero", R"({"mask_refresh_interval": [96, 0, 8]})",
                  "mask_refresh_interval[1]"},
        ErrorCase{"NegativeWindow", R"({"n_window": -1})", "n_window"},
        ErrorCase{"OverrideUnknownKey", R"({"layer_overrides": [{"layers": [0], "kk": 8}]})",
                  "layer_overrides[0].kk: unknown key"},
        ErrorCase{"OverrideNoLayers", R"({"layer_overrides": [{"k": 8}]})",
                  "layer_overrides[0]: missing"},
        ErrorCase{"OverrideBadK", R"({"layer_overrides": [{"layers": [0], "k": 5}]})",
                  "layer_overrides[0].k"},
        // The default override budget (4096) must still fit a smaller stage_keep.
        ErrorCase{
            "OverrideDefaultKTooBig",
            R"({"stage_keep": [4096, 1024], "k": 1024, "layer_overrides": [{"layers": [0]}]})",
            "layer_overrides[0].k = 4096 exceeds"},
        ErrorCase{"Huge", R"({"n_sink": 99999999999})", "n_sink: value"},
        ErrorCase{
            "BadRepresentatives", R"({"stage1_representatives": "means"})",
            R"(stage1_representatives: expected "probes", "page_bound", "block_means" or "exact")"},
        ErrorCase{"RepresentativesType", R"({"stage1_representatives": 1})",
                  "stage1_representatives: expected"},
        ErrorCase{"MeanBlockType", R"({"mean_block_size": "16"})",
                  "mean_block_size: expected an integer"},
        ErrorCase{"MeanBlockZero", R"({"mean_block_size": 0})", "mean_block_size = 0 must be > 0"},
        ErrorCase{"MeanBlockNotDividing", R"({"mean_block_size": 24})",
                  "mean_block_size = 24 must be > 0 and divide chunk_sizes[0] = 256"},
        ErrorCase{"StageRepsLength", R"({"stage_representatives": ["page_bound", "exact"]})",
                  "stage_representatives: expected one entry per stage (3), got 2"},
        ErrorCase{"StageRepsLengthFollowsChunkSizes",
                  R"({"chunk_sizes": [256, 8], "stage_keep": [32768],
                      "mask_refresh_interval": [8, 8], "stride_q": [4, 1],
                      "stage_representatives": ["exact", "exact", "exact"]})",
                  "stage_representatives: expected one entry per stage (2), got 3"},
        ErrorCase{"StageRepsBadName", R"({"stage_representatives": ["probes", "bound", "exact"]})",
                  R"(stage_representatives[1]: expected "probes")"},
        ErrorCase{"StageRepsBadType", R"({"stage_representatives": 3})",
                  "stage_representatives: expected a name or a list of names"},
        ErrorCase{
            "StageRepsDisagreeWithStage1",
            R"({"stage1_representatives": "probes", "stage_representatives": "exact"})",
            R"(stage_representatives: stage 1 is "exact" but stage1_representatives is "probes")"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });

}  // namespace
}  // namespace hipserve::worker

namespace hipserve::worker {
namespace {

// The Kubernetes ConfigMap's hip.json is passed verbatim as --hip_config: it must parse, and
// it states the HIP.md defaults.
TEST(HipConfigDeployTest, ShippedKubernetesConfigParses) {
  std::ifstream f(std::string(HIPSERVE_SOURCE_DIR) + "/deploy/k8s/base/hip.json");
  ASSERT_TRUE(f) << "deploy/k8s/base/hip.json is missing";
  std::stringstream text;
  text << f.rdbuf();
  absl::StatusOr<kernels::HipConfig> c = ParseHipConfig(text.str());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(HipConfigToJson(*c), HipConfigToJson(*ParseHipConfig("")));
}

}  // namespace
}  // namespace hipserve::worker
