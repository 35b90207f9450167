// Host side of SwigluGpu: validation, vector-width dispatch, launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"
#include "kernels/swiglu/swiglu.h"
#include "kernels/swiglu/swiglu_kernel.cuh"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 132 * 16;  // grid-stride beyond: enough to fill an H100

absl::Status Validate(const SwigluGpuParams& p) {
  if (p.gate == nullptr) return absl::InvalidArgumentError("SwigluGpu: gate is null");
  if (p.up == nullptr) return absl::InvalidArgumentError("SwigluGpu: up is null");
  if (p.out == nullptr) return absl::InvalidArgumentError("SwigluGpu: out is null");
  if (p.rows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("SwigluGpu: rows must be > 0, got ", p.rows));
  }
  if (p.cols <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("SwigluGpu: cols must be > 0, got ", p.cols));
  }
  if (p.in_stride != 0 && p.in_stride < p.cols) {
    return absl::InvalidArgumentError(absl::StrCat("SwigluGpu: in_stride must be 0 or >= cols (",
                                                   p.cols, "), got ", p.in_stride));
  }
  return absl::OkStatus();
}

template <int N>
absl::Status Launch(const SwigluGpuParams& p, int64_t in_stride, cudaStream_t stream) {
  const int64_t work = static_cast<int64_t>(p.rows) * (p.cols / N);
  const int blocks = static_cast<int>(std::min((work + kThreads - 1) / kThreads, kMaxBlocks));
  swiglu_internal::SwigluKernel<N><<<blocks, kThreads, 0, stream>>>(
      static_cast<const uint16_t*>(p.gate), static_cast<const uint16_t*>(p.up),
      static_cast<uint16_t*>(p.out), p.rows, p.cols, in_stride);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status SwigluGpu(const SwigluGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t in_stride = p.in_stride == 0 ? p.cols : p.in_stride;
  const bool vectorized = p.cols % 8 == 0 && in_stride % 8 == 0 && Aligned16(p.gate) &&
                          Aligned16(p.up) && Aligned16(p.out);
  return vectorized ? Launch<8>(p, in_stride, s) : Launch<1>(p, in_stride, s);
}

}  // namespace hipserve::kernels
