// CudaKvTiers (worker/cuda_kv_tiers.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kvstore/cuda_memory.h"
#include "kvstore/options.h"
#include "kvstore/page_pool.h"
#include "worker/cuda_kv_fp8.cuh"
#include "worker/cuda_kv_tiers.h"

namespace hipserve::worker {
namespace {

using common::SequenceId;
constexpr int kPage = kernels::kKvPageTokens;  // tokens per page
constexpr int64_t kTableGranulePages = 64;     // tables grow by at least 4096 tokens
constexpr int64_t kMiB = int64_t{1} << 20;

// One table change of one page of one sequence, applied to every (layer, KV head) list.
struct PageUpdate {
  int32_t* slots;   // list 0 of the sequence's slot table
  uint64_t* pages;  // list 0 of its page table
  int64_t slot_stride;
  int64_t page_stride;
  int64_t page;        // page index in the sequence
  uint64_t cold_base;  // device address of the page group (list 0's page); 0 = leave as is
  int32_t hot;         // hot page id, or -1 (tokens read from the cold tier)
  int32_t pad;
};

// One item of a step, as the append kernel reads it.
struct AppendItem {
  int32_t* slots;
  uint64_t* pages;
  int64_t slot_stride;
  int64_t page_stride;
  int32_t start_pos;
  int32_t row;
};

// grid (updates, lists), 64 threads: token i of the page.
__global__ void ApplyPageUpdates(const PageUpdate* updates, int64_t hot_pages,
                                 int64_t list_page_bytes) {
  const PageUpdate u = updates[blockIdx.x];
  const int64_t list = blockIdx.y;
  const int i = threadIdx.x;
  u.slots[list * u.slot_stride + u.page * kPage + i] =
      u.hot >= 0 ? static_cast<int32_t>((list * hot_pages + u.hot) * kPage + i) : -1;
  if (i == 0 && u.cold_base != 0) {
    u.pages[list * u.page_stride + u.page] = u.cold_base + list * list_page_bytes;
  }
}

// grid rows, block threads: 8 elements of the row (all local KV heads) per thread and pass.
__global__ void AppendRows(const uint16_t* k, const uint16_t* v, const AppendItem* items,
                           const int32_t* row_item, int layer, int heads, int head_dim,
                           uint8_t* hot_k, uint8_t* hot_v) {
  const int row = blockIdx.x;
  const AppendItem it = items[row_item[row]];
  const int64_t t = it.start_pos + (row - it.row);
  const int elems = heads * head_dim;
  for (int e = threadIdx.x * 8; e < elems; e += blockDim.x * 8) {
    const int h = e / head_dim, d = e % head_dim;
    const int64_t list = int64_t{layer} * heads + h;
    const uint2 ck = EncodeFp8x8(*reinterpret_cast<const uint4*>(k + int64_t{row} * elems + e));
    const uint2 cv = EncodeFp8x8(*reinterpret_cast<const uint4*>(v + int64_t{row} * elems + e));
    uint8_t* page = reinterpret_cast<uint8_t*>(it.pages[list * it.page_stride + t / kPage]);
    *reinterpret_cast<uint2*>(page + (t % kPage) * head_dim + d) = ck;
    *reinterpret_cast<uint2*>(page + (kPage + t % kPage) * head_dim + d) = cv;
    const int32_t slot = it.slots[list * it.slot_stride + t];
    if (slot >= 0) {
      *reinterpret_cast<uint2*>(hot_k + int64_t{slot} * head_dim + d) = ck;
      *reinterpret_cast<uint2*>(hot_v + int64_t{slot} * head_dim + d) = cv;
    }
  }
}

}  // namespace

struct CudaKvTiers::Impl {
  struct Seq {
    int32_t* slots = nullptr;   // [lists][page_cap * 64]
    uint64_t* pages = nullptr;  // [lists][page_cap]
    int64_t page_cap = 0;
    std::vector<common::PageId> cold;  // per page: its page group
    std::vector<int32_t> hot;          // per page: hot page id or -1
    std::deque<int64_t> evictable;     // hot pages past the sink, oldest first
    int64_t guard = 0;                 // pages from guard / 64 on stay hot (window)
  };

  CudaKvTiersOptions o;
  cudaStream_t stream = nullptr;
  int64_t lists = 0;
  int64_t list_page_bytes = 0;  // one (layer, head) page: K then V, fp8
  int64_t hot_pages = 0;
  uint8_t* hot_k = nullptr;
  uint8_t* hot_v = nullptr;
  // Without a hot pool: a small device block that stands in for both banks (never read: every
  // slot is -1), the same for every sequence, so that batched calls see one bank.
  uint8_t* no_bank = nullptr;
  std::vector<int32_t> hot_free;
  std::unique_ptr<kvstore::Memory> memory;
  std::unique_ptr<kvstore::PagePool> cold;
  absl::flat_hash_map<SequenceId, Seq> seqs;
  int64_t table_used = 0;
  int64_t evictions = 0;
  int64_t step_pages_hot = 0, step_pages_cold = 0;  // CudaKvTierStats
  // Device copies of the last Prepare's items (append metadata) and scratch for updates.
  void* meta_dev = nullptr;
  int64_t meta_bytes = 0;
  int num_rows = 0;
  int64_t items_off = 0;

  int64_t TableBytes(int64_t page_cap) const { return lists * page_cap * (kPage * 4 + 8); }
  absl::Status EnsureMeta(int64_t bytes) {
    if (bytes <= meta_bytes) return absl::OkStatus();
    if (meta_dev != nullptr) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
      CUDA_RETURN_IF_ERROR(cudaFree(meta_dev));
      meta_dev = nullptr;
    }
    const int64_t want = std::max<int64_t>(bytes, 2 * meta_bytes);
    CUDA_RETURN_IF_ERROR(cudaMalloc(&meta_dev, static_cast<size_t>(want)));
    meta_bytes = want;
    return absl::OkStatus();
  }
  absl::Status Grow(SequenceId id, Seq* s, int64_t need_pages);
  // A hot page for a new page of `self`: free, else evicted from the sequence with the most
  // hot pages (only pages behind its guard). -1 when none can be had.
  int32_t TakeHot(std::vector<PageUpdate>* updates);
  void FreeSeq(Seq* s);
};

int64_t CudaKvTiers::HotBytesPerToken(const CudaKvTiersOptions& o) {
  return int64_t{o.num_layers} * o.num_kv_heads * o.head_dim * 2;
}
int64_t CudaKvTiers::ColdBytesPerToken(const CudaKvTiersOptions& o) { return HotBytesPerToken(o); }
int64_t CudaKvTiers::TableBytesPerToken(const CudaKvTiersOptions& o) {
  // int32 slot per token + uint64 page address per 64 tokens, per list.
  return int64_t{o.num_layers} * o.num_kv_heads * (4 + (8 + kPage - 1) / kPage);
}

CudaKvTiers::CudaKvTiers(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CudaKvTiers::~CudaKvTiers() {
  Impl& m = *impl_;
  cudaStreamSynchronize(m.stream);
  for (auto& [id, s] : m.seqs) {
    cudaFree(s.slots);
    cudaFree(s.pages);
  }
  cudaFree(m.hot_k);
  cudaFree(m.hot_v);
  cudaFree(m.no_bank);
  cudaFree(m.meta_dev);
  m.cold.reset();  // before the Memory it allocates from
}

absl::StatusOr<std::unique_ptr<CudaKvTiers>> CudaKvTiers::Create(const CudaKvTiersOptions& o,
                                                                 void* stream) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("kv offload: ", what));
  };
  if (o.num_layers <= 0 || o.num_kv_heads <= 0) return bad("num_layers and num_kv_heads > 0");
  if (o.head_dim != 64 && o.head_dim != 128) return bad("head_dim must be 64 or 128");
  if (o.n_sink < 0 || o.n_window < 0) return bad("n_sink and n_window must be >= 0");
  if (o.cold_tokens < kPage) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv offload: the host KV budget holds ", o.cold_tokens, " tokens, fewer than one page of ",
        kPage, " (", ColdBytesPerToken(o), " bytes per token; raise --host_kv_bytes)"));
  }
  if (o.table_bytes <= 0) return bad("table_bytes must be > 0");
  auto m = std::make_unique<Impl>();
  m->o = o;
  m->stream = static_cast<cudaStream_t>(stream);
  m->lists = int64_t{o.num_layers} * o.num_kv_heads;
  m->list_page_bytes = int64_t{kPage} * o.head_dim * 2;
  m->hot_pages = std::max<int64_t>(o.hot_tokens, 0) / kPage;
  if (m->lists * m->hot_pages * kPage > INT32_MAX) {
    m->hot_pages = INT32_MAX / (m->lists * kPage);  // slot rows are int32
  }
  if (m->hot_pages > 0) {
    const size_t bank = static_cast<size_t>(m->lists * m->hot_pages * kPage * o.head_dim);
    CUDA_RETURN_IF_ERROR(cudaMalloc(&m->hot_k, bank));
    CUDA_RETURN_IF_ERROR(cudaMalloc(&m->hot_v, bank));
  } else {
    CUDA_RETURN_IF_ERROR(cudaMalloc(&m->no_bank, 256));
  }
  m->hot_free.reserve(m->hot_pages);
  for (int64_t i = m->hot_pages - 1; i >= 0; --i) m->hot_free.push_back(static_cast<int32_t>(i));
  ASSIGN_OR_RETURN(m->memory, kvstore::NewCudaMemory(o.device));
  const int64_t group_bytes = m->lists * m->list_page_bytes;
  const int64_t chunk_groups = std::max<int64_t>(1, (int64_t{1} << 30) / group_bytes);
  if (group_bytes > kvstore::kMaxPinnedChunkBytes) {
    return bad(absl::StrCat("a page group of ", group_bytes, " bytes exceeds one pinned chunk"));
  }
  m->cold = std::make_unique<kvstore::PagePool>(m->memory.get(), kvstore::MemoryKind::kHostMapped,
                                                group_bytes, o.cold_tokens / kPage, chunk_groups);
  // The whole host tier is pinned now, not a 1 GiB chunk at a time inside steps: on the H100
  // machines a chunk took ~0.45 s to allocate and map, ~20% of a 1M-token prefill's steps and
  // the ~0.4 s first decode step after a 1M prompt (whose first token opened a new chunk).
  const int64_t groups = m->cold->capacity_pages();
  const int64_t report_every = std::max<int64_t>(chunk_groups, (int64_t{8} << 30) / group_bytes);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t done = 0; done < groups;) {
    done = std::min(groups, done + report_every);
    if (const absl::Status r = m->cold->Reserve(done); !r.ok()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("kv offload: pinning the host KV tier (", groups * group_bytes >> 20,
                       " MiB, --host_kv_bytes) failed after ", m->cold->allocated_bytes() >> 20,
                       " MiB: ", r.message()));
    }
    if (groups * group_bytes >= (int64_t{8} << 30)) {
      LOG(INFO) << "kv offload: pinned " << (m->cold->allocated_bytes() >> 20) << " of "
                << (groups * group_bytes >> 20) << " MiB of the host KV tier ("
                << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                << " s)";
    }
  }
  return std::unique_ptr<CudaKvTiers>(new CudaKvTiers(std::move(m)));
}

absl::Status CudaKvTiers::AddSequence(SequenceId seq) {
  if (!impl_->seqs.emplace(seq, Impl::Seq{}).second) {
    return absl::AlreadyExistsError(absl::StrCat("kv offload: sequence ", seq.value(), " exists"));
  }
  return absl::OkStatus();
}

void CudaKvTiers::Impl::FreeSeq(Seq* s) {
  for (common::PageId p : s->cold) cold->Release(p);
  for (int32_t h : s->hot) {
    if (h >= 0) hot_free.push_back(h);
  }
  if (s->slots != nullptr) cudaFreeAsync(s->slots, stream);
  if (s->pages != nullptr) cudaFreeAsync(s->pages, stream);
  table_used -= TableBytes(s->page_cap);
}

absl::Status CudaKvTiers::Free(SequenceId seq) {
  auto it = impl_->seqs.find(seq);
  if (it == impl_->seqs.end()) {
    return absl::NotFoundError(absl::StrCat("kv offload: sequence ", seq.value()));
  }
  impl_->FreeSeq(&it->second);
  impl_->seqs.erase(it);
  return absl::OkStatus();
}

absl::Status CudaKvTiers::Impl::Grow(SequenceId id, Seq* s, int64_t need_pages) {
  if (need_pages <= s->page_cap) return absl::OkStatus();
  int64_t cap = std::max<int64_t>({need_pages, s->page_cap + s->page_cap / 2, kTableGranulePages});
  cap = (cap + kTableGranulePages - 1) / kTableGranulePages * kTableGranulePages;
  const int64_t add = TableBytes(cap) - TableBytes(s->page_cap);
  if (table_used + add > o.table_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv offload: sequence ", id.value(), " needs KV tables for ", need_pages * kPage,
        " tokens; ", table_used / kMiB, " MiB of the ", o.table_bytes / kMiB,
        " MiB table budget in use (", TableBytes(cap) / kMiB, " MiB wanted)"));
  }
  const int64_t old_slot_stride = s->page_cap * kPage, slot_stride = cap * kPage;
  int32_t* slots = nullptr;
  uint64_t* pages = nullptr;
  CUDA_RETURN_IF_ERROR(
      cudaMallocAsync(reinterpret_cast<void**>(&slots), lists * slot_stride * 4, stream));
  if (cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&pages), lists * cap * 8, stream);
      e != cudaSuccess) {
    cudaFreeAsync(slots, stream);
    return absl::ResourceExhaustedError(
        absl::StrCat("kv offload: KV tables: ", cudaGetErrorString(e)));
  }
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(slots, 0xFF, lists * slot_stride * 4, stream));  // -1
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(pages, 0, lists * cap * 8, stream));
  if (s->page_cap > 0) {
    CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(slots, slot_stride * 4, s->slots, old_slot_stride * 4,
                                           old_slot_stride * 4, lists, cudaMemcpyDeviceToDevice,
                                           stream));
    CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(pages, cap * 8, s->pages, s->page_cap * 8,
                                           s->page_cap * 8, lists, cudaMemcpyDeviceToDevice,
                                           stream));
    CUDA_RETURN_IF_ERROR(cudaFreeAsync(s->slots, stream));
    CUDA_RETURN_IF_ERROR(cudaFreeAsync(s->pages, stream));
  }
  table_used += add;
  s->slots = slots;
  s->pages = pages;
  s->page_cap = cap;
  return absl::OkStatus();
}

int32_t CudaKvTiers::Impl::TakeHot(std::vector<PageUpdate>* updates) {
  if (!hot_free.empty()) {
    const int32_t h = hot_free.back();
    hot_free.pop_back();
    return h;
  }
  Seq* victim = nullptr;
  for (auto& [id, s] : seqs) {
    if (s.evictable.empty()) continue;
    const int64_t p = s.evictable.front();
    if ((p + 1) * kPage > s.guard) continue;  // in (or after) the window of its current step
    if (victim == nullptr || s.evictable.size() > victim->evictable.size()) victim = &s;
  }
  if (victim == nullptr) return -1;
  const int64_t p = victim->evictable.front();
  victim->evictable.pop_front();
  const int32_t h = victim->hot[p];
  victim->hot[p] = -1;
  updates->push_back(PageUpdate{victim->slots, victim->pages, victim->page_cap * kPage,
                                victim->page_cap, p, 0, -1, 0});
  ++evictions;
  return h;
}

absl::Status CudaKvTiers::Prepare(const std::vector<Item>& items) {
  Impl& m = *impl_;
  // Guards first (every sequence of the step keeps its window hot), then tables, then pages:
  // table pointers in the updates must be the final ones.
  for (const Item& it : items) {
    auto f = m.seqs.find(it.seq);
    if (f == m.seqs.end()) {
      return absl::InternalError(absl::StrCat("kv offload: sequence ", it.seq.value(), " unknown"));
    }
    f->second.guard = std::max<int64_t>(0, int64_t{it.start_pos} - m.o.n_window - 1);
  }
  for (const Item& it : items) {
    Impl::Seq& s = m.seqs.at(it.seq);
    RETURN_IF_ERROR(m.Grow(it.seq, &s, (int64_t{it.start_pos} + it.tokens + kPage - 1) / kPage));
  }
  const int64_t sink_pages = (m.o.n_sink + kPage - 1) / kPage;
  std::vector<PageUpdate> updates;
  std::string error;  // set when the host tier cannot take a page
  for (const Item& it : items) {
    Impl::Seq& s = m.seqs.at(it.seq);
    const int64_t need = (int64_t{it.start_pos} + it.tokens + kPage - 1) / kPage;
    while (error.empty() && static_cast<int64_t>(s.cold.size()) < need) {
      std::vector<common::PageId> got;
      if (const absl::Status a = m.cold->Allocate(1, &got); !a.ok()) {
        error = absl::StrCat("kv offload: host KV tier: sequence ", it.seq.value(), " needs ",
                             need * kPage, " tokens; ", m.cold->used_pages() * kPage, " of ",
                             m.cold->capacity_pages() * kPage,
                             " tokens in use (--host_kv_bytes sets the tier): ", a.message());
        break;
      }
      const int64_t p = static_cast<int64_t>(s.cold.size());
      s.cold.push_back(got[0]);
      const int32_t h = m.TakeHot(&updates);
      s.hot.push_back(h);
      if (h >= 0 && p >= sink_pages) s.evictable.push_back(p);
      updates.push_back(PageUpdate{s.slots, s.pages, s.page_cap * kPage, s.page_cap, p,
                                   reinterpret_cast<uint64_t>(m.cold->DeviceAddress(got[0])), h,
                                   0});
    }
  }
  // Enqueue what was decided, even on failure: the tables must match the pages now owned.
  if (!updates.empty()) {
    const int64_t bytes = static_cast<int64_t>(updates.size() * sizeof(PageUpdate));
    RETURN_IF_ERROR(m.EnsureMeta(bytes));
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(m.meta_dev, updates.data(), bytes, cudaMemcpyHostToDevice, m.stream));
    for (size_t at = 0; at < updates.size(); at += 65535) {
      const int n = static_cast<int>(std::min<size_t>(65535, updates.size() - at));
      ApplyPageUpdates<<<dim3(n, static_cast<unsigned>(m.lists)), kPage, 0, m.stream>>>(
          static_cast<const PageUpdate*>(m.meta_dev) + at, m.hot_pages, m.list_page_bytes);
      CUDA_RETURN_IF_ERROR(cudaGetLastError());
    }
    // The next upload reuses meta_dev: the pageable copy above is staged before it returns.
  }
  if (!error.empty()) return absl::ResourceExhaustedError(error);
  for (const Item& it : items) {
    const std::vector<int32_t>& hot = m.seqs.at(it.seq).hot;
    const int64_t n = std::count_if(hot.begin(), hot.end(), [](int32_t h) { return h >= 0; });
    m.step_pages_hot += n;
    m.step_pages_cold += static_cast<int64_t>(hot.size()) - n;
  }
  // Append metadata for the step: items, then the row -> item map.
  std::vector<AppendItem> ai;
  int rows = 0;
  for (const Item& it : items) rows = std::max(rows, it.row + it.tokens);
  std::vector<int32_t> row_item(rows, 0);
  for (const Item& it : items) {
    const Impl::Seq& s = m.seqs.at(it.seq);
    ai.push_back(
        AppendItem{s.slots, s.pages, s.page_cap * kPage, s.page_cap, it.start_pos, it.row});
    std::fill_n(row_item.begin() + it.row, it.tokens, static_cast<int32_t>(ai.size() - 1));
  }
  const int64_t items_bytes = static_cast<int64_t>(ai.size() * sizeof(AppendItem));
  const int64_t items_off = (static_cast<int64_t>(row_item.size()) * 4 + 15) / 16 * 16;
  // Appends of this step read the metadata while the next Prepare may upload: keep both in
  // stream order (the upload is ordered after this step's kernels).
  std::vector<uint8_t> host(items_off + items_bytes);
  std::memcpy(host.data(), row_item.data(), row_item.size() * 4);
  std::memcpy(host.data() + items_off, ai.data(), items_bytes);
  RETURN_IF_ERROR(m.EnsureMeta(static_cast<int64_t>(host.size())));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(m.meta_dev, host.data(), host.size(), cudaMemcpyHostToDevice, m.stream));
  m.num_rows = static_cast<int>(row_item.size());
  m.items_off = items_off;
  return absl::OkStatus();
}

absl::Status CudaKvTiers::Append(int layer, const void* k, const void* v) {
  Impl& m = *impl_;
  if (layer < 0 || layer >= m.o.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("kv offload: layer ", layer));
  }
  if (m.num_rows == 0) return absl::OkStatus();
  const int elems = m.o.num_kv_heads * m.o.head_dim;
  const int threads = std::min(256, std::max(32, (elems / 8 + 31) / 32 * 32));
  const auto* base = static_cast<const uint8_t*>(m.meta_dev);
  AppendRows<<<m.num_rows, threads, 0, m.stream>>>(
      static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v),
      reinterpret_cast<const AppendItem*>(base + m.items_off),
      reinterpret_cast<const int32_t*>(base), layer, m.o.num_kv_heads, m.o.head_dim, m.hot_k,
      m.hot_v);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::StatusOr<kernels::TieredKvSource> CudaKvTiers::Source(SequenceId seq, int layer) const {
  const Impl& m = *impl_;
  auto it = m.seqs.find(seq);
  if (it == m.seqs.end()) {
    return absl::NotFoundError(absl::StrCat("kv offload: sequence ", seq.value()));
  }
  const Impl::Seq& s = it->second;
  if (s.page_cap == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("kv offload: sequence ", seq.value(), " holds no tokens"));
  }
  kernels::TieredKvSource src;
  // An empty hot pool still needs valid bank pointers (never read: every slot is -1).
  src.bank_k = m.hot_k != nullptr ? m.hot_k : m.no_bank;
  src.bank_v = m.hot_v != nullptr ? m.hot_v : m.no_bank;
  const int64_t first = int64_t{layer} * m.o.num_kv_heads;
  src.slot_stride = s.page_cap * kPage;
  src.page_stride = s.page_cap;
  src.slot_table = s.slots + first * src.slot_stride;
  src.cold_pages = s.pages + first * src.page_stride;
  return src;
}

int64_t CudaKvTiers::cold_capacity_tokens() const { return impl_->cold->capacity_pages() * kPage; }
int64_t CudaKvTiers::hot_capacity_tokens() const { return impl_->hot_pages * kPage; }

CudaKvTierStats CudaKvTiers::stats() const {
  const Impl& m = *impl_;
  CudaKvTierStats st;
  st.hot_pages = m.hot_pages;
  st.hot_pages_used = m.hot_pages - static_cast<int64_t>(m.hot_free.size());
  st.cold_pages = m.cold->capacity_pages();
  st.cold_pages_used = m.cold->used_pages();
  st.cold_bytes_pinned = m.cold->allocated_bytes();
  st.table_bytes = m.o.table_bytes;
  st.table_bytes_used = m.table_used;
  st.evictions = m.evictions;
  st.step_pages_hot = m.step_pages_hot;
  st.step_pages_cold = m.step_pages_cold;
  return st;
}

}  // namespace hipserve::worker
