// Device code for dense causal prefill attention; see prefill_attention.h for the contract.
// Included only by prefill_attention.cu.
//
// Work split. Block (x = query head, y = query tile, heavy tiles first) of kWarps warps; warp w
// owns query rows [16 w, 16 w + 16) of the tile. Shared memory: the Q tile and two stages of
// K and V tiles (kBN keys each), rows of HD bf16 with the 16-byte chunks XOR-swizzled by
// (row & 7) so that ldmatrix and cp.async are free of bank conflicts.
// Per key tile a warp computes S = Q K^T (16 x kBN, fp32) with mma.sync m16n8k16, masks it
// (causal / past the end), updates its online softmax (max m, sum l per row; log2 domain), turns
// the probabilities into bf16 A fragments in registers (the C layout of two n8 tiles is the A
// layout of one k16 step) and accumulates O += P V (V fragments by ldmatrix.trans).
// That per-tile loop (AttendTile, masking as a policy: CausalMask here, BsaMask in
// bsa_prefill_kernel.cuh) and the epilogue (StoreRows) are shared with the BSA prefill kernel.
//
// fp8 e5m2 K/V (FP8 = true): the two stages hold the raw bytes ([kBN][HD] per tile, not
// swizzled: cp.async copies 16 codes per request); after a stage lands, the block decodes it
// exactly (kv_access::Fp8x8ToFloat, then bf16 packing, which is exact: every e5m2 value is a
// bf16 value) into ONE swizzled bf16 K tile and V tile, and the warps run the bf16 path on
// those. Same shared memory as bf16: 2 x 2 x kBN x HD bytes raw + 2 x kBN x HD x 2 bytes decoded.
//
// Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4):
//   A (16x16): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B (16x8):  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C (16x8):  c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention_cuda/kv_access.cuh"
#include "kernels/cuda/bf16_pack.cuh"

namespace hipserve::kernels::prefill_attention_internal {

inline constexpr int kWarps = 4;
inline constexpr int kThreads = kWarps * 32;
inline constexpr int kBM = kWarps * 16;
inline constexpr int kBN = 64;
inline constexpr float kNegInf = -__builtin_huge_valf();

struct KernelArgs {
  const uint16_t* q;
  const void* k;  // bf16 (uint16_t) or fp8 e5m2 (uint8_t), per the kernel's FP8
  const void* v;
  uint16_t* out;
  int num_q;
  int q_offset;
  int num_kv;
  int num_heads;
  int group;   // num_heads / num_kv_heads
  int q_row;   // elements between query rows: num_heads * HD
  int kv_row;  // elements (bf16 or fp8) between key rows: num_kv_heads * HD
  int num_q_tiles;
  float scale_log2;  // softmax scale * log2(e)
};

// bf16: Q + 2 stages x (K, V). fp8: Q + 2 raw stages x (K, V) at 1 byte + one decoded (K, V)
// at 2 bytes, the same total.
template <int HD>
constexpr int SmemBytes() {
  return (kBM + 4 * kBN) * HD * 2;
}

__device__ __forceinline__ float Ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Element offset of (row, col) in a swizzled tile of HD-wide rows (col a multiple of 8 here).
template <int HD>
__device__ __forceinline__ int Swz(int row, int col) {
  return row * HD + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

// 16 bytes global -> shared; src_bytes 0 zero-fills (rows past the end).
__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void LdMatrixX4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                           uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t addr, uint32_t& r0, uint32_t& r1,
                                                uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

__device__ __forceinline__ void Mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Stages `rows` rows of HD bf16 starting at global row `row0` (row stride `stride` elements)
// into a swizzled shared tile; rows at or past `limit` are zero-filled.
template <int HD, int ROWS>
__device__ __forceinline__ void LoadTile(uint16_t* smem, const uint16_t* g, int64_t stride,
                                         int row0, int limit) {
  constexpr int kChunks = HD / 8;
  constexpr int kPerThread = ROWS * kChunks / kThreads;
  static_assert(ROWS * kChunks % kThreads == 0, "tile not divisible");
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx / kChunks;
    const int c = (idx % kChunks) * 8;
    const bool ok = row0 + r < limit;
    const uint16_t* src = g + (ok ? (row0 + r) : 0) * stride + c;
    CpAsync16(SmemAddr(smem + Swz<HD>(r, c)), src, ok ? 16 : 0);
  }
}

// 8 fp8 e5m2 codes (byte i of w0 | w1 << 32 = element i) -> 8 bf16, exact (the decode kernels'
// kv_access::Fp8x8ToFloat, then round-to-nearest packing of values that are bf16 already).
__device__ __forceinline__ uint4 Fp8x8ToBf16x8(uint32_t w0, uint32_t w1) {
  float f[8];
  kv_access::Fp8x8ToFloat(make_uint4(w0, w1, 0u, 0u), f);
  return make_uint4(cuda_util::PackBf16x2(f[0], f[1]), cuda_util::PackBf16x2(f[2], f[3]),
                    cuda_util::PackBf16x2(f[4], f[5]), cuda_util::PackBf16x2(f[6], f[7]));
}

// Stages `rows` rows of HD fp8 codes starting at global row `row0` (row stride `stride` bytes)
// into a plain [ROWS][HD] byte tile; rows at or past `limit` are zero-filled (code 0 = +0).
template <int HD, int ROWS>
__device__ __forceinline__ void LoadTileFp8(uint8_t* smem, const uint8_t* g, int64_t stride,
                                            int row0, int limit) {
  constexpr int kChunks = HD / 16;
  constexpr int kPerThread = ROWS * kChunks / kThreads;
  static_assert(ROWS * kChunks % kThreads == 0, "tile not divisible");
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx / kChunks;
    const int c = (idx % kChunks) * 16;
    const bool ok = row0 + r < limit;
    const uint8_t* src = g + (ok ? (row0 + r) : 0) * stride + c;
    CpAsync16(SmemAddr(smem + r * HD + c), src, ok ? 16 : 0);
  }
}

// Decodes a [ROWS][HD] fp8 byte tile into a swizzled bf16 tile (the layout LoadTile writes).
// Each thread turns 16 codes into two 16-byte chunks; the store order alternates between
// half rows so that every 8-lane phase of a 16-byte store hits 8 different bank groups.
template <int HD, int ROWS>
__device__ __forceinline__ void DecodeTileFp8(const uint8_t* raw, uint16_t* dst) {
  constexpr int kChunks = HD / 16;
  constexpr int kPerThread = ROWS * kChunks / kThreads;
  static_assert(ROWS * kChunks % kThreads == 0, "tile not divisible");
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int idx = threadIdx.x + i * kThreads;
    const int r = idx / kChunks;
    const int c16 = idx % kChunks;
    const uint4 x = *reinterpret_cast<const uint4*>(raw + r * HD + c16 * 16);
    const uint4 lo = Fp8x8ToBf16x8(x.x, x.y);
    const uint4 hi = Fp8x8ToBf16x8(x.z, x.w);
    const bool flip = (c16 >> 2) & 1;
    const int c_first = c16 * 16 + (flip ? 8 : 0);
    const int c_second = c16 * 16 + (flip ? 0 : 8);
    *reinterpret_cast<uint4*>(dst + Swz<HD>(r, c_first)) = flip ? hi : lo;
    *reinterpret_cast<uint4*>(dst + Swz<HD>(r, c_second)) = flip ? lo : hi;
  }
}

// ---- The flash main loop shared by the dense and the BSA prefill kernels (FlashAttention-3's
// split: one tile loop, the masking as a policy). Per key tile and warp (16 query rows, this
// thread's rows g and g + 8): S = Q K^T, `mask(s)` sets the scores of keys the row does not see
// to -inf, online softmax update (max m, sum l; log2 domain), O += P V. The kernels keep their
// own staging (which keys a tile holds, how they reach shared memory).

inline constexpr int kNTiles = kBN / 8;  // n8 tiles of S

// This warp's Q fragments (A operand, k16 steps over the head dim) from the swizzled Q tile.
template <int HD>
__device__ __forceinline__ void LoadQFragments(const uint16_t* sq, int warp, int lane,
                                               uint32_t (&qf)[HD / 16][4]) {
#pragma unroll
  for (int ks = 0; ks < HD / 16; ++ks) {
    const int r = warp * 16 + (lane & 15);
    const int c = ks * 16 + (lane >> 4) * 8;
    LdMatrixX4(SmemAddr(sq + Swz<HD>(r, c)), qf[ks][0], qf[ks][1], qf[ks][2], qf[ks][3]);
  }
}

// One key tile (kBN keys: swizzled bf16 tiles tk, tv) of the online softmax. Mask: a policy
// with `void operator()(float (&s)[kNTiles][4]) const` (CausalMask below, BsaMask in
// bsa_prefill_kernel.cuh); s[i][0..1] are row g's keys 8 i + 2 t, + 1, s[i][2..3] row g + 8's.
template <int HD, typename Mask>
__device__ __forceinline__ void AttendTile(const uint32_t (&qf)[HD / 16][4], const uint16_t* tk,
                                           const uint16_t* tv, float scale_log2, int lane,
                                           const Mask& mask, float (&o)[HD / 8][4], float (&m)[2],
                                           float (&l)[2]) {
  constexpr int kKSteps = HD / 16;  // k16 steps over the head dim
  constexpr int kDTiles = HD / 8;   // n8 tiles of O
  float s[kNTiles][4];
#pragma unroll
  for (int i = 0; i < kNTiles; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
    for (int np = 0; np < kNTiles / 2; ++np) {
      const int r = np * 16 + (lane & 7) + ((lane >> 4) << 3);
      const int c = ks * 16 + ((lane >> 3) & 1) * 8;
      uint32_t b0, b1, b2, b3;
      LdMatrixX4(SmemAddr(tk + Swz<HD>(r, c)), b0, b1, b2, b3);
      Mma16816(s[2 * np], qf[ks], b0, b1);
      Mma16816(s[2 * np + 1], qf[ks], b2, b3);
    }
  }
  mask(s);
  // Online softmax, log2 domain.
  float mx[2] = {m[0], m[1]};
#pragma unroll
  for (int i = 0; i < kNTiles; ++i) {
    mx[0] = fmaxf(mx[0], fmaxf(s[i][0], s[i][1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[i][2], s[i][3]));
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
  }
  float base[2], corr[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    // A row with every key masked so far (padding rows) keeps max -inf: use 0 as the base.
    base[r] = mx[r] == kNegInf ? 0.f : mx[r] * scale_log2;
    corr[r] = Ex2(m[r] * scale_log2 - base[r]);  // m = -inf -> 0
    m[r] = mx[r];
    l[r] *= corr[r];
  }
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) {
    o[i][0] *= corr[0];
    o[i][1] *= corr[0];
    o[i][2] *= corr[1];
    o[i][3] *= corr[1];
  }
  uint32_t pf[kNTiles / 2][4];
#pragma unroll
  for (int i = 0; i < kNTiles; ++i) {
    const float p0 = Ex2(fmaf(s[i][0], scale_log2, -base[0]));
    const float p1 = Ex2(fmaf(s[i][1], scale_log2, -base[0]));
    const float p2 = Ex2(fmaf(s[i][2], scale_log2, -base[1]));
    const float p3 = Ex2(fmaf(s[i][3], scale_log2, -base[1]));
    l[0] += p0 + p1;
    l[1] += p2 + p3;
    pf[i / 2][(i & 1) * 2 + 0] = cuda_util::PackBf16x2(p0, p1);
    pf[i / 2][(i & 1) * 2 + 1] = cuda_util::PackBf16x2(p2, p3);
  }
  // O += P V.
#pragma unroll
  for (int kk = 0; kk < kNTiles / 2; ++kk) {
#pragma unroll
    for (int dp = 0; dp < kDTiles / 2; ++dp) {
      const int r = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
      const int c = dp * 16 + (lane >> 4) * 8;
      uint32_t b0, b1, b2, b3;
      LdMatrixX4Trans(SmemAddr(tv + Swz<HD>(r, c)), b0, b1, b2, b3);
      Mma16816(o[2 * dp], pf[kk], b0, b1);
      Mma16816(o[2 * dp + 1], pf[kk], b2, b3);
    }
  }
}

// Finishes the row sums across the 4 lanes of a row, normalises and stores this thread's two
// output rows as bf16: row g (when ok0) at row_out(0), row g + 8 (when ok1) at row_out(1)
// (`row_out(r)`: the row's first element; evaluated where it is stored, so the kernels keep
// their own row arithmetic).
template <int HD, typename RowOut>
__device__ __forceinline__ void StoreRows(const float (&o)[HD / 8][4], float (&l)[2], int lane,
                                          bool ok0, bool ok1, const RowOut& row_out) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const float inv0 = l[0] > 0.f ? 1.f / l[0] : 0.f;
  const float inv1 = l[1] > 0.f ? 1.f / l[1] : 0.f;
  const int t = lane & 3;
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) {
    const int c = i * 8 + 2 * t;
    if (ok0) {
      *reinterpret_cast<uint32_t*>(row_out(0) + c) =
          cuda_util::PackBf16x2(o[i][0] * inv0, o[i][1] * inv0);
    }
    if (ok1) {
      *reinterpret_cast<uint32_t*>(row_out(1) + c) =
          cuda_util::PackBf16x2(o[i][2] * inv1, o[i][3] * inv1);
    }
  }
}

// Dense causal mask: key n0 + column > the row's position is invisible (this also covers keys
// past num_kv for real rows). Only tiles reaching past the warp's first row need it.
struct CausalMask {
  int n0;          // key of column 0
  int pos0, pos1;  // positions of this thread's rows g, g + 8
  int first_pos;   // position of the warp's first row
  int t;           // lane & 3
  __device__ __forceinline__ void operator()(float (&s)[kNTiles][4]) const {
    if (n0 + kBN - 1 > first_pos) {
#pragma unroll
      for (int i = 0; i < kNTiles; ++i) {
        const int key = n0 + i * 8 + 2 * t;
        if (key > pos0) s[i][0] = kNegInf;
        if (key + 1 > pos0) s[i][1] = kNegInf;
        if (key > pos1) s[i][2] = kNegInf;
        if (key + 1 > pos1) s[i][3] = kNegInf;
      }
    }
  }
};

template <int HD, bool FP8>
__global__ void __launch_bounds__(kThreads, 2) PrefillKernel(const KernelArgs a) {
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

  const int head = blockIdx.x;
  const int tile = a.num_q_tiles - 1 - static_cast<int>(blockIdx.y);  // heavy tiles first
  const int q0 = tile * kBM;
  const int kvh = head / a.group;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;

  const uint16_t* gq = a.q + static_cast<int64_t>(head) * HD;
  const KvT* gk = static_cast<const KvT*>(a.k) + static_cast<int64_t>(kvh) * HD;
  const KvT* gv = static_cast<const KvT*>(a.v) + static_cast<int64_t>(kvh) * HD;
  // K and V rows [row0, row0 + kBN) into stage `stage`.
  auto load_kv = [&](int stage, int row0, int limit) {
    if constexpr (FP8) {
      LoadTileFp8<HD, kBN>(raw_k + stage * kBN * HD, gk, a.kv_row, row0, limit);
      LoadTileFp8<HD, kBN>(raw_v + stage * kBN * HD, gv, a.kv_row, row0, limit);
    } else {
      LoadTile<HD, kBN>(sk + stage * kBN * HD, gk, a.kv_row, row0, limit);
      LoadTile<HD, kBN>(sv + stage * kBN * HD, gv, a.kv_row, row0, limit);
    }
  };

  // Keys this tile needs: [0, min(num_kv, q_offset + last query + 1)).
  const int q_last = min(q0 + kBM, a.num_q) - 1;
  const int kv_end = min(a.num_kv, a.q_offset + q_last + 1);
  const int n_tiles = (kv_end + kBN - 1) / kBN;

  LoadTile<HD, kBM>(sq, gq + static_cast<int64_t>(q0) * a.q_row, a.q_row, 0, a.num_q - q0);
  load_kv(0, 0, kv_end);
  CpAsyncCommit();

  constexpr int kKSteps = HD / 16;  // k16 steps over the head dim
  constexpr int kDTiles = HD / 8;   // n8 tiles of O

  float o[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {kNegInf, kNegInf};
  float l[2] = {0.f, 0.f};
  uint32_t qf[kKSteps][4];

  const int g = lane >> 2;
  const int t = lane & 3;
  // Positions of this thread's two rows (g, g + 8 of the warp's 16).
  const int pos0 = a.q_offset + q0 + warp * 16 + g;
  const int pos1 = pos0 + 8;
  const int warp_last_pos = a.q_offset + q0 + warp * 16 + 15;

  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < n_tiles) load_kv(stage ^ 1, (j + 1) * kBN, kv_end);
    CpAsyncCommit();
    CpAsyncWait<1>();
    __syncthreads();
    if constexpr (FP8) {
      // The previous tile's readers are past the loop-end barrier; decode this stage.
      DecodeTileFp8<HD, kBN>(raw_k + stage * kBN * HD, dec_k);
      DecodeTileFp8<HD, kBN>(raw_v + stage * kBN * HD, dec_v);
      __syncthreads();
    }
    if (j == 0) LoadQFragments<HD>(sq, warp, lane, qf);
    const int n0 = j * kBN;
    // Whole tile in this warp's future (diagonal tile, early rows): nothing to do.
    if (n0 <= warp_last_pos) {
      const uint16_t* tk = FP8 ? dec_k : sk + stage * kBN * HD;
      const uint16_t* tv = FP8 ? dec_v : sv + stage * kBN * HD;
      const CausalMask mask{n0, pos0, pos1, a.q_offset + q0 + warp * 16, t};
      AttendTile<HD>(qf, tk, tv, a.scale_log2, lane, mask, o, m, l);
    }
    __syncthreads();  // the stage (fp8: and the decoded tiles) is overwritten next iteration
  }
  CpAsyncWait<0>();

  const int row0 = q0 + warp * 16 + g;
  const int row1 = row0 + 8;
  uint16_t* out = a.out + static_cast<int64_t>(head) * HD;
  StoreRows<HD>(o, l, lane, row0 < a.num_q, row1 < a.num_q,
                [&](int r) { return out + static_cast<int64_t>(r == 0 ? row0 : row1) * a.q_row; });
}

}  // namespace hipserve::kernels::prefill_attention_internal
