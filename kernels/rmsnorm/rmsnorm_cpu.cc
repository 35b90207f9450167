// CPU build stub: the CUDA implementation lives in rmsnorm.cu.
#include "kernels/rmsnorm/rmsnorm.h"

namespace hipserve::kernels {

absl::Status RmsNormGpu(const RmsNormGpuParams& /*p*/, void* /*stream*/) {
  return absl::UnimplementedError("RmsNormGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
