// CPU build stub: the CUDA implementation lives in sampling.cu.
#include "kernels/sampling/sampling.h"

namespace hipserve::kernels {

absl::Status SampleGpu(const SamplingGpuParams& /*p*/, void* /*stream*/) {
  return absl::UnimplementedError("SampleGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
