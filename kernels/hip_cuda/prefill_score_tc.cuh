// Filter-then-verify score kernel of the HiP prefill mask estimation: the same scores as
// PrefillScoreKernel (prefill_mask_kernel.cuh), BIT FOR BIT, at a fraction of its CUDA-core work.
//
// A probe's score is max over the scoring rows r of dot(r, k), each dot a sequential fp32 sum
// without FMA (the "exact" dot, equal to the CPU reference's). Per descent step and row tile:
//   1. Filter: every (probe, row) dot approximately on the tensor cores, ONE mma per k16 step:
//      each fp32 operand x is rounded to fp16 (11 significant bits, unscaled: the fast path needs
//      |r|, |k| <= kTcNormMax = 2^15, so no element overflows fp16), approx = sum fp16(r_i) *
//      fp16(k_i) (mma.sync m16n8k16 f16 -> fp32). |approx - exact| <= B = kTcDotBoundScale *
//      (|r| + F) * (|k| + F), F = kTcNormFloor (TcDotBound below says why).
//   2. T = max over the tile's rows of (approx - B), raised to the exact max of the tiles before;
//      candidates = rows with approx + B >= T. The row holding the exact max over the tile has
//      exact >= T (every approx - B is <= its exact dot), hence approx + B >= exact >= T: it is
//      a candidate, and rows whose approx + B < T cannot exceed the current max.
//   3. Verify: the probe's owner thread computes the candidates' dots exactly (the reference's
//      sequential code path) in row order and keeps the max with the same `acc > dot` rule, so
//      the result is the exact kernel's value (NaN never wins; equal values leave it unchanged).
// A key or row norm that is non-finite or past kTcNormMax (the only ways a converted operand, an
// approx or a bound can be non-finite) makes the probe's tile fall back to exact dots of all its
// rows.
//
// Layout: THREADS threads = THREADS / 2 chunks x (left, right) probe, as the exact kernel; probe
// p of the block is thread p. Warp w computes the approx dots of its own 32 probes (two m16
// tiles) against all RT rows (RT / 8 n8 tiles), so keys need only warp-level syncs. Shared
// memory (dynamic): the tile's fp32 rows, the warp's fp32 rotated keys (both with a row stride
// of HD + 8 floats: the 8-byte fragment loads of a half warp hit 16 distinct bank pairs; and
// XOR-swizzled, element c of row / key x at column c ^ (x & 4), so the per-lane 16-byte key
// stores and verification loads of 8 lanes hit 8 distinct bank quads), the bounds' norms, the
// candidate masks and each probe's running exact max. The fill computes the rows' norms itself
// (shuffles) and returns the tile's fallback flag through __syncthreads_or. Key operands are
// rounded to fp16 as they are loaded into fragments (one cvt per pair); row operands too with
// 128-thread blocks, while 256-thread blocks keep the tile's fp16 B fragments in shared memory,
// written once per tile by the fill (kHalfB).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/hip_cuda/prefill_mask_kernel.cuh"

namespace hipserve::kernels::hip_mask_internal {

// Error bound of one approximate dot (TcDotBound), head_dim n <= 128, for finite operands with
// norms |r|, |k| <= kTcNormMax = 2^15 (so every element is <= 2^15 < 65504: no fp16 overflow):
//   - conversion: x~ = fp16_RN(x). For |x| >= 2^-14 (fp16 normal) |x~ - x| <= 2^-11 |x|; below,
//     |x~ - x| <= 2^-14 even if the tensor cores flush fp16 subnormals to zero. So |x~ - x| <=
//     2^-11 |x| + 2^-14 always.
//   - products: fp16 x fp16 (11 x 11 significant bits) is exact in fp32. |r~ k~ - r k| per
//     element <= (2 * 2^-11 + 2^-22) |r_i k_i| + 2^-14 (1 + 2^-10) (|r_i| + |k_i|) + 2^-28;
//     summed over n <= 128 with sum |r_i k_i| <= |r||k| (Cauchy-Schwarz) and sum |x_i| <=
//     sqrt(n) |x| = 2^3.5 |x|: <= 2^-9.99 |r||k| + 2^-10.4 (|r| + |k|) + 2^-20.9.
//   - tensor-core accumulation: each step (at most n / 8 = 16 k8 groups for n = 128, one mma per
//     k16) may align and TRUNCATE, at most 2^-20 (16 ulp, a deliberately loose figure) of the
//     running magnitude sum <= 1.01 |r||k| + 2^-10 (|r| + |k|) + 2^-20: < 2^-15.9 of that sum
//     (fp32 subnormal partial sums, flushed or not: < 2^-125 each, absorbed below).
//   - the exact path's own sequential rounding: gamma_n = n u / (1 - n u) <= 2^-16.9 for n = 128
//     (u = 2^-24), times sum |r_i k_i| <= |r||k|; its underflowed products < 2^-142 in all.
//   - the norms (fp32 sums of squares with fmaf, sqrt), the bound's product and the comparisons
//     approx +- B round at relative 2^-17 or less; squares that underflow make a norm low by at
//     most 2^-59 absolute, far inside the bound's floor terms.
//   Total < 2^-9.95 |r||k| + 2^-10.35 (|r| + |k|) + 2^-20.5. The bound
//   2^-9 (|r| + 1)(|k| + 1) = 2^-9 |r||k| + 2^-9 (|r| + |k|) + 2^-9 covers it with a margin of
//   more than 1.9x on every term (the relative term is dominated by the fp16 rounding 2^-10,
//   which is exact analysis; the loose accumulation figure could be 30x worse and still fit).
// Overflow: with |r|, |k| <= 2^15 every fp16 operand, product (<= 2^30) and partial sum is finite
// on both paths; larger or non-finite norms take the exact fallback.
inline constexpr float kTcDotBoundScale = 0x1p-9f;
inline constexpr float kTcNormFloor = 1.0f;
inline constexpr float kTcNormMax = 0x1p15f;

// Rows per tile (one 64-bit candidate mask per probe and tile).
inline constexpr int kTcRowTile = 64;

// The norm term of the bound: |v| + kTcNormFloor, or +inf (forces the exact fallback) when |v| is
// past kTcNormMax or NaN.
__device__ __forceinline__ float TcNormTerm(float sum_sq) {
  const float n = sqrtf(sum_sq);
  return n <= kTcNormMax ? n + kTcNormFloor : __int_as_float(0x7f800000);
}

// Two fp32 values rounded to fp16 (RN) and packed as an mma operand (first value in the low
// half).
__device__ __forceinline__ uint32_t TcHalf2(float2 v) {
  const __half2 h = __floats2half2_rn(v.x, v.y);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ void TcMma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                      uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Prefetches (into L2) the contiguous key row of token t, KV head kvh: the next descent step's
// probe is one of two known tokens per side, so both are requested a step early and the
// dependent load of the next step hits L2. A hint only (no effect on values); tiered sources
// are not prefetched.
template <int HD>
__device__ __forceinline__ void TcPrefetchKey(const StageArgs& a, int kvh, int32_t t) {
  const int bytes = HD * (a.keys.source == kKeysFp8 ? 1 : 2);
  const uint8_t* p = a.keys.k + (static_cast<int64_t>(t) * a.num_kv_heads + kvh) * bytes;
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p + bytes - 1));
}

// Dynamic shared memory of PrefillScoreTcKernel<HD, THREADS, kTcRowTile>.
template <int HD, int THREADS>
struct TcScoreSmem {
  static constexpr int kStride = HD + 8;                      // floats per row / key
  static constexpr int kRows = 0;                             // [RT][kStride] fp32
  static constexpr int kKeys = kRows + kTcRowTile * kStride;  // [THREADS][kStride] fp32
  static constexpr int kRowNorm = kKeys + THREADS * kStride;  // [RT]
  static constexpr int kKeyNorm = kRowNorm + kTcRowTile;      // [THREADS]
  static constexpr int kRun = kKeyNorm + THREADS;             // [THREADS]
  static constexpr int kMask = kRun + THREADS;                // [THREADS] uint64 (2 floats)
  // fp16 B fragments of the tile's rows, built once per tile by the fill (256-thread blocks
  // only: 128-thread blocks would no longer fit two per SM): [RT / 8][HD / 16][32 lanes] x
  // (b0, b1), the lane slot XORed with (k16 step & 3) (conflict-free stores from the fill; the
  // reads of one slab are a permutation, conflict-free too). 4-byte words.
  static constexpr bool kHalfB = THREADS >= 256;
  static constexpr int kBh = kMask + 2 * THREADS;
  static constexpr int kFloats = kBh + (kHalfB ? kTcRowTile * HD / 2 : 0);
  static constexpr int kBytes = kFloats * 4;
  static_assert(kMask % 2 == 0, "masks are 8-byte aligned");
};

template <int HD, int THREADS>
__global__ void __launch_bounds__(THREADS, 256 / THREADS)
    PrefillScoreTcKernel(const StageArgs a, const PrefillArgs pa) {
  constexpr int RT = kTcRowTile;
  constexpr int CPB = THREADS / 2;  // chunks per block
  constexpr int HALF = HD / 2;
  constexpr int KS = HD / 16;  // k16 steps
  constexpr int NT = RT / 8;   // n8 tiles of rows
  using L = TcScoreSmem<HD, THREADS>;
  constexpr int S = L::kStride;
  static_assert(THREADS % 32 == 0 && RT == 64 && HD % 16 == 0, "layout");
  extern __shared__ __align__(16) float smem[];
  float* s_rows = smem + L::kRows;
  float* s_keys = smem + L::kKeys;
  float* s_rnorm = smem + L::kRowNorm;
  float* s_knorm = smem + L::kKeyNorm;
  float* s_run = smem + L::kRun;
  unsigned long long* s_mask = reinterpret_cast<unsigned long long*>(smem + L::kMask);
  uint32_t* s_bh = reinterpret_cast<uint32_t*>(smem + L::kBh);

  const int row = blockIdx.z, kvh = blockIdx.y;
  const StageInput in = LoadStageInput(a, row, kvh);
  if (!in.run || in.n <= a.keep || static_cast<int>(blockIdx.x) * CPB >= in.n) return;

  const RowQueries rq = RowRange(pa, row);
  const int stride = pa.stride_q;
  const int num_groups = (rq.qb - rq.qa + stride - 1) / stride;
  const int num_rows = num_groups * a.group;
  const int num_tiles = (num_rows + RT - 1) / RT;

  const float kNegInf = -__int_as_float(0x7f800000);
  const float kFltMax = 3.402823466e38f;

  // Rows of `tile`, their norm terms (NaN for padding rows) and the tile's fallback flag (the
  // return value, block-uniform); ends with a barrier. The norms come out of the fill itself
  // (FillRowTile's norm hook: the PER_ROW lanes of a row reduce their elements' squares by
  // shuffles), so the rows are not read back from shared memory for them.
  // Batched first-query loads in the fill when a thread has at most two items per tile (with
  // four, at head_dim 128 and 128 threads, the kernel would spill).
  constexpr bool kBatchFill = RT * HD / 16 <= 2 * THREADS;
  auto fill_tile = [&](int tile) -> int {
    int bad = 0;
    auto norm = [&](int r, float ss) {
      const float term = TcNormTerm(ss);
      const bool valid = tile * RT + r < num_rows;
      s_rnorm[r] = valid ? term : __int_as_float(0x7fc00000);
      if (valid && !(term <= kFltMax)) bad = 1;
    };
    if constexpr (L::kHalfB) {
      // Elements e0 .. e0 + 7 (e0 % 8 == 0) of row `local` = half j = (e0 / 8) & 1 of k16 step
      // e0 / 16 for the quad lanes q4 = 0..3 of g = local % 8 (see the fragment reads below).
      auto put = [&](int local, int e0, const float* o) {
        const int ks = e0 >> 4, j = (e0 >> 3) & 1;
        uint32_t* b = s_bh + ((local >> 3) * KS + ks) * 64 + j;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          b[2 * ((4 * (local & 7) + q) ^ (ks & 3))] = TcHalf2(make_float2(o[2 * q], o[2 * q + 1]));
        }
      };
      FillRowTile<HD, THREADS, RT, true, kBatchFill>(
          a, pa, rq, kvh, in.n, num_rows, tile, s_rows, S, norm,
          [&](int local, int i0, const float(&o1)[8], const float(&o2)[8]) {
            put(local, i0, o1);
            put(local, HALF + i0, o2);
          });
    } else {
      FillRowTile<HD, THREADS, RT, true, kBatchFill>(a, pa, rq, kvh, in.n, num_rows, tile, s_rows,
                                                     S, norm);
    }
    return __syncthreads_or(bad);
  };
  int tile_bad = 0;  // the current tile has a non-finite or too large row norm

  const int lane = threadIdx.x & 31;
  const int wbase = threadIdx.x - lane;  // the warp's first probe
  const int g = lane >> 2, q4 = lane & 3;
  ChunkDescent d(a, in, CPB);
  const int side = d.side, chunk = d.chunk;  // side 0 = left probe, 1 = right probe
  float* my_key = s_keys + threadIdx.x * S;
  // Swizzle of the fp32 keys and rows in shared memory: element c of row / probe x sits at
  // column c ^ (x & 4), i.e. rows with bit 2 set have their 16-byte granules swapped in pairs.
  // The fragment loads (8 rows g of a half warp share the flip) stay conflict-free, and the
  // per-lane 16-byte accesses of the key stores and the verification (8 lanes, 8 different rows
  // at a 136-float stride) now hit 8 distinct bank quads instead of 4.
  const int my_sw = threadIdx.x & 4;

  for (int it = 0; it < a.iterations; ++it) {
    d.Step(it);
    const int32_t probe = d.probe;
    const bool has = d.has;

    if (pa.prefetch_keys && d.descend && it + 1 < a.iterations && a.keys.source != kKeysTiered) {
      // This side's probe of the next step, for either decision (the same formula as `probe`).
      auto next_probe = [&](int32_t l, int32_t h) {
        const int32_t m = l + (h - l) / 2;
        return side == 0 ? l + (m - l) / 2 : m + (h - m) / 2;
      };
      if (d.mid - d.lo >= 2) TcPrefetchKey<HD>(a, kvh, next_probe(d.lo, d.mid));
      if (d.hi - d.mid >= 2) TcPrefetchKey<HD>(a, kvh, next_probe(d.mid, d.hi));
    }
    __syncwarp();  // the previous step's readers of this warp's keys are done
    if (has) {
      float s4[4] = {0.f, 0.f, 0.f, 0.f};  // four independent sums (short dependent chains)
      RotatedProbeKey<HD>(a, kvh, probe, side, chunk, [&](int i4, float4 k1, float4 k2) {
        *reinterpret_cast<float4*>(my_key + ((4 * i4) ^ my_sw)) = k1;
        *reinterpret_cast<float4*>(my_key + ((HALF + 4 * i4) ^ my_sw)) = k2;
        s4[0] = fmaf(k1.x, k1.x, fmaf(k1.y, k1.y, s4[0]));
        s4[1] = fmaf(k1.z, k1.z, fmaf(k1.w, k1.w, s4[1]));
        s4[2] = fmaf(k2.x, k2.x, fmaf(k2.y, k2.y, s4[2]));
        s4[3] = fmaf(k2.z, k2.z, fmaf(k2.w, k2.w, s4[3]));
      });
      s_knorm[threadIdx.x] = TcNormTerm((s4[0] + s4[1]) + (s4[2] + s4[3]));
    } else {
#pragma unroll
      for (int c4 = 0; c4 < HD / 4; ++c4) {
        *reinterpret_cast<float4*>(my_key + 4 * c4) = make_float4(0.f, 0.f, 0.f, 0.f);
      }
      s_knorm[threadIdx.x] = 0.f;
    }
    s_run[threadIdx.x] = kNegInf;
    __syncwarp();  // keys, norms and running maxima visible to the warp
    const bool warp_has = __any_sync(0xffffffffu, has);

    float dot = kNegInf;  // this thread's probe: exact max over the rows so far
    for (int tile = 0; tile < num_tiles; ++tile) {
      if (num_tiles > 1 || it == 0) {
        __syncthreads();  // previous readers of s_rows are done
        tile_bad = fill_tile(tile);
      }
      const int rows_here = min(RT, num_rows - tile * RT);
      if (warp_has) {  // warp-uniform
        // 1. approx[mt][nt]: probes wbase + 16 mt + {g, g + 8}, rows 8 nt + 2 q4 + {0, 1}.
        float acc[2][NT][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;
          }
        }
#pragma unroll 4
        for (int ks = 0; ks < KS; ++ks) {
          uint32_t ah[2][4];
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {  // a0: (g, 2q), a1: (g + 8, 2q), a2: (g, 2q + 8), a3
              const float* kp = s_keys + (wbase + 16 * mt + 8 * (r & 1) + g) * S +
                                ((16 * ks + 8 * (r >> 1) + 2 * q4) ^ (g & 4));
              ah[mt][r] = TcHalf2(*reinterpret_cast<const float2*>(kp));
            }
          }
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            uint32_t b0, b1;
            if constexpr (L::kHalfB) {
              const uint2 b = *reinterpret_cast<const uint2*>(s_bh + (nt * KS + ks) * 64 +
                                                              2 * (lane ^ (ks & 3)));
              b0 = b.x;
              b1 = b.y;
            } else {
              const float* rp = s_rows + (8 * nt + g) * S;
              b0 = TcHalf2(*reinterpret_cast<const float2*>(rp + ((16 * ks + 2 * q4) ^ (g & 4))));
              b1 = TcHalf2(
                  *reinterpret_cast<const float2*>(rp + ((16 * ks + 8 + 2 * q4) ^ (g & 4))));
            }
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) TcMma(acc[mt][nt], ah[mt], b0, b1);
          }
        }
        // 2. Bounds, threshold and candidate masks, per probe over its quad (4 lanes x 16 rows).
        // Padding rows have a NaN norm term: their bounds are NaN, which fmaxf skips and no
        // comparison accepts. With finite norms <= kTcNormMax every approx, bound and T is
        // finite (see kTcNormMax), so no per-dot check is needed.
        float rn[NT][2];  // this lane's rows' norm terms
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const float2 v = *reinterpret_cast<const float2*>(s_rnorm + 8 * nt + 2 * q4);
          rn[nt][0] = v.x;
          rn[nt][1] = v.y;
        }
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int p = wbase + 16 * mt + 8 * h + g;
            const float kn = kTcDotBoundScale * s_knorm[p];
            float lo4[NT];  // max(approx - B) as a tree (fmaxf is exact and order-free)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              lo4[nt] = fmaxf(fmaf(-kn, rn[nt][0], acc[mt][nt][2 * h]),
                              fmaf(-kn, rn[nt][1], acc[mt][nt][2 * h + 1]));
            }
#pragma unroll
            for (int w = NT / 2; w >= 1; w /= 2) {
#pragma unroll
              for (int nt = 0; nt < w; ++nt) lo4[nt] = fmaxf(lo4[nt], lo4[nt + w]);
            }
            float t = lo4[0];
            t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, 1));
            t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, 2));
            t = fmaxf(t, s_run[p]);  // rows at or below the earlier tiles' max cannot change it
            // Bit 2 nt + j of lane q4's 16 = row 8 nt + 2 q4 + j; the quad's four 16-bit masks
            // go to s_mask[p] at bit 16 q4 (the owner turns them back into row numbers).
            uint32_t bits = 0;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
              for (int j = 0; j < 2; ++j) {
                if (fmaf(kn, rn[nt][j], acc[mt][nt][2 * h + j]) >= t) bits |= 1u << (2 * nt + j);
              }
            }
            uint32_t w = bits << (16 * (q4 & 1));
            w |= __shfl_xor_sync(0xffffffffu, w, 1);
            const uint32_t w2 = __shfl_xor_sync(0xffffffffu, w, 2);
            if (q4 == 0) s_mask[p] = w | (static_cast<unsigned long long>(w2) << 32);
          }
        }
        __syncwarp();
        // 3. Verify: exact dots of this thread's candidates, two at a time, in row order (the
        // order does not matter for the value: NaN never wins, and -0 / +0 compare equal and end
        // as +0). Fallback (a non-finite or too large norm): every row of the tile.
        unsigned long long m = 0;
        if (has) {
          if (!(s_knorm[threadIdx.x] <= kFltMax) || tile_bad != 0) {
            m = rows_here == 64 ? ~0ull : (1ull << rows_here) - 1;
          } else {
            unsigned long long pm = s_mask[threadIdx.x];
            while (pm != 0ull) {
              const int b = __ffsll(static_cast<long long>(pm)) - 1;
              pm &= pm - 1;
              m |= 1ull << (8 * ((b & 15) >> 1) + 2 * (b >> 4) + (b & 1));
            }
          }
        }
        // Warp-uniform rounds (the enclosing branch is warp-uniform): in each, every lane with
        // candidates left takes its next one or two; the two-row loop runs only when some lane
        // has two (a uniform choice; a lane with one computes the same x0 either way).
        while (__any_sync(0xffffffffu, m != 0ull)) {
          const bool any_two = __any_sync(0xffffffffu, __popcll(m) >= 2);
          if (m == 0ull) continue;
          const int r0 = __ffsll(static_cast<long long>(m)) - 1;
          m &= m - 1;
          const bool two = m != 0ull;
          const int r1 = two ? __ffsll(static_cast<long long>(m)) - 1 : r0;
          if (two) m &= m - 1;
          const float4* p0 = reinterpret_cast<const float4*>(s_rows + r0 * S);
          const float4* p1 = reinterpret_cast<const float4*>(s_rows + r1 * S);
          const float4* kp = reinterpret_cast<const float4*>(my_key);
          const int s0 = (r0 >> 2) & 1, s1 = (r1 >> 2) & 1, sk = my_sw >> 2;  // granule flips
          float x0 = 0.f, x1 = 0.f;
          if (any_two) {
#pragma unroll 8
            for (int c4 = 0; c4 < HD / 4; ++c4) {
              const float4 kv = kp[c4 ^ sk], u = p0[c4 ^ s0], w = p1[c4 ^ s1];
              x0 = __fadd_rn(x0, __fmul_rn(u.x, kv.x));
              x1 = __fadd_rn(x1, __fmul_rn(w.x, kv.x));
              x0 = __fadd_rn(x0, __fmul_rn(u.y, kv.y));
              x1 = __fadd_rn(x1, __fmul_rn(w.y, kv.y));
              x0 = __fadd_rn(x0, __fmul_rn(u.z, kv.z));
              x1 = __fadd_rn(x1, __fmul_rn(w.z, kv.z));
              x0 = __fadd_rn(x0, __fmul_rn(u.w, kv.w));
              x1 = __fadd_rn(x1, __fmul_rn(w.w, kv.w));
            }
          } else {  // no lane of these has a second row: skip its loads (same x0 operations)
#pragma unroll 8
            for (int c4 = 0; c4 < HD / 4; ++c4) {
              const float4 kv = kp[c4 ^ sk], u = p0[c4 ^ s0];
              x0 = __fadd_rn(x0, __fmul_rn(u.x, kv.x));
              x0 = __fadd_rn(x0, __fmul_rn(u.y, kv.y));
              x0 = __fadd_rn(x0, __fmul_rn(u.z, kv.z));
              x0 = __fadd_rn(x0, __fmul_rn(u.w, kv.w));
            }
          }
          if (x0 > dot) dot = x0;  // NaN never wins
          if (two && x1 > dot) dot = x1;
        }
        s_run[threadIdx.x] = dot;
        __syncwarp();
      }
    }
    d.Decide(dot);
  }
  d.Store(a, static_cast<int64_t>(row) * a.num_kv_heads + kvh);
}

// ---------------------------------------------------------------------------------------------
// Resident-rows variant (PrefillScoreResKernel): the same filter-then-verify scores, BIT FOR BIT,
// for stages whose scoring rows span several 64-row tiles (stage 2 of the presets: stride_q 1,
// 64 queries x group 4 = 256 rows), without rebuilding any row during the descent.
//
// Where the tile kernel's time goes (per 256-thread block = 128 chunks x 2 probes and descent
// step, stage 2 at 128K, HD 128, 256 rows = 4 tiles; shared-memory wavefronts of 128 B counted
// from the code, the profile said the L1/TEX pipe is the bound; see bench/BENCHMARKS.md K4):
//   - the 4 tiles are rebuilt from q + RoPE at every step: 256 rows x (256 B q + 512 B RoPE) of
//     loads, 4 x 2 block barriers, 4 x ~96 wavefronts of stores per warp (~3K per block);
//   - A fragments (fp32 keys -> fp16, 64 LDS.64 per warp and tile): 4K wavefronts per block;
//   - B fragments (fp16, resident per tile, 64 LDS.64 per warp and tile): 4K;
//   - key stores (fp32, 32 STS.128 per warp): 1K;
//   - verification, tile by tile: T of tile t only knows the exact max of tiles < t, so ~1-2
//     warp-uniform rounds per tile (any lane with a candidate costs the whole warp a round),
//     each 32 x 3 LDS.128 (row, row, key) ~ 320 wavefronts: ~15K per block.
//   Total ~28K wavefronts per block and step against ~54K cycles measured (92 ms / (131K blocks
//   x 3 steps) at 1.755 GHz on 132 SMs): the verification and the rebuilds are ~2/3 of it.
//   Floor of the step's real work: the 256 x 256 x 128 approximate product (16.8 MFLOP, ~4K
//   mma.sync m16n8k16; with fp16 operands from shared memory at least the B fragments of all
//   rows per warp, 4K wavefronts per block) + ~1 exact 128-long dot per probe (the max row).
//   At 128K: 393K block-steps x 4K wavefronts / (132 SMs x 1.755 GHz) ~ 7 ms for stage 2, vs
//   92 ms measured; the tensor-core work is ~7 ms at ~600 dense TFLOP/s. So the stage is bound
//   by the overheads above, not by its arithmetic.
//
// This kernel (256 threads, 1 block per SM):
//   - ALL scoring rows built ONCE per block (FillRowTile, the very same fp32 values), kept in
//     shared memory as exact fp32 rows (row stride HD + 4: the verification's per-lane 16-byte
//     loads of 8 different rows spread over the bank quads) and as fp16 B fragments (the tile
//     kernel's kHalfB layout, one slab per 64-row group), with their norm terms.
//   - Keys never go through shared memory: each lane rotates its probe key (RotatedProbeKey, as
//     before) into fp16 pairs in registers, and the warp's A fragments are assembled by 8
//     shuffles per k16 step (a conflict-free transpose: in shuffle j lane (g, q4) receives
//     word q4 of probe 8 (q4 ^ j) + g; both sides permute 4 registers by an XOR, no dynamic
//     register indexing) and held in registers for all row groups of the step.
//   - One pass over the row groups per step: approx (mma), a running T (max of approx - B over
//     the groups so far), candidate masks (approx + B >= running T) and each group's largest
//     approx + B, per probe, into shared memory. T is final after the last group; a group whose
//     largest approx + B is below the final T holds no candidate (approx + B < T <= exact max),
//     so only the rest of its mask is verified. The row holding the exact max always has
//     approx + B >= exact >= final T >= running T: it is in its group's mask and its group
//     passes the check, exactly as in the tile kernel's argument.
//   - Verification once per step, over the candidates of all groups together (rounds =
//     max candidates of a lane, ~1-2, instead of ~1-2 per tile): the owner re-derives its exact
//     fp32 key into registers (a second RotatedProbeKey: an L2 hit for contiguous keys) and reads
//     the candidate rows' exact fp32 values from shared memory (1 LDS.128 per 4 elements).
//   - Fallbacks as the tile kernel: a key norm past kTcNormMax or non-finite -> every row; a
//     64-row group with such a row norm -> every row of that group (its rows never raise T:
//     their approx - B is -inf or NaN, which fmaxf skips).
//   No block barrier inside the descent (rows are read-only after the fill); warps run free.
//   Expected (not measured): per block and step ~4K (B) + ~2-3K (verification) + ~0.5K
//   (shuffles) wavefronts plus 1/3 of one fill, ~3x less than the tile kernel's ~28K.
//
// Shared memory: fp32 rows NR x (HD + 4) + fp16 fragments NR x HD / 2 words + norms, T, masks
// and group maxima (NR = 64 NG rows): 216 KB for HD 128 / NG 4 (H100: fits, 1 block per SM;
// A100's 163 KB does not: the host falls back to the tile kernel there), 110 KB for NG 2.
template <int HD, int NG>
struct TcResSmem {
  static constexpr int kThreads = 256;
  static constexpr int kMaxRows = NG * kTcRowTile;
  static constexpr int kRowStride = HD + 4;                  // floats per fp32 row
  static constexpr int kRows = 0;                            // [kMaxRows][kRowStride]
  static constexpr int kBh = kRows + kMaxRows * kRowStride;  // fp16 B fragments (words)
  static constexpr int kRowNorm = kBh + kMaxRows * HD / 2;   // [kMaxRows]
  static constexpr int kKeyNorm = kRowNorm + kMaxRows;       // [256]
  static constexpr int kT = kKeyNorm + kThreads;             // [256] final T per probe
  static constexpr int kGub = kT + kThreads;                 // [256][NG] max approx + B
  static constexpr int kMask = kGub + kThreads * NG;         // [256][NG] uint64
  static constexpr int kFloats = kMask + 2 * kThreads * NG;
  static constexpr int kBytes = kFloats * 4;
  static_assert(kRowStride % 4 == 0 && kBh % 4 == 0 && kMask % 2 == 0, "alignment");
};

// v[i] <- v[i ^ c] for c in 0..3 (two conditional swap levels; static register indices).
__device__ __forceinline__ void TcXorPermute4(uint32_t (&v)[4], int c) {
  if (c & 1) {
    uint32_t t = v[0];
    v[0] = v[1];
    v[1] = t;
    t = v[2];
    v[2] = v[3];
    v[3] = t;
  }
  if (c & 2) {
    uint32_t t = v[0];
    v[0] = v[2];
    v[2] = t;
    t = v[1];
    v[1] = v[3];
    v[3] = t;
  }
}

template <int HD, int NG>
__global__ void __launch_bounds__(256, 1)
    PrefillScoreResKernel(const StageArgs a, const PrefillArgs pa) {
  constexpr int THREADS = 256;
  constexpr int RT = kTcRowTile;
  constexpr int CPB = THREADS / 2;  // chunks per block
  constexpr int HALF = HD / 2;
  constexpr int KS = HD / 16;  // k16 steps
  constexpr int NT = RT / 8;   // n8 tiles per 64-row group
  using L = TcResSmem<HD, NG>;
  constexpr int SR = L::kRowStride;
  static_assert(RT == 64 && HD % 16 == 0 && NG >= 1 && NG <= 8, "layout");
  extern __shared__ __align__(16) float smem[];
  float* s_rows = smem + L::kRows;
  uint32_t* s_bh = reinterpret_cast<uint32_t*>(smem + L::kBh);
  float* s_rnorm = smem + L::kRowNorm;
  float* s_knorm = smem + L::kKeyNorm;
  float* s_t = smem + L::kT;
  float* s_gub = smem + L::kGub;
  unsigned long long* s_mask = reinterpret_cast<unsigned long long*>(smem + L::kMask);

  const int row = blockIdx.z, kvh = blockIdx.y;
  const StageInput in = LoadStageInput(a, row, kvh);
  if (!in.run || in.n <= a.keep || static_cast<int>(blockIdx.x) * CPB >= in.n) return;

  const RowQueries rq = RowRange(pa, row);
  const int stride = pa.stride_q;
  const int num_groups = (rq.qb - rq.qa + stride - 1) / stride;
  const int num_rows = num_groups * a.group;
  const int num_tiles = (num_rows + RT - 1) / RT;
  if (num_tiles > NG) __trap();  // the host sizes NG for the largest row count of the call

  const float kNegInf = -__int_as_float(0x7f800000);
  const float kNaN = __int_as_float(0x7fc00000);
  const float kFltMax = 3.402823466e38f;

  // ---- All rows, once: exact fp32 rows, fp16 B fragments and norm terms (NaN for padding
  // rows); bad_tiles bit t: group t has a non-finite or too large row norm (block-uniform).
  constexpr bool kBatchFill = RT * HD / 16 <= 2 * THREADS;
  int bad_tiles = 0;
  for (int tile = 0; tile < num_tiles; ++tile) {
    int bad = 0;
    auto norm = [&](int r, float ss) {
      const float term = TcNormTerm(ss);
      const bool valid = tile * RT + r < num_rows;
      s_rnorm[tile * RT + r] = valid ? term : kNaN;
      if (valid && !(term <= kFltMax)) bad = 1;
    };
    // Elements e0 .. e0 + 7 (e0 % 8 == 0) of row `local`: as the tile kernel's kHalfB fill, in
    // the slab of n8 tile (tile * RT + local) / 8.
    auto put = [&](int local, int e0, const float* o) {
      const int ks = e0 >> 4, j = (e0 >> 3) & 1;
      uint32_t* b = s_bh + ((tile * NT + (local >> 3)) * KS + ks) * 64 + j;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        b[2 * ((4 * (local & 7) + q) ^ (ks & 3))] = TcHalf2(make_float2(o[2 * q], o[2 * q + 1]));
      }
    };
    FillRowTile<HD, THREADS, RT, false, kBatchFill>(
        a, pa, rq, kvh, in.n, num_rows, tile, s_rows + tile * RT * SR, SR, norm,
        [&](int local, int i0, const float(&o1)[8], const float(&o2)[8]) {
          put(local, i0, o1);
          put(local, HALF + i0, o2);
        });
    if (__syncthreads_or(bad)) bad_tiles |= 1 << tile;  // also: every row visible to all
  }

  const int lane = threadIdx.x & 31;
  const int wbase = threadIdx.x - lane;  // the warp's first probe
  const int g = lane >> 2, q4 = lane & 3;
  const int my_c = lane >> 3;  // as an A-fragment source: lane = 8 my_c + g'
  ChunkDescent d(a, in, CPB);
  const int side = d.side, chunk = d.chunk;  // side 0 = left probe, 1 = right probe

  for (int it = 0; it < a.iterations; ++it) {
    d.Step(it);
    const int32_t probe = d.probe;
    const bool has = d.has;

    if (pa.prefetch_keys && d.descend && it + 1 < a.iterations && a.keys.source != kKeysTiered) {
      auto next_probe = [&](int32_t l, int32_t h) {
        const int32_t m = l + (h - l) / 2;
        return side == 0 ? l + (m - l) / 2 : m + (h - m) / 2;
      };
      if (d.mid - d.lo >= 2) TcPrefetchKey<HD>(a, kvh, next_probe(d.lo, d.mid));
      if (d.hi - d.mid >= 2) TcPrefetchKey<HD>(a, kvh, next_probe(d.mid, d.hi));
    }
    __syncwarp();  // the previous step's readers of this warp's norms, T, masks are done

    // 1. This lane's probe key, rotated, as fp16 pairs (word w = elements 2w, 2w + 1), and its
    // norm term (0 without a probe: its results are never used).
    uint32_t kh[HD / 2];
    if (has) {
      float s4[4] = {0.f, 0.f, 0.f, 0.f};
      RotatedProbeKey<HD>(a, kvh, probe, side, chunk, [&](int i4, float4 k1, float4 k2) {
        kh[2 * i4] = TcHalf2(make_float2(k1.x, k1.y));
        kh[2 * i4 + 1] = TcHalf2(make_float2(k1.z, k1.w));
        kh[HALF / 2 + 2 * i4] = TcHalf2(make_float2(k2.x, k2.y));
        kh[HALF / 2 + 2 * i4 + 1] = TcHalf2(make_float2(k2.z, k2.w));
        s4[0] = fmaf(k1.x, k1.x, fmaf(k1.y, k1.y, s4[0]));
        s4[1] = fmaf(k1.z, k1.z, fmaf(k1.w, k1.w, s4[1]));
        s4[2] = fmaf(k2.x, k2.x, fmaf(k2.y, k2.y, s4[2]));
        s4[3] = fmaf(k2.z, k2.z, fmaf(k2.w, k2.w, s4[3]));
      });
      s_knorm[threadIdx.x] = TcNormTerm((s4[0] + s4[1]) + (s4[2] + s4[3]));
    } else {
#pragma unroll
      for (int w = 0; w < HD / 2; ++w) kh[w] = 0u;
      s_knorm[threadIdx.x] = 0.f;
    }
    const bool warp_has = __any_sync(0xffffffffu, has);

    float dot = kNegInf;  // this thread's probe: exact max over the rows
    if (warp_has) {       // warp-uniform
      // 2. A fragments af[mt][ks][r] (probes wbase + 16 mt + {g, g + 8}, columns 16 ks +
      // {2 q4, 2 q4 + 8}), as the tile kernel's ah: fragment (mt, r) of lane (g, q4) is word
      // 8 ks + 4 (r >> 1) + q4 of lane 8 c + g, c = 2 mt + (r & 1). In shuffle j lane (g, q4)
      // reads lane 8 (q4 ^ j) + g, which sends its word base + (j ^ its c) = base + q4.
      uint32_t af[2][KS][4];
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2) {
          const int base = 8 * ks + 4 * h2;
          uint32_t v[4] = {kh[base], kh[base + 1], kh[base + 2], kh[base + 3]};
          TcXorPermute4(v, my_c);  // v[j] = word base + (j ^ my_c)
          uint32_t u[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) u[j] = __shfl_sync(0xffffffffu, v[j], 8 * (q4 ^ j) + g);
          TcXorPermute4(u, q4);  // u[c] = the word of combo c
#pragma unroll
          for (int c = 0; c < 4; ++c) af[c >> 1][ks][(c & 1) + 2 * h2] = u[c];
        }
      }
      __syncwarp();  // key norms visible to the warp

      // 3. Approx over every row group; running T, candidate masks and group maxima.
      float t_run[2][2] = {{kNegInf, kNegInf}, {kNegInf, kNegInf}};
      float kn[2][2];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h)
          kn[mt][h] = kTcDotBoundScale * s_knorm[wbase + 16 * mt + 8 * h + g];
      }
      for (int gi = 0; gi < num_tiles; ++gi) {
        float acc[2][NT][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;
          }
        }
        const uint32_t* bg = s_bh + gi * NT * KS * 64;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            const uint2 b =
                *reinterpret_cast<const uint2*>(bg + (nt * KS + ks) * 64 + 2 * (lane ^ (ks & 3)));
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) TcMma(acc[mt][nt], af[mt][ks], b.x, b.y);
          }
        }
        float rn[NT][2];  // this lane's rows' norm terms (NaN: padding row)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const float2 v = *reinterpret_cast<const float2*>(s_rnorm + gi * RT + 8 * nt + 2 * q4);
          rn[nt][0] = v.x;
          rn[nt][1] = v.y;
        }
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int p = wbase + 16 * mt + 8 * h + g;
            const float k_n = kn[mt][h];
            float lo4[NT], hi4[NT];  // max(approx - B), max(approx + B): trees (order-free)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              lo4[nt] = fmaxf(fmaf(-k_n, rn[nt][0], acc[mt][nt][2 * h]),
                              fmaf(-k_n, rn[nt][1], acc[mt][nt][2 * h + 1]));
              hi4[nt] = fmaxf(fmaf(k_n, rn[nt][0], acc[mt][nt][2 * h]),
                              fmaf(k_n, rn[nt][1], acc[mt][nt][2 * h + 1]));
            }
#pragma unroll
            for (int w = NT / 2; w >= 1; w /= 2) {
#pragma unroll
              for (int nt = 0; nt < w; ++nt) {
                lo4[nt] = fmaxf(lo4[nt], lo4[nt + w]);
                hi4[nt] = fmaxf(hi4[nt], hi4[nt + w]);
              }
            }
            float t = lo4[0], ub = hi4[0];
            t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, 1));
            t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, 2));
            ub = fmaxf(ub, __shfl_xor_sync(0xffffffffu, ub, 1));
            ub = fmaxf(ub, __shfl_xor_sync(0xffffffffu, ub, 2));
            t = fmaxf(t, t_run[mt][h]);
            t_run[mt][h] = t;
            uint32_t bits = 0;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
              for (int j = 0; j < 2; ++j) {
                if (fmaf(k_n, rn[nt][j], acc[mt][nt][2 * h + j]) >= t) bits |= 1u << (2 * nt + j);
              }
            }
            uint32_t w = bits << (16 * (q4 & 1));
            w |= __shfl_xor_sync(0xffffffffu, w, 1);
            const uint32_t w2 = __shfl_xor_sync(0xffffffffu, w, 2);
            if (q4 == 0) {
              s_mask[p * NG + gi] = w | (static_cast<unsigned long long>(w2) << 32);
              s_gub[p * NG + gi] = ub;
            }
          }
        }
      }
      if (q4 == 0) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) s_t[wbase + 16 * mt + 8 * h + g] = t_run[mt][h];
        }
      }
      __syncwarp();

      // 4. Verify. Candidate rows per group (bit b of a stored mask = lane-quad q4 = b >> 4's
      // row 8 ((b & 15) >> 1) + 2 q4 + (b & 1)); groups whose largest approx + B is below the
      // final T are skipped (a NaN maximum is never skipped).
      unsigned long long mm[NG];
      if (has) {
        const bool key_bad = !(s_knorm[threadIdx.x] <= kFltMax);
        const float tf = s_t[threadIdx.x];
#pragma unroll
        for (int gi = 0; gi < NG; ++gi) {
          mm[gi] = 0ull;
          if (gi < num_tiles) {
            const int rows_here = min(RT, num_rows - gi * RT);
            if (key_bad || ((bad_tiles >> gi) & 1)) {
              mm[gi] = rows_here == 64 ? ~0ull : (1ull << rows_here) - 1;
            } else if (!(s_gub[threadIdx.x * NG + gi] < tf)) {
              unsigned long long pm = s_mask[threadIdx.x * NG + gi];
              while (pm != 0ull) {
                const int b = __ffsll(static_cast<long long>(pm)) - 1;
                pm &= pm - 1;
                mm[gi] |= 1ull << (8 * ((b & 15) >> 1) + 2 * (b >> 4) + (b & 1));
              }
            }
          }
        }
      } else {
#pragma unroll
        for (int gi = 0; gi < NG; ++gi) mm[gi] = 0ull;
      }
      // The exact fp32 key (the very values whose fp16 roundings fed the filter).
      float kr[HD];
      if (has) {
        RotatedProbeKey<HD>(a, kvh, probe, side, chunk, [&](int i4, float4 k1, float4 k2) {
          kr[4 * i4] = k1.x;
          kr[4 * i4 + 1] = k1.y;
          kr[4 * i4 + 2] = k1.z;
          kr[4 * i4 + 3] = k1.w;
          kr[HALF + 4 * i4] = k2.x;
          kr[HALF + 4 * i4 + 1] = k2.y;
          kr[HALF + 4 * i4 + 2] = k2.z;
          kr[HALF + 4 * i4 + 3] = k2.w;
        });
      } else {
#pragma unroll
        for (int c = 0; c < HD; ++c) kr[c] = 0.f;
      }
      auto count = [&]() {
        int n = 0;
#pragma unroll
        for (int gi = 0; gi < NG; ++gi) n += __popcll(mm[gi]);
        return n;
      };
      auto take = [&]() {  // the next candidate row (lowest group, lowest row), or -1
        int r = -1;
#pragma unroll
        for (int gi = 0; gi < NG; ++gi) {
          if (r < 0 && mm[gi] != 0ull) {
            r = gi * RT + __ffsll(static_cast<long long>(mm[gi])) - 1;
            mm[gi] &= mm[gi] - 1;
          }
        }
        return r;
      };
      // Warp-uniform rounds (the enclosing branch is warp-uniform), one or two candidates per
      // lane each, as the tile kernel's verification; the order of the candidates does not
      // change the max (NaN never wins; -0 / +0 compare equal and end as +0).
      for (;;) {
        const int n = count();
        if (!__any_sync(0xffffffffu, n != 0)) break;
        const bool any_two = __any_sync(0xffffffffu, n >= 2);
        if (n == 0) continue;
        const int r0 = take();
        const bool two = n >= 2;
        const int r1 = two ? take() : r0;
        const float4* p0 = reinterpret_cast<const float4*>(s_rows + r0 * SR);
        const float4* p1 = reinterpret_cast<const float4*>(s_rows + r1 * SR);
        float x0 = 0.f, x1 = 0.f;
        if (any_two) {
#pragma unroll
          for (int c4 = 0; c4 < HD / 4; ++c4) {
            const float4 u = p0[c4], w = p1[c4];
            x0 = __fadd_rn(x0, __fmul_rn(u.x, kr[4 * c4]));
            x1 = __fadd_rn(x1, __fmul_rn(w.x, kr[4 * c4]));
            x0 = __fadd_rn(x0, __fmul_rn(u.y, kr[4 * c4 + 1]));
            x1 = __fadd_rn(x1, __fmul_rn(w.y, kr[4 * c4 + 1]));
            x0 = __fadd_rn(x0, __fmul_rn(u.z, kr[4 * c4 + 2]));
            x1 = __fadd_rn(x1, __fmul_rn(w.z, kr[4 * c4 + 2]));
            x0 = __fadd_rn(x0, __fmul_rn(u.w, kr[4 * c4 + 3]));
            x1 = __fadd_rn(x1, __fmul_rn(w.w, kr[4 * c4 + 3]));
          }
        } else {
#pragma unroll
          for (int c4 = 0; c4 < HD / 4; ++c4) {
            const float4 u = p0[c4];
            x0 = __fadd_rn(x0, __fmul_rn(u.x, kr[4 * c4]));
            x0 = __fadd_rn(x0, __fmul_rn(u.y, kr[4 * c4 + 1]));
            x0 = __fadd_rn(x0, __fmul_rn(u.z, kr[4 * c4 + 2]));
            x0 = __fadd_rn(x0, __fmul_rn(u.w, kr[4 * c4 + 3]));
          }
        }
        if (x0 > dot) dot = x0;  // NaN never wins
        if (two && x1 > dot) dot = x1;
      }
    }
    d.Decide(dot);
  }
  d.Store(a, static_cast<int64_t>(row) * a.num_kv_heads + kvh);
}

}  // namespace hipserve::kernels::hip_mask_internal
