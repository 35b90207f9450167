// RMSNorm (Llama): out = x / sqrt(mean(x^2) + eps) * weight, per row, with an optional fused
// residual add (x = residual += in) as used between decoder sub-layers.
#pragma once

#include "absl/status/status.h"

namespace hipserve::kernels {

// CPU reference, fp32 throughout (sum of squares accumulated in double).
struct RmsNormParams {
  const float* in = nullptr;      // [rows, dim]
  const float* weight = nullptr;  // [dim]
  float* out = nullptr;           // [rows, dim]; may alias `in`
  float* residual = nullptr;      // [rows, dim] or null. If set: residual += in, then
                                  // out = norm(residual) (residual is updated in place).
  int rows = 0;                   // > 0
  int dim = 0;                    // > 0
  float eps = 1e-5f;              // >= 0 and finite
};
absl::Status RmsNormRef(const RmsNormParams& p);

// GPU version. All tensors are bf16 (uint16_t storage, see kernels/dtype/bf16.h) in device
// memory; accumulation is fp32. With a residual, the sum in + residual is rounded to bf16,
// stored back into `residual`, and that rounded value is what gets normalised (so the stored
// residual stream and the normalised output agree). One block per row; 16-byte vector loads
// when dim % 8 == 0 and all pointers are 16-byte aligned, scalar code otherwise.
struct RmsNormGpuParams {
  const void* in = nullptr;      // [rows, dim] bf16, device
  const void* weight = nullptr;  // [dim] bf16, device
  void* out = nullptr;           // [rows, dim] bf16, device; may alias `in`
  void* residual = nullptr;      // [rows, dim] bf16, device, or null
  int rows = 0;                  // > 0
  int dim = 0;                   // > 0
  float eps = 1e-5f;             // >= 0 and finite
};
// `stream` is a cudaStream_t (null = default stream). Asynchronous: errors from the kernel
// itself surface on the next synchronising call. CPU builds return UnimplementedError.
absl::Status RmsNormGpu(const RmsNormGpuParams& p, void* stream);

}  // namespace hipserve::kernels
