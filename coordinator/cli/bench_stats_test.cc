#include "coordinator/cli/bench_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace hipserve::cli::bench {
namespace {

TEST(BenchPercentileTest, LinearInterpolationOnKnownInputs) {
  // numpy.percentile([1, 2, 3, 4, 5], [0, 50, 90, 99, 100]) = 1, 3, 4.6, 4.96, 5.
  const std::vector<double> v = {5, 3, 1, 4, 2};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 3);
  EXPECT_NEAR(Percentile(v, 90), 4.6, 1e-12);
  EXPECT_NEAR(Percentile(v, 99), 4.96, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 5);
  // Even count: the median is the midpoint. numpy: p90 of 1..10 = 9.1, p99 = 9.91.
  std::vector<double> w;
  for (int i = 10; i >= 1; --i) w.push_back(i);
  EXPECT_DOUBLE_EQ(Percentile(w, 50), 5.5);
  EXPECT_NEAR(Percentile(w, 90), 9.1, 1e-12);
  EXPECT_NEAR(Percentile(w, 99), 9.91, 1e-12);
}

TEST(BenchPercentileTest, EdgeCases) {
  EXPECT_TRUE(std::isnan(Percentile({}, 50)));
  // One sample: every percentile is that sample.
  for (double p : {0.0, 50.0, 90.0, 99.0, 100.0}) EXPECT_DOUBLE_EQ(Percentile({7.5}, p), 7.5);
  // Two samples.
  EXPECT_DOUBLE_EQ(Percentile({0, 10}, 50), 5);
  EXPECT_DOUBLE_EQ(Percentile({0, 10}, 99), 9.9);
  // All equal.
  EXPECT_DOUBLE_EQ(Percentile({2, 2, 2}, 99), 2);
  // Out-of-range p is clamped.
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3}, -5), 1);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3}, 250), 3);
}

TEST(BenchPercentileTest, SummarizeGivesOrderedPercentilesAndMean) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  Distribution d = Summarize(v);
  EXPECT_EQ(d.count, 100u);
  EXPECT_DOUBLE_EQ(d.mean, 50.5);
  EXPECT_DOUBLE_EQ(d.min, 1);
  EXPECT_DOUBLE_EQ(d.max, 100);
  EXPECT_DOUBLE_EQ(d.p50, 50.5);
  EXPECT_NEAR(d.p90, 90.1, 1e-9);
  EXPECT_NEAR(d.p99, 99.01, 1e-9);
  Distribution one = Summarize({3});
  EXPECT_EQ(one.count, 1u);
  EXPECT_DOUBLE_EQ(one.p50, 3);
  EXPECT_DOUBLE_EQ(one.p99, 3);
  Distribution none = Summarize(std::vector<double>{});
  EXPECT_EQ(none.count, 0u);
  EXPECT_TRUE(std::isnan(none.p50));
  EXPECT_TRUE(std::isnan(none.mean));
}

TEST(BenchRequestMetricsTest, OneTokenPerMessage) {
  // Sent at 1.0; tokens at 1.5, 1.6, 1.8, 1.9; stream ends at 2.0.
  RequestMetrics m = ComputeRequestMetrics(1.0, 2.0, {{1.5, 1}, {1.6, 1}, {1.8, 1}, {1.9, 1}});
  EXPECT_EQ(m.output_tokens, 4);
  EXPECT_DOUBLE_EQ(m.ttft_s, 0.5);
  EXPECT_DOUBLE_EQ(m.latency_s, 1.0);
  ASSERT_EQ(m.itl_s.size(), 3u);
  EXPECT_NEAR(m.itl_s[0], 0.1, 1e-12);
  EXPECT_NEAR(m.itl_s[1], 0.2, 1e-12);
  EXPECT_NEAR(m.itl_s[2], 0.1, 1e-12);
  EXPECT_NEAR(m.stream_tok_s, 3 / 0.4, 1e-9);
  EXPECT_NEAR(m.e2e_tok_s, 4.0, 1e-12);
}

TEST(BenchRequestMetricsTest, ChunksSplitTheGapAndEmptyMessagesAreSkipped) {
  // First message carries 2 tokens (one has no gap), then an empty progress message, then 4
  // tokens after 0.4 s: 4 samples of 0.1.
  RequestMetrics m = ComputeRequestMetrics(0.0, 1.0, {{0.2, 2}, {0.3, 0}, {0.6, 4}});
  EXPECT_EQ(m.output_tokens, 6);
  EXPECT_DOUBLE_EQ(m.ttft_s, 0.2);
  ASSERT_EQ(m.itl_s.size(), 4u);
  for (double x : m.itl_s) EXPECT_NEAR(x, 0.1, 1e-12);
  EXPECT_NEAR(m.stream_tok_s, 5 / 0.4, 1e-9);
}

TEST(BenchRequestMetricsTest, SingleTokenAndNoTokens) {
  RequestMetrics one = ComputeRequestMetrics(0.0, 0.5, {{0.25, 1}});
  EXPECT_EQ(one.output_tokens, 1);
  EXPECT_DOUBLE_EQ(one.ttft_s, 0.25);
  EXPECT_TRUE(one.itl_s.empty());
  EXPECT_EQ(one.stream_tok_s, 0);  // undefined with one token
  EXPECT_DOUBLE_EQ(one.e2e_tok_s, 2);
  RequestMetrics none = ComputeRequestMetrics(0.0, 0.5, {});
  EXPECT_EQ(none.output_tokens, 0);
  EXPECT_EQ(none.ttft_s, 0);
}

TEST(BenchRunSummaryTest, AggregatesOverTheWallWindowAndSkipsFailures) {
  RequestRecord a;
  a.ok = true;
  a.prompt_tokens = 10;
  a.start_s = 1.0;
  a.end_s = 2.0;
  a.m = ComputeRequestMetrics(1.0, 2.0, {{1.2, 1}, {1.4, 1}, {1.6, 1}, {2.0, 1}});
  RequestRecord b;
  b.ok = true;
  b.prompt_tokens = 10;
  b.start_s = 1.5;
  b.end_s = 3.0;
  b.m = ComputeRequestMetrics(1.5, 3.0, {{2.0, 1}, {3.0, 3}});
  RequestRecord failed;
  failed.ok = false;
  failed.start_s = 2.0;
  failed.end_s = 5.0;  // still ends the window
  RunSummary s = SummarizeRun({a, b, failed});
  EXPECT_EQ(s.requests_ok, 2);
  EXPECT_EQ(s.requests_failed, 1);
  EXPECT_DOUBLE_EQ(s.wall_s, 4.0);
  EXPECT_EQ(s.output_tokens, 8);
  EXPECT_EQ(s.prompt_tokens, 20);
  EXPECT_DOUBLE_EQ(s.output_tok_s, 2.0);
  EXPECT_DOUBLE_EQ(s.total_tok_s, 7.0);
  EXPECT_DOUBLE_EQ(s.requests_per_s, 0.5);
  EXPECT_EQ(s.ttft_s.count, 2u);
  EXPECT_NEAR(s.ttft_s.p50, 0.35, 1e-12);  // 0.2 and 0.5
  EXPECT_NEAR(s.ttft_s.min, 0.2, 1e-12);
  // ITL samples: a: 0.2, 0.2, 0.4; b: 1/3 x3.
  EXPECT_EQ(s.itl_s.count, 6u);
  EXPECT_NEAR(s.itl_s.max, 0.4, 1e-12);
  EXPECT_NEAR(s.itl_s.min, 0.2, 1e-12);
  EXPECT_LE(s.itl_s.p50, s.itl_s.p90);
  EXPECT_LE(s.itl_s.p90, s.itl_s.p99);
  EXPECT_EQ(s.stream_tok_s.count, 2u);
  EXPECT_NEAR(s.stream_tok_s.min, 3.0, 1e-9);      // b: 3 tokens after the first in 1 s
  EXPECT_NEAR(s.stream_tok_s.max, 3 / 0.8, 1e-9);  // a: 3 tokens after the first in 0.8 s

  // a's last token (2.0) comes with b's first: no window in which both decode.
  EXPECT_EQ(s.all_decoding_s, 0);
  EXPECT_EQ(s.all_decoding_tok_s, 0);

  RunSummary empty = SummarizeRun(std::vector<RequestRecord>{});
  EXPECT_EQ(empty.requests_ok, 0);
  EXPECT_EQ(empty.wall_s, 0);
  EXPECT_EQ(empty.output_tok_s, 0);
  EXPECT_EQ(empty.ttft_s.count, 0u);
}

// The batch's steady decode: tokens in (last first token, first end] over that window.
TEST(BenchStatsTest, AllDecodingWindow) {
  RequestRecord a;
  a.ok = true;
  a.start_s = 0;
  a.end_s = 4.0;
  a.m = ComputeRequestMetrics(0, 4.0, {{1.0, 1}, {2.0, 1}, {3.0, 1}, {4.0, 1}});
  RequestRecord b;
  b.ok = true;
  b.start_s = 0;
  b.end_s = 5.0;
  b.m = ComputeRequestMetrics(0, 5.0, {{1.5, 1}, {2.5, 1}, {3.5, 1}, {5.0, 1}});
  RequestRecord failed;  // failed streams neither open nor close the window
  failed.ok = false;
  failed.start_s = 0;
  failed.end_s = 0.5;
  const RunSummary s = SummarizeRun({a, b, failed});
  EXPECT_DOUBLE_EQ(s.all_decoding_s, 2.5);  // (1.5, 4.0]
  // a: 2.0, 3.0, 4.0; b: 2.5, 3.5 (5.0 is past a's end): 5 tokens in 2.5 s.
  EXPECT_DOUBLE_EQ(s.all_decoding_tok_s, 2.0);
  // Tokens that arrive in one message are spread evenly over its gap.
  RequestRecord c = b;
  c.m = ComputeRequestMetrics(0, 5.0, {{1.5, 1}, {3.5, 2}, {5.0, 1}});  // 2.5 and 3.5
  EXPECT_DOUBLE_EQ(SummarizeRun({a, c}).all_decoding_tok_s, 2.0);
  // A stream that ended without a token: no window.
  RequestRecord silent;
  silent.ok = true;
  silent.start_s = 0;
  silent.end_s = 4.5;
  silent.m = ComputeRequestMetrics(0, 4.5, {});
  EXPECT_EQ(SummarizeRun({a, b, silent}).all_decoding_tok_s, 0);
}

TEST(BenchSyntheticPromptTest, SeededValidAndDistinct) {
  const std::vector<int32_t> a = SyntheticPrompt(42, 0, 500, 259, {});
  ASSERT_EQ(a.size(), 500u);
  for (int32_t id : a) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 259);
  }
  EXPECT_EQ(a, SyntheticPrompt(42, 0, 500, 259, {}));             // same seed and index: same ids
  EXPECT_NE(a, SyntheticPrompt(42, 1, 500, 259, {}));             // another request: other ids
  EXPECT_NE(a, SyntheticPrompt(43, 0, 500, 259, {}));             // another seed: other ids
  EXPECT_GT(std::set<int32_t>(a.begin(), a.end()).size(), 150u);  // spread over the vocabulary
  // Excluded ids never appear; with all but one excluded, only that one is left.
  const std::vector<int32_t> b = SyntheticPrompt(1, 2, 2000, 10, {0, 9, 3});
  std::set<int32_t> seen(b.begin(), b.end());
  EXPECT_EQ(seen, (std::set<int32_t>{1, 2, 4, 5, 6, 7, 8}));
  const std::vector<int32_t> c = SyntheticPrompt(1, 2, 5, 3, {0, 2});
  EXPECT_EQ(c, (std::vector<int32_t>{1, 1, 1, 1, 1}));
  EXPECT_TRUE(SyntheticPrompt(1, 2, 5, 2, {0, 1}).empty());
  EXPECT_TRUE(SyntheticPrompt(1, 2, 0, 100, {}).empty());
}

TEST(BenchSyntheticPromptTest, FitToLength) {
  EXPECT_EQ(FitToLength({1, 2, 3}, 7), (std::vector<int32_t>{1, 2, 3, 1, 2, 3, 1}));
  EXPECT_EQ(FitToLength({1, 2, 3}, 2), (std::vector<int32_t>{1, 2}));
  EXPECT_TRUE(FitToLength({}, 4).empty());
}

}  // namespace
}  // namespace hipserve::cli::bench
