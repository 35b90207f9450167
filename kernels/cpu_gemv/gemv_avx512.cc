// AVX-512 GEMV body (see gemv_kernels.h). Compiled with -mavx512f -mavx512bw -mavx512vl -mfma.
// A tile is NW (<= 4) consecutive weight rows x R (<= 4) activation rows: each 16-wide slice of
// the NW weight rows is loaded (bf16: widened to fp32 by a 16-bit shift) once and used for all
// R rows, fp32 FMAs into NW*R accumulators; the k tail uses masked loads.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu_gemv/gemv_kernels.h"

namespace hipserve::kernels::gemv_internal {
namespace {

template <bool kBf16>
inline __m512 LoadW(const void* w, int64_t off) {
  if constexpr (kBf16) {
    const __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_loadu_ps(static_cast<const float*>(w) + off);
  }
}

template <bool kBf16>
inline void Prefetch(const void* w, int64_t off) {
  const char* p = static_cast<const char*>(w) + off * (kBf16 ? 2 : 4);
  _mm_prefetch(p, _MM_HINT_T0);
}

template <bool kBf16>
inline __m512 LoadWMasked(const void* w, int64_t off, __mmask16 m) {
  if constexpr (kBf16) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + off);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + off);
  }
}

// Horizontal sum (GCC 12's _mm512_reduce_add_ps warns about an uninitialised temporary).
inline float HorizontalSum(__m512 v) {
  const __m512 h = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));  // 256-bit halves
  const __m256 q = _mm512_castps512_ps256(h);
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

template <bool kBf16, int NW, int R>
inline void Tile(const GemvTask& t, int j, int r0) {
  const int64_t k = t.k;
  __m512 acc[R][NW];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) acc[r][a] = _mm512_setzero_ps();
  }
  const float* x = t.x + r0 * t.ldx;
  const int64_t wrow = int64_t{j} * k;
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    // The hardware prefetcher sees NW short row streams per tile and restarts on every tile;
    // prefetch the next tile's rows (contiguous after this tile's) at the same column.
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) Prefetch<kBf16>(t.w, wrow + (a + NW) * k + i);
    __m512 wv[NW];
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) wv[a] = LoadW<kBf16>(t.w, wrow + a * k + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * t.ldx + i);
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) acc[r][a] = _mm512_fmadd_ps(xv, wv[a], acc[r][a]);
    }
  }
  if (i < k) {
    const __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1);
    __m512 wv[NW];
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) wv[a] = LoadWMasked<kBf16>(t.w, wrow + a * k + i, m);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + r * t.ldx + i);
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) acc[r][a] = _mm512_fmadd_ps(xv, wv[a], acc[r][a]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* y = t.y + (r0 + r) * t.ldy + j;
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) {
      const float s = HorizontalSum(acc[r][a]);
      y[a] = t.bias != nullptr ? s + t.bias[j + a] : s;
    }
  }
}

template <bool kBf16, int NW>
inline void Rows(const GemvTask& t, int j) {
  int r = 0;
  for (; r + 4 <= t.rows; r += 4) Tile<kBf16, NW, 4>(t, j, r);
  switch (t.rows - r) {
    case 3:
      Tile<kBf16, NW, 3>(t, j, r);
      break;
    case 2:
      Tile<kBf16, NW, 2>(t, j, r);
      break;
    case 1:
      Tile<kBf16, NW, 1>(t, j, r);
      break;
    default:
      break;
  }
}

template <bool kBf16>
void Range(const GemvTask& t, int n0, int n1) {
  int j = n0;
  for (; j + 4 <= n1; j += 4) Rows<kBf16, 4>(t, j);
  switch (n1 - j) {
    case 3:
      Rows<kBf16, 3>(t, j);
      break;
    case 2:
      Rows<kBf16, 2>(t, j);
      break;
    case 1:
      Rows<kBf16, 1>(t, j);
      break;
    default:
      break;
  }
}

}  // namespace

void GemvRangeAvx512(const GemvTask& t, int n0, int n1) {
  if (t.bf16) {
    Range<true>(t, n0, n1);
  } else {
    Range<false>(t, n0, n1);
  }
}

}  // namespace hipserve::kernels::gemv_internal
