// The skinny GEMM path of GemmGpu (gemm.cu): C[m,n] = A[m,k] B[n,k]^T (+ bias) for m <= 8 rows,
// the decode steps' shape. Internal to kernels/gemm; callers use GemmGpu with GemmGpuAlgo.
#pragma once

#include "absl/status/status.h"
#include "kernels/gemm/gemm.h"

namespace hipserve::kernels::gemm_internal {

// True when SkinnyGemm serves `p`: m <= kGemmSkinnyMaxRows, k % 8 == 0, beta == 0, A and B
// 16-byte aligned (and C / bias aligned to their element size, which every device pointer is).
bool SkinnyGemmEligible(const GemmGpuParams& p);

// Bandwidth-bound kernel: each block computes 4 output columns for all m rows, its 256 threads
// stride over k in 16-byte chunks (fp32 products and sums), then a fixed-order reduction (warp
// shuffles, then the 8 warps in order) adds the bias and rounds once. A row's result does not
// depend on m or on the other rows. Requires SkinnyGemmEligible(p).
absl::Status SkinnyGemm(const GemmGpuParams& p, void* stream);

}  // namespace hipserve::kernels::gemm_internal
