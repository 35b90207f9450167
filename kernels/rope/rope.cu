// Host side of RopeGpu: validation, vector-width dispatch, launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/rope/rope.h"
#include "kernels/rope/rope_kernel.cuh"

namespace hipserve::kernels {
namespace {

constexpr int kMaxHeadDim = 1024;
constexpr int kMaxBlocks = 2048;  // grid-stride beyond this: inv_freq is computed per block

absl::Status ValidateConfig(const RopeConfig& c) {
  if (!(c.theta > 0.f) || !std::isfinite(c.theta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RopeGpu: config.theta must be finite and > 0, got ", c.theta));
  }
  switch (c.scaling) {
    case RopeScaling::kNone:
      return absl::OkStatus();
    case RopeScaling::kLlama3:
      if (!(c.factor > 0.f) || !std::isfinite(c.factor)) {
        return absl::InvalidArgumentError(
            absl::StrCat("RopeGpu: config.factor must be finite and > 0, got ", c.factor));
      }
      if (!(c.low_freq_factor > 0.f) || !(c.high_freq_factor > 0.f) ||
          c.low_freq_factor == c.high_freq_factor) {
        return absl::InvalidArgumentError(absl::StrCat(
            "RopeGpu: config.low_freq_factor (", c.low_freq_factor, ") and high_freq_factor (",
            c.high_freq_factor, ") must be > 0 and differ"));
      }
      if (c.original_max_position <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "RopeGpu: config.original_max_position must be > 0, got ", c.original_max_position));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("RopeGpu: config.scaling has an unknown value");
}

absl::Status Validate(const RopeGpuParams& p) {
  if (p.x == nullptr) return absl::InvalidArgumentError("RopeGpu: x is null");
  if (p.positions == nullptr) return absl::InvalidArgumentError("RopeGpu: positions is null");
  if (p.tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("RopeGpu: tokens must be > 0, got ", p.tokens));
  }
  if (p.heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("RopeGpu: heads must be > 0, got ", p.heads));
  }
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("RopeGpu: head_dim must be even and in [2, ",
                                                   kMaxHeadDim, "], got ", p.head_dim));
  }
  return ValidateConfig(p.config);
}

template <int N>
absl::Status Launch(const RopeGpuParams& p, cudaStream_t stream) {
  const int half = p.head_dim / 2;
  const rope_internal::KernelConfig c{static_cast<double>(p.config.theta),
                                      p.config.scaling == RopeScaling::kLlama3,
                                      static_cast<double>(p.config.factor),
                                      static_cast<double>(p.config.low_freq_factor),
                                      static_cast<double>(p.config.high_freq_factor),
                                      static_cast<double>(p.config.original_max_position)};
  const int work = std::max(p.heads * (half / N), half);
  const int threads = std::min(std::max((work + 31) / 32 * 32, 32), 256);
  const int blocks = std::min(p.tokens, kMaxBlocks);
  const size_t smem = static_cast<size_t>(half) * (sizeof(double) + 2 * sizeof(float));
  rope_internal::RopeKernel<N><<<blocks, threads, smem, stream>>>(
      static_cast<uint16_t*>(p.x), p.positions, p.tokens, p.heads, p.head_dim, c);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status RopeGpu(const RopeGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const bool vectorized = (p.head_dim / 2) % 8 == 0 && reinterpret_cast<uintptr_t>(p.x) % 16 == 0;
  return vectorized ? Launch<8>(p, s) : Launch<1>(p, s);
}

}  // namespace hipserve::kernels
