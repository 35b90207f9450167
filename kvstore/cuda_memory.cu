#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kvstore/cuda_memory.h"
#include "kvstore/options.h"

namespace hipserve::kvstore {
namespace {

absl::Status CudaError(cudaError_t err, const char* what, int device) {
  return absl::InternalError(absl::StrCat("CUDA ", what, " on device ", device, ": ",
                                          cudaGetErrorName(err), " (", cudaGetErrorString(err),
                                          ")"));
}

class CudaMemory : public Memory {
 public:
  explicit CudaMemory(int device) : device_(device) {}

  absl::StatusOr<void*> Allocate(MemoryKind kind, int64_t bytes) override {
    if (bytes <= 0 || bytes > MaxAllocationBytes(kind)) {
      return absl::InvalidArgumentError(absl::StrCat("CudaMemory: bad allocation size ", bytes));
    }
    cudaSetDevice(device_);
    void* p = nullptr;
    cudaError_t err = kind == MemoryKind::kDevice
                          ? cudaMalloc(&p, bytes)
                          : cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state of an allocation failure
      if (err == cudaErrorMemoryAllocation) {
        return absl::ResourceExhaustedError(
            absl::StrCat("CudaMemory: allocation of ", bytes, " bytes failed on device ", device_));
      }
      return CudaError(err, "allocate", device_);
    }
    return p;
  }

  absl::Status Free(MemoryKind kind, void* ptr) override {
    cudaSetDevice(device_);
    cudaError_t err = kind == MemoryKind::kDevice ? cudaFree(ptr) : cudaFreeHost(ptr);
    if (err != cudaSuccess) return CudaError(err, "free", device_);
    return absl::OkStatus();
  }

  absl::Status Copy(void* dst, const void* src, int64_t bytes) override {
    if (bytes == 0) return absl::OkStatus();
    cudaSetDevice(device_);
    cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyDefault);
    if (err != cudaSuccess) return CudaError(err, "memcpy", device_);
    return absl::OkStatus();
  }

  absl::StatusOr<const void*> MapToDevice(const void* host_ptr) override {
    cudaSetDevice(device_);
    void* dev = nullptr;
    cudaError_t err = cudaHostGetDevicePointer(&dev, const_cast<void*>(host_ptr), 0);
    if (err != cudaSuccess) return CudaError(err, "cudaHostGetDevicePointer", device_);
    return static_cast<const void*>(dev);
  }

  bool OnDevice() const override { return true; }

  int64_t MaxAllocationBytes(MemoryKind kind) const override {
    return kind == MemoryKind::kHostMapped ? kMaxPinnedChunkBytes : INT64_MAX;
  }

 private:
  int device_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Memory>> NewCudaMemory(int device) {
  int count = CudaDeviceCount();
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("NewCudaMemory: device ", device, " not present (", count, " devices)"));
  }
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return CudaError(err, "cudaSetDevice", device);
  return std::unique_ptr<Memory>(new CudaMemory(device));
}

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace hipserve::kvstore
