#include "kvstore/host_memory.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "kvstore/options.h"

namespace hipserve::kvstore {

HostMemory::~HostMemory() {
  for (auto& [ptr, block] : blocks_) std::free(ptr);
}

int64_t HostMemory::MaxAllocationBytes(MemoryKind kind) const {
  return kind == MemoryKind::kHostMapped ? kMaxPinnedChunkBytes : INT64_MAX;
}

absl::StatusOr<void*> HostMemory::Allocate(MemoryKind kind, int64_t bytes) {
  if (bytes <= 0 || bytes > MaxAllocationBytes(kind)) {
    return absl::InvalidArgumentError(absl::StrCat("HostMemory: bad allocation size ", bytes));
  }
  const int64_t rounded = (bytes + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("HostMemory: out of memory for ", bytes));
  }
  std::lock_guard<std::mutex> lock(mu_);
  blocks_[p] = Block{kind, bytes};
  live_bytes_[static_cast<int>(kind)] += bytes;
  return p;
}

absl::Status HostMemory::Free(MemoryKind kind, void* ptr) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(ptr);
    if (it == blocks_.end() || it->second.kind != kind) {
      return absl::InvalidArgumentError("HostMemory: free of an unknown pointer or wrong kind");
    }
    live_bytes_[static_cast<int>(kind)] -= it->second.bytes;
    blocks_.erase(it);
  }
  std::free(ptr);
  return absl::OkStatus();
}

absl::Status HostMemory::Copy(void* dst, const void* src, int64_t bytes) {
  if (bytes < 0) return absl::InvalidArgumentError("HostMemory: negative copy");
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return absl::OkStatus();
}

int64_t HostMemory::live_bytes(MemoryKind kind) const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_bytes_[static_cast<int>(kind)];
}

int64_t HostMemory::live_allocations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(blocks_.size());
}

}  // namespace hipserve::kvstore
