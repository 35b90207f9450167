#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention/dense_attention.h"

namespace hipserve::kernels {
namespace {

absl::Status Positive(const char* field, int value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("DenseAttention: ", field, " must be > 0, got ", value));
}

}  // namespace

absl::Status ValidateDenseAttention(const DenseAttentionParams& p) {
  if (p.q == nullptr) return absl::InvalidArgumentError("DenseAttention: q is null");
  if (p.k == nullptr) return absl::InvalidArgumentError("DenseAttention: k is null");
  if (p.v == nullptr) return absl::InvalidArgumentError("DenseAttention: v is null");
  if (p.out == nullptr) return absl::InvalidArgumentError("DenseAttention: out is null");
  for (absl::Status s :
       {Positive("num_q", p.num_q), Positive("num_kv", p.num_kv),
        Positive("num_heads", p.num_heads), Positive("num_kv_heads", p.num_kv_heads),
        Positive("head_dim", p.head_dim)}) {
    if (!s.ok()) return s;
  }
  if (p.num_heads % p.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("DenseAttention: num_heads (", p.num_heads,
                                                   ") must be a multiple of num_kv_heads (",
                                                   p.num_kv_heads, ")"));
  }
  if (p.q_offset < 0 || static_cast<int64_t>(p.q_offset) + p.num_q > p.num_kv) {
    return absl::InvalidArgumentError(absl::StrCat("DenseAttention: q_offset (", p.q_offset,
                                                   ") must be >= 0 and q_offset + num_q (", p.num_q,
                                                   ") <= num_kv (", p.num_kv, ")"));
  }
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DenseAttention: scale must be finite and > 0, got ", p.scale));
  }
  return absl::OkStatus();
}

absl::Status DenseAttentionRef(const DenseAttentionParams& p) {
  if (absl::Status s = ValidateDenseAttention(p); !s.ok()) return s;
  const int group = p.num_heads / p.num_kv_heads;
  const int64_t d = p.head_dim;
  const int64_t q_row = static_cast<int64_t>(p.num_heads) * d;
  const int64_t kv_row = static_cast<int64_t>(p.num_kv_heads) * d;
  std::vector<float> scores(p.num_kv);
  std::vector<float> acc(d);
  for (int i = 0; i < p.num_q; ++i) {
    const int visible = p.q_offset + i + 1;  // keys [0, q_offset + i]
    for (int h = 0; h < p.num_heads; ++h) {
      const float* q = p.q + i * q_row + h * d;
      const int64_t kv_off = static_cast<int64_t>(h / group) * d;
      float max_score = -INFINITY;
      for (int j = 0; j < visible; ++j) {
        const float* k = p.k + j * kv_row + kv_off;
        float dot = 0.f;
        for (int64_t c = 0; c < d; ++c) dot += q[c] * k[c];
        scores[j] = dot * p.scale;
        max_score = std::max(max_score, scores[j]);
      }
      float denom = 0.f;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int j = 0; j < visible; ++j) {
        const float w = std::exp(scores[j] - max_score);
        denom += w;
        const float* v = p.v + j * kv_row + kv_off;
        for (int64_t c = 0; c < d; ++c) acc[c] += w * v[c];
      }
      float* o = p.out + i * q_row + h * d;
      const float inv = 1.f / denom;
      for (int64_t c = 0; c < d; ++c) o[c] = acc[c] * inv;
    }
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
