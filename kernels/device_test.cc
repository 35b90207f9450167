#include "kernels/device.h"

#include "gtest/gtest.h"
#include "kernels/rmsnorm/rmsnorm.h"

namespace hipserve::kernels {
namespace {

TEST(DeviceTest, CountNeverFails) {
  const int n = CudaDeviceCount();
  EXPECT_GE(n, 0);
  EXPECT_EQ(CudaDeviceCount(), n);  // stable across calls
}

TEST(DeviceTest, GpuEntryPointRejectsBadParamsWithoutADevice) {
  // CPU builds answer Unimplemented, CUDA builds InvalidArgument (checked before any launch).
  const absl::Status s = RmsNormGpu(RmsNormGpuParams{}, nullptr);
  EXPECT_TRUE(s.code() == absl::StatusCode::kUnimplemented ||
              s.code() == absl::StatusCode::kInvalidArgument)
      << s;
}

}  // namespace
}  // namespace hipserve::kernels
