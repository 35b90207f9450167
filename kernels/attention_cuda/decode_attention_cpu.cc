// CPU build stub: the CUDA implementation lives in decode_attention.cu.
#include <string>

#include "kernels/attention_cuda/decode_attention.h"

namespace hipserve::kernels {
namespace {
absl::Status NoCuda(const char* fn) {
  return absl::UnimplementedError(std::string(fn) + ": built without CUDA (HIPSERVE_CUDA=OFF)");
}
}  // namespace

absl::StatusOr<size_t> DenseDecodeAttentionWorkspaceBytes(const DecodeAttentionGpuParams&) {
  return NoCuda("DenseDecodeAttentionWorkspaceBytes");
}
absl::StatusOr<size_t> BsaDecodeAttentionWorkspaceBytes(const BsaDecodeGpuParams&) {
  return NoCuda("BsaDecodeAttentionWorkspaceBytes");
}
absl::Status DenseDecodeAttentionGpu(const DecodeAttentionGpuParams&, void*) {
  return NoCuda("DenseDecodeAttentionGpu");
}
absl::Status BsaDecodeAttentionGpu(const BsaDecodeGpuParams&, void*) {
  return NoCuda("BsaDecodeAttentionGpu");
}

}  // namespace hipserve::kernels
