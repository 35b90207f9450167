// Memory: the seam between kvstore logic and where bytes live (LevelDB Env style).
//
// Implementations: HostMemory (plain host RAM, CPU tests), CudaMemory (cuda_memory.h) and
// FaultyMemory (fault injection, wraps another). The store's page tables, budgets and LRU
// logic are identical on all of them.
// Thread-safety: every implementation is safe to call from several threads at once.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace hipserve::kvstore {

enum class MemoryKind {
  kDevice,      // GPU memory (host memory for HostMemory)
  kHostMapped,  // pinned host memory that device code reads directly (cudaHostAllocMapped)
};

class Memory {
 public:
  virtual ~Memory() = default;

  // Allocates `bytes` (> 0, <= MaxAllocationBytes(kind)), 256-byte aligned.
  virtual absl::StatusOr<void*> Allocate(MemoryKind kind, int64_t bytes) = 0;
  // Frees a pointer returned by Allocate with the same kind.
  virtual absl::Status Free(MemoryKind kind, void* ptr) = 0;
  // Synchronous copy of `bytes` between any two of: this Memory's allocations, plain host
  // memory.
  virtual absl::Status Copy(void* dst, const void* src, int64_t bytes) = 0;
  // Device-visible address of a byte inside a kHostMapped allocation (identity on HostMemory).
  virtual absl::StatusOr<const void*> MapToDevice(const void* host_ptr) = 0;
  // True when kDevice memory is GPU memory: kernels (not host loops) must touch it.
  virtual bool OnDevice() const = 0;
  virtual int64_t MaxAllocationBytes(MemoryKind kind) const = 0;
};

}  // namespace hipserve::kvstore
