// GPU: a kernel reads tokens through the caches (hits from the device bank, misses straight
// from mapped pinned host memory) and gets the same bytes as the CPU path, which runs the
// identical script on HostMemory with the host implementation.
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kvstore/cache_ops.h"
#include "kvstore/cuda_memory.h"
#include "kvstore/host_memory.h"
#include "kvstore/paged_store.h"
#include "kvstore/test_data.h"

namespace hipserve::kvstore {
namespace {

constexpr int kHeads = 2, kDim = 128;

struct Result {
  std::vector<uint16_t> k, v, mask_k;
  CacheStats sa, mask;
};

// Appends the same data, fills and looks up the same tokens, then gathers through both caches.
Result RunScript(Memory* memory, KvDtype dtype) {
  Result r;
  KvStoreOptions o;
  o.num_layers = 1;
  o.num_kv_heads = kHeads;
  o.head_dim = kDim;
  o.offload = true;
  o.hot_dtype = dtype;
  o.n_sink = 64;
  o.n_window = 64;
  o.mask_cache_tokens = 512;
  o.sa_cache_tokens = 64;
  o.gpu_kv_bytes = 64 << 20;
  o.host_kv_bytes = 64 << 20;
  o.cold_chunk_bytes = 1 << 20;
  auto store_or = PagedKvStore::Create(o, memory);
  EXPECT_TRUE(store_or.ok()) << store_or.status();
  if (!store_or.ok()) return r;
  PagedKvStore& store = **store_or;
  const SequenceId seq(1);
  const int64_t n = 5000;
  EXPECT_TRUE(store.AddSequence(seq).ok());
  auto k = testing::RandomBf16(n * kHeads * kDim, 1);
  auto v = testing::RandomBf16(n * kHeads * kDim, 2);
  EXPECT_TRUE(store.Append(seq, LayerId(0), k.data(), v.data(), n).ok());

  std::vector<int64_t> warm, want;
  for (int64_t t = 0; t < n; t += 7) warm.push_back(t);  // some get evicted (> 64 slots)
  for (int64_t t = 3; t < n; t += 13) want.push_back(t);
  for (int64_t i = static_cast<int64_t>(warm.size()) - 40; i < static_cast<int64_t>(warm.size());
       ++i) {
    want.push_back(warm[i]);  // guaranteed sa hits
  }
  for (TokenCache* c : {store.sa_cache(LayerId(0)), store.mask_cache(LayerId(0))}) {
    for (int h = 0; h < kHeads; ++h) {
      FillPlan plan;
      EXPECT_TRUE(c->PlanFill(seq, KvHeadId(h), warm, &plan).ok());
      EXPECT_TRUE(store.FillCache(c, LayerId(0), plan).ok());
    }
  }
  const int h = 1;
  auto src = store.ColdRowAddresses(seq, LayerId(0), KvHeadId(h), want);
  EXPECT_TRUE(src.ok());
  const int64_t m = static_cast<int64_t>(want.size());
  r.k.assign(m * kDim, 0xFFFF);  // poison
  r.v.assign(m * kDim, 0xFFFF);
  r.mask_k.assign(m * kDim, 0xFFFF);
  for (TokenCache* c : {store.sa_cache(LayerId(0)), store.mask_cache(LayerId(0))}) {
    const bool sa = c == store.sa_cache(LayerId(0));
    std::vector<int32_t> rows(m);
    EXPECT_TRUE(c->Lookup(seq, KvHeadId(h), want, absl::MakeSpan(rows)).ok());
    CacheGatherParams p;
    p.bank_k = c->bank_k();
    p.bank_v = c->bank_v();
    p.bank_dtype = dtype;
    p.v_offset_bytes = 64 * kDim;
    p.n = m;
    p.head_dim = kDim;
    std::vector<uint16_t>& out_k = sa ? r.k : r.mask_k;
    if (!memory->OnDevice()) {
      p.rows = rows.data();
      p.src = src->data();
      p.out_k = out_k.data();
      p.out_v = sa ? r.v.data() : nullptr;
      EXPECT_TRUE(CacheGatherHost(p).ok());
    } else {
      // Index arrays and outputs in device memory; cold rows stay in mapped host memory.
      auto d_rows = memory->Allocate(MemoryKind::kDevice, m * 4);
      auto d_src = memory->Allocate(MemoryKind::kDevice, m * 8);
      auto d_k = memory->Allocate(MemoryKind::kDevice, m * kDim * 2);
      auto d_v = memory->Allocate(MemoryKind::kDevice, m * kDim * 2);
      EXPECT_TRUE(memory->Copy(*d_rows, rows.data(), m * 4).ok());
      EXPECT_TRUE(memory->Copy(*d_src, src->data(), m * 8).ok());
      EXPECT_TRUE(memory->Copy(*d_k, out_k.data(), m * kDim * 2).ok());
      p.rows = static_cast<const int32_t*>(*d_rows);
      p.src = static_cast<const uint64_t*>(*d_src);
      p.out_k = static_cast<uint16_t*>(*d_k);
      p.out_v = sa ? static_cast<uint16_t*>(*d_v) : nullptr;
      EXPECT_TRUE(CacheGatherCuda(p, nullptr).ok());
      EXPECT_TRUE(memory->Copy(out_k.data(), *d_k, m * kDim * 2).ok());  // synchronises
      if (sa) {
        EXPECT_TRUE(memory->Copy(r.v.data(), *d_v, m * kDim * 2).ok());
      }
      for (void* ptr : {*d_rows, *d_src, *d_k, *d_v}) {
        EXPECT_TRUE(memory->Free(MemoryKind::kDevice, ptr).ok());
      }
    }
  }
  r.sa = store.sa_cache(LayerId(0))->stats();
  r.mask = store.mask_cache(LayerId(0))->stats();
  // The CPU path must also agree with the cold tier itself.
  for (int64_t i = 0; i < m && !memory->OnDevice(); ++i) {
    std::vector<uint16_t> ck(kDim), cv(kDim);
    EXPECT_TRUE(
        store.ReadCold(seq, LayerId(0), KvHeadId(h), want[i], 1, ck.data(), cv.data()).ok());
    EXPECT_EQ(std::vector<uint16_t>(r.k.begin() + i * kDim, r.k.begin() + (i + 1) * kDim), ck);
    EXPECT_EQ(std::vector<uint16_t>(r.v.begin() + i * kDim, r.v.begin() + (i + 1) * kDim), cv);
  }
  return r;
}

class CacheGpuTest : public ::testing::TestWithParam<KvDtype> {};

TEST_P(CacheGpuTest, KernelReadsThroughCachesLikeTheCpuPath) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  auto cuda = NewCudaMemory(0);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  HostMemory host;
  const Result want = RunScript(&host, GetParam());
  const Result got = RunScript(cuda->get(), GetParam());
  EXPECT_GT(want.sa.hits, 0);
  EXPECT_GT(want.sa.misses, 0);
  EXPECT_GT(want.mask.hits, want.sa.hits);
  EXPECT_EQ(got.sa.hits, want.sa.hits);
  EXPECT_EQ(got.mask.hits, want.mask.hits);
  EXPECT_EQ(got.k, want.k);
  EXPECT_EQ(got.v, want.v);
  EXPECT_EQ(got.mask_k, want.mask_k);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CacheGpuTest, ::testing::Values(KvDtype::kBf16, KvDtype::kFp8E5m2),
                         [](const ::testing::TestParamInfo<KvDtype>& info) {
                           return std::string(DtypeName(info.param));
                         });

}  // namespace
}  // namespace hipserve::kvstore
