// CPU build stub: the CUDA implementation lives in prefill_attention.cu.
#include "absl/status/status.h"
#include "kernels/attention_cuda/prefill_attention.h"

namespace hipserve::kernels {

absl::Status DensePrefillAttentionGpu(const DensePrefillAttentionGpuParams&, void*) {
  return absl::UnimplementedError(
      "DensePrefillAttentionGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
