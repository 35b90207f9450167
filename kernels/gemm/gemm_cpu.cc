// CPU build stub: the cuBLASLt implementation lives in gemm.cu.
#include <utility>

#include "kernels/gemm/gemm.h"

namespace hipserve::kernels {

struct GemmGpuContext::Impl {};

GemmGpuContext::GemmGpuContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GemmGpuContext::~GemmGpuContext() = default;

absl::StatusOr<std::unique_ptr<GemmGpuContext>> GemmGpuContext::Create(
    const GemmGpuOptions& /*options*/) {
  return absl::UnimplementedError("GemmGpuContext: built without CUDA (HIPSERVE_CUDA=OFF)");
}

absl::Status GemmGpu(const GemmGpuParams& /*p*/, void* /*stream*/) {
  return absl::UnimplementedError("GemmGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
