// PagePool: lazy chunks, Reserve (chunks up front, so Allocate takes no allocator time), the cap.
#include "kvstore/page_pool.h"

#include <vector>

#include "gtest/gtest.h"
#include "kvstore/faulty_memory.h"
#include "kvstore/host_memory.h"

namespace hipserve::kvstore {
namespace {

constexpr int64_t kPageBytes = 4096;

TEST(PagePoolTest, ChunksAreAllocatedLazily) {
  HostMemory host;
  FaultyMemory mem(&host);
  PagePool pool(&mem, MemoryKind::kHostMapped, kPageBytes, /*capacity_pages=*/10,
                /*chunk_pages=*/4);
  EXPECT_EQ(mem.allocations(), 0);
  std::vector<PageId> got;
  ASSERT_TRUE(pool.Allocate(5, &got).ok());
  EXPECT_EQ(mem.allocations(), 2);  // pages 0-3, 4-7
  EXPECT_EQ(pool.reserved_pages(), 8);
  EXPECT_EQ(host.live_bytes(MemoryKind::kHostMapped), 8 * kPageBytes);
}

TEST(PagePoolTest, ReserveBacksEveryPageUpFrontAndAllocateThenAllocatesNothing) {
  HostMemory host;
  FaultyMemory mem(&host);
  PagePool pool(&mem, MemoryKind::kHostMapped, kPageBytes, /*capacity_pages=*/10,
                /*chunk_pages=*/4);
  ASSERT_TRUE(pool.Reserve(100).ok());  // clamped to the capacity
  EXPECT_EQ(mem.allocations(), 3);      // 4 + 4 + 2 pages: the last chunk is cut at the cap
  EXPECT_EQ(pool.reserved_pages(), 10);
  EXPECT_EQ(host.live_bytes(MemoryKind::kHostMapped), 10 * kPageBytes);
  EXPECT_EQ(pool.used_pages(), 0);
  std::vector<PageId> got;
  ASSERT_TRUE(pool.Allocate(10, &got).ok());
  EXPECT_EQ(mem.allocations(), 3);
  EXPECT_FALSE(pool.Allocate(1, &got).ok());  // the cap still holds
  // Pages of different chunks do not overlap.
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_NE(pool.Address(got[i - 1]), pool.Address(got[i]));
  }
}

TEST(PagePoolTest, ReserveFailureKeepsTheChunksAlreadyAllocated) {
  HostMemory host;
  FaultyMemory mem(&host);
  PagePool pool(&mem, MemoryKind::kHostMapped, kPageBytes, /*capacity_pages=*/12,
                /*chunk_pages=*/4);
  mem.FailAllocationAfter(1);
  const absl::Status s = pool.Reserve(12);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(pool.reserved_pages(), 4);
  std::vector<PageId> got;
  ASSERT_TRUE(pool.Allocate(12, &got).ok());  // the rest comes lazily once memory is back
  EXPECT_EQ(pool.reserved_pages(), 12);
}

TEST(PagePoolTest, ReservePartOfTheCapacity) {
  HostMemory host;
  PagePool pool(&host, MemoryKind::kHostMapped, kPageBytes, /*capacity_pages=*/12,
                /*chunk_pages=*/4);
  ASSERT_TRUE(pool.Reserve(5).ok());
  EXPECT_EQ(pool.reserved_pages(), 8);  // whole chunks
  ASSERT_TRUE(pool.Reserve(0).ok());
  EXPECT_EQ(pool.reserved_pages(), 8);
}

}  // namespace
}  // namespace hipserve::kvstore
