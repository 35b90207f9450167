#include "kernels/rmsnorm/rmsnorm.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

// Independent naive RMSNorm in precision T (double = reference, float = same-precision naive).
template <typename T>
void NaiveRmsNorm(const std::vector<float>& in, const std::vector<float>& w,
                  const std::vector<float>* residual, int rows, int dim, float eps,
                  std::vector<T>* out, std::vector<T>* new_residual) {
  out->assign(in.size(), T(0));
  new_residual->assign(in.size(), T(0));
  for (int r = 0; r < rows; ++r) {
    std::vector<T> x(dim);
    for (int i = 0; i < dim; ++i) {
      x[i] = static_cast<T>(in[r * dim + i]);
      if (residual != nullptr) x[i] += static_cast<T>((*residual)[r * dim + i]);
      (*new_residual)[r * dim + i] = x[i];
    }
    T ss = 0;
    for (int i = 0; i < dim; ++i) ss += x[i] * x[i];
    const T inv = T(1) / std::sqrt(ss / T(dim) + T(eps));
    for (int i = 0; i < dim; ++i) (*out)[r * dim + i] = x[i] * inv * static_cast<T>(w[i]);
  }
}

struct RmsNormCase {
  int rows;
  int dim;
  bool residual;
};

std::string Name(const ::testing::TestParamInfo<RmsNormCase>& info) {
  return absl::StrCat("rows", info.param.rows, "_dim", info.param.dim,
                      info.param.residual ? "_residual" : "_plain");
}

class RmsNormRefTest : public ::testing::TestWithParam<RmsNormCase> {};

TEST_P(RmsNormRefTest, MatchesNaiveFp64) {
  const RmsNormCase& c = GetParam();
  const int64_t n = int64_t{c.rows} * c.dim;
  const std::vector<float> in = testing::RandomVector(n, 1, -3.f, 3.f);
  const std::vector<float> w = testing::RandomVector(c.dim, 2, 0.5f, 1.5f);
  const std::vector<float> res0 = testing::RandomVector(n, 3, -2.f, 2.f);
  std::vector<float> res = res0;
  std::vector<float> out = testing::Poisoned(n);
  const float eps = 1e-5f;

  RmsNormParams p{in.data(), w.data(), out.data(), c.residual ? res.data() : nullptr,
                  c.rows,    c.dim,    eps};
  ASSERT_TRUE(RmsNormRef(p).ok());

  std::vector<double> ref, ref_res;
  std::vector<float> naive, naive_res;
  const std::vector<float>* r = c.residual ? &res0 : nullptr;
  NaiveRmsNorm(in, w, r, c.rows, c.dim, eps, &ref, &ref_res);
  NaiveRmsNorm(in, w, r, c.rows, c.dim, eps, &naive, &naive_res);
  EXPECT_TRUE(testing::MatchesReference(out, naive, ref, 1e-6));
  if (c.residual) {
    EXPECT_TRUE(testing::MatchesReference(res, naive_res, ref_res, 1e-6));
  }
}

TEST_P(RmsNormRefTest, InPlaceEqualsOutOfPlace) {
  const RmsNormCase& c = GetParam();
  const int64_t n = int64_t{c.rows} * c.dim;
  std::vector<float> x = testing::RandomVector(n, 4);
  const std::vector<float> w = testing::RandomVector(c.dim, 5);
  std::vector<float> out = testing::Poisoned(n);
  std::vector<float> r1 = testing::RandomVector(n, 6), r2 = r1;
  ASSERT_TRUE(RmsNormRef({x.data(), w.data(), out.data(), c.residual ? r1.data() : nullptr, c.rows,
                          c.dim, 1e-6f})
                  .ok());
  ASSERT_TRUE(RmsNormRef({x.data(), w.data(), x.data(), c.residual ? r2.data() : nullptr, c.rows,
                          c.dim, 1e-6f})
                  .ok());
  EXPECT_EQ(x, out);
}

INSTANTIATE_TEST_SUITE_P(Cases, RmsNormRefTest,
                         ::testing::Values(RmsNormCase{1, 1, false}, RmsNormCase{3, 7, true},
                                           RmsNormCase{4, 64, false}, RmsNormCase{5, 576, true},
                                           RmsNormCase{2, 4096, true}, RmsNormCase{7, 1001, false}),
                         Name);

TEST(RmsNormErrors, InvalidArgumentNamesField) {
  float in[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, out[4];
  const RmsNormParams good{in, w, out, nullptr, 1, 4, 1e-5f};
  ASSERT_TRUE(RmsNormRef(good).ok());
  struct Bad {
    RmsNormParams p;
    const char* field;
  };
  RmsNormParams p = good;
  std::vector<Bad> bad;
  p = good, p.in = nullptr, bad.push_back({p, "in"});
  p = good, p.weight = nullptr, bad.push_back({p, "weight"});
  p = good, p.out = nullptr, bad.push_back({p, "out"});
  p = good, p.rows = 0, bad.push_back({p, "rows"});
  p = good, p.dim = -4, bad.push_back({p, "dim"});
  p = good, p.eps = -1.f, bad.push_back({p, "eps"});
  p = good, p.eps = NAN, bad.push_back({p, "eps"});
  for (const Bad& b : bad) {
    const absl::Status s = RmsNormRef(b.p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.field;
    EXPECT_NE(s.message().find(b.field), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace hipserve::kernels
