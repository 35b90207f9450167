// SkinnyGemm (skinny_gemm.h): the GEMV-like kernel GemmGpu uses for decode-sized m.
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/bf16_pack.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/gemm/skinny_gemm.h"

namespace hipserve::kernels::gemm_internal {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kCols = 4;  // output columns (rows of B) per block

// Weights are read once per call: stream them past L1.
__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// MT: rows the instantiation holds (m <= MT). OutF32: C and bias fp32, else bf16.
template <int MT, bool OutF32>
__global__ void __launch_bounds__(kThreads)
    SkinnyGemmKernel(const uint16_t* __restrict__ a, const uint16_t* __restrict__ b,
                     void* __restrict__ c, const void* __restrict__ bias, int m, int n, int k) {
  using cuda_util::Bf16x8ToFloat;
  const int n0 = blockIdx.x * kCols;
  const int chunks = k / 8;  // 16-byte chunks per row
  float acc[kCols][MT];
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
#pragma unroll
    for (int i = 0; i < MT; ++i) acc[j][i] = 0.f;
  }
  const uint4* brow[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int col = min(n0 + j, n - 1);  // clamped: a duplicate row is read, never written
    brow[j] = reinterpret_cast<const uint4*>(b + int64_t{col} * k);
  }
  const uint4* arow = reinterpret_cast<const uint4*>(a);
#pragma unroll 2
  for (int ch = threadIdx.x; ch < chunks; ch += kThreads) {
    uint4 w[kCols];
#pragma unroll
    for (int j = 0; j < kCols; ++j) w[j] = LoadStreaming(brow[j] + ch);
    float x[MT][8];
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      if (i < m) {
        Bf16x8ToFloat(__ldg(arow + int64_t{i} * chunks + ch), x[i]);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) x[i][e] = 0.f;
      }
    }
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      float wf[8];
      Bf16x8ToFloat(w[j], wf);
#pragma unroll
      for (int i = 0; i < MT; ++i) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[j][i] = fmaf(wf[e], x[i][e], acc[j][i]);
      }
    }
  }
  // Fixed-order reduction: lanes by xor shuffles, then warps 0..7 in order.
  __shared__ float part[kWarps][kCols][MT];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
      float v = acc[j][i];
#pragma unroll
      for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0) part[warp][j][i] = v;
    }
  }
  __syncthreads();
  if (threadIdx.x >= kCols * MT) return;
  const int j = threadIdx.x % kCols, i = threadIdx.x / kCols;
  const int col = n0 + j;
  if (i >= m || col >= n) return;
  float s = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) s += part[w][j][i];
  if constexpr (OutF32) {
    if (bias != nullptr) s += static_cast<const float*>(bias)[col];
    static_cast<float*>(c)[int64_t{i} * n + col] = s;
  } else {
    if (bias != nullptr) {
      s += cuda_util::Bf16BitsToFloat(static_cast<const uint16_t*>(bias)[col]);
    }
    static_cast<uint16_t*>(c)[int64_t{i} * n + col] = cuda_util::FloatToBf16Bits(s);
  }
}

template <int MT>
void Launch(const GemmGpuParams& p, cudaStream_t s) {
  const dim3 grid((p.n + kCols - 1) / kCols);
  const auto* a = static_cast<const uint16_t*>(p.a);
  const auto* b = static_cast<const uint16_t*>(p.b);
  if (p.c_type == GemmGpuOutType::kFloat32) {
    SkinnyGemmKernel<MT, true><<<grid, kThreads, 0, s>>>(a, b, p.c, p.bias, p.m, p.n, p.k);
  } else {
    SkinnyGemmKernel<MT, false><<<grid, kThreads, 0, s>>>(a, b, p.c, p.bias, p.m, p.n, p.k);
  }
}

}  // namespace

bool SkinnyGemmEligible(const GemmGpuParams& p) {
  const auto aligned16 = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return p.m >= 1 && p.m <= kGemmSkinnyMaxRows && p.k % 8 == 0 && p.beta == 0.f && aligned16(p.a) &&
         aligned16(p.b);
}

absl::Status SkinnyGemm(const GemmGpuParams& p, void* stream) {
  if (!SkinnyGemmEligible(p)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GemmGpu: the skinny path needs m <= ", kGemmSkinnyMaxRows,
        ", k % 8 == 0, beta == 0 and 16-byte aligned a and b; got m ", p.m, ", k ", p.k));
  }
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.m == 1) {
    Launch<1>(p, s);
  } else if (p.m == 2) {
    Launch<2>(p, s);
  } else if (p.m <= 4) {
    Launch<4>(p, s);
  } else {
    Launch<8>(p, s);
  }
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace hipserve::kernels::gemm_internal
