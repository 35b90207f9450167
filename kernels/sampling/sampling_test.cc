#include "kernels/sampling/sampling.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

int32_t NaiveArgmax(const std::vector<float>& l) {
  int32_t best = 0;
  for (int32_t i = 1; i < static_cast<int32_t>(l.size()); ++i) {
    if (l[i] > l[best]) best = i;
  }
  return best;
}

// softmax(logits / temperature) in double over `allowed` ids (others get 0).
std::vector<double> NaiveProbs(const std::vector<float>& l, double temperature,
                               const std::vector<bool>& allowed) {
  double mx = -INFINITY;
  for (size_t i = 0; i < l.size(); ++i) {
    if (allowed[i]) mx = std::max(mx, l[i] / temperature);
  }
  std::vector<double> p(l.size(), 0.0);
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (allowed[i]) z += (p[i] = std::exp(l[i] / temperature - mx));
  }
  for (double& x : p) x /= z;
  return p;
}

// Draws `draws` samples (seed s, index = s * 7 + 3) and returns the counts per token.
std::vector<int> Histogram(const std::vector<float>& l, SamplingOptions o, int draws) {
  std::vector<int> counts(l.size(), 0);
  for (int s = 0; s < draws; ++s) {
    o.seed = 1000 + s;
    o.sample_index = static_cast<uint64_t>(s) * 7 + 3;
    absl::StatusOr<SampleResult> r = SampleRef(l.data(), static_cast<int>(l.size()), o);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) ++counts[r->token];
  }
  return counts;
}

// Pearson chi-square of counts against probabilities; tokens with p == 0 must have 0 counts.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& p, int draws) {
  double chi2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double e = p[i] * draws;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi2;
}

struct DistCase {
  float temperature;
  int top_k;
  float top_p;
  std::string name;
};

class SamplingDistributionTest : public ::testing::TestWithParam<DistCase> {};

TEST_P(SamplingDistributionTest, MatchesFilteredSoftmax) {
  const DistCase& c = GetParam();
  const std::vector<float> l = testing::RandomVector(8, 61, -2.f, 2.f);
  // Independent filter: ids sorted by logit, keep top_k, then the top_p prefix.
  std::vector<int> order(l.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  std::vector<bool> allowed(l.size(), false);
  const int k = c.top_k > 0 ? c.top_k : static_cast<int>(l.size());
  for (int i = 0; i < k; ++i) allowed[order[i]] = true;
  if (c.top_p < 1.f) {
    const std::vector<double> pk = NaiveProbs(l, c.temperature, allowed);
    std::vector<bool> nucleus(l.size(), false);
    double cum = 0;
    for (int i = 0; i < k && cum < c.top_p; ++i) {
      nucleus[order[i]] = true;
      cum += pk[order[i]];
    }
    allowed = nucleus;
  }
  const std::vector<double> p = NaiveProbs(l, c.temperature, allowed);
  constexpr int kDraws = 20000;
  SamplingOptions o;
  o.temperature = c.temperature;
  o.top_k = c.top_k;
  o.top_p = c.top_p;
  const std::vector<int> counts = Histogram(l, o, kDraws);
  // <= 7 degrees of freedom; 40 is far in the tail (p ~ 1e-6), while a wrong temperature or a
  // wrong filter gives chi-square in the hundreds or thousands.
  EXPECT_LT(ChiSquare(counts, p, kDraws), 40.0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SamplingDistributionTest,
    ::testing::Values(DistCase{1.f, 0, 1.f, "t1"}, DistCase{0.5f, 0, 1.f, "t05"},
                      DistCase{2.f, 0, 1.f, "t2"}, DistCase{1.f, 3, 1.f, "t1_topk3"},
                      DistCase{1.f, 0, 0.6f, "t1_topp06"},
                      DistCase{0.7f, 5, 0.8f, "t07_topk5_topp08"}),
    [](const ::testing::TestParamInfo<DistCase>& info) { return info.param.name; });

TEST(SamplingTest, GreedyIsArgmaxWithRawLogprob) {
  const std::vector<float> l = testing::RandomVector(5000, 62, -10.f, 10.f);
  absl::StatusOr<SampleResult> r = SampleRef(l.data(), 5000, SamplingOptions{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, NaiveArgmax(l));
  const std::vector<double> p = NaiveProbs(l, 1.0, std::vector<bool>(l.size(), true));
  EXPECT_NEAR(r->logprob, std::log(p[r->token]), 1e-5);
}

TEST(SamplingTest, GreedyTiesGoToLowestId) {
  const std::vector<float> l = {0.f, 3.f, -1.f, 3.f, 3.f};
  absl::StatusOr<SampleResult> r = SampleRef(l.data(), 5, SamplingOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->token, 1);
}

TEST(SamplingTest, SameSeedAndIndexGiveSameToken) {
  const std::vector<float> l = testing::RandomVector(1000, 63, -3.f, 3.f);
  SamplingOptions o;
  o.temperature = 1.f;
  o.top_p = 0.95f;
  int distinct_changes = 0;
  int32_t prev = -1;
  for (uint64_t idx = 0; idx < 50; ++idx) {
    o.seed = 42;
    o.sample_index = idx;
    absl::StatusOr<SampleResult> a = SampleRef(l.data(), 1000, o);
    absl::StatusOr<SampleResult> b = SampleRef(l.data(), 1000, o);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->token, b->token);
    EXPECT_EQ(a->logprob, b->logprob);
    if (a->token != prev) ++distinct_changes;
    prev = a->token;
  }
  EXPECT_GT(distinct_changes, 10);  // the stream actually advances with sample_index
}

TEST(SamplingTest, TopKOneAndTinyTopPAreArgmax) {
  const std::vector<float> l = testing::RandomVector(3000, 64, -2.f, 2.f);
  const int32_t want = NaiveArgmax(l);
  for (uint64_t s = 0; s < 100; ++s) {
    SamplingOptions o;
    o.temperature = 1.5f;
    o.seed = s;
    o.top_k = 1;
    ASSERT_EQ(SampleRef(l.data(), 3000, o)->token, want);
    o.top_k = 0;
    o.top_p = 1e-6f;
    ASSERT_EQ(SampleRef(l.data(), 3000, o)->token, want);
  }
}

TEST(SamplingTest, MaskedTokensNeverDrawn) {
  std::vector<float> l = testing::RandomVector(16, 65);
  for (int i = 0; i < 16; i += 2) l[i] = -INFINITY;
  SamplingOptions o;
  o.temperature = 3.f;
  const std::vector<int> counts = Histogram(l, o, 2000);
  for (int i = 0; i < 16; i += 2) EXPECT_EQ(counts[i], 0);
}

TEST(SamplingTest, UniformIsPinnedAndInRange) {
  double sum = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    const double u = SamplingUniform(7, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.01);
  // The stream is part of the reproducibility contract: changing it changes users' outputs.
  EXPECT_EQ(SamplingRandomBits(0, 0), 17448420733077208847ull);
  EXPECT_EQ(SamplingRandomBits(42, 7), 2707671793207452428ull);
  EXPECT_NE(SamplingRandomBits(0, 1), SamplingRandomBits(1, 0));
}

TEST(SamplingErrors, InvalidArgumentNamesField) {
  std::vector<float> l = {1.f, 2.f, 3.f};
  SamplingOptions ok;
  ASSERT_TRUE(SampleRef(l.data(), 3, ok).ok());
  auto code_and_field = [](absl::StatusOr<SampleResult> r, const char* field) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status();
  };
  code_and_field(SampleRef(nullptr, 3, ok), "logits");
  code_and_field(SampleRef(l.data(), 0, ok), "vocab");
  SamplingOptions o = ok;
  o.temperature = -1.f;
  code_and_field(SampleRef(l.data(), 3, o), "temperature");
  o = ok, o.temperature = NAN;
  code_and_field(SampleRef(l.data(), 3, o), "temperature");
  o = ok, o.top_p = 0.f;
  code_and_field(SampleRef(l.data(), 3, o), "top_p");
  o = ok, o.top_p = 1.5f;
  code_and_field(SampleRef(l.data(), 3, o), "top_p");
  o = ok, o.top_k = -1;
  code_and_field(SampleRef(l.data(), 3, o), "top_k");
  l[1] = NAN;
  code_and_field(SampleRef(l.data(), 3, ok), "logits[1]");
  l[1] = INFINITY;
  code_and_field(SampleRef(l.data(), 3, ok), "logits[1]");
  l = {-INFINITY, -INFINITY};
  code_and_field(SampleRef(l.data(), 2, ok), "all logits");
}

}  // namespace
}  // namespace hipserve::kernels
