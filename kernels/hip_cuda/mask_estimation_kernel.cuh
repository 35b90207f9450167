// Device code of the HiP decode mask estimation (see mask_estimation.h for the contract).
// Numerics mirror kernels/hip/mask_estimation_ref.cc operation by operation: every product and
// sum is an explicit __fmul_rn / __fadd_rn / __fsub_rn so that nvcc cannot contract them into
// FMAs, and each dot product is accumulated sequentially over head_dim by one thread.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/bf16_pack.cuh"
#include "kernels/hip_cuda/mask_key_load.cuh"

namespace hipserve::kernels::hip_mask_internal {

enum PosMode : int { kPosReal = 0, kPosRelative = 1, kPosChunkIndexed = 2 };
// Stage representatives (Stage1Representatives, in the same order).
enum RepKind : int { kRepProbes = 0, kRepPageBound = 1, kRepBlockMeans = 2, kRepExact = 3 };

struct StageArgs {
  const uint16_t* q;        // [batch, num_heads, hd]
  KeyArgs keys;             // probe keys: contiguous [rows, num_kv_heads, hd] bf16 / fp8, or tiered
  const int64_t* kv_start;  // contiguous keys only (null when tiered)
  const int32_t* kv_len;
  const float* rope;               // [positions, hd]
  const int32_t* seq_start_stage;  // may be null
  int num_heads, num_kv_heads, group;
  int n_sink, n_window;
  int pos_mode;
  int stage;
  int chunk_size;  // c_s
  int iterations;  // ceil(log2(c_s))
  int keep;        // keep_chunks(s)
  // How the stage scores its chunks (RepKind; PruningSpec::representatives(s)). Prefill
  // leaves it 0 (probes). page_size / mean_size: the summary granularity of this stage
  // (mask_estimation.h, "Later stages"); exact_lanes: lanes per chunk of ExactScoreKernel.
  int reps;
  int page_size, mean_size;
  int exact_lanes;
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
  float* scores;  // [batch, num_kv_heads, score_stride]
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

// One chunk's binary descent (HIP.md 2), shared by the decode and prefill score kernels. Two
// lanes (threadIdx.x and threadIdx.x ^ 1) own a chunk: side 0 probes the left half, side 1 the
// right. Per step: Step(it) sets this lane's probe; every lane of the warp then calls
// Decide(score of its probe, -inf without one), which keeps the half whose probe scored higher
// (left on ties) and the best score seen. Store() writes the chunk's score.
struct ChunkDescent {
  int side, chunk;
  bool active;
  int32_t lo = 0, hi = 0;
  float best;
  // Set by Step:
  bool descend = false, single = false, has = false;
  int32_t mid = 0, probe = 0;

  __device__ __forceinline__ ChunkDescent(const StageArgs& a, const StageInput& in,
                                          int chunks_per_block)
      : side(threadIdx.x & 1),
        chunk(static_cast<int>(blockIdx.x) * chunks_per_block + (threadIdx.x >> 1)),
        active(chunk < in.n) {
    best = -__int_as_float(0x7f800000);
    if (active) {
      lo = in.Start(a, chunk);
      hi = min(lo + a.chunk_size, in.range_end);
    }
  }

  __device__ __forceinline__ void Step(int it) {
    const int32_t len = hi - lo;
    descend = active && len >= 2;
    single = active && it == 0 && len == 1;  // a one-key chunk: one left probe
    mid = lo + len / 2;
    probe = side == 0 ? (single ? lo : lo + (mid - lo) / 2) : mid + (hi - mid) / 2;
    has = descend || (single && side == 0);
  }

  // Called by every lane of the warp (a shuffle).
  __device__ __forceinline__ void Decide(float dot) {
    const float other = __shfl_xor_sync(0xffffffffu, dot, 1);
    const float sl = side == 0 ? dot : other;
    const float sr = side == 0 ? other : dot;
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
  }

  // The score of list `list` (= sequence or plan row * num_kv_heads + kvh), from side 0.
  __device__ __forceinline__ void Store(const StageArgs& a, int64_t list) const {
    if (active && side == 0) {
      // +0.f turns -0 into +0: the selection compares -0 and +0 as equal, like the reference.
      a.scores[list * a.score_stride + chunk] = __fadd_rn(best, 0.f);
    }
  }
};

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

// The group's query rows of sequence b, rotated at `qpos`, into s_q (rows g >= group are zero);
// row = (0 + rot(q)) / 1 as the reference averages its (single) query. Callers sync after.
template <int HD, int MAXG, int THREADS>
__device__ __forceinline__ void LoadQueryRows(const StageArgs& a, int b, int kvh, int qpos,
                                              float (*s_q)[HD]) {
  constexpr int HALF = HD / 2;
  const float* cs = a.rope + static_cast<int64_t>(qpos) * HD;
  const uint16_t* qb = a.q + (static_cast<int64_t>(b) * a.num_heads + kvh * a.group) * HD;
  for (int e = threadIdx.x; e < MAXG * HALF; e += THREADS) {
    const int g = e / HALF, i = e % HALF;
    float o1 = 0.f, o2 = 0.f;
    if (g < a.group) {
      const float x1 = cuda_util::Bf16BitsToFloat(qb[g * HD + i]),
                  x2 = cuda_util::Bf16BitsToFloat(qb[g * HD + i + HALF]);
      o1 = __fsub_rn(__fmul_rn(x1, cs[i]), __fmul_rn(x2, cs[i + HALF]));
      o2 = __fadd_rn(__fmul_rn(x2, cs[i]), __fmul_rn(x1, cs[i + HALF]));
      o1 = __fdiv_rn(__fadd_rn(0.f, o1), 1.f);
      o2 = __fdiv_rn(__fadd_rn(0.f, o2), 1.f);
    }
    s_q[g][i] = o1;
    s_q[g][i + HALF] = o2;
  }
}

// The probe score of a key held as packed bf16 pairs (kw, element 2i in the low half of kw[i])
// rotated with the RoPE row `rope_row`: max over the group's heads, in head order, of
// row_g . R k, each sum sequential over head_dim in fp32 (one accumulator per head: independent
// chains, so the sequential sums overlap); NaN never wins, -inf when every dot is NaN. The rows
// live in shared memory and every lane of a warp reads the same address (broadcast).
template <int HD, int MAXG>
__device__ __forceinline__ float RotatedKeyScore(const float (*s_q)[HD], int group,
                                                 const uint32_t (&kw)[HD / 2],
                                                 const float* rope_row) {
  constexpr int HALF = HD / 2;
  const float4* cs4 = reinterpret_cast<const float4*>(rope_row);
  float acc[MAXG];
#pragma unroll
  for (int g = 0; g < MAXG; ++g) acc[g] = 0.f;
    // Element c of the rotated key, c in [0, HD), in order; cos / sin of pair c % HALF.
#pragma unroll
  for (int pass = 0; pass < 2; ++pass) {
#pragma unroll
    for (int c4 = 0; c4 < HALF / 4; ++c4) {
      const float4 cv = __ldg(cs4 + c4), sv = __ldg(cs4 + HALF / 4 + c4);
      const float cc[4] = {cv.x, cv.y, cv.z, cv.w}, ss[4] = {sv.x, sv.y, sv.z, sv.w};
      float r[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = c4 * 4 + e;  // pair index
        const uint32_t w1 = kw[i >> 1], w2 = kw[(i + HALF) >> 1];
        const float x1 = cuda_util::Bf16PairElemToFloat(w1, i & 1);
        const float x2 = cuda_util::Bf16PairElemToFloat(w2, i & 1);
        r[e] = pass == 0 ? __fsub_rn(__fmul_rn(x1, cc[e]), __fmul_rn(x2, ss[e]))
                         : __fadd_rn(__fmul_rn(x2, cc[e]), __fmul_rn(x1, ss[e]));
      }
#pragma unroll
      for (int g = 0; g < MAXG; ++g) {
        const float4 qv = *reinterpret_cast<const float4*>(&s_q[g][pass * HALF + c4 * 4]);
        acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.x, r[0]));
        acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.y, r[1]));
        acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.z, r[2]));
        acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.w, r[3]));
      }
    }
  }
  float dot = -__int_as_float(0x7f800000);
#pragma unroll
  for (int g = 0; g < MAXG; ++g) {
    if (g < group && acc[g] > dot) dot = acc[g];
  }
  return dot;
}

// The probe score of key `key` of (sequence, KV head) rotated at `rpos` (LoadProbeKey's
// addressing: `row0` = the sequence's first row of contiguous keys, `rows` its tiered tables).
template <int HD, int MAXG>
__device__ __forceinline__ float KeyProbeScore(const StageArgs& a, const float (*s_q)[HD],
                                               const kv_access::TieredRows& rows, int64_t row0,
                                               int kvh, int32_t key, int rpos) {
  uint32_t kw[HD / 2];
  LoadProbeKey<HD>(a.keys, rows, (row0 + key) * a.num_kv_heads + kvh, key, kw);
  return RotatedKeyScore<HD, MAXG>(s_q, a.group, kw, a.rope + static_cast<int64_t>(rpos) * HD);
}

// A key's scoring position when every key of a chunk is scored (exact scores, open pages, block
// means): the left probe's, i.e. 0 in kRelative, the chunk's index in kChunkIndexed, the key's
// own position in kReal (mask_estimation.h).
__device__ __forceinline__ int KeyScoringPosition(const StageArgs& a, int32_t key, int chunk) {
  switch (a.pos_mode) {
    case kPosReal:
      return key;
    case kPosRelative:
      return 0;
    default:
      return chunk;
  }
}

// Scores every chunk of the stage input by binary descent (kRepProbes). Its body keeps its own
// copy of RotatedKeyScore's arithmetic: calling the helpers costs this kernel ~10 registers.
// Two lanes per chunk (lane parity: 0 = left probe, 1 = right probe); each lane keeps its probe key
// in registers (packed bf16), rotates it element by element and accumulates the dot products of all
// the group's query heads at once (one fp32 accumulator per head: independent chains, so the
// sequential sums overlap). Query rows live in shared memory and every lane of a warp reads the
// same address (broadcast). All loops are warp-uniform (same iteration count everywhere), so the
// shuffles see the whole warp.
template <int HD, int MAXG, int THREADS>
__global__ void __launch_bounds__(THREADS) ScoreKernel(const StageArgs a) {
  constexpr int CPB = THREADS / 2;  // chunks per block
  constexpr int HALF = HD / 2;
  __shared__ __align__(16) float s_q[MAXG][HD];

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
        const float x1 = cuda_util::Bf16BitsToFloat(qb[g * HD + i]),
                    x2 = cuda_util::Bf16BitsToFloat(qb[g * HD + i + HALF]);
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

  ChunkDescent d(a, in, CPB);
  const int side = d.side, chunk = d.chunk;  // side 0 = left probe, 1 = right probe
  const int64_t row0 = a.keys.source == kKeysTiered ? 0 : a.kv_start[b];
  const kv_access::TieredRows rows = ProbeRows(a.keys, b, a.num_kv_heads, kvh);
  const float kNegInf = -__int_as_float(0x7f800000);

  for (int it = 0; it < a.iterations; ++it) {
    d.Step(it);
    const int32_t probe = d.probe;
    const bool has = d.has;
    float dot = kNegInf;
    if (has) {
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
      const float4* cs4 = reinterpret_cast<const float4*>(a.rope + static_cast<int64_t>(rpos) * HD);
      uint32_t kw[HD / 2];  // packed bf16 pairs: element 2i in the low half of kw[i]
      LoadProbeKey<HD>(a.keys, rows, (row0 + probe) * a.num_kv_heads + kvh, probe, kw);
      float acc[MAXG];
#pragma unroll
      for (int g = 0; g < MAXG; ++g) acc[g] = 0.f;
        // Element c of the rotated key, c in [0, HD), in order; cos / sin of pair c % HALF.
#pragma unroll
      for (int pass = 0; pass < 2; ++pass) {
#pragma unroll
        for (int c4 = 0; c4 < HALF / 4; ++c4) {
          const float4 cv = __ldg(cs4 + c4), sv = __ldg(cs4 + HALF / 4 + c4);
          const float cc[4] = {cv.x, cv.y, cv.z, cv.w}, ss[4] = {sv.x, sv.y, sv.z, sv.w};
          float r[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = c4 * 4 + e;  // pair index
            const uint32_t w1 = kw[i >> 1], w2 = kw[(i + HALF) >> 1];
            const float x1 = cuda_util::Bf16PairElemToFloat(w1, i & 1);
            const float x2 = cuda_util::Bf16PairElemToFloat(w2, i & 1);
            r[e] = pass == 0 ? __fsub_rn(__fmul_rn(x1, cc[e]), __fmul_rn(x2, ss[e]))
                             : __fadd_rn(__fmul_rn(x2, cc[e]), __fmul_rn(x1, ss[e]));
          }
#pragma unroll
          for (int g = 0; g < MAXG; ++g) {
            const float4 qv = *reinterpret_cast<const float4*>(&s_q[g][pass * HALF + c4 * 4]);
            acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.x, r[0]));
            acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.y, r[1]));
            acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.z, r[2]));
            acc[g] = __fadd_rn(acc[g], __fmul_rn(qv.w, r[3]));
          }
        }
      }
      // Probe score = max over the group's heads in head order; NaN never wins.
#pragma unroll
      for (int g = 0; g < MAXG; ++g) {
        if (g < a.group && acc[g] > dot) dot = acc[g];
      }
    }
    d.Decide(dot);
  }
  d.Store(a, static_cast<int64_t>(b) * a.num_kv_heads + kvh);
}

// kRepExact: chunk score = max over the chunk's keys of their probe scores. A team of
// a.exact_lanes lanes (a power of two <= 32, so a team never straddles a warp) owns a chunk;
// lane l scores keys lo + l, lo + l + exact_lanes, ... with the probe kernel's arithmetic and
// the team takes the max by shuffles (fmaxf: order-free, NaN-free since no key score is NaN;
// -0 / +0 are merged by Store's + 0). One probe per key: K1 keys at stage 2 of the "3K" preset,
// K2 at stage 3, the whole candidate range at stage 1.
template <int HD, int MAXG, int THREADS>
__global__ void __launch_bounds__(THREADS) ExactScoreKernel(const StageArgs a) {
  __shared__ __align__(16) float s_q[MAXG][HD];
  const int lanes = a.exact_lanes;
  const int cpb = THREADS / lanes;
  const int b = blockIdx.z, kvh = blockIdx.y;
  const StageInput in = LoadStageInput(a, b, kvh);
  if (!in.run || in.n <= a.keep || static_cast<int>(blockIdx.x) * cpb >= in.n) return;
  const int32_t t = a.kv_len[b];
  LoadQueryRows<HD, MAXG, THREADS>(a, b, kvh, QueryPosition(a, t, in.n), s_q);
  __syncthreads();

  const int chunk = static_cast<int>(blockIdx.x) * cpb + static_cast<int>(threadIdx.x) / lanes;
  const int sub = static_cast<int>(threadIdx.x) % lanes;
  const int64_t row0 = a.keys.source == kKeysTiered ? 0 : a.kv_start[b];
  const kv_access::TieredRows rows = ProbeRows(a.keys, b, a.num_kv_heads, kvh);
  float best = -__int_as_float(0x7f800000);
  if (chunk < in.n) {
    const int32_t lo = in.Start(a, chunk);
    const int32_t hi = min(lo + a.chunk_size, in.range_end);
    for (int32_t j = lo + sub; j < hi; j += lanes) {
      best = fmaxf(best, KeyProbeScore<HD, MAXG>(a, s_q, rows, row0, kvh, j,
                                                 KeyScoringPosition(a, j, chunk)));
    }
  }
  for (int o = lanes / 2; o >= 1; o >>= 1) {
    best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, o));
  }
  if (sub == 0 && chunk < in.n) {
    const int64_t list = static_cast<int64_t>(b) * a.num_kv_heads + kvh;
    a.scores[list * a.score_stride + chunk] = __fadd_rn(best, 0.f);  // -0 -> +0
  }
}

// kRepPageBound and kRepBlockMeans, with the summaries computed on the fly from the keys (no
// summary array): one warp per chunk. The chunk's units (full pages of a.page_size keys aligned
// to absolute positions, or blocks of a.mean_size keys from the chunk start) go to teams of
// HD / 8 lanes (2 teams a warp at head_dim 128, 4 at 64). Phase 1: each lane of a team owns 8
// elements and folds the unit's keys into them in key order (min / max as the reference's
// std::min / std::max, or the fp32 sum then / count), into shared memory. Phase 2: lane g < group
// of the team scores row g against the summary, sequentially over head_dim:
//   page bound, kRelative:     sum_c max(r_c * max_c, r_c * min_c)          (PageBound)
//   page bound, kChunkIndexed: the same with r = R(-chunk index) row        (RotateInverse)
//   page bound, kReal:         sum over pairs |r pair| * |(M_c, M_c+half)|  (PageBoundAnyRotation)
//   block means:               row . R(pos) mean, pos = the block's middle key's scoring position
// An open page (not full: only the chunk's last page can be) is scored key by key like
// kRepExact, by the whole warp. Chunk score = max over units and rows (fmaxf; NaN never wins).
template <int HD, int MAXG, int THREADS>
__global__ void __launch_bounds__(THREADS) SummaryScoreKernel(const StageArgs a) {
  constexpr int WARPS = THREADS / 32;
  constexpr int HALF = HD / 2;
  constexpr int TL = HD / 8;   // lanes per team
  constexpr int NT = 32 / TL;  // teams per warp
  __shared__ __align__(16) float s_q[MAXG][HD];
  __shared__ __align__(16) float s_stat[WARPS][NT][2][HD];  // [0] = min or mean, [1] = max

  const int b = blockIdx.z, kvh = blockIdx.y;
  const StageInput in = LoadStageInput(a, b, kvh);
  if (!in.run || in.n <= a.keep || static_cast<int>(blockIdx.x) * WARPS >= in.n) return;
  const int32_t t = a.kv_len[b];
  LoadQueryRows<HD, MAXG, THREADS>(a, b, kvh, QueryPosition(a, t, in.n), s_q);
  __syncthreads();

  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int team = lane / TL, tl = lane % TL;
  const int chunk = static_cast<int>(blockIdx.x) * WARPS + warp;  // warp-uniform
  const int64_t row0 = a.keys.source == kKeysTiered ? 0 : a.kv_start[b];
  const kv_access::TieredRows rows = ProbeRows(a.keys, b, a.num_kv_heads, kvh);
  const bool pages = a.reps == kRepPageBound;
  float best = -__int_as_float(0x7f800000);

  int32_t lo = 0, hi = 0, p0 = 0;
  int units = 0;
  bool open = false;
  if (chunk < in.n) {
    lo = in.Start(a, chunk);
    hi = min(lo + a.chunk_size, in.range_end);
    if (pages) {
      const int g = a.page_size;
      p0 = lo / g;
      const int32_t p1 = (hi - 1) / g;
      open = p1 * g + g > t;  // the last page is not full yet
      units = p1 - p0 + 1 - (open ? 1 : 0);
    } else {
      units = (hi - lo + a.mean_size - 1) / a.mean_size;
    }
  }
  float(&st)[2][HD] = s_stat[warp][team];
  for (int base = 0; base < units; base += NT) {  // warp-uniform
    const int u = base + team;
    const bool mine = u < units;
    int32_t first = 0;
    int count = 0;
    if (mine) {
      if (pages) {
        first = (p0 + u) * a.page_size;
        count = a.page_size;
      } else {
        first = lo + u * a.mean_size;
        count = min(a.mean_size, hi - first);
      }
      float s0[8], s1[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) s0[e] = s1[e] = 0.f;
#pragma unroll 4
      for (int j = 0; j < count; ++j) {
        float f[8];
        LoadKeyOctet<HD>(a.keys, rows, (row0 + first + j) * a.num_kv_heads + kvh, first + j, 8 * tl,
                         f);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          if (!pages) {
            s0[e] = __fadd_rn(s0[e], f[e]);
          } else if (j == 0) {
            s0[e] = s1[e] = f[e];
          } else {
            s0[e] = f[e] < s0[e] ? f[e] : s0[e];  // std::min(mn, k)
            s1[e] = s1[e] < f[e] ? f[e] : s1[e];  // std::max(mx, k)
          }
        }
      }
      if (!pages) {
        const float n = static_cast<float>(count);
#pragma unroll
        for (int e = 0; e < 8; ++e) s0[e] = __fdiv_rn(s0[e], n);
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        st[0][8 * tl + e] = s0[e];
        st[1][8 * tl + e] = s1[e];
      }
    }
    __syncwarp();
    if (mine && tl < a.group) {
      const float* r = s_q[tl];
      const float* mn = st[0];
      const float* mx = st[1];
      float sum = 0.f;
      if (!pages) {
        // Block means: the mean rotated at its block's middle key's scoring position.
        const int rpos = KeyScoringPosition(a, first + (count - 1) / 2, chunk);
        const float* cs = a.rope + static_cast<int64_t>(rpos) * HD;
        for (int c = 0; c < HD; ++c) {
          const int i = c < HALF ? c : c - HALF;
          const float cv = __ldg(cs + i), sv = __ldg(cs + HALF + i);
          const float x1 = mn[i], x2 = mn[i + HALF];
          const float k = c < HALF ? __fsub_rn(__fmul_rn(x1, cv), __fmul_rn(x2, sv))
                                   : __fadd_rn(__fmul_rn(x2, cv), __fmul_rn(x1, sv));
          sum = __fadd_rn(sum, __fmul_rn(r[c], k));
        }
      } else if (a.pos_mode == kPosReal) {
        for (int c = 0; c < HALF; ++c) {
          const float m1 = fabsf(mn[c]) < fabsf(mx[c]) ? fabsf(mx[c]) : fabsf(mn[c]);
          const float m2 =
              fabsf(mn[c + HALF]) < fabsf(mx[c + HALF]) ? fabsf(mx[c + HALF]) : fabsf(mn[c + HALF]);
          const float qn =
              __fsqrt_rn(__fadd_rn(__fmul_rn(r[c], r[c]), __fmul_rn(r[c + HALF], r[c + HALF])));
          const float kn = __fsqrt_rn(__fadd_rn(__fmul_rn(m1, m1), __fmul_rn(m2, m2)));
          sum = __fadd_rn(sum, __fmul_rn(qn, kn));
        }
      } else {
        const bool unrotate = a.pos_mode == kPosChunkIndexed;
        const float* cs = a.rope + static_cast<int64_t>(chunk) * HD;
        for (int c = 0; c < HD; ++c) {
          float q = r[c];
          if (unrotate) {  // RopeTable::RotateInverse: the sine negated
            const int i = c < HALF ? c : c - HALF;
            const float cv = __ldg(cs + i), sv = -__ldg(cs + HALF + i);
            q = c < HALF ? __fsub_rn(__fmul_rn(r[i], cv), __fmul_rn(r[i + HALF], sv))
                         : __fadd_rn(__fmul_rn(r[i + HALF], cv), __fmul_rn(r[i], sv));
          }
          const float hi_term = __fmul_rn(q, mx[c]), lo_term = __fmul_rn(q, mn[c]);
          sum = __fadd_rn(sum, hi_term < lo_term ? lo_term : hi_term);  // std::max
        }
      }
      best = fmaxf(best, sum);
    }
    __syncwarp();
  }
  if (open) {  // warp-uniform: the open page's keys inside the chunk, exactly
    const int32_t from = max(lo, (hi - 1) / a.page_size * a.page_size);
    for (int32_t j = from + lane; j < hi; j += 32) {
      best = fmaxf(best, KeyProbeScore<HD, MAXG>(a, s_q, rows, row0, kvh, j,
                                                 KeyScoringPosition(a, j, chunk)));
    }
  }
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, o));
  if (lane == 0 && chunk < in.n) {
    const int64_t list = static_cast<int64_t>(b) * a.num_kv_heads + kvh;
    a.scores[list * a.score_stride + chunk] = __fadd_rn(best, 0.f);  // -0 -> +0
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
      const bool mine = (u & mask) == prefix;
      const uint32_t bin = mine ? (u >> shift) & 255u : 256u;
      // Scores cluster in few bins: one atomic per distinct bin and warp.
      const uint32_t active = __activemask();
      const uint32_t peers = __match_any_sync(active, bin);
      if (mine && (threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&s_hist[bin], __popc(peers));
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
