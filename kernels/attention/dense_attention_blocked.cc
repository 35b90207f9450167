#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/spin_pool.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/attention/dense_decode_chunk.h"
#include "kernels/cpu_gemv/gemv.h"

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

// Few query rows (decode): split-K over chunks of kDecodeChunk keys, spread over
// common::SpinPool::Shared(). Each chunk reads its K and V rows once for all query rows (a token's
// K row, [kv_heads][head_dim], serves every query head while it is in L1) and keeps its own
// softmax max / sum / weighted V sum (dense_decode_chunk.inc, vectorised at the CPU's ISA); the
// chunks are then merged with the usual rescaling. Chunking does not depend on the thread count,
// so results are the same for any number of threads. sgemm would first pack K and V (an extra
// copy of the cache per step) for a product with only a handful of rows.
void DecodeAll(const DenseAttentionParams& p) {
  using decode_internal::DecodeChunkArgs;
  using decode_internal::kDecodeChunk;
  const int hd = p.head_dim;
  const int keys = p.q_offset + p.num_q;
  const int rows = p.num_q * p.num_heads;
  const DecodeChunkArgs args{p.q,
                             p.k,
                             p.v,
                             int64_t{p.num_kv_heads} * hd,
                             hd,
                             p.num_heads,
                             p.num_heads / p.num_kv_heads,
                             rows,
                             p.q_offset,
                             p.scale};
  const int chunks = (keys + kDecodeChunk - 1) / kDecodeChunk;
  // Per chunk: m, l ([rows] each) and o ([rows, hd]). Reused across calls (no per-step mallocs).
  thread_local std::vector<float> part;
  const int64_t per_chunk = int64_t{rows} * (hd + 2);
  part.resize(chunks * per_chunk);
  float* parts = part.data();
  void (*chunk_fn)(const DecodeChunkArgs&, int, int, float*, float*, float*, float*);
  switch (BestCpuIsa()) {
    case CpuIsa::kAvx512:
      chunk_fn = decode_internal::DecodeChunkAvx512;
      break;
    case CpuIsa::kAvx2:
      chunk_fn = decode_internal::DecodeChunkAvx2;
      break;
    default:
      chunk_fn = decode_internal::DecodeChunkScalar;
      break;
  }
  common::SpinPool::Shared().Run(chunks, [&](int c) {
    thread_local std::vector<float> scores;
    scores.resize(int64_t{rows} * kDecodeChunk);
    float* base = parts + c * per_chunk;
    chunk_fn(args, c * kDecodeChunk, std::min(keys, (c + 1) * kDecodeChunk), scores.data(), base,
             base + rows, base + 2 * rows);
  });
  for (int r = 0; r < rows; ++r) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int c = 0; c < chunks; ++c) mx = std::max(mx, parts[c * per_chunk + r]);
    float* out = p.out + int64_t{r} * hd;
    std::fill(out, out + hd, 0.f);
    float sum = 0.f;
    for (int c = 0; c < chunks; ++c) {
      const float* base = parts + c * per_chunk;
      if (base[r] == -std::numeric_limits<float>::infinity()) continue;  // no visible key
      const float w = std::exp(base[r] - mx);
      sum += w * base[rows + r];
      const float* o = base + 2 * rows + int64_t{r} * hd;
      for (int x = 0; x < hd; ++x) out[x] += w * o[x];
    }
    const float inv = 1.f / sum;
    for (int x = 0; x < hd; ++x) out[x] *= inv;
  }
}

}  // namespace

absl::Status DenseAttentionBlocked(const DenseAttentionParams& p) {
  if (absl::Status s = ValidateDenseAttention(p); !s.ok()) return s;
  const int hd = p.head_dim, kvh = p.num_kv_heads, g = p.num_heads / p.num_kv_heads;
  const int64_t kv_stride = int64_t{kvh} * hd;  // between tokens of one KV head
  if (int64_t{p.num_q} * g <= 16) {
    DecodeAll(p);
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
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, hd, p.scale, qm.data(), hd,
                  k, static_cast<int>(kv_stride), 0.f, scores.data(), keys);
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
