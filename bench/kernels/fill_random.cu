// Device-side random bf16 fill for the benchmarks (GiB of KV in milliseconds, never zeros).
#include <cuda_runtime.h>

#include <cstdint>

#include "bench/kernels/fill_random.h"
#include "kvstore/fp8_e5m2.h"

namespace hipserve::bench {
namespace {

// The bf16 bits of value i: uniform in [-amp, -amp/64] U [amp/64, amp], never zero.
__device__ __forceinline__ uint16_t RandomBf16Bits(int64_t i, uint64_t seed, float amp) {
  uint64_t x = (static_cast<uint64_t>(i) + seed) * 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  float u = static_cast<float>(x >> 40) * (1.f / 16777216.f);  // [0, 1)
  const float mag = amp * (1.f / 64.f + (63.f / 64.f) * u);
  const float f = (x & 1) ? mag : -mag;
  return static_cast<uint16_t>(__float_as_uint(f) >> 16);
}

__global__ void FillKernel(uint16_t* out, int64_t n, uint64_t seed, float amp) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = RandomBf16Bits(i, seed, amp);
  }
}

__global__ void FillFp8Kernel(uint8_t* out, int64_t n, uint64_t seed, float amp) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = kvstore::Bf16ToFp8E5m2(RandomBf16Bits(i, seed, amp));
  }
}

}  // namespace

cudaError_t FillRandomBf16(void* dst, int64_t n, uint64_t seed, float amp, void* stream) {
  FillKernel<<<1024, 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<uint16_t*>(dst), n,
                                                                  seed, amp);
  return cudaGetLastError();
}

cudaError_t FillRandomFp8E5m2(void* dst, int64_t n, uint64_t seed, float amp, void* stream) {
  FillFp8Kernel<<<1024, 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<uint8_t*>(dst), n,
                                                                     seed, amp);
  return cudaGetLastError();
}

}  // namespace hipserve::bench
