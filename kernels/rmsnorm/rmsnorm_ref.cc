#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/rmsnorm/rmsnorm.h"

namespace hipserve::kernels {
namespace {

absl::Status Validate(const RmsNormParams& p) {
  if (p.in == nullptr) return absl::InvalidArgumentError("RmsNorm: in is null");
  if (p.weight == nullptr) return absl::InvalidArgumentError("RmsNorm: weight is null");
  if (p.out == nullptr) return absl::InvalidArgumentError("RmsNorm: out is null");
  if (p.rows <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNorm: rows must be > 0, got ", p.rows));
  }
  if (p.dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("RmsNorm: dim must be > 0, got ", p.dim));
  }
  if (!(p.eps >= 0.f) || !std::isfinite(p.eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNorm: eps must be finite and >= 0, got ", p.eps));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RmsNormRef(const RmsNormParams& p) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const int64_t dim = p.dim;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.in + r * dim;
    if (p.residual != nullptr) {
      float* res = p.residual + r * dim;
      for (int64_t i = 0; i < dim; ++i) res[i] += x[i];
      x = res;
    }
    double sum_sq = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
    const float inv_rms =
        static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + p.eps));
    float* y = p.out + r * dim;
    for (int64_t i = 0; i < dim; ++i) y[i] = x[i] * inv_rms * p.weight[i];
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
