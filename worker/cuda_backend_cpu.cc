// MakeCudaBackend on builds without CUDA (HIPSERVE_CUDA=OFF).
#include "worker/cuda_backend.h"

namespace hipserve::worker {

absl::StatusOr<std::unique_ptr<ForwardBackend>> MakeCudaBackend(ModelWeights, const ModelOptions&) {
  return absl::UnimplementedError(
      "backend 'cuda': this build has no CUDA support (configure with -DHIPSERVE_CUDA=ON and "
      "nvcc present); use --backend=cpu");
}

}  // namespace hipserve::worker
