// Where decode kernels read K/V from, in the layouts the serving system stores them (HIP.md 7,
// kvstore/FORMAT.md). Plain host-visible structs, no CUDA types. kernels/ does not depend on
// kvstore (kvstore depends on kernels: its KvDtype is kernels::KvDtype, kernels/dtype/dtype.h).
// The page geometry is mirrored here, and kvstore/tiered_layout_test.cc checks the mirror (a
// static_assert on the constant, and that the addresses a kernel computes from `TieredKvSource`
// equal PagedKvStore::ColdRowAddresses).
#pragma once

#include <cstdint>

#include "kernels/dtype/dtype.h"  // KvDtype, KvDtypeName

namespace hipserve::kernels {

// Tokens per cold page (kvstore::kPageTokens). A cold page holds one layer and one KV head:
// K [64][head_dim] fp8 e5m2, then V [64][head_dim] fp8 e5m2 (V row = K row + 64 * head_dim).
inline constexpr int kKvPageTokens = 64;

// Tiered K/V (HIP.md 7): token t of (sequence b, KV head h) is read
//   - from the GPU cache bank when slot_table gives a row r >= 0: K = bank_k[r], V = bank_v[r]
//     (rows of head_dim elements of the params' kv_dtype; kvstore::TokenCache's bank layout,
//     where head h owns rows [h * slots_per_head, (h + 1) * slots_per_head); the entries are
//     exactly what TokenCache::Lookup returns);
//   - otherwise ("absent", any negative entry) straight from host memory over PCIe: the fp8
//     e5m2 cold page cold_pages[...][t / 64] (pinned, device-mapped: cudaHostAlloc with
//     cudaHostAllocMapped, device pointer), K row at + (t % 64) * head_dim bytes and V row at
//     + (64 + t % 64) * head_dim bytes.
// Either way the kernel sees the same values when the bank holds the fp8 rounding of the cold
// rows (what a kvstore fill writes), so hit/miss patterns do not change results.
struct TieredKvSource {
  const void* bank_k = nullptr;  // [bank_rows][head_dim] kv_dtype, device, 16-byte aligned
  const void* bank_v = nullptr;  // [bank_rows][head_dim] kv_dtype, device, 16-byte aligned
  // slot_table[(b * num_kv_heads + h) * slot_stride + t]: bank row or < 0 (absent). Device.
  const int32_t* slot_table = nullptr;
  int64_t slot_stride = 0;  // >= every kv_len[b]
  // cold_pages[(b * num_kv_heads + h) * page_stride + t / 64]: device-visible address of the
  // page's first byte (8-byte aligned). Device array.
  const uint64_t* cold_pages = nullptr;
  int64_t page_stride = 0;  // >= ceil(kv_len[b] / 64)
  // true: every batch entry b is a query of ONE sequence (e.g. the single-query tail of a prefill
  // step) and reads the tables of entry 0 (list = h instead of b * num_kv_heads + h).
  bool one_sequence = false;
};

}  // namespace hipserve::kernels
