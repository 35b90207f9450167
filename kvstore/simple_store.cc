#include "kvstore/simple_store.h"

#include "absl/strings/str_cat.h"

namespace hipserve::kvstore {

absl::StatusOr<SimpleKvStore*> SimpleKvStore::Create(const SimpleKvStoreOptions& o) {
  if (o.num_layers <= 0 || o.num_kv_heads <= 0 || o.head_dim <= 0 || o.max_tokens_total <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SimpleKvStore: num_layers, num_kv_heads, head_dim, max_tokens_total must be > 0; got ",
        o.num_layers, ", ", o.num_kv_heads, ", ", o.head_dim, ", ", o.max_tokens_total));
  }
  return new SimpleKvStore(o);
}

absl::Status SimpleKvStore::AddSequence(SequenceId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (seqs_.contains(seq)) return absl::AlreadyExistsError(absl::StrCat("sequence ", seq.value()));
  Sequence s;
  s.layers.resize(options_.num_layers);
  seqs_.emplace(seq, std::move(s));
  return absl::OkStatus();
}

absl::Status SimpleKvStore::Append(SequenceId seq, LayerId layer, const float* k, const float* v,
                                   int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("unknown sequence ", seq.value()));
  if (layer.value() < 0 || layer.value() >= options_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer.value(), " out of range"));
  }
  if (n < 0) return absl::InvalidArgumentError("negative token count");
  Sequence& s = it->second;
  Layer& l = s.layers[layer.value()];
  const int64_t stride = TokenStride();
  const int64_t have = static_cast<int64_t>(l.k.size()) / stride;
  if (layer.value() == 0) {
    if (tokens_in_use_ + n > options_.max_tokens_total) {
      return absl::ResourceExhaustedError(absl::StrCat("KV budget: ", tokens_in_use_,
                                                       " tokens in use + ", n, " requested > ",
                                                       options_.max_tokens_total, " allowed"));
    }
    tokens_in_use_ += n;
    s.length += n;
  } else if (have + n > s.length) {
    return absl::FailedPreconditionError(absl::StrCat(
        "layer ", layer.value(), " would hold ", have + n, " tokens, layer 0 holds ", s.length));
  }
  l.k.insert(l.k.end(), k, k + n * stride);
  l.v.insert(l.v.end(), v, v + n * stride);
  return absl::OkStatus();
}

absl::StatusOr<KvView> SimpleKvStore::View(SequenceId seq, LayerId layer) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("unknown sequence ", seq.value()));
  if (layer.value() < 0 || layer.value() >= options_.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer.value(), " out of range"));
  }
  const Layer& l = it->second.layers[layer.value()];
  KvView view;
  view.k = l.k.data();
  view.v = l.v.data();
  view.tokens = static_cast<int64_t>(l.k.size()) / TokenStride();
  return view;
}

absl::StatusOr<int64_t> SimpleKvStore::Length(SequenceId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("unknown sequence ", seq.value()));
  return it->second.length;
}

absl::Status SimpleKvStore::Truncate(SequenceId seq, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("unknown sequence ", seq.value()));
  Sequence& s = it->second;
  if (tokens < 0 || tokens > s.length) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncate to ", tokens, " of a ", s.length, "-token sequence"));
  }
  const int64_t stride = TokenStride();
  for (Layer& l : s.layers) {
    if (static_cast<int64_t>(l.k.size()) > tokens * stride) {
      l.k.resize(tokens * stride);
      l.v.resize(tokens * stride);
    }
  }
  tokens_in_use_ -= s.length - tokens;
  s.length = tokens;
  return absl::OkStatus();
}

absl::Status SimpleKvStore::Free(SequenceId seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("unknown sequence ", seq.value()));
  tokens_in_use_ -= it->second.length;
  seqs_.erase(it);
  return absl::OkStatus();
}

bool SimpleKvStore::Contains(SequenceId seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  return seqs_.contains(seq);
}

int64_t SimpleKvStore::TokensInUse() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_in_use_;
}

int SimpleKvStore::NumSequences() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(seqs_.size());
}

}  // namespace hipserve::kvstore
