// Device code of the HiP decode mask estimation (see mask_estimation.h for the contract).
// Numerics mirror kernels/hip/mask_estimation_ref.cc operation by operation: every product and
// sum is an explicit __fmul_rn / __fadd_rn / __fsub_rn so that nvcc cannot contract them into
// FMAs, and each dot product is accumulated sequentially over head_dim by one thread.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace hipserve::kernels::hip_mask_internal {

enum PosMode : int { kPosReal = 0, kPosRelative = 1, kPosChunkIndexed = 2 };

struct StageArgs {
  const uint16_t* q;  // [batch, num_heads, hd]
  const uint16_t* k;  // [rows, num_kv_heads, hd]
  const int64_t* kv_start;
  const int32_t* kv_len;
  const float* rope;  // [positions, hd]
  const int32_t* seq_start_stage;  // may be null
  int num_heads, num_kv_heads, group;
  int n_sink, n_window;
  int pos_mode;
  int stage;
  int chunk_size;   // c_s
  int iterations;   // ceil(log2(c_s))
  int keep;         // keep_chunks(s)
  // Input: stage 0 = the candidate range in chunks of c_s; else the kept list of stage s - 1
  // split into `split` = c_{s-1} / c_s sub-chunks each.
  const int32_t* in_starts;
  const int32_t* in_count;
  const int32_t* in_range_end;
  int in_stride;  // keep_chunks(s - 1)
  int split;
  // Output of this stage.
  int32_t* out_starts;
  int32_t* out_count;
  int32_t* out_range_end;
  float* scores;     // [batch, num_kv_heads, score_stride]
  int score_stride;
};

// The stage input of one (sequence, KV head): chunk i starts at Start(i), i < n, and ends at
// min(Start(i) + chunk_size, range_end). Sub-chunks past range_end can only come from the last
// (largest) kept chunk, so the valid ones are exactly indices [0, n).
struct StageInput {
  int n = 0;
  int32_t range_begin = 0;  // stage 0 only
  int32_t range_end = 0;
  const int32_t* prev = nullptr;  // stage > 0: kept starts of stage s - 1
  bool run = false;               // false: this stage leaves the sequence alone

  __device__ __forceinline__ int32_t Start(const StageArgs& a, int i) const {
    if (prev == nullptr) return range_begin + i * a.chunk_size;
    return prev[i / a.split] + (i % a.split) * a.chunk_size;
  }
};

__device__ __forceinline__ StageInput LoadStageInput(const StageArgs& a, int b, int kvh) {
  StageInput in;
  if (a.seq_start_stage != nullptr) {
    const int ss = a.seq_start_stage[b];
    if (ss < 0 || ss > a.stage) return in;
  }
  in.run = true;
  if (a.stage == 0) {
    const int32_t t = a.kv_len[b];
    in.range_begin = a.n_sink;
    in.range_end = max(a.n_sink, t - 1 - a.n_window);
    in.n = (in.range_end - in.range_begin + a.chunk_size - 1) / a.chunk_size;
    return in;
  }
  const int bk = b * a.num_kv_heads + kvh;
  const int cnt = a.in_count[bk];
  in.range_end = a.in_range_end[bk];
  in.prev = a.in_starts + static_cast<int64_t>(bk) * a.in_stride;
  if (cnt > 0) {
    const int32_t last = in.prev[cnt - 1];
    const int32_t last_end = min(last + a.chunk_size * a.split, in.range_end);
    in.n = (cnt - 1) * a.split + (last_end - last + a.chunk_size - 1) / a.chunk_size;
  }
  return in;
}

__device__ __forceinline__ int QueryPosition(const StageArgs& a, int32_t t, int n_chunks) {
  switch (a.pos_mode) {
    case kPosReal:
      return t - 1;
    case kPosRelative:
      return a.n_window + 1;
    default:
      return min(t - 1, n_chunks + a.n_window);
  }
}

__device__ __forceinline__ float Bf16(uint16_t v) { return __uint_as_float(uint32_t{v} << 16); }

// Unpacks 8 bf16 from a uint4.
__device__ __forceinline__ void Unpack8(const uint4& u, float* f) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// Scores every chunk of the stage input. One group of TPC = 2 * MAXG lanes per chunk: lane j
// (j < MAXG: left probe, else right probe) computes the dot product of query head j % MAXG of
// the group with that probe. The lanes of a side load and rotate their probe key into shared
// memory together (PAIRS rotation pairs each). All loops are warp-uniform (same iteration
// count everywhere), so __syncwarp / shuffles see the whole warp.
template <int HD, int MAXG, int THREADS>
__global__ void __launch_bounds__(THREADS) ScoreKernel(const StageArgs a) {
  constexpr int TPC = 2 * MAXG;
  constexpr int CPB = THREADS / TPC;         // chunks per block
  constexpr int HALF = HD / 2;
  constexpr int PAIRS = HALF / MAXG;         // rotation pairs per lane
  constexpr int KSTRIDE = HD + 4;            // padded row: spreads probe rows over banks
  static_assert(PAIRS % 8 == 0 || PAIRS == 4, "pairs per lane");
  __shared__ __align__(16) float s_q[MAXG][HD];
  __shared__ __align__(16) float s_key[CPB][2][KSTRIDE];

  const int b = blockIdx.z, kvh = blockIdx.y;
  const StageInput in = LoadStageInput(a, b, kvh);
  if (!in.run || in.n <= a.keep || static_cast<int>(blockIdx.x) * CPB >= in.n) return;
  const int32_t t = a.kv_len[b];

  // Query rows of the group, rotated at the stage's query position; row = (0 + rot(q)) / 1
  // as the reference averages its (single) query.
  {
    const int qpos = QueryPosition(a, t, in.n);
    const float* cs = a.rope + static_cast<int64_t>(qpos) * HD;
    const uint16_t* qb = a.q + (static_cast<int64_t>(b) * a.num_heads + kvh * a.group) * HD;
    for (int e = threadIdx.x; e < MAXG * HALF; e += THREADS) {
      const int g = e / HALF, i = e % HALF;
      float o1 = 0.f, o2 = 0.f;
      if (g < a.group) {
        const float x1 = Bf16(qb[g * HD + i]), x2 = Bf16(qb[g * HD + i + HALF]);
        o1 = __fsub_rn(__fmul_rn(x1, cs[i]), __fmul_rn(x2, cs[i + HALF]));
        o2 = __fadd_rn(__fmul_rn(x2, cs[i]), __fmul_rn(x1, cs[i + HALF]));
        o1 = __fdiv_rn(__fadd_rn(0.f, o1), 1.f);
        o2 = __fdiv_rn(__fadd_rn(0.f, o2), 1.f);
      }
      s_q[g][i] = o1;
      s_q[g][i + HALF] = o2;
    }
  }
  __syncthreads();

  const int slot = threadIdx.x / TPC;
  const int j = threadIdx.x % TPC;
  const int side = j / MAXG;  // 0 = left probe, 1 = right probe
  const int g = j % MAXG;
  const int lane = threadIdx.x & 31;
  const int base_lane = lane & ~(TPC - 1);
  const int chunk = blockIdx.x * CPB + slot;
  const bool active = chunk < in.n;
  int32_t lo = 0, hi = 0;
  if (active) {
    lo = in.Start(a, chunk);
    hi = min(lo + a.chunk_size, in.range_end);
  }
  const int64_t row0 = a.kv_start[b];
  const uint16_t* kbase = a.k + static_cast<int64_t>(kvh) * HD;
  const int64_t krow = static_cast<int64_t>(a.num_kv_heads) * HD;
  float* my_key = s_key[slot][side];
  const float* my_q = s_q[g];
  const float kNegInf = -__int_as_float(0x7f800000);
  float best = kNegInf;

  for (int it = 0; it < a.iterations; ++it) {
    const int32_t len = hi - lo;
    const bool descend = active && len >= 2;
    const bool single = active && it == 0 && len == 1;  // a one-key chunk: one left probe
    const int32_t mid = lo + len / 2;
    const int32_t probe = side == 0 ? (single ? lo : lo + (mid - lo) / 2) : mid + (hi - mid) / 2;
    const bool has = descend || (single && side == 0);
    if (has) {
      int rpos;
      switch (a.pos_mode) {
        case kPosReal: rpos = probe; break;
        case kPosRelative: rpos = side; break;
        default: rpos = chunk; break;
      }
      const float* cs = a.rope + static_cast<int64_t>(rpos) * HD;
      const uint16_t* kp = kbase + (row0 + probe) * krow;
      const int p0 = g * PAIRS;
      float x1[PAIRS], x2[PAIRS];
      if constexpr (PAIRS % 8 == 0) {
#pragma unroll
        for (int v = 0; v < PAIRS / 8; ++v) {
          Unpack8(__ldg(reinterpret_cast<const uint4*>(kp + p0) + v), x1 + 8 * v);
          Unpack8(__ldg(reinterpret_cast<const uint4*>(kp + HALF + p0) + v), x2 + 8 * v);
        }
      } else {
        const uint2 u1 = __ldg(reinterpret_cast<const uint2*>(kp + p0));
        const uint2 u2 = __ldg(reinterpret_cast<const uint2*>(kp + HALF + p0));
        const uint32_t w1[2] = {u1.x, u1.y}, w2[2] = {u2.x, u2.y};
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          x1[2 * i] = __uint_as_float(w1[i] << 16);
          x1[2 * i + 1] = __uint_as_float(w1[i] & 0xffff0000u);
          x2[2 * i] = __uint_as_float(w2[i] << 16);
          x2[2 * i + 1] = __uint_as_float(w2[i] & 0xffff0000u);
        }
      }
#pragma unroll
      for (int i = 0; i < PAIRS; ++i) {
        const float c = __ldg(cs + p0 + i), s = __ldg(cs + HALF + p0 + i);
        my_key[p0 + i] = __fsub_rn(__fmul_rn(x1[i], c), __fmul_rn(x2[i], s));
        my_key[HALF + p0 + i] = __fadd_rn(__fmul_rn(x2[i], c), __fmul_rn(x1[i], s));
      }
    }
    __syncwarp();
    float dot = kNegInf;
    if (has && g < a.group) {
      float acc = 0.f;
      const float4* q4 = reinterpret_cast<const float4*>(my_q);
      const float4* k4 = reinterpret_cast<const float4*>(my_key);
#pragma unroll 8
      for (int c4 = 0; c4 < HD / 4; ++c4) {
        const float4 qv = q4[c4], kv = k4[c4];
        acc = __fadd_rn(acc, __fmul_rn(qv.x, kv.x));
        acc = __fadd_rn(acc, __fmul_rn(qv.y, kv.y));
        acc = __fadd_rn(acc, __fmul_rn(qv.z, kv.z));
        acc = __fadd_rn(acc, __fmul_rn(qv.w, kv.w));
      }
      if (acc == acc) dot = acc;  // NaN never wins (counts as -inf)
    }
    // Probe score = max over the group's heads (fmaxf: equal values may differ only in the
    // sign of zero, which the selection ignores).
#pragma unroll
    for (int o = 1; o < MAXG; o <<= 1) dot = fmaxf(dot, __shfl_xor_sync(0xffffffffu, dot, o));
    const float sl = __shfl_sync(0xffffffffu, dot, base_lane);
    const float sr = __shfl_sync(0xffffffffu, dot, base_lane + MAXG);
    if (descend) {
      best = fmaxf(best, fmaxf(sl, sr));
      if (sl >= sr) {
        hi = mid;
      } else {
        lo = mid;
      }
    } else if (single) {
      best = sl;
      hi = lo;  // done
    }
    __syncwarp();
  }
  if (active && j == 0) {
    // +0.f turns -0 into +0: the selection compares -0 and +0 as equal, like the reference.
    a.scores[(static_cast<int64_t>(b) * a.num_kv_heads + kvh) * a.score_stride + chunk] =
        __fadd_rn(best, 0.f);
  }
}

// Monotone map of a float (never NaN here) to uint32: larger float -> larger key.
__device__ __forceinline__ uint32_t OrderKey(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Inclusive scan of v over the block (THREADS threads). s_warp: >= THREADS / 32 ints.
template <int THREADS>
__device__ __forceinline__ uint32_t BlockInclusiveScan(uint32_t v, uint32_t* s_warp,
                                                       uint32_t* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  if (lane == 31) s_warp[warp] = v;
  __syncthreads();
  if (warp == 0) {
    uint32_t w = lane < THREADS / 32 ? s_warp[lane] : 0u;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    if (lane < THREADS / 32) s_warp[lane] = w;
  }
  __syncthreads();
  if (warp > 0) v += s_warp[warp - 1];
  *total = s_warp[THREADS / 32 - 1];
  __syncthreads();  // s_warp may be reused right after
  return v;
}

// Keeps the `keep` best chunks of the stage input of one (sequence, KV head) and writes them in
// ascending position order. Radix select (4 passes of 8 bits, most significant first) finds the
// keep-th largest key U; then every chunk with key > U is kept, plus the lowest-index chunks
// with key == U until `keep` are kept.
template <int THREADS>
__global__ void __launch_bounds__(THREADS) SelectKernel(const StageArgs a) {
  __shared__ uint32_t s_hist[256];
  __shared__ uint32_t s_warp[32];
  __shared__ uint32_t s_sel[2];  // bin, remaining
  const int b = blockIdx.y, kvh = blockIdx.x;
  const StageInput in = LoadStageInput(a, b, kvh);
  if (!in.run) return;
  const int bk = b * a.num_kv_heads + kvh;
  int32_t* out = a.out_starts + static_cast<int64_t>(bk) * a.keep;
  if (threadIdx.x == 0) {
    a.out_count[bk] = min(in.n, a.keep);
    a.out_range_end[bk] = in.range_end;
  }
  if (in.n <= a.keep) {  // everything survives (nothing was scored)
    for (int i = threadIdx.x; i < in.n; i += THREADS) out[i] = in.Start(a, i);
    return;
  }
  const float* sc = a.scores + static_cast<int64_t>(bk) * a.score_stride;
  uint32_t prefix = 0, mask = 0, remaining = static_cast<uint32_t>(a.keep);
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += THREADS) s_hist[i] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < in.n; i += THREADS) {
      const uint32_t u = OrderKey(sc[i]);
      if ((u & mask) == prefix) atomicAdd(&s_hist[(u >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      uint32_t h[8], sum = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += (h[i] = s_hist[lane * 8 + i]);
      // Suffix sum over lanes: count of keys in bins >= lane * 8.
      uint32_t suf = sum;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const uint32_t n = __shfl_down_sync(0xffffffffu, suf, o);
        if (lane + o < 32) suf += n;
      }
      const uint32_t ballot = __ballot_sync(0xffffffffu, suf >= remaining);
      const int top = 31 - __clz(ballot);  // highest lane whose suffix reaches `remaining`
      if (lane == top) {
        uint32_t above = suf - sum;
        for (int i = 7; i >= 0; --i) {
          if (above + h[i] >= remaining) {
            s_sel[0] = static_cast<uint32_t>(lane * 8 + i);
            s_sel[1] = remaining - above;
            break;
          }
          above += h[i];
        }
      }
    }
    __syncthreads();
    prefix |= s_sel[0] << shift;
    mask |= 255u << shift;
    remaining = s_sel[1];
    __syncthreads();
  }
  // prefix = U; `remaining` chunks equal to U are kept (the lowest indices).
  const uint32_t need_eq = remaining;
  uint32_t gt_before = 0, eq_before = 0;
  for (int base = 0; base < in.n; base += THREADS) {
    const int i = base + threadIdx.x;
    uint32_t gt = 0, eq = 0;
    if (i < in.n) {
      const uint32_t u = OrderKey(sc[i]);
      gt = u > prefix;
      eq = u == prefix;
    }
    uint32_t total;
    const uint32_t incl = BlockInclusiveScan<THREADS>((gt << 16) | eq, s_warp, &total);
    const uint32_t excl = incl - ((gt << 16) | eq);
    const uint32_t my_gt = gt_before + (excl >> 16), my_eq = eq_before + (excl & 0xffffu);
    if (gt || (eq && my_eq < need_eq)) out[my_gt + min(my_eq, need_eq)] = in.Start(a, i);
    gt_before += total >> 16;
    eq_before += total & 0xffffu;
  }
}

}  // namespace hipserve::kernels::hip_mask_internal
