#include "kvstore/page_pool.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace hipserve::kvstore {

PagePool::PagePool(Memory* memory, MemoryKind kind, int64_t page_bytes, int64_t capacity_pages,
                   int64_t chunk_pages)
    : memory_(memory),
      kind_(kind),
      page_bytes_(page_bytes),
      capacity_pages_(capacity_pages),
      chunk_pages_(std::max<int64_t>(1, chunk_pages)) {
  CHECK_GT(page_bytes_, 0);
  CHECK_GE(capacity_pages_, 0);
}

PagePool::~PagePool() {
  for (const Chunk& c : chunks_) {
    absl::Status s = memory_->Free(kind_, c.base);
    if (!s.ok()) LOG(ERROR) << "PagePool: freeing a chunk failed: " << s;
  }
}

absl::Status PagePool::AddChunk() {
  const int64_t pages = std::min(chunk_pages_, capacity_pages_ - chunk_pages_total_);
  CHECK_GT(pages, 0);
  absl::StatusOr<void*> p = memory_->Allocate(kind_, pages * page_bytes_);
  if (!p.ok()) return p.status();
  Chunk c;
  c.base = static_cast<char*>(*p);
  if (kind_ == MemoryKind::kDevice) {
    c.device_base = c.base;
  } else {
    absl::StatusOr<const void*> dev = memory_->MapToDevice(c.base);
    if (!dev.ok()) {
      (void)memory_->Free(kind_, c.base);
      return dev.status();
    }
    c.device_base = static_cast<const char*>(*dev);
  }
  chunks_.push_back(c);
  chunk_pages_total_ += pages;
  in_use_.resize(chunk_pages_total_, false);
  return absl::OkStatus();
}

absl::Status PagePool::Reserve(int64_t pages) {
  const int64_t want = std::min(pages, capacity_pages_);
  while (chunk_pages_total_ < want) RETURN_IF_ERROR(AddChunk());
  return absl::OkStatus();
}

absl::Status PagePool::Allocate(int64_t n, std::vector<PageId>* out) {
  if (n < 0) return absl::InvalidArgumentError("PagePool: negative page count");
  if (n > free_pages()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("need ", n, " pages, ", free_pages(), " of ", capacity_pages_, " free"));
  }
  const size_t start = out->size();
  for (int64_t i = 0; i < n; ++i) {
    int64_t id;
    if (!free_list_.empty()) {
      id = free_list_.back();
      free_list_.pop_back();
    } else {
      if (next_fresh_ == chunk_pages_total_) {
        absl::Status s = AddChunk();
        if (!s.ok()) {
          for (size_t j = start; j < out->size(); ++j) Release((*out)[j]);
          out->resize(start);
          return s;
        }
      }
      id = next_fresh_++;
    }
    in_use_[id] = true;
    ++used_pages_;
    out->push_back(PageId(id));
  }
  return absl::OkStatus();
}

void PagePool::Release(PageId page) {
  const int64_t id = page.value();
  CHECK(id >= 0 && id < next_fresh_ && in_use_[id])
      << "PagePool: release of page " << id << " that is not allocated";
  in_use_[id] = false;
  --used_pages_;
  free_list_.push_back(id);
}

bool PagePool::InUse(PageId page) const {
  const int64_t id = page.value();
  return id >= 0 && id < next_fresh_ && in_use_[id];
}

void* PagePool::Address(PageId page) const {
  const int64_t id = page.value();
  const Chunk& c = chunks_[id / chunk_pages_];
  return c.base + (id % chunk_pages_) * page_bytes_;
}

const void* PagePool::DeviceAddress(PageId page) const {
  const int64_t id = page.value();
  const Chunk& c = chunks_[id / chunk_pages_];
  return c.device_base + (id % chunk_pages_) * page_bytes_;
}

}  // namespace hipserve::kvstore
