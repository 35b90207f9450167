// CUDA_RETURN_IF_ERROR(expr): evaluates a cudaError_t expression and, when it is not
// cudaSuccess, returns an absl::Status naming the expression, CUDA error, device, file and line.
// For .cu files only (public headers carry no CUDA types).
#pragma once

#ifndef __CUDACC__
#error "kernels/cuda/cuda_check.h may only be included from .cu files"
#endif

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace hipserve::kernels::internal {

inline absl::StatusCode CudaErrorCode(cudaError_t err) {
  switch (err) {
    case cudaErrorMemoryAllocation:
      return absl::StatusCode::kResourceExhausted;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
    case cudaErrorInvalidDevicePointer:
      return absl::StatusCode::kInvalidArgument;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

inline absl::Status CudaErrorToStatus(cudaError_t err, const char* expr, const char* file,
                                      int line) {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) device = -1;
  return absl::Status(
      CudaErrorCode(err),
      absl::StrCat(expr, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                   ") on device ", device, " at ", file, ":", line));
}

}  // namespace hipserve::kernels::internal

#define CUDA_RETURN_IF_ERROR(expr)                                                                 \
  do {                                                                                             \
    const cudaError_t _hipserve_cuda_err = (expr);                                                 \
    if (_hipserve_cuda_err != cudaSuccess) {                                                       \
      return ::hipserve::kernels::internal::CudaErrorToStatus(_hipserve_cuda_err, #expr, __FILE__, \
                                                              __LINE__);                           \
    }                                                                                              \
  } while (0)
