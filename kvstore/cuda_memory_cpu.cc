#include "kvstore/cuda_memory.h"

namespace hipserve::kvstore {

absl::StatusOr<std::unique_ptr<Memory>> NewCudaMemory(int device) {
  return absl::UnimplementedError("NewCudaMemory: built without CUDA (HIPSERVE_CUDA=OFF)");
}

int CudaDeviceCount() { return 0; }

}  // namespace hipserve::kvstore
