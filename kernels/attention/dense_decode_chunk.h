// Internal to DenseAttentionBlocked's decode path (few query rows): attention of every query
// row over one chunk of keys, with the chunk's own softmax statistics, for a split-K merge.
// The body (dense_decode_chunk.inc) is compiled three times: dense_decode_scalar.cc (baseline
// flags), dense_decode_avx2.cc (-mavx2 -mfma) and dense_decode_avx512.cc (-mavx512f ...), and
// the caller picks one with kernels::BestCpuIsa() (kernels/cpu_gemv/gemv.h). The .inc uses no
// std:: inline functions, so no shared inline body is ever compiled with AVX-512 flags.
#pragma once

#include <cstdint>

namespace hipserve::kernels::decode_internal {

inline constexpr int kDecodeChunk = 256;  // keys per chunk (scores: rows x 256 floats)

struct DecodeChunkArgs {
  const float* q;  // [rows, head_dim]; row r = query r / num_heads, head r % num_heads
  const float* k;  // token t, KV head h at k + t * kv_stride + h * head_dim
  const float* v;
  int64_t kv_stride;  // num_kv_heads * head_dim
  int head_dim;
  int num_heads;
  int group;     // num_heads / num_kv_heads
  int rows;      // num_q * num_heads
  int q_offset;  // row r sees keys [0, q_offset + r / num_heads]
  float scale;
};

// Keys [t0, t1) (t1 - t0 <= kDecodeChunk). Writes, per row r: m[r] = max scaled score over the
// row's visible keys in the chunk (-inf if none), l[r] = sum of exp(score - m[r]), o[r * hd..]
// = sum of exp(score - m[r]) * v (0 if none). scores: scratch of rows * kDecodeChunk floats.
void DecodeChunkScalar(const DecodeChunkArgs& a, int t0, int t1, float* scores, float* m, float* l,
                       float* o);
void DecodeChunkAvx2(const DecodeChunkArgs& a, int t0, int t1, float* scores, float* m, float* l,
                     float* o);
void DecodeChunkAvx512(const DecodeChunkArgs& a, int t0, int t1, float* scores, float* m, float* l,
                       float* o);

}  // namespace hipserve::kernels::decode_internal
