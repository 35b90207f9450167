// Host side of SampleGpu: validation and launch (one block per row).
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/sampling/sampling.h"
#include "kernels/sampling/sampling_kernel.cuh"

namespace hipserve::kernels {
namespace {

constexpr int kMaxVocab = 1 << 24;  // 40-bit fixed-point weights: vocab * 2^40 < 2^64

absl::Status Validate(const SamplingGpuParams& p) {
  if (p.logits == nullptr) return absl::InvalidArgumentError("SampleGpu: logits is null");
  if (p.options == nullptr) return absl::InvalidArgumentError("SampleGpu: options is null");
  if (p.tokens == nullptr) return absl::InvalidArgumentError("SampleGpu: tokens is null");
  if (p.batch <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("SampleGpu: batch must be > 0, got ", p.batch));
  }
  if (p.vocab <= 0 || p.vocab >= kMaxVocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("SampleGpu: vocab must be in (0, 2^24), got ", p.vocab));
  }
  if (p.row_stride != 0 && p.row_stride < p.vocab) {
    return absl::InvalidArgumentError(absl::StrCat("SampleGpu: row_stride must be 0 or >= vocab (",
                                                   p.vocab, "), got ", p.row_stride));
  }
  return absl::OkStatus();
}

int IdBits(int vocab) {
  int bits = 1;
  while ((1 << bits) < vocab) ++bits;
  return bits;
}

}  // namespace

absl::Status SampleGpu(const SamplingGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const int64_t stride = p.row_stride == 0 ? p.vocab : p.row_stride;
  sampling_internal::
      SampleKernel<<<p.batch, sampling_internal::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
          p.logits, p.vocab, stride, IdBits(p.vocab), p.options, p.tokens, p.logprobs);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
