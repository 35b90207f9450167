// CPU build stub: the CUDA implementation lives in decode_graph.cu.
#include "kernels/hip_cuda/decode_graph.h"

namespace hipserve::kernels {

absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> CreateHipDecodeGraphs(
    const HipDecodeGraphOptions&, const HipDecodeGraphTensors&) {
  return absl::UnimplementedError("CreateHipDecodeGraphs: built without CUDA (HIPSERVE_CUDA=OFF)");
}

}  // namespace hipserve::kernels
