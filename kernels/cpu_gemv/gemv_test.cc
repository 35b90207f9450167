// Gemv / CpuMatmul (kernels/cpu_gemv/gemv.h) against a float64 triple loop on the same inputs
// (bf16 weights: the exact fp32 values of the bf16 patterns), for every ISA this CPU supports.
// Tolerance: |got - ref| <= 2e-6 * sqrt(k) * sum_i |x_i w_i| + 1e-30, the size of fp32
// accumulation error for k random-signed terms with margin (fp32 eps 6e-8 x ~30); a wrong index
// or a dropped tail element is off by ~|x_i w_i| / sum, far more.
#include "kernels/cpu_gemv/gemv.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/parallel_for.h"
#include "common/spin_pool.h"
#include "gtest/gtest.h"
#include "kernels/dtype/bf16.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

std::vector<CpuIsa> SupportedIsas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (CpuIsaSupported(isa)) out.push_back(isa);
  }
  return out;
}

struct Inputs {
  std::vector<float> a, b_f32, bias;
  std::vector<uint16_t> b_bf16;
};

// b_f32 holds bf16-representable values, so both weight types describe the same matrix.
Inputs MakeInputs(int m, int n, int k, uint64_t seed) {
  Inputs in;
  in.a = testing::RandomVector(int64_t{m} * k, seed);
  in.b_f32 = testing::RandomVector(int64_t{n} * k, seed + 1);
  RoundToBf16InPlace(in.b_f32.data(), static_cast<int64_t>(in.b_f32.size()));
  in.b_bf16.resize(in.b_f32.size());
  FloatToBf16Array(in.b_f32.data(), in.b_bf16.data(), static_cast<int64_t>(in.b_f32.size()));
  in.bias = testing::RandomVector(n, seed + 2);
  return in;
}

void ExpectNearReference(const Inputs& in, int m, int n, int k, bool bias,
                         const std::vector<float>& got, const std::string& what) {
  int bad = 0;
  for (int r = 0; r < m; ++r) {
    for (int j = 0; j < n; ++j) {
      double ref = bias ? in.bias[j] : 0.0, mag = bias ? std::abs(in.bias[j]) : 0.0;
      for (int i = 0; i < k; ++i) {
        const double t = double{in.a[int64_t{r} * k + i]} * in.b_f32[int64_t{j} * k + i];
        ref += t;
        mag += std::abs(t);
      }
      const double tol = 2e-6 * std::sqrt(static_cast<double>(k)) * mag + 1e-30;
      const float g = got[int64_t{r} * n + j];
      if (!(std::abs(g - ref) <= tol) && ++bad <= 5) {
        ADD_FAILURE() << what << ": c[" << r << "][" << j << "] = " << g << ", want " << ref
                      << " (tol " << tol << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(GemvTest, MatchesFp64ForOddShapesEveryIsaAndWeightType) {
  // k: below, at and around the 8/16-wide vectors; n: around the 4-row tiles; m: around the
  // 4- (AVX-512) and 2-row (AVX2) activation groups.
  const int ks[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 576};
  const int ns[] = {1, 2, 3, 4, 5, 7, 13, 70};
  const int ms[] = {1, 2, 3, 4, 5, 9};
  for (CpuIsa isa : SupportedIsas()) {
    for (int k : ks) {
      for (int n : ns) {
        for (int m : ms) {
          const Inputs in = MakeInputs(m, n, k, 1000 + k * 31 + n * 7 + m);
          for (CpuWeightType type : {CpuWeightType::kFloat32, CpuWeightType::kBf16}) {
            for (bool bias : {false, true}) {
              std::vector<float> c = testing::Poisoned(int64_t{m} * n);
              CpuMatmulParams p;
              p.a = in.a.data();
              p.b = type == CpuWeightType::kBf16 ? static_cast<const void*>(in.b_bf16.data())
                                                 : in.b_f32.data();
              p.b_type = type;
              p.bias = bias ? in.bias.data() : nullptr;
              p.c = c.data();
              p.m = m;
              p.n = n;
              p.k = k;
              GemvOptions o;
              o.isa = isa;
              o.threads = 1;
              ASSERT_TRUE(Gemv(p, o).ok());
              ExpectNearReference(in, m, n, k, bias, c,
                                  absl::StrCat(CpuIsaName(isa), " ", CpuWeightTypeName(type), " m",
                                               m, " n", n, " k", k, bias ? " bias" : ""));
            }
          }
        }
      }
    }
  }
}

// bf16 weights widened in the kernel give exactly the fp32 kernel's result on the same values
// (same products, same order), and splitting the rows over the pool changes nothing either.
TEST(GemvTest, Bf16EqualsFp32OnSameValuesAndThreadingIsBitwiseStable) {
  const int m = 1, n = 1003, k = 576;
  const Inputs in = MakeInputs(m, n, k, 77);
  for (CpuIsa isa : SupportedIsas()) {
    std::vector<float> ref;
    for (CpuWeightType type : {CpuWeightType::kFloat32, CpuWeightType::kBf16}) {
      for (int threads : {1, 0}) {
        std::vector<float> c = testing::Poisoned(int64_t{m} * n);
        CpuMatmulParams p;
        p.a = in.a.data();
        p.b = type == CpuWeightType::kBf16 ? static_cast<const void*>(in.b_bf16.data())
                                           : in.b_f32.data();
        p.b_type = type;
        p.c = c.data();
        p.m = m;
        p.n = n;
        p.k = k;
        GemvOptions o;
        o.isa = isa;
        o.threads = threads;
        ASSERT_TRUE(Gemv(p, o).ok());
        if (ref.empty()) {
          ref = c;
          ExpectNearReference(in, m, n, k, false, c, CpuIsaName(isa));
        } else {
          EXPECT_EQ(c, ref) << CpuIsaName(isa) << " " << CpuWeightTypeName(type) << " threads "
                            << threads;
        }
      }
    }
  }
}

TEST(CpuMatmulTest, SgemmPathMatchesFp64ForBothWeightTypes) {
  // m > kGemvMaxRows takes the BLAS path; n spans several bf16 widening blocks at this k.
  const int m = kGemvMaxRows + 3, n = 1500, k = 700;
  const Inputs in = MakeInputs(m, n, k, 5);
  for (CpuWeightType type : {CpuWeightType::kFloat32, CpuWeightType::kBf16}) {
    for (bool bias : {false, true}) {
      std::vector<float> c = testing::Poisoned(int64_t{m} * n);
      CpuMatmulParams p;
      p.a = in.a.data();
      p.b = type == CpuWeightType::kBf16 ? static_cast<const void*>(in.b_bf16.data())
                                         : in.b_f32.data();
      p.b_type = type;
      p.bias = bias ? in.bias.data() : nullptr;
      p.c = c.data();
      p.m = m;
      p.n = n;
      p.k = k;
      ASSERT_TRUE(CpuMatmul(p).ok());
      ExpectNearReference(in, m, n, k, bias, c,
                          absl::StrCat("sgemm ", CpuWeightTypeName(type), bias ? " bias" : ""));
    }
  }
}

TEST(CpuMatmulTest, DecodeRowsUseGemvAndMatchFp64) {
  const int m = 1, n = 49, k = 576;
  const Inputs in = MakeInputs(m, n, k, 9);
  std::vector<float> c = testing::Poisoned(n);
  CpuMatmulParams p{
      in.a.data(), in.b_bf16.data(), CpuWeightType::kBf16, in.bias.data(), c.data(), m, n, k};
  ASSERT_TRUE(CpuMatmul(p).ok());
  ExpectNearReference(in, m, n, k, true, c, "CpuMatmul m=1");
}

TEST(CpuMatmulTest, RejectsBadParams) {
  float a = 1, b = 1, c = 0;
  CpuMatmulParams p{&a, &b, CpuWeightType::kFloat32, nullptr, &c, 1, 1, 1};
  EXPECT_TRUE(CpuMatmul(p).ok());
  CpuMatmulParams bad = p;
  bad.a = nullptr;
  EXPECT_EQ(CpuMatmul(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.k = 0;
  EXPECT_EQ(Gemv(bad).code(), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.b = nullptr;
  EXPECT_EQ(Gemv(bad).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SpinPoolTest, RunsEveryItemOnceNestedAndRepeated) {
  common::SpinPool pool(3);
  for (int rep = 0; rep < 2000; ++rep) {
    const int n = 1 + rep % 37;
    std::vector<int> hits(n, 0);
    pool.Run(n, [&](int i) {
      ++hits[i];
      // A nested Run executes inline on the calling thread.
      int inner = 0;
      pool.Run(3, [&](int) { ++inner; });
      EXPECT_EQ(inner, 3);
    });
    for (int i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << "rep " << rep << " item " << i;
  }
}

// ParallelFor on the shared pool (threads > 1) and inline (threads 1): every index runs once,
// and the result is the error of the lowest failing index.
TEST(ParallelForTest, RunsEveryIndexOnceAndReturnsTheLowestError) {
  for (int threads : {1, 4}) {
    std::vector<std::atomic<int>> hits(101);
    absl::Status st = common::ParallelFor(101, threads, [&](int i) {
      ++hits[i];
      if (i == 77) return absl::InternalError("77");
      if (i == 40) return absl::InvalidArgumentError("40");
      return absl::OkStatus();
    });
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << threads;
    EXPECT_EQ(st.message(), "40") << threads;
    for (int i = 0; i < 101; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " " << i;
    EXPECT_TRUE(common::ParallelFor(0, threads, [](int) { return absl::UnknownError("x"); }).ok());
  }
}

}  // namespace
}  // namespace hipserve::kernels
