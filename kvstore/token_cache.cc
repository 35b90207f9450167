#include "kvstore/token_cache.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "kvstore/cache_ops.h"

namespace hipserve::kvstore {
namespace {

int64_t BankBytes(const TokenCacheOptions& o) {
  return int64_t{o.num_kv_heads} * o.slots_per_head * o.head_dim * DtypeBytes(o.dtype);
}

int64_t ScratchTokens(const TokenCacheOptions& o) {
  return std::min<int64_t>(o.fill_batch_tokens, int64_t{o.num_kv_heads} * o.slots_per_head);
}

int64_t ScratchSrcOffset(const TokenCacheOptions& o) {
  return (ScratchTokens(o) * 4 + 15) / 16 * 16;
}

}  // namespace

int64_t TokenCache::DeviceBytes(const TokenCacheOptions& o) {
  return BankBytes(o) * (o.with_values ? 2 : 1) + ScratchSrcOffset(o) + ScratchTokens(o) * 8;
}

TokenCache::TokenCache(const TokenCacheOptions& options, Memory* memory)
    : options_(options), memory_(memory) {
  const int32_t rows = options.num_kv_heads * options.slots_per_head;
  slots_.resize(rows);
  lru_head_.assign(options.num_kv_heads, -1);
  mru_tail_.assign(options.num_kv_heads, -1);
  for (int32_t r = 0; r < rows; ++r) PushMru(r);
}

absl::StatusOr<std::unique_ptr<TokenCache>> TokenCache::Create(const TokenCacheOptions& o,
                                                               Memory* memory) {
  if (o.num_kv_heads <= 0 || o.slots_per_head <= 0 || o.head_dim <= 0 || o.head_dim % 16 != 0 ||
      o.fill_batch_tokens <= 0 || int64_t{o.num_kv_heads} * o.slots_per_head > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("TokenCache: bad shape heads=", o.num_kv_heads, " slots=", o.slots_per_head,
                     " head_dim=", o.head_dim, " fill_batch_tokens=", o.fill_batch_tokens));
  }
  std::unique_ptr<TokenCache> cache(new TokenCache(o, memory));
  absl::StatusOr<void*> k = memory->Allocate(MemoryKind::kDevice, BankBytes(o));
  if (!k.ok()) return k.status();
  cache->bank_k_ = *k;
  if (o.with_values) {
    absl::StatusOr<void*> v = memory->Allocate(MemoryKind::kDevice, BankBytes(o));
    if (!v.ok()) return v.status();  // destructor frees bank_k_
    cache->bank_v_ = *v;
  }
  absl::StatusOr<void*> scratch =
      memory->Allocate(MemoryKind::kDevice, ScratchSrcOffset(o) + ScratchTokens(o) * 8);
  if (!scratch.ok()) return scratch.status();
  cache->scratch_ = *scratch;
  return cache;
}

TokenCache::~TokenCache() {
  for (void* p : {bank_k_, bank_v_, scratch_}) {
    if (p == nullptr) continue;
    absl::Status s = memory_->Free(MemoryKind::kDevice, p);
    if (!s.ok()) LOG(ERROR) << "TokenCache: free failed: " << s;
  }
}

absl::Status TokenCache::CheckHead(KvHeadId head) const {
  if (head.value() < 0 || head.value() >= options_.num_kv_heads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TokenCache: KV head ", head.value(), " out of range [0, ", options_.num_kv_heads, ")"));
  }
  return absl::OkStatus();
}

void TokenCache::Unlink(int32_t row) {
  const int h = row / options_.slots_per_head;
  Slot& s = slots_[row];
  if (s.prev >= 0)
    slots_[s.prev].next = s.next;
  else
    lru_head_[h] = s.next;
  if (s.next >= 0)
    slots_[s.next].prev = s.prev;
  else
    mru_tail_[h] = s.prev;
  s.prev = s.next = -1;
}

void TokenCache::PushMru(int32_t row) {
  const int h = row / options_.slots_per_head;
  Slot& s = slots_[row];
  s.prev = mru_tail_[h];
  s.next = -1;
  if (mru_tail_[h] >= 0)
    slots_[mru_tail_[h]].next = row;
  else
    lru_head_[h] = row;
  mru_tail_[h] = row;
}

void TokenCache::PushLru(int32_t row) {
  const int h = row / options_.slots_per_head;
  Slot& s = slots_[row];
  s.next = lru_head_[h];
  s.prev = -1;
  if (lru_head_[h] >= 0)
    slots_[lru_head_[h]].prev = row;
  else
    mru_tail_[h] = row;
  lru_head_[h] = row;
}

void TokenCache::Drop(int32_t row) {
  Slot& s = slots_[row];
  CHECK(s.valid);
  table_.erase(s.key);
  auto it = entries_per_seq_.find(s.key.seq);
  if (--it->second == 0) entries_per_seq_.erase(it);
  s.valid = false;
  Unlink(row);
  PushLru(row);
}

absl::Status TokenCache::Lookup(SequenceId seq, KvHeadId head, absl::Span<const int64_t> tokens,
                                absl::Span<int32_t> rows_out) {
  absl::Status s = CheckHead(head);
  if (!s.ok()) return s;
  if (rows_out.size() < tokens.size()) return absl::InvalidArgumentError("rows_out too small");
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < tokens.size(); ++i) {
    auto it = table_.find(Key{seq.value(), head.value(), tokens[i]});
    if (it == table_.end()) {
      rows_out[i] = kAbsent;
      ++stats_.misses;
    } else {
      rows_out[i] = it->second;
      ++stats_.hits;
      Unlink(it->second);
      PushMru(it->second);
    }
  }
  return absl::OkStatus();
}

absl::Status TokenCache::PlanFill(SequenceId seq, KvHeadId head, absl::Span<const int64_t> tokens,
                                  FillPlan* plan) {
  absl::Status s = CheckHead(head);
  if (!s.ok()) return s;
  if (!plan->entries.empty() && plan->seq != seq) {
    return absl::InvalidArgumentError("FillPlan holds another sequence");
  }
  plan->seq = seq;
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> missing;
  absl::flat_hash_set<int64_t> seen;
  for (int64_t t : tokens) {
    auto it = table_.find(Key{seq.value(), head.value(), t});
    if (it != table_.end()) {
      Unlink(it->second);
      PushMru(it->second);
    } else if (seen.insert(t).second) {
      missing.push_back(t);
    }
  }
  const size_t keep = std::min<size_t>(missing.size(), options_.slots_per_head);
  for (size_t i = missing.size() - keep; i < missing.size(); ++i) {
    const int32_t row = lru_head_[head.value()];
    Slot& slot = slots_[row];
    if (slot.valid) {
      ++stats_.evictions;
      Drop(row);
    }
    slot.key = Key{seq.value(), head.value(), missing[i]};
    slot.valid = true;
    table_[slot.key] = row;
    ++entries_per_seq_[seq.value()];
    Unlink(row);
    PushMru(row);
    const FillPlan::Entry entry{row, head, missing[i]};
    auto [pos, inserted] = plan->index_of_row.try_emplace(row, plan->entries.size());
    if (inserted) {
      plan->entries.push_back(entry);
    } else {
      plan->entries[pos->second] = entry;  // an earlier planned token was evicted again
    }
  }
  return absl::OkStatus();
}

absl::Status TokenCache::Fill(const FillPlan& plan, absl::Span<const uint64_t> src_k) {
  if (src_k.size() != plan.entries.size()) {
    return absl::InvalidArgumentError(absl::StrCat("TokenCache::Fill: ", src_k.size(),
                                                   " sources for ", plan.entries.size(),
                                                   " planned tokens"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int32_t> rows(plan.entries.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = plan.entries[i].row;
  std::vector<uint64_t> src(src_k.begin(), src_k.end());
  SortFillBySource(&rows, &src);
  CacheFillParams p;
  p.bank_k = bank_k_;
  p.bank_v = bank_v_;
  p.bank_dtype = options_.dtype;
  p.v_offset_bytes = options_.cold_v_offset_bytes;
  p.head_dim = options_.head_dim;
  absl::Status status;
  const int64_t batch = ScratchTokens(options_);
  for (int64_t begin = 0; begin < static_cast<int64_t>(rows.size()) && status.ok();
       begin += batch) {
    p.n = std::min<int64_t>(batch, rows.size() - begin);
    if (!memory_->OnDevice()) {
      p.rows = rows.data() + begin;
      p.src = src.data() + begin;
      status = CacheFillHost(p);
      continue;
    }
    char* scratch = static_cast<char*>(scratch_);
    status = memory_->Copy(scratch, rows.data() + begin, p.n * 4);
    if (status.ok()) {
      status = memory_->Copy(scratch + ScratchSrcOffset(options_), src.data() + begin, p.n * 8);
    }
    if (!status.ok()) break;
    p.rows = reinterpret_cast<const int32_t*>(scratch);
    p.src = reinterpret_cast<const uint64_t*>(scratch + ScratchSrcOffset(options_));
    status = CacheFillCuda(p, nullptr);
    // The next batch overwrites the scratch: a synchronous copy orders it after this launch.
  }
  if (!status.ok()) {
    for (const FillPlan::Entry& e : plan.entries) {
      Slot& slot = slots_[e.row];
      if (slot.valid && slot.key == Key{plan.seq.value(), e.head.value(), e.token}) Drop(e.row);
    }
    return status;
  }
  stats_.filled += static_cast<int64_t>(rows.size());
  return absl::OkStatus();
}

void TokenCache::Invalidate(SequenceId seq, int64_t from_token) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!entries_per_seq_.contains(seq.value())) return;
  for (int32_t r = 0; r < static_cast<int32_t>(slots_.size()); ++r) {
    const Slot& s = slots_[r];
    if (s.valid && s.key.seq == seq.value() && s.key.token >= from_token) Drop(r);
  }
}

CacheStats TokenCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<int32_t> TokenCache::LruOrder(KvHeadId head) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int32_t> out;
  if (head.value() < 0 || head.value() >= options_.num_kv_heads) return out;
  for (int32_t r = lru_head_[head.value()]; r >= 0; r = slots_[r].next) out.push_back(r);
  return out;
}

int64_t TokenCache::Entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(table_.size());
}

}  // namespace hipserve::kvstore
