// AVX2 + FMA GEMV body (see gemv_kernels.h). Compiled with -mavx2 -mfma. Tiles (gemv_tiles.h) of
// NW (<= 4) weight rows x R (<= 2) activation rows (16 ymm registers: 8 accumulators, 4 weights,
// 1 x); bf16 is widened with vpmovzxwd + a 16-bit shift. The k % 8 tail is summed in scalar code.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu_gemv/gemv_kernels.h"
#include "kernels/cpu_gemv/gemv_tiles.h"

namespace hipserve::kernels::gemv_internal {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kMaxRows = 2;

  static V Zero() { return _mm256_setzero_ps(); }
  static V LoadX(const float* p) { return _mm256_loadu_ps(p); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }

  template <bool kBf16>
  static V LoadW(const void* w, int64_t off) {
    if constexpr (kBf16) {
      const __m128i h =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + off));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_loadu_ps(static_cast<const float*>(w) + off);
    }
  }

  static float Sum(V v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 s2 = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  }

  // No masked loads: the whole tail is left to the scalar loop.
  template <bool kBf16, int NW, int R>
  static int64_t VectorTail(const GemvTask&, const float*, int64_t, int64_t i, V (&)[R][NW]) {
    return i;
  }
};

}  // namespace

void GemvRangeAvx2(const GemvTask& t, int n0, int n1) { GemvTiles<Avx2>::Run(t, n0, n1); }

}  // namespace hipserve::kernels::gemv_internal
