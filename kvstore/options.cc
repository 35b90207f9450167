#include "kvstore/options.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace hipserve::kvstore {

absl::Status ValidateOptions(const KvStoreOptions& o) {
  auto bad = [](auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (o.num_layers <= 0) return bad("KvStoreOptions.num_layers must be > 0, got ", o.num_layers);
  if (o.num_kv_heads <= 0) {
    return bad("KvStoreOptions.num_kv_heads must be > 0, got ", o.num_kv_heads);
  }
  if (o.head_dim <= 0 || o.head_dim % 16 != 0) {
    return bad("KvStoreOptions.head_dim must be a positive multiple of 16, got ", o.head_dim);
  }
  if (o.gpu_kv_bytes <= 0) {
    return bad("KvStoreOptions.gpu_kv_bytes (--gpu_kv_bytes) must be > 0, got ", o.gpu_kv_bytes);
  }
  if (o.offload && o.host_kv_bytes <= 0) {
    return bad("KvStoreOptions.host_kv_bytes (--host_kv_bytes) must be > 0 with offload, got ",
               o.host_kv_bytes);
  }
  if (o.n_sink < 0 || o.n_window < 0) {
    return bad("KvStoreOptions.n_sink/n_window must be >= 0, got ", o.n_sink, "/", o.n_window);
  }
  if (o.mask_cache_tokens < 0 || o.sa_cache_tokens < 0 || o.fill_batch_tokens <= 0) {
    return bad("KvStoreOptions cache sizes must be >= 0 and fill_batch_tokens > 0, got ",
               o.mask_cache_tokens, "/", o.sa_cache_tokens, "/", o.fill_batch_tokens);
  }
  const int64_t hot_page = PageBytes(o.head_dim, DtypeBytes(o.hot_dtype));
  const int64_t cold_page = PageBytes(o.head_dim, 1);
  if (o.hot_chunk_bytes < hot_page) {
    return bad("KvStoreOptions.hot_chunk_bytes ", o.hot_chunk_bytes, " < one page (", hot_page,
               " bytes)");
  }
  if (o.cold_chunk_bytes < cold_page || o.cold_chunk_bytes > kMaxPinnedChunkBytes) {
    return bad("KvStoreOptions.cold_chunk_bytes must be in [", cold_page, ", ",
               kMaxPinnedChunkBytes, "], got ", o.cold_chunk_bytes);
  }
  return absl::OkStatus();
}

int64_t SinkPages(const KvStoreOptions& o) { return (o.n_sink + kPageTokens - 1) / kPageTokens; }

int64_t WindowPages(const KvStoreOptions& o) {
  return (o.n_window + kPageTokens - 1) / kPageTokens + 1;
}

bool IsHotPage(const KvStoreOptions& o, int64_t page, int64_t num_pages) {
  return !o.offload || page < SinkPages(o) || page >= num_pages - WindowPages(o);
}

int64_t HotPagesPerHead(const KvStoreOptions& o, int64_t num_pages) {
  if (!o.offload) return num_pages;
  return std::min(num_pages, SinkPages(o) + WindowPages(o));
}

}  // namespace hipserve::kvstore
