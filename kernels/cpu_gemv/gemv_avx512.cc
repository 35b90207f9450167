// AVX-512 GEMV body (see gemv_kernels.h). Compiled with -mavx512f -mavx512bw -mavx512vl -mfma.
// Tiles (gemv_tiles.h) of NW (<= 4) weight rows x R (<= 4) activation rows over 16-wide slices
// (bf16 widened to fp32 by a 16-bit shift); the k tail uses masked loads.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu_gemv/gemv_kernels.h"
#include "kernels/cpu_gemv/gemv_tiles.h"

namespace hipserve::kernels::gemv_internal {
namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kMaxRows = 4;

  static V Zero() { return _mm512_setzero_ps(); }
  static V LoadX(const float* p) { return _mm512_loadu_ps(p); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }

  template <bool kBf16>
  static V LoadW(const void* w, int64_t off) {
    if constexpr (kBf16) {
      const __m256i h = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off));
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_loadu_ps(static_cast<const float*>(w) + off);
    }
  }

  template <bool kBf16>
  static V LoadWMasked(const void* w, int64_t off, __mmask16 m) {
    if constexpr (kBf16) {
      const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + off);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + off);
    }
  }

  // Horizontal sum (GCC 12's _mm512_reduce_add_ps warns about an uninitialised temporary).
  static float Sum(V v) {
    const __m512 h = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));  // 256-bit halves
    const __m256 q = _mm512_castps512_ps256(h);
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(q), _mm256_extractf128_ps(q, 1));
    const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }

  // The k tail (< 16 columns) as one masked slice; nothing is left to the scalar loop.
  template <bool kBf16, int NW, int R>
  static int64_t VectorTail(const GemvTask& t, const float* x, int64_t wrow, int64_t i,
                            V (&acc)[R][NW]) {
    const int64_t k = t.k;
    if (i < k) {
      const __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1);
      V wv[NW];
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) wv[a] = LoadWMasked<kBf16>(t.w, wrow + a * k + i, m);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const V xv = _mm512_maskz_loadu_ps(m, x + r * t.ldx + i);
#pragma GCC unroll 4
        for (int a = 0; a < NW; ++a) acc[r][a] = _mm512_fmadd_ps(xv, wv[a], acc[r][a]);
      }
    }
    return k;
  }
};

}  // namespace

void GemvRangeAvx512(const GemvTask& t, int n0, int n1) { GemvTiles<Avx512>::Run(t, n0, n1); }

}  // namespace hipserve::kernels::gemv_internal
