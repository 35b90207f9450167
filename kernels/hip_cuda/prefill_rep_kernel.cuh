// Device code of the HiP PREFILL mask's stage representatives other than probes (page_bound,
// block_means, exact: kernels/hip/mask_estimation.h, "Stage-1 representatives" and "Later
// stages"), for 64-query rows (see prefill_mask.h for the contract). The probes stages keep their
// kernels (prefill_mask_kernel.cuh, prefill_score_tc.cuh); this file serves the other options.
//
// A chunk's score is the max, over its units and over the row's scoring rows, of one value per
// (unit, row):
//   exact keys (kRepExact) and the open page's keys (page bound): unit = a key rotated at its
//       scoring position (KeyScoringPosition); value = row . key;
//   block means (kRepBlockMeans): unit = the block's mean key (fp32 sum in key order, then /
//       count) rotated at its middle key's scoring position; value = row . mean;
//   full pages (kRepPageBound), aligned to absolute positions, summarised on the fly from the keys
//       (element-wise min / max in key order, std::min / std::max's comparisons):
//       kRelative:     value = sum_c max(r_c * max_c, r_c * min_c)                  (PageBound)
//       kChunkIndexed: the same with r = RotateInverse(row, chunk index), formed per (row, unit)
//       kReal:         value = sum_{c < half} |r pair c| * |(M_c, M_{c+half})|       (any rotation)
//                      with both pair norms computed once per row / unit.
// Every value is the reference's: sequential fp32 sums over head_dim with no contraction
// (__fmul_rn / __fadd_rn), the reference's operand order where it matters; the max over units and
// rows is order-free (NaN never wins; -0 and +0 merge in the stored + 0), so the chunk scores,
// hence the kept lists, equal EstimateMaskRef's bit for bit.
//
// Layout: one block of 256 threads per (CPB chunks, KV head, plan row). The block's units (CPB
// chunks x UPC unit slots each, a slot being empty where a chunk has fewer units) go through
// shared memory 64 at a time; the scoring rows too, 64 at a time (FillRowTile, the probes kernels'
// row builder, so they are the very same fp32 rows). Each thread owns a 4 x 4 micro-tile (units
// ut + 16 i, rows rt + 16 j) of 16 sequential accumulators that read float4s of both from shared
// memory (rows at stride HD + 4: conflict-free; units: broadcast within a half warp). Rows are
// rebuilt per unit tile when they span several tiles.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/hip_cuda/mask_estimation_kernel.cuh"
#include "kernels/hip_cuda/prefill_mask_kernel.cuh"

namespace hipserve::kernels::hip_mask_internal {

// What the units of a launch are.
enum PrefillUnitKind : int {
  kUnitKeys = 0,      // every key of the chunk (exact)
  kUnitMeans = 1,     // blocks of mean_size keys from the chunk start
  kUnitPages = 2,     // full pages of page_size keys overlapping the chunk
  kUnitOpenKeys = 3,  // the keys of the chunk's open last page (merged into the pages' score)
};

// How a (unit, row) value is formed (the kernel's template argument).
enum PrefillRepCompute : int {
  kCmpDot = 0,        // row . unit over head_dim
  kCmpBox = 1,        // PageBound(row, min, max)
  kCmpBoxUnrot = 2,   // PageBound(RotateInverse(row, chunk index), min, max)
  kCmpPairNorms = 3,  // PageBoundAnyRotation: row pair norms . unit pair norms over head_dim / 2
};

struct PrefillRepArgs {
  int kind;       // PrefillUnitKind
  int upc;        // unit slots per chunk
  int cpb;        // chunks per block (<= kPrefillRepMaxCpb)
  int page_size;  // kUnitPages / kUnitOpenKeys
  int mean_size;  // kUnitMeans
  int num_kv;     // keys of the sequence: a page ending past it is open (the reference's num_kv)
};

inline constexpr int kPrefillRepThreads = 256;
inline constexpr int kPrefillRepUnits = 64;  // units per shared-memory tile
inline constexpr int kPrefillRepRows = 64;   // scoring rows per shared-memory tile
inline constexpr int kPrefillRepMaxCpb = 128;

// Dynamic shared memory of PrefillRepScoreKernel<HD, C>: the row tile and 1 (dot, pair norms),
// 2 (min, max) or 3 (min, max, cos | -sin) unit arrays, each [64][HD + 4] fp32.
template <int HD, int C>
struct PrefillRepSmem {
  static constexpr int kStride = HD + 4;
  static constexpr int kUnitArrays = C == kCmpBoxUnrot ? 3 : (C == kCmpBox ? 2 : 1);
  static constexpr int kBytes = (kPrefillRepRows + kUnitArrays * kPrefillRepUnits) * kStride *
                                static_cast<int>(sizeof(float));
};

__device__ __forceinline__ float FromOrderKey(uint32_t u) {
  return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

template <int HD, int C>
__global__ void __launch_bounds__(kPrefillRepThreads)
    PrefillRepScoreKernel(const StageArgs a, const PrefillArgs pa, const PrefillRepArgs ra) {
  constexpr int HALF = HD / 2;
  constexpr int RS = PrefillRepSmem<HD, C>::kStride;
  constexpr int UT = kPrefillRepUnits, RT = kPrefillRepRows;
  constexpr int P8 = HALF / 8;  // (unit, 8 pairs) items per unit
  extern __shared__ __align__(16) float rep_smem[];
  float* s_rows = rep_smem;        // [RT][RS]
  float* s_u0 = s_rows + RT * RS;  // [UT][RS]: rotated vector, min, or pair norms
  float* s_u1 = s_u0 + UT * RS;    // [UT][RS]: max (boxes)
  float* s_u2 = s_u1 + UT * RS;    // [UT][RS]: cos | -sin of the unit's chunk index (kCmpBoxUnrot)
  __shared__ int s_uchunk[UT];     // the unit's chunk (block-local), -1 = empty slot
  __shared__ uint32_t s_cbest[kPrefillRepMaxCpb];

  const int row = blockIdx.z, kvh = blockIdx.y;
  const StageInput in = LoadStageInput(a, row, kvh);
  const int c0 = static_cast<int>(blockIdx.x) * ra.cpb;
  if (!in.run || in.n <= a.keep || c0 >= in.n) return;
  const int cpb_here = min(ra.cpb, in.n - c0);
  const int n_units = cpb_here * ra.upc;

  const RowQueries rq = RowRange(pa, row);
  const int num_rows = (rq.qb - rq.qa + pa.stride_q - 1) / pa.stride_q * a.group;
  const int num_row_tiles = (num_rows + RT - 1) / RT;
  const int tid = static_cast<int>(threadIdx.x);
  const int rt = tid % 16, ut = tid / 16;
  const TieredKvSource& ts = a.keys.tiered;  // batch 1: list kvh holds KV head kvh
  const kv_access::TieredRows trows =
      a.keys.source == kKeysTiered ? kv_access::TieredRows{ts.slot_table + kvh * ts.slot_stride,
                                                           ts.cold_pages + kvh * ts.page_stride}
                                   : kv_access::TieredRows{nullptr, nullptr};
  const float kNegInf = -__int_as_float(0x7f800000);

  for (int i = tid; i < cpb_here; i += kPrefillRepThreads) s_cbest[i] = OrderKey(kNegInf);

  // One item: unit `ul` of the tile starting at unit u0, pairs [8 p8, 8 p8 + 8) (elements
  // [8 p8, 8 p8 + 8) and [HALF + 8 p8, HALF + 8 p8 + 8)).
  auto fill_item = [&](int u0, int ul, int p8) {
    const int U = u0 + ul;
    const int cl = U / ra.upc, j = U % ra.upc;
    const int i0 = 8 * p8;
    float o1[8], o2[8], x1[8], x2[8];  // first / second half: vector or min; max
#pragma unroll
    for (int e = 0; e < 8; ++e) o1[e] = o2[e] = x1[e] = x2[e] = 0.f;
    int chunk_local = -1;
    int32_t chunk = 0;
    if (U < n_units) {
      chunk = c0 + cl;
      const int32_t lo = in.Start(a, chunk);
      const int32_t hi = min(lo + a.chunk_size, in.range_end);
      int32_t first = 0;
      int count = 0;
      int32_t rpos_key = 0;  // dot units: the key whose scoring position rotates the vector
      switch (ra.kind) {
        case kUnitKeys:
          first = lo + j;
          count = first < hi ? 1 : 0;
          rpos_key = first;
          break;
        case kUnitMeans:
          first = lo + j * ra.mean_size;
          count = first < hi ? min(ra.mean_size, hi - first) : 0;
          rpos_key = first + (count - 1) / 2;
          break;
        case kUnitPages: {
          const int g = ra.page_size;
          first = (lo / g + j) * g;
          count = first < hi && first + g <= ra.num_kv ? g : 0;
          break;
        }
        default: {  // kUnitOpenKeys
          const int g = ra.page_size;
          const int32_t last_page = (hi - 1) / g * g;
          first = max(lo, last_page) + j;
          count = last_page + g > ra.num_kv && first < hi ? 1 : 0;
          rpos_key = first;
          break;
        }
      }
      if (count > 0) {
        chunk_local = cl;
        if (ra.kind == kUnitKeys || ra.kind == kUnitOpenKeys) {  // the key itself
          const int64_t key_row = static_cast<int64_t>(first) * a.num_kv_heads + kvh;
          LoadKeyOctet<HD>(a.keys, trows, key_row, first, i0, o1);
          LoadKeyOctet<HD>(a.keys, trows, key_row, first, HALF + i0, o2);
        } else {
          const bool pages = ra.kind == kUnitPages;
#pragma unroll 2
          for (int t = 0; t < count; ++t) {
            const int64_t key_row = static_cast<int64_t>(first + t) * a.num_kv_heads + kvh;
            float f1[8], f2[8];
            LoadKeyOctet<HD>(a.keys, trows, key_row, first + t, i0, f1);
            LoadKeyOctet<HD>(a.keys, trows, key_row, first + t, HALF + i0, f2);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              if (!pages) {  // BlockMeanKey: fp32 sum in key order from +0
                o1[e] = __fadd_rn(o1[e], f1[e]);
                o2[e] = __fadd_rn(o2[e], f2[e]);
              } else if (t == 0) {
                o1[e] = x1[e] = f1[e];
                o2[e] = x2[e] = f2[e];
              } else {
                o1[e] = f1[e] < o1[e] ? f1[e] : o1[e];  // std::min(mn, k)
                o2[e] = f2[e] < o2[e] ? f2[e] : o2[e];
                x1[e] = x1[e] < f1[e] ? f1[e] : x1[e];  // std::max(mx, k)
                x2[e] = x2[e] < f2[e] ? f2[e] : x2[e];
              }
            }
          }
          if (!pages) {  // then / count
            const float n = static_cast<float>(count);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              o1[e] = __fdiv_rn(o1[e], n);
              o2[e] = __fdiv_rn(o2[e], n);
            }
          }
        }
        if (ra.kind != kUnitPages) {
          // Rotate at the scoring position (RopeTable::Rotate / RotatedProbeKey).
          const float* cs =
              a.rope + static_cast<int64_t>(KeyScoringPosition(a, rpos_key, chunk)) * HD;
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const float cv = __ldg(cs + i0 + e), sv = __ldg(cs + HALF + i0 + e);
            const float k1 = __fsub_rn(__fmul_rn(o1[e], cv), __fmul_rn(o2[e], sv));
            const float k2 = __fadd_rn(__fmul_rn(o2[e], cv), __fmul_rn(o1[e], sv));
            o1[e] = k1;
            o2[e] = k2;
          }
        } else if (C == kCmpPairNorms) {  // |(M_c, M_{c+half})|, M = max(|min|, |max|)
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const float m1 = fabsf(o1[e]) < fabsf(x1[e]) ? fabsf(x1[e]) : fabsf(o1[e]);
            const float m2 = fabsf(o2[e]) < fabsf(x2[e]) ? fabsf(x2[e]) : fabsf(o2[e]);
            o1[e] = __fsqrt_rn(__fadd_rn(__fmul_rn(m1, m1), __fmul_rn(m2, m2)));
            o2[e] = 0.f;
          }
        }
      }
    }
    float* u0p = s_u0 + ul * RS;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      u0p[i0 + e] = o1[e];
      u0p[HALF + i0 + e] = o2[e];
    }
    if constexpr (C == kCmpBox || C == kCmpBoxUnrot) {
      float* u1p = s_u1 + ul * RS;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        u1p[i0 + e] = x1[e];
        u1p[HALF + i0 + e] = x2[e];
      }
    }
    if constexpr (C == kCmpBoxUnrot) {  // RotateInverse's cos and negated sine of the chunk index
      float* u2p = s_u2 + ul * RS;
      const float* cs = a.rope + static_cast<int64_t>(chunk) * HD;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        u2p[i0 + e] = chunk_local >= 0 ? __ldg(cs + i0 + e) : 0.f;
        u2p[HALF + i0 + e] = chunk_local >= 0 ? -__ldg(cs + HALF + i0 + e) : 0.f;
      }
    }
    if (p8 == 0) s_uchunk[ul] = chunk_local;
  };

  for (int u0 = 0; u0 < n_units; u0 += UT) {  // block-uniform
    __syncthreads();  // the previous tile's readers of s_u*, s_uchunk and s_rows are done
    for (int item = tid; item < UT * P8; item += kPrefillRepThreads) {
      fill_item(u0, item / P8, item % P8);
    }
    float best[4] = {kNegInf, kNegInf, kNegInf, kNegInf};
    for (int tile = 0; tile < num_row_tiles; ++tile) {
      if (num_row_tiles > 1 || u0 == 0) {
        __syncthreads();  // readers of s_rows are done
        FillRowTile<HD, kPrefillRepThreads, RT>(a, pa, rq, kvh, in.n, num_rows, tile, s_rows, RS);
        if constexpr (C == kCmpPairNorms) {  // row pair norms |(r_c, r_{c+half})| into [0, half)
          __syncthreads();
          for (int e = tid; e < RT * HALF; e += kPrefillRepThreads) {
            float* r = s_rows + (e / HALF) * RS;
            const int c = e % HALF;
            r[c] =
                __fsqrt_rn(__fadd_rn(__fmul_rn(r[c], r[c]), __fmul_rn(r[c + HALF], r[c + HALF])));
          }
        }
      }
      __syncthreads();
      float acc[4][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
      }
      if constexpr (C == kCmpBoxUnrot) {
#pragma unroll
        for (int pass = 0; pass < 2; ++pass) {
#pragma unroll 2
          for (int c4 = 0; c4 < HALF / 4; ++c4) {
            float ra4[4][4], rb4[4][4], cv[4][4], sv[4][4], mn[4][4], mx[4][4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const float* rp = s_rows + (rt + 16 * j) * RS + 4 * c4;
              *reinterpret_cast<float4*>(ra4[j]) = *reinterpret_cast<const float4*>(rp);
              *reinterpret_cast<float4*>(rb4[j]) = *reinterpret_cast<const float4*>(rp + HALF);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const int off = (ut + 16 * i) * RS;
              *reinterpret_cast<float4*>(cv[i]) =
                  *reinterpret_cast<const float4*>(s_u2 + off + 4 * c4);
              *reinterpret_cast<float4*>(sv[i]) =
                  *reinterpret_cast<const float4*>(s_u2 + off + HALF + 4 * c4);
              *reinterpret_cast<float4*>(mn[i]) =
                  *reinterpret_cast<const float4*>(s_u0 + off + pass * HALF + 4 * c4);
              *reinterpret_cast<float4*>(mx[i]) =
                  *reinterpret_cast<const float4*>(s_u1 + off + pass * HALF + 4 * c4);
            }
#pragma unroll
            for (int e = 0; e < 4; ++e) {
#pragma unroll
              for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                  const float q = pass == 0 ? __fsub_rn(__fmul_rn(ra4[j][e], cv[i][e]),
                                                        __fmul_rn(rb4[j][e], sv[i][e]))
                                            : __fadd_rn(__fmul_rn(rb4[j][e], cv[i][e]),
                                                        __fmul_rn(ra4[j][e], sv[i][e]));
                  const float hi_t = __fmul_rn(q, mx[i][e]), lo_t = __fmul_rn(q, mn[i][e]);
                  acc[i][j] = __fadd_rn(acc[i][j], hi_t < lo_t ? lo_t : hi_t);  // std::max
                }
              }
            }
          }
        }
      } else {
        constexpr int L = C == kCmpPairNorms ? HALF : HD;
#pragma unroll 2
        for (int c4 = 0; c4 < L / 4; ++c4) {
          float r4[4][4], u4[4][4], x4[4][4];
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            *reinterpret_cast<float4*>(r4[j]) =
                *reinterpret_cast<const float4*>(s_rows + (rt + 16 * j) * RS + 4 * c4);
          }
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int off = (ut + 16 * i) * RS + 4 * c4;
            *reinterpret_cast<float4*>(u4[i]) = *reinterpret_cast<const float4*>(s_u0 + off);
            if constexpr (C == kCmpBox) {
              *reinterpret_cast<float4*>(x4[i]) = *reinterpret_cast<const float4*>(s_u1 + off);
            }
          }
#pragma unroll
          for (int e = 0; e < 4; ++e) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
              for (int j = 0; j < 4; ++j) {
                if constexpr (C == kCmpBox) {
                  const float hi_t = __fmul_rn(r4[j][e], x4[i][e]);
                  const float lo_t = __fmul_rn(r4[j][e], u4[i][e]);
                  acc[i][j] = __fadd_rn(acc[i][j], hi_t < lo_t ? lo_t : hi_t);  // std::max
                } else {
                  acc[i][j] = __fadd_rn(acc[i][j], __fmul_rn(r4[j][e], u4[i][e]));
                }
              }
            }
          }
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (tile * RT + rt + 16 * j < num_rows) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            if (acc[i][j] > best[i]) best[i] = acc[i][j];  // NaN never wins
          }
        }
      }
    }
    // Max over the 16 row lanes of each unit (a half warp), then into the unit's chunk.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int o = 8; o >= 1; o >>= 1) {
        best[i] = fmaxf(best[i], __shfl_xor_sync(0xffffffffu, best[i], o));
      }
      const int cl = s_uchunk[ut + 16 * i];
      if (rt == 0 && cl >= 0) atomicMax(&s_cbest[cl], OrderKey(best[i]));
    }
  }
  __syncthreads();
  const int64_t list = static_cast<int64_t>(row) * a.num_kv_heads + kvh;
  for (int i = tid; i < cpb_here; i += kPrefillRepThreads) {
    float f = FromOrderKey(s_cbest[i]);
    float* out = a.scores + list * a.score_stride + c0 + i;
    if (ra.kind == kUnitOpenKeys) {  // merge into the full pages' score
      const float have = *out;
      if (have > f) f = have;
    }
    *out = __fadd_rn(f, 0.f);  // -0 -> +0
  }
}

}  // namespace hipserve::kernels::hip_mask_internal
