#include "kernels/gemm/gemm.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

struct GemmCase {
  int m, n, k;
  bool bias;
  float beta;
};

std::string Name(const ::testing::TestParamInfo<GemmCase>& info) {
  const GemmCase& c = info.param;
  return absl::StrCat("m", c.m, "_n", c.n, "_k", c.k, c.bias ? "_bias" : "",
                      c.beta != 0.f ? "_beta" : "");
}

// Naive triple loop in precision T.
template <typename T>
std::vector<T> NaiveGemm(const GemmCase& c, const std::vector<float>& a,
                         const std::vector<float>& b, const std::vector<float>& bias,
                         const std::vector<float>& c0) {
  std::vector<T> out(int64_t{c.m} * c.n);
  for (int i = 0; i < c.m; ++i) {
    for (int j = 0; j < c.n; ++j) {
      T acc = 0;
      for (int l = 0; l < c.k; ++l) {
        acc += static_cast<T>(a[int64_t{i} * c.k + l]) * static_cast<T>(b[int64_t{j} * c.k + l]);
      }
      if (c.bias) acc += static_cast<T>(bias[j]);
      if (c.beta != 0.f) acc += static_cast<T>(c.beta) * static_cast<T>(c0[int64_t{i} * c.n + j]);
      out[int64_t{i} * c.n + j] = acc;
    }
  }
  return out;
}

class GemmRefTest : public ::testing::TestWithParam<GemmCase> {};

TEST_P(GemmRefTest, MatchesNaiveFp64) {
  const GemmCase& c = GetParam();
  const std::vector<float> a = testing::RandomVector(int64_t{c.m} * c.k, 31);
  const std::vector<float> b = testing::RandomVector(int64_t{c.n} * c.k, 32);
  const std::vector<float> bias = testing::RandomVector(c.n, 33);
  // beta == 0: C starts poisoned and must be ignored.
  const std::vector<float> c0 = c.beta != 0.f ? testing::RandomVector(int64_t{c.m} * c.n, 34)
                                              : testing::Poisoned(int64_t{c.m} * c.n);
  std::vector<float> out = c0;
  GemmParams p{a.data(), b.data(), out.data(), c.bias ? bias.data() : nullptr,
               c.m,      c.n,      c.k,        c.beta};
  ASSERT_TRUE(GemmRef(p).ok());
  EXPECT_TRUE(testing::MatchesReference(out, NaiveGemm<float>(c, a, b, bias, c0),
                                        NaiveGemm<double>(c, a, b, bias, c0), 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Cases, GemmRefTest,
                         ::testing::Values(GemmCase{1, 1, 1, false, 0.f},
                                           GemmCase{1, 576, 576, false, 0.f},  // decode GEMV
                                           GemmCase{7, 33, 65, true, 0.f},
                                           GemmCase{16, 64, 128, false, 1.f},  // residual add
                                           GemmCase{5, 17, 300, true, 0.5f},
                                           GemmCase{64, 96, 1536, false, 0.f}),
                         Name);

TEST(GemmErrors, InvalidArgumentNamesField) {
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4];
  const GemmParams good{a, b, c, nullptr, 2, 2, 2, 0.f};
  ASSERT_TRUE(GemmRef(good).ok());
  EXPECT_EQ(c[0], 1.f);
  EXPECT_EQ(c[1], 2.f);  // C = A * B^T with B = I
  struct Bad {
    GemmParams p;
    const char* field;
  };
  std::vector<Bad> bad;
  GemmParams p = good;
  p = good, p.a = nullptr, bad.push_back({p, "a is"});
  p = good, p.b = nullptr, bad.push_back({p, "b is"});
  p = good, p.c = nullptr, bad.push_back({p, "c is"});
  p = good, p.m = 0, bad.push_back({p, "m must"});
  p = good, p.n = -2, bad.push_back({p, "n must"});
  p = good, p.k = 0, bad.push_back({p, "k must"});
  p = good, p.beta = NAN, bad.push_back({p, "beta"});
  for (const Bad& x : bad) {
    const absl::Status s = GemmRef(x.p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << x.field;
    EXPECT_NE(s.message().find(x.field), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace hipserve::kernels
