// GemmGpu through cuBLASLt: validation, the per-shape plan cache and the matmul call.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/skinny_gemm.h"

#define CUBLASLT_RETURN_IF_ERROR(expr)                                                      \
  do {                                                                                      \
    const cublasStatus_t _hipserve_lt_status = (expr);                                      \
    if (_hipserve_lt_status != CUBLAS_STATUS_SUCCESS) {                                     \
      return absl::InternalError(absl::StrCat(                                              \
          #expr, " failed: ", cublasLtGetStatusName(_hipserve_lt_status), " (",             \
          cublasLtGetStatusString(_hipserve_lt_status), ") at ", __FILE__, ":", __LINE__)); \
    }                                                                                       \
  } while (0)

namespace hipserve::kernels {
namespace {

// Largest power of two <= 256 dividing the address (cuBLASLt's alignment preferences).
int AlignmentOf(const void* ptr) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(ptr);
  int align = 256;
  while (align > 1 && addr % align != 0) align /= 2;
  return align;
}

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // cuBLASLt's A: our B, [k x n] column-major, transposed
  cublasLtMatrixLayout_t b = nullptr;  // cuBLASLt's B: our A, [k x m] column-major
  cublasLtMatrixLayout_t c = nullptr;  // C and D: [n x m] column-major == row-major [m, n]
  cublasLtMatmulAlgo_t algo{};
};

void DestroyPlan(Plan& p) {
  if (p.c != nullptr) cublasLtMatrixLayoutDestroy(p.c);
  if (p.b != nullptr) cublasLtMatrixLayoutDestroy(p.b);
  if (p.a != nullptr) cublasLtMatrixLayoutDestroy(p.a);
  if (p.op != nullptr) cublasLtMatmulDescDestroy(p.op);
  p = Plan{};
}

// m, n, k, c_type, has_bias, beta != 0, alignment of a, b, c, bias.
using PlanKey = std::tuple<int, int, int, int, bool, bool, int, int, int, int>;

}  // namespace

struct GemmGpuContext::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<PlanKey, Plan> plans;

  ~Impl() {
    for (auto& [key, plan] : plans) DestroyPlan(plan);
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) cublasLtDestroy(handle);
  }

  absl::StatusOr<const Plan*> GetPlan(const GemmGpuParams& p);
};

namespace {

absl::Status BuildPlan(const GemmGpuParams& p, cublasLtHandle_t handle, size_t workspace_bytes,
                       Plan* plan) {
  const cudaDataType_t c_type = p.c_type == GemmGpuOutType::kBf16 ? CUDA_R_16BF : CUDA_R_32F;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA,
                                                          &trans_a, sizeof(trans_a)));
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB,
                                                          &trans_b, sizeof(trans_b)));
  if (p.bias != nullptr) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                            &epilogue, sizeof(epilogue)));
    const int32_t bias_type = c_type;
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof(p.bias)));
  }
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, p.k, p.n, p.k));
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, p.k, p.m, p.k));
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->c, c_type, p.n, p.m, p.n));

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const uint32_t align_a = AlignmentOf(p.b), align_b = AlignmentOf(p.a), align_c = AlignmentOf(p.c);
  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof(workspace_bytes));
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                              &align_a, sizeof(align_a));
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                              &align_b, sizeof(align_b));
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                              &align_c, sizeof(align_c));
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                              &align_c, sizeof(align_c));
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(handle, plan->op, plan->a, plan->b, plan->c, plan->c, pref,
                                        1, &result, &count);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  CUBLASLT_RETURN_IF_ERROR(st);
  if (count == 0) {
    return absl::UnimplementedError(absl::StrCat("GemmGpu: no cuBLASLt algorithm for m=", p.m,
                                                 " n=", p.n, " k=", p.k,
                                                 " with these dtypes "
                                                 "and alignments"));
  }
  plan->algo = result.algo;
  return absl::OkStatus();
}

absl::Status Validate(const GemmGpuParams& p) {
  if (p.context == nullptr) return absl::InvalidArgumentError("GemmGpu: context is null");
  if (p.a == nullptr) return absl::InvalidArgumentError("GemmGpu: a is null");
  if (p.b == nullptr) return absl::InvalidArgumentError("GemmGpu: b is null");
  if (p.c == nullptr) return absl::InvalidArgumentError("GemmGpu: c is null");
  if (p.m <= 0)
    return absl::InvalidArgumentError(absl::StrCat("GemmGpu: m must be > 0, got ", p.m));
  if (p.n <= 0)
    return absl::InvalidArgumentError(absl::StrCat("GemmGpu: n must be > 0, got ", p.n));
  if (p.k <= 0)
    return absl::InvalidArgumentError(absl::StrCat("GemmGpu: k must be > 0, got ", p.k));
  if (p.c_type != GemmGpuOutType::kBf16 && p.c_type != GemmGpuOutType::kFloat32) {
    return absl::InvalidArgumentError("GemmGpu: c_type has an unknown value");
  }
  if (p.algo != GemmGpuAlgo::kAuto && p.algo != GemmGpuAlgo::kCublasLt &&
      p.algo != GemmGpuAlgo::kSkinny) {
    return absl::InvalidArgumentError("GemmGpu: algo has an unknown value");
  }
  if (!std::isfinite(p.beta)) {
    return absl::InvalidArgumentError(absl::StrCat("GemmGpu: beta must be finite, got ", p.beta));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<const Plan*> GemmGpuContext::Impl::GetPlan(const GemmGpuParams& p) {
  const PlanKey key{p.m,
                    p.n,
                    p.k,
                    static_cast<int>(p.c_type),
                    p.bias != nullptr,
                    p.beta != 0.f,
                    AlignmentOf(p.a),
                    AlignmentOf(p.b),
                    AlignmentOf(p.c),
                    p.bias == nullptr ? 0 : AlignmentOf(p.bias)};
  auto it = plans.find(key);
  if (it != plans.end()) return &it->second;
  Plan plan;
  if (absl::Status s = BuildPlan(p, handle, workspace_bytes, &plan); !s.ok()) {
    DestroyPlan(plan);
    return s;
  }
  return &plans.emplace(key, plan).first->second;
}

GemmGpuContext::GemmGpuContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GemmGpuContext::~GemmGpuContext() = default;

absl::StatusOr<std::unique_ptr<GemmGpuContext>> GemmGpuContext::Create(
    const GemmGpuOptions& options) {
  auto impl = std::make_unique<Impl>();
  CUBLASLT_RETURN_IF_ERROR(cublasLtCreate(&impl->handle));
  impl->workspace_bytes = options.workspace_bytes;
  if (options.workspace_bytes > 0) {
    CUDA_RETURN_IF_ERROR(cudaMalloc(&impl->workspace, options.workspace_bytes));
  }
  return std::unique_ptr<GemmGpuContext>(new GemmGpuContext(std::move(impl)));
}

absl::Status GemmGpu(const GemmGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  if (p.algo == GemmGpuAlgo::kSkinny ||
      (p.algo == GemmGpuAlgo::kAuto && p.m <= kGemmSkinnyAutoRows &&
       gemm_internal::SkinnyGemmEligible(p))) {
    return gemm_internal::SkinnyGemm(p, stream);
  }
  GemmGpuContext::Impl* ctx = p.context->impl();
  absl::StatusOr<const Plan*> plan = ctx->GetPlan(p);
  if (!plan.ok()) return plan.status();
  const Plan& pl = **plan;
  if (p.bias != nullptr) {  // the cached descriptor holds the previous call's pointer
    CUBLASLT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        pl.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof(p.bias)));
  }
  const float alpha = 1.f;
  const float beta = p.beta;
  // cuBLASLt's A is our B (weights), its B our A (activations): C^T = B A^T.
  CUBLASLT_RETURN_IF_ERROR(cublasLtMatmul(ctx->handle, pl.op, &alpha, p.b, pl.a, p.a, pl.b, &beta,
                                          p.c, pl.c, p.c, pl.c, &pl.algo, ctx->workspace,
                                          ctx->workspace_bytes, static_cast<cudaStream_t>(stream)));
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
