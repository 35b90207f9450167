// GEMM with PyTorch Linear weight layout: C[m,n] = A[m,k] * B[n,k]^T (+ bias[n]) (+ beta * C).
// All row-major, fp32.
#pragma once

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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

// ---- GPU version (cuBLASLt) ----------------------------------------------------------------
// Same row-major semantics: C[m,n] = A[m,k] B[n,k]^T (+ bias[n]) (+ beta * C), bf16 A and B,
// fp32 accumulation, C (and bias) in bf16 or fp32. Internally the column-major "TN" product
// C^T = B * A^T, the layout cuBLASLt serves best.

enum class GemmGpuOutType {
  kBf16,     // C and bias bf16 (uint16_t storage, kernels/dtype/bf16.h)
  kFloat32,  // C and bias fp32
};

struct GemmGpuOptions {
  // cuBLASLt workspace, allocated once by Create (32 MiB: NVIDIA's recommendation for Hopper).
  size_t workspace_bytes = size_t{32} << 20;
};

// Owns a cuBLASLt handle, a device workspace, and a cache of matmul plans (descriptors, layouts
// and the heuristic's algorithm) keyed by shape, output type, bias, beta != 0 and pointer
// alignment, so a call after the first for a shape allocates nothing and queries nothing (and
// can be captured in a CUDA graph). Bound to the device current at Create. Not thread-safe: use
// one context per thread (or serialise calls). Destroy it only when no call is in flight.
class GemmGpuContext {
 public:
  static absl::StatusOr<std::unique_ptr<GemmGpuContext>> Create(const GemmGpuOptions& options = {});
  ~GemmGpuContext();
  GemmGpuContext(const GemmGpuContext&) = delete;
  GemmGpuContext& operator=(const GemmGpuContext&) = delete;

  struct Impl;  // defined in gemm.cu
  Impl* impl() { return impl_.get(); }

 private:
  explicit GemmGpuContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Which kernel GemmGpu runs. kSkinny: a bandwidth-bound kernel for decode-sized m (skinny_gemm.h;
// needs m <= kGemmSkinnyMaxRows, k % 8 == 0, beta == 0, 16-byte aligned a and b). kAuto: kSkinny
// when it applies and m <= kGemmSkinnyAutoRows, cuBLASLt otherwise.
enum class GemmGpuAlgo { kAuto, kCublasLt, kSkinny };
inline constexpr int kGemmSkinnyMaxRows = 8;
inline constexpr int kGemmSkinnyAutoRows = 2;  // bench_gemm, H100: faster at m <= 2 only

struct GemmGpuParams {
  GemmGpuContext* context = nullptr;  // required
  const void* a = nullptr;            // [m, k] bf16, device, row-major (activations)
  const void* b = nullptr;            // [n, k] bf16, device, row-major (weights, [out, in])
  void* c = nullptr;                  // [m, n] c_type, device; must not alias a or b
  const void* bias = nullptr;         // [n] c_type, device, or null
  int m = 0, n = 0, k = 0;            // each > 0
  GemmGpuOutType c_type = GemmGpuOutType::kBf16;
  float beta = 0.f;  // finite; 0: C's old contents are not read (NaN/garbage is fine)
  GemmGpuAlgo algo = GemmGpuAlgo::kAuto;
};

// `stream` is a cudaStream_t (null = default stream). Asynchronous. InvalidArgument names the
// offending field; a shape no cuBLASLt algorithm supports is Unimplemented. CPU builds:
// Create and GemmGpu return UnimplementedError.
absl::Status GemmGpu(const GemmGpuParams& p, void* stream);

}  // namespace hipserve::kernels
