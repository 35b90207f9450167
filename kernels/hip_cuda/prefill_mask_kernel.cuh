// Device code of the HiP prefill mask estimation (see prefill_mask.h for the contract). Reuses
// the decode building blocks of mask_estimation_kernel.cuh: StageArgs / LoadStageInput (a plan
// row plays the part of a decode "sequence" whose query sits at the row's last position, which
// gives the same candidate range), and SelectKernel unchanged. New here: the score kernel for
// many scoring rows, and two small bookkeeping kernels.
//
// Numerics mirror kernels/hip/mask_estimation_ref.cc (StageScorer) operation by operation: every
// product and sum is an explicit __fmul_rn / __fadd_rn / __fsub_rn / __fdiv_rn (no FMA
// contraction), each dot product is accumulated sequentially over head_dim by one thread, and
// each scoring row is summed over its queries in query order starting from +0.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/hip_cuda/mask_estimation_kernel.cuh"

namespace hipserve::kernels::hip_mask_internal {

// What a prefill stage needs beyond StageArgs.
struct PrefillArgs {
  const uint16_t* q;  // [num_q, num_heads, hd]
  int q_offset;
  int num_q;
  int block_q;
  int first_block;
  int stride_q;       // stride_q[s]
  int prefetch_keys;  // HipPrefillMaskGpuParams::prefetch_keys (filter kernel only)
};

// Chunk-local query range [qa, qb) (indices into q) of plan row `row`.
struct RowQueries {
  int qa, qb;
};

__device__ __forceinline__ RowQueries RowRange(const PrefillArgs& p, int row) {
  const int blk = p.first_block + row;
  RowQueries r;
  r.qa = max(p.q_offset, blk * p.block_q) - p.q_offset;
  r.qb = min(p.q_offset + p.num_q, (blk + 1) * p.block_q) - p.q_offset;
  return r;
}

// Pruning position of a query at real position `pos` when the stage input has n_chunks chunks.
__device__ __forceinline__ int PrefillQueryPosition(const StageArgs& a, int32_t pos, int n_chunks) {
  switch (a.pos_mode) {
    case kPosReal:
      return pos;
    case kPosRelative:
      return a.n_window + 1;
    default:
      return min(pos, n_chunks + a.n_window);
  }
}

// Per plan row: kv_len[row] = last query position + 1 (LoadStageInput's "sequence length").
__global__ void PrefillRowLengthsKernel(PrefillArgs p, int num_rows, int32_t* kv_len) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= num_rows) return;
  const RowQueries r = RowRange(p, row);
  kv_len[row] = p.q_offset + r.qb;
}

// Final block count per (row, KV head): the last stage's kept list without starts after the
// row's last query (sorted, so a prefix survives).
__global__ void PrefillFinalizeKernel(const int32_t* kv_len, const int32_t* starts,
                                      const int32_t* count, int stride, int lists, int num_kv_heads,
                                      int32_t* block_count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= lists) return;
  const int32_t last_pos = kv_len[i / num_kv_heads] - 1;
  const int32_t* s = starts + static_cast<int64_t>(i) * stride;
  int c = count[i];
  while (c > 0 && s[c - 1] > last_pos) --c;
  block_count[i] = c;
}

// Builds scoring rows [tile * RT, tile * RT + RT) of plan row `rq` into `rows` (row stride
// `row_stride` floats, a multiple of 4; rows past num_rows are zero); row index = group_row *
// group + head. Called by all THREADS threads of the block (no barrier inside). Shared by the
// exact and the tensor-core score kernels so that both see the very same fp32 rows. Each thread
// builds 8 consecutive elements of each half at a time (16-byte loads of q and of the RoPE row,
// all issued before the math, so a query costs one round of load latency, not eight); every
// element still gets exactly the reference's operations in the reference's order.
// kSwizzle: element c of tile row `local` is stored at column c ^ TcSwizzle(local) (see
// prefill_score_tc.cuh); the values are the same.
//
// Division by the group's query count: when the count is a power of two (1, 2, 4, ...: every
// stride_q of the presets) the quotient is computed as a product with its exact reciprocal,
// which is the same correctly rounded value (x / 2^j and x * 2^-j are the same real number, so
// round to the same float, subnormals and specials included); otherwise __fdiv_rn.
//
// Row norms (optional, `norm` non-null): norm(local, sum_sq) is called once per tile row by one
// lane, with the row's sum of squares over its final fp32 elements (fmaf, in an unspecified
// order: a norm used only for the filter's error bound, which allows any order). The item loop
// is warp-uniform for this (RT * PER_ROW is a multiple of THREADS; a row's items sit in
// PER_ROW consecutive lanes of one warp).
//
// Extra output (optional, `extra` non-null): extra(local, i0, o1, o2) is called for every item
// with its final elements [i0, i0 + 8) (o1) and [HALF + i0, HALF + i0 + 8) (o2) of tile row
// `local` (zeros for padding rows), e.g. to store them in another layout as well.
using FillHookNone = void (*)(int, float);
template <int HD, int THREADS, int RT, bool kSwizzle = false, bool kBatchLoads = false,
          typename Norm = FillHookNone, typename Extra = FillHookNone>
__device__ __forceinline__ void FillRowTile(const StageArgs& a, const PrefillArgs& pa,
                                            const RowQueries& rq, int kvh, int n_chunks,
                                            int num_rows, int tile, float* rows, int row_stride,
                                            Norm norm = nullptr, Extra extra = nullptr) {
  constexpr int HALF = HD / 2;
  constexpr int V = 8;               // elements of each half per item
  constexpr int PER_ROW = HALF / V;  // items per row
  static_assert(HALF % V == 0, "head_dim must be a multiple of 16");
  const int stride = pa.stride_q;
  const int64_t q_row = static_cast<int64_t>(a.num_heads) * HD;
  constexpr int ITEMS = (RT * PER_ROW + THREADS - 1) / THREADS;  // items per thread, at most
  // One query's loads for an item: q (both halves) and its RoPE row (cos | sin).
  struct QLoad {
    uint4 u1, u2;
    float4 c0, c1, s0, s1;
  };
  // qh: the item's q elements (head and i0 applied); i0: the item's first element.
  auto load = [&](const uint16_t* qh, int i0, int qi) {
    const int qpos = PrefillQueryPosition(a, pa.q_offset + qi, n_chunks);
    const float* cs = a.rope + static_cast<int64_t>(qpos) * HD + i0;
    QLoad l;
    l.u1 = __ldg(reinterpret_cast<const uint4*>(qh + qi * q_row));
    l.u2 = __ldg(reinterpret_cast<const uint4*>(qh + qi * q_row + HALF));
    l.c0 = __ldg(reinterpret_cast<const float4*>(cs));
    l.c1 = __ldg(reinterpret_cast<const float4*>(cs + 4));
    l.s0 = __ldg(reinterpret_cast<const float4*>(cs + HALF));
    l.s1 = __ldg(reinterpret_cast<const float4*>(cs + HALF + 4));
    return l;
  };
  auto apply = [&](const QLoad& l, float(&o1)[V], float(&o2)[V]) {
    float x1[V], x2[V];
    cuda_util::Bf16x8ToFloat(l.u1, x1);
    cuda_util::Bf16x8ToFloat(l.u2, x2);
    const float c[V] = {l.c0.x, l.c0.y, l.c0.z, l.c0.w, l.c1.x, l.c1.y, l.c1.z, l.c1.w};
    const float sn[V] = {l.s0.x, l.s0.y, l.s0.z, l.s0.w, l.s1.x, l.s1.y, l.s1.z, l.s1.w};
#pragma unroll
    for (int e = 0; e < V; ++e) {
      o1[e] = __fadd_rn(o1[e], __fsub_rn(__fmul_rn(x1[e], c[e]), __fmul_rn(x2[e], sn[e])));
      o2[e] = __fadd_rn(o2[e], __fadd_rn(__fmul_rn(x2[e], c[e]), __fmul_rn(x1[e], sn[e])));
    }
  };
  // kBatchLoads: the first query of every item of this thread is loaded before any is used
  // (one round of load latency per tile instead of one per item); the arithmetic and its order
  // are unchanged.
  QLoad pre[kBatchLoads ? ITEMS : 1];
  if constexpr (kBatchLoads) {
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
      const int item = threadIdx.x + k * THREADS;
      const int local = item / PER_ROW, i0 = (item % PER_ROW) * V;
      const int rr = tile * RT + local;
      if (item < RT * PER_ROW && rr < num_rows) {
        const int grp = rr / a.group, g = rr % a.group;
        pre[k] = load(pa.q + static_cast<int64_t>(kvh * a.group + g) * HD + i0, i0,
                      rq.qa + grp * stride);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < ITEMS; ++k) {
    const int item = threadIdx.x + k * THREADS;
    if (item >= RT * PER_ROW) break;  // only when THREADS does not divide the items (no hooks)
    const int local = item / PER_ROW, i0 = (item % PER_ROW) * V;
    const int rr = tile * RT + local;
    float o1[V], o2[V];
#pragma unroll
    for (int e = 0; e < V; ++e) o1[e] = o2[e] = 0.f;
    if (rr < num_rows) {
      const int grp = rr / a.group, g = rr % a.group;
      const int first = rq.qa + grp * stride, last = min(rq.qb, first + stride);
      const uint16_t* qh = pa.q + static_cast<int64_t>(kvh * a.group + g) * HD + i0;
      int qi = first;
      if constexpr (kBatchLoads) {
        apply(pre[k], o1, o2);
        ++qi;
      }
      for (; qi < last; ++qi) apply(load(qh, i0, qi), o1, o2);
      const int n_q = last - first;
      if ((n_q & (n_q - 1)) == 0) {  // power of two: exact reciprocal, same rounding
        const float inv = __fdiv_rn(1.f, static_cast<float>(n_q));
#pragma unroll
        for (int e = 0; e < V; ++e) {
          o1[e] = __fmul_rn(o1[e], inv);
          o2[e] = __fmul_rn(o2[e], inv);
        }
      } else {
        const float count = static_cast<float>(n_q);
#pragma unroll
        for (int e = 0; e < V; ++e) {
          o1[e] = __fdiv_rn(o1[e], count);
          o2[e] = __fdiv_rn(o2[e], count);
        }
      }
    }
    if constexpr (!std::is_same_v<Extra, FillHookNone>) extra(local, i0, o1, o2);
    if constexpr (!std::is_same_v<Norm, FillHookNone>) {
      static_assert((RT * PER_ROW) % THREADS == 0 && THREADS % PER_ROW == 0 && 32 % PER_ROW == 0,
                    "warp-uniform item loop, a row's items in one warp");
      float s2[2] = {0.f, 0.f};
#pragma unroll
      for (int e = 0; e < V; ++e) {
        s2[e & 1] = fmaf(o1[e], o1[e], fmaf(o2[e], o2[e], s2[e & 1]));
      }
      float ss = s2[0] + s2[1];
#pragma unroll
      for (int w = 1; w < PER_ROW; w *= 2) ss += __shfl_xor_sync(0xffffffffu, ss, w);
      if (item % PER_ROW == 0) norm(local, ss);
    }
    float* out = rows + local * row_stride;
    const int sw = kSwizzle ? (local & 4) : 0;  // flips the 16-byte granule (i0 % 8 == 0)
    *reinterpret_cast<float4*>(out + (i0 ^ sw)) = make_float4(o1[0], o1[1], o1[2], o1[3]);
    *reinterpret_cast<float4*>(out + ((i0 + 4) ^ sw)) = make_float4(o1[4], o1[5], o1[6], o1[7]);
    *reinterpret_cast<float4*>(out + ((HALF + i0) ^ sw)) = make_float4(o2[0], o2[1], o2[2], o2[3]);
    *reinterpret_cast<float4*>(out + ((HALF + i0 + 4) ^ sw)) =
        make_float4(o2[4], o2[5], o2[6], o2[7]);
  }
}

// Loads the probe key of token `probe` (KV head kvh, batch 1) and rotates it at the pruning
// position of (probe, side, chunk); calls emit(i4, k[4 i4 .. 4 i4 + 3], k[HALF + 4 i4 ..]) with
// float4s of the rotated fp32 key, i4 < HD / 8, in ascending order.
template <int HD, typename Emit>
__device__ __forceinline__ void RotatedProbeKey(const StageArgs& a, int kvh, int32_t probe,
                                                int side, int chunk, Emit&& emit) {
  constexpr int HALF = HD / 2;
  int rpos;
  switch (a.pos_mode) {
    case kPosReal:
      rpos = probe;
      break;
    case kPosRelative:
      rpos = side;
      break;
    default:
      rpos = chunk;
      break;
  }
  const float* cs = a.rope + static_cast<int64_t>(rpos) * HD;
  // Batch 1: the tiered list of KV head kvh is kvh; contiguous keys start at row 0.
  uint32_t kw[HD / 2];
  const TieredKvSource& ts = a.keys.tiered;  // shared tables only (entries: decode-only)
  const kv_access::TieredRows rows{ts.slot_table + kvh * ts.slot_stride,
                                   ts.cold_pages + kvh * ts.page_stride};
  LoadProbeKey<HD>(a.keys, rows, static_cast<int64_t>(probe) * a.num_kv_heads + kvh, probe, kw);
  float x[HD];
#pragma unroll
  for (int v = 0; v < HD / 8; ++v) {
    cuda_util::Bf16x8ToFloat(make_uint4(kw[4 * v], kw[4 * v + 1], kw[4 * v + 2], kw[4 * v + 3]),
                             x + 8 * v);
  }
#pragma unroll
  for (int i4 = 0; i4 < HALF / 4; ++i4) {
    const float4 cv = __ldg(reinterpret_cast<const float4*>(cs) + i4);
    const float4 sv = __ldg(reinterpret_cast<const float4*>(cs + HALF) + i4);
    const float cc[4] = {cv.x, cv.y, cv.z, cv.w}, ss[4] = {sv.x, sv.y, sv.z, sv.w};
    float k1[4], k2[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int i = 4 * i4 + e;
      k1[e] = __fsub_rn(__fmul_rn(x[i], cc[e]), __fmul_rn(x[i + HALF], ss[e]));
      k2[e] = __fadd_rn(__fmul_rn(x[i + HALF], cc[e]), __fmul_rn(x[i], ss[e]));
    }
    emit(i4, make_float4(k1[0], k1[1], k1[2], k1[3]), make_float4(k2[0], k2[1], k2[2], k2[3]));
  }
}

// Scores every chunk of the stage input of (row = blockIdx.z, kvh = blockIdx.y). Two threads per
// chunk (lane parity: 0 = left probe, 1 = right probe). Each thread rotates its probe key into
// fp32 registers once per descent step and dots it with every scoring row; the rows live in
// shared memory in tiles of RT rows (every thread of a warp reads the same row element:
// broadcast), built from q by the whole block. Rows are built once when they fit in one tile,
// else per tile and step. Four rows at a time give four independent sequential sums.
// All loops and barriers are block-uniform.
template <int HD, int THREADS, int RT>
__global__ void __launch_bounds__(THREADS)
    PrefillScoreKernel(const StageArgs a, const PrefillArgs pa) {
  constexpr int CPB = THREADS / 2;  // chunks per block
  constexpr int HALF = HD / 2;
  static_assert(RT % 4 == 0, "rows are scored four at a time");
  __shared__ __align__(16) float s_rows[RT][HD];

  const int row = blockIdx.z, kvh = blockIdx.y;
  const StageInput in = LoadStageInput(a, row, kvh);
  if (!in.run || in.n <= a.keep || static_cast<int>(blockIdx.x) * CPB >= in.n) return;

  const RowQueries rq = RowRange(pa, row);
  const int stride = pa.stride_q;
  const int num_groups = (rq.qb - rq.qa + stride - 1) / stride;
  const int num_rows = num_groups * a.group;
  const int num_tiles = (num_rows + RT - 1) / RT;

  // Scoring rows [tile * RT, tile * RT + RT) into s_rows; row index = group_row * group + head.
  auto fill_tile = [&](int tile) {
    FillRowTile<HD, THREADS, RT>(a, pa, rq, kvh, in.n, num_rows, tile, &s_rows[0][0], HD);
  };

  ChunkDescent d(a, in, CPB);
  const int side = d.side, chunk = d.chunk;  // side 0 = left probe, 1 = right probe
  const float kNegInf = -__int_as_float(0x7f800000);

  for (int it = 0; it < a.iterations; ++it) {
    d.Step(it);
    const int32_t probe = d.probe;
    const bool has = d.has;
    float kr[HD];  // the probe key, rotated, fp32
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
    }
    float dot = kNegInf;
    for (int tile = 0; tile < num_tiles; ++tile) {
      if (num_tiles > 1 || it == 0) {
        __syncthreads();  // previous readers of s_rows are done
        fill_tile(tile);
        __syncthreads();
      }
      if (has) {
        const int rows_here = min(RT, num_rows - tile * RT);
        for (int r = 0; r < rows_here; r += 4) {
          float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
          for (int c4 = 0; c4 < HD / 4; ++c4) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const float4 qv = *reinterpret_cast<const float4*>(&s_rows[r + j][4 * c4]);
              acc[j] = __fadd_rn(acc[j], __fmul_rn(qv.x, kr[4 * c4]));
              acc[j] = __fadd_rn(acc[j], __fmul_rn(qv.y, kr[4 * c4 + 1]));
              acc[j] = __fadd_rn(acc[j], __fmul_rn(qv.z, kr[4 * c4 + 2]));
              acc[j] = __fadd_rn(acc[j], __fmul_rn(qv.w, kr[4 * c4 + 3]));
            }
          }
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            if (r + j < rows_here && acc[j] > dot) dot = acc[j];  // NaN never wins
          }
        }
      }
    }
    d.Decide(dot);
  }
  d.Store(a, static_cast<int64_t>(row) * a.num_kv_heads + kvh);
}

}  // namespace hipserve::kernels::hip_mask_internal
