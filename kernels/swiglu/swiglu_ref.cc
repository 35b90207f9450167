#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/swiglu/swiglu.h"

namespace hipserve::kernels {

absl::Status SwigluRef(const SwigluParams& p) {
  if (p.gate == nullptr) return absl::InvalidArgumentError("Swiglu: gate is null");
  if (p.up == nullptr) return absl::InvalidArgumentError("Swiglu: up is null");
  if (p.out == nullptr) return absl::InvalidArgumentError("Swiglu: out is null");
  if (p.n <= 0) return absl::InvalidArgumentError(absl::StrCat("Swiglu: n must be > 0, got ", p.n));
  for (int64_t i = 0; i < p.n; ++i) {
    const float g = p.gate[i];
    // For g -> -inf, exp(-g) overflows to inf and g / inf = -0, the correct limit.
    p.out[i] = g / (1.f + std::exp(-g)) * p.up[i];
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
