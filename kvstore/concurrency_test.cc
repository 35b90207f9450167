// Concurrent appends to different sequences from several threads (run under the tsan preset
// to check for data races), plus readers of stats and admission in parallel.
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kvstore/host_memory.h"
#include "kvstore/paged_store.h"
#include "kvstore/test_data.h"

namespace hipserve::kvstore {
namespace {

using testing::RandomBf16;
using testing::Slice;

constexpr int kLayers = 2, kHeads = 2, kDim = 16, kThreads = 4;

TEST(KvStoreConcurrencyTest, ParallelAppendsToDifferentSequences) {
  for (bool offload : {false, true}) {
    SCOPED_TRACE(offload ? "offload" : "all hot");
    HostMemory host;
    KvStoreOptions o;
    o.num_layers = kLayers;
    o.num_kv_heads = kHeads;
    o.head_dim = kDim;
    o.offload = offload;
    o.n_sink = 64;
    o.n_window = 64;
    o.mask_cache_tokens = 16;
    o.sa_cache_tokens = 8;
    o.gpu_kv_bytes = 8 << 20;
    o.host_kv_bytes = 8 << 20;
    o.hot_chunk_bytes = 8 * 4096;
    o.cold_chunk_bytes = 8 * 2048;
    auto created = PagedKvStore::Create(o, &host);
    ASSERT_TRUE(created.ok()) << created.status();
    PagedKvStore* store = created->get();

    std::vector<std::vector<std::vector<uint16_t>>> data(
        kThreads, std::vector<std::vector<uint16_t>>(kLayers));
    std::atomic<bool> done{false};
    std::thread watcher([&] {
      while (!done.load()) {
        KvStoreStats s = store->Stats();
        EXPECT_LE(s.hot.used_bytes, s.hot.budget_bytes);
        (void)store->WouldFit(1000);
      }
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t] {
        const SequenceId seq(100 + t);
        ASSERT_TRUE(store->AddSequence(seq).ok());
        for (int step = 0; step < 40; ++step) {
          const int64_t n = step == 0 ? 100 : 1 + (step * 7 + t) % 5;
          for (int l = 0; l < kLayers; ++l) {
            auto k = RandomBf16(n * kHeads * kDim, 1000 * t + 10 * step + l);
            ASSERT_TRUE(store->Append(seq, LayerId(l), k.data(), k.data(), n).ok());
            data[t][l].insert(data[t][l].end(), k.begin(), k.end());
          }
          if (offload && step % 5 == 0) {
            TokenCache* c = store->sa_cache(LayerId(0));
            FillPlan plan;
            std::vector<int64_t> tokens = {0, 1, step};
            ASSERT_TRUE(c->PlanFill(seq, KvHeadId(t % kHeads), tokens, &plan).ok());
            ASSERT_TRUE(store->FillCache(c, LayerId(0), plan).ok());
          }
        }
      });
    }
    for (auto& w : workers) w.join();
    done.store(true);
    watcher.join();

    for (int t = 0; t < kThreads; ++t) {
      const SequenceId seq(100 + t);
      for (int l = 0; l < kLayers; ++l) {
        const int64_t n = static_cast<int64_t>(data[t][l].size()) / (kHeads * kDim);
        ASSERT_EQ(*store->LayerLength(seq, LayerId(l)), n);
        for (int h = 0; h < kHeads; ++h) {
          std::vector<uint16_t> k(n * kDim);
          ASSERT_TRUE(store->Read(seq, LayerId(l), KvHeadId(h), 0, n, k.data(), nullptr).ok());
          for (int64_t p = 0; p * 64 < n; ++p) {
            const int64_t rows = std::min<int64_t>(64, n - p * 64);
            const bool hot = store->Locate(seq, LayerId(l), p)->hot;
            ASSERT_EQ(std::vector<uint16_t>(k.begin() + p * 64 * kDim,
                                            k.begin() + (p * 64 + rows) * kDim),
                      Slice(data[t][l], kHeads, kDim, h, p * 64, rows, !hot));
          }
        }
      }
    }
    const KvStoreStats before = store->Stats();
    EXPECT_EQ(before.sequences, kThreads);
    std::vector<std::thread> freers;
    for (int t = 0; t < kThreads; ++t) {
      freers.emplace_back([&, t] { EXPECT_TRUE(store->Free(SequenceId(100 + t)).ok()); });
    }
    for (auto& f : freers) f.join();
    EXPECT_EQ(store->Stats().hot.pages_used, 0);
    EXPECT_EQ(store->Stats().cold.pages_used, 0);
    created->reset();
    EXPECT_EQ(host.live_allocations(), 0);
  }
}

}  // namespace
}  // namespace hipserve::kvstore
