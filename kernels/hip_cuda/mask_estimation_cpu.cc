// CPU build stub: the CUDA implementation lives in mask_estimation.cu.
#include <string>

#include "kernels/hip_cuda/mask_estimation.h"

namespace hipserve::kernels {
namespace {
absl::Status NoCuda(const char* fn) {
  return absl::UnimplementedError(std::string(fn) + ": built without CUDA (HIPSERVE_CUDA=OFF)");
}
}  // namespace

absl::StatusOr<int> HipDecodeMaskRopePositions(const HipDecodeMaskGpuParams&) {
  return NoCuda("HipDecodeMaskRopePositions");
}
absl::StatusOr<size_t> HipDecodeMaskWorkspaceBytes(const HipDecodeMaskGpuParams&) {
  return NoCuda("HipDecodeMaskWorkspaceBytes");
}
absl::Status HipDecodeMaskGpu(const HipDecodeMaskGpuParams&, void*) {
  return NoCuda("HipDecodeMaskGpu");
}

}  // namespace hipserve::kernels
