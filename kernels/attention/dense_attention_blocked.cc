#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention/dense_attention.h"

namespace hipserve::kernels {
namespace {

// In-place causal softmax of one score row over its first `visible` entries; the rest -> 0.
void SoftmaxRow(float* row, int visible, int keys) {
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

// Few query rows (decode): one streaming pass over K and one over V for all heads. Token t's
// K row ([kv_heads][head_dim], contiguous) is used by every query head while it is in L1;
// sgemm would first pack K and V (an extra copy of the cache per step) for a product with
// only a handful of rows.
void DecodeAll(const DenseAttentionParams& p, std::vector<float>& scores) {
  const int hd = p.head_dim, g = p.num_heads / p.num_kv_heads;
  const int64_t kv_stride = int64_t{p.num_kv_heads} * hd;
  const int keys = p.q_offset + p.num_q;
  const int rows = p.num_q * p.num_heads;  // row r: query r / num_heads, head r % num_heads
  scores.resize(int64_t{rows} * keys);
  for (int t = 0; t < keys; ++t) {
    const float* kt = p.k + t * kv_stride;
    for (int r = 0; r < rows; ++r) {
      const float* qr = p.q + int64_t{r} * hd;
      const float* kh = kt + int64_t{(r % p.num_heads) / g} * hd;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int x = 0; x < hd; ++x) dot += qr[x] * kh[x];
      scores[int64_t{r} * keys + t] = dot * p.scale;
    }
  }
  for (int r = 0; r < rows; ++r) {
    SoftmaxRow(scores.data() + int64_t{r} * keys, p.q_offset + r / p.num_heads + 1, keys);
  }
  std::fill(p.out, p.out + int64_t{rows} * hd, 0.f);
  for (int t = 0; t < keys; ++t) {
    const float* vt = p.v + t * kv_stride;
    for (int r = 0; r < rows; ++r) {
      const float w = scores[int64_t{r} * keys + t];
      if (w == 0.f) continue;
      const float* vh = vt + int64_t{(r % p.num_heads) / g} * hd;
      float* o = p.out + int64_t{r} * hd;
#pragma omp simd
      for (int x = 0; x < hd; ++x) o[x] += w * vh[x];
    }
  }
}

}  // namespace

absl::Status DenseAttentionBlocked(const DenseAttentionParams& p) {
  if (absl::Status s = ValidateDenseAttention(p); !s.ok()) return s;
  const int hd = p.head_dim, kvh = p.num_kv_heads, g = p.num_heads / p.num_kv_heads;
  const int64_t kv_stride = int64_t{kvh} * hd;  // between tokens of one KV head
  if (int64_t{p.num_q} * g <= 16) {
    thread_local std::vector<float> decode_scores;
    DecodeAll(p, decode_scores);
    return absl::OkStatus();
  }
  // Queries per block: bound the score matrix (rows = queries x group heads) to ~16M floats.
  const int64_t max_keys = int64_t{p.q_offset} + p.num_q;
  const int qb = static_cast<int>(std::clamp<int64_t>((int64_t{16} << 20) / (g * max_keys), 1, 64));
  // Reused across calls: fresh multi-MB buffers per call cost page faults on every step.
  thread_local std::vector<float> qm, scores, om;
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
        SoftmaxRow(scores.data() + int64_t{r} * keys, p.q_offset + i0 + r / g + 1, keys);
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
