// KvStoreOptions: everything PagedKvStore needs to size itself. No field is guessed from the
// machine: budgets are hard limits that come from flags (--gpu_kv_bytes, --host_kv_bytes).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "kvstore/kv_types.h"

namespace hipserve::kvstore {

struct KvStoreOptions {
  // ---- Model shape on this worker (required) ----
  int num_layers = 0;    // decoder layers; > 0
  int num_kv_heads = 0;  // local KV heads (after tensor-parallel split); > 0
  int head_dim = 0;      // > 0 and a multiple of 16 (16-byte vector rows on the GPU)

  // ---- Tiers ----
  // false (default): every page is hot (device memory, `hot_dtype`); no cold tier, no caches.
  // true: every token also lives in the cold tier (host, fp8 e5m2); hot keeps only the sink
  // pages, the window pages and the newest page; the mask/sa caches exist per layer.
  bool offload = false;
  KvDtype hot_dtype = KvDtype::kBf16;  // default bf16; element type of hot pages and cache banks
  int64_t gpu_kv_bytes = 0;   // --gpu_kv_bytes; hard cap on device bytes (hot pages + caches +
                              // fill scratch). Required > 0.
  int64_t host_kv_bytes = 0;  // --host_kv_bytes; hard cap on cold-tier pinned bytes. Required
                              // > 0 when offload, ignored otherwise. Default 0.
  int n_sink = 256;           // default 256 (HIP.md 1); leading tokens always hot
  int n_window = 1024;        // default 1024 (HIP.md 1); trailing tokens always hot

  // ---- HiP caches (HIP.md 7), only when offload; per layer, slots per KV head ----
  int mask_cache_tokens = 64000;  // default 64000 (upstream); keys only; 0 disables
  int sa_cache_tokens = 5000;     // default 5000 (upstream); keys and values; 0 disables
  int fill_batch_tokens = 65536;  // default 65536; max tokens per fill launch (sizes scratch)

  // ---- Allocation granularity ----
  int64_t hot_chunk_bytes = int64_t{256} << 20;  // default 256 MiB per device allocation
  int64_t cold_chunk_bytes = int64_t{1} << 30;   // default 1 GiB per pinned allocation; <= 4 GiB
};

// Largest single pinned host allocation (DESIGN.md: pinned memory in chunks <= 4 GiB).
inline constexpr int64_t kMaxPinnedChunkBytes = int64_t{4} << 30;

// InvalidArgument naming the first bad field, else OK.
absl::Status ValidateOptions(const KvStoreOptions& options);

// Pages (per layer and KV head) kept hot for a sequence of `num_pages` pages.
int64_t HotPagesPerHead(const KvStoreOptions& options, int64_t num_pages);
// Whether page `page` of a `num_pages`-page sequence is in the always-hot set.
bool IsHotPage(const KvStoreOptions& options, int64_t page, int64_t num_pages);
// Sink pages ceil(n_sink/64); window pages ceil(n_window/64) + 1 (the +1 covers a window that
// does not start on a page boundary and the newest page).
int64_t SinkPages(const KvStoreOptions& options);
int64_t WindowPages(const KvStoreOptions& options);

}  // namespace hipserve::kvstore
