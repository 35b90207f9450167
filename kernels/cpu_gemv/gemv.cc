#include "kernels/cpu_gemv/gemv.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/spin_pool.h"
#include "kernels/cpu_gemv/gemv_kernels.h"
#include "kernels/dtype/bf16.h"

namespace hipserve::kernels {
namespace gemv_internal {

void GemvRangeScalar(const GemvTask& t, int n0, int n1) {
  const auto* wf = static_cast<const float*>(t.w);
  const auto* wb = static_cast<const uint16_t*>(t.w);
  for (int r = 0; r < t.rows; ++r) {
    const float* x = t.x + r * t.ldx;
    for (int j = n0; j < n1; ++j) {
      const int64_t row = int64_t{j} * t.k;
      float s = 0.f;
      if (t.bf16) {
        for (int i = 0; i < t.k; ++i) s += x[i] * Bf16ToFloat(wb[row + i]);
      } else {
        for (int i = 0; i < t.k; ++i) s += x[i] * wf[row + i];
      }
      t.y[r * t.ldy + j] = t.bias != nullptr ? s + t.bias[j] : s;
    }
  }
}

#if !defined(__x86_64__)
// Non-x86 builds compile no vector bodies; CpuIsaSupported reports them unsupported.
void GemvRangeAvx2(const GemvTask& t, int n0, int n1) { GemvRangeScalar(t, n0, n1); }
void GemvRangeAvx512(const GemvTask& t, int n0, int n1) { GemvRangeScalar(t, n0, n1); }
#endif

}  // namespace gemv_internal

namespace {

using gemv_internal::GemvTask;

absl::Status Validate(const CpuMatmulParams& p, const char* who) {
  if (p.a == nullptr) return absl::InvalidArgumentError(absl::StrCat(who, ": a is null"));
  if (p.b == nullptr) return absl::InvalidArgumentError(absl::StrCat(who, ": b is null"));
  if (p.c == nullptr) return absl::InvalidArgumentError(absl::StrCat(who, ": c is null"));
  if (p.m <= 0 || p.n <= 0 || p.k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": m, n, k must be > 0, got ", p.m, ", ", p.n, ", ", p.k));
  }
  if (p.b_type != CpuWeightType::kFloat32 && p.b_type != CpuWeightType::kBf16) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": unknown b_type"));
  }
  return absl::OkStatus();
}

CpuIsa DetectIsa() {
  CpuIsa best = CpuIsa::kScalar;
  if (CpuIsaSupported(CpuIsa::kAvx512)) {
    best = CpuIsa::kAvx512;
  } else if (CpuIsaSupported(CpuIsa::kAvx2)) {
    best = CpuIsa::kAvx2;
  }
  if (const char* e = std::getenv("HIPSERVE_CPU_ISA")) {
    for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
      if (std::strcmp(e, CpuIsaName(isa)) == 0 && CpuIsaSupported(isa) &&
          static_cast<int>(isa) <= static_cast<int>(best)) {
        best = isa;
      }
    }
  }
  return best;
}

void RunRange(CpuIsa isa, const GemvTask& t, int n0, int n1) {
  switch (isa) {
    case CpuIsa::kAvx512:
      gemv_internal::GemvRangeAvx512(t, n0, n1);
      break;
    case CpuIsa::kAvx2:
      gemv_internal::GemvRangeAvx2(t, n0, n1);
      break;
    default:
      gemv_internal::GemvRangeScalar(t, n0, n1);
      break;
  }
}

}  // namespace

const char* CpuWeightTypeName(CpuWeightType t) {
  return t == CpuWeightType::kBf16 ? "bf16" : "fp32";
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    default:
      return "scalar";
  }
}

bool CpuIsaSupported(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return true;
#if defined(__x86_64__)
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

CpuIsa BestCpuIsa() {
  static const CpuIsa isa = DetectIsa();
  return isa;
}

absl::Status Gemv(const CpuMatmulParams& p, const GemvOptions& options) {
  if (absl::Status s = Validate(p, "Gemv"); !s.ok()) return s;
  if (!CpuIsaSupported(options.isa)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Gemv: ISA ", CpuIsaName(options.isa), " is not supported by this CPU"));
  }
  const GemvTask t{p.a, p.k, p.m, p.b, p.b_type == CpuWeightType::kBf16, p.bias, p.c, p.n, p.k};
  common::SpinPool& pool = common::SpinPool::Shared();
  const int threads =
      options.threads > 0 ? std::min(options.threads, pool.threads()) : pool.threads();
  // Work items of >= 64 output rows (multiples of 4, the kernels' tile), a few per thread so
  // that a thread that lost its core for a while does not hold the rest up.
  const int64_t work = int64_t{p.n} * p.k * p.m;
  int items = 1;
  if (threads > 1 && work >= (int64_t{1} << 15)) {
    items = static_cast<int>(std::min<int64_t>(int64_t{threads} * 4, (p.n + 63) / 64));
    items = std::max(items, 1);
  }
  if (items <= 1) {
    RunRange(options.isa, t, 0, p.n);
    return absl::OkStatus();
  }
  const int per = ((p.n + items - 1) / items + 3) / 4 * 4;
  items = (p.n + per - 1) / per;
  const CpuIsa isa = options.isa;
  if (threads < pool.threads()) {
    // A subset of the pool is not expressible; run on the caller alone.
    for (int i = 0; i < items; ++i) RunRange(isa, t, i * per, std::min(p.n, (i + 1) * per));
    return absl::OkStatus();
  }
  pool.Run(items, [&](int i) { RunRange(isa, t, i * per, std::min(p.n, (i + 1) * per)); });
  return absl::OkStatus();
}

absl::Status CpuMatmul(const CpuMatmulParams& p) {
  if (absl::Status s = Validate(p, "CpuMatmul"); !s.ok()) return s;
  if (p.m <= kGemvMaxRows) return Gemv(p);
  const int64_t n = p.n;
  // C = bias (or 0), then C += A B^T block by block.
  for (int64_t r = 0; r < p.m; ++r) {
    float* row = p.c + r * n;
    if (p.bias != nullptr) {
      std::copy_n(p.bias, n, row);
    } else {
      std::fill_n(row, n, 0.f);
    }
  }
  if (p.b_type == CpuWeightType::kFloat32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p.m, p.n, p.k, 1.f, p.a, p.k,
                static_cast<const float*>(p.b), p.k, 1.f, p.c, p.n);
    return absl::OkStatus();
  }
  // bf16 weights: widen a block of output rows (~2 MB of fp32) and multiply it.
  const int block = std::max(16, std::min(p.n, static_cast<int>((int64_t{1} << 19) / p.k)));
  thread_local std::vector<float> wide;
  wide.resize(static_cast<size_t>(block) * p.k);
  const auto* b = static_cast<const uint16_t*>(p.b);
  for (int j0 = 0; j0 < p.n; j0 += block) {
    const int nb = std::min(block, p.n - j0);
    Bf16ToFloatArray(b + int64_t{j0} * p.k, wide.data(), int64_t{nb} * p.k);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p.m, nb, p.k, 1.f, p.a, p.k, wide.data(),
                p.k, 1.f, p.c + j0, p.n);
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
