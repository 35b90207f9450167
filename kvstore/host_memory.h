// HostMemory: Memory backed by host RAM for both kinds. Tracks live bytes per kind so tests can
// prove that freeing returns exactly what was taken. Thread-safe (internal mutex).
#pragma once

#include <cstdint>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "kvstore/memory.h"

namespace hipserve::kvstore {

class HostMemory : public Memory {
 public:
  HostMemory() = default;
  ~HostMemory() override;

  absl::StatusOr<void*> Allocate(MemoryKind kind, int64_t bytes) override;
  absl::Status Free(MemoryKind kind, void* ptr) override;
  absl::Status Copy(void* dst, const void* src, int64_t bytes) override;
  absl::StatusOr<const void*> MapToDevice(const void* host_ptr) override { return host_ptr; }
  bool OnDevice() const override { return false; }
  // 4 GiB for kHostMapped (same rule as pinned memory), unlimited for kDevice.
  int64_t MaxAllocationBytes(MemoryKind kind) const override;

  int64_t live_bytes(MemoryKind kind) const;
  int64_t live_allocations() const;

 private:
  struct Block {
    MemoryKind kind;
    int64_t bytes;
  };
  mutable std::mutex mu_;
  absl::flat_hash_map<void*, Block> blocks_;
  int64_t live_bytes_[2] = {0, 0};
};

}  // namespace hipserve::kvstore
