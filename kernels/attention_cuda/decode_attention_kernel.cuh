// Device code for dense and block-sparse (HiP BSA) decode attention; see decode_attention.h for
// the contract. Included only by decode_attention.cu.
//
// Work split. One thread block (kThreads threads) per (partition, KV head, sequence) handles
// all query heads of the KV head's GQA group, so each K/V row is read from memory once per
// group. Inside the block a "slot" of HD/8 consecutive lanes owns one key at a time: each lane
// holds 8 of the key's dims (one 16-byte load for K, one for V), the dot products are reduced
// across the slot with xor-shuffles, and every lane keeps an online softmax (running max m,
// running sum l, fp32 accumulator for its 8 dims) per query head. A slot takes kU consecutive
// keys per step (all loads issued before the first use), and the block's slots cover
// consecutive keys, so one block step reads one contiguous run of rows. At the end the slots
// are merged through shared memory; with one partition the block writes the bf16 output,
// otherwise an unnormalised partial (acc, m, l) that MergeKernel combines by log-sum-exp.
// Scores live in the log2 domain (q is pre-scaled by scale * log2(e)), so exp is one ex2.
//
// The K/V source is a template parameter (KvSrc, decode_dispatch.cuh): contiguous bf16 rows,
// contiguous fp8 e5m2 rows (8-byte loads per lane, decoded exactly in registers), or, BSA only,
// tiered reads (each key through a slot table: bank row on the GPU, bf16 or fp8 by a
// block-uniform flag, or the fp8 cold page in mapped host memory; kv_access.cuh). So the
// contiguous paths carry no per-key source branches. BSA only, block-uniform option: in-kernel
// RoPE from a device table (the query at T - 1, every key at the position BsaKeysForQuery gives
// it); the kernel branches on it once and runs a key loop compiled with or without it.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention_cuda/decode_dispatch.cuh"
#include "kernels/attention_cuda/kv_access.cuh"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::decode_attention_internal {

inline constexpr int kThreads = 128;
inline constexpr int kMergeThreads = 128;
inline constexpr float kNegInf = -__builtin_huge_valf();

struct KernelArgs {
  const uint16_t* q;
  const uint8_t* k;  // elements of the kernel's KV type
  const uint8_t* v;
  uint16_t* out;
  const int64_t* kv_start;
  const int32_t* kv_len;
  int num_heads;
  int num_kv_heads;
  int group;
  float scale_log2;  // softmax scale * log2(e)
  int num_splits;
  int chunk;      // logical keys per partition (multiple of 32)
  float* ws_acc;  // [batch, num_heads, num_splits, HD]
  float2* ws_ml;  // [batch, num_heads, num_splits]: (max, sum) in the log2 domain
  // BSA only.
  const int32_t* block_starts;
  const int32_t* block_count;
  int max_blocks;
  int n_sink;
  int n_window;
  int block_smem;      // ints of dynamic shared memory for the block list
  const float* rope;   // null: keys as stored; else [positions][HD] fp32 (cos | sin)
  bool extend;         // rope: streaming positions for sink + blocks (HIP.md 5)
  bool bank_fp8;       // tiered: bank rows are fp8 e5m2 (else bf16)
  TieredKvSource src;  // KvSrc::kTiered: keys / values from here, not k / v / kv_start
};

__device__ __forceinline__ float Ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Keys per slot step (KU) and the register budget it needs. Dense: 4 keys (2 for wide groups)
// with 4 resident blocks per SM (<= 128 registers). BSA, group <= 4: 8 keys with 2 blocks per
// SM (<= 255 registers: few (sequence, KV head) pairs, short lists, latency-bound: fewer, longer
// steps) or 4 keys with 3 blocks per SM (<= 168 registers; large batches: more warps hide the
// latency of scattered rows). Wide groups: 2 keys, 2 blocks per SM.
__host__ __device__ constexpr int MinBlocksPerSm(int maxg, bool bsa, int ku) {
  return maxg <= 4 && ku <= 4 ? (bsa ? 3 : 4) : 2;
}

// x (this lane's 8 dims of a head_dim vector, HF rotate_half layout) rotated by the RoPE table
// row `cs` (cos at [0, HD/2), sin at [HD/2, HD)). The partner dims (i +- HD/2) sit HD/16 lanes
// away. Same operation order as RopeTable::Rotate, without FMA contraction.
template <int HD>
__device__ __forceinline__ void Rotate8(float (&x)[8], const float* row, int sub) {
  constexpr int kHalfLanes = HD / 16;
  const bool upper = sub >= kHalfLanes;
  const float* cs = row + (sub % kHalfLanes) * 8;
  const float4 c0 = __ldg(reinterpret_cast<const float4*>(cs));
  const float4 c1 = __ldg(reinterpret_cast<const float4*>(cs + 4));
  const float4 s0 = __ldg(reinterpret_cast<const float4*>(cs + HD / 2));
  const float4 s1 = __ldg(reinterpret_cast<const float4*>(cs + HD / 2 + 4));
  const float c[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
  const float sn[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
  float p[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) p[j] = __shfl_xor_sync(0xffffffffu, x[j], kHalfLanes);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float xc = __fmul_rn(x[j], c[j]);
    const float ps = __fmul_rn(p[j], sn[j]);
    x[j] = upper ? __fadd_rn(xc, ps) : __fsub_rn(xc, ps);
  }
}

template <int HD, int MAXG, bool BSA, KvSrc SRC, int KU>
__global__ void __launch_bounds__(kThreads, MinBlocksPerSm(MAXG, BSA, KU))
    DecodeKernel(const KernelArgs a) {
  namespace kva = kv_access;
  static_assert(BSA || SRC != KvSrc::kTiered, "tiered reads are BSA only");
  constexpr bool kTiered = SRC == KvSrc::kTiered;
  constexpr bool FP8 = SRC == KvSrc::kFp8;  // contiguous rows are fp8 e5m2
  constexpr int kElem = FP8 ? 1 : 2;
  constexpr int kLanesPerKey = HD / 8;
  constexpr int kSlotsPerWarp = 32 / kLanesPerKey;
  constexpr int kSlots = kSlotsPerWarp * (kThreads / 32);
  constexpr int kU = KU;

  __shared__ __align__(16) float sm_acc[kSlots][MAXG][HD];
  __shared__ float2 sm_ml[kSlots][MAXG];
  extern __shared__ int sm_blocks[];  // BSA: this partition's slice of the block list

  const int split = blockIdx.x;
  const int kvh = blockIdx.y;
  const int b = blockIdx.z;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int sub = lane % kLanesPerKey;  // which 8 dims of the key this lane holds
  const int slot_in_warp = lane / kLanesPerKey;
  const int slot = warp * kSlotsPerWarp + slot_in_warp;
  const int group = a.group;
  const int h0 = kvh * group;

  const int seq_len = a.kv_len[b];
  const int64_t row0 = kTiered ? 0 : a.kv_start[b];

  // The logical key list of this (sequence, KV head) and its length.
  int n_s = 0, win_start = 0, n_blk_keys = 0, length = seq_len;
  const int32_t* starts = nullptr;
  if constexpr (BSA) {
    n_s = min(max(a.n_sink, 0), seq_len);
    win_start = max(seq_len - 1 - a.n_window, n_s);  // [pos - n_window, pos], pos = T - 1
    n_blk_keys = a.block_count[b * a.num_kv_heads + kvh] * 8;
    length = n_s + n_blk_keys + (seq_len - win_start);
    starts = a.block_starts + static_cast<int64_t>(b * a.num_kv_heads + kvh) * a.max_blocks;
  }
  const int i0 = split * a.chunk;
  const int i1 = min(i0 + a.chunk, length);
  const int64_t bh0 = static_cast<int64_t>(b) * a.num_heads + h0;  // first (seq, head) row

  if (i0 >= i1) {  // empty partition (short sequence / short list): block-uniform exit
    if (a.num_splits > 1) {
      if (tid < group) a.ws_ml[(bh0 + tid) * a.num_splits + split] = make_float2(kNegInf, 0.f);
    } else {
      for (int i = tid; i < group * HD; i += kThreads) a.out[bh0 * HD + i] = 0;
    }
    return;
  }

  const bool rope = BSA && a.rope != nullptr;  // block-uniform

  // Query rows of the group (rotated at T - 1 with rope), pre-scaled; rows beyond the group are
  // zero (computed, unused).
  float q[MAXG][8];
#pragma unroll
  for (int g = 0; g < MAXG; ++g) {
    if (g < group) {
      const uint4 r = *reinterpret_cast<const uint4*>(a.q + (bh0 + g) * HD + sub * 8);
      cuda_util::Bf16x8ToFloat(r, q[g]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) q[g][j] = 0.f;
    }
    if constexpr (BSA) {
      if (rope) Rotate8<HD>(q[g], a.rope + static_cast<int64_t>(seq_len - 1) * HD, sub);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) q[g][j] *= a.scale_log2;
  }

  int blk_lo = 0;
  // Extend: the M = n_s + (valid block keys) sink and block keys are rotated at
  // win_start - M, ..., win_start - 1 in list order (BsaKeysForQuery). Blocks are sorted and
  // disjoint, so the masked block keys are `lead` keys below the sink end followed (after every
  // valid key) by keys at or past win_start: valid block key j of the list has rank j - lead.
  int rope_base = 0, lead = 0;
  if constexpr (BSA) {
    blk_lo = i0 > n_s ? (i0 - n_s) >> 3 : 0;
    const int blk_hi = min(n_blk_keys >> 3, max(i1 - n_s + 7, 0) >> 3);
    for (int i = tid; i < blk_hi - blk_lo && i < a.block_smem; i += kThreads) {
      sm_blocks[i] = starts[blk_lo + i];
    }
    if (rope && a.extend) {
      __shared__ int sm_red[2][kThreads / 32];
      int ld = 0, tr = 0;
      for (int i = tid; i < (n_blk_keys >> 3); i += kThreads) {
        const int st = starts[i];
        ld += min(max(n_s - st, 0), 8);
        tr += min(max(st + 8 - win_start, 0), 8);
      }
      ld = __reduce_add_sync(0xffffffffu, ld);
      tr = __reduce_add_sync(0xffffffffu, tr);
      if (lane == 0) {
        sm_red[0][warp] = ld;
        sm_red[1][warp] = tr;
      }
      __syncthreads();
      ld = tr = 0;
#pragma unroll
      for (int w = 0; w < kThreads / 32; ++w) {
        ld += sm_red[0][w];
        tr += sm_red[1][w];
      }
      lead = ld;
      rope_base = win_start - (n_s + n_blk_keys - ld - tr);
    }
    __syncthreads();
  }
  const int32_t* slots = nullptr;
  const uint64_t* pages = nullptr;
  if constexpr (kTiered) {
    const kv_access::TieredRows rows = kv_access::TieredListRows(a.src, b, a.num_kv_heads, kvh);
    slots = rows.slots;
    pages = rows.pages;
  }

  float m[MAXG], l[MAXG], acc[MAXG][8];
#pragma unroll
  for (int g = 0; g < MAXG; ++g) {
    m[g] = kNegInf;
    l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[g][j] = 0.f;
  }

  // Contiguous rows: this lane's 8 elements of key `pos` are at k / v + lane_off + pos * row_bytes.
  const int64_t lane_off =
      (row0 * a.num_kv_heads * HD + static_cast<int64_t>(kvh) * HD + sub * 8) * kElem;
  const int row_bytes = a.num_kv_heads * HD * kElem;  // <= 65535 * 256
  const int64_t head_off = static_cast<int64_t>(kvh) * HD + sub * 8;
  const int64_t row_elems = static_cast<int64_t>(a.num_kv_heads) * HD;
  const bool bank_fp8 = a.bank_fp8;

  // The key loop, with (kRope) or without in-kernel RoPE.
  auto key_loop = [&](auto rope_c) {
    constexpr bool kRope = BSA && decltype(rope_c)::value;
    // Warp-uniform trip count (shuffles need the whole warp); keys past i1 are masked.
    for (int wbase = i0 + warp * kSlotsPerWarp * kU; wbase < i1; wbase += kSlots * kU) {
      const int base = wbase + slot_in_warp * kU;
      uint4 kr[kU], vr[kU];
      bool ok[kU], f8[kU];
      int rpos[kU];  // RoPE position of the key (kRope only)
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int i = base + u;
        int pos = i;
        ok[u] = i < i1;
        rpos[u] = i;
        if constexpr (BSA) {
          if (i < n_s) {
            if (kRope && a.extend) rpos[u] = rope_base + i;
          } else {
            const int j = i - n_s;
            if (j < n_blk_keys) {
              pos = ok[u] ? sm_blocks[(j >> 3) - blk_lo] + (j & 7) : 0;
              ok[u] = ok[u] && pos >= n_s && pos < win_start;
              if constexpr (kRope) rpos[u] = a.extend ? rope_base + n_s + j - lead : pos;
            } else {
              pos = win_start + (j - n_blk_keys);
              rpos[u] = pos;
            }
          }
          if (kRope && !ok[u]) rpos[u] = 0;  // keeps the (unused) table read in range
        }
        f8[u] = FP8;
        if (ok[u]) {
          if constexpr (kTiered) {
            const kva::RowRef r = kva::TieredRow<HD>(a.src, slots, pages, pos, sub * 8, bank_fp8);
            f8[u] = r.fp8;
            kr[u] = kva::LoadRef8(r.k, r.fp8, r.host);
            vr[u] = kva::LoadRef8(r.v, r.fp8, r.host);
          } else {
            // Dense keys are consecutive: the compiler strength-reduces the full expression.
            const int64_t off = BSA ? lane_off + static_cast<int64_t>(pos) * row_bytes
                                    : ((row0 + pos) * row_elems + head_off) * kElem;
            kr[u] = kva::LoadDevice8(a.k + off, FP8);
            vr[u] = kva::LoadDevice8(a.v + off, FP8);
          }
        } else {
          kr[u] = make_uint4(0, 0, 0, 0);
          vr[u] = make_uint4(0, 0, 0, 0);
        }
      }

      float s[kU][MAXG];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        float kf[8];
        kva::ToFloat8(kr[u], kTiered ? f8[u] : FP8, kf);
        if constexpr (kRope) {
          Rotate8<HD>(kf, a.rope + static_cast<int64_t>(rpos[u]) * HD, sub);
        }
#pragma unroll
        for (int g = 0; g < MAXG; ++g) {
          float d = 0.f;
#pragma unroll
          for (int j = 0; j < 8; ++j) d = fmaf(q[g][j], kf[j], d);
          s[u][g] = d;
        }
      }
#pragma unroll
      for (int off = kLanesPerKey / 2; off > 0; off >>= 1) {
#pragma unroll
        for (int u = 0; u < kU; ++u) {
#pragma unroll
          for (int g = 0; g < MAXG; ++g) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], off);
        }
      }

      float vf[kU][8];
#pragma unroll
      for (int u = 0; u < kU; ++u) kva::ToFloat8(vr[u], kTiered ? f8[u] : FP8, vf[u]);

#pragma unroll
      for (int g = 0; g < MAXG; ++g) {
        float mt = kNegInf;
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          if (!ok[u]) s[u][g] = kNegInf;
          mt = fmaxf(mt, s[u][g]);
        }
        const float mn = fmaxf(m[g], mt);
        if (mn == kNegInf) continue;         // nothing valid yet for this slot
        const float alpha = Ex2(m[g] - mn);  // 0 when m was -inf
        float p[kU];
        float ps = 0.f;
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          p[u] = Ex2(s[u][g] - mn);  // 0 for masked keys
          ps += p[u];
        }
        l[g] = fmaf(l[g], alpha, ps);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float x = acc[g][j] * alpha;
#pragma unroll
          for (int u = 0; u < kU; ++u) x = fmaf(p[u], vf[u][j], x);
          acc[g][j] = x;
        }
        m[g] = mn;
      }
    }
  };
  if (rope) {
    key_loop(std::true_type{});
  } else {
    key_loop(std::false_type{});
  }

  // Merge the slots of this block.
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < MAXG; ++g) sm_ml[slot][g] = make_float2(m[g], l[g]);
  }
  __syncthreads();
#pragma unroll
  for (int g = 0; g < MAXG; ++g) {
    float mx = kNegInf;
#pragma unroll
    for (int s = 0; s < kSlots; ++s) mx = fmaxf(mx, sm_ml[s][g].x);
    const float w = m[g] == kNegInf ? 0.f : Ex2(m[g] - mx);
    float4* dst = reinterpret_cast<float4*>(&sm_acc[slot][g][sub * 8]);
    dst[0] = make_float4(acc[g][0] * w, acc[g][1] * w, acc[g][2] * w, acc[g][3] * w);
    dst[1] = make_float4(acc[g][4] * w, acc[g][5] * w, acc[g][6] * w, acc[g][7] * w);
  }
  __syncthreads();

  // Each thread finishes 4 consecutive dims of one query head.
  for (int item = tid; item < group * (HD / 4); item += kThreads) {
    const int g = item / (HD / 4);
    const int d = (item % (HD / 4)) * 4;
    float mx = kNegInf;
    for (int s = 0; s < kSlots; ++s) mx = fmaxf(mx, sm_ml[s][g].x);
    float lsum = 0.f;
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int s = 0; s < kSlots; ++s) {
      const float2 e = sm_ml[s][g];
      if (e.x != kNegInf) lsum = fmaf(e.y, Ex2(e.x - mx), lsum);
      const float4 x = *reinterpret_cast<const float4*>(&sm_acc[s][g][d]);
      o.x += x.x;
      o.y += x.y;
      o.z += x.z;
      o.w += x.w;
    }
    const int64_t bh = bh0 + g;
    if (a.num_splits == 1) {
      const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
      const uint32_t lo = cuda_util::FloatToBf16Bits(o.x * inv) |
                          (static_cast<uint32_t>(cuda_util::FloatToBf16Bits(o.y * inv)) << 16);
      const uint32_t hi = cuda_util::FloatToBf16Bits(o.z * inv) |
                          (static_cast<uint32_t>(cuda_util::FloatToBf16Bits(o.w * inv)) << 16);
      *reinterpret_cast<uint2*>(a.out + bh * HD + d) = make_uint2(lo, hi);
    } else {
      const int64_t part = bh * a.num_splits + split;
      *reinterpret_cast<float4*>(a.ws_acc + part * HD + d) = o;
      if (d == 0) a.ws_ml[part] = make_float2(mx, lsum);
    }
  }
}

// Combines the partitions of one (sequence, query head) per block. Thread t handles dims
// 4 * (t % (HD / 4)) .. +3 of partitions t / (HD / 4), + kParts, ...; the kParts partial
// results are then merged through shared memory.
template <int HD>
__global__ void __launch_bounds__(kMergeThreads)
    MergeKernel(const float* __restrict__ ws_acc, const float2* __restrict__ ws_ml,
                uint16_t* __restrict__ out, int num_splits) {
  constexpr int kDim4 = HD / 4;
  constexpr int kParts = kMergeThreads / kDim4;
  __shared__ float4 sm_o[kParts][kDim4];
  __shared__ float2 sm_ml[kParts];
  __shared__ float sm_max;

  const int64_t bh = blockIdx.x;
  const int t = threadIdx.x;
  const int d4 = t % kDim4;
  const int part = t / kDim4;
  const float2* ml = ws_ml + bh * num_splits;
  const float4* acc = reinterpret_cast<const float4*>(ws_acc) + bh * num_splits * kDim4;

  // Global max first (splits are few: a strided pass plus a block reduction).
  float mx = kNegInf;
  for (int s = t; s < num_splits; s += kMergeThreads) mx = fmaxf(mx, ml[s].x);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  __shared__ float sm_wmax[kMergeThreads / 32];
  if ((t & 31) == 0) sm_wmax[t >> 5] = mx;
  __syncthreads();
  if (t == 0) {
    float v = kNegInf;
    for (int w = 0; w < kMergeThreads / 32; ++w) v = fmaxf(v, sm_wmax[w]);
    sm_max = v;
  }
  __syncthreads();
  mx = sm_max;

  float lsum = 0.f;
  float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
  for (int s = part; s < num_splits; s += kParts) {
    const float2 e = ml[s];
    const float4 x = acc[s * kDim4 + d4];
    const bool live = e.y > 0.f;  // empty partitions wrote no acc
    const float w = live ? Ex2(e.x - mx) : 0.f;
    lsum = fmaf(e.y, w, lsum);
    o.x = live ? fmaf(x.x, w, o.x) : o.x;
    o.y = live ? fmaf(x.y, w, o.y) : o.y;
    o.z = live ? fmaf(x.z, w, o.z) : o.z;
    o.w = live ? fmaf(x.w, w, o.w) : o.w;
  }
  sm_o[part][d4] = o;
  if (d4 == 0) sm_ml[part] = make_float2(0.f, lsum);
  __syncthreads();
  if (part == 0) {
    for (int p = 1; p < kParts; ++p) {
      const float4 x = sm_o[p][d4];
      o.x += x.x;
      o.y += x.y;
      o.z += x.z;
      o.w += x.w;
      lsum += sm_ml[p].y;
    }
    const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
    const uint32_t lo = cuda_util::FloatToBf16Bits(o.x * inv) |
                        (static_cast<uint32_t>(cuda_util::FloatToBf16Bits(o.y * inv)) << 16);
    const uint32_t hi = cuda_util::FloatToBf16Bits(o.z * inv) |
                        (static_cast<uint32_t>(cuda_util::FloatToBf16Bits(o.w * inv)) << 16);
    *reinterpret_cast<uint2*>(out + bh * HD + d4 * 4) = make_uint2(lo, hi);
  }
}

}  // namespace hipserve::kernels::decode_attention_internal
