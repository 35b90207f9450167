// CPU build stub: the CUDA implementation lives in bsa_prefill.cu.
#include "absl/status/status.h"
#include "kernels/attention_cuda/bsa_prefill.h"

namespace hipserve::kernels {

absl::Status BsaPrefillAttentionGpu(const BsaPrefillGpuParams&, void*) {
  return absl::UnimplementedError("BsaPrefillAttentionGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
