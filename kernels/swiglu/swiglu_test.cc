#include "kernels/swiglu/swiglu.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

template <typename T>
std::vector<T> NaiveSwiglu(const std::vector<float>& g, const std::vector<float>& u) {
  std::vector<T> out(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const T x = g[i];
    out[i] = x * (T(1) / (T(1) + std::exp(-x))) * static_cast<T>(u[i]);
  }
  return out;
}

struct SwigluCase {
  int64_t n;
  float range;
};

class SwigluRefTest : public ::testing::TestWithParam<SwigluCase> {};

TEST_P(SwigluRefTest, MatchesNaiveFp64) {
  const SwigluCase& c = GetParam();
  const std::vector<float> g = testing::RandomVector(c.n, 41, -c.range, c.range);
  const std::vector<float> u = testing::RandomVector(c.n, 42, -2.f, 2.f);
  std::vector<float> out = testing::Poisoned(c.n);
  ASSERT_TRUE(SwigluRef({g.data(), u.data(), out.data(), c.n}).ok());
  EXPECT_TRUE(testing::MatchesReference(out, NaiveSwiglu<float>(g, u), NaiveSwiglu<double>(g, u),
                                        1e-6 * c.range));
}

INSTANTIATE_TEST_SUITE_P(Cases, SwigluRefTest,
                         ::testing::Values(SwigluCase{1, 1.f}, SwigluCase{1000, 4.f},
                                           SwigluCase{1536, 30.f}, SwigluCase{4097, 100.f}),
                         [](const ::testing::TestParamInfo<SwigluCase>& info) {
                           return absl::StrCat("n", info.param.n, "_range",
                                               static_cast<int>(info.param.range));
                         });

TEST(SwigluTest, ExtremeGates) {
  const float g[3] = {-1000.f, 1000.f, 0.f};
  const float u[3] = {2.f, 2.f, 2.f};
  float out[3];
  ASSERT_TRUE(SwigluRef({g, u, out, 3}).ok());
  EXPECT_EQ(out[0], 0.f);  // no NaN from inf / inf
  EXPECT_EQ(out[1], 2000.f);
  EXPECT_EQ(out[2], 0.f);
}

TEST(SwigluErrors, InvalidArgumentNamesField) {
  float g[1] = {1}, u[1] = {1}, o[1];
  EXPECT_NE(SwigluRef({nullptr, u, o, 1}).message().find("gate"), std::string::npos);
  EXPECT_NE(SwigluRef({g, nullptr, o, 1}).message().find("up"), std::string::npos);
  EXPECT_NE(SwigluRef({g, u, nullptr, 1}).message().find("out"), std::string::npos);
  const absl::Status s = SwigluRef({g, u, o, 0});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n must"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::kernels
