// Host side of CandidatesGpu: validation and launch (one block per row).
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"
#include "kernels/sampling/candidates.h"
#include "kernels/sampling/candidates_kernel.cuh"

namespace hipserve::kernels {
namespace {

constexpr char kFn[] = "CandidatesGpu";

absl::Status Validate(const CandidatesGpuParams& p) {
  using internal::Invalid;
  if (p.logits == nullptr && p.cols > 0) return Invalid(kFn, "logits is null");
  if (p.temperatures == nullptr) return Invalid(kFn, "temperatures is null");
  if (p.records == nullptr) return Invalid(kFn, "records is null");
  if (p.rows <= 0) return Invalid(kFn, absl::StrCat("rows must be > 0, got ", p.rows));
  if (p.cols < 0 || p.cols >= (1 << 24)) {
    return Invalid(kFn, absl::StrCat("cols must be in [0, 2^24), got ", p.cols));
  }
  if (p.row_stride != 0 && p.row_stride < p.cols) {
    return Invalid(
        kFn, absl::StrCat("row_stride must be 0 or >= cols (", p.cols, "), got ", p.row_stride));
  }
  if (p.id_begin < 0 || p.id_begin + p.cols > INT32_MAX) {
    return Invalid(
        kFn, absl::StrCat("ids [", p.id_begin, ", ", p.id_begin + p.cols, ") are out of range"));
  }
  if (p.c < 1 || p.c > kMaxSamplingCandidates) {
    return Invalid(kFn, absl::StrCat("c must be in [1, ", kMaxSamplingCandidates, "], got ", p.c));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CandidatesGpu(const CandidatesGpuParams& p, void* stream) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const int64_t stride = p.row_stride == 0 ? p.cols : p.row_stride;
  candidates_internal::CandidatesKernel<<<p.rows, candidates_internal::kThreads, 0,
                                          static_cast<cudaStream_t>(stream)>>>(
      p.logits, p.cols, stride, p.id_begin, p.c, p.temperatures, p.records);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
