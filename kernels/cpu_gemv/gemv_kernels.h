// Internal to kernels/cpu_gemv: the per-ISA GEMV bodies. Each is compiled in its own file with
// that ISA's flags (gemv_avx2.cc: -mavx2 -mfma; gemv_avx512.cc: -mavx512f -mavx512bw
// -mavx512vl -mfma) and only called after gemv.cc checked the CPU supports it. Those files
// include nothing but <immintrin.h>, <cstdint>, this header and gemv_tiles.h (templates on a
// type local to each file), so no inline function of a shared header gets an AVX-512 body that
// other files could end up calling.
#pragma once

#include <cstdint>

namespace hipserve::kernels::gemv_internal {

struct GemvTask {
  const float* x;  // [rows, k], row stride ldx
  int64_t ldx;
  int rows;
  const void* w;  // [n, k] fp32 or bf16 (uint16 bit patterns), row stride k
  bool bf16;
  const float* bias;  // [n] or null
  float* y;           // [rows, n], row stride ldy
  int64_t ldy;
  int k;
};

// y[r][j] = sum_i x[r][i] * w[j][i] (+ bias[j]) for r < rows, j in [n0, n1). fp32 accumulation.
void GemvRangeScalar(const GemvTask& t, int n0, int n1);
void GemvRangeAvx2(const GemvTask& t, int n0, int n1);
void GemvRangeAvx512(const GemvTask& t, int n0, int n1);

}  // namespace hipserve::kernels::gemv_internal
