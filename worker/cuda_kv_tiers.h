// CudaKvTiers: the offloaded KV store of the CUDA backend (--kv_offload; HIP.md 7).
//
// Every token of every sequence lives in the COLD tier: fp8 e5m2 pages in pinned, device-mapped
// host memory (all of it pinned by Create, so steps never wait for the allocator)
// (kvstore::PagePool over kvstore::CudaMemory, the page layout of kvstore/FORMAT.md: a page is 64
// tokens of one layer and one KV head, K [64][head_dim] then V [64][head_dim]). The 64-token pages
// of all (layer, KV head) lists of one sequence are allocated together as a "page group", so host
// work is one allocation per 64 tokens. The HOT tier is a GPU page pool of the same pages (fp8 K
// and V rows, one bank each), sized from the GPU budget: a new page gets a hot copy while the pool
// has room; when it is full, the oldest hot page behind the window of the sequence with the most
// hot pages is evicted (its tokens are then read from the cold copy, which is always complete). The
// sink pages and the pages of the current step's window are never evicted. Hence, as long as the
// pool holds the context, HiP reads nothing over PCIe; beyond it, misses are read straight from
// host memory by the kernels (TieredKvSource, attention_cuda/kv_source.h). Kernels read a sequence
// through per-(layer, KV head) tables in device memory: a slot table (token -> hot bank row, or -1)
// and a page table (page -> device address of the cold page). Tables grow with the sequence (x1.5,
// stream-ordered cudaMallocAsync, within table_bytes).
//
// Values: hot rows are written from the same fp8 codes as the cold rows, so a kernel sees the
// same values whichever tier it reads (results do not depend on the hit pattern).
// Why not kvstore::PagedKvStore: its Append takes host bf16 rows and its caches are host-managed
// LRU tables; here K/V are produced on the GPU and looked up per token by kernels, so the GPU
// path keeps the store's page pool, page layout and fp8 codec and owns the device-side tables
// (docs/OFFLOAD.md).
//
// Thread-safety: none (the backend's thread). Stream: every device operation is enqueued on the
// stream given to Create, in order; no host synchronisation except at Create and destruction.
// CUDA builds only (compiled with cuda_backend.cu).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/strong_id.h"
#include "kernels/attention_cuda/kv_source.h"

namespace hipserve::worker {

struct CudaKvTiersOptions {
  int num_layers = 0;       // > 0
  int num_kv_heads = 0;     // local KV heads, > 0
  int head_dim = 0;         // 64 or 128
  int n_sink = 256;         // HipConfig::n_sink: pages holding [0, n_sink) are never evicted
  int n_window = 1024;      // HipConfig::n_window: a step's window pages are never evicted
  int64_t hot_tokens = 0;   // GPU page pool (rounded down to pages); 0 = no hot tier
  int64_t cold_tokens = 0;  // host tier capacity (rounded down to pages), > 0
  int64_t table_bytes = 0;  // device bytes the slot and page tables may take, > 0
  int device = 0;           // CUDA device of the pinned allocations
};

struct CudaKvTierStats {
  int64_t hot_pages_used = 0, hot_pages = 0;    // 64-token pages (all lists of a sequence)
  int64_t cold_pages_used = 0, cold_pages = 0;  // same unit
  int64_t cold_bytes_pinned = 0;                // pinned host bytes allocated so far
  int64_t table_bytes_used = 0, table_bytes = 0;
  int64_t evictions = 0;  // hot pages given to newer pages since Create
  // Since Create, per successful Prepare and item: the pages its sequence holds with a hot copy
  // / only in the host tier (host-side page bookkeeping, no device work: a proxy of the tier
  // the step's attention reads; exported as hipserve_kv_cache_lookups_total{cache="kv_gpu_hot"}).
  int64_t step_pages_hot = 0, step_pages_cold = 0;
};

class CudaKvTiers {
 public:
  // Bytes one token takes in each tier (all layers and local KV heads).
  static int64_t HotBytesPerToken(const CudaKvTiersOptions& o);   // fp8 K + V
  static int64_t ColdBytesPerToken(const CudaKvTiersOptions& o);  // fp8 K + V
  static int64_t TableBytesPerToken(const CudaKvTiersOptions& o);

  // Validates (InvalidArgument naming the field) and allocates the hot pool on the current
  // device. `stream` is the cudaStream_t every later operation is enqueued on.
  static absl::StatusOr<std::unique_ptr<CudaKvTiers>> Create(const CudaKvTiersOptions& options,
                                                             void* stream);
  ~CudaKvTiers();
  CudaKvTiers(const CudaKvTiers&) = delete;
  CudaKvTiers& operator=(const CudaKvTiers&) = delete;

  absl::Status AddSequence(common::SequenceId seq);  // AlreadyExists if live
  absl::Status Free(common::SequenceId seq);         // NotFound if unknown

  // One item of a step: `tokens` new tokens of `seq` at positions [start_pos, start_pos +
  // tokens), rows [row, row + tokens) of the step's K/V.
  struct Item {
    common::SequenceId seq;
    int start_pos = 0;
    int tokens = 0;
    int row = 0;
  };
  // Before a step: grows the tables and allocates the pages that cover every item, then
  // enqueues the table updates. ResourceExhausted (with the numbers) when the cold tier or the
  // table budget is full; pages taken before the failure stay with their sequences (a retry
  // reuses them), so a failed call loses nothing.
  absl::Status Prepare(const std::vector<Item>& items);
  // Writes rows of `layer` of the last Prepare's items (k, v: device bf16 [rows][num_kv_heads]
  // [head_dim], un-rotated) into the cold pages and, where a page is hot, into the hot pool.
  absl::Status Append(int layer, const void* k, const void* v);
  // What the kernels read for (seq, layer): fp8 banks, slot and page tables. Valid until the
  // next Prepare or Free. The banks are the same for every sequence and layer (one hot pool),
  // so the sources of many sequences can be read in one batched call
  // (CudaHipAttention::RunDecodeBatch).
  absl::StatusOr<kernels::TieredKvSource> Source(common::SequenceId seq, int layer) const;

  int64_t cold_capacity_tokens() const;
  int64_t hot_capacity_tokens() const;
  CudaKvTierStats stats() const;

 private:
  struct Impl;
  explicit CudaKvTiers(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hipserve::worker
