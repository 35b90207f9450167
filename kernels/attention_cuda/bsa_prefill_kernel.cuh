// Device code of the HiP BSA prefill attention; see bsa_prefill.h for the contract and the
// phase A / phase B construction. Included only by bsa_prefill.cu. Tensor-core building blocks
// (swizzled tiles, cp.async, ldmatrix, mma.sync, fragment layouts) and the flash main loop
// (pa::AttendTile, pa::StoreRows; this kernel's masking is the BsaMask policy) come from the
// dense prefill kernel's header.
//
// Block = (query head, plan row); 4 warps, warp w owns tile rows [16 w, 16 w + 16). Shared
// memory: the rotated Q tile, two stages of K and V tiles (64 keys), the key list L of phase A,
// and per-query bounds. Per key tile: cp.async the raw rows (gathered in phase A), rotate K in
// place in shared memory (fp32 math, bf16 store), then S = Q K^T, mask, online softmax, O += P V.
// fp8 e5m2 K/V (FP8 = true): the two stages hold raw codes ([kBN][HD] bytes, not swizzled); the
// rotation step reads them, decodes exactly (as the dense kernel) and writes the rotated K and
// the decoded V into ONE swizzled bf16 (K, V) pair of tiles, which the warps then read. Same
// shared memory as bf16 (TileBytes).
// Tiered K/V (KvPath::kTiered, kv_source.h / HIP.md 7): the stages hold bf16 as in the bf16
// path. Per 8-element chunk of a key row the loader resolves the token through the slot table
// (kv_access::TieredRow): a bf16 bank row is cp.async'ed straight into the stage; an fp8 bank
// row (__ldg) or an absent token's fp8 host page row (plain load: mapped memory) is loaded into
// registers when the tile's loads are issued and decoded exactly to bf16 into the stage: for
// head_dim 64 after the previous tile's math (the latency overlaps one tile of work); for 128
// right away (holding 32 more registers across the math would spill; misses are bound by PCIe
// bandwidth, not latency, and the other block on the SM computes meanwhile).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention_cuda/kv_access.cuh"
#include "kernels/attention_cuda/kv_source.h"
#include "kernels/attention_cuda/prefill_attention_kernel.cuh"
#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::bsa_prefill_internal {

namespace pa = prefill_attention_internal;

inline constexpr int kWarps = pa::kWarps;
inline constexpr int kThreads = pa::kThreads;
inline constexpr int kBM = pa::kBM;  // 64: one plan row
inline constexpr int kBN = pa::kBN;
inline constexpr float kNegInf = pa::kNegInf;
inline constexpr int kNoWindow = 0x7fffffff;

// Where K/V come from: contiguous bf16, contiguous fp8 e5m2, or a TieredKvSource.
enum class KvPath : int { kBf16 = 0, kFp8 = 1, kTiered = 2 };

struct BsaArgs {
  const uint16_t* q;
  const void* k;  // bf16 (uint16_t) or fp8 e5m2 (uint8_t), per the kernel's path; unused tiered
  const void* v;
  TieredKvSource tiered;  // kTiered: the source (sequence 0)
  int bank_fp8;           // kTiered: bank rows are fp8 e5m2 (else bf16)
  uint16_t* out;
  const int32_t* block_starts;
  const int32_t* block_count;
  const float* rope;
  int num_q, q_offset;
  int num_heads, num_kv_heads, group;
  int q_row, kv_row;  // elements between query rows / key rows (bf16 or fp8 elements)
  int num_rows, first_block, max_blocks, block_size;
  int n_sink, n_window;
  int extend;
  int list_cap;  // ints of shared memory for L (>= n_sink + max_blocks * block_size)
  float scale_log2;
};

// bf16: Q + 2 stages x (K, V). fp8: Q + 2 raw stages x (K, V) at 1 byte + one decoded (K, V).
template <int HD>
constexpr int TileBytes() {
  return (kBM + 4 * kBN) * HD * 2;
}

// Mask policy of pa::AttendTile. Phase A (list slots): slot n0 + column is visible to a row
// below its prefix M (m0, m1). Phase B (window keys): key n0 + column is visible in
// [window_first, position] of the row.
struct BsaMask {
  bool phase_a;
  int n0;              // slot / key of column 0
  int m0, m1;          // phase A prefixes of rows g, g + 8
  int32_t wf0, wf1;    // window_first of rows g, g + 8
  int32_t pos0, pos1;  // positions of rows g, g + 8
  int tq;              // lane & 3
  __device__ __forceinline__ void operator()(float (&s)[pa::kNTiles][4]) const {
#pragma unroll
    for (int i = 0; i < pa::kNTiles; ++i) {
      const int c0 = n0 + i * 8 + 2 * tq;
      if (phase_a) {
        if (c0 >= m0) s[i][0] = kNegInf;
        if (c0 + 1 >= m0) s[i][1] = kNegInf;
        if (c0 >= m1) s[i][2] = kNegInf;
        if (c0 + 1 >= m1) s[i][3] = kNegInf;
      } else {
        if (c0 < wf0 || c0 > pos0) s[i][0] = kNegInf;
        if (c0 + 1 < wf0 || c0 + 1 > pos0) s[i][1] = kNegInf;
        if (c0 < wf1 || c0 > pos1) s[i][2] = kNegInf;
        if (c0 + 1 < wf1 || c0 + 1 > pos1) s[i][3] = kNegInf;
      }
    }
  }
};

// x1 (8 bf16 at lo) and x2 (8 bf16 at hi) rotated by (cos, sin) of `cs` at pair offset u8; the
// results replace them as bf16.
__device__ __forceinline__ void Rotate8(uint4& lo, uint4& hi, const float* cs, int half, int u8) {
  const float4* c4 = reinterpret_cast<const float4*>(cs + u8);
  const float4* s4 = reinterpret_cast<const float4*>(cs + half + u8);
  const float4 ca = __ldg(c4), cb = __ldg(c4 + 1), sa = __ldg(s4), sb = __ldg(s4 + 1);
  const float c[8] = {ca.x, ca.y, ca.z, ca.w, cb.x, cb.y, cb.z, cb.w};
  const float s[8] = {sa.x, sa.y, sa.z, sa.w, sb.x, sb.y, sb.z, sb.w};
  uint32_t wl[4] = {lo.x, lo.y, lo.z, lo.w}, wh[4] = {hi.x, hi.y, hi.z, hi.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float a0 = cuda_util::Bf16LoToFloat(wl[j]), a1 = cuda_util::Bf16HiToFloat(wl[j]);
    const float b0 = cuda_util::Bf16LoToFloat(wh[j]), b1 = cuda_util::Bf16HiToFloat(wh[j]);
    const float c0 = c[2 * j], c1 = c[2 * j + 1], s0 = s[2 * j], s1 = s[2 * j + 1];
    wl[j] = cuda_util::PackBf16x2(a0 * c0 - b0 * s0, a1 * c1 - b1 * s1);
    wh[j] = cuda_util::PackBf16x2(b0 * c0 + a0 * s0, b1 * c1 + a1 * s1);
  }
  lo = make_uint4(wl[0], wl[1], wl[2], wl[3]);
  hi = make_uint4(wh[0], wh[1], wh[2], wh[3]);
}

template <int HD, KvPath PATH>
__global__ void __launch_bounds__(kThreads, 2) BsaPrefillKernel(const BsaArgs a) {
  constexpr bool FP8 = PATH == KvPath::kFp8;      // raw-code stages + decoded tiles
  constexpr bool TIER = PATH == KvPath::kTiered;  // bf16 stages, filled through the slot table
  constexpr int HALF = HD / 2;
  constexpr int kUnits = HALF / 8;  // 8-pair units per row
  extern __shared__ __align__(128) uint16_t smem[];
  uint16_t* sq = smem;
  uint16_t* sk = sq + kBM * HD;      // bf16: [2][kBN][HD]
  uint16_t* sv = sk + 2 * kBN * HD;  // bf16: [2][kBN][HD]
  // fp8: raw stages [2][kBN][HD] bytes for K and V, then the decoded bf16 K and V tiles.
  uint8_t* raw_k = reinterpret_cast<uint8_t*>(sk);
  uint8_t* raw_v = raw_k + 2 * kBN * HD;
  uint16_t* dec_k = reinterpret_cast<uint16_t*>(raw_v + 2 * kBN * HD);
  uint16_t* dec_v = dec_k + kBN * HD;
  using KvT = std::conditional_t<FP8, uint8_t, uint16_t>;
  int32_t* s_list = reinterpret_cast<int32_t*>(sv + 2 * kBN * HD);  // [list_cap]
  __shared__ int32_t s_m[kBM], s_wf[kBM], s_qpos_a[kBM];
  __shared__ int32_t s_warp[kWarps];

  const int head = blockIdx.x;
  const int row = a.num_rows - 1 - static_cast<int>(blockIdx.y);  // heavy rows first
  const int kvh = head / a.group;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int blk_pos = (a.first_block + row) * kBM;  // position of tile row 0
  const int p_first = max(a.q_offset, blk_pos);
  const int p_end = min(a.q_offset + a.num_q, blk_pos + kBM);
  const int pos_last = p_end - 1;

  // ---- Phase A list L (the last query's sink + block keys, BsaKeysForQuery order).
  const int32_t wf_last = max(pos_last - a.n_window, a.n_sink);
  const int32_t e_last = min(wf_last, pos_last + 1);
  const int32_t s_last = min(a.n_sink, pos_last + 1);
  const int64_t plan = static_cast<int64_t>(row) * a.num_kv_heads + kvh;
  const int count = a.max_blocks > 0 ? a.block_count[plan] : 0;
  const int32_t* blocks = a.block_starts + plan * a.max_blocks;
  const int per = (count + kThreads - 1) / kThreads;
  const int b0 = min(count, static_cast<int>(threadIdx.x) * per), b1 = min(count, b0 + per);
  // Block b contributes [lo_b, hi_b): hi_b = min(start_b + bs, E), lo_b = max(start_b, n_sink,
  // hi_{b-1}) (hi is non-decreasing in b, so this is BsaKeysForQuery's running `next`).
  auto block_range = [&](int b, int32_t* lo, int32_t* hi) {
    const int32_t st = blocks[b];
    *hi = static_cast<int32_t>(min(static_cast<int64_t>(st) + a.block_size, int64_t{e_last}));
    int32_t l = max(st, a.n_sink);
    if (b > 0) {
      l = max(l, static_cast<int32_t>(
                     min(static_cast<int64_t>(blocks[b - 1]) + a.block_size, int64_t{e_last})));
    }
    *lo = l;
  };
  int mine = 0;
  for (int b = b0; b < b1; ++b) {
    int32_t lo, hi;
    block_range(b, &lo, &hi);
    mine += max(0, hi - lo);
  }
  int incl = mine;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += n;
  }
  if (lane == 31) s_warp[warp] = incl;
  for (int j = threadIdx.x; j < s_last; j += kThreads) s_list[j] = j;
  __syncthreads();
  int before = 0, total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    before += w < warp ? s_warp[w] : 0;
    total += s_warp[w];
  }
  {
    int at = s_last + before + incl - mine;
    for (int b = b0; b < b1; ++b) {
      int32_t lo, hi;
      block_range(b, &lo, &hi);
      for (int32_t key = lo; key < hi; ++key) s_list[at++] = key;
    }
  }
  const int m_last = s_last + total;
  const int32_t base_a = e_last - m_last;  // rope position of slot 0 (extend)
  __syncthreads();

  // ---- Per-query bounds: M_i (phase A prefix), window_first_i, phase-A query position.
  if (threadIdx.x < kBM) {
    const int t = threadIdx.x;
    const int32_t pos = blk_pos + t;
    int32_t m = 0, wf = kNoWindow, qa = 0;
    if (pos >= p_first && pos < p_end) {
      wf = max(pos - a.n_window, a.n_sink);
      const int32_t e = min(wf, pos + 1);
      // Block keys of L below e: L[s_last, m_last) is ascending.
      int lo = s_last, hi = m_last;
      while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (s_list[mid] < e) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      m = min(a.n_sink, pos + 1) + (lo - s_last);
      qa = a.extend ? pos - (e - m) + base_a : pos;
    }
    s_m[t] = m;
    s_wf[t] = wf;
    s_qpos_a[t] = qa;
  }
  // Phase B keys: [wf(first query), pos_last].
  const int32_t b_begin = max(p_first - a.n_window, a.n_sink);
  const int b_count = max(0, pos_last - b_begin + 1);
  const int n_a = (m_last + kBN - 1) / kBN;
  const int n_tiles = n_a + (b_count + kBN - 1) / kBN;
  __syncthreads();

  const uint16_t* gq = a.q + static_cast<int64_t>(head) * HD;
  const KvT* gk = TIER ? nullptr : static_cast<const KvT*>(a.k) + static_cast<int64_t>(kvh) * HD;
  const KvT* gv = TIER ? nullptr : static_cast<const KvT*>(a.v) + static_cast<int64_t>(kvh) * HD;
  // Tiered: this KV head's slot / page table rows, and the fp8 rows of the tile being loaded
  // that wait in registers (bit i of reg_mask: chunk i of this thread).
  const int32_t* t_slots = a.tiered.slot_table + (TIER ? kvh * a.tiered.slot_stride : 0);
  const uint64_t* t_pages = a.tiered.cold_pages + (TIER ? kvh * a.tiered.page_stride : 0);
  constexpr int kTierChunks = TIER ? kBN * (HD / 8) / kThreads : 1;
  uint2 reg_k[kTierChunks], reg_v[kTierChunks];
  uint32_t reg_mask = 0;
  constexpr bool kHoldRegs = HD == 64;  // tiered: fp8 rows wait in registers across a tile

  // Key of tile-row r of tile t, or -1 past the end.
  auto tile_key = [&](int t, int r) -> int32_t {
    if (t < n_a) {
      const int idx = t * kBN + r;
      return idx < m_last ? s_list[idx] : -1;
    }
    const int j = (t - n_a) * kBN + r;
    return j < b_count ? b_begin + j : -1;
  };
  // Tiered: decodes the fp8 rows of chunks [i0, i1) waiting in registers into stage `stage`
  // (exact, as pa::DecodeTileFp8 does).
  auto store_regs = [&](int stage, int i0, int i1) {
    if constexpr (TIER) {
#pragma unroll
      for (int i = i0; i < i1; ++i) {
        if ((reg_mask >> i & 1u) == 0) continue;
        const int idx = threadIdx.x + i * kThreads;
        const int r = idx / (HD / 8), c = (idx % (HD / 8)) * 8;
        *reinterpret_cast<uint4*>(sk + stage * kBN * HD + pa::Swz<HD>(r, c)) =
            pa::Fp8x8ToBf16x8(reg_k[i].x, reg_k[i].y);
        *reinterpret_cast<uint4*>(sv + stage * kBN * HD + pa::Swz<HD>(r, c)) =
            pa::Fp8x8ToBf16x8(reg_v[i].x, reg_v[i].y);
      }
    }
  };
  // Tiered: issues chunk i of tile t into stage `stage`: zero row past the end, cp.async of a
  // bf16 bank row, or (returns true) the 8 fp8 codes of K and V loaded into *xk / *xv.
  auto tier_chunk = [&](int t, int stage, int i, uint2* xk, uint2* xv) -> bool {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx / (HD / 8), c = (idx % (HD / 8)) * 8;
    const int32_t key = tile_key(t, r);
    uint16_t* pk = sk + stage * kBN * HD + pa::Swz<HD>(r, c);
    uint16_t* pv = sv + stage * kBN * HD + pa::Swz<HD>(r, c);
    if (key < 0) {  // past the end: zero row
      *reinterpret_cast<uint4*>(pk) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(pv) = make_uint4(0, 0, 0, 0);
      return false;
    }
    const kv_access::RowRef ref =
        kv_access::TieredRow<HD>(a.tiered, t_slots, t_pages, key, c, a.bank_fp8 != 0);
    if (!ref.fp8) {  // bf16 bank row: asynchronous copy
      pa::CpAsync16(pa::SmemAddr(pk), ref.k, 16);
      pa::CpAsync16(pa::SmemAddr(pv), ref.v, 16);
      return false;
    }
    const uint4 lk = kv_access::LoadRef8(ref.k, true, ref.host);
    const uint4 lv = kv_access::LoadRef8(ref.v, true, ref.host);
    *xk = make_uint2(lk.x, lk.y);
    *xv = make_uint2(lv.x, lv.y);
    return true;
  };
  auto load_tile = [&](int t, int stage) {
    if constexpr (TIER) {
      if constexpr (kHoldRegs) {  // the fp8 rows wait in registers (store_regs)
        reg_mask = 0;
#pragma unroll
        for (int i = 0; i < kTierChunks; ++i) {
          if (tier_chunk(t, stage, i, &reg_k[i], &reg_v[i])) reg_mask |= 1u << i;
        }
      } else {  // decoded and stored as loaded: no fp8 rows live across the math
#pragma unroll
        for (int i = 0; i < kTierChunks; ++i) {
          uint2 xk, xv;
          if (!tier_chunk(t, stage, i, &xk, &xv)) continue;
          const int idx = threadIdx.x + i * kThreads;
          const int r = idx / (HD / 8), c = (idx % (HD / 8)) * 8;
          *reinterpret_cast<uint4*>(sk + stage * kBN * HD + pa::Swz<HD>(r, c)) =
              pa::Fp8x8ToBf16x8(xk.x, xk.y);
          *reinterpret_cast<uint4*>(sv + stage * kBN * HD + pa::Swz<HD>(r, c)) =
              pa::Fp8x8ToBf16x8(xv.x, xv.y);
        }
      }
      return;
    }
    constexpr int kPerChunk = FP8 ? 16 : 8;  // elements per 16-byte request
    constexpr int kChunks = HD / kPerChunk;
    constexpr int kPerThread = kBN * kChunks / kThreads;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int idx = threadIdx.x + i * kThreads;
      const int r = idx / kChunks, c = (idx % kChunks) * kPerChunk;
      const int32_t key = tile_key(t, r);
      const int64_t off = static_cast<int64_t>(key < 0 ? 0 : key) * a.kv_row + c;
      uint32_t dk, dv;
      if constexpr (FP8) {
        dk = pa::SmemAddr(raw_k + stage * kBN * HD + r * HD + c);
        dv = pa::SmemAddr(raw_v + stage * kBN * HD + r * HD + c);
      } else {
        dk = pa::SmemAddr(sk + stage * kBN * HD + pa::Swz<HD>(r, c));
        dv = pa::SmemAddr(sv + stage * kBN * HD + pa::Swz<HD>(r, c));
      }
      pa::CpAsync16(dk, gk + off, key < 0 ? 0 : 16);
      pa::CpAsync16(dv, gv + off, key < 0 ? 0 : 16);
    }
  };
  // Rotated queries (phase A positions, or real positions for phase B) into sq.
  auto rotate_q = [&](bool phase_a) {
    for (int u = threadIdx.x; u < kBM * kUnits; u += kThreads) {
      const int r = u / kUnits, c = (u % kUnits) * 8;
      const int32_t pos = blk_pos + r;
      uint4 lo = make_uint4(0, 0, 0, 0), hi = lo;
      if (pos >= p_first && pos < p_end) {
        const uint16_t* src = gq + static_cast<int64_t>(pos - a.q_offset) * a.q_row;
        lo = __ldg(reinterpret_cast<const uint4*>(src + c));
        hi = __ldg(reinterpret_cast<const uint4*>(src + HALF + c));
        const int rp = phase_a ? s_qpos_a[r] : pos;
        Rotate8(lo, hi, a.rope + static_cast<int64_t>(rp) * HD, HALF, c);
      }
      *reinterpret_cast<uint4*>(sq + pa::Swz<HD>(r, c)) = lo;
      *reinterpret_cast<uint4*>(sq + pa::Swz<HD>(r, HALF + c)) = hi;
    }
  };
  // Rotates the K tile of stage `stage` (tile t) in place. fp8: decodes the raw K stage, rotates
  // it into dec_k (rows past the end: the zero-filled codes decode to zero) and decodes the raw
  // V stage into dec_v.
  auto rotate_k = [&](int t, int stage) {
    if constexpr (FP8) {
      const uint8_t* rk = raw_k + stage * kBN * HD;
      for (int u = threadIdx.x; u < kBN * kUnits; u += kThreads) {
        const int r = u / kUnits, c = (u % kUnits) * 8;
        const int32_t key = tile_key(t, r);
        const uint2 xl = *reinterpret_cast<const uint2*>(rk + r * HD + c);
        const uint2 xh = *reinterpret_cast<const uint2*>(rk + r * HD + HALF + c);
        uint4 lo = pa::Fp8x8ToBf16x8(xl.x, xl.y), hi = pa::Fp8x8ToBf16x8(xh.x, xh.y);
        if (key >= 0) {
          const int rp = (t < n_a && a.extend) ? base_a + t * kBN + r : key;
          Rotate8(lo, hi, a.rope + static_cast<int64_t>(rp) * HD, HALF, c);
        }
        *reinterpret_cast<uint4*>(dec_k + pa::Swz<HD>(r, c)) = lo;
        *reinterpret_cast<uint4*>(dec_k + pa::Swz<HD>(r, HALF + c)) = hi;
      }
      pa::DecodeTileFp8<HD, kBN>(raw_v + stage * kBN * HD, dec_v);
      return;
    }
    uint16_t* tk = sk + stage * kBN * HD;
    for (int u = threadIdx.x; u < kBN * kUnits; u += kThreads) {
      const int r = u / kUnits, c = (u % kUnits) * 8;
      const int32_t key = tile_key(t, r);
      if (key < 0) continue;  // zero row stays zero
      const int rp = (t < n_a && a.extend) ? base_a + t * kBN + r : key;
      uint4* plo = reinterpret_cast<uint4*>(tk + pa::Swz<HD>(r, c));
      uint4* phi = reinterpret_cast<uint4*>(tk + pa::Swz<HD>(r, HALF + c));
      uint4 lo = *plo, hi = *phi;
      Rotate8(lo, hi, a.rope + static_cast<int64_t>(rp) * HD, HALF, c);
      *plo = lo;
      *phi = hi;
    }
  };

  load_tile(0, 0);
  if constexpr (kHoldRegs) store_regs(0, 0, kTierChunks);
  pa::CpAsyncCommit();

  constexpr int kKSteps = HD / 16;
  constexpr int kDTiles = HD / 8;
  float o[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {kNegInf, kNegInf};
  float l[2] = {0.f, 0.f};
  uint32_t qf[kKSteps][4];

  const int g = lane >> 2, tq = lane & 3;
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  const int32_t pos0 = blk_pos + r0, pos1 = blk_pos + r1;
  const int m0 = s_m[r0], m1 = s_m[r1];
  const int32_t wf0 = s_wf[r0], wf1 = s_wf[r1];

  for (int t = 0; t < n_tiles; ++t) {
    const int stage = t & 1;
    if (t + 1 < n_tiles) load_tile(t + 1, stage ^ 1);
    pa::CpAsyncCommit();
    pa::CpAsyncWait<1>();
    __syncthreads();
    const bool new_q = t == 0 || t == n_a;
    rotate_k(t, stage);
    if (new_q) rotate_q(t < n_a);
    __syncthreads();
    if (new_q) pa::LoadQFragments<HD>(sq, warp, lane, qf);
    const bool phase_a = t < n_a;
    const int n0 = phase_a ? t * kBN : b_begin + (t - n_a) * kBN;  // slot / key of column 0
    // Does any row of this warp see a column of this tile?
    const bool see =
        phase_a ? (m0 > n0 || m1 > n0)
                : ((wf0 <= n0 + kBN - 1 && pos0 >= n0) || (wf1 <= n0 + kBN - 1 && pos1 >= n0));
    if (__any_sync(0xffffffffu, see)) {
      const uint16_t* tk = FP8 ? dec_k : sk + stage * kBN * HD;
      const uint16_t* tv = FP8 ? dec_v : sv + stage * kBN * HD;
      const BsaMask mask{phase_a, n0, m0, m1, wf0, wf1, pos0, pos1, tq};
      pa::AttendTile<HD>(qf, tk, tv, a.scale_log2, lane, mask, o, m, l);
    }
    // Tiered, kHoldRegs: tile t + 1's fp8 rows.
    if (kHoldRegs && t + 1 < n_tiles) store_regs(stage ^ 1, 0, kTierChunks);
    __syncthreads();  // the stage (and sq) are overwritten by the next iteration
  }
  pa::CpAsyncWait<0>();

  uint16_t* out = a.out + static_cast<int64_t>(head) * HD;
  pa::StoreRows<HD>(
      o, l, lane, pos0 >= p_first && pos0 < p_end, pos1 >= p_first && pos1 < p_end, [&](int r) {
        return out + static_cast<int64_t>((r == 0 ? pos0 : pos1) - a.q_offset) * a.q_row;
      });
}

}  // namespace hipserve::kernels::bsa_prefill_internal
