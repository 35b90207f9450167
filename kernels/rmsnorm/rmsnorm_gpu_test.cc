// RmsNormGpu against RmsNormRef on the same bf16-rounded inputs (ctest -L gpu).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::kBf16NaN;
using testing::ToBf16;

// Device buffer of bf16 values with `pad` extra leading elements (to misalign on purpose).
class DeviceBf16 {
 public:
  DeviceBf16(const std::vector<uint16_t>& host, int pad = 0) : size_(host.size()), pad_(pad) {
    EXPECT_EQ(cudaMalloc(&base_, (size_ + pad_) * sizeof(uint16_t)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data(), host.data(), size_ * sizeof(uint16_t), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceBf16() { cudaFree(base_); }
  DeviceBf16(const DeviceBf16&) = delete;
  DeviceBf16& operator=(const DeviceBf16&) = delete;
  uint16_t* data() { return static_cast<uint16_t*>(base_) + pad_; }
  std::vector<float> ToHostFloat() {
    std::vector<uint16_t> h(size_);
    EXPECT_EQ(cudaMemcpy(h.data(), data(), size_ * sizeof(uint16_t), cudaMemcpyDeviceToHost),
              cudaSuccess);
    std::vector<float> f(size_);
    Bf16ToFloatArray(h.data(), f.data(), static_cast<int64_t>(size_));
    return f;
  }

 private:
  void* base_ = nullptr;
  size_t size_;
  int pad_;
};

std::vector<float> RandomBf16Values(int64_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v = testing::RandomVector(n, seed, lo, hi);
  RoundToBf16InPlace(v.data(), n);
  return v;
}

// Naive same-precision (bf16, PyTorch-eager style) RMSNorm: the residual sum is stored in bf16,
// x * inv_rms is rounded to bf16, then multiplied by the weight and rounded again.
void NaiveBf16RmsNorm(const std::vector<float>& in, const std::vector<float>& w,
                      const std::vector<float>* res, int rows, int dim, float eps,
                      std::vector<float>* out, std::vector<float>* new_res) {
  out->resize(in.size());
  new_res->resize(in.size());
  for (int r = 0; r < rows; ++r) {
    float ss = 0.f;
    for (int i = 0; i < dim; ++i) {
      const int64_t j = int64_t{r} * dim + i;
      const float x = res != nullptr ? RoundToBf16(in[j] + (*res)[j]) : in[j];
      (*new_res)[j] = x;
      ss += x * x;
    }
    const float inv = 1.f / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i) {
      const int64_t j = int64_t{r} * dim + i;
      (*out)[j] = RoundToBf16(RoundToBf16((*new_res)[j] * inv) * w[i]);
    }
  }
}

struct Outcome {
  std::vector<float> out, residual;  // residual empty when not used
};

// Runs the GPU kernel on bf16 copies of the inputs.
Outcome RunGpu(const std::vector<float>& in, const std::vector<float>& w,
               const std::vector<float>* res, int rows, int dim, float eps, int pad,
               bool in_place) {
  DeviceBf16 d_in(ToBf16(in), pad);
  DeviceBf16 d_w(ToBf16(w), pad);
  DeviceBf16 d_out(std::vector<uint16_t>(in.size(), kBf16NaN), pad);
  DeviceBf16 d_res(res != nullptr ? ToBf16(*res) : std::vector<uint16_t>(1), pad);
  RmsNormGpuParams p;
  p.in = d_in.data();
  p.weight = d_w.data();
  p.out = in_place ? d_in.data() : d_out.data();
  p.residual = res != nullptr ? d_res.data() : nullptr;
  p.rows = rows;
  p.dim = dim;
  p.eps = eps;
  const absl::Status s = RmsNormGpu(p, nullptr);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Outcome o;
  o.out = in_place ? d_in.ToHostFloat() : d_out.ToHostFloat();
  if (res != nullptr) o.residual = d_res.ToHostFloat();
  return o;
}

void CheckCase(int rows, int dim, bool residual, int pad, bool in_place) {
  const int64_t n = int64_t{rows} * dim;
  const float eps = 1e-6f;
  const std::vector<float> in = RandomBf16Values(n, 100 + dim, -3.f, 3.f);
  const std::vector<float> w = RandomBf16Values(dim, 200 + dim, 0.25f, 2.f);
  const std::vector<float> res0 = RandomBf16Values(n, 300 + dim, -3.f, 3.f);
  const std::vector<float>* res = residual ? &res0 : nullptr;

  const Outcome gpu = RunGpu(in, w, res, rows, dim, eps, pad, in_place);

  std::vector<float> ref_out = testing::Poisoned(n);
  std::vector<float> ref_res = res0;
  ASSERT_TRUE(RmsNormRef({in.data(), w.data(), ref_out.data(), residual ? ref_res.data() : nullptr,
                          rows, dim, eps})
                  .ok());
  std::vector<float> naive_out, naive_res;
  NaiveBf16RmsNorm(in, w, res, rows, dim, eps, &naive_out, &naive_res);

  // atol: a quarter of a bf16 ulp at 1.0, for outputs that straddle a rounding boundary.
  constexpr double kAtol = 0x1.0p-10;
  EXPECT_TRUE(testing::MatchesReference(gpu.out, naive_out, testing::ToDouble(ref_out), kAtol));
  if (residual) {
    EXPECT_TRUE(
        testing::MatchesReference(gpu.residual, naive_res, testing::ToDouble(ref_res), kAtol));
  }
}

using GpuCase = std::tuple<int, int, bool>;  // rows, dim, residual

class RmsNormGpuTest : public ::testing::TestWithParam<GpuCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(RmsNormGpuTest, MatchesRef) {
  const auto [rows, dim, residual] = GetParam();
  CheckCase(rows, dim, residual, /*pad=*/0, /*in_place=*/false);
}

INSTANTIATE_TEST_SUITE_P(Cases, RmsNormGpuTest,
                         ::testing::Combine(::testing::Values(1, 3, 130),
                                            // odd / non-multiple-of-8 dims take the scalar path
                                            ::testing::Values(1, 7, 8, 100, 576, 1001, 2048, 4096,
                                                              8192, 16384),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<GpuCase>& info) {
                           return absl::StrCat("rows", std::get<0>(info.param), "_dim",
                                               std::get<1>(info.param),
                                               std::get<2>(info.param) ? "_residual" : "_plain");
                         });

class RmsNormGpuEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(RmsNormGpuEdgeTest, MisalignedPointersFallBackToScalar) {
  CheckCase(5, 256, /*residual=*/true, /*pad=*/1, /*in_place=*/false);
  CheckCase(5, 256, /*residual=*/false, /*pad=*/3, /*in_place=*/false);
}

TEST_F(RmsNormGpuEdgeTest, InPlace) {
  CheckCase(9, 576, /*residual=*/true, /*pad=*/0, /*in_place=*/true);
  CheckCase(9, 33, /*residual=*/false, /*pad=*/0, /*in_place=*/true);
}

TEST_F(RmsNormGpuEdgeTest, InvalidParams) {
  RmsNormGpuParams p;
  EXPECT_EQ(RmsNormGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  uint16_t* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64), cudaSuccess);
  p.in = d;
  p.weight = d;
  p.out = d;
  p.rows = 1;
  p.dim = 0;
  const absl::Status s = RmsNormGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("dim"), std::string::npos);
  p.dim = 8;
  p.eps = -1.f;
  EXPECT_NE(RmsNormGpu(p, nullptr).message().find("eps"), std::string::npos);
  cudaFree(d);
}

}  // namespace
}  // namespace hipserve::kernels
