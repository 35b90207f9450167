// PagedKvStore: creation, sequence lifetime, admission, stats, cache plumbing.
// Append / Read / Truncate live in paged_store_io.cc.
#include "kvstore/paged_store.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace hipserve::kvstore {

PagedKvStore::PagedKvStore(const KvStoreOptions& options, Memory* memory)
    : options_(options),
      memory_(memory),
      hot_page_bytes_(PageBytes(options.head_dim, DtypeBytes(options.hot_dtype))),
      cold_page_bytes_(PageBytes(options.head_dim, 1)) {}

PagedKvStore::~PagedKvStore() = default;

absl::StatusOr<std::unique_ptr<PagedKvStore>> PagedKvStore::Create(const KvStoreOptions& o,
                                                                   Memory* memory) {
  absl::Status s = ValidateOptions(o);
  if (!s.ok()) return s;
  std::unique_ptr<PagedKvStore> store(new PagedKvStore(o, memory));
  if (o.offload) {
    TokenCacheOptions mask;
    mask.num_kv_heads = o.num_kv_heads;
    mask.slots_per_head = o.mask_cache_tokens;
    mask.head_dim = o.head_dim;
    mask.with_values = false;
    mask.dtype = o.hot_dtype;
    mask.cold_v_offset_bytes = int64_t{kPageTokens} * o.head_dim;
    mask.fill_batch_tokens = o.fill_batch_tokens;
    TokenCacheOptions sa = mask;
    sa.slots_per_head = o.sa_cache_tokens;
    sa.with_values = true;
    const int64_t per_layer = (o.mask_cache_tokens > 0 ? TokenCache::DeviceBytes(mask) : 0) +
                              (o.sa_cache_tokens > 0 ? TokenCache::DeviceBytes(sa) : 0);
    store->cache_bytes_ = per_layer * o.num_layers;
    if (store->cache_bytes_ > o.gpu_kv_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("KV caches need ", store->cache_bytes_, " device bytes (", o.num_layers,
                       " layers x ", per_layer, "), more than --gpu_kv_bytes=", o.gpu_kv_bytes));
    }
    for (int l = 0; l < o.num_layers; ++l) {
      if (o.mask_cache_tokens > 0) {
        ASSIGN_OR_RETURN(auto c, TokenCache::Create(mask, memory));
        store->mask_caches_.push_back(std::move(c));
      }
      if (o.sa_cache_tokens > 0) {
        ASSIGN_OR_RETURN(auto c, TokenCache::Create(sa, memory));
        store->sa_caches_.push_back(std::move(c));
      }
    }
    store->cold_ = std::make_unique<PagePool>(
        memory, MemoryKind::kHostMapped, store->cold_page_bytes_,
        o.host_kv_bytes / store->cold_page_bytes_, o.cold_chunk_bytes / store->cold_page_bytes_);
  }
  store->hot_ =
      std::make_unique<PagePool>(memory, MemoryKind::kDevice, store->hot_page_bytes_,
                                 (o.gpu_kv_bytes - store->cache_bytes_) / store->hot_page_bytes_,
                                 o.hot_chunk_bytes / store->hot_page_bytes_);
  return store;
}

absl::Status PagedKvStore::AddSequence(SequenceId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seqs_.contains(seq)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", seq.value(), " already live"));
  }
  Sequence s;
  s.layers.resize(options_.num_layers);
  seqs_.emplace(seq, std::move(s));
  return absl::OkStatus();
}

absl::StatusOr<const PagedKvStore::Sequence*> PagedKvStore::FindLocked(SequenceId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown sequence ", seq.value()));
  }
  return &it->second;
}

void PagedKvStore::ReleasePages(LayerTable* table, int64_t from_page) {
  const int64_t heads = options_.num_kv_heads;
  for (size_t i = from_page * heads; i < table->pages.size(); ++i) {
    PageRef& ref = table->pages[i];
    if (ref.hot.value() >= 0) hot_->Release(ref.hot);
    if (ref.cold.value() >= 0) cold_->Release(ref.cold);
  }
  table->pages.resize(from_page * heads);
}

absl::Status PagedKvStore::Free(SequenceId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("free of unknown (or already freed) sequence ", seq.value()));
  }
  if (it->second.busy) {
    return absl::FailedPreconditionError(
        absl::StrCat("free of sequence ", seq.value(), " while an append is in flight"));
  }
  for (LayerTable& t : it->second.layers) ReleasePages(&t, 0);
  seqs_.erase(it);
  for (auto& c : mask_caches_) c->Invalidate(seq, 0);
  for (auto& c : sa_caches_) c->Invalidate(seq, 0);
  return absl::OkStatus();
}

bool PagedKvStore::Contains(SequenceId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  return seqs_.contains(seq);
}

absl::StatusOr<int64_t> PagedKvStore::Length(SequenceId seq) const {
  return LayerLength(seq, LayerId(0));
}

absl::StatusOr<int64_t> PagedKvStore::LayerLength(SequenceId seq, LayerId layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(const Sequence* s, FindLocked(seq));
  if (layer.value() < 0 || layer.value() >= options_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer.value(), " out of range"));
  }
  return s->layers[layer.value()].length;
}

absl::StatusOr<PageLocation> PagedKvStore::Locate(SequenceId seq, LayerId layer,
                                                  int64_t page) const {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(const Sequence* s, FindLocked(seq));
  if (layer.value() < 0 || layer.value() >= options_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer.value(), " out of range"));
  }
  const LayerTable& t = s->layers[layer.value()];
  const int64_t heads = options_.num_kv_heads;
  if (page < 0 || (page + 1) * heads > static_cast<int64_t>(t.pages.size())) {
    return absl::OutOfRangeError(absl::StrCat("page ", page, " not in sequence ", seq.value()));
  }
  PageLocation loc;
  loc.hot = t.pages[page * heads].hot.value() >= 0;
  loc.cold = t.pages[page * heads].cold.value() >= 0;
  return loc;
}

absl::StatusOr<std::vector<uint64_t>> PagedKvStore::ColdRowAddresses(
    SequenceId seq, LayerId layer, KvHeadId head, absl::Span<const int64_t> tokens) const {
  if (!options_.offload) return absl::FailedPreconditionError("no cold tier without offload");
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(const Sequence* s, FindLocked(seq));
  if (layer.value() < 0 || layer.value() >= options_.num_layers || head.value() < 0 ||
      head.value() >= options_.num_kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer.value(), " / head ", head.value(), " out of range"));
  }
  const LayerTable& t = s->layers[layer.value()];
  std::vector<uint64_t> out(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= t.length) {
      return absl::OutOfRangeError(
          absl::StrCat("token ", tokens[i], " of a ", t.length, "-token layer"));
    }
    const PageRef& ref = t.pages[(tokens[i] / kPageTokens) * options_.num_kv_heads + head.value()];
    out[i] = reinterpret_cast<uint64_t>(static_cast<const char*>(cold_->DeviceAddress(ref.cold)) +
                                        (tokens[i] % kPageTokens) * options_.head_dim);
  }
  return out;
}

TokenCache* PagedKvStore::mask_cache(LayerId layer) const {
  const size_t l = layer.value();
  return l < mask_caches_.size() ? mask_caches_[l].get() : nullptr;
}

TokenCache* PagedKvStore::sa_cache(LayerId layer) const {
  const size_t l = layer.value();
  return l < sa_caches_.size() ? sa_caches_[l].get() : nullptr;
}

absl::Status PagedKvStore::FillCache(TokenCache* cache, LayerId layer, const FillPlan& plan) const {
  std::vector<uint64_t> src(plan.entries.size());
  for (size_t i = 0; i < plan.entries.size(); ++i) {
    const FillPlan::Entry& e = plan.entries[i];
    ASSIGN_OR_RETURN(std::vector<uint64_t> one,
                     ColdRowAddresses(plan.seq, layer, e.head, absl::MakeConstSpan(&e.token, 1)));
    src[i] = one[0];
  }
  return cache->Fill(plan, src);
}

KvBytes PagedKvStore::BytesFor(int64_t tokens) const {
  const int64_t pages = (tokens + kPageTokens - 1) / kPageTokens;
  const int64_t lh = int64_t{options_.num_layers} * options_.num_kv_heads;
  KvBytes b;
  b.hot_pages = lh * HotPagesPerHead(options_, pages);
  b.cold_pages = options_.offload ? lh * pages : 0;
  b.hot_bytes = b.hot_pages * hot_page_bytes_;
  b.cold_bytes = b.cold_pages * cold_page_bytes_;
  return b;
}

std::string PagedKvStore::BudgetMessage(int64_t hot_need, int64_t cold_need) const {
  std::string msg = absl::StrCat(
      "hot tier (--gpu_kv_bytes=", options_.gpu_kv_bytes, "): need ", hot_need, " pages (",
      hot_need * hot_page_bytes_, " bytes), ", hot_->free_pages(), " of ", hot_->capacity_pages(),
      " pages free (", hot_->used_pages() * hot_page_bytes_ + cache_bytes_, " bytes used incl. ",
      cache_bytes_, " of caches)");
  if (cold_ != nullptr) {
    absl::StrAppend(&msg, "; cold tier (--host_kv_bytes=", options_.host_kv_bytes, "): need ",
                    cold_need, " pages (", cold_need * cold_page_bytes_, " bytes), ",
                    cold_->free_pages(), " of ", cold_->capacity_pages(), " pages free");
  }
  return msg;
}

absl::Status PagedKvStore::WouldFit(int64_t tokens) const {
  const KvBytes b = BytesFor(tokens);
  std::lock_guard<std::mutex> lock(mu_);
  const bool hot_ok = b.hot_pages <= hot_->free_pages();
  const bool cold_ok = cold_ == nullptr || b.cold_pages <= cold_->free_pages();
  if (hot_ok && cold_ok) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("a sequence of ", tokens,
                   " tokens does not fit: ", BudgetMessage(b.hot_pages, b.cold_pages)));
}

KvStoreStats PagedKvStore::Stats() const {
  KvStoreStats st;
  auto add = [](CacheStats* sum, const CacheStats& c) {
    sum->hits += c.hits;
    sum->misses += c.misses;
    sum->evictions += c.evictions;
    sum->filled += c.filled;
  };
  for (auto& c : mask_caches_) add(&st.mask_cache, c->stats());
  for (auto& c : sa_caches_) add(&st.sa_cache, c->stats());
  std::lock_guard<std::mutex> lock(mu_);
  st.hot.budget_bytes = options_.gpu_kv_bytes;
  st.hot.fixed_bytes = cache_bytes_;
  st.hot.page_bytes = hot_page_bytes_;
  st.hot.pages_used = hot_->used_pages();
  st.hot.pages_capacity = hot_->capacity_pages();
  st.hot.used_bytes = st.hot.pages_used * hot_page_bytes_ + cache_bytes_;
  if (cold_ != nullptr) {
    st.cold.budget_bytes = options_.host_kv_bytes;
    st.cold.page_bytes = cold_page_bytes_;
    st.cold.pages_used = cold_->used_pages();
    st.cold.pages_capacity = cold_->capacity_pages();
    st.cold.used_bytes = st.cold.pages_used * cold_page_bytes_;
  }
  st.sequences = static_cast<int64_t>(seqs_.size());
  for (const auto& [id, s] : seqs_) st.tokens += s.layers[0].length;
  return st;
}

}  // namespace hipserve::kvstore
