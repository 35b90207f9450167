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

// One batch entry's own slot / page tables (TieredKvSource::entries): list h of the entry (KV
// head h) is slot_table + h * slot_stride and cold_pages + h * page_stride, the layout of a
// one-sequence source (worker/cuda_kv_tiers.h Source(seq, layer)).
struct TieredKvTables {
  const int32_t* slot_table = nullptr;   // device
  const uint64_t* cold_pages = nullptr;  // device
  int64_t slot_stride = 0;               // >= the entry's kv_len
  int64_t page_stride = 0;               // >= ceil(kv_len / 64)
};

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
  // Decode kernels only (HipDecodeMaskGpu, BsaDecodeAttentionGpu): optional [batch] device
  // array of per-entry tables, for a batch of sequences whose tables are separate allocations
  // with their own strides. When non-null it replaces slot_table / cold_pages / slot_stride /
  // page_stride / one_sequence (which are then ignored, may be null / 0, and are not checked):
  // entry b reads entries[b]; its strides must cover its kv_len (the host cannot check them).
  // The banks stay shared by all entries. Prefill kernels refuse it (InvalidArgument).
  const TieredKvTables* entries = nullptr;
};

// Whether a source is set (the kernels then read K/V through it instead of contiguous rows).
inline bool IsTiered(const TieredKvSource& t) {
  return t.slot_table != nullptr || t.entries != nullptr;
}

}  // namespace hipserve::kernels
