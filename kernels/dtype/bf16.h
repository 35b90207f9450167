// bfloat16 <-> float conversion on the host. bf16 values are stored as uint16_t (the upper 16
// bits of an IEEE-754 binary32), the same bit layout the GPU uses, so buffers can be copied
// between host and device unchanged. The CPU backend uses RoundToBf16* to emulate the places
// where the GPU stores bf16 (DESIGN.md "Numerics").
#pragma once

#include <cstdint>

namespace hipserve::kernels {

// Round-to-nearest-even. NaN stays NaN (quiet bit forced so it can't turn into Inf);
// +-Inf stay +-Inf; finite values beyond the bf16 range round to +-Inf as in IEEE.
uint16_t FloatToBf16(float f);

// Exact: every bf16 is representable as float.
float Bf16ToFloat(uint16_t b);

// Bf16ToFloat(FloatToBf16(f)).
float RoundToBf16(float f);

// Rounds x[0..n) to bf16 precision in place. n <= 0 is a no-op.
void RoundToBf16InPlace(float* x, int64_t n);

// Converts n values; n <= 0 is a no-op.
void FloatToBf16Array(const float* in, uint16_t* out, int64_t n);
void Bf16ToFloatArray(const uint16_t* in, float* out, int64_t n);

}  // namespace hipserve::kernels
