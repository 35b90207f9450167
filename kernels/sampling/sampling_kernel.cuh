// Device code for SampleGpu (see sampling.h for the contract and the method). Included only by
// sampling.cu.
#pragma once

#include <cstdint>

#include "kernels/sampling/sampling.h"

namespace hipserve::kernels::sampling_internal {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;                // 8-bit radix digits
constexpr double kFixedScale = 0x1.0p40;  // weights in (0, 1] -> 40-bit fixed point

// ---- The counter-based RNG, bit for bit SamplingRandomBits / SamplingUniform. ----
__device__ __forceinline__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
__device__ __forceinline__ double Uniform(uint64_t seed, uint64_t sample_index) {
  const uint64_t bits =
      SplitMix64(SplitMix64(seed) ^ SplitMix64(sample_index + 0x632BE59BD9B4E019ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

// Sort key: ascending key == SampleRef's order (higher logit first, then lower id) when
// `sorted`, else the id (SampleRef's unsorted candidate order). -0 is folded into +0 because
// SampleRef compares logits with != (they tie).
__device__ __forceinline__ uint64_t KeyOf(float l, int i, bool sorted, int id_bits) {
  if (!sorted) return static_cast<uint64_t>(i);
  if (l == 0.f) l = 0.f;
  const uint32_t u = __float_as_uint(l);
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << id_bits) | static_cast<uint64_t>(i);
}

// SampleRef's weight exp((l - max) / T) in fp64, as 40-bit fixed point.
__device__ __forceinline__ uint64_t WeightFixed(float l, double max_logit, double temperature) {
  return __double2ull_rn(exp((static_cast<double>(l) - max_logit) / temperature) * kFixedScale);
}

enum class Target {
  kTopK,  // measure = count; first key with cumulative count >= k
  kTopP,  // measure = weight; first key with cumulative weight >= ceil(top_p * total)
  kDraw,  // measure = weight; first key with cumulative weight > floor(u * total)
};

struct Shared {
  uint64_t measure[kBins];
  uint32_t count[kBins];
  int32_t last[kBins];  // largest id in the bin (the only one when count == 1)
  // pass-1 reductions
  float warp_max[kWarps];
  int warp_arg[kWarps];
  double warp_sum[kWarps];
  int warp_finite[kWarps];
  int warp_bad[kWarps];
  // broadcasts
  float max_logit;
  int argmax;
  double log_z;
  int finite;
  int bad;
  uint64_t prefix;
  uint64_t cum;
  uint64_t target;
  int done_index;  // >= 0: the selected element's id
  int fail;
};

struct RowContext {
  const float* row;
  int vocab;
  bool sorted;
  int id_bits;
  double max_logit;
  double temperature;
};

__device__ __forceinline__ bool Reaches(uint64_t cum, uint64_t target, bool strict) {
  return strict ? cum > target : cum >= target;
}

// Radix selection among the finite elements whose key <= bound (see sampling.h). Returns the
// selected element's id, or -1 on an internal inconsistency. Block-uniform; all threads call it.
__device__ int Select(const RowContext& rc, uint64_t bound, Target kind, double param, Shared& sh) {
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const bool by_count = kind == Target::kTopK;
  const bool strict = kind == Target::kDraw;
  const int nbits = rc.sorted ? 32 + rc.id_bits : rc.id_bits;
  const int passes = (nbits + 7) / 8;
  __syncthreads();  // every thread is done reading the previous selection's broadcasts
  if (tid == 0) {
    sh.prefix = 0;
    sh.cum = 0;
    sh.done_index = -1;
    sh.fail = 0;
  }
  for (int pass = 0; pass < passes; ++pass) {
    const int shift = (passes - 1 - pass) * 8;
    const uint64_t hi_mask = shift + 8 >= 64 ? 0 : ~0ull << (shift + 8);
    for (int b = tid; b < kBins; b += blockDim.x) {
      sh.measure[b] = 0;
      sh.count[b] = 0;
      sh.last[b] = -1;
    }
    __syncthreads();
    const uint64_t prefix = sh.prefix;
    // Histogram. Every lane runs every iteration so the warp primitives see a full mask; lanes
    // with the same digit are aggregated first (the first digits of logit keys are few, and
    // shared atomics on one address would serialise).
    for (int base = 0; base < rc.vocab; base += blockDim.x) {
      const int i = base + tid;
      uint32_t digit = 0xffffffffu;  // "not taking part"
      uint64_t m = 0;
      if (i < rc.vocab) {
        const float l = rc.row[i];
        if (l != -INFINITY) {
          const uint64_t key = KeyOf(l, i, rc.sorted, rc.id_bits);
          if (key <= bound && (key & hi_mask) == prefix) {
            digit = static_cast<uint32_t>(key >> shift) & (kBins - 1);
            m = by_count ? 1 : WeightFixed(l, rc.max_logit, rc.temperature);
          }
        }
      }
      const unsigned peers = __match_any_sync(0xffffffffu, digit);
      // m <= 2^40: split so that 32 lanes' sums of each half fit in 32 bits.
      const uint32_t lo = __reduce_add_sync(peers, static_cast<uint32_t>(m & 0xfffffu));
      const uint32_t hi = __reduce_add_sync(peers, static_cast<uint32_t>(m >> 20));
      if (digit != 0xffffffffu && lane == __ffs(peers) - 1) {
        atomicAdd(reinterpret_cast<unsigned long long*>(&sh.measure[digit]),
                  static_cast<unsigned long long>((static_cast<uint64_t>(hi) << 20) + lo));
        atomicAdd(&sh.count[digit], static_cast<uint32_t>(__popc(peers)));
        atomicMax(&sh.last[digit], i);  // atomic only to be race-free; read when count == 1
      }
    }
    __syncthreads();
    if (warp == 0) {
      uint64_t local[kBins / 32];
      uint64_t sum = 0;
#pragma unroll
      for (int j = 0; j < kBins / 32; ++j) {
        const int b = lane * (kBins / 32) + j;
        local[j] = by_count ? sh.count[b] : sh.measure[b];
        sum += local[j];
      }
      uint64_t incl = sum;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const uint64_t v = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += v;
      }
      const uint64_t excl = incl - sum;
      if (pass == 0) {  // every candidate is in this histogram: set the target from the total
        const uint64_t total = __shfl_sync(0xffffffffu, incl, 31);
        uint64_t target;
        if (kind == Target::kTopK) {
          target = static_cast<uint64_t>(param);
        } else if (kind == Target::kTopP) {
          target = static_cast<uint64_t>(ceil(param * static_cast<double>(total)));
          target = target < 1 ? 1 : (target > total ? total : target);
        } else {
          target = static_cast<uint64_t>(param * static_cast<double>(total));
          target = total == 0 ? 0 : (target > total - 1 ? total - 1 : target);
        }
        if (lane == 0) sh.target = target;
        __syncwarp();
      }
      const uint64_t target = sh.target;
      const uint64_t cum = sh.cum;
      __syncwarp();  // all lanes have read sh.cum before one lane rewrites it
      const unsigned hit = __ballot_sync(0xffffffffu, Reaches(cum + incl, target, strict));
      if (hit == 0) {
        if (lane == 0) sh.fail = 1;
      } else if (lane == __ffs(hit) - 1) {
        uint64_t c = cum + excl;
#pragma unroll
        for (int j = 0; j < kBins / 32; ++j) {
          if (Reaches(c + local[j], target, strict)) {
            const int b = lane * (kBins / 32) + j;
            sh.prefix = prefix | (static_cast<uint64_t>(b) << shift);
            sh.cum = c;
            if (sh.count[b] == 1) sh.done_index = sh.last[b];
            break;
          }
          c += local[j];
        }
      }
    }
    __syncthreads();
    if (sh.fail) return -1;
    if (sh.done_index >= 0) return sh.done_index;
  }
  // All digits fixed: the key is known exactly and its low bits are the id.
  const uint64_t key = sh.prefix;
  return static_cast<int>(rc.sorted ? key & ((1ull << rc.id_bits) - 1) : key);
}

// One block (kThreads) per row.
__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* __restrict__ logits, int vocab, int64_t row_stride, int id_bits,
                 const SamplingOptions* __restrict__ options, int32_t* __restrict__ tokens,
                 float* __restrict__ logprobs) {
  __shared__ Shared sh;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int r = blockIdx.x;
  const float* row = logits + r * row_stride;

  // Pass 1: validity, argmax (first max wins), finite count, and sum exp(l - max) online.
  float m = -INFINITY;
  int arg = 0x7fffffff;
  double s = 0.0;
  int finite = 0;
  int bad = 0;
  for (int i = tid; i < vocab; i += blockDim.x) {
    const float l = row[i];
    if (isnan(l) || l == INFINITY) {
      bad = 1;
      continue;
    }
    if (l == -INFINITY) continue;
    ++finite;
    if (l > m) {
      s = s * static_cast<double>(expf(m - l)) + 1.0;
      m = l;
      arg = i;
    } else {
      s += static_cast<double>(expf(l - m));
    }
  }
  // Warp then block reduction of (max, lowest index at max) and the rescaled sums.
  float bm = m;
  int ba = arg;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float om = __shfl_xor_sync(0xffffffffu, bm, off);
    const int oa = __shfl_xor_sync(0xffffffffu, ba, off);
    if (om > bm || (om == bm && oa < ba)) {
      bm = om;
      ba = oa;
    }
  }
  // Every lane now holds the warp max; rescale this lane's sum to it and add.
  double scaled = finite > 0 ? s * exp(static_cast<double>(m) - static_cast<double>(bm)) : 0.0;
  int fin = finite;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    scaled += __shfl_xor_sync(0xffffffffu, scaled, off);
    fin += __shfl_xor_sync(0xffffffffu, fin, off);
    bad |= __shfl_xor_sync(0xffffffffu, bad, off);
  }
  if (lane == 0) {
    sh.warp_max[warp] = bm;
    sh.warp_arg[warp] = ba;
    sh.warp_sum[warp] = scaled;
    sh.warp_finite[warp] = fin;
    sh.warp_bad[warp] = bad;
  }
  __syncthreads();
  if (tid == 0) {
    float M = -INFINITY;
    int A = 0x7fffffff;
    int F = 0, B = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (sh.warp_max[w] > M || (sh.warp_max[w] == M && sh.warp_arg[w] < A)) {
        M = sh.warp_max[w];
        A = sh.warp_arg[w];
      }
      F += sh.warp_finite[w];
      B |= sh.warp_bad[w];
    }
    double S = 0.0;
    for (int w = 0; w < kWarps; ++w) {
      if (sh.warp_finite[w] > 0) {
        S += sh.warp_sum[w] * exp(static_cast<double>(sh.warp_max[w]) - static_cast<double>(M));
      }
    }
    sh.max_logit = M;
    sh.argmax = A;
    sh.finite = F;
    sh.bad = B;
    sh.log_z = static_cast<double>(M) + log(S);
  }
  __syncthreads();

  const SamplingOptions o = options[r];
  const bool options_ok = o.temperature >= 0.f && isfinite(o.temperature) && o.top_p > 0.f &&
                          o.top_p <= 1.f && o.top_k >= 0;
  if (sh.bad || sh.finite == 0 || !options_ok) {
    if (tid == 0) {
      tokens[r] = -1;
      if (logprobs != nullptr) logprobs[r] = __int_as_float(0x7fc00000);
    }
    return;
  }

  int token = sh.argmax;
  if (o.temperature != 0.f) {
    const bool top_k_on = o.top_k > 0 && o.top_k < sh.finite;
    const bool top_p_on = o.top_p < 1.f;
    RowContext rc{row,
                  vocab,
                  top_k_on || top_p_on,
                  id_bits,
                  static_cast<double>(sh.max_logit),
                  static_cast<double>(o.temperature)};
    uint64_t bound = ~0ull;
    int chosen = 0;
    if (top_k_on) {
      chosen = Select(rc, bound, Target::kTopK, static_cast<double>(o.top_k), sh);
      if (chosen >= 0) bound = KeyOf(row[chosen], chosen, true, id_bits);
    }
    if (chosen >= 0 && top_p_on) {
      chosen = Select(rc, bound, Target::kTopP, static_cast<double>(o.top_p), sh);
      if (chosen >= 0) bound = KeyOf(row[chosen], chosen, true, id_bits);
    }
    if (chosen >= 0) {
      chosen = Select(rc, bound, Target::kDraw, Uniform(o.seed, o.sample_index), sh);
    }
    token = chosen;
  }
  if (tid == 0) {
    tokens[r] = token;
    if (logprobs != nullptr) {
      logprobs[r] = token >= 0 ? static_cast<float>(static_cast<double>(row[token]) - sh.log_z)
                               : __int_as_float(0x7fc00000);
    }
  }
}

}  // namespace hipserve::kernels::sampling_internal
