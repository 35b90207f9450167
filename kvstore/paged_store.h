// PagedKvStore: the paged, tiered KV store (DESIGN.md "kvstore", HIP.md 7).
//
// Unit: a page of 64 tokens of one layer and one local KV head, K [64][head_dim] then
// V [64][head_dim] (kvstore/FORMAT.md). Each sequence has a page table per layer:
// page index -> (hot page, cold page) per KV head.
// Tiers:
//  * hot: device memory (Memory kDevice), hot_dtype. Offload off: every page is hot.
//    Offload on: only the sink pages, the window pages and the newest page (IsHotPage).
//  * cold (offload on only): pinned, device-mapped host memory, fp8 e5m2; holds every token.
//  * caches (offload on only): per layer a mask cache and an sa cache (TokenCache), allocated
//    at Create out of --gpu_kv_bytes.
// Budgets are hard: device bytes (hot pages + caches) <= gpu_kv_bytes, pinned bytes (cold
// pages) <= host_kv_bytes; going past fails with RESOURCE_EXHAUSTED and the numbers, and no
// failed call changes what any sequence holds.
//
// Thread-safety: every method may be called from any thread. One mutex guards the tables
// and pools; Append does its data copies outside it, so appends to different sequences
// proceed in parallel. Calls on one sequence must not overlap (one writer per sequence, as in
// a decode step); an overlapping mutating call fails with FailedPrecondition rather than
// corrupting anything.
// Lifetime: owns its pools and caches; `memory` must outlive the store.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kvstore/kv_types.h"
#include "kvstore/memory.h"
#include "kvstore/options.h"
#include "kvstore/page_pool.h"
#include "kvstore/token_cache.h"

namespace hipserve::kvstore {

struct TierStats {
  int64_t budget_bytes = 0;  // the flag value
  int64_t used_bytes = 0;    // pages in use * page bytes (+ cache banks, for hot)
  int64_t fixed_bytes = 0;   // cache banks and fill scratch (hot only)
  int64_t page_bytes = 0;
  int64_t pages_used = 0;
  int64_t pages_capacity = 0;
};

struct KvStoreStats {
  TierStats hot;
  TierStats cold;
  CacheStats mask_cache;  // summed over layers
  CacheStats sa_cache;
  int64_t sequences = 0;
  int64_t tokens = 0;  // layer-0 tokens over all sequences
};

// Bytes a sequence of N tokens takes (pages only; caches are fixed costs paid at Create).
struct KvBytes {
  int64_t hot_pages = 0;
  int64_t cold_pages = 0;
  int64_t hot_bytes = 0;
  int64_t cold_bytes = 0;
};

struct PageLocation {
  bool hot = false;
  bool cold = false;
};

class PagedKvStore {
 public:
  static absl::StatusOr<std::unique_ptr<PagedKvStore>> Create(const KvStoreOptions& options,
                                                              Memory* memory);
  ~PagedKvStore();

  // Starts an empty sequence. AlreadyExists if it is live.
  absl::Status AddSequence(SequenceId seq);
  // Appends `n` tokens of one layer. k and v: host memory, bf16 bits, [n][num_kv_heads][head_dim].
  // Layer 0 sets the sequence length; other layers may not get ahead of layer 0.
  // Errors: NotFound (unknown sequence), InvalidArgument, FailedPrecondition (layer ahead of
  // layer 0, overlapping call), ResourceExhausted (budget, with numbers), or the Memory's error.
  // On any error the sequence is unchanged.
  absl::Status Append(SequenceId seq, LayerId layer, const uint16_t* k, const uint16_t* v,
                      int64_t n);
  // Shrinks every layer to at most `tokens` tokens (rolls back a failed step).
  absl::Status Truncate(SequenceId seq, int64_t tokens);
  // Returns all pages of the sequence. NotFound when unknown (also on a second Free).
  absl::Status Free(SequenceId seq);

  bool Contains(SequenceId seq) const;
  absl::StatusOr<int64_t> Length(SequenceId seq) const;  // layer 0
  absl::StatusOr<int64_t> LayerLength(SequenceId seq, LayerId layer) const;

  // Tokens [begin, begin + n) of one (layer, head) as bf16 bits [n][head_dim]: hot pages as
  // stored (hot_dtype), other pages decoded from the cold tier. v_out may be null.
  absl::Status Read(SequenceId seq, LayerId layer, KvHeadId head, int64_t begin, int64_t n,
                    uint16_t* k_out, uint16_t* v_out) const;
  // Same from the cold tier only (fp8 decoded). FailedPrecondition without offload.
  absl::Status ReadCold(SequenceId seq, LayerId layer, KvHeadId head, int64_t begin, int64_t n,
                        uint16_t* k_out, uint16_t* v_out) const;
  absl::StatusOr<PageLocation> Locate(SequenceId seq, LayerId layer, int64_t page) const;
  // Device-visible address of each token's fp8 K row in the cold tier (V row at
  // + kPageTokens * head_dim). What kernels read misses from.
  absl::StatusOr<std::vector<uint64_t>> ColdRowAddresses(SequenceId seq, LayerId layer,
                                                         KvHeadId head,
                                                         absl::Span<const int64_t> tokens) const;

  // The layer's caches; null without offload or when the size option is 0.
  TokenCache* mask_cache(LayerId layer) const;
  TokenCache* sa_cache(LayerId layer) const;
  // Resolves the plan's cold rows (plan.seq, `layer`) and fills `cache`.
  absl::Status FillCache(TokenCache* cache, LayerId layer, const FillPlan& plan) const;

  // Admission. Exact: a new sequence can grow to `tokens` (every layer) iff WouldFit is OK
  // and nothing else allocates meanwhile.
  KvBytes BytesFor(int64_t tokens) const;
  absl::Status WouldFit(int64_t tokens) const;

  KvStoreStats Stats() const;
  const KvStoreOptions& options() const { return options_; }

 private:
  struct PageRef {
    PageId hot{-1};
    PageId cold{-1};
  };
  struct LayerTable {
    int64_t length = 0;
    std::vector<PageRef> pages;  // [page][num_kv_heads]
  };
  struct Sequence {
    std::vector<LayerTable> layers;
    bool busy = false;  // an Append is copying data outside the mutex
  };

  PagedKvStore(const KvStoreOptions& options, Memory* memory);
  absl::StatusOr<const Sequence*> FindLocked(SequenceId seq) const;
  absl::Status ReadImpl(SequenceId seq, LayerId layer, KvHeadId head, int64_t begin, int64_t n,
                        bool cold_only, uint16_t* k_out, uint16_t* v_out) const;
  // Re-creates a hot copy of a page from its cold copy (Truncate, Append rollback).
  absl::Status RestoreHotFromCold(PageRef* ref);
  void ReleasePages(LayerTable* table, int64_t from_page);
  std::string BudgetMessage(int64_t hot_need, int64_t cold_need) const;

  KvStoreOptions options_;
  Memory* memory_;
  int64_t hot_page_bytes_;
  int64_t cold_page_bytes_;
  int64_t cache_bytes_ = 0;
  std::vector<std::unique_ptr<TokenCache>> mask_caches_;
  std::vector<std::unique_ptr<TokenCache>> sa_caches_;

  mutable std::mutex mu_;
  std::unique_ptr<PagePool> hot_;
  std::unique_ptr<PagePool> cold_;  // null without offload
  absl::flat_hash_map<SequenceId, Sequence> seqs_;
};

}  // namespace hipserve::kvstore
