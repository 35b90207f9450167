// CPU build stub: the CUDA implementation lives in embedding.cu.
#include "kernels/embedding/embedding.h"

namespace hipserve::kernels {

absl::Status EmbeddingGpu(const EmbeddingGpuParams& /*p*/, void* /*stream*/) {
  return absl::UnimplementedError("EmbeddingGpu: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
