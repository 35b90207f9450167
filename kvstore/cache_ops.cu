// CUDA cache fill / gather. One thread moves one 16-byte fp8 vector (16 elements) of one row;
// each thread issues kUnroll independent loads before its stores so that enough PCIe reads
// are in flight to cover host-memory latency.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kvstore/cache_ops.h"
#include "kvstore/fp8_e5m2.h"

namespace hipserve::kvstore {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;

__device__ __forceinline__ void StoreVec(const uint4& in, void* bank, bool bf16, int64_t row,
                                         int head_dim, int vec) {
  if (!bf16) {
    reinterpret_cast<uint4*>(static_cast<uint8_t*>(bank) + row * head_dim)[vec] = in;
    return;
  }
  const uint8_t* b = reinterpret_cast<const uint8_t*>(&in);
  uint32_t w[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    w[i] = static_cast<uint32_t>(Fp8E5m2ToBf16(b[2 * i])) |
           (static_cast<uint32_t>(Fp8E5m2ToBf16(b[2 * i + 1])) << 16);
  }
  uint4* dst = reinterpret_cast<uint4*>(static_cast<uint16_t*>(bank) + row * head_dim) + 2 * vec;
  dst[0] = make_uint4(w[0], w[1], w[2], w[3]);
  dst[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

__global__ void FillKernel(CacheFillParams p, int vecs, int parts) {
  const int64_t total = p.n * parts * vecs;
  const bool bf16 = p.bank_dtype == KvDtype::kBf16;
  const int64_t stride = int64_t{gridDim.x} * kThreads * kUnroll;
  for (int64_t base = int64_t{blockIdx.x} * kThreads * kUnroll + threadIdx.x; base < total;
       base += stride) {
    uint4 val[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t idx = base + u * kThreads;
      if (idx < total) {
        const int64_t tok = idx / (parts * vecs);
        const int rem = static_cast<int>(idx - tok * parts * vecs);
        const int part = rem / vecs;
        const int vec = rem - part * vecs;
        const uint8_t* src =
            reinterpret_cast<const uint8_t*>(p.src[tok]) + part * p.v_offset_bytes + vec * 16;
        val[u] = *reinterpret_cast<const uint4*>(src);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t idx = base + u * kThreads;
      if (idx < total) {
        const int64_t tok = idx / (parts * vecs);
        const int rem = static_cast<int>(idx - tok * parts * vecs);
        const int part = rem / vecs;
        const int vec = rem - part * vecs;
        StoreVec(val[u], part == 0 ? p.bank_k : p.bank_v, bf16, p.rows[tok], p.head_dim, vec);
      }
    }
  }
}

__global__ void GatherKernel(CacheGatherParams p, int vecs, int parts) {
  const int64_t total = p.n * parts * vecs;
  const bool bf16 = p.bank_dtype == KvDtype::kBf16;
  for (int64_t idx = int64_t{blockIdx.x} * kThreads + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * kThreads) {
    const int64_t tok = idx / (parts * vecs);
    const int rem = static_cast<int>(idx - tok * parts * vecs);
    const int part = rem / vecs;
    const int vec = rem - part * vecs;
    const int32_t row = p.rows[tok];
    uint4* out =
        reinterpret_cast<uint4*>((part == 0 ? p.out_k : p.out_v) + tok * p.head_dim) + 2 * vec;
    const void* bank = part == 0 ? p.bank_k : p.bank_v;
    if (row >= 0 && bf16) {
      const uint4* src = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(bank) +
                                                        int64_t{row} * p.head_dim) +
                         2 * vec;
      out[0] = src[0];
      out[1] = src[1];
      continue;
    }
    const uint8_t* src8 =
        row >= 0
            ? static_cast<const uint8_t*>(bank) + int64_t{row} * p.head_dim + vec * 16
            : reinterpret_cast<const uint8_t*>(p.src[tok]) + part * p.v_offset_bytes + vec * 16;
    const uint4 in = *reinterpret_cast<const uint4*>(src8);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(&in);
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      w[i] = static_cast<uint32_t>(Fp8E5m2ToBf16(b[2 * i])) |
             (static_cast<uint32_t>(Fp8E5m2ToBf16(b[2 * i + 1])) << 16);
    }
    out[0] = make_uint4(w[0], w[1], w[2], w[3]);
    out[1] = make_uint4(w[4], w[5], w[6], w[7]);
  }
}

absl::Status Check(int64_t n, int head_dim) {
  if (n < 0 || head_dim <= 0 || head_dim % 16 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache op: n=", n, " head_dim=", head_dim, " (needs a multiple of 16)"));
  }
  return absl::OkStatus();
}

absl::Status LaunchStatus(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    return absl::InternalError(
        absl::StrCat(what, " launch: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CacheFillCuda(const CacheFillParams& p, void* stream) {
  absl::Status s = Check(p.n, p.head_dim);
  if (!s.ok() || p.n == 0) return s;
  const int vecs = p.head_dim / 16;
  const int parts = p.bank_v != nullptr ? 2 : 1;
  const int64_t total = p.n * parts * vecs;
  const int64_t blocks = (total + kThreads * kUnroll - 1) / (kThreads * kUnroll);
  FillKernel<<<static_cast<unsigned>(blocks < 1048576 ? blocks : 1048576), kThreads, 0,
               static_cast<cudaStream_t>(stream)>>>(p, vecs, parts);
  return LaunchStatus("CacheFillCuda");
}

absl::Status CacheGatherCuda(const CacheGatherParams& p, void* stream) {
  absl::Status s = Check(p.n, p.head_dim);
  if (!s.ok() || p.n == 0) return s;
  const int vecs = p.head_dim / 16;
  if (p.out_v != nullptr && p.bank_v == nullptr) {
    return absl::InvalidArgumentError("CacheGatherCuda: out_v needs bank_v");
  }
  const int parts = p.out_v != nullptr ? 2 : 1;
  const int64_t total = p.n * parts * vecs;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  GatherKernel<<<static_cast<unsigned>(blocks < 1048576 ? blocks : 1048576), kThreads, 0,
                 static_cast<cudaStream_t>(stream)>>>(p, vecs, parts);
  return LaunchStatus("CacheGatherCuda");
}

}  // namespace hipserve::kvstore
