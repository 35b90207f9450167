// PagedKvStore data paths: Append (plan under the mutex, copy outside it, commit or roll
// back under it), Read, Truncate.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kvstore/fp8_e5m2.h"
#include "kvstore/paged_store.h"

namespace hipserve::kvstore {
namespace {

// Converts `count` bf16 values to the hot dtype into `dst`.
void ToHot(const uint16_t* src, int64_t count, KvDtype dtype, char* dst) {
  switch (dtype) {
    case KvDtype::kBf16:
      std::memcpy(dst, src, count * 2);
      return;
    case KvDtype::kFp8E5m2:
      for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<char>(Bf16ToFp8E5m2(src[i]));
      return;
  }
}

void FromHot(const char* src, int64_t count, KvDtype dtype, uint16_t* dst) {
  switch (dtype) {
    case KvDtype::kBf16:
      std::memcpy(dst, src, count * 2);
      return;
    case KvDtype::kFp8E5m2:
      for (int64_t i = 0; i < count; ++i) dst[i] = Fp8E5m2ToBf16(static_cast<uint8_t>(src[i]));
      return;
  }
}

// One (page, head) touched by an append: rows [r0, r1) of the page.
struct PageWrite {
  int64_t page;
  int head;
  int r0, r1;
  char* hot;      // null when the page will not be hot
  uint8_t* cold;  // null without offload
};

}  // namespace

absl::Status PagedKvStore::Append(SequenceId seq, LayerId layer, const uint16_t* k,
                                  const uint16_t* v, int64_t n) {
  const int l = layer.value();
  if (l < 0 || l >= options_.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", l, " out of range [0, ", options_.num_layers, ")"));
  }
  if (n < 0 || (n > 0 && (k == nullptr || v == nullptr))) {
    return absl::InvalidArgumentError(absl::StrCat("append of ", n, " tokens with null data"));
  }
  const int heads = options_.num_kv_heads;
  const int hd = options_.head_dim;
  const int eb = DtypeBytes(options_.hot_dtype);
  std::vector<PageId> new_hot, new_cold;
  std::vector<std::pair<int64_t, int>> leaving;  // (page, head) hot pages leaving the hot set
  std::vector<PageRef> new_refs;
  std::vector<PageWrite> writes;
  int64_t len = 0, reused = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) {
      return absl::NotFoundError(absl::StrCat("append to unknown sequence ", seq.value()));
    }
    Sequence& s = it->second;
    if (s.busy) {
      return absl::FailedPreconditionError(
          absl::StrCat("overlapping append to sequence ", seq.value()));
    }
    LayerTable& t = s.layers[l];
    len = t.length;
    if (l != 0 && len + n > s.layers[0].length) {
      return absl::FailedPreconditionError(absl::StrCat(
          "layer ", l, " would hold ", len + n, " tokens, layer 0 holds ", s.layers[0].length));
    }
    if (n == 0) return absl::OkStatus();
    const int64_t p0 = (len + kPageTokens - 1) / kPageTokens;
    const int64_t p1 = (len + n + kPageTokens - 1) / kPageTokens;
    int64_t need_hot = 0;
    for (int64_t p = p0; p < p1; ++p) need_hot += IsHotPage(options_, p, p1) ? heads : 0;
    for (int64_t p = std::max<int64_t>(0, p0 - WindowPages(options_) - 1); p < p0; ++p) {
      for (int h = 0; h < heads; ++h) {
        if (t.pages[p * heads + h].hot.value() >= 0 && !IsHotPage(options_, p, p1)) {
          leaving.emplace_back(p, h);
        }
      }
    }
    const int64_t need_cold = options_.offload ? heads * (p1 - p0) : 0;
    const int64_t from_pool = std::min(need_hot, hot_->free_pages());
    reused = need_hot - from_pool;
    if (reused > static_cast<int64_t>(leaving.size()) ||
        (cold_ != nullptr && need_cold > cold_->free_pages())) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "KV budget: appending ", n, " tokens to sequence ", seq.value(), " layer ", l, " (", len,
          " held): ", BudgetMessage(need_hot - static_cast<int64_t>(leaving.size()), need_cold)));
    }
    if (need_cold > 0) RETURN_IF_ERROR(cold_->Allocate(need_cold, &new_cold));
    absl::Status hs = hot_->Allocate(from_pool, &new_hot);
    if (!hs.ok()) {
      for (PageId id : new_cold) cold_->Release(id);
      return hs;
    }
    // New page refs: hot pages from the pool first, then pages leaving the hot set.
    new_refs.resize((p1 - p0) * heads);
    size_t next_pool = 0, next_leaving = 0, next_cold = 0;
    for (int64_t p = p0; p < p1; ++p) {
      for (int h = 0; h < heads; ++h) {
        PageRef& ref = new_refs[(p - p0) * heads + h];
        if (options_.offload) ref.cold = new_cold[next_cold++];
        if (!IsHotPage(options_, p, p1)) continue;
        if (next_pool < new_hot.size()) {
          ref.hot = new_hot[next_pool++];
        } else {
          const auto [lp, lh] = leaving[next_leaving++];
          ref.hot = t.pages[lp * heads + lh].hot;
        }
      }
    }
    for (int64_t p = len / kPageTokens; p < p1; ++p) {
      const int r0 = static_cast<int>(std::max(len, p * kPageTokens) - p * kPageTokens);
      const int r1 = static_cast<int>(std::min(len + n, (p + 1) * kPageTokens) - p * kPageTokens);
      for (int h = 0; h < heads; ++h) {
        const PageRef& ref = p < p0 ? t.pages[p * heads + h] : new_refs[(p - p0) * heads + h];
        PageWrite w{p, h, r0, r1, nullptr, nullptr};
        // A page that leaves the hot set needs no hot write (its hot page may be reused).
        if (ref.hot.value() >= 0 && IsHotPage(options_, p, p1)) {
          w.hot = static_cast<char*>(hot_->Address(ref.hot));
        }
        if (ref.cold.value() >= 0) w.cold = static_cast<uint8_t*>(cold_->Address(ref.cold));
        writes.push_back(w);
      }
    }
    s.busy = true;
  }

  // Copy phase (no lock): the pages written belong to this append alone.
  absl::Status status;
  std::vector<char> staging(int64_t{kPageTokens} * hd * eb);
  for (const PageWrite& w : writes) {
    const int64_t t0 = w.page * kPageTokens + w.r0 - len;  // first source token
    const int rows = w.r1 - w.r0;
    for (int kv = 0; kv < 2 && status.ok(); ++kv) {
      const uint16_t* src = kv == 0 ? k : v;
      const int64_t page_row0 = int64_t{kv} * kPageTokens + w.r0;
      if (w.cold != nullptr) {
        for (int r = 0; r < rows; ++r) {
          const uint16_t* row = src + ((t0 + r) * heads + w.head) * hd;
          uint8_t* dst = w.cold + (page_row0 + r) * hd;
          for (int i = 0; i < hd; ++i) dst[i] = Bf16ToFp8E5m2(row[i]);
        }
      }
      if (w.hot != nullptr) {
        for (int r = 0; r < rows; ++r) {
          ToHot(src + ((t0 + r) * heads + w.head) * hd, hd, options_.hot_dtype,
                staging.data() + int64_t{r} * hd * eb);
        }
        status =
            memory_->Copy(w.hot + page_row0 * hd * eb, staging.data(), int64_t{rows} * hd * eb);
      }
    }
    if (!status.ok()) break;
  }

  std::lock_guard<std::mutex> lock(mu_);
  Sequence& s = seqs_.find(seq)->second;  // busy: nobody could free it
  s.busy = false;
  LayerTable& t = s.layers[l];
  if (!status.ok()) {
    for (PageId id : new_cold) cold_->Release(id);
    for (PageId id : new_hot) hot_->Release(id);
    // Reused pages may have been overwritten: rebuild them from their cold copies.
    for (int64_t i = 0; i < reused; ++i) {
      PageRef& ref = t.pages[leaving[i].first * heads + leaving[i].second];
      const PageId page = ref.hot;
      ref.hot = PageId(-1);
      hot_->Release(page);
      absl::Status rs = RestoreHotFromCold(&ref);
      if (!rs.ok()) LOG(ERROR) << "KV append rollback: page left cold-only: " << rs;
    }
    return status;
  }
  for (size_t i = 0; i < leaving.size(); ++i) {
    PageRef& ref = t.pages[leaving[i].first * heads + leaving[i].second];
    if (static_cast<int64_t>(i) >= reused) hot_->Release(ref.hot);
    ref.hot = PageId(-1);
  }
  t.pages.insert(t.pages.end(), new_refs.begin(), new_refs.end());
  t.length = len + n;
  return absl::OkStatus();
}

absl::Status PagedKvStore::RestoreHotFromCold(PageRef* ref) {
  if (ref->cold.value() < 0) return absl::InternalError("page has no cold copy");
  std::vector<PageId> got;
  RETURN_IF_ERROR(hot_->Allocate(1, &got));
  const int64_t elems = 2 * int64_t{kPageTokens} * options_.head_dim;
  const uint8_t* cold = static_cast<const uint8_t*>(cold_->Address(ref->cold));
  std::vector<uint16_t> bf16(elems);
  for (int64_t i = 0; i < elems; ++i) bf16[i] = Fp8E5m2ToBf16(cold[i]);
  std::vector<char> staging(hot_page_bytes_);
  ToHot(bf16.data(), elems, options_.hot_dtype, staging.data());
  absl::Status s = memory_->Copy(hot_->Address(got[0]), staging.data(), hot_page_bytes_);
  if (!s.ok()) {
    hot_->Release(got[0]);
    return s;
  }
  ref->hot = got[0];
  return absl::OkStatus();
}

absl::Status PagedKvStore::Truncate(SequenceId seq, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    return absl::NotFoundError(absl::StrCat("truncate of unknown sequence ", seq.value()));
  }
  Sequence& s = it->second;
  if (s.busy) {
    return absl::FailedPreconditionError(
        absl::StrCat("truncate of sequence ", seq.value(), " while an append is in flight"));
  }
  if (tokens < 0 || tokens > s.layers[0].length) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncate to ", tokens, " of a ", s.layers[0].length, "-token sequence"));
  }
  const int heads = options_.num_kv_heads;
  const int64_t pages = (tokens + kPageTokens - 1) / kPageTokens;
  for (LayerTable& t : s.layers) {
    if (t.length <= tokens) continue;
    ReleasePages(&t, pages);
    t.length = tokens;
    // Pages that re-enter the window get a hot copy again (from fp8); the pages released
    // above always leave room for them.
    for (int64_t p = std::max<int64_t>(0, pages - WindowPages(options_)); p < pages; ++p) {
      for (int h = 0; h < heads; ++h) {
        PageRef& ref = t.pages[p * heads + h];
        if (ref.hot.value() >= 0 || !IsHotPage(options_, p, pages)) continue;
        absl::Status rs = RestoreHotFromCold(&ref);
        if (!rs.ok()) LOG(ERROR) << "KV truncate: page left cold-only: " << rs;
      }
    }
  }
  for (auto& c : mask_caches_) c->Invalidate(seq, tokens);
  for (auto& c : sa_caches_) c->Invalidate(seq, tokens);
  return absl::OkStatus();
}

absl::Status PagedKvStore::Read(SequenceId seq, LayerId layer, KvHeadId head, int64_t begin,
                                int64_t n, uint16_t* k_out, uint16_t* v_out) const {
  return ReadImpl(seq, layer, head, begin, n, /*cold_only=*/false, k_out, v_out);
}

absl::Status PagedKvStore::ReadCold(SequenceId seq, LayerId layer, KvHeadId head, int64_t begin,
                                    int64_t n, uint16_t* k_out, uint16_t* v_out) const {
  if (!options_.offload) return absl::FailedPreconditionError("no cold tier without offload");
  return ReadImpl(seq, layer, head, begin, n, /*cold_only=*/true, k_out, v_out);
}

absl::Status PagedKvStore::ReadImpl(SequenceId seq, LayerId layer, KvHeadId head, int64_t begin,
                                    int64_t n, bool cold_only, uint16_t* k_out,
                                    uint16_t* v_out) const {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(const Sequence* s, FindLocked(seq));
  if (s->busy) {
    return absl::FailedPreconditionError(
        absl::StrCat("read of sequence ", seq.value(), " while an append is in flight"));
  }
  if (layer.value() < 0 || layer.value() >= options_.num_layers || head.value() < 0 ||
      head.value() >= options_.num_kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer ", layer.value(), " / head ", head.value(), " out of range"));
  }
  const LayerTable& t = s->layers[layer.value()];
  if (begin < 0 || n < 0 || begin + n > t.length) {
    return absl::OutOfRangeError(absl::StrCat("read of tokens [", begin, ", ", begin + n,
                                              ") from a ", t.length, "-token layer"));
  }
  const int hd = options_.head_dim;
  const int eb = DtypeBytes(options_.hot_dtype);
  std::vector<char> staging(int64_t{kPageTokens} * hd * eb);
  for (int64_t tok = begin; tok < begin + n;) {
    const int64_t p = tok / kPageTokens;
    const int r0 = static_cast<int>(tok - p * kPageTokens);
    const int rows = static_cast<int>(std::min<int64_t>(kPageTokens - r0, begin + n - tok));
    const PageRef& ref = t.pages[p * options_.num_kv_heads + head.value()];
    for (int kv = 0; kv < 2; ++kv) {
      uint16_t* out = kv == 0 ? k_out : v_out;
      if (out == nullptr) continue;
      out += (tok - begin) * hd;
      const int64_t row0 = int64_t{kv} * kPageTokens + r0;
      if (!cold_only && ref.hot.value() >= 0) {
        const char* src = static_cast<const char*>(hot_->Address(ref.hot)) + row0 * hd * eb;
        RETURN_IF_ERROR(memory_->Copy(staging.data(), src, int64_t{rows} * hd * eb));
        FromHot(staging.data(), int64_t{rows} * hd, options_.hot_dtype, out);
      } else if (ref.cold.value() >= 0) {
        const uint8_t* src = static_cast<const uint8_t*>(cold_->Address(ref.cold)) + row0 * hd;
        for (int64_t i = 0; i < int64_t{rows} * hd; ++i) out[i] = Fp8E5m2ToBf16(src[i]);
      } else {
        return absl::InternalError(absl::StrCat("page ", p, " has no copy"));
      }
    }
    tok += rows;
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kvstore
