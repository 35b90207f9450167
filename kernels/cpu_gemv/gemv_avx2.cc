// AVX2 + FMA GEMV body (see gemv_kernels.h). Compiled with -mavx2 -mfma. Tiles of NW (<= 4)
// weight rows x R (<= 2) activation rows (16 ymm registers: 8 accumulators, 4 weights, 1 x);
// bf16 is widened with vpmovzxwd + a 16-bit shift. The k % 8 tail is summed in scalar code.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu_gemv/gemv_kernels.h"

namespace hipserve::kernels::gemv_internal {
namespace {

template <bool kBf16>
inline __m256 LoadW(const void* w, int64_t off) {
  if constexpr (kBf16) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + off));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(w) + off);
  }
}

template <bool kBf16>
inline void Prefetch(const void* w, int64_t off) {
  const char* p = static_cast<const char*>(w) + off * (kBf16 ? 2 : 4);
  _mm_prefetch(p, _MM_HINT_T0);
}

template <bool kBf16>
inline float WAt(const void* w, int64_t off) {
  if constexpr (kBf16) {
    union {
      uint32_t u;
      float f;
    } c;
    c.u = static_cast<uint32_t>(static_cast<const uint16_t*>(w)[off]) << 16;
    return c.f;
  } else {
    return static_cast<const float*>(w)[off];
  }
}

inline float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

template <bool kBf16, int NW, int R>
inline void Tile(const GemvTask& t, int j, int r0) {
  const int64_t k = t.k;
  __m256 acc[R][NW];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) acc[r][a] = _mm256_setzero_ps();
  }
  const float* x = t.x + r0 * t.ldx;
  const int64_t wrow = int64_t{j} * k;
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    // The hardware prefetcher sees NW short row streams per tile and restarts on every tile;
    // prefetch the next tile's rows (contiguous after this tile's) at the same column.
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) Prefetch<kBf16>(t.w, wrow + (a + NW) * k + i);
    __m256 wv[NW];
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) wv[a] = LoadW<kBf16>(t.w, wrow + a * k + i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * t.ldx + i);
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) acc[r][a] = _mm256_fmadd_ps(xv, wv[a], acc[r][a]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* y = t.y + (r0 + r) * t.ldy + j;
    const float* xr = x + r * t.ldx;
#pragma GCC unroll 4
    for (int a = 0; a < NW; ++a) {
      float s = HorizontalSum(acc[r][a]);
      for (int64_t q = i; q < k; ++q) s += xr[q] * WAt<kBf16>(t.w, wrow + a * k + q);
      y[a] = t.bias != nullptr ? s + t.bias[j + a] : s;
    }
  }
}

template <bool kBf16, int NW>
inline void Rows(const GemvTask& t, int j) {
  int r = 0;
  for (; r + 2 <= t.rows; r += 2) Tile<kBf16, NW, 2>(t, j, r);
  if (r < t.rows) Tile<kBf16, NW, 1>(t, j, r);
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

void GemvRangeAvx2(const GemvTask& t, int n0, int n1) {
  if (t.bf16) {
    Range<true>(t, n0, n1);
  } else {
    Range<false>(t, n0, n1);
  }
}

}  // namespace hipserve::kernels::gemv_internal
