#include "kvstore/faulty_memory.h"

namespace hipserve::kvstore {

bool FaultyMemory::Trip(std::atomic<int64_t>& countdown) {
  int64_t c = countdown.load();
  while (c >= 0) {
    if (countdown.compare_exchange_weak(c, c - 1)) {
      if (c == 0) {
        injected_.fetch_add(1);
        return true;
      }
      return false;
    }
  }
  return false;
}

absl::StatusOr<void*> FaultyMemory::Allocate(MemoryKind kind, int64_t bytes) {
  allocations_.fetch_add(1);
  if (Trip(alloc_countdown_))
    return absl::InternalError("FaultyMemory: injected allocation failure");
  return base_->Allocate(kind, bytes);
}

absl::Status FaultyMemory::Copy(void* dst, const void* src, int64_t bytes) {
  copies_.fetch_add(1);
  if (Trip(copy_countdown_)) return absl::InternalError("FaultyMemory: injected copy failure");
  return base_->Copy(dst, src, bytes);
}

}  // namespace hipserve::kvstore
