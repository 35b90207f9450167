// The attention kernels read the tiered KV through kernels/attention_cuda/kv_source.h, which
// mirrors kvstore's page geometry (kernels do not depend on kvstore; KvDtype is one type, owned
// by kernels). This test pins the mirror: the page size at compile time, and at run time that
// the addresses a kernel derives from a per-page table (page base + (t % 64) * head_dim for K, + 64
// * head_dim more for V) are exactly PagedKvStore::ColdRowAddresses and hold the fp8 rows that were
// appended.
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention_cuda/kv_source.h"
#include "kvstore/fp8_e5m2.h"
#include "kvstore/host_memory.h"
#include "kvstore/kv_types.h"
#include "kvstore/paged_store.h"
#include "kvstore/test_data.h"
#include "kvstore/token_cache.h"

namespace hipserve::kvstore {
namespace {

static_assert(kernels::kKvPageTokens == kPageTokens, "cold page geometry differs");
static_assert(std::is_same_v<KvDtype, kernels::KvDtype>, "kvstore::KvDtype is kernels'");
static_assert(TokenCache::kAbsent < 0, "kernels treat any negative slot as absent");

TEST(TieredLayoutTest, KernelColdAddressesEqualColdRowAddresses) {
  constexpr int kHeads = 2, kDim = 32, kTokens = 300;  // 5 pages, the last one partial
  HostMemory mem;
  KvStoreOptions o;
  o.num_layers = 1;
  o.num_kv_heads = kHeads;
  o.head_dim = kDim;
  o.offload = true;
  o.n_sink = 64;
  o.n_window = 64;
  o.mask_cache_tokens = 8;
  o.sa_cache_tokens = 8;
  o.gpu_kv_bytes = int64_t{1} << 22;
  o.host_kv_bytes = int64_t{1} << 22;
  o.cold_chunk_bytes = 3 * PageBytes(kDim, 1);  // pages spread over several chunks
  auto store = PagedKvStore::Create(o, &mem);
  ASSERT_TRUE(store.ok()) << store.status();
  const SequenceId seq(7);
  ASSERT_TRUE((*store)->AddSequence(seq).ok());
  const std::vector<uint16_t> k = testing::RandomBf16(int64_t{kTokens} * kHeads * kDim, 1);
  const std::vector<uint16_t> v = testing::RandomBf16(int64_t{kTokens} * kHeads * kDim, 2);
  ASSERT_TRUE((*store)->Append(seq, LayerId(0), k.data(), v.data(), kTokens).ok());

  for (int h = 0; h < kHeads; ++h) {
    std::vector<int64_t> tokens(kTokens);
    for (int t = 0; t < kTokens; ++t) tokens[t] = t;
    auto rows = (*store)->ColdRowAddresses(seq, LayerId(0), KvHeadId(h), tokens);
    ASSERT_TRUE(rows.ok()) << rows.status();
    // The kernel-side page table: the address of each page's first K row.
    std::vector<uint64_t> pages;
    for (int t = 0; t < kTokens; t += kernels::kKvPageTokens) pages.push_back((*rows)[t]);
    for (int t = 0; t < kTokens; ++t) {
      const uint64_t kaddr = pages[t / kernels::kKvPageTokens] +
                             static_cast<uint64_t>(t % kernels::kKvPageTokens) * kDim;
      ASSERT_EQ(kaddr, (*rows)[t]) << "head " << h << " token " << t;
      const auto* kr = reinterpret_cast<const uint8_t*>(kaddr);
      const uint8_t* vr = kr + kernels::kKvPageTokens * kDim;
      for (int i = 0; i < kDim; ++i) {
        const int64_t src = (int64_t{t} * kHeads + h) * kDim + i;
        ASSERT_EQ(kr[i], Bf16ToFp8E5m2(k[src])) << "K head " << h << " token " << t;
        ASSERT_EQ(vr[i], Bf16ToFp8E5m2(v[src])) << "V head " << h << " token " << t;
      }
    }
  }
}

}  // namespace
}  // namespace hipserve::kvstore
