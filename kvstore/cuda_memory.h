// CudaMemory: Memory on one CUDA device. kDevice = cudaMalloc; kHostMapped = cudaHostAlloc
// (mapped | portable), at most 4 GiB per allocation; Copy = cudaMemcpy(cudaMemcpyDefault)
// then synchronous; MapToDevice = cudaHostGetDevicePointer. Thread-safe (the CUDA runtime is).
// CPU builds link cuda_memory_cpu.cc, where NewCudaMemory returns Unimplemented and
// CudaDeviceCount returns 0.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kvstore/memory.h"

namespace hipserve::kvstore {

absl::StatusOr<std::unique_ptr<Memory>> NewCudaMemory(int device);
// Number of usable CUDA devices (0 on CPU builds or without a driver).
int CudaDeviceCount();

}  // namespace hipserve::kvstore
