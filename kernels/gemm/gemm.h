// GEMM with PyTorch Linear weight layout: C[m,n] = A[m,k] * B[n,k]^T (+ bias[n]) (+ beta * C).
// All row-major, fp32.
#pragma once

#include "absl/status/status.h"

namespace hipserve::kernels {

struct GemmParams {
  const float* a = nullptr;     // [m, k] activations
  const float* b = nullptr;     // [n, k] weights ([out, in])
  float* c = nullptr;           // [m, n]; must not alias a or b
  const float* bias = nullptr;  // [n] or null
  int m = 0, n = 0, k = 0;      // each > 0
  float beta = 0.f;             // 0: C's old contents are ignored (NaN/garbage is fine)
};

// CPU reference via cblas_sgemm (OpenBLAS). Deterministic for a fixed thread count.
absl::Status GemmRef(const GemmParams& p);

}  // namespace hipserve::kernels
