// FaultyMemory: wraps another Memory and fails chosen calls, for failure-path tests.
// Does not own `base`. Thread-safe (atomic counters).
#pragma once

#include <atomic>
#include <cstdint>

#include "kvstore/memory.h"

namespace hipserve::kvstore {

class FaultyMemory : public Memory {
 public:
  explicit FaultyMemory(Memory* base) : base_(base) {}

  // The next `n` Allocate calls succeed, the one after fails with Internal ("injected"),
  // and then allocation works again. n < 0 disarms.
  void FailAllocationAfter(int64_t n) { alloc_countdown_.store(n); }
  // Same for Copy.
  void FailCopyAfter(int64_t n) { copy_countdown_.store(n); }
  int64_t allocations() const { return allocations_.load(); }
  int64_t copies() const { return copies_.load(); }
  int64_t injected_failures() const { return injected_.load(); }

  absl::StatusOr<void*> Allocate(MemoryKind kind, int64_t bytes) override;
  absl::Status Free(MemoryKind kind, void* ptr) override { return base_->Free(kind, ptr); }
  absl::Status Copy(void* dst, const void* src, int64_t bytes) override;
  absl::StatusOr<const void*> MapToDevice(const void* host_ptr) override {
    return base_->MapToDevice(host_ptr);
  }
  bool OnDevice() const override { return base_->OnDevice(); }
  int64_t MaxAllocationBytes(MemoryKind kind) const override {
    return base_->MaxAllocationBytes(kind);
  }

 private:
  // True when this call must fail.
  bool Trip(std::atomic<int64_t>& countdown);

  Memory* base_;
  std::atomic<int64_t> alloc_countdown_{-1};
  std::atomic<int64_t> copy_countdown_{-1};
  std::atomic<int64_t> allocations_{0};
  std::atomic<int64_t> copies_{0};
  std::atomic<int64_t> injected_{0};
};

}  // namespace hipserve::kvstore
