#include "kvstore/paged_store.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"
#include "kvstore/cache_ops.h"
#include "kvstore/faulty_memory.h"
#include "kvstore/host_memory.h"
#include "kvstore/test_data.h"

namespace hipserve::kvstore {
namespace {

using testing::RandomBf16;
using testing::Slice;

constexpr int kLayers = 2, kHeads = 2, kDim = 16;
constexpr int64_t kHotPage = 2 * 64 * kDim * 2;  // bf16
constexpr int64_t kColdPage = 2 * 64 * kDim;     // fp8

KvStoreOptions BaseOptions(bool offload) {
  KvStoreOptions o;
  o.num_layers = kLayers;
  o.num_kv_heads = kHeads;
  o.head_dim = kDim;
  o.offload = offload;
  o.n_sink = 64;     // 1 sink page
  o.n_window = 128;  // 3 window pages (2 + 1)
  o.mask_cache_tokens = 8;
  o.sa_cache_tokens = 4;
  o.hot_chunk_bytes = kHotPage;  // one page per chunk: every page is an allocation
  o.cold_chunk_bytes = 2 * kColdPage;
  return o;
}

// What the test appended, to check read-back against.
struct Model {
  absl::flat_hash_map<uint64_t, std::vector<std::vector<uint16_t>>> k, v;  // [layer] -> data
};

class PagedStoreTest : public ::testing::Test {
 protected:
  void Make(const KvStoreOptions& o, Memory* memory = nullptr) {
    store_.reset();
    auto s = PagedKvStore::Create(o, memory != nullptr ? memory : &host_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  int64_t CacheBytes() const { return Stats().hot.fixed_bytes; }
  KvStoreStats Stats() const { return store_->Stats(); }

  absl::Status AppendAll(SequenceId seq, int64_t n, uint32_t seed) {
    for (int l = 0; l < kLayers; ++l) {
      auto k = RandomBf16(n * kHeads * kDim, seed * 31 + l);
      auto v = RandomBf16(n * kHeads * kDim, seed * 37 + l + 7);
      absl::Status s = store_->Append(seq, LayerId(l), k.data(), v.data(), n);
      if (!s.ok()) return s;
      auto& mk = model_.k[seq.value()];
      auto& mv = model_.v[seq.value()];
      mk.resize(kLayers);
      mv.resize(kLayers);
      mk[l].insert(mk[l].end(), k.begin(), k.end());
      mv[l].insert(mv[l].end(), v.begin(), v.end());
    }
    return absl::OkStatus();
  }

  // Every token of every layer/head reads back as appended: bf16 from hot pages, fp8-rounded
  // from cold ones; the cold tier holds the fp8 rounding of everything.
  void ExpectIntact(SequenceId seq) {
    SCOPED_TRACE(::testing::Message() << "sequence " << seq.value());
    const bool offload = store_->options().offload;
    for (int l = 0; l < kLayers; ++l) {
      const auto& mk = model_.k[seq.value()][l];
      const auto& mv = model_.v[seq.value()][l];
      const int64_t n = static_cast<int64_t>(mk.size()) / (kHeads * kDim);
      ASSERT_EQ(*store_->LayerLength(seq, LayerId(l)), n);
      for (int h = 0; h < kHeads; ++h) {
        std::vector<uint16_t> k(n * kDim), v(n * kDim);
        ASSERT_TRUE(store_->Read(seq, LayerId(l), KvHeadId(h), 0, n, k.data(), v.data()).ok());
        for (int64_t p = 0; p * 64 < n; ++p) {
          const int64_t rows = std::min<int64_t>(64, n - p * 64);
          const bool hot = store_->Locate(seq, LayerId(l), p)->hot;
          auto wk = Slice(mk, kHeads, kDim, h, p * 64, rows, !hot);
          auto wv = Slice(mv, kHeads, kDim, h, p * 64, rows, !hot);
          ASSERT_EQ(
              std::vector<uint16_t>(k.begin() + p * 64 * kDim, k.begin() + (p * 64 + rows) * kDim),
              wk)
              << "layer " << l << " head " << h << " page " << p;
          ASSERT_EQ(
              std::vector<uint16_t>(v.begin() + p * 64 * kDim, v.begin() + (p * 64 + rows) * kDim),
              wv);
        }
        if (offload) {
          ASSERT_TRUE(
              store_->ReadCold(seq, LayerId(l), KvHeadId(h), 0, n, k.data(), v.data()).ok());
          ASSERT_EQ(k, Slice(mk, kHeads, kDim, h, 0, n, true));
          ASSERT_EQ(v, Slice(mv, kHeads, kDim, h, 0, n, true));
        }
      }
    }
  }

  HostMemory host_;
  FaultyMemory faulty_{&host_};
  std::unique_ptr<PagedKvStore> store_;
  Model model_;
};

TEST_F(PagedStoreTest, RejectsBadOptions) {
  KvStoreOptions o = BaseOptions(false);
  o.head_dim = 12;
  EXPECT_EQ(PagedKvStore::Create(o, &host_).status().code(), absl::StatusCode::kInvalidArgument);
  o = BaseOptions(true);
  o.gpu_kv_bytes = 1 << 20;
  o.host_kv_bytes = 0;
  EXPECT_EQ(PagedKvStore::Create(o, &host_).status().code(), absl::StatusCode::kInvalidArgument);
  o.host_kv_bytes = 1 << 20;
  o.cold_chunk_bytes = int64_t{5} << 30;
  EXPECT_EQ(PagedKvStore::Create(o, &host_).status().code(), absl::StatusCode::kInvalidArgument);
  o = BaseOptions(true);
  o.host_kv_bytes = 1 << 20;
  o.gpu_kv_bytes = 100;  // less than the caches
  auto s = PagedKvStore::Create(o, &host_);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.status().message().find("--gpu_kv_bytes=100"), std::string::npos);
}

TEST_F(PagedStoreTest, FillToHotBudgetThenExhaustedWithNumbersAndDataIntact) {
  KvStoreOptions o = BaseOptions(false);
  o.gpu_kv_bytes = 12 * kHotPage + 100;  // 12 pages; the remainder is never used
  Make(o);
  EXPECT_EQ(Stats().hot.pages_capacity, 12);
  // 3 sequences x 2 layers x 2 heads x 1 page = 12 pages.
  for (uint64_t i = 1; i <= 3; ++i) {
    ASSERT_TRUE(store_->AddSequence(SequenceId(i)).ok());
    ASSERT_TRUE(AppendAll(SequenceId(i), 40 + i, i).ok());
  }
  EXPECT_EQ(Stats().hot.pages_used, 12);
  EXPECT_EQ(Stats().hot.used_bytes, 12 * kHotPage);
  // Filling the partial pages needs no new page.
  ASSERT_TRUE(AppendAll(SequenceId(1), 64 - 41, 11).ok());
  // The next page does not fit.
  ASSERT_TRUE(store_->AddSequence(SequenceId(4)).ok());
  auto k = RandomBf16(kHeads * kDim, 5);
  absl::Status s = store_->Append(SequenceId(4), LayerId(0), k.data(), k.data(), 1);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find("need 2 pages (8192 bytes), 0 of 12 pages free"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("--gpu_kv_bytes=49252"), std::string::npos) << s.message();
  s = store_->Append(SequenceId(1), LayerId(0), k.data(), k.data(), 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*store_->Length(SequenceId(4)), 0);
  EXPECT_EQ(*store_->Length(SequenceId(1)), 64);
  EXPECT_EQ(Stats().hot.pages_used, 12);
  for (uint64_t i = 1; i <= 3; ++i) ExpectIntact(SequenceId(i));
  EXPECT_EQ(store_->WouldFit(1).code(), absl::StatusCode::kResourceExhausted);
  // Freeing returns exactly what was taken, and the space is usable again.
  ASSERT_TRUE(store_->Free(SequenceId(2)).ok());
  EXPECT_EQ(Stats().hot.pages_used, 8);
  EXPECT_TRUE(store_->WouldFit(64).ok());
  EXPECT_EQ(store_->WouldFit(65).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(AppendAll(SequenceId(4), 64, 4).ok());
  ExpectIntact(SequenceId(4));
  ExpectIntact(SequenceId(1));
}

TEST_F(PagedStoreTest, OffloadKeepsSinkWindowNewestHotAndEverythingCold) {
  KvStoreOptions o = BaseOptions(true);
  o.gpu_kv_bytes = int64_t{1} << 20;
  o.host_kv_bytes = int64_t{1} << 20;
  Make(o);
  const SequenceId a(7);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(AppendAll(a, 300, 1).ok());  // prefill chunk: pages 0..4
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(AppendAll(a, 1, 100 + i).ok());  // decode
  const int64_t pages = (450 + 63) / 64;                                     // 8
  for (int l = 0; l < kLayers; ++l) {
    for (int64_t p = 0; p < pages; ++p) {
      auto loc = store_->Locate(a, LayerId(l), p);
      ASSERT_TRUE(loc.ok());
      EXPECT_TRUE(loc->cold) << p;
      EXPECT_EQ(loc->hot, p == 0 || p >= pages - 3) << "page " << p;
    }
  }
  EXPECT_EQ(Stats().hot.pages_used, kLayers * kHeads * 4);
  EXPECT_EQ(Stats().cold.pages_used, kLayers * kHeads * pages);
  EXPECT_EQ(Stats().hot.used_bytes, kLayers * kHeads * 4 * kHotPage + CacheBytes());
  EXPECT_EQ(store_->BytesFor(450).hot_pages, kLayers * kHeads * 4);
  EXPECT_EQ(store_->BytesFor(450).cold_pages, kLayers * kHeads * pages);
  ExpectIntact(a);
}

TEST_F(PagedStoreTest, AdmissionIsExact) {
  KvStoreOptions o = BaseOptions(true);
  // A 640-token sequence: 10 pages per (layer, head), 4 of them hot.
  const int64_t lh = kLayers * kHeads;
  o.gpu_kv_bytes = 1 << 20;
  o.host_kv_bytes = lh * 10 * kColdPage + kColdPage - 1;
  Make(o);
  o.gpu_kv_bytes = CacheBytes() + lh * 4 * kHotPage;
  Make(o);
  EXPECT_TRUE(store_->WouldFit(640).ok()) << store_->WouldFit(640);
  absl::Status s = store_->WouldFit(641);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("need 44 pages"), std::string::npos) << s.message();
  const SequenceId a(1);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(AppendAll(a, 200, 1).ok());
  for (int i = 0; i < 440; ++i) ASSERT_TRUE(AppendAll(a, 1, 10 + i).ok());
  EXPECT_EQ(Stats().hot.pages_used, Stats().hot.pages_capacity);
  EXPECT_EQ(Stats().cold.pages_used, Stats().cold.pages_capacity);
  auto k = RandomBf16(kHeads * kDim, 3);
  s = store_->Append(a, LayerId(0), k.data(), k.data(), 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("cold tier (--host_kv_bytes="), std::string::npos) << s.message();
  ExpectIntact(a);
}

TEST_F(PagedStoreTest, FreeReturnsExactlyTheBytesTaken) {
  KvStoreOptions o = BaseOptions(true);
  o.gpu_kv_bytes = 1 << 20;
  o.host_kv_bytes = 1 << 20;
  Make(o);
  const KvStoreStats empty = Stats();
  const SequenceId a(1), b(2);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(store_->AddSequence(b).ok());
  ASSERT_TRUE(AppendAll(a, 500, 1).ok());
  const KvStoreStats one = Stats();
  ASSERT_TRUE(AppendAll(b, 130, 2).ok());
  const KvBytes bb = store_->BytesFor(130);
  EXPECT_EQ(Stats().hot.used_bytes - one.hot.used_bytes, bb.hot_bytes);
  EXPECT_EQ(Stats().cold.used_bytes - one.cold.used_bytes, bb.cold_bytes);
  ASSERT_TRUE(store_->Free(b).ok());
  EXPECT_EQ(Stats().hot.used_bytes, one.hot.used_bytes);
  EXPECT_EQ(Stats().cold.used_bytes, one.cold.used_bytes);
  ASSERT_TRUE(store_->Free(a).ok());
  EXPECT_EQ(Stats().hot.used_bytes, empty.hot.used_bytes);
  EXPECT_EQ(Stats().cold.used_bytes, empty.cold.used_bytes);
  EXPECT_EQ(Stats().sequences, 0);
  store_.reset();
  EXPECT_EQ(host_.live_allocations(), 0);
}

TEST_F(PagedStoreTest, UnknownAndDoubleFreedSequencesAreErrors) {
  KvStoreOptions o = BaseOptions(false);
  o.gpu_kv_bytes = 1 << 20;
  Make(o);
  const SequenceId a(1), b(2);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(store_->AddSequence(b).ok());
  EXPECT_EQ(store_->AddSequence(a).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(AppendAll(a, 70, 1).ok());
  ASSERT_TRUE(AppendAll(b, 10, 2).ok());
  const int64_t used = Stats().hot.pages_used;
  ASSERT_TRUE(store_->Free(a).ok());
  EXPECT_EQ(store_->Free(a).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Free(SequenceId(99)).code(), absl::StatusCode::kNotFound);
  auto k = RandomBf16(kHeads * kDim, 1);
  EXPECT_EQ(store_->Append(a, LayerId(0), k.data(), k.data(), 1).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Truncate(a, 0).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Length(a).status().code(), absl::StatusCode::kNotFound);
  std::vector<uint16_t> out(kDim);
  EXPECT_EQ(store_->Read(a, LayerId(0), KvHeadId(0), 0, 1, out.data(), nullptr).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Append(b, LayerId(2), k.data(), k.data(), 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Read(b, LayerId(0), KvHeadId(0), 5, 6, out.data(), nullptr).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Stats().hot.pages_used, used - kLayers * kHeads * 2);
  ExpectIntact(b);
}

TEST_F(PagedStoreTest, LayersCannotGetAheadOfLayerZero) {
  KvStoreOptions o = BaseOptions(false);
  o.gpu_kv_bytes = 1 << 20;
  Make(o);
  ASSERT_TRUE(store_->AddSequence(SequenceId(1)).ok());
  auto k = RandomBf16(kHeads * kDim, 1);
  EXPECT_EQ(store_->Append(SequenceId(1), LayerId(1), k.data(), k.data(), 1).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Every allocation point of an append is made to fail in turn; each failure leaves the store
// exactly as before, and the same append then succeeds.
TEST_F(PagedStoreTest, InjectedAllocationFailureMidAppendLeavesStoreConsistent) {
  for (bool offload : {false, true}) {
    SCOPED_TRACE(offload ? "offload" : "all hot");
    FaultyMemory& faulty = faulty_;
    KvStoreOptions o = BaseOptions(offload);
    o.gpu_kv_bytes = 1 << 20;
    o.host_kv_bytes = 1 << 20;
    model_ = Model();
    Make(o, &faulty);
    const SequenceId a(1), b(2);
    ASSERT_TRUE(store_->AddSequence(a).ok());
    ASSERT_TRUE(store_->AddSequence(b).ok());
    ASSERT_TRUE(AppendAll(a, 100, 1).ok());
    ASSERT_TRUE(AppendAll(b, 30, 2).ok());
    const int64_t before_allocs = faulty.allocations();
    int failures = 0;
    for (int64_t after = 0;; ++after) {
      const KvStoreStats before = Stats();
      faulty.FailAllocationAfter(after);
      auto k = RandomBf16(300 * kHeads * kDim, 50);
      absl::Status s = store_->Append(a, LayerId(0), k.data(), k.data(), 300);
      faulty.FailAllocationAfter(-1);
      if (s.ok()) {
        model_.k[1][0].insert(model_.k[1][0].end(), k.begin(), k.end());
        model_.v[1][0].insert(model_.v[1][0].end(), k.begin(), k.end());
        break;
      }
      ++failures;
      EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
      EXPECT_EQ(*store_->Length(a), 100);
      EXPECT_EQ(Stats().hot.pages_used, before.hot.pages_used);
      EXPECT_EQ(Stats().cold.pages_used, before.cold.pages_used);
      ExpectIntact(a);
      ExpectIntact(b);
    }
    EXPECT_GT(failures, 2);
    EXPECT_GT(faulty.allocations(), before_allocs);
    ExpectIntact(a);
    ExpectIntact(b);
    ASSERT_TRUE(store_->Free(a).ok());
    ASSERT_TRUE(store_->Free(b).ok());
    EXPECT_EQ(Stats().hot.pages_used, 0);
    EXPECT_EQ(Stats().cold.pages_used, 0);
  }
}

TEST_F(PagedStoreTest, InjectedCopyFailureRollsBack) {
  FaultyMemory& faulty = faulty_;
  KvStoreOptions o = BaseOptions(false);
  o.gpu_kv_bytes = 1 << 20;
  Make(o, &faulty);
  const SequenceId a(1);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(AppendAll(a, 100, 1).ok());
  const KvStoreStats before = Stats();
  faulty.FailCopyAfter(3);
  auto k = RandomBf16(100 * kHeads * kDim, 9);
  absl::Status s = store_->Append(a, LayerId(0), k.data(), k.data(), 100);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(*store_->Length(a), 100);
  EXPECT_EQ(Stats().hot.pages_used, before.hot.pages_used);
  ExpectIntact(a);
}

// With a full hot tier, pages leaving the window are reused for the new ones; a copy failure
// then rebuilds them from the cold tier (fp8) and the store stays consistent.
TEST_F(PagedStoreTest, CopyFailureWithReusedHotPagesRestoresFromCold) {
  FaultyMemory& faulty = faulty_;
  KvStoreOptions o = BaseOptions(true);
  o.host_kv_bytes = 1 << 20;
  o.gpu_kv_bytes = 1 << 20;
  Make(o, &faulty);
  o.gpu_kv_bytes = CacheBytes() + kLayers * kHeads * 4 * kHotPage;  // exactly one sequence
  Make(o, &faulty);
  const SequenceId a(1);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(AppendAll(a, 256, 1).ok());
  ASSERT_EQ(Stats().hot.pages_used, Stats().hot.pages_capacity);
  const KvStoreStats before = Stats();
  faulty.FailCopyAfter(1);
  auto k = RandomBf16(64 * kHeads * kDim, 9);
  EXPECT_EQ(store_->Append(a, LayerId(0), k.data(), k.data(), 64).code(),
            absl::StatusCode::kInternal);
  faulty.FailCopyAfter(-1);
  EXPECT_EQ(*store_->Length(a), 256);
  EXPECT_EQ(Stats().hot.pages_used, before.hot.pages_used);
  EXPECT_EQ(Stats().cold.pages_used, before.cold.pages_used);
  for (int h = 0; h < kHeads; ++h) {
    std::vector<uint16_t> got(256 * kDim);
    ASSERT_TRUE(store_->Read(a, LayerId(0), KvHeadId(h), 0, 256, got.data(), nullptr).ok());
    auto exact = Slice(model_.k[1][0], kHeads, kDim, h, 0, 256, false);
    auto fp8 = Slice(model_.k[1][0], kHeads, kDim, h, 0, 256, true);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(got[i] == exact[i] || got[i] == fp8[i]) << i;
    }
  }
  ASSERT_TRUE(AppendAll(a, 64, 3).ok());  // and the store still works
  ExpectIntact(a);
}

TEST_F(PagedStoreTest, TruncateReturnsPagesAndRehydratesTheWindow) {
  KvStoreOptions o = BaseOptions(true);
  o.gpu_kv_bytes = 1 << 20;
  o.host_kv_bytes = 1 << 20;
  Make(o);
  const SequenceId a(1);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(AppendAll(a, 700, 1).ok());
  EXPECT_EQ(store_->Truncate(a, 701).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->Truncate(a, 330).ok());
  EXPECT_EQ(*store_->Length(a), 330);
  EXPECT_EQ(Stats().hot.pages_used, store_->BytesFor(330).hot_pages);
  EXPECT_EQ(Stats().cold.pages_used, store_->BytesFor(330).cold_pages);
  for (int l = 0; l < kLayers; ++l) {
    for (int64_t p = 0; p < 6; ++p) {
      EXPECT_EQ(store_->Locate(a, LayerId(l), p)->hot, p == 0 || p >= 3) << p;
    }
  }
  // Re-hydrated pages hold the fp8 rounding; the rest is exact.
  for (int l = 0; l < kLayers; ++l) {
    for (int h = 0; h < kHeads; ++h) {
      std::vector<uint16_t> k(330 * kDim);
      ASSERT_TRUE(store_->Read(a, LayerId(l), KvHeadId(h), 0, 330, k.data(), nullptr).ok());
      EXPECT_EQ(std::vector<uint16_t>(k.begin() + 192 * kDim, k.begin() + 256 * kDim),
                Slice(model_.k[1][l], kHeads, kDim, h, 192, 64, true));
      EXPECT_EQ(std::vector<uint16_t>(k.begin(), k.begin() + 64 * kDim),
                Slice(model_.k[1][l], kHeads, kDim, h, 0, 64, false));
    }
  }
}

// The host read-through path: tokens read via the caches (hits from the bank, misses from
// the cold tier) equal the cold tier's contents.
TEST_F(PagedStoreTest, ReadThroughCachesMatchesColdTier) {
  KvStoreOptions o = BaseOptions(true);
  o.gpu_kv_bytes = 1 << 20;
  o.host_kv_bytes = 1 << 20;
  Make(o);
  const SequenceId a(1);
  ASSERT_TRUE(store_->AddSequence(a).ok());
  ASSERT_TRUE(AppendAll(a, 500, 1).ok());
  TokenCache* sa = store_->sa_cache(LayerId(1));
  ASSERT_NE(sa, nullptr);
  ASSERT_NE(store_->mask_cache(LayerId(1)), nullptr);
  const std::vector<int64_t> first = {70, 71, 300, 301};
  FillPlan plan;
  ASSERT_TRUE(sa->PlanFill(a, KvHeadId(1), first, &plan).ok());
  ASSERT_TRUE(store_->FillCache(sa, LayerId(1), plan).ok());
  const std::vector<int64_t> want = {301, 5, 70, 499, 300};
  std::vector<int32_t> rows(want.size());
  ASSERT_TRUE(sa->Lookup(a, KvHeadId(1), want, absl::MakeSpan(rows)).ok());
  EXPECT_EQ(sa->stats().hits, 3);
  EXPECT_EQ(sa->stats().misses, 2);
  auto src = store_->ColdRowAddresses(a, LayerId(1), KvHeadId(1), want);
  ASSERT_TRUE(src.ok());
  std::vector<uint16_t> k(want.size() * kDim), v(want.size() * kDim);
  CacheGatherParams p;
  p.bank_k = sa->bank_k();
  p.bank_v = sa->bank_v();
  p.rows = rows.data();
  p.src = src->data();
  p.v_offset_bytes = 64 * kDim;
  p.n = static_cast<int64_t>(want.size());
  p.head_dim = kDim;
  p.out_k = k.data();
  p.out_v = v.data();
  ASSERT_TRUE(CacheGatherHost(p).ok());
  for (size_t i = 0; i < want.size(); ++i) {
    std::vector<uint16_t> ck(kDim), cv(kDim);
    ASSERT_TRUE(
        store_->ReadCold(a, LayerId(1), KvHeadId(1), want[i], 1, ck.data(), cv.data()).ok());
    EXPECT_EQ(std::vector<uint16_t>(k.begin() + i * kDim, k.begin() + (i + 1) * kDim), ck) << i;
    EXPECT_EQ(std::vector<uint16_t>(v.begin() + i * kDim, v.begin() + (i + 1) * kDim), cv) << i;
  }
  // Freeing the sequence drops its cache entries.
  ASSERT_TRUE(store_->Free(a).ok());
  EXPECT_EQ(sa->Entries(), 0);
  EXPECT_EQ(store_->Stats().sa_cache.hits, 3);
}

}  // namespace
}  // namespace hipserve::kvstore
