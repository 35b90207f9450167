// CPU build stub: the CUDA implementation lives in rope.cu.
#include "kernels/rope/rope.h"

namespace hipserve::kernels {

absl::Status RopeGpu(const RopeGpuParams& /*p*/, void* /*stream*/) {
  return absl::UnimplementedError("RopeGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
