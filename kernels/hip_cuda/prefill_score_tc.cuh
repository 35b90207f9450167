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

}  // namespace hipserve::kernels::hip_mask_internal
