// SwigluGpu against SwigluRef on the same bf16-rounded inputs (ctest -L gpu), with separate
// gate/up tensors and with the fused [rows, 2 * cols] gate_up layout.
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
#include "kernels/swiglu/swiglu.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;
using testing::kBf16NaN;
using testing::ToBf16;
using testing::ToFloat;

void CheckCase(int rows, int cols, bool fused, int pad) {
  const int64_t n = int64_t{rows} * cols;
  std::vector<float> gate = testing::RandomVector(n, 3 + cols, -8.f, 8.f);
  std::vector<float> up = testing::RandomVector(n, 5 + cols, -3.f, 3.f);
  RoundToBf16InPlace(gate.data(), n);
  RoundToBf16InPlace(up.data(), n);

  // Device inputs: either two [rows, cols] tensors or one [rows, 2 * cols] gate_up tensor.
  std::vector<float> gate_up;
  if (fused) {
    gate_up.resize(2 * n);
    for (int r = 0; r < rows; ++r) {
      for (int j = 0; j < cols; ++j) {
        gate_up[int64_t{r} * 2 * cols + j] = gate[int64_t{r} * cols + j];
        gate_up[int64_t{r} * 2 * cols + cols + j] = up[int64_t{r} * cols + j];
      }
    }
  }
  DeviceVec<uint16_t> d_gate(ToBf16(fused ? gate_up : gate), pad);
  DeviceVec<uint16_t> d_up(ToBf16(up), pad);
  DeviceVec<uint16_t> d_out(std::vector<uint16_t>(n, kBf16NaN), pad);
  SwigluGpuParams p;
  p.gate = d_gate.data();
  p.up = fused ? d_gate.data() + cols : d_up.data();
  p.out = d_out.data();
  p.rows = rows;
  p.cols = cols;
  p.in_stride = fused ? 2 * int64_t{cols} : 0;
  const absl::Status s = SwigluGpu(p, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> gpu = ToFloat(d_out.ToHost());

  std::vector<float> ref = testing::Poisoned(n);
  ASSERT_TRUE(SwigluRef({gate.data(), up.data(), ref.data(), n}).ok());
  // Naive bf16 (PyTorch eager): silu(gate) stored as bf16, then the product rounded to bf16.
  std::vector<float> naive(n);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    naive[i] = RoundToBf16(RoundToBf16(g / (1.f + std::exp(-g))) * up[i]);
  }
  constexpr double kAtol = 0x1.0p-12;
  EXPECT_TRUE(testing::MatchesReference(gpu, naive, testing::ToDouble(ref), kAtol));
}

using Case = std::tuple<int, int, bool>;  // rows, cols, fused

class SwigluGpuTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(SwigluGpuTest, MatchesRef) {
  const auto [rows, cols, fused] = GetParam();
  CheckCase(rows, cols, fused, /*pad=*/0);
}

INSTANTIATE_TEST_SUITE_P(Cases, SwigluGpuTest,
                         ::testing::Combine(::testing::Values(1, 3, 64),
                                            // 1, 7, 1001: scalar path; others 16-byte path
                                            ::testing::Values(1, 7, 8, 1001, 1536, 14336),
                                            ::testing::Bool()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrCat("rows", std::get<0>(info.param), "_cols",
                                               std::get<1>(info.param),
                                               std::get<2>(info.param) ? "_fused" : "_split");
                         });

class SwigluGpuEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(SwigluGpuEdgeTest, MisalignedFallsBackToScalar) { CheckCase(4, 256, false, /*pad=*/3); }

TEST_F(SwigluGpuEdgeTest, LargeGridStride) { CheckCase(300, 14336, true, 0); }

TEST_F(SwigluGpuEdgeTest, InvalidParams) {
  SwigluGpuParams p;
  EXPECT_EQ(SwigluGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  int dummy = 0;
  p.gate = &dummy;
  p.up = &dummy;
  p.out = &dummy;
  p.rows = 1;
  p.cols = 0;
  absl::Status s = SwigluGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cols"), std::string::npos) << s;
  p.cols = 8;
  p.in_stride = 4;
  EXPECT_NE(SwigluGpu(p, nullptr).message().find("in_stride"), std::string::npos);
  p.in_stride = 0;
  p.rows = -1;
  EXPECT_NE(SwigluGpu(p, nullptr).message().find("rows"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::kernels
