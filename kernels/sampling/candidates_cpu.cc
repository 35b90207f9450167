// CPU build stub: the CUDA implementation lives in candidates.cu.
#include "kernels/sampling/candidates.h"

namespace hipserve::kernels {

absl::Status CandidatesGpu(const CandidatesGpuParams& /*p*/, void* /*stream*/) {
  return absl::UnimplementedError("CandidatesGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
