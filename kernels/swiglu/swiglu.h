// SwiGLU activation of the Llama MLP: out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace hipserve::kernels {

struct SwigluParams {
  const float* gate = nullptr;  // [n]
  const float* up = nullptr;    // [n]
  float* out = nullptr;         // [n]; may alias gate or up
  int64_t n = 0;                // > 0
};

// CPU reference, fp32.
absl::Status SwigluRef(const SwigluParams& p);

// GPU version on bf16 (uint16_t storage, kernels/dtype/bf16.h) device tensors, fp32 math, one
// rounding to bf16 at the end. Works on the fused gate_up GEMM output directly: with
// gate_up = [rows, 2 * cols] (gate columns first), pass gate = gate_up, up = gate_up + cols and
// in_stride = 2 * cols. 16-byte vector path when cols and in_stride are multiples of 8 and all
// pointers are 16-byte aligned, scalar otherwise.
struct SwigluGpuParams {
  const void* gate = nullptr;  // [rows, cols] bf16, device, row stride in_stride
  const void* up = nullptr;    // [rows, cols] bf16, device, row stride in_stride
  void* out = nullptr;         // [rows, cols] bf16, device, contiguous; may alias gate (when
                               // in_stride == cols) but must not overlap other rows' inputs
  int rows = 0;                // > 0
  int cols = 0;                // > 0
  int64_t in_stride = 0;       // elements between rows of gate/up; 0 = cols; else >= cols
};
// `stream` is a cudaStream_t (null = default stream). Asynchronous; CPU builds return
// UnimplementedError. InvalidArgument names the offending field.
absl::Status SwigluGpu(const SwigluGpuParams& p, void* stream);

}  // namespace hipserve::kernels
