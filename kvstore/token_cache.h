// TokenCache: one HiP GPU token cache of one layer (HIP.md 7): the mask cache (keys only) or
// the sa cache (keys and values).
//
// Owns a bank of `slots_per_head` rows per local KV head in device memory (hot dtype):
//   bank_k [num_kv_heads * slots_per_head][head_dim], bank_v likewise (sa cache only);
//   head h owns rows [h * slots_per_head, (h + 1) * slots_per_head).
// A table maps (sequence, head, token) -> bank row or "absent"; each head keeps an LRU list
// of its rows. Lookup counts hits and misses and marks hits most recent; PlanFill assigns
// missed tokens to LRU victim rows (counting evictions); Fill then copies all planned tokens
// from the cold tier into the bank in one batched pass (one kernel launch per
// fill_batch_tokens on the GPU).
// Thread-safety: all methods take an internal mutex. Lifetime: bank freed on destruction.
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

namespace hipserve::kvstore {

struct TokenCacheOptions {
  int num_kv_heads = 0;             // > 0
  int slots_per_head = 0;           // > 0
  int head_dim = 0;                 // > 0, multiple of 16
  bool with_values = false;         // false: mask cache (K only); true: sa cache (K and V)
  KvDtype dtype = KvDtype::kBf16;   // bank element type
  int64_t cold_v_offset_bytes = 0;  // V row = K row + this (kPageTokens * head_dim)
  int fill_batch_tokens = 65536;    // tokens per fill launch; sizes the device scratch
};

struct CacheStats {
  int64_t hits = 0;
  int64_t misses = 0;
  int64_t evictions = 0;  // valid entries replaced by PlanFill
  int64_t filled = 0;     // tokens copied into the bank by Fill
  double hit_ratio() const {
    return hits + misses == 0 ? 0.0 : static_cast<double>(hits) / (hits + misses);
  }
};

// Tokens of one sequence assigned to bank rows, waiting for Fill.
struct FillPlan {
  struct Entry {
    int32_t row;
    KvHeadId head;
    int64_t token;
  };
  SequenceId seq;
  std::vector<Entry> entries;
  absl::flat_hash_map<int32_t, int> index_of_row;  // row -> entry (a row appears once)
};

class TokenCache {
 public:
  static constexpr int32_t kAbsent = -1;

  static absl::StatusOr<std::unique_ptr<TokenCache>> Create(const TokenCacheOptions& options,
                                                            Memory* memory);
  // Device bytes Create will allocate for `options` (bank + fill scratch).
  static int64_t DeviceBytes(const TokenCacheOptions& options);
  ~TokenCache();

  // rows_out[i] = bank row of tokens[i] or kAbsent. Counts hits/misses; hits become MRU.
  absl::Status Lookup(SequenceId seq, KvHeadId head, absl::Span<const int64_t> tokens,
                      absl::Span<int32_t> rows_out);
  // Assigns the absent tokens among `tokens` (duplicates once) to LRU victim rows and records
  // them in `plan` (which must be empty or for the same sequence). Present tokens become MRU.
  // With more distinct misses than slots, only the last slots_per_head are kept. The table
  // already points at the new rows: call Fill before reading them.
  absl::Status PlanFill(SequenceId seq, KvHeadId head, absl::Span<const int64_t> tokens,
                        FillPlan* plan);
  // Copies plan.entries[i] from src_k[i] (device-visible fp8 K row; V at +cold_v_offset_bytes)
  // into the bank. On failure the planned rows are marked absent again.
  absl::Status Fill(const FillPlan& plan, absl::Span<const uint64_t> src_k);
  // Drops the entries of `seq` with token >= from_token (sequence freed or truncated).
  void Invalidate(SequenceId seq, int64_t from_token);

  CacheStats stats() const;
  // Rows of `head` from least to most recently used (for tests and debugging).
  std::vector<int32_t> LruOrder(KvHeadId head) const;
  int64_t Entries() const;

  const TokenCacheOptions& options() const { return options_; }
  void* bank_k() const { return bank_k_; }
  void* bank_v() const { return bank_v_; }
  int64_t device_bytes() const { return DeviceBytes(options_); }

 private:
  struct Key {
    uint64_t seq;
    int32_t head;
    int64_t token;
    friend bool operator==(const Key& a, const Key& b) {
      return a.seq == b.seq && a.head == b.head && a.token == b.token;
    }
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.seq, k.head, k.token);
    }
  };
  struct Slot {
    Key key;
    bool valid = false;
    int32_t prev = -1;  // toward LRU end
    int32_t next = -1;  // toward MRU end
  };

  TokenCache(const TokenCacheOptions& options, Memory* memory);
  absl::Status CheckHead(KvHeadId head) const;
  void Unlink(int32_t row);
  void PushMru(int32_t row);
  void PushLru(int32_t row);
  void Drop(int32_t row);  // invalidates a valid row and moves it to the LRU end

  TokenCacheOptions options_;
  Memory* memory_;
  void* bank_k_ = nullptr;
  void* bank_v_ = nullptr;
  void* scratch_ = nullptr;  // device: [fill_batch] int32 rows, then [fill_batch] uint64 src

  mutable std::mutex mu_;
  std::vector<Slot> slots_;
  std::vector<int32_t> lru_head_;  // per head: least recently used row
  std::vector<int32_t> mru_tail_;  // per head: most recently used row
  absl::flat_hash_map<Key, int32_t> table_;
  absl::flat_hash_map<uint64_t, int64_t> entries_per_seq_;
  CacheStats stats_;
};

}  // namespace hipserve::kvstore
