// Device-side random fill for benchmarks.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace hipserve::bench {

// n bf16 values (uint16_t storage) at device pointer dst, uniform magnitude in
// [amp/64, amp] with random sign, a pure function of (index, seed). Asynchronous on stream.
cudaError_t FillRandomBf16(void* dst, int64_t n, uint64_t seed, float amp, void* stream);

// n fp8 e5m2 codes (uint8_t) at device pointer dst: the values FillRandomBf16 draws, encoded with
// kvstore's codec (kvstore/fp8_e5m2.h). Asynchronous on stream.
cudaError_t FillRandomFp8E5m2(void* dst, int64_t n, uint64_t seed, float amp, void* stream);

}  // namespace hipserve::bench
