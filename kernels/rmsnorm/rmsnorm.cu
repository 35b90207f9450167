// Host side of RmsNormGpu: validation, vector-width dispatch, launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rmsnorm/rmsnorm_kernel.cuh"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;

constexpr int kVecWidth = 8;  // bf16 values per 16-byte load
constexpr int kMaxThreads = 1024;

absl::Status Validate(const RmsNormGpuParams& p) {
  if (p.in == nullptr) return absl::InvalidArgumentError("RmsNormGpu: in is null");
  if (p.weight == nullptr) return absl::InvalidArgumentError("RmsNormGpu: weight is null");
  if (p.out == nullptr) return absl::InvalidArgumentError("RmsNormGpu: out is null");
  if (p.rows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNormGpu: rows must be > 0, got ", p.rows));
  }
  if (p.dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNormGpu: dim must be > 0, got ", p.dim));
  }
  if (!(p.eps >= 0.f) || !std::isfinite(p.eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNormGpu: eps must be finite and >= 0, got ", p.eps));
  }
  return absl::OkStatus();
}

int ThreadsFor(int packs) {
  const int rounded = (packs + 31) / 32 * 32;
  return std::min(std::max(rounded, 32), kMaxThreads);
}

template <int N>
absl::Status Launch(const RmsNormGpuParams& p, cudaStream_t stream) {
  rmsnorm_internal::RmsNormKernel<N><<<p.rows, ThreadsFor(p.dim / N), 0, stream>>>(
      static_cast<const uint16_t*>(p.in), static_cast<const uint16_t*>(p.weight),
      static_cast<uint16_t*>(p.out), static_cast<uint16_t*>(p.residual), p.dim, p.eps);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status RmsNormGpu(const RmsNormGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool vectorized = p.dim % kVecWidth == 0 && Aligned16(p.in) && Aligned16(p.weight) &&
                          Aligned16(p.out) && (p.residual == nullptr || Aligned16(p.residual));
  return vectorized ? Launch<kVecWidth>(p, s) : Launch<1>(p, s);
}

}  // namespace hipserve::kernels
