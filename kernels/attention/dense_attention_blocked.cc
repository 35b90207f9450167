#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention/dense_attention.h"

namespace hipserve::kernels {

absl::Status DenseAttentionBlocked(const DenseAttentionParams& p) {
  if (absl::Status s = ValidateDenseAttention(p); !s.ok()) return s;
  const int hd = p.head_dim, kvh = p.num_kv_heads, g = p.num_heads / p.num_kv_heads;
  const int64_t kv_stride = int64_t{kvh} * hd;  // between tokens of one KV head
  // Queries per block: bound the score matrix (rows = queries x group heads) to ~16M floats.
  const int64_t max_keys = int64_t{p.q_offset} + p.num_q;
  const int qb = static_cast<int>(std::clamp<int64_t>((int64_t{16} << 20) / (g * max_keys), 1, 64));
  std::vector<float> qm, scores, om;
  for (int h = 0; h < kvh; ++h) {
    const float* k = p.k + int64_t{h} * hd;
    const float* v = p.v + int64_t{h} * hd;
    for (int i0 = 0; i0 < p.num_q; i0 += qb) {
      const int i1 = std::min(p.num_q, i0 + qb);
      const int rows = (i1 - i0) * g;
      const int keys = p.q_offset + i1;  // causal: the block's last query sees [0, keys)
      // Pack the block's queries of this group: row (i - i0) * g + j is query i, head h*g+j.
      qm.resize(int64_t{rows} * hd);
      for (int i = i0; i < i1; ++i) {
        std::copy_n(p.q + (int64_t{i} * p.num_heads + int64_t{h} * g) * hd, int64_t{g} * hd,
                    qm.data() + int64_t{i - i0} * g * hd);
      }
      scores.resize(int64_t{rows} * keys);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, hd, p.scale, qm.data(),
                  hd, k, static_cast<int>(kv_stride), 0.f, scores.data(), keys);
      for (int r = 0; r < rows; ++r) {
        const int visible = p.q_offset + i0 + r / g + 1;
        float* row = scores.data() + int64_t{r} * keys;
        float mx = row[0];
        for (int t = 1; t < visible; ++t) mx = std::max(mx, row[t]);
        float sum = 0.f;
        for (int t = 0; t < visible; ++t) {
          row[t] = std::exp(row[t] - mx);
          sum += row[t];
        }
        const float inv = 1.f / sum;
        for (int t = 0; t < visible; ++t) row[t] *= inv;
        std::fill(row + visible, row + keys, 0.f);
      }
      om.resize(int64_t{rows} * hd);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, keys, 1.f, scores.data(),
                  keys, v, static_cast<int>(kv_stride), 0.f, om.data(), hd);
      for (int i = i0; i < i1; ++i) {
        std::copy_n(om.data() + int64_t{i - i0} * g * hd, int64_t{g} * hd,
                    p.out + (int64_t{i} * p.num_heads + int64_t{h} * g) * hd);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace hipserve::kernels
