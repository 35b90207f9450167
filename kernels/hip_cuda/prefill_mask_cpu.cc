// CPU build stub: the CUDA implementation lives in prefill_mask.cu.
#include <string>

#include "kernels/hip_cuda/prefill_mask.h"

namespace hipserve::kernels {
namespace {
absl::Status NoCuda(const char* fn) {
  return absl::UnimplementedError(std::string(fn) + ": built without CUDA (HIPSERVE_CUDA=OFF)");
}
}  // namespace

absl::StatusOr<int> HipPrefillMaskRopePositions(const HipPrefillMaskGpuParams&) {
  return NoCuda("HipPrefillMaskRopePositions");
}
absl::StatusOr<size_t> HipPrefillMaskWorkspaceBytes(const HipPrefillMaskGpuParams&) {
  return NoCuda("HipPrefillMaskWorkspaceBytes");
}
absl::StatusOr<HipPrefillPlan> HipPrefillPlanFor(const HipPrefillMaskGpuParams&) {
  return NoCuda("HipPrefillPlanFor");
}
absl::StatusOr<int> HipPrefillMaskScoreBlocksPerSm(int, int) {
  return NoCuda("HipPrefillMaskScoreBlocksPerSm");
}
absl::StatusOr<int> HipPrefillMaskResidentStages(const HipPrefillMaskGpuParams&) {
  return NoCuda("HipPrefillMaskResidentStages");
}
absl::StatusOr<HipPrefillPlan> HipPrefillMaskGpu(const HipPrefillMaskGpuParams&, void*) {
  return NoCuda("HipPrefillMaskGpu");
}

}  // namespace hipserve::kernels
