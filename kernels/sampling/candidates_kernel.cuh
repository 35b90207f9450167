// Device code for CandidatesGpu (candidates.h). Included only by candidates.cu.
//
// One block per row: (1) finite count, NaN/+inf flag and max; (2) the two fp64 normalisers,
// each thread summing its strided elements in order, then a fixed tree over the threads (so the
// result does not depend on scheduling); (3) radix selection, 8-bit digits from the top, of the
// k-th smallest key, k = min(c, finite), where the key orders as SampleRef does (higher logit
// first, -0 folded into +0, then lower column); (4) the k keys <= that one are collected, sorted
// by a bitonic sort in shared memory and written with their global ids and original logits.
#pragma once

#include <cstdint>

#include "kernels/sampling/candidates.h"

namespace hipserve::kernels::candidates_internal {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;
constexpr int kSort = kMaxSamplingCandidates;  // a power of two, <= kThreads
static_assert((kSort & (kSort - 1)) == 0 && kSort <= kThreads);

__device__ __forceinline__ bool Finite(float l) { return !isnan(l) && !isinf(l); }

// Ascending key == SampleRef's order: logit descending (order-preserving bits, -0 as +0),
// then the column ascending.
__device__ __forceinline__ uint64_t KeyOf(float l, int i) {
  if (l == 0.f) l = 0.f;
  const uint32_t u = __float_as_uint(l);
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint32_t>(i);
}

__device__ __forceinline__ void PutDouble(double d, int32_t* w) {
  const unsigned long long b = static_cast<unsigned long long>(__double_as_longlong(d));
  w[0] = static_cast<int32_t>(static_cast<uint32_t>(b));
  w[1] = static_cast<int32_t>(static_cast<uint32_t>(b >> 32));
}

struct Shared {
  uint32_t hist[kBins];
  uint64_t keys[kSort];
  double red[kThreads];
  float warp_max[kWarps];
  int warp_finite[kWarps];
  int warp_bad[kWarps];
  float max;
  int finite;
  int bad;
  uint64_t prefix;
  int remaining;
  int selected;
};

// Fixed-order tree sum of one value per thread; every thread gets the result.
__device__ double BlockSum(double v, Shared& sh) {
  const int tid = threadIdx.x;
  __syncthreads();
  sh.red[tid] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (tid < s) sh.red[tid] += sh.red[tid + s];
    __syncthreads();
  }
  return sh.red[0];
}

__global__ void __launch_bounds__(kThreads)
    CandidatesKernel(const float* __restrict__ logits, int cols, int64_t row_stride,
                     int64_t id_begin, int c, const float* __restrict__ temperatures,
                     int32_t* __restrict__ records) {
  __shared__ Shared sh;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * row_stride;
  int32_t* rec = records + static_cast<int64_t>(blockIdx.x) * (kCandidateHeaderWords + 2 * c);

  // (1) count, flag, max.
  float mx = -INFINITY;
  int finite = 0, bad = 0;
  for (int i = tid; i < cols; i += kThreads) {
    const float l = row[i];
    if (Finite(l)) {
      ++finite;
      mx = fmaxf(mx, l);
    } else if (l != -INFINITY) {
      bad = 1;
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    finite += __shfl_xor_sync(0xffffffffu, finite, off);
    bad |= __shfl_xor_sync(0xffffffffu, bad, off);
  }
  if (lane == 0) {
    sh.warp_max[warp] = mx;
    sh.warp_finite[warp] = finite;
    sh.warp_bad[warp] = bad;
  }
  __syncthreads();
  if (tid == 0) {
    float m = -INFINITY;
    int f = 0, b = 0;
    for (int w = 0; w < kWarps; ++w) {
      m = fmaxf(m, sh.warp_max[w]);
      f += sh.warp_finite[w];
      b |= sh.warp_bad[w];
    }
    sh.max = m;
    sh.finite = f;
    sh.bad = b;
  }
  __syncthreads();
  const double m = sh.max;  // the sign of a zero max does not change any weight
  finite = sh.finite;
  const float t = temperatures[blockIdx.x];

  // (2) normalisers.
  double s1 = 0, st = 0;
  for (int i = tid; i < cols; i += kThreads) {
    const float l = row[i];
    if (!Finite(l)) continue;
    s1 += exp(static_cast<double>(l) - m);
    if (t > 0.f) st += exp((static_cast<double>(l) - m) / static_cast<double>(t));
  }
  s1 = BlockSum(s1, sh);
  st = BlockSum(st, sh);

  // (3) the k-th smallest key.
  const int k = min(c, finite);
  uint64_t bound = ~0ull;  // k == finite: every finite element is selected
  if (k > 0 && k < finite) {
    if (tid == 0) {
      sh.prefix = 0;
      sh.remaining = k;
    }
    for (int shift = 56; shift >= 0; shift -= 8) {
      for (int b = tid; b < kBins; b += kThreads) sh.hist[b] = 0;
      __syncthreads();
      const uint64_t prefix = sh.prefix;
      const uint64_t hi_mask = shift == 56 ? 0 : ~0ull << (shift + 8);
      for (int base = 0; base < cols; base += kThreads) {
        const int i = base + tid;
        uint32_t digit = 0xffffffffu;  // not taking part
        if (i < cols) {
          const float l = row[i];
          if (Finite(l)) {
            const uint64_t key = KeyOf(l, i);
            if ((key & hi_mask) == prefix) digit = static_cast<uint32_t>(key >> shift) & 0xffu;
          }
        }
        // Lanes with equal digits add once (the leading digits of logits are few).
        const unsigned peers = __match_any_sync(0xffffffffu, digit);
        if (digit != 0xffffffffu && lane == __ffs(peers) - 1) {
          atomicAdd(&sh.hist[digit], static_cast<uint32_t>(__popc(peers)));
        }
      }
      __syncthreads();
      if (tid == 0) {
        int before = 0, b = 0;
        while (b < kBins - 1 && before + static_cast<int>(sh.hist[b]) < sh.remaining) {
          before += static_cast<int>(sh.hist[b]);
          ++b;
        }
        sh.prefix = prefix | (static_cast<uint64_t>(b) << shift);
        sh.remaining -= before;
      }
      __syncthreads();
    }
    bound = sh.prefix;
  }

  // (4) collect, sort, write.
  if (tid == 0) sh.selected = 0;
  __syncthreads();
  if (k > 0) {
    for (int i = tid; i < cols; i += kThreads) {
      const float l = row[i];
      if (!Finite(l)) continue;
      const uint64_t key = KeyOf(l, i);
      if (key <= bound) sh.keys[atomicAdd(&sh.selected, 1)] = key;
    }
  }
  __syncthreads();
  for (int j = tid; j < kSort; j += kThreads) {
    if (j >= sh.selected) sh.keys[j] = ~0ull;
  }
  __syncthreads();
  for (int size = 2; size <= kSort; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      if (tid < kSort) {
        const int partner = tid ^ stride;
        if (partner > tid) {
          const bool ascending = (tid & size) == 0;
          const uint64_t a = sh.keys[tid], b = sh.keys[partner];
          if ((a > b) == ascending) {
            sh.keys[tid] = b;
            sh.keys[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int j = tid; j < c; j += kThreads) {
    int32_t id = -1;
    float l = -INFINITY;
    if (j < k) {
      const int col = static_cast<int>(static_cast<uint32_t>(sh.keys[j]));
      id = static_cast<int32_t>(id_begin + col);
      l = row[col];
    }
    rec[kCandidateHeaderWords + 2 * j] = id;
    rec[kCandidateHeaderWords + 2 * j + 1] = __float_as_int(l);
  }
  if (tid == 0) {
    rec[0] = finite;
    rec[1] = sh.bad;
    rec[2] = k;
    rec[3] = __float_as_int(k > 0 ? row[static_cast<uint32_t>(sh.keys[0])] : -INFINITY);
    PutDouble(s1, rec + 4);
    PutDouble(t > 0.f ? st : 0.0, rec + 6);
  }
}

}  // namespace hipserve::kernels::candidates_internal
