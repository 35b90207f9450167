// SwiGLU activation of the Llama MLP: out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace hipserve::kernels {

struct SwigluParams {
  const float* gate = nullptr;  // [n]
  const float* up = nullptr;    // [n]
  float* out = nullptr;         // [n]; may alias gate or up
  int64_t n = 0;                // > 0
};

// CPU reference, fp32.
absl::Status SwigluRef(const SwigluParams& p);

}  // namespace hipserve::kernels
