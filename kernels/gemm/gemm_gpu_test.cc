// GemmGpu (cuBLASLt) against an fp64 reference on the same bf16 inputs (ctest -L gpu). The
// pass rule's naive same-precision implementation is GemmRef (fp32 BLAS), rounded to bf16 when
// C is bf16, as PyTorch's bf16 Linear would store it.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/gemm/gemm.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;
using testing::ToBf16;

std::vector<float> Bf16Values(int64_t n, uint64_t seed) {
  std::vector<float> v = testing::RandomVector(n, seed, -1.f, 1.f);
  RoundToBf16InPlace(v.data(), n);
  return v;
}

GemmGpuContext* SharedContext() {
  static GemmGpuContext* ctx = [] {
    absl::StatusOr<std::unique_ptr<GemmGpuContext>> c = GemmGpuContext::Create();
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->release() : nullptr;
  }();
  return ctx;
}

struct Spec {
  int m, n, k;
  bool fp32_out, bias;
  float beta = 0.f;
  GemmGpuAlgo algo = GemmGpuAlgo::kAuto;
};

// Runs GemmGpu on device copies (C poisoned with NaN unless beta != 0) and checks it.
void CheckCase(const Spec& s) {
  const int64_t mk = int64_t{s.m} * s.k, nk = int64_t{s.n} * s.k, mn = int64_t{s.m} * s.n;
  const std::vector<float> a = Bf16Values(mk, 1 + s.m * 31 + s.k);
  const std::vector<float> b = Bf16Values(nk, 2 + s.n * 17 + s.k);
  const std::vector<float> bias = Bf16Values(s.n, 3 + s.n);
  const std::vector<float> c0 =
      s.beta != 0.f ? Bf16Values(mn, 4 + s.m) : testing::Poisoned(mn);  // NaN when unread

  DeviceVec<uint16_t> d_a(ToBf16(a));
  DeviceVec<uint16_t> d_b(ToBf16(b));
  DeviceVec<uint16_t> d_bias_bf16(ToBf16(bias));
  DeviceVec<float> d_bias_f32(bias);
  DeviceVec<uint16_t> d_c_bf16(ToBf16(c0));
  DeviceVec<float> d_c_f32(c0);
  GemmGpuParams p;
  p.context = SharedContext();
  ASSERT_NE(p.context, nullptr);
  p.a = d_a.data();
  p.b = d_b.data();
  p.c = s.fp32_out ? static_cast<void*>(d_c_f32.data()) : d_c_bf16.data();
  p.bias = !s.bias      ? nullptr
           : s.fp32_out ? static_cast<const void*>(d_bias_f32.data())
                        : d_bias_bf16.data();
  p.m = s.m;
  p.n = s.n;
  p.k = s.k;
  p.c_type = s.fp32_out ? GemmGpuOutType::kFloat32 : GemmGpuOutType::kBf16;
  p.beta = s.beta;
  p.algo = s.algo;
  const absl::Status st = GemmGpu(p, nullptr);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> gpu(mn);
  if (s.fp32_out) {
    gpu = d_c_f32.ToHost();
  } else {
    const std::vector<uint16_t> h = d_c_bf16.ToHost();
    Bf16ToFloatArray(h.data(), gpu.data(), mn);
  }

  // fp64 reference on the same (bf16-valued) inputs.
  std::vector<double> ref(mn);
  for (int i = 0; i < s.m; ++i) {
    for (int j = 0; j < s.n; ++j) {
      double acc = 0;
      for (int l = 0; l < s.k; ++l) {
        acc += static_cast<double>(a[int64_t{i} * s.k + l]) * b[int64_t{j} * s.k + l];
      }
      if (s.bias) acc += bias[j];
      if (s.beta != 0.f) acc += static_cast<double>(s.beta) * c0[int64_t{i} * s.n + j];
      ref[int64_t{i} * s.n + j] = acc;
    }
  }
  std::vector<float> naive = c0;
  ASSERT_TRUE(GemmRef({a.data(), b.data(), naive.data(), s.bias ? bias.data() : nullptr, s.m, s.n,
                       s.k, s.beta})
                  .ok());
  if (!s.fp32_out) RoundToBf16InPlace(naive.data(), mn);
  // fp32 accumulation slack (inputs are in [-1, 1]), plus a quarter bf16 ulp at 1.0.
  const double atol = 4.0 * s.k * 0x1.0p-24 + (s.fp32_out ? 0.0 : 0x1.0p-10);
  EXPECT_TRUE(testing::MatchesReference(gpu, naive, ref, atol));
}

using Case = std::tuple<int, int, bool, bool>;  // m, shape index, fp32_out, bias
constexpr int kShapes[][2] = {{576, 576}, {1536, 576}, {100, 72}, {33, 7}, {4096, 64}};

class GemmGpuTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(GemmGpuTest, MatchesRef) {
  const auto [m, shape, fp32_out, bias] = GetParam();
  CheckCase({m, kShapes[shape][0], kShapes[shape][1], fp32_out, bias});
}

INSTANTIATE_TEST_SUITE_P(Cases, GemmGpuTest,
                         ::testing::Combine(::testing::Values(1, 7, 64, 257),
                                            ::testing::Values(0, 1, 2, 3, 4), ::testing::Bool(),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           const int shape = std::get<1>(info.param);
                           return absl::StrCat("m", std::get<0>(info.param), "_n",
                                               kShapes[shape][0], "_k", kShapes[shape][1],
                                               std::get<2>(info.param) ? "_f32out" : "_bf16out",
                                               std::get<3>(info.param) ? "_bias" : "_nobias");
                         });

class GemmGpuEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(GemmGpuEdgeTest, BetaAccumulatesIntoC) {
  CheckCase({16, 576, 1536, /*fp32_out=*/false, /*bias=*/false, /*beta=*/1.f});
  CheckCase({5, 256, 128, /*fp32_out=*/true, /*bias=*/true, /*beta=*/0.5f});
}

TEST_F(GemmGpuEdgeTest, LargeK) {
  CheckCase({32, 256, 8192, /*fp32_out=*/false, /*bias=*/true});
  CheckCase({32, 256, 8192, /*fp32_out=*/true, /*bias=*/false});
}

// The plan cache must pick up a new bias pointer on a repeated shape.
TEST_F(GemmGpuEdgeTest, CachedPlanUsesNewBias) {
  const int m = 3, n = 64, k = 32;
  DeviceVec<uint16_t> d_a(std::vector<uint16_t>(m * k, 0));  // A = 0: C = bias exactly
  DeviceVec<uint16_t> d_b(std::vector<uint16_t>(n * k, 0x3f80));
  DeviceVec<uint16_t> d_bias1(std::vector<uint16_t>(n, 0x3f80));  // 1.0
  DeviceVec<uint16_t> d_bias2(std::vector<uint16_t>(n, 0x4000));  // 2.0
  DeviceVec<uint16_t> d_c(std::vector<uint16_t>(m * n, 0x7fc0));
  GemmGpuParams p;
  p.context = SharedContext();
  ASSERT_NE(p.context, nullptr);
  p.a = d_a.data();
  p.b = d_b.data();
  p.c = d_c.data();
  p.m = m;
  p.n = n;
  p.k = k;
  p.bias = d_bias1.data();
  ASSERT_TRUE(GemmGpu(p, nullptr).ok());
  p.bias = d_bias2.data();
  ASSERT_TRUE(GemmGpu(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (uint16_t v : d_c.ToHost()) ASSERT_EQ(v, 0x4000);
}

// The skinny path (m <= 8) against the same references, forced, on decode-like shapes: n not a
// multiple of the block's 4 columns, k a multiple of 8 but not of 256 threads x 8.
TEST_F(GemmGpuEdgeTest, SkinnyMatchesRef) {
  for (int m : {1, 2, 3, 4, 5, 8}) {
    for (const auto& [n, k] : std::vector<std::pair<int, int>>{
             {576, 576}, {1536, 576}, {37, 1536}, {1030, 4096}, {64, 14336}, {4099, 72}}) {
      for (bool fp32_out : {false, true}) {
        SCOPED_TRACE(absl::StrCat("m ", m, " n ", n, " k ", k, fp32_out ? " fp32" : " bf16"));
        CheckCase({m, n, k, fp32_out, /*bias=*/m % 2 == 1, 0.f, GemmGpuAlgo::kSkinny});
        CheckCase({m, n, k, fp32_out, /*bias=*/m % 2 == 1, 0.f, GemmGpuAlgo::kCublasLt});
      }
    }
  }
}

// A row's skinny result does not depend on m: row i of an m-row call equals a 1-row call on
// row i, bit for bit (what makes decode tokens independent of batching).
TEST_F(GemmGpuEdgeTest, SkinnyRowsIndependentOfM) {
  const int n = 300, k = 1024;
  for (int m : {2, 4, 7, 8}) {
    const std::vector<float> a = Bf16Values(int64_t{m} * k, 11 + m);
    const std::vector<float> b = Bf16Values(int64_t{n} * k, 12);
    DeviceVec<uint16_t> d_a(ToBf16(a));
    DeviceVec<uint16_t> d_b(ToBf16(b));
    DeviceVec<uint16_t> d_all(std::vector<uint16_t>(int64_t{m} * n, 0));
    DeviceVec<uint16_t> d_one(std::vector<uint16_t>(n, 0));
    GemmGpuParams p;
    p.context = SharedContext();
    ASSERT_NE(p.context, nullptr);
    p.a = d_a.data();
    p.b = d_b.data();
    p.c = d_all.data();
    p.m = m;
    p.n = n;
    p.k = k;
    p.algo = GemmGpuAlgo::kSkinny;
    ASSERT_TRUE(GemmGpu(p, nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<uint16_t> all = d_all.ToHost();
    for (int i = 0; i < m; ++i) {
      p.a = d_a.data() + int64_t{i} * k;
      p.c = d_one.data();
      p.m = 1;
      ASSERT_TRUE(GemmGpu(p, nullptr).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<uint16_t> one = d_one.ToHost();
      for (int j = 0; j < n; ++j) {
        ASSERT_EQ(one[j], all[int64_t{i} * n + j]) << "m " << m << " row " << i << " col " << j;
      }
    }
  }
}

TEST_F(GemmGpuEdgeTest, SkinnyRefusesWhatItCannotServe) {
  alignas(16) int dummy[8] = {};
  GemmGpuParams p;
  p.context = SharedContext();
  ASSERT_NE(p.context, nullptr);
  p.a = dummy;
  p.b = dummy;
  p.c = dummy;
  p.m = 9;
  p.n = 4;
  p.k = 8;
  p.algo = GemmGpuAlgo::kSkinny;
  EXPECT_EQ(GemmGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);  // m > 8
  p.m = 1;
  p.k = 12;
  EXPECT_EQ(GemmGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);  // k % 8
  p.k = 8;
  p.beta = 1.f;
  EXPECT_EQ(GemmGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);  // beta
}

TEST_F(GemmGpuEdgeTest, InvalidParams) {
  GemmGpuParams p;
  absl::Status s = GemmGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("context"), std::string::npos) << s;
  p.context = SharedContext();
  int dummy = 0;
  p.a = &dummy;
  p.b = &dummy;
  p.c = &dummy;
  p.m = 1;
  p.n = 0;
  p.k = 1;
  EXPECT_NE(GemmGpu(p, nullptr).message().find("n must"), std::string::npos);
  p.n = 1;
  p.beta = NAN;
  EXPECT_NE(GemmGpu(p, nullptr).message().find("beta"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::kernels
