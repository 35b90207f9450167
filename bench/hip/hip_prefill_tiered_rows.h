// BSA-prefill-only rows of bench_hip_prefill (--bsa_tiered 1): the BSA kernel reading K/V from a
// tiered source (HIP.md 7; kernels/attention_cuda/kv_source.h) against the all-hot contiguous
// layout of the same dtype, timed alternately call by call in the same run on one plan.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention_cuda/bsa_prefill.h"

namespace hipserve::bench {

struct TieredBsaRow {
  std::string bank;      // bank dtype: "bf16" or "fp8_e5m2"
  double hit = 0;        // requested fraction of tokens in the bank
  int64_t hits = 0;      // tokens (x KV heads) mapped to the bank
  int64_t tokens = 0;    // tokens x KV heads
  double tiered_ms = 0;  // median
  double hot_ms = 0;     // median of the all-hot calls interleaved with the tiered ones
  int64_t nan = 0;       // NaN outputs of the tiered call
};

// `hot`: a complete all-hot call on bf16 K/V (k, v of [T, kv_heads, head_dim], T = q_offset +
// num_q); k8 / v8: fp8 e5m2 K/V of the same shape in device memory. The bank is the all-hot
// array itself (token t of head h = row t * kv_heads + h); absent tokens read fp8 pages in
// mapped host memory built from k8 / v8. Hit patterns: independent per token, fixed seed.
std::vector<TieredBsaRow> TimeTieredBsa(const kernels::BsaPrefillGpuParams& hot, const void* k8,
                                        const void* v8, const std::vector<double>& hit_rates,
                                        int reps, cudaStream_t s);

// The rows as a JSON array.
std::string TieredRowsJson(const std::vector<TieredBsaRow>& rows);

}  // namespace hipserve::bench
