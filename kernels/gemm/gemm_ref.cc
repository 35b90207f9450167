#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/gemm/gemm.h"

namespace hipserve::kernels {
namespace {

absl::Status Validate(const GemmParams& p) {
  if (p.a == nullptr) return absl::InvalidArgumentError("Gemm: a is null");
  if (p.b == nullptr) return absl::InvalidArgumentError("Gemm: b is null");
  if (p.c == nullptr) return absl::InvalidArgumentError("Gemm: c is null");
  if (p.m <= 0) return absl::InvalidArgumentError(absl::StrCat("Gemm: m must be > 0, got ", p.m));
  if (p.n <= 0) return absl::InvalidArgumentError(absl::StrCat("Gemm: n must be > 0, got ", p.n));
  if (p.k <= 0) return absl::InvalidArgumentError(absl::StrCat("Gemm: k must be > 0, got ", p.k));
  if (!std::isfinite(p.beta)) {
    return absl::InvalidArgumentError(absl::StrCat("Gemm: beta must be finite, got ", p.beta));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status GemmRef(const GemmParams& p) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const int64_t n = p.n;
  // Fold beta and bias into C first, then accumulate A*B^T with beta 1. With beta == 0, C is
  // overwritten without being read (0 * NaN would otherwise leak stale NaNs).
  float gemm_beta = p.beta;
  if (p.bias != nullptr) {
    for (int64_t r = 0; r < p.m; ++r) {
      float* row = p.c + r * n;
      for (int64_t j = 0; j < n; ++j) row[j] = (p.beta == 0.f ? 0.f : p.beta * row[j]) + p.bias[j];
    }
    gemm_beta = 1.f;
  } else if (p.beta == 0.f) {
    std::fill(p.c, p.c + static_cast<int64_t>(p.m) * n, 0.f);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p.m, p.n, p.k, 1.f, p.a, p.k, p.b, p.k,
              gemm_beta, p.c, p.n);
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
