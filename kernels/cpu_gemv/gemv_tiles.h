// Internal to kernels/cpu_gemv: the tiling both vector GEMV bodies share (gemv_avx2.cc,
// gemv_avx512.cc). A tile is NW (<= 4) consecutive weight rows x R (<= Isa::kMaxRows)
// activation rows: each Isa::kWidth-wide slice of the NW weight rows is loaded once (bf16:
// widened to fp32) and used for all R rows, fp32 FMAs into NW*R accumulators.
//
// `Isa` is a struct the including file defines in its unnamed namespace, with:
//   V                                 the fp32 vector type
//   kWidth, kMaxRows                  floats per vector; the most activation rows per tile
//   Zero(), LoadX(p), Fma(a, b, c), Sum(v)
//   LoadW<kBf16>(w, off)              kWidth weights from element offset `off`, as fp32
//   VectorTail<kBf16, NW, R>(t, x, wrow, i, acc)
//                                     the k tail from column i into acc where the ISA can
//                                     (masked loads); returns the first column left to the
//                                     scalar tail (k when none is left)
// Every function here is a member of GemvTiles<Isa>, so each file's copy is its own (compiled
// with that file's ISA flags; see gemv_kernels.h): nothing here may be a non-template inline.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu_gemv/gemv_kernels.h"

namespace hipserve::kernels::gemv_internal {

template <typename Isa>
struct GemvTiles {
  using V = typename Isa::V;

  template <bool kBf16>
  static void Prefetch(const void* w, int64_t off) {
    const char* p = static_cast<const char*>(w) + off * (kBf16 ? 2 : 4);
    _mm_prefetch(p, _MM_HINT_T0);
  }

  template <bool kBf16>
  static float WAt(const void* w, int64_t off) {
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

  template <bool kBf16, int NW, int R>
  static void Tile(const GemvTask& t, int j, int r0) {
    const int64_t k = t.k;
    V acc[R][NW];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) acc[r][a] = Isa::Zero();
    }
    const float* x = t.x + r0 * t.ldx;
    const int64_t wrow = int64_t{j} * k;
    int64_t i = 0;
    for (; i + Isa::kWidth <= k; i += Isa::kWidth) {
      // The hardware prefetcher sees NW short row streams per tile and restarts on every tile;
      // prefetch the next tile's rows (contiguous after this tile's) at the same column.
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) Prefetch<kBf16>(t.w, wrow + (a + NW) * k + i);
      V wv[NW];
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) wv[a] = Isa::template LoadW<kBf16>(t.w, wrow + a * k + i);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const V xv = Isa::LoadX(x + r * t.ldx + i);
#pragma GCC unroll 4
        for (int a = 0; a < NW; ++a) acc[r][a] = Isa::Fma(xv, wv[a], acc[r][a]);
      }
    }
    i = Isa::template VectorTail<kBf16, NW, R>(t, x, wrow, i, acc);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      float* y = t.y + (r0 + r) * t.ldy + j;
      const float* xr = x + r * t.ldx;
#pragma GCC unroll 4
      for (int a = 0; a < NW; ++a) {
        float s = Isa::Sum(acc[r][a]);
        for (int64_t q = i; q < k; ++q) s += xr[q] * WAt<kBf16>(t.w, wrow + a * k + q);
        y[a] = t.bias != nullptr ? s + t.bias[j + a] : s;
      }
    }
  }

  template <bool kBf16, int NW>
  static void Rows(const GemvTask& t, int j) {
    constexpr int kR = Isa::kMaxRows;
    static_assert(kR >= 2 && kR <= 4);
    int r = 0;
    for (; r + kR <= t.rows; r += kR) Tile<kBf16, NW, kR>(t, j, r);
    const int left = t.rows - r;
    if constexpr (kR > 3) {
      if (left == 3) Tile<kBf16, NW, 3>(t, j, r);
    }
    if constexpr (kR > 2) {
      if (left == 2) Tile<kBf16, NW, 2>(t, j, r);
    }
    if (left == 1) Tile<kBf16, NW, 1>(t, j, r);
  }

  template <bool kBf16>
  static void Range(const GemvTask& t, int n0, int n1) {
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

  // y[r][j] for j in [n0, n1) (gemv_kernels.h).
  static void Run(const GemvTask& t, int n0, int n1) {
    if (t.bf16) {
      Range<true>(t, n0, n1);
    } else {
      Range<false>(t, n0, n1);
    }
  }
};

}  // namespace hipserve::kernels::gemv_internal
