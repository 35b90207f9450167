#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/embedding/embedding.h"

namespace hipserve::kernels {
namespace {

absl::Status Validate(const EmbeddingParams& p) {
  if (p.table == nullptr) return absl::InvalidArgumentError("Embedding: table is null");
  if (p.ids == nullptr) return absl::InvalidArgumentError("Embedding: ids is null");
  if (p.out == nullptr) return absl::InvalidArgumentError("Embedding: out is null");
  if (p.vocab_begin < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Embedding: vocab_begin must be >= 0, got ", p.vocab_begin));
  }
  if (p.vocab_end <= p.vocab_begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Embedding: vocab_end (", p.vocab_end, ") must be > vocab_begin (", p.vocab_begin, ")"));
  }
  if (p.hidden <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Embedding: hidden must be > 0, got ", p.hidden));
  }
  if (p.num_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Embedding: num_tokens must be > 0, got ", p.num_tokens));
  }
  for (int t = 0; t < p.num_tokens; ++t) {
    if (p.ids[t] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("Embedding: ids[", t, "] is negative (", p.ids[t], ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EmbeddingRef(const EmbeddingParams& p) {
  if (absl::Status s = Validate(p); !s.ok()) return s;
  const int64_t hidden = p.hidden;
  for (int t = 0; t < p.num_tokens; ++t) {
    const int64_t id = p.ids[t];
    float* dst = p.out + t * hidden;
    if (id >= p.vocab_begin && id < p.vocab_end) {
      const float* src = p.table + (id - p.vocab_begin) * hidden;
      std::copy(src, src + hidden, dst);
    } else {
      std::fill(dst, dst + hidden, 0.f);
    }
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
