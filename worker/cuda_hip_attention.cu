// CudaHipAttention (see the header): the GPU twin of HipAttention over the HiP CUDA kernels.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/attention_cuda/bsa_prefill.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/hip_cuda/prefill_mask.h"
#include "worker/cuda_hip_attention.h"

namespace hipserve::worker {

using common::SequenceId;

namespace cuda_hip_internal {

constexpr size_t kAlign = 256;  // workspace regions and pooled blocks
inline size_t AlignUp(size_t x, size_t a) { return (x + a - 1) / a * a; }

// Fixed-size device blocks carved from cudaMalloc'ed slabs. Blocks given back are reused by
// later Runs; that is safe because every use of a block is ordered on the one stream (header's
// stream rule): a reuse is enqueued after the last kernel that read the block.
class DeviceBlockPool {
 public:
  explicit DeviceBlockPool(size_t block_bytes) : block_bytes_(AlignUp(block_bytes, kAlign)) {}
  ~DeviceBlockPool() {
    for (void* slab : slabs_) cudaFree(slab);
  }
  DeviceBlockPool(const DeviceBlockPool&) = delete;
  DeviceBlockPool& operator=(const DeviceBlockPool&) = delete;

  absl::StatusOr<char*> Acquire() {
    if (free_.empty()) {
      void* slab = nullptr;
      CUDA_RETURN_IF_ERROR(cudaMalloc(&slab, block_bytes_ * kSlabBlocks));
      slabs_.push_back(slab);
      for (int i = kSlabBlocks - 1; i >= 0; --i) {
        free_.push_back(static_cast<char*>(slab) + static_cast<size_t>(i) * block_bytes_);
      }
    }
    char* block = free_.back();
    free_.pop_back();
    return block;
  }
  void Give(char* block) { free_.push_back(block); }

 private:
  static constexpr int kSlabBlocks = 32;
  size_t block_bytes_;
  std::vector<void*> slabs_;
  std::vector<char*> free_;
};

// One stage's kept list of one (sequence, layer), every KV head: the HipDecodeMaskGpuState
// arrays of batch 1. Returned to its pool when the last holder (state or snapshot) drops it.
struct StageList {
  std::shared_ptr<DeviceBlockPool> pool;
  char* mem = nullptr;
  int32_t* starts = nullptr;     // [num_kv_heads][keep_chunks(s)]
  int32_t* count = nullptr;      // [num_kv_heads]
  int32_t* range_end = nullptr;  // [num_kv_heads]
  ~StageList() {
    if (mem != nullptr) pool->Give(mem);
  }
};

// Bytes of a StageList block and its layout.
inline size_t StageListBytes(int kv_heads, int max_keep) {
  return AlignUp(size_t{4} * kv_heads * max_keep, 16) + 2 * AlignUp(size_t{4} * kv_heads, 16);
}

absl::StatusOr<std::shared_ptr<StageList>> NewStageList(
    const std::shared_ptr<DeviceBlockPool>& pool, int kv_heads, int max_keep) {
  auto list = std::make_shared<StageList>();
  ASSIGN_OR_RETURN(char* mem, pool->Acquire());
  list->pool = pool;
  list->mem = mem;
  list->starts = reinterpret_cast<int32_t*>(mem);
  char* p = mem + AlignUp(size_t{4} * kv_heads * max_keep, 16);
  list->count = reinterpret_cast<int32_t*>(p);
  list->range_end = reinterpret_cast<int32_t*>(p + AlignUp(size_t{4} * kv_heads, 16));
  return list;
}

using StageLists = std::array<std::shared_ptr<StageList>, kernels::kHipGpuMaxStages>;

// kv_start[i] = 0, kv_len[i] = first_len + i: the single-query rows of a step are queries at
// consecutive positions of one sequence whose keys start at row 0 of k / v.
__global__ void FillLensKernel(int64_t* kv_start, int32_t* kv_len, int n, int32_t first_len) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) {
    kv_start[i] = 0;
    kv_len[i] = first_len + i;
  }
}

// Batched decode (RunDecodeBatch). The per-entry data of a launch travels in its kernel
// parameters (__grid_constant__: read in place, no host staging buffer), kBatchChunk entries a
// launch.
constexpr int kBatchChunk = 64;
constexpr int kCopyThreads = 256;

// The workspace arrays of one batch (one extend group), batch-major, and where the arrays of a
// pooled StageList block are.
struct BatchLayout {
  int64_t* kv_start;                              // [n]
  int32_t* kv_len;                                // [n]
  int32_t* start_stage;                           // [n] (HipDecodeMaskGpuParams::seq_start_stage)
  kernels::TieredKvTables* tables;                // [n], or null (contiguous K/V)
  int32_t* starts[kernels::kHipGpuMaxStages];     // [n][kvh][keep[s]]
  int32_t* count[kernels::kHipGpuMaxStages];      // [n][kvh]
  int32_t* range_end[kernels::kHipGpuMaxStages];  // [n][kvh]
  int keep[kernels::kHipGpuMaxStages];
  int64_t count_off[kernels::kHipGpuMaxStages];  // bytes from a list block to its count array
  int64_t end_off[kernels::kHipGpuMaxStages];    // ... and to its range_end array
  int kvh;
  int row_words;  // int32 words of one q / out row
  int32_t* q;     // [n][row_words] copies of the queries, or null (used in place)
  int32_t* out;   // [n][row_words] outputs to scatter, or null (written in place)
};

struct GatherEntry {
  const char* list;  // StageList block of stage `stage` to copy into the arrays; null: none
  const int32_t* q;  // query row to copy into layout.q; null: none
  kernels::TieredKvTables tables;
  int64_t kv_start;
  int32_t kv_len;
  int32_t start_stage;
  int32_t stage;
};

struct GatherArgs {
  BatchLayout l;
  int first;  // batch index of e[0]
  GatherEntry e[kBatchChunk];
};

struct ScatterEntry {
  char* list[kernels::kHipGpuMaxStages];  // StageList block that receives stage s; null: none
  int32_t* out;                           // output row that receives layout.out's; null: none
};

struct ScatterArgs {
  BatchLayout l;
  int first;
  int stages;
  ScatterEntry e[kBatchChunk];
};
// Kernel parameters beyond 4 KiB need CUDA 12.1+ and compute capability >= 7.0 (both given).
static_assert(sizeof(GatherArgs) <= 32764 && sizeof(ScatterArgs) <= 32764,
              "kernel parameter limit");

// One block per entry: its lengths, start stage and tables; the cached list it reads (stage
// s > 0 restart: the input list s - 1; reuse: the final list); its query row.
__global__ void __launch_bounds__(kCopyThreads) GatherKernel(const __grid_constant__ GatherArgs a) {
  const GatherEntry& e = a.e[blockIdx.x];
  const BatchLayout& l = a.l;
  const int64_t b = a.first + static_cast<int>(blockIdx.x);
  if (threadIdx.x == 0) {
    l.kv_start[b] = e.kv_start;
    l.kv_len[b] = e.kv_len;
    l.start_stage[b] = e.start_stage;
    if (l.tables != nullptr) l.tables[b] = e.tables;
  }
  if (e.list != nullptr) {
    const int s = e.stage, n = l.kvh * l.keep[s];
    const auto* src = reinterpret_cast<const int32_t*>(e.list);
    for (int i = threadIdx.x; i < n; i += kCopyThreads) l.starts[s][b * n + i] = src[i];
    const auto* cnt = reinterpret_cast<const int32_t*>(e.list + l.count_off[s]);
    const auto* end = reinterpret_cast<const int32_t*>(e.list + l.end_off[s]);
    for (int i = threadIdx.x; i < l.kvh; i += kCopyThreads) {
      l.count[s][b * l.kvh + i] = cnt[i];
      l.range_end[s][b * l.kvh + i] = end[i];
    }
  }
  if (e.q != nullptr) {
    for (int i = threadIdx.x; i < l.row_words; i += kCopyThreads) {
      l.q[b * l.row_words + i] = e.q[i];
    }
  }
}

// One block per entry: the stages it recomputed back into its lists; its output row.
__global__ void __launch_bounds__(kCopyThreads)
    ScatterKernel(const __grid_constant__ ScatterArgs a) {
  const ScatterEntry& e = a.e[blockIdx.x];
  const BatchLayout& l = a.l;
  const int64_t b = a.first + static_cast<int>(blockIdx.x);
  for (int s = 0; s < a.stages; ++s) {
    char* list = e.list[s];
    if (list == nullptr) continue;
    const int n = l.kvh * l.keep[s];
    auto* dst = reinterpret_cast<int32_t*>(list);
    for (int i = threadIdx.x; i < n; i += kCopyThreads) dst[i] = l.starts[s][b * n + i];
    auto* cnt = reinterpret_cast<int32_t*>(list + l.count_off[s]);
    auto* end = reinterpret_cast<int32_t*>(list + l.end_off[s]);
    for (int i = threadIdx.x; i < l.kvh; i += kCopyThreads) {
      cnt[i] = l.count[s][b * l.kvh + i];
      end[i] = l.range_end[s][b * l.kvh + i];
    }
  }
  if (e.out != nullptr) {
    for (int i = threadIdx.x; i < l.row_words; i += kCopyThreads) {
      e.out[i] = l.out[b * l.row_words + i];
    }
  }
}

}  // namespace cuda_hip_internal

namespace chi = cuda_hip_internal;

namespace {

// Element types of contiguous K/V the kernels read (InvalidArgument names them otherwise).
absl::Status CheckKvDtype(kernels::KvDtype d) {
  switch (d) {
    case kernels::KvDtype::kBf16:
    case kernels::KvDtype::kFp8E5m2:
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("CudaHipAttention: K/V dtype ",
                                                 static_cast<int>(d),
                                                 " is not supported; use bf16 or fp8_e5m2"));
}

}  // namespace

struct CudaHipAttention::SeqState {
  HipStepInfo step;
  int64_t next_decode_step = 0;
  int k = 0;  // BeginStep's final keep (0 = the config's): selects Impl::SpecSet
  // [num_layers]: every stage's kept list from the latest refresh; all null = nothing cached.
  std::vector<chi::StageLists> cache;
};

struct CudaHipAttention::Impl {
  Impl(const HipAttentionOptions& o, kernels::RopeTable table)
      : options(o), rope_host(std::move(table)) {}
  ~Impl() {
    cudaDeviceSynchronize();  // nothing of ours may still be running
    cudaFree(rope);
    cudaFree(workspace);
  }

  absl::Status EnsureRope(int positions, cudaStream_t stream);
  absl::Status EnsureWorkspace(size_t bytes, cudaStream_t stream);

  // The pruning specs of every layer for one final keep k, and the pools of their lists.
  struct SpecSet {
    std::vector<kernels::PruningSpec> specs;       // [num_layers], extension on
    std::vector<kernels::PruningSpec> specs_real;  // [num_layers], real positions
    std::vector<int> max_keep;  // [stages]: chunks a pooled list of stage s holds, >= every layer's
    std::vector<std::shared_ptr<chi::DeviceBlockPool>> pools;  // [stages]
  };
  // The set of final keep k (0 = config.k): built on first use. Stages before the last share
  // the configured set's pools; the last stage uses the configured pool when its lists fit, else
  // one pool per power-of-two capacity (so that per-request k values make few pools).
  const SpecSet& SetFor(int k);

  HipAttentionOptions options;
  kernels::RopeTable rope_host;  // the CPU reference's table, grown alike
  absl::flat_hash_map<int, std::unique_ptr<const SpecSet>> sets;               // by k; 0 = config.k
  absl::flat_hash_map<int, std::shared_ptr<chi::DeviceBlockPool>> last_pools;  // by capacity
  int extend_min_tokens = 0;
  float* rope = nullptr;  // device [rope_positions][head_dim] fp32 (HipRopeRows)
  int rope_positions = 0;
  char* workspace = nullptr;  // device, shared by all Runs
  size_t workspace_bytes = 0;
  absl::flat_hash_map<SequenceId, SeqState> states;
  HipMaskCacheCounts mask_cache;
  int bsa_num_splits = 0;  // SetBsaDecodePlanForTesting
  int bsa_keys_per_step = 0;
  std::function<void(Phase, void*)> phase_hook;  // SetPhaseHook
  void MarkPhase(CudaHipAttention::Phase p, cudaStream_t s) const {
    if (phase_hook) phase_hook(p, s);
  }

  // What the latest Run attended with (for LastRunBlocks); pointers into the workspace or a
  // held list.
  struct LastRun {
    bool valid = false;
    int num_q = 0;
    int start_pos = 0;
    int rows_q = 0;  // queries in 64-query prefill rows (the first rows_q of the Run)
    int single = 0;  // queries with a row each (tail or decode), the last `single`
    kernels::HipPrefillPlan plan;
    const int32_t* single_starts = nullptr;  // [single][num_kv_heads][single_stride]
    const int32_t* single_count = nullptr;   // [single][num_kv_heads]
    int single_stride = 0;
    std::shared_ptr<chi::StageList> hold;  // the decode list, kept alive
    // RunDecodeBatch: per extend group, the final lists (workspace, [n][kvh][stride]) of its
    // items (indices into the call's items; num_q = all items).
    struct BatchPart {
      const int32_t* starts = nullptr;
      const int32_t* count = nullptr;
      int stride = 0;
      std::vector<int> items;
    };
    std::vector<BatchPart> parts;
  };
  LastRun last;
};

const CudaHipAttention::Impl::SpecSet& CudaHipAttention::Impl::SetFor(int k) {
  if (k == options.config.k) k = 0;
  std::unique_ptr<const SpecSet>& slot = sets[k];
  if (slot != nullptr) return *slot;
  kernels::HipConfig cfg = options.config;
  if (k != 0) cfg.k = k;
  kernels::HipConfig real = cfg;
  real.extend = false;
  const int stages = cfg.num_stages(), kvh = options.num_kv_heads;
  auto set = std::make_unique<SpecSet>();
  set->max_keep.assign(stages, 0);
  for (int l = 0; l < options.num_layers; ++l) {
    set->specs.push_back(kernels::PruningSpecForLayer(cfg, l));
    set->specs_real.push_back(kernels::PruningSpecForLayer(real, l));
    for (const kernels::PruningSpec* spec : {&set->specs.back(), &set->specs_real.back()}) {
      for (int s = 0; s < stages; ++s) {
        set->max_keep[s] = std::max(set->max_keep[s], spec->keep_chunks(s));
      }
    }
  }
  if (k == 0) {
    for (int s = 0; s < stages; ++s) {
      set->pools.push_back(
          std::make_shared<chi::DeviceBlockPool>(chi::StageListBytes(kvh, set->max_keep[s])));
    }
  } else {
    const SpecSet& base = SetFor(0);
    set->pools = base.pools;
    for (int s = 0; s + 1 < stages; ++s) set->max_keep[s] = base.max_keep[s];
    const int last = stages - 1;
    if (set->max_keep[last] <= base.max_keep[last]) {
      set->max_keep[last] = base.max_keep[last];
    } else {
      int cap = 1;
      while (cap < set->max_keep[last]) cap *= 2;
      set->max_keep[last] = cap;
      std::shared_ptr<chi::DeviceBlockPool>& pool = last_pools[cap];
      if (pool == nullptr) {
        pool = std::make_shared<chi::DeviceBlockPool>(chi::StageListBytes(kvh, cap));
      }
      set->pools[last] = pool;
    }
  }
  slot = std::move(set);
  return *slot;
}

absl::Status CudaHipAttention::Impl::EnsureRope(int positions, cudaStream_t stream) {
  if (positions <= rope_positions) return absl::OkStatus();
  // Geometric growth, so that decode does not rebuild the table every step.
  const int n = std::max(positions, 2 * rope_positions);
  RETURN_IF_ERROR(rope_host.Reserve(n));
  const std::vector<float> rows = kernels::HipRopeRows(rope_host, n);
  float* fresh = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&fresh, rows.size() * sizeof(float)));
  const cudaError_t copied =
      cudaMemcpy(fresh, rows.data(), rows.size() * sizeof(float), cudaMemcpyHostToDevice);
  if (copied != cudaSuccess) {
    cudaFree(fresh);
    CUDA_RETURN_IF_ERROR(copied);
  }
  if (rope != nullptr) {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // the old table may be in use
    cudaFree(rope);
  }
  rope = fresh;
  rope_positions = n;
  return absl::OkStatus();
}

absl::Status CudaHipAttention::Impl::EnsureWorkspace(size_t bytes, cudaStream_t stream) {
  if (bytes <= workspace_bytes) return absl::OkStatus();
  const size_t n = std::max(bytes, workspace_bytes + workspace_bytes / 2);
  if (workspace != nullptr) {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));  // the old one may be in use
    cudaFree(workspace);
    workspace = nullptr;
    workspace_bytes = 0;
  }
  void* fresh = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&fresh, n));
  workspace = static_cast<char*>(fresh);
  workspace_bytes = n;
  return absl::OkStatus();
}

CudaHipAttention::CudaHipAttention(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaHipAttention::~CudaHipAttention() = default;

absl::StatusOr<std::unique_ptr<CudaHipAttention>> CudaHipAttention::Create(
    const HipAttentionOptions& o) {
  if (o.num_layers <= 0 || o.num_heads <= 0 || o.num_kv_heads <= 0 || o.head_dim <= 0 ||
      o.head_dim % 2 != 0 || o.num_heads % o.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CudaHipAttention: bad shape: layers ", o.num_layers, ", heads ", o.num_heads,
                     ", kv heads ", o.num_kv_heads, ", head_dim ", o.head_dim));
  }
  if (o.head_dim != 64 && o.head_dim != 128) {
    return absl::InvalidArgumentError(absl::StrCat("CudaHipAttention: head_dim ", o.head_dim,
                                                   " is not supported (supported: 64, 128)"));
  }
  if (o.num_heads / o.num_kv_heads > 8) {
    return absl::InvalidArgumentError(absl::StrCat("CudaHipAttention: group size ",
                                                   o.num_heads / o.num_kv_heads,
                                                   " is not supported (supported: 1..8)"));
  }
  if (o.measure_recall) {
    return absl::InvalidArgumentError(
        "CudaHipAttention: measure_recall is supported by the CPU HipAttention only");
  }
  RETURN_IF_ERROR(kernels::ValidateHipConfig(o.config));
  const kernels::HipConfig& cfg = o.config;
  if (cfg.block_q != kernels::kBsaPrefillBlockQ) {
    return absl::InvalidArgumentError(
        absl::StrCat("CudaHipAttention: block_q ", cfg.block_q,
                     " is not supported (supported: ", kernels::kBsaPrefillBlockQ, ")"));
  }
  if (cfg.block_size() != kernels::kBsaBlockSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("CudaHipAttention: last chunk size ", cfg.block_size(),
                     " is not supported (supported: ", kernels::kBsaBlockSize, ")"));
  }
  // Every representative option runs in the decode mask (decode steps, prefill tail rows) and in
  // the prefill mask (64-query rows); prefill steps check kPrefill where they run (RunImpl).
  RETURN_IF_ERROR(
      kernels::HipConfigRunsOnGpu(cfg, kernels::HipGpuMaskPath::kDecode, "CudaHipAttention"));
  if (cfg.num_stages() > kernels::kHipGpuMaxStages) {
    return absl::InvalidArgumentError(absl::StrCat("CudaHipAttention: ", cfg.num_stages(),
                                                   " stages are not supported (supported: 1..",
                                                   kernels::kHipGpuMaxStages, ")"));
  }
  ASSIGN_OR_RETURN(kernels::RopeTable rope,
                   kernels::RopeTable::Create(o.rope, o.head_dim, cfg.n_window + 2));
  auto impl = std::make_unique<Impl>(o, std::move(rope));
  impl->SetFor(0);
  impl->extend_min_tokens =
      cfg.extend_min_tokens >= 0 ? cfg.extend_min_tokens : std::max(o.pretrained_context, 0);
  RETURN_IF_ERROR(impl->EnsureRope(std::max(cfg.n_window + 2, 8192), nullptr));
  return std::unique_ptr<CudaHipAttention>(new CudaHipAttention(std::move(impl)));
}

// The schedule is HipAttention's (NextHipStep, worker/hip_attention.h).
void CudaHipAttention::BeginStep(SequenceId seq, int start_pos, int num_tokens,
                                 const std::vector<int>& refresh_interval, bool ends_prompt,
                                 int k) {
  Impl& m = *impl_;
  SeqState& st = m.states[seq];
  st.k = k == m.options.config.k ? 0 : k;
  m.SetFor(st.k);  // built here, so that Runs only look it up
  if (st.cache.empty()) st.cache.resize(m.options.num_layers);
  st.step = NextHipStep(m.options.config, start_pos, num_tokens, &st.next_decode_step,
                        refresh_interval, ends_prompt);
  if (!st.step.decode) {
    for (chi::StageLists& lists : st.cache) lists = chi::StageLists{};
  }
}

absl::StatusOr<HipStepInfo> CudaHipAttention::CurrentStep(SequenceId seq) const {
  auto it = impl_->states.find(seq);
  if (it == impl_->states.end()) {
    return absl::NotFoundError(
        absl::StrCat("CudaHipAttention: no state for sequence ", seq.value()));
  }
  return it->second.step;
}

absl::Status CudaHipAttention::Run(SequenceId seq, int layer, const void* q, int num_q,
                                   int start_pos, const void* k, const void* v, int num_kv,
                                   void* out, void* stream, kernels::KvDtype kv_dtype) {
  if (k == nullptr || v == nullptr) {
    return absl::InvalidArgumentError("CudaHipAttention: k and v must be non-null");
  }
  RETURN_IF_ERROR(CheckKvDtype(kv_dtype));
  return RunImpl(seq, layer, q, num_q, start_pos, k, v, kv_dtype, kernels::TieredKvSource{}, num_kv,
                 out, stream);
}

absl::Status CudaHipAttention::RunTiered(SequenceId seq, int layer, const void* q, int num_q,
                                         int start_pos, const kernels::TieredKvSource& tiered,
                                         int num_kv, void* out, void* stream) {
  if (tiered.slot_table == nullptr || tiered.cold_pages == nullptr) {
    return absl::InvalidArgumentError("CudaHipAttention: tiered source without tables");
  }
  return RunImpl(seq, layer, q, num_q, start_pos, nullptr, nullptr, kernels::KvDtype::kFp8E5m2,
                 tiered, num_kv, out, stream);
}

absl::Status CudaHipAttention::RunImpl(SequenceId seq, int layer, const void* q, int num_q,
                                       int start_pos, const void* k, const void* v,
                                       kernels::KvDtype k_dtype,
                                       const kernels::TieredKvSource& tiered, int num_kv, void* out,
                                       void* stream) {
  Impl& m = *impl_;
  const bool tiers = tiered.slot_table != nullptr;
  const kernels::KvDtype kv_dtype = tiers ? kernels::KvDtype::kFp8E5m2 : k_dtype;
  kernels::TieredKvSource one = tiered;  // decode-style calls: every query is of this sequence
  one.one_sequence = true;
  m.last = Impl::LastRun{};  // also drops the held list, so it does not count as shared
  auto it = m.states.find(seq);
  if (it == m.states.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("CudaHipAttention: BeginStep was not called for sequence ", seq.value()));
  }
  SeqState& st = it->second;
  if (layer < 0 || layer >= m.options.num_layers || num_q <= 0 || start_pos < 0 ||
      start_pos + num_q != num_kv) {
    return absl::InvalidArgumentError(absl::StrCat("CudaHipAttention: bad call: layer ", layer,
                                                   ", num_q ", num_q, ", start_pos ", start_pos,
                                                   ", num_kv ", num_kv));
  }
  if (q == nullptr || out == nullptr) {
    return absl::InvalidArgumentError("CudaHipAttention: q and out must be non-null");
  }
  if (st.step.decode && num_q != 1) {
    return absl::FailedPreconditionError("CudaHipAttention: decode step with more than one query");
  }
  const kernels::HipConfig& cfg = m.options.config;
  // Extension only beyond extend_min_tokens, decided per step (as HipAttention::Run).
  const bool extend = cfg.extend && num_kv > m.extend_min_tokens;
  const Impl::SpecSet& set = m.SetFor(st.k);
  const kernels::PruningSpec& spec = extend ? set.specs[layer] : set.specs_real[layer];
  const int stages = spec.num_stages();
  const int kvh = m.options.num_kv_heads, d = m.options.head_dim, heads = m.options.num_heads;
  const int64_t q_row = int64_t{heads} * d;  // elements per query row of q / out
  const bool decode = st.step.decode;
  // Queries [0, rows_q) form 64-query rows aligned to absolute positions (prefill mask +
  // prefill BSA); the last `single` queries get a row each (decode mask + decode BSA): the
  // prefill tail (HipConfig::tail_queries), or the decode query.
  const int single = decode ? num_q : (st.step.tail ? std::min(num_q, cfg.tail_queries) : 0);
  const int rows_q = num_q - single;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  cudaStream_t cs = static_cast<cudaStream_t>(stream);
  const auto* q16 = static_cast<const uint16_t*>(q);
  auto* out16 = static_cast<uint16_t*>(out);

  // Workspace layout: regions carved in order (offsets; the base is known after growing).
  size_t ws_used = 0;
  auto take = [&ws_used](size_t bytes) {
    const size_t at = ws_used;
    ws_used += chi::AlignUp(std::max<size_t>(bytes, 16), chi::kAlign);
    return at;
  };
  int rope_need = std::max(num_kv + 1, cfg.n_window + 2);

  kernels::HipPrefillMaskGpuParams pm;
  size_t pm_at = 0;
  if (rows_q > 0) {
    RETURN_IF_ERROR(
        kernels::PruningSpecRunsOnGpu(spec, kernels::HipGpuMaskPath::kPrefill, "CudaHipAttention"));
    pm.q = q;
    pm.k = k;
    pm.k_dtype = kv_dtype;
    pm.tiered = tiered;
    pm.num_q = rows_q;
    pm.q_offset = start_pos;
    pm.num_kv = num_kv;  // the tail's keys too: page bounds' open page, as HipAttention
    pm.num_heads = heads;
    pm.num_kv_heads = kvh;
    pm.head_dim = d;
    pm.block_q = cfg.block_q;
    pm.n_sink = cfg.n_sink;
    pm.spec = &spec;
    ASSIGN_OR_RETURN(pm.workspace_bytes, kernels::HipPrefillMaskWorkspaceBytes(pm));
    ASSIGN_OR_RETURN(const int need, kernels::HipPrefillMaskRopePositions(pm));
    rope_need = std::max(rope_need, need);
    pm_at = take(pm.workspace_bytes);
  }

  kernels::HipDecodeMaskGpuParams dm;
  kernels::BsaDecodeGpuParams bd;
  bool run_mask = false;
  chi::StageLists lists;  // decode: the lists this step uses (fresh ones for written stages)
  size_t kv_start_at = 0, kv_len_at = 0, mask_ws_at = 0, bsa_ws_at = 0;
  std::array<size_t, kernels::kHipGpuMaxStages> tail_starts_at{}, tail_count_at{}, tail_end_at{};
  if (single > 0) {
    int start_stage = 0;
    if (decode) {
      chi::StageLists& cache = st.cache[layer];
      const bool cached = cache[stages - 1] != nullptr;
      start_stage = cached ? st.step.refresh_stage : 0;  // nothing to reuse or restart from
      run_mask = start_stage >= 0;
      ++(run_mask ? m.mask_cache.misses : m.mask_cache.hits);
      for (int s = 0; s < stages; ++s) {
        // A stage this step writes gets a fresh list unless nobody else (a snapshot) holds the
        // cached one; the stages before it are read (or reused) as cached.
        if (run_mask && s >= start_stage && (cache[s] == nullptr || cache[s].use_count() > 1)) {
          ASSIGN_OR_RETURN(lists[s], chi::NewStageList(set.pools[s], kvh, set.max_keep[s]));
        } else {
          lists[s] = cache[s];
        }
      }
    } else {
      run_mask = true;
      for (int s = 0; s < stages; ++s) {
        tail_starts_at[s] = take(size_t{4} * single * kvh * spec.keep_chunks(s));
        tail_count_at[s] = take(size_t{4} * single * kvh);
        tail_end_at[s] = take(size_t{4} * single * kvh);
      }
    }
    kv_start_at = take(size_t{8} * single);
    kv_len_at = take(size_t{4} * single);
    dm.q = q16 + int64_t{rows_q} * q_row;
    dm.k = k;
    dm.k_dtype = kv_dtype;
    if (tiers) dm.tiered = one;
    dm.batch = single;
    dm.num_heads = heads;
    dm.num_kv_heads = kvh;
    dm.head_dim = d;
    dm.max_kv_len = num_kv;
    dm.n_sink = cfg.n_sink;
    dm.spec = &spec;
    dm.start_stage = std::max(start_stage, 0);
    if (run_mask) {
      ASSIGN_OR_RETURN(dm.workspace_bytes, kernels::HipDecodeMaskWorkspaceBytes(dm));
      ASSIGN_OR_RETURN(const int need, kernels::HipDecodeMaskRopePositions(dm));
      rope_need = std::max(rope_need, need);
      mask_ws_at = take(dm.workspace_bytes);
    }
  }

  RETURN_IF_ERROR(m.EnsureRope(rope_need, cs));
  if (single > 0) {
    bd.attn.q = dm.q;
    bd.attn.k = k;
    bd.attn.v = v;
    bd.attn.kv_dtype = kv_dtype;
    if (tiers) bd.tiered = one;
    bd.attn.out = out16 + int64_t{rows_q} * q_row;
    bd.attn.batch = single;
    bd.attn.num_heads = heads;
    bd.attn.num_kv_heads = kvh;
    bd.attn.head_dim = d;
    bd.attn.max_kv_len = num_kv;
    bd.attn.scale = scale;
    bd.max_blocks = spec.keep_chunks(stages - 1);
    bd.n_sink = cfg.n_sink;
    bd.n_window = cfg.n_window;
    bd.rope = m.rope;
    bd.rope_positions = m.rope_positions;
    bd.extend = extend;
    bd.attn.num_splits = m.bsa_num_splits;
    bd.keys_per_step = m.bsa_keys_per_step;
    ASSIGN_OR_RETURN(bd.attn.workspace_bytes, kernels::BsaDecodeAttentionWorkspaceBytes(bd));
    bsa_ws_at = take(bd.attn.workspace_bytes);
  }
  RETURN_IF_ERROR(m.EnsureWorkspace(ws_used, cs));
  char* ws = m.workspace;

  Impl::LastRun last;
  last.num_q = num_q;
  last.start_pos = start_pos;
  last.rows_q = rows_q;
  last.single = single;
  if (rows_q > 0) {
    pm.rope = m.rope;
    pm.rope_positions = m.rope_positions;
    pm.workspace = ws + pm_at;
    m.MarkPhase(Phase::kMask, cs);
    ASSIGN_OR_RETURN(last.plan, kernels::HipPrefillMaskGpu(pm, cs));
    m.MarkPhase(Phase::kBsa, cs);
    kernels::BsaPrefillGpuParams bp;
    bp.q = q;
    bp.k = k;
    bp.v = v;
    bp.kv_dtype = kv_dtype;
    bp.tiered = tiered;
    bp.out = out;
    bp.num_q = rows_q;
    bp.q_offset = start_pos;
    bp.num_heads = heads;
    bp.num_kv_heads = kvh;
    bp.head_dim = d;
    kernels::SetBsaPrefillPlan(last.plan, &bp);
    bp.n_sink = cfg.n_sink;
    bp.n_window = cfg.n_window;
    bp.extend = extend;
    bp.rope = m.rope;
    bp.rope_positions = m.rope_positions;
    bp.scale = scale;
    RETURN_IF_ERROR(kernels::BsaPrefillAttentionGpu(bp, cs));
    m.MarkPhase(Phase::kDone, cs);
  }
  if (single > 0) {
    auto* kv_start = reinterpret_cast<int64_t*>(ws + kv_start_at);
    auto* kv_len = reinterpret_cast<int32_t*>(ws + kv_len_at);
    chi::FillLensKernel<<<(single + 255) / 256, 256, 0, cs>>>(kv_start, kv_len, single,
                                                              start_pos + rows_q + 1);
    CUDA_RETURN_IF_ERROR(cudaGetLastError());
    kernels::HipDecodeMaskGpuState state;
    for (int s = 0; s < stages; ++s) {
      if (decode) {
        state.starts[s] = lists[s]->starts;
        state.count[s] = lists[s]->count;
        state.range_end[s] = lists[s]->range_end;
      } else {
        state.starts[s] = reinterpret_cast<int32_t*>(ws + tail_starts_at[s]);
        state.count[s] = reinterpret_cast<int32_t*>(ws + tail_count_at[s]);
        state.range_end[s] = reinterpret_cast<int32_t*>(ws + tail_end_at[s]);
      }
    }
    if (run_mask) {
      dm.kv_start = kv_start;
      dm.kv_len = kv_len;
      dm.rope = m.rope;
      dm.rope_positions = m.rope_positions;
      dm.state = state;
      dm.workspace = ws + mask_ws_at;
      m.MarkPhase(Phase::kMask, cs);
      RETURN_IF_ERROR(kernels::HipDecodeMaskGpu(dm, cs));
      if (decode) st.cache[layer] = lists;
    }
    bd.attn.kv_start = kv_start;
    bd.attn.kv_len = kv_len;
    bd.attn.workspace = ws + bsa_ws_at;
    bd.block_starts = state.starts[stages - 1];
    bd.block_count = state.count[stages - 1];
    m.MarkPhase(Phase::kBsa, cs);
    RETURN_IF_ERROR(kernels::BsaDecodeAttentionGpu(bd, cs));
    m.MarkPhase(Phase::kDone, cs);
    last.single_starts = state.starts[stages - 1];
    last.single_count = state.count[stages - 1];
    last.single_stride = bd.max_blocks;
    if (decode) last.hold = lists[stages - 1];
  }
  last.valid = true;
  m.last = std::move(last);
  return absl::OkStatus();
}

void CudaHipAttention::SetPhaseHook(std::function<void(Phase, void*)> hook) {
  impl_->phase_hook = std::move(hook);
}

void CudaHipAttention::SetBsaDecodePlanForTesting(int num_splits, int keys_per_step) {
  impl_->bsa_num_splits = num_splits;
  impl_->bsa_keys_per_step = keys_per_step;
}

absl::Status CudaHipAttention::RunDecodeBatch(int layer, const std::vector<DecodeItem>& items,
                                              const void* k, const void* v, void* stream,
                                              kernels::KvDtype k_dtype) {
  RETURN_IF_ERROR(CheckKvDtype(k_dtype));
  Impl& m = *impl_;
  m.last = Impl::LastRun{};  // also drops a held list, so it does not count as shared
  const int n = static_cast<int>(items.size());
  if (layer < 0 || layer >= m.options.num_layers || n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CudaHipAttention: bad batch: layer ", layer, ", ", n, " items"));
  }
  if ((k == nullptr) != (v == nullptr)) {
    return absl::InvalidArgumentError("CudaHipAttention: k and v must be both set or both null");
  }
  const bool tiers = k == nullptr;
  const kernels::HipConfig& cfg = m.options.config;
  const int kvh = m.options.num_kv_heads, d = m.options.head_dim, heads = m.options.num_heads;
  const int64_t row_bytes = int64_t{heads} * d * 2;  // one q / out row, bf16
  const kernels::TieredKvSource& first_src = items[0].tiered;
  std::vector<SeqState*> states(n);
  absl::flat_hash_set<SequenceId> seen;
  for (int i = 0; i < n; ++i) {
    const DecodeItem& it = items[i];
    auto found = m.states.find(it.seq);
    if (found == m.states.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("CudaHipAttention: BeginStep was not called for sequence ", it.seq.value()));
    }
    states[i] = &found->second;
    if (!states[i]->step.decode) {
      return absl::FailedPreconditionError(
          absl::StrCat("CudaHipAttention: sequence ", it.seq.value(), " is not in a decode step"));
    }
    if (!seen.insert(it.seq).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("CudaHipAttention: sequence ", it.seq.value(), " twice in a batch"));
    }
    if (it.num_kv < 2 || it.q == nullptr || it.out == nullptr || it.kv_row < 0) {
      return absl::InvalidArgumentError(absl::StrCat("CudaHipAttention: bad batch item ", i,
                                                     ": num_kv ", it.num_kv, ", kv_row ", it.kv_row,
                                                     ", q and out must be non-null"));
    }
    if (tiers && (it.tiered.slot_table == nullptr || it.tiered.cold_pages == nullptr ||
                  it.tiered.entries != nullptr || it.tiered.bank_k != first_src.bank_k ||
                  it.tiered.bank_v != first_src.bank_v)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CudaHipAttention: batch item ", i,
          ": a one-sequence tiered source with the banks of item 0 is needed (k / v are null)"));
    }
  }

  // One group per (extend mode, final keep): steps with and without the context extension (per
  // sequence, as Run), and per-request k values (a mask / BSA call has one spec).
  struct Group {
    std::vector<int> items;
    bool extend = false;
    int k = 0;  // SeqState::k
    const Impl::SpecSet* set = nullptr;
    const kernels::PruningSpec* spec = nullptr;
    int max_kv = 0;
    std::vector<int> start_stage;        // per item: refresh stage, -1 = reuse
    std::vector<chi::StageLists> lists;  // per item: the lists this step uses
    int min_start = -1;                  // smallest start stage >= 0; -1: nobody refreshes
    bool q_in_place = true, out_in_place = true;
    size_t kv_start_at = 0, kv_len_at = 0, stage_at = 0, tables_at = 0, q_at = 0, out_at = 0;
    size_t mask_at = 0, bsa_at = 0;
    std::array<size_t, kernels::kHipGpuMaxStages> starts_at{}, count_at{}, end_at{};
    kernels::HipDecodeMaskGpuParams dm;
    kernels::BsaDecodeGpuParams bd;
  };
  std::vector<Group> groups;
  for (int i = 0; i < n; ++i) {
    const bool extend = cfg.extend && items[i].num_kv > m.extend_min_tokens;
    const int k = states[i]->k;
    auto g = std::find_if(groups.begin(), groups.end(),
                          [&](const Group& x) { return x.extend == extend && x.k == k; });
    if (g == groups.end()) {
      groups.emplace_back();
      g = groups.end() - 1;
      g->extend = extend;
      g->k = k;
    }
    g->items.push_back(i);
  }

  size_t ws_used = 0;
  auto take = [&ws_used](size_t bytes) {
    const size_t at = ws_used;
    ws_used += chi::AlignUp(std::max<size_t>(bytes, 16), chi::kAlign);
    return at;
  };
  int rope_need = cfg.n_window + 2;
  const kernels::KvDtype kv_dtype = tiers ? kernels::KvDtype::kFp8E5m2 : k_dtype;
  kernels::TieredKvSource batch_src;  // per-entry tables, filled in at launch
  batch_src.bank_k = first_src.bank_k;
  batch_src.bank_v = first_src.bank_v;
  for (Group& g : groups) {
    const int gn = static_cast<int>(g.items.size());
    g.set = &m.SetFor(g.k);
    g.spec = g.extend ? &g.set->specs[layer] : &g.set->specs_real[layer];
    const kernels::PruningSpec& spec = *g.spec;
    const int stages = spec.num_stages();
    g.start_stage.resize(gn);
    g.lists.resize(gn);
    for (int j = 0; j < gn; ++j) {
      const DecodeItem& it = items[g.items[j]];
      SeqState& st = *states[g.items[j]];
      // As RunImpl's decode: restart from the refresh stage (from 0 when nothing is cached);
      // a stage this step writes gets a fresh list unless nobody else (a snapshot) holds the
      // cached one.
      chi::StageLists& cache = st.cache[layer];
      const int start = cache[stages - 1] != nullptr ? st.step.refresh_stage : 0;
      g.start_stage[j] = start;
      ++(start >= 0 ? m.mask_cache.misses : m.mask_cache.hits);
      for (int s = 0; s < stages; ++s) {
        if (start >= 0 && s >= start && (cache[s] == nullptr || cache[s].use_count() > 1)) {
          ASSIGN_OR_RETURN(g.lists[j][s],
                           chi::NewStageList(g.set->pools[s], kvh, g.set->max_keep[s]));
        } else {
          g.lists[j][s] = cache[s];
        }
      }
      const int read = start > 0 ? start - 1 : (start < 0 ? stages - 1 : -1);
      if (read >= 0 && g.lists[j][read] == nullptr) {
        return absl::InternalError(absl::StrCat("CudaHipAttention: sequence ", it.seq.value(),
                                                " has no cached list of stage ", read));
      }
      if (start >= 0) g.min_start = g.min_start < 0 ? start : std::min(g.min_start, start);
      g.max_kv = std::max(g.max_kv, it.num_kv);
      const auto* q0 = static_cast<const char*>(items[g.items[0]].q);
      auto* o0 = static_cast<char*>(items[g.items[0]].out);
      g.q_in_place = g.q_in_place && static_cast<const char*>(it.q) == q0 + j * row_bytes;
      g.out_in_place = g.out_in_place && static_cast<char*>(it.out) == o0 + j * row_bytes;
    }
    g.kv_start_at = take(size_t{8} * gn);
    g.kv_len_at = take(size_t{4} * gn);
    g.stage_at = take(size_t{4} * gn);
    if (tiers) g.tables_at = take(sizeof(kernels::TieredKvTables) * gn);
    for (int s = 0; s < stages; ++s) {
      g.starts_at[s] = take(size_t{4} * gn * kvh * spec.keep_chunks(s));
      g.count_at[s] = take(size_t{4} * gn * kvh);
      g.end_at[s] = take(size_t{4} * gn * kvh);
    }
    if (!g.q_in_place) g.q_at = take(static_cast<size_t>(row_bytes) * gn);
    if (!g.out_in_place) g.out_at = take(static_cast<size_t>(row_bytes) * gn);
    kernels::HipDecodeMaskGpuParams& dm = g.dm;
    dm.k = k;
    dm.k_dtype = kv_dtype;
    if (tiers) dm.tiered = batch_src;
    dm.batch = gn;
    dm.num_heads = heads;
    dm.num_kv_heads = kvh;
    dm.head_dim = d;
    dm.max_kv_len = g.max_kv;
    dm.n_sink = cfg.n_sink;
    dm.spec = g.spec;
    dm.start_stage = std::max(g.min_start, 0);
    if (g.min_start >= 0) {
      ASSIGN_OR_RETURN(dm.workspace_bytes, kernels::HipDecodeMaskWorkspaceBytes(dm));
      ASSIGN_OR_RETURN(const int need, kernels::HipDecodeMaskRopePositions(dm));
      rope_need = std::max(rope_need, need);
      g.mask_at = take(dm.workspace_bytes);
    }
    rope_need = std::max(rope_need, g.max_kv + 1);
  }
  RETURN_IF_ERROR(m.EnsureRope(rope_need, static_cast<cudaStream_t>(stream)));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (Group& g : groups) {
    const kernels::PruningSpec& spec = *g.spec;
    kernels::BsaDecodeGpuParams& bd = g.bd;
    bd.attn.k = k;
    bd.attn.v = v;
    bd.attn.kv_dtype = kv_dtype;
    if (tiers) bd.tiered = batch_src;
    bd.attn.batch = static_cast<int>(g.items.size());
    bd.attn.num_heads = heads;
    bd.attn.num_kv_heads = kvh;
    bd.attn.head_dim = d;
    bd.attn.max_kv_len = g.max_kv;
    bd.attn.scale = scale;
    bd.attn.num_splits = m.bsa_num_splits;
    bd.keys_per_step = m.bsa_keys_per_step;
    bd.max_blocks = spec.keep_chunks(spec.num_stages() - 1);
    bd.n_sink = cfg.n_sink;
    bd.n_window = cfg.n_window;
    bd.rope = m.rope;
    bd.rope_positions = m.rope_positions;
    bd.extend = g.extend;
    ASSIGN_OR_RETURN(bd.attn.workspace_bytes, kernels::BsaDecodeAttentionWorkspaceBytes(bd));
    g.bsa_at = take(bd.attn.workspace_bytes);
  }
  cudaStream_t cs = static_cast<cudaStream_t>(stream);
  RETURN_IF_ERROR(m.EnsureWorkspace(ws_used, cs));
  char* ws = m.workspace;

  Impl::LastRun last;
  last.num_q = n;
  for (Group& g : groups) {
    const kernels::PruningSpec& spec = *g.spec;
    const int stages = spec.num_stages();
    const int gn = static_cast<int>(g.items.size());
    chi::BatchLayout l{};
    l.kv_start = reinterpret_cast<int64_t*>(ws + g.kv_start_at);
    l.kv_len = reinterpret_cast<int32_t*>(ws + g.kv_len_at);
    l.start_stage = reinterpret_cast<int32_t*>(ws + g.stage_at);
    l.tables = tiers ? reinterpret_cast<kernels::TieredKvTables*>(ws + g.tables_at) : nullptr;
    for (int s = 0; s < stages; ++s) {
      l.starts[s] = reinterpret_cast<int32_t*>(ws + g.starts_at[s]);
      l.count[s] = reinterpret_cast<int32_t*>(ws + g.count_at[s]);
      l.range_end[s] = reinterpret_cast<int32_t*>(ws + g.end_at[s]);
      l.keep[s] = spec.keep_chunks(s);
      // The StageList block layout (NewStageList).
      l.count_off[s] = static_cast<int64_t>(chi::AlignUp(size_t{4} * kvh * g.set->max_keep[s], 16));
      l.end_off[s] = l.count_off[s] + static_cast<int64_t>(chi::AlignUp(size_t{4} * kvh, 16));
    }
    l.kvh = kvh;
    l.row_words = static_cast<int>(row_bytes / 4);
    l.q = g.q_in_place ? nullptr : reinterpret_cast<int32_t*>(ws + g.q_at);
    l.out = g.out_in_place ? nullptr : reinterpret_cast<int32_t*>(ws + g.out_at);

    // Gather: lengths, start stages, tables, the cached lists read, the queries.
    for (int c0 = 0; c0 < gn; c0 += chi::kBatchChunk) {
      const int cn = std::min(chi::kBatchChunk, gn - c0);
      chi::GatherArgs a{};
      a.l = l;
      a.first = c0;
      for (int j = 0; j < cn; ++j) {
        const DecodeItem& it = items[g.items[c0 + j]];
        const int start = g.start_stage[c0 + j];
        chi::GatherEntry& e = a.e[j];
        e.kv_start = tiers ? 0 : it.kv_row;
        e.kv_len = it.num_kv;
        e.start_stage = start;
        if (tiers) {
          e.tables = kernels::TieredKvTables{it.tiered.slot_table, it.tiered.cold_pages,
                                             it.tiered.slot_stride, it.tiered.page_stride};
        }
        const int read = start > 0 ? start - 1 : (start < 0 ? stages - 1 : -1);
        e.stage = std::max(read, 0);
        e.list = read >= 0 ? g.lists[c0 + j][read]->mem : nullptr;
        e.q = g.q_in_place ? nullptr : static_cast<const int32_t*>(it.q);
      }
      chi::GatherKernel<<<cn, chi::kCopyThreads, 0, cs>>>(a);
      CUDA_RETURN_IF_ERROR(cudaGetLastError());
    }
    const void* q = g.q_in_place ? items[g.items[0]].q : static_cast<const void*>(l.q);
    void* out = g.out_in_place ? items[g.items[0]].out : static_cast<void*>(l.out);
    kernels::TieredKvSource src = batch_src;
    src.entries = l.tables;
    kernels::HipDecodeMaskGpuState state;
    for (int s = 0; s < stages; ++s) {
      state.starts[s] = l.starts[s];
      state.count[s] = l.count[s];
      state.range_end[s] = l.range_end[s];
    }
    if (g.min_start >= 0) {
      kernels::HipDecodeMaskGpuParams& dm = g.dm;
      dm.q = q;
      if (tiers) dm.tiered = src;
      dm.kv_start = tiers ? nullptr : l.kv_start;
      dm.kv_len = l.kv_len;
      dm.rope = m.rope;
      dm.rope_positions = m.rope_positions;
      dm.seq_start_stage = l.start_stage;
      dm.state = state;
      dm.workspace = ws + g.mask_at;
      m.MarkPhase(Phase::kMask, cs);
      RETURN_IF_ERROR(kernels::HipDecodeMaskGpu(dm, cs));
    }
    kernels::BsaDecodeGpuParams& bd = g.bd;
    bd.attn.q = q;
    bd.attn.out = out;
    if (tiers) bd.tiered = src;
    bd.attn.kv_start = tiers ? nullptr : l.kv_start;
    bd.attn.kv_len = l.kv_len;
    bd.attn.workspace = ws + g.bsa_at;
    bd.rope = m.rope;  // EnsureRope ran before the plan; unchanged since
    bd.rope_positions = m.rope_positions;
    bd.block_starts = state.starts[stages - 1];
    bd.block_count = state.count[stages - 1];
    m.MarkPhase(Phase::kBsa, cs);
    RETURN_IF_ERROR(kernels::BsaDecodeAttentionGpu(bd, cs));
    m.MarkPhase(Phase::kDone, cs);
    // Scatter: the recomputed stages into the sequences' lists, the outputs.
    if (g.min_start >= 0 || !g.out_in_place) {
      for (int c0 = 0; c0 < gn; c0 += chi::kBatchChunk) {
        const int cn = std::min(chi::kBatchChunk, gn - c0);
        chi::ScatterArgs a{};
        a.l = l;
        a.first = c0;
        a.stages = stages;
        for (int j = 0; j < cn; ++j) {
          const int start = g.start_stage[c0 + j];
          chi::ScatterEntry& e = a.e[j];
          for (int s = 0; s < stages; ++s) {
            e.list[s] = start >= 0 && s >= start ? g.lists[c0 + j][s]->mem : nullptr;
          }
          e.out = g.out_in_place ? nullptr : static_cast<int32_t*>(items[g.items[c0 + j]].out);
        }
        chi::ScatterKernel<<<cn, chi::kCopyThreads, 0, cs>>>(a);
        CUDA_RETURN_IF_ERROR(cudaGetLastError());
      }
    }
    Impl::LastRun::BatchPart part;
    part.starts = state.starts[stages - 1];
    part.count = state.count[stages - 1];
    part.stride = bd.max_blocks;
    part.items = g.items;
    last.parts.push_back(std::move(part));
  }
  // Every launch is enqueued: the sequences that refreshed now cache this step's lists.
  for (Group& g : groups) {
    for (size_t j = 0; j < g.items.size(); ++j) {
      if (g.start_stage[j] >= 0) states[g.items[j]]->cache[layer] = std::move(g.lists[j]);
    }
  }
  last.valid = true;
  m.last = std::move(last);
  return absl::OkStatus();
}

namespace {

// Host copy of `n` int32 at `src` (device) on `stream`, synchronised.
absl::Status CopyToHost(const int32_t* src, size_t n, std::vector<int32_t>* dst,
                        cudaStream_t stream) {
  dst->resize(n);
  if (n == 0) return absl::OkStatus();
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(dst->data(), src, n * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

absl::Status BadCount(int count, int max) {
  return absl::InternalError(
      absl::StrCat("CudaHipAttention: device block count ", count, " outside [0, ", max, "]"));
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> CudaHipAttention::CachedBlocks(SequenceId seq, int layer,
                                                                    int kv_head,
                                                                    void* stream) const {
  const Impl& m = *impl_;
  auto it = m.states.find(seq);
  const int stages = m.options.config.num_stages();
  if (it == m.states.end() || layer < 0 || layer >= m.options.num_layers || kv_head < 0 ||
      kv_head >= m.options.num_kv_heads || it->second.cache[layer][stages - 1] == nullptr) {
    return absl::NotFoundError("CudaHipAttention: no cached blocks");
  }
  const chi::StageList& list = *it->second.cache[layer][stages - 1];
  const int stride = impl_->sets.at(it->second.k)->specs[layer].keep_chunks(stages - 1);
  cudaStream_t cs = static_cast<cudaStream_t>(stream);
  std::vector<int32_t> count, starts;
  RETURN_IF_ERROR(CopyToHost(list.count + kv_head, 1, &count, cs));
  if (count[0] < 0 || count[0] > stride) return BadCount(count[0], stride);
  RETURN_IF_ERROR(CopyToHost(list.starts + int64_t{kv_head} * stride, count[0], &starts, cs));
  return starts;
}

absl::StatusOr<CudaHipAttention::RunBlocks> CudaHipAttention::LastRunBlocks(void* stream) const {
  const Impl& m = *impl_;
  const Impl::LastRun& last = m.last;
  if (!last.valid) {
    return absl::FailedPreconditionError("CudaHipAttention: no successful Run to report");
  }
  const int kvh = m.options.num_kv_heads;
  cudaStream_t cs = static_cast<cudaStream_t>(stream);
  RunBlocks rb;
  rb.num_q = last.num_q;
  rb.num_kv_heads = kvh;
  rb.lists.resize(static_cast<size_t>(last.num_q) * kvh);
  std::vector<int32_t> starts, counts;
  if (last.rows_q > 0) {
    const kernels::HipPrefillPlan& plan = last.plan;
    RETURN_IF_ERROR(CopyToHost(plan.block_starts,
                               static_cast<size_t>(plan.num_rows) * kvh * plan.max_blocks, &starts,
                               cs));
    RETURN_IF_ERROR(
        CopyToHost(plan.block_count, static_cast<size_t>(plan.num_rows) * kvh, &counts, cs));
    for (int i = 0; i < last.rows_q; ++i) {
      const int row = (last.start_pos + i) / plan.block_q - plan.first_block;
      for (int h = 0; h < kvh; ++h) {
        const size_t entry = static_cast<size_t>(row) * kvh + h;
        const int c = counts[entry];
        if (c < 0 || c > plan.max_blocks) return BadCount(c, plan.max_blocks);
        const int32_t* first = starts.data() + entry * plan.max_blocks;
        rb.lists[static_cast<size_t>(i) * kvh + h].assign(first, first + c);
      }
    }
  }
  if (last.single > 0) {
    const size_t entries = static_cast<size_t>(last.single) * kvh;
    RETURN_IF_ERROR(CopyToHost(last.single_starts, entries * last.single_stride, &starts, cs));
    RETURN_IF_ERROR(CopyToHost(last.single_count, entries, &counts, cs));
    for (size_t e = 0; e < entries; ++e) {
      const int c = counts[e];
      if (c < 0 || c > last.single_stride) return BadCount(c, last.single_stride);
      const int32_t* first = starts.data() + e * last.single_stride;
      rb.lists[static_cast<size_t>(last.rows_q) * kvh + e].assign(first, first + c);
    }
  }
  for (const Impl::LastRun::BatchPart& part : last.parts) {
    const size_t entries = part.items.size() * kvh;
    RETURN_IF_ERROR(CopyToHost(part.starts, entries * part.stride, &starts, cs));
    RETURN_IF_ERROR(CopyToHost(part.count, entries, &counts, cs));
    for (size_t j = 0; j < part.items.size(); ++j) {
      for (int h = 0; h < kvh; ++h) {
        const size_t e = j * kvh + h;
        const int c = counts[e];
        if (c < 0 || c > part.stride) return BadCount(c, part.stride);
        const int32_t* first = starts.data() + e * part.stride;
        rb.lists[static_cast<size_t>(part.items[j]) * kvh + h].assign(first, first + c);
      }
    }
  }
  return rb;
}

CudaHipAttention::Snapshot CudaHipAttention::Save(const std::vector<SequenceId>& seqs) const {
  Snapshot snap;
  for (SequenceId seq : seqs) {
    auto it = impl_->states.find(seq);
    snap.emplace_back(
        seq, it == impl_->states.end() ? nullptr : std::make_shared<const SeqState>(it->second));
  }
  return snap;
}

void CudaHipAttention::Restore(const Snapshot& snapshot) {
  for (const auto& [seq, state] : snapshot) {
    if (state == nullptr) {
      impl_->states.erase(seq);
    } else {
      impl_->states[seq] = *state;
    }
  }
}

void CudaHipAttention::Release(SequenceId seq) { impl_->states.erase(seq); }

void CudaHipAttention::ReleaseAll() { impl_->states.clear(); }

int CudaHipAttention::num_sequences() const { return static_cast<int>(impl_->states.size()); }

const HipMaskCacheCounts& CudaHipAttention::mask_cache_counts() const { return impl_->mask_cache; }

const kernels::HipConfig& CudaHipAttention::config() const { return impl_->options.config; }

int CudaHipAttention::extend_min_tokens() const { return impl_->extend_min_tokens; }

}  // namespace hipserve::worker
