// Batched data movement for the HiP token caches (HIP.md 7):
//  * Fill: copy a scattered set of cold token rows (fp8 e5m2, read straight from mapped host
//    memory) into cache bank rows, converting to the bank dtype, in one pass.
//  * Gather: read tokens through a cache: hits from the bank, misses from the cold tier,
//    written out as bf16. This is what attention kernels do per selected key.
// Each op has a host implementation (always built; the CPU reference) and a CUDA one
// (cache_ops.cu; cache_ops_cpu.cc returns Unimplemented on CPU builds). For the CUDA versions
// every pointer, including the index arrays, must be device-visible.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "kvstore/kv_types.h"

namespace hipserve::kvstore {

struct CacheFillParams {
  void* bank_k = nullptr;  // [bank_rows][head_dim] bank_dtype
  void* bank_v = nullptr;  // [bank_rows][head_dim] bank_dtype, or null (mask cache: keys only)
  KvDtype bank_dtype = KvDtype::kBf16;
  const int32_t* rows = nullptr;  // [n] destination bank row per token
  const uint64_t* src = nullptr;  // [n] address of the token's fp8 K row; V row at +v_offset
  int64_t v_offset_bytes = 0;     // kPageTokens * head_dim for the cold page layout
  int64_t n = 0;
  int head_dim = 0;  // multiple of 16
};

struct CacheGatherParams {
  const void* bank_k = nullptr;  // [bank_rows][head_dim] bank_dtype
  const void* bank_v = nullptr;  // same, or null: then out_v is not written
  KvDtype bank_dtype = KvDtype::kBf16;
  const int32_t* rows = nullptr;  // [n] bank row, or -1 (absent: read from `src`)
  const uint64_t* src = nullptr;  // [n] fp8 K row address (cold tier); V row at +v_offset
  int64_t v_offset_bytes = 0;
  int64_t n = 0;
  int head_dim = 0;           // multiple of 16
  uint16_t* out_k = nullptr;  // [n][head_dim] bf16
  uint16_t* out_v = nullptr;  // [n][head_dim] bf16, or null
};

// Reorders (rows[i], src[i]) pairs by source address. The fill result does not depend on the
// order, but reading host memory in address order keeps the GPU's translation of mapped host
// pages warm: on an H100 (PCIe 5), 256K scattered K+V rows over a 1 GiB cold tier fill at
// ~50% of cudaMemcpy bandwidth in random order. TokenCache::Fill always sorts.
void SortFillBySource(std::vector<int32_t>* rows, std::vector<uint64_t>* src);

absl::Status CacheFillHost(const CacheFillParams& p);
absl::Status CacheGatherHost(const CacheGatherParams& p);
// `stream` is a cudaStream_t (null = default stream). Asynchronous: errors from the launch are
// returned; the caller synchronises.
absl::Status CacheFillCuda(const CacheFillParams& p, void* stream);
absl::Status CacheGatherCuda(const CacheGatherParams& p, void* stream);

}  // namespace hipserve::kvstore
