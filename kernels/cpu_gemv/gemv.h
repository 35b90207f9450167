// CPU matrix products for the CPU backend's forward pass, with the weights in fp32 or bf16.
//
// Same layout as kernels/gemm/gemm.h (PyTorch Linear): C[m,n] = A[m,k] * B[n,k]^T (+ bias[n]),
// A, C and bias fp32, B fp32 or bf16 (uint16 bit patterns, kernels/dtype/bf16.h), row-major.
//
// CpuMatmul picks the path by m:
// - m <= kGemvMaxRows (decode: one row per sequence): Gemv, a weight-streaming kernel that
//   reads B once, widens bf16 to fp32 on the fly (a 16-bit shift) and accumulates in fp32,
//   split over the output rows on common::SpinPool::Shared(). BLAS is not used here: sgemm
//   with m = 1 packs (copies) all of B first, which costs more than the product.
// - larger m (prefill): cblas_sgemm; bf16 B is widened to fp32 in blocks of output rows first.
// Both give fp32-accumulated results; the summation order differs between them and from
// GemmRef, so results agree to fp32 rounding, not bit for bit.
//
// The vector body is chosen at run time (CpuIsa): AVX-512 (F+BW+VL), AVX2+FMA, or portable
// scalar code; each ISA's body is compiled in its own file with that ISA's flags, so the
// library runs on any x86-64 (and builds on other architectures: scalar only).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace hipserve::kernels {

enum class CpuWeightType { kFloat32, kBf16 };
const char* CpuWeightTypeName(CpuWeightType t);  // "fp32", "bf16"

enum class CpuIsa { kScalar, kAvx2, kAvx512 };
const char* CpuIsaName(CpuIsa isa);  // "scalar", "avx2", "avx512"
bool CpuIsaSupported(CpuIsa isa);    // by this CPU (and this build)
// The best supported ISA, or a lower one named by HIPSERVE_CPU_ISA=scalar|avx2|avx512 (for
// testing the fallbacks; an unsupported or unknown value is ignored). Evaluated once.
CpuIsa BestCpuIsa();

inline constexpr int kGemvMaxRows = 16;

struct CpuMatmulParams {
  const float* a = nullptr;  // [m, k]
  const void* b = nullptr;   // [n, k], float or uint16_t (bf16) per b_type
  CpuWeightType b_type = CpuWeightType::kFloat32;
  const float* bias = nullptr;  // [n] or null
  float* c = nullptr;           // [m, n]; must not alias a or b; overwritten
  int m = 0, n = 0, k = 0;      // each > 0
};

// The decode path: any m > 0 works (activation rows are processed in groups of 4 per tile of
// weight rows, so B is read from memory once), but it is meant for m <= kGemvMaxRows.
// threads: pool threads to split over (0 = the whole shared pool, 1 = the caller alone).
// isa: the vector body (must be supported).
struct GemvOptions {
  int threads = 0;
  CpuIsa isa = BestCpuIsa();
};
absl::Status Gemv(const CpuMatmulParams& p, const GemvOptions& options = {});

// Gemv for m <= kGemvMaxRows, else sgemm (see the file comment).
absl::Status CpuMatmul(const CpuMatmulParams& p);

}  // namespace hipserve::kernels
