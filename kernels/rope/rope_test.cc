#include "kernels/rope/rope.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

// Independent transcription of HF transformers `_compute_llama3_parameters` (and the default
// rope init) in double.
std::vector<double> ExpectedInvFreq(const RopeConfig& c, int head_dim) {
  std::vector<double> f(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    const double inv = 1.0 / std::pow(static_cast<double>(c.theta), (2.0 * i) / head_dim);
    if (c.scaling == RopeScaling::kNone) {
      f[i] = inv;
      continue;
    }
    const double low_freq_wavelen = c.original_max_position / c.low_freq_factor;
    const double high_freq_wavelen = c.original_max_position / c.high_freq_factor;
    const double wavelen = 2 * M_PI / inv;
    double out = wavelen > low_freq_wavelen ? inv / c.factor : inv;
    const double smooth = (c.original_max_position / wavelen - c.low_freq_factor) /
                          (c.high_freq_factor - c.low_freq_factor);
    const double smoothed = (1 - smooth) * out / c.factor + smooth * out;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f[i] = is_medium ? smoothed : out;
  }
  return f;
}

RopeConfig Llama31Config() {
  RopeConfig c;
  c.theta = 500000.f;
  c.scaling = RopeScaling::kLlama3;
  c.factor = 8.f;
  c.low_freq_factor = 1.f;
  c.high_freq_factor = 4.f;
  c.original_max_position = 8192;
  return c;
}

TEST(RopeInvFreqTest, Llama3MatchesHfFormula) {
  for (int head_dim : {64, 128}) {
    const RopeConfig c = Llama31Config();
    std::vector<float> got(head_dim / 2);
    ASSERT_TRUE(RopeInvFreq(c, head_dim, got.data()).ok());
    const std::vector<double> want = ExpectedInvFreq(c, head_dim);
    int low = 0, medium = 0, high = 0;
    for (int i = 0; i < head_dim / 2; ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-7 * want[i]) << "i=" << i;
      const double wavelen = 2 * M_PI * std::pow(500000.0, (2.0 * i) / head_dim);
      if (wavelen < 8192 / 4.0)
        ++high;
      else if (wavelen > 8192)
        ++low;
      else
        ++medium;
    }
    // The Llama 3.1 config exercises all three bands.
    EXPECT_GT(low, 0);
    EXPECT_GT(medium, 0);
    EXPECT_GT(high, 0);
    EXPECT_EQ(got[0], 1.f);  // highest frequency untouched
    RopeConfig plain = c;
    plain.scaling = RopeScaling::kNone;
    std::vector<float> unscaled(head_dim / 2);
    ASSERT_TRUE(RopeInvFreq(plain, head_dim, unscaled.data()).ok());
    EXPECT_NEAR(got.back(), unscaled.back() / 8.0, 1e-6 * unscaled.back());  // lowest: / factor
  }
}

TEST(RopeInvFreqTest, DefaultMatchesPowerLaw) {
  RopeConfig c;
  std::vector<float> got(32);
  ASSERT_TRUE(RopeInvFreq(c, 64, got.data()).ok());
  const std::vector<double> want = ExpectedInvFreq(c, 64);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * want[i]);
}

struct RopeCase {
  int tokens, heads, head_dim;
  bool llama3;
  int max_position;
};

std::string Name(const ::testing::TestParamInfo<RopeCase>& info) {
  const RopeCase& c = info.param;
  return absl::StrCat("t", c.tokens, "_h", c.heads, "_d", c.head_dim,
                      c.llama3 ? "_llama3" : "_plain", "_pos", c.max_position);
}

// Naive rotation in precision T (inv_freq of the independent formula rounded to T).
template <typename T>
std::vector<T> NaiveRope(const std::vector<float>& x, const std::vector<int32_t>& pos,
                         const RopeCase& c, const std::vector<double>& inv_freq) {
  std::vector<T> out(x.begin(), x.end());
  const int half = c.head_dim / 2;
  for (int t = 0; t < c.tokens; ++t) {
    for (int h = 0; h < c.heads; ++h) {
      T* v = out.data() + (int64_t{t} * c.heads + h) * c.head_dim;
      for (int i = 0; i < half; ++i) {
        const T angle = static_cast<T>(pos[t]) * static_cast<T>(inv_freq[i]);
        const T x1 = v[i], x2 = v[i + half];
        v[i] = x1 * std::cos(angle) - x2 * std::sin(angle);
        v[i + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
      }
    }
  }
  return out;
}

class RopeRefTest : public ::testing::TestWithParam<RopeCase> {};

TEST_P(RopeRefTest, MatchesNaiveFp64) {
  const RopeCase& c = GetParam();
  const RopeConfig cfg = c.llama3 ? Llama31Config() : RopeConfig{};
  const std::vector<float> x0 = testing::RandomVector(int64_t{c.tokens} * c.heads * c.head_dim, 21);
  testing::Rng rng(22);
  std::vector<int32_t> pos(c.tokens);
  for (int32_t& p : pos) p = static_cast<int32_t>(rng.Next() % (c.max_position + 1));
  pos[0] = c.max_position;
  const std::vector<double> inv_freq = ExpectedInvFreq(cfg, c.head_dim);

  std::vector<float> x = x0;
  RopeParams p;
  p.x = x.data();
  p.positions = pos.data();
  p.tokens = c.tokens;
  p.heads = c.heads;
  p.head_dim = c.head_dim;
  p.config = cfg;
  ASSERT_TRUE(RopeRef(p).ok());
  EXPECT_TRUE(testing::MatchesReference(x, NaiveRope<float>(x0, pos, c, inv_freq),
                                        NaiveRope<double>(x0, pos, c, inv_freq), 2e-6));
}

TEST_P(RopeRefTest, PositionZeroIsIdentity) {
  const RopeCase& c = GetParam();
  const std::vector<float> x0 = testing::RandomVector(int64_t{c.tokens} * c.heads * c.head_dim, 23);
  std::vector<float> x = x0;
  std::vector<int32_t> pos(c.tokens, 0);
  RopeParams p;
  p.x = x.data();
  p.positions = pos.data();
  p.tokens = c.tokens;
  p.heads = c.heads;
  p.head_dim = c.head_dim;
  p.config = c.llama3 ? Llama31Config() : RopeConfig{};
  ASSERT_TRUE(RopeRef(p).ok());
  EXPECT_EQ(x, x0);
}

INSTANTIATE_TEST_SUITE_P(Cases, RopeRefTest,
                         ::testing::Values(RopeCase{1, 1, 2, false, 1},
                                           RopeCase{5, 3, 64, false, 2048},
                                           RopeCase{9, 2, 128, true, 131071},
                                           RopeCase{4, 4, 64, true, 1000000},
                                           RopeCase{3, 9, 96, false, 16}),
                         Name);

TEST(RopeErrors, InvalidArgumentNamesField) {
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  int32_t pos[2] = {1, 2};
  RopeParams good;
  good.x = x;
  good.positions = pos;
  good.tokens = 2;
  good.heads = 1;
  good.head_dim = 4;
  ASSERT_TRUE(RopeRef(good).ok());
  struct Bad {
    RopeParams p;
    const char* field;
  };
  std::vector<Bad> bad;
  RopeParams p = good;
  p = good, p.x = nullptr, bad.push_back({p, "x"});
  p = good, p.positions = nullptr, bad.push_back({p, "positions"});
  p = good, p.tokens = 0, bad.push_back({p, "tokens"});
  p = good, p.heads = -1, bad.push_back({p, "heads"});
  p = good, p.head_dim = 3, bad.push_back({p, "head_dim"});
  p = good, p.config.theta = 0.f, bad.push_back({p, "theta"});
  p = good, p.config.scaling = RopeScaling::kLlama3, p.config.factor = 0.f,
  bad.push_back({p, "factor"});
  p = good, p.config.scaling = RopeScaling::kLlama3, p.config.high_freq_factor = 1.f,
  bad.push_back({p, "high_freq_factor"});
  p = good, p.config.scaling = RopeScaling::kLlama3, p.config.original_max_position = 0,
  bad.push_back({p, "original_max_position"});
  for (const Bad& b : bad) {
    const absl::Status s = RopeRef(b.p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.field;
    EXPECT_NE(s.message().find(b.field), std::string::npos) << s.message();
  }
  int32_t neg[2] = {0, -5};
  p = good;
  p.positions = neg;
  EXPECT_NE(RopeRef(p).message().find("positions[1]"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::kernels
