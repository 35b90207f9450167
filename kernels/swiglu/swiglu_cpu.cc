// CPU build stub: the CUDA implementation lives in swiglu.cu.
#include "kernels/swiglu/swiglu.h"

namespace hipserve::kernels {

absl::Status SwigluGpu(const SwigluGpuParams& /*p*/, void* /*stream*/) {
  return absl::UnimplementedError("SwigluGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
