// PagePool: fixed-size pages of one Memory kind under a hard page cap.
//
// Owns its chunks (allocated lazily, each at most `chunk_pages` pages, never more pages in
// total than `capacity_pages`, so live bytes never exceed capacity_pages * page_bytes) and
// frees them on destruction. Page ids are dense: page i lives in chunk i / chunk_pages.
// Not thread-safe: PagedKvStore calls it under its mutex. Addresses stay valid until the pool
// is destroyed (chunks are never freed earlier), so they may be used outside that mutex.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kvstore/kv_types.h"
#include "kvstore/memory.h"

namespace hipserve::kvstore {

class PagePool {
 public:
  PagePool(Memory* memory, MemoryKind kind, int64_t page_bytes, int64_t capacity_pages,
           int64_t chunk_pages);
  ~PagePool();
  PagePool(const PagePool&) = delete;
  PagePool& operator=(const PagePool&) = delete;

  // Appends `n` pages to `out`, all or nothing. ResourceExhausted when fewer than `n` are free
  // (message has the numbers); the Memory's error when a new chunk can't be allocated.
  absl::Status Allocate(int64_t n, std::vector<PageId>* out);
  // Allocates chunks now until the first min(pages, capacity_pages) pages are backed, so that
  // later Allocate calls take no allocator time (pinned host chunks cost ~0.1-0.5 s per GiB to
  // allocate and map; a server reserves its tier at startup instead of inside a step). All or
  // nothing per chunk: on failure the chunks allocated before it stay (and are used); the
  // Memory's error is returned. No pages are handed out.
  absl::Status Reserve(int64_t pages);
  // Returns a page. CHECK-fails on a page that is not allocated (a store bug, not user input).
  void Release(PageId page);
  bool InUse(PageId page) const;

  void* Address(PageId page) const;              // host-visible (or device, for kDevice)
  const void* DeviceAddress(PageId page) const;  // device-visible (mapped, for kHostMapped)

  int64_t page_bytes() const { return page_bytes_; }
  int64_t capacity_pages() const { return capacity_pages_; }
  int64_t used_pages() const { return used_pages_; }
  int64_t free_pages() const { return capacity_pages_ - used_pages_; }
  int64_t allocated_bytes() const { return chunk_pages_total_ * page_bytes_; }
  int64_t reserved_pages() const { return chunk_pages_total_; }  // pages backed by chunks

 private:
  struct Chunk {
    char* base = nullptr;
    const char* device_base = nullptr;
  };
  absl::Status AddChunk();

  Memory* memory_;
  MemoryKind kind_;
  int64_t page_bytes_;
  int64_t capacity_pages_;
  int64_t chunk_pages_;
  std::vector<Chunk> chunks_;
  int64_t chunk_pages_total_ = 0;  // pages covered by allocated chunks
  int64_t next_fresh_ = 0;         // first never-used page id
  std::vector<int64_t> free_list_;
  std::vector<bool> in_use_;
  int64_t used_pages_ = 0;
};

}  // namespace hipserve::kvstore
