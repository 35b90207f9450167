// CudaBackend (worker/cuda_backend.h). Host code only: every device computation is a call into
// kernels/ (each tested against its CPU reference); this file owns memory, the KV pool's row
// ranges, the stream and the order of the calls.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/attention_cuda/prefill_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/sampling/candidates.h"
#include "kernels/sampling/sampling.h"
#include "kernels/swiglu/swiglu.h"
#include "worker/cpu_backend.h"
#include "worker/cuda_backend.h"
#include "worker/cuda_hip_attention.h"
#include "worker/cuda_kv_encode.h"
#include "worker/cuda_kv_tiers.h"

namespace hipserve::worker {
namespace {

using common::SequenceId;
using kernels::DType;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int kPoolGranule = 64;        // KV rows are handed out in multiples of this
constexpr int kLogitRowsPlanned = 256;  // logit rows sized in the plan; more grow on demand

std::string GiB(int64_t bytes) { return absl::StrCat(bytes / kMiB, " MiB"); }

// A device allocation freed with the owner.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer() { Reset(); }
  absl::Status Allocate(int64_t bytes) {
    Reset();
    if (bytes <= 0) return absl::OkStatus();
    CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr_, static_cast<size_t>(bytes)));
    bytes_ = bytes;
    return absl::OkStatus();
  }
  void Reset() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return ptr_; }
  int64_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
};

// Uploads fp32 host matrices as one bf16 buffer, concatenated in order, and frees them. When
// `zero_fill_empty`, an empty part counts as `rows_if_empty[i]` zeros (biases); else it adds
// nothing. All parts empty: nothing is allocated.
absl::Status UploadBf16Concat(const std::vector<std::vector<float>*>& parts,
                              const std::vector<int64_t>& sizes_if_empty, DeviceBuffer* dev) {
  int64_t total = 0;
  bool any = false;
  for (size_t i = 0; i < parts.size(); ++i) {
    any = any || !parts[i]->empty();
    total += parts[i]->empty() ? sizes_if_empty[i] : static_cast<int64_t>(parts[i]->size());
  }
  if (!any) return absl::OkStatus();
  std::vector<uint16_t> bf(static_cast<size_t>(total), 0);
  int64_t at = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::vector<float>& h = *parts[i];
    if (h.empty()) {
      at += sizes_if_empty[i];
      continue;
    }
    kernels::FloatToBf16Array(h.data(), bf.data() + at, static_cast<int64_t>(h.size()));
    at += static_cast<int64_t>(h.size());
    std::vector<float>().swap(h);
  }
  RETURN_IF_ERROR(dev->Allocate(total * 2));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(dev->get(), bf.data(), bf.size() * 2, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

// Uploads fp32 host values as bf16 and frees the host vector (empty: nothing is allocated).
absl::Status UploadBf16(std::vector<float>& host, DeviceBuffer* dev) {
  return UploadBf16Concat({&host}, {0}, dev);
}

// First-fit allocator of row ranges [0, rows) with coalescing free ranges.
class RangeAllocator {
 public:
  explicit RangeAllocator(int64_t rows) : rows_(rows) {
    if (rows > 0) free_[0] = rows;
  }
  // Start of a free range of `n` rows, or -1.
  int64_t Allocate(int64_t n) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < n) continue;
      const int64_t start = it->first, len = it->second;
      free_.erase(it);
      if (len > n) free_[start + n] = len - n;
      return start;
    }
    return -1;
  }
  // Grows [start, start + n) in place to `want` rows when the rows after it are free.
  bool Extend(int64_t start, int64_t n, int64_t want) {
    auto it = free_.find(start + n);
    if (it == free_.end() || n + it->second < want) return false;
    const int64_t rest = n + it->second - want;
    free_.erase(it);
    if (rest > 0) free_[start + want] = rest;
    return true;
  }
  void Free(int64_t start, int64_t n) {
    if (n <= 0) return;
    auto next = free_.lower_bound(start);
    if (next != free_.end() && next->first == start + n) {
      n += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == start) {
        prev->second += n;
        return;
      }
    }
    free_[start] = n;
  }
  // Rows [0, used) are taken, the rest free (after a compaction).
  void ResetUsed(int64_t used) {
    free_.clear();
    if (rows_ > used) free_[used] = rows_ - used;
  }
  int64_t LargestFree() const {
    int64_t m = 0;
    for (const auto& [s, n] : free_) m = std::max(m, n);
    return m;
  }
  int64_t rows() const { return rows_; }

 private:
  int64_t rows_;
  std::map<int64_t, int64_t> free_;  // start -> length
};

// Per-phase GPU time of steps, from CUDA events around every op (HIPSERVE_PROFILE=1; off by
// default: events cost ~1 us each). Sums are read after the step's final synchronisation and
// logged every kProfileEvery steps of each kind (decode: every item one token; else prefill,
// which also logs every kProfileRows rows):
// mean ms per step of GEMMs, attention (HiP: split into mask estimation, BSA and the rest: RoPE
// tables, K/V appends, list bookkeeping), the other ops (embedding, norms, SwiGLU), LM head with
// sampling, and the step's host wall time from BeginStep to Finish (the rest is host work,
// launch gaps and the copies).
class StepProfiler {
 public:
  enum Phase { kGemm = 0, kAttention, kMask, kBsa, kOther, kLmHead, kPhases };
  static constexpr int kProfileEvery = 100;
  static constexpr int64_t kProfileRows = 65536;
  explicit StepProfiler(bool on) : on_(on) {}
  bool on() const { return on_; }
  ~StepProfiler() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  void BeginStep(bool decode, int rows) {
    if (!on_) return;
    used_ = 0;
    marks_.clear();
    decode_ = decode;
    rows_ = rows;
    t0_ = std::chrono::steady_clock::now();
  }
  // Records an event; a phase's time is the span between its Mark and the next Mark.
  void Mark(cudaStream_t s, int phase) {
    if (!on_) return;
    if (used_ == static_cast<int>(events_.size())) {
      cudaEvent_t e;
      if (cudaEventCreate(&e) != cudaSuccess) return;
      events_.push_back(e);
    }
    cudaEventRecord(events_[used_], s);
    marks_.push_back(phase);
    ++used_;
  }
  // After the stream is synchronised.
  void EndStep(cudaStream_t s) {
    if (!on_ || used_ == 0) return;
    Mark(s, -1);
    cudaStreamSynchronize(s);
    Sums& sum = decode_ ? decode_sums_ : prefill_sums_;
    for (int i = 0; i + 1 < used_; ++i) {
      float ms = 0;
      if (marks_[i] >= 0 && cudaEventElapsedTime(&ms, events_[i], events_[i + 1]) == cudaSuccess) {
        sum.ms[marks_[i]] += ms;
      }
    }
    sum.wall_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    sum.rows += rows_;
    // Prefill also every kProfileRows rows, so that one 128K prompt (16 chunks of 8K) logs.
    if (++sum.steps == kProfileEvery || (!decode_ && sum.rows >= kProfileRows)) {
      const double n = sum.steps;
      LOG(INFO) << "profile " << (decode_ ? "decode" : "prefill") << " (" << sum.steps << " steps, "
                << sum.rows / n << " rows/step): gemm " << sum.ms[kGemm] / n << " ms, attention "
                << (sum.ms[kAttention] + sum.ms[kMask] + sum.ms[kBsa]) / n << " ms (mask "
                << sum.ms[kMask] / n << ", bsa " << sum.ms[kBsa] / n << ", rest "
                << sum.ms[kAttention] / n << "), other " << sum.ms[kOther] / n
                << " ms, lm_head+sample " << sum.ms[kLmHead] / n << " ms; step wall "
                << sum.wall_ms / n << " ms";
      sum = Sums{};
    }
  }

 private:
  struct Sums {
    double ms[kPhases] = {};
    double wall_ms = 0;
    int64_t rows = 0;
    int steps = 0;
  };
  bool on_;
  std::vector<cudaEvent_t> events_;
  std::vector<int> marks_;
  int used_ = 0;
  bool decode_ = false;
  int rows_ = 0;
  std::chrono::steady_clock::time_point t0_;
  Sums decode_sums_, prefill_sums_;
};

// A layer's weights on the device. wq|wk|wv and gate|up are stored concatenated (rows of the
// [out, in] matrices), so each pair runs as one GEMM; Linear reads the parts at their offsets.
struct LayerDev {
  DeviceBuffer attn_norm, ffn_norm;
  DeviceBuffer wqkv, wo, gate_up, down;
  DeviceBuffer bqkv;  // empty (no bias) or [q + 2 kv] with zeros where a part has no bias
};

class CudaCheckpoint final : public BackendCheckpoint {
 public:
  CudaHipAttention::Snapshot hip;  // empty in dense mode
};

class CudaBackend final : public ForwardBackend {
 public:
  ~CudaBackend() override {
    if (stream_ != nullptr) {
      cudaStreamSynchronize(stream_);
      tiers_.reset();  // frees on stream_
      cudaStreamDestroy(stream_);
    }
  }

  static absl::StatusOr<std::unique_ptr<ForwardBackend>> Create(ModelWeights w,
                                                                const ModelOptions& o);

  std::string name() const override { return "cuda"; }
  void* stream() override { return stream_; }
  std::string dtype_name() const override { return "bf16"; }
  MemoryPlan memory_plan() const override { return plan_; }
  CacheCounters cache_counters() const override {
    CacheCounters c;
    if (hip_ != nullptr) {
      c.hip_mask_hits = hip_->mask_cache_counts().hits;
      c.hip_mask_misses = hip_->mask_cache_counts().misses;
    }
    if (tiers_ != nullptr) {
      const CudaKvTierStats st = tiers_->stats();
      c.kv_hot_page_hits = st.step_pages_hot;
      c.kv_hot_page_misses = st.step_pages_cold;
    }
    return c;
  }

  bool Contains(SequenceId seq) const override { return seqs_.contains(seq); }
  absl::StatusOr<int64_t> Length(SequenceId seq) const override {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("sequence ", seq.value()));
    return it->second.len;
  }
  absl::Status AddSequence(SequenceId seq) override {
    if (seqs_.contains(seq)) {
      return absl::AlreadyExistsError(absl::StrCat("sequence ", seq.value(), " exists"));
    }
    if (tiers_ != nullptr) RETURN_IF_ERROR(tiers_->AddSequence(seq));
    seqs_.emplace(seq, Seq{});
    return absl::OkStatus();
  }
  absl::Status Truncate(SequenceId seq, int64_t tokens) override {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("sequence ", seq.value()));
    if (tokens < 0 || tokens > it->second.len) {
      return absl::InvalidArgumentError(
          absl::StrCat("truncate to ", tokens, " of ", it->second.len, " tokens"));
    }
    tokens_in_use_ -= it->second.len - tokens;
    it->second.len = tokens;
    return absl::OkStatus();
  }
  absl::Status Free(SequenceId seq) override {
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("sequence ", seq.value()));
    if (tiers_ != nullptr) {
      RETURN_IF_ERROR(tiers_->Free(seq));
    } else {
      pool_->Free(it->second.start, it->second.cap);
    }
    tokens_in_use_ -= it->second.len;
    seqs_.erase(it);
    if (hip_ != nullptr) hip_->Release(seq);
    return absl::OkStatus();
  }
  int64_t TokensInUse() const override { return tokens_in_use_; }
  int64_t CapacityTokens() const override {
    return tiers_ != nullptr ? tiers_->cold_capacity_tokens() : pool_->rows();
  }
  int NumSequences() const override { return static_cast<int>(seqs_.size()); }
  std::unique_ptr<BackendCheckpoint> Save(const std::vector<SequenceId>& seqs) const override {
    auto c = std::make_unique<CudaCheckpoint>();
    if (hip_ != nullptr) c->hip = hip_->Save(seqs);  // dense attention keeps no step state
    return c;
  }
  void Restore(const BackendCheckpoint& checkpoint) override {
    if (hip_ != nullptr) hip_->Restore(static_cast<const CudaCheckpoint&>(checkpoint).hip);
  }

  absl::StatusOr<StepBuffers> BeginStep(const StepLayout& layout, int world_size,
                                        int vocab_shard) override;
  absl::Status Embed(const Tensor& x) override {
    kernels::EmbeddingGpuParams e;
    e.table = embd_.get();
    e.vocab_begin = vocab_begin_;
    e.vocab_end = vocab_end_;
    e.hidden = dims_.hidden;
    e.ids = static_cast<const int32_t*>(ids_dev_.get());
    e.num_tokens = static_cast<int>(x.rows);
    e.out = x.data;
    prof_.Mark(stream_, StepProfiler::kOther);
    return kernels::EmbeddingGpu(e, stream_);
  }
  absl::Status RmsNorm(const Tensor& in, int layer, NormId norm, const Tensor& out) override {
    return Norm(in, nullptr, layer, norm, out);
  }
  absl::Status AddRmsNorm(const Tensor& residual, const Tensor& in, int layer, NormId norm,
                          const Tensor& out) override {
    return Norm(in, &residual, layer, norm, out);
  }
  absl::Status Linear(const Tensor& in, int layer, LinearId id, const Tensor& out) override;
  absl::Status LinearQkv(const Tensor& in, int layer, const Tensor& q, const Tensor& k,
                         const Tensor& v) override;
  absl::Status MlpGateUp(const Tensor& in, int layer, const Tensor& gate,
                         const Tensor& up) override;
  absl::Status Swiglu(const Tensor& gate, const Tensor& up) override {
    kernels::SwigluGpuParams p;
    p.gate = gate.data;
    p.up = up.data;
    p.out = gate.data;
    p.rows = static_cast<int>(gate.rows);
    p.cols = static_cast<int>(gate.cols);
    prof_.Mark(stream_, StepProfiler::kOther);
    return kernels::SwigluGpu(p, stream_);
  }
  absl::Status Attention(int layer, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out) override;
  absl::Status LmHead(const Tensor& normed, const Tensor& logits) override;
  absl::StatusOr<std::vector<kernels::SampleResult>> Sample(
      const Tensor& gathered, int world_size, int vocab_size,
      const std::vector<kernels::SamplingOptions>& options) override;
  absl::StatusOr<std::vector<float>> ReadLogits(const Tensor& gathered, int world_size,
                                                int vocab_size) override {
    std::vector<float> host(gathered.numel());
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host.data(), gathered.data, host.size() * 4,
                                         cudaMemcpyDeviceToHost, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    const int rows = static_cast<int>(gathered.rows / world_size);
    std::vector<float> out(int64_t{rows} * vocab_size);
    UnshardLogits(host.data(), world_size, rows, static_cast<int>(gathered.cols), vocab_size,
                  out.data());
    return out;
  }
  absl::Status Candidates(const Tensor& logits, int c, const std::vector<float>& temperatures,
                          const Tensor& records) override;
  absl::Status SelectRows(const Tensor& logits, const std::vector<int>& rows,
                          const Tensor& out) override;
  absl::StatusOr<Tensor> Scratch(int slot, int64_t rows, int64_t cols, DType dtype) override {
    if (slot < 0 || slot >= static_cast<int>(std::size(scratch_))) {
      return absl::InternalError(absl::StrCat("scratch slot ", slot, " is out of range"));
    }
    RETURN_IF_ERROR(EnsureBuffer(&scratch_[slot], rows * cols * kernels::DTypeSize(dtype)));
    return Tensor{scratch_[slot].get(), dtype, rows, cols};
  }
  absl::Status ToHost(const Tensor& t, void* host) override {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host, t.data, t.numel() * kernels::DTypeSize(t.dtype),
                                         cudaMemcpyDeviceToHost, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }
  absl::Status FromHost(const void* host, const Tensor& t) override {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(t.data, host, t.numel() * kernels::DTypeSize(t.dtype),
                                         cudaMemcpyHostToDevice, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // `host` may go away after
    return absl::OkStatus();
  }
  absl::Status Finish() override {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    CUDA_RETURN_IF_ERROR(cudaGetLastError());
    prof_.EndStep(stream_);
    return absl::OkStatus();
  }

 private:
  struct Seq {
    int64_t start = 0;    // first pool row
    int64_t cap = 0;      // rows owned
    int64_t len = 0;      // rows holding tokens
    int64_t reserve = 0;  // rows it may grow to (StepLayout::Item::reserve_tokens), 0 = unknown
  };
  // A run of consecutive single-token items served by one decode call.
  struct DecodeRun {
    int first_item = 0, count = 0;
    int max_len = 0;
  };

  CudaBackend() = default;
  absl::Status Norm(const Tensor& in, const Tensor* residual, int layer, NormId norm,
                    const Tensor& out);
  // out = in w^T (+ bias); w [out.cols, in.cols] bf16, bias [out.cols] bf16 or null.
  absl::Status Gemm(const Tensor& in, const void* w, const void* bias, const Tensor& out);
  // Columns of the fused-output region: gate|up, or q|k|v before LinearQkv splits it.
  static int64_t FusedCols(int64_t q, int64_t kv, int64_t inter) {
    return std::max(2 * inter, q + 2 * kv);
  }
  // Appends the step's K/V rows of `layer` to every item's pool range.
  absl::Status AppendKv(int layer, const Tensor& k, const Tensor& v);
  absl::Status DenseAttention(int layer, const Tensor& q, const Tensor& out);
  absl::Status HipAttentionRun(int layer, const Tensor& q, const Tensor& out);
  // Makes `s` own at least `rows` pool rows: in place, else a new range (moving its K/V), else
  // after compacting the pool. A sequence's first range covers s->reserve when that fits.
  absl::Status Reserve(SequenceId id, Seq* s, int64_t rows);
  // Packs every sequence's rows to the front of the pool (in place, in pool order), each
  // trimmed to its length rounded up to kPoolGranule (keeping the part of its reservation it
  // holds unless `trim_reservations`): the free rows become one range.
  absl::Status Compact(bool trim_reservations);
  // Pool row `row` of `layer`'s K / V (elements of kv_dtype_: bf16 or fp8 e5m2 codes).
  char* PoolK(int layer, int64_t row = 0) const {
    return static_cast<char*>(pool_dev_.get()) +
           (int64_t{layer} * 2 * pool_->rows() + row) * row_ * kv_elem_bytes_;
  }
  char* PoolV(int layer, int64_t row = 0) const { return PoolK(layer, pool_->rows() + row); }
  absl::Status EnsureBuffer(DeviceBuffer* b, int64_t bytes) {
    if (b->bytes() >= bytes) return absl::OkStatus();
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // the old buffer may be in use
    return b->Allocate(bytes);
  }

  ModelDims dims_;
  MemoryPlan plan_;
  int64_t vocab_begin_ = 0, vocab_end_ = 0;
  int local_heads_ = 0, local_kv_heads_ = 0, local_inter_ = 0;
  int64_t row_ = 0;  // KV elements per token and layer (local_kv_heads * head_dim)
  // Element type of pool_dev_ (--kv_dtype; the tiers are fp8 whatever it says) and its bytes.
  kernels::KvDtype kv_dtype_ = kernels::KvDtype::kBf16;
  int64_t kv_elem_bytes_ = 2;
  int max_rows_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<kernels::GemmGpuContext> gemm_;
  DeviceBuffer embd_, lm_head_, output_norm_;
  std::vector<LayerDev> layers_;
  DeviceBuffer acts_;          // x, norm, proj, q, attn, k, v, gate, fused (bf16)
  uint16_t* fused_ = nullptr;  // the fused GEMMs' output region (gate | up, or q | k | v)
  DeviceBuffer lm_in_, logits_dev_, gathered_dev_, lm_packed_, unsharded_;
  DeviceBuffer ids_dev_, pos_dev_, decode_meta_dev_, options_dev_, sampled_dev_, decode_ws_;
  DeviceBuffer scratch_[4], cand_temps_;  // candidate sampling (Scratch slots, temperatures)
  DeviceBuffer pool_dev_;
  std::unique_ptr<RangeAllocator> pool_;
  // fp8 pool: per step row, the pool row its K/V goes to (host copy, and [max_rows] on device).
  std::vector<int64_t> append_rows_;
  DeviceBuffer append_rows_dev_;
  // KV offload (ModelOptions::cuda.kv_offload): replaces pool_dev_ / pool_ when set.
  std::unique_ptr<CudaKvTiers> tiers_;
  // HiP mode: keys stay un-rotated in the pool and are rotated at use (HIP.md 5).
  std::unique_ptr<CudaHipAttention> hip_;
  absl::flat_hash_map<SequenceId, Seq> seqs_;
  int64_t tokens_in_use_ = 0;
  const StepLayout* layout_ = nullptr;
  StepProfiler prof_{std::getenv("HIPSERVE_PROFILE") != nullptr &&
                     std::string(std::getenv("HIPSERVE_PROFILE")) == "1"};
  std::vector<DecodeRun> decode_runs_;
  std::vector<CudaHipAttention::DecodeItem> hip_batch_;  // HipAttentionRun's decode items
  // Per step: decode runs' kv_start (int64) then kv_len (int32), device copies at decode_meta.
  int decode_items_ = 0;
};

absl::StatusOr<std::unique_ptr<ForwardBackend>> CudaBackend::Create(ModelWeights w,
                                                                    const ModelOptions& o) {
  RETURN_IF_ERROR(CheckWeights(w));
  if (kernels::CudaDeviceCount() <= o.cuda.device) {
    return absl::UnavailableError(absl::StrCat("backend 'cuda': no CUDA device ", o.cuda.device,
                                               " (", kernels::CudaDeviceCount(), " visible)"));
  }
  const ModelDims& d = w.dims;
  if (d.head_dim != 64 && d.head_dim != 128) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend 'cuda' supports head_dim 64 and 128; model '", d.name, "' has ", d.head_dim));
  }
  const int group = d.num_heads / d.num_kv_heads;
  if (group > 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend 'cuda' supports 1..8 query heads per KV head; model '", d.name, "' has ", group));
  }
  CUDA_RETURN_IF_ERROR(cudaSetDevice(o.cuda.device));
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  const int64_t budget = o.cuda.gpu_memory_bytes > 0
                             ? o.cuda.gpu_memory_bytes
                             : static_cast<int64_t>(static_cast<double>(free_bytes) * 0.9);

  auto b = std::unique_ptr<CudaBackend>(new CudaBackend());
  b->dims_ = d;
  b->vocab_begin_ = w.vocab_begin;
  b->vocab_end_ = w.vocab_end;
  b->local_heads_ = w.local_heads();
  b->local_kv_heads_ = w.local_kv_heads();
  b->local_inter_ = w.local_intermediate();
  b->row_ = int64_t{b->local_kv_heads_} * d.head_dim;
  b->max_rows_ = std::max(1, o.cuda.max_step_rows);

  // ---- Memory plan ----
  const int64_t h = d.hidden, q = int64_t{b->local_heads_} * d.head_dim, kv = b->row_;
  const int64_t inter = b->local_inter_, vrows = w.vocab_end - w.vocab_begin;
  int64_t weight_elems = 2 * vrows * h + h;
  for (const LayerWeights& l : w.layers) {
    weight_elems += 2 * h + (q + 2 * kv) * h + h * q + 3 * inter * h;
    if (!l.bq.empty() || !l.bk.empty() || !l.bv.empty()) weight_elems += q + 2 * kv;
  }
  const int64_t weight_bytes = weight_elems * 2;
  const int64_t R = b->max_rows_;
  // x, norm, proj, q, attn, k, v, gate and one region for the fused GEMMs' outputs (gate|up, or
  // q|k|v before the split; their lifetimes in a layer do not overlap).
  const int64_t act_elems = R * (3 * h + 2 * q + 2 * kv + inter + FusedCols(q, kv, inter));
  const int64_t logits_bytes = int64_t{kLogitRowsPlanned} * (vrows * 4 + h * 2);
  const int64_t gemm_ws = int64_t{32} * kMiB;
  const int64_t misc = 64 * kMiB;  // ids, positions, decode metadata and workspace, sampling
  const int64_t work_bytes = act_elems * 2 + logits_bytes + gemm_ws + misc;
  // K+V of all layers in the GPU pool's dtype (--kv_dtype; unused with offload).
  const kernels::KvDtype pool_dtype = o.cuda.kv_dtype;
  if (kernels::KvDtypeBytes(pool_dtype) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV dtype ", static_cast<int>(pool_dtype), " is unknown; use bf16 or fp8"));
  }
  const int64_t kv_row_bytes =
      GpuKvPoolBytesPerToken(d.num_layers, b->local_kv_heads_, d.head_dim, pool_dtype);
  if (weight_bytes + work_bytes > budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "model '", d.name, "' does not fit the GPU memory budget: bf16 weights ", GiB(weight_bytes),
        " + workspaces ", GiB(work_bytes), " (", R, " rows per step) > budget ", GiB(budget),
        " (device ", o.cuda.device, ": ", GiB(static_cast<int64_t>(free_bytes)), " free of ",
        GiB(static_cast<int64_t>(total_bytes)), "; --gpu_memory_bytes sets the budget)"));
  }
  const std::string& offload_flag = o.cuda.kv_offload;
  RETURN_IF_ERROR(CheckKvOffload(offload_flag));
  if (offload_flag == "on" && o.attention != "hip") {
    return absl::InvalidArgumentError(
        "--kv_offload=on needs --attention=hip: dense attention reads every key at every step, "
        "which from host memory would be bound by PCIe (use --kv_offload=off)");
  }
  int64_t pool_rows = (budget - weight_bytes - work_bytes) / kv_row_bytes;
  pool_rows = std::min<int64_t>(pool_rows, o.kv_budget_tokens);
  // auto: offload when HiP runs and the host tier holds more tokens than the GPU pool.
  CudaKvTiersOptions tiers;
  tiers.num_layers = d.num_layers;
  tiers.num_kv_heads = b->local_kv_heads_;
  tiers.head_dim = d.head_dim;
  tiers.n_sink = o.hip.n_sink;
  tiers.n_window = o.hip.n_window;
  tiers.device = o.cuda.device;
  const int64_t host_tokens = o.cuda.host_kv_bytes / CudaKvTiers::ColdBytesPerToken(tiers);
  const bool offload = offload_flag == "on" ||
                       (offload_flag == "auto" && o.attention == "hip" && host_tokens > pool_rows);
  if (offload_flag == "auto" && o.attention == "hip") {
    LOG(INFO) << "--kv_offload=auto: " << (offload ? "on" : "off") << " (host tier " << host_tokens
              << " tokens fp8 vs GPU pool " << std::max<int64_t>(pool_rows, 0) << " tokens "
              << kernels::KvDtypeName(pool_dtype) << ")";
  }
  pool_rows = pool_rows / kPoolGranule * kPoolGranule;
  if (offload) {
    if (o.cuda.host_kv_bytes <= 0) {
      return absl::InvalidArgumentError(
          "KV offload needs a host KV budget (--host_kv_bytes on the coordinator or worker)");
    }
    tiers.cold_tokens = host_tokens;
    int64_t avail = budget - weight_bytes - work_bytes;
    if (o.cuda.gpu_kv_bytes > 0) avail = std::min(avail, o.cuda.gpu_kv_bytes);
    // Tables of every host-tier token with the x1.5 growth and the copy during growth.
    const int64_t tables =
        CudaKvTiers::TableBytesPerToken(tiers) * tiers.cold_tokens * 5 / 2 + 64 * kMiB;
    tiers.table_bytes = std::min(tables, avail / 2);
    tiers.hot_tokens = std::min(tiers.cold_tokens, std::max<int64_t>(0, avail - tiers.table_bytes) /
                                                       CudaKvTiers::HotBytesPerToken(tiers));
    tiers.hot_tokens = tiers.hot_tokens / kPoolGranule * kPoolGranule;
    if (o.cuda.hot_kv_tokens_cap >= 0) {
      tiers.hot_tokens = std::min(tiers.hot_tokens, o.cuda.hot_kv_tokens_cap);
    }
    pool_rows = kPoolGranule;  // passes the check below; unused
  }
  if (pool_rows < kPoolGranule) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "no GPU memory left for KV after weights (", GiB(weight_bytes), ") and workspaces (",
        GiB(work_bytes), ") within the budget of ", GiB(budget)));
  }
  LOG(INFO) << "cuda memory plan (device " << o.cuda.device << ", budget " << GiB(budget)
            << ", free " << GiB(static_cast<int64_t>(free_bytes)) << "): weights "
            << GiB(weight_bytes) << ", workspaces " << GiB(work_bytes) << " (" << R
            << " rows per step), "
            << (offload
                    ? absl::StrCat(
                          "KV offloaded: host tier ", GiB(o.cuda.host_kv_bytes),
                          " pinned = ", tiers.cold_tokens, " tokens (fp8 e5m2), ", "GPU hot pages ",
                          GiB(tiers.hot_tokens * CudaKvTiers::HotBytesPerToken(tiers)), " = ",
                          tiers.hot_tokens, " tokens, tables up to ", GiB(tiers.table_bytes))
                    : absl::StrCat("KV pool ", GiB(pool_rows * kv_row_bytes), " = ", pool_rows,
                                   " tokens of ", kv_row_bytes, " bytes (",
                                   kernels::KvDtypeName(pool_dtype), ", --kv_dtype)"));

  cudaDeviceProp prop;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, o.cuda.device));
  b->plan_.device = absl::StrCat("cuda:", o.cuda.device, " ", prop.name);
  b->plan_.budget_bytes = budget;
  b->plan_.weights_bytes = weight_bytes;
  b->plan_.workspace_bytes = work_bytes;
  b->plan_.kv_bytes = pool_rows * kv_row_bytes;
  b->plan_.kv_tokens = pool_rows;
  b->plan_.kv_dtype = kernels::KvDtypeName(offload ? kernels::KvDtype::kFp8E5m2 : pool_dtype);
  if (offload) {
    b->plan_.kv_bytes = tiers.hot_tokens * CudaKvTiers::HotBytesPerToken(tiers) + tiers.table_bytes;
    b->plan_.kv_tokens = tiers.cold_tokens;
    b->plan_.host_kv_bytes = tiers.cold_tokens * CudaKvTiers::ColdBytesPerToken(tiers);
    b->plan_.gpu_kv_tokens = tiers.hot_tokens;
  }
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking));
  if (o.attention == "hip") {
    ASSIGN_OR_RETURN(b->hip_, CudaHipAttention::Create(HipOptionsFor(w, o)));
    if (b->prof_.on()) {
      StepProfiler* prof = &b->prof_;
      b->hip_->SetPhaseHook([prof](CudaHipAttention::Phase p, void* s) {
        prof->Mark(static_cast<cudaStream_t>(s),
                   p == CudaHipAttention::Phase::kMask  ? StepProfiler::kMask
                   : p == CudaHipAttention::Phase::kBsa ? StepProfiler::kBsa
                                                        : StepProfiler::kAttention);
      });
    }
  }
  ASSIGN_OR_RETURN(b->gemm_, kernels::GemmGpuContext::Create());
  // ---- Weights ----
  RETURN_IF_ERROR(UploadBf16(w.token_embd, &b->embd_));
  RETURN_IF_ERROR(UploadBf16(w.lm_head, &b->lm_head_));
  RETURN_IF_ERROR(UploadBf16(w.output_norm, &b->output_norm_));
  b->layers_.resize(d.num_layers);
  for (int i = 0; i < d.num_layers; ++i) {
    LayerWeights& l = w.layers[i];
    LayerDev& o2 = b->layers_[i];
    RETURN_IF_ERROR(UploadBf16(l.attn_norm, &o2.attn_norm));
    RETURN_IF_ERROR(UploadBf16(l.ffn_norm, &o2.ffn_norm));
    RETURN_IF_ERROR(UploadBf16Concat({&l.wq, &l.wk, &l.wv}, {0, 0, 0}, &o2.wqkv));
    RETURN_IF_ERROR(UploadBf16(l.wo, &o2.wo));
    RETURN_IF_ERROR(UploadBf16Concat({&l.w_gate, &l.w_up}, {0, 0}, &o2.gate_up));
    RETURN_IF_ERROR(UploadBf16(l.w_down, &o2.down));
    RETURN_IF_ERROR(UploadBf16Concat({&l.bq, &l.bk, &l.bv}, {q, kv, kv}, &o2.bqkv));
  }
  // ---- Workspaces and KV pool ----
  RETURN_IF_ERROR(b->acts_.Allocate(act_elems * 2));
  RETURN_IF_ERROR(b->lm_in_.Allocate(int64_t{kLogitRowsPlanned} * h * 2));
  RETURN_IF_ERROR(b->logits_dev_.Allocate(int64_t{kLogitRowsPlanned} * vrows * 4));
  RETURN_IF_ERROR(b->ids_dev_.Allocate(R * 4));
  RETURN_IF_ERROR(b->pos_dev_.Allocate(R * 4));
  if (offload) {
    ASSIGN_OR_RETURN(b->tiers_, CudaKvTiers::Create(tiers, b->stream_));
  } else {
    RETURN_IF_ERROR(b->pool_dev_.Allocate(pool_rows * kv_row_bytes));
    b->pool_ = std::make_unique<RangeAllocator>(pool_rows);
    b->kv_dtype_ = pool_dtype;
    b->kv_elem_bytes_ = kernels::KvDtypeBytes(pool_dtype);
    if (pool_dtype == kernels::KvDtype::kFp8E5m2) {
      RETURN_IF_ERROR(b->append_rows_dev_.Allocate(R * 8));  // within the plan's misc
    }
  }
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return std::unique_ptr<ForwardBackend>(std::move(b));
}

absl::Status CudaBackend::Reserve(SequenceId id, Seq* s, int64_t rows) {
  if (rows <= s->cap) return absl::OkStatus();
  if (s->cap == 0 && s->reserve > rows) {
    // First range: the whole reservation (prompt + max_tokens) when it fits as it is, so that
    // decode grows in place; otherwise the usual path below (best effort).
    const int64_t all = (s->reserve + kPoolGranule - 1) / kPoolGranule * kPoolGranule;
    if (const int64_t start = pool_->Allocate(all); start >= 0) {
      s->start = start;
      s->cap = all;
      return absl::OkStatus();
    }
  }
  int64_t want = std::max<int64_t>({rows, 2 * s->cap, kPoolGranule});
  want = (want + kPoolGranule - 1) / kPoolGranule * kPoolGranule;
  if (s->cap > 0 && pool_->Extend(s->start, s->cap, want)) {
    s->cap = want;
    return absl::OkStatus();
  }
  int64_t start = pool_->Allocate(want);
  if (start < 0 && want > rows) {  // doubling did not fit: take exactly what is needed
    want = (rows + kPoolGranule - 1) / kPoolGranule * kPoolGranule;
    if (s->cap > 0 && pool_->Extend(s->start, s->cap, want)) {
      s->cap = want;
      return absl::OkStatus();
    }
    start = pool_->Allocate(want);
  }
  if (start < 0) {
    // Free rows exist but no range is long enough (sequences grew and ended in between), or
    // other sequences hold slack: pack every sequence to the front, trimmed to its length
    // (first keeping the reservations held, then, if that is not enough, without them).
    want = (rows + kPoolGranule - 1) / kPoolGranule * kPoolGranule;
    for (const bool trim : {false, true}) {
      RETURN_IF_ERROR(Compact(trim));
      if (s->cap > 0 && pool_->Extend(s->start, s->cap, want)) {
        s->cap = want;
        return absl::OkStatus();
      }
      start = pool_->Allocate(want);
      if (start >= 0) break;
    }
  }
  if (start < 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "GPU KV pool full: sequence ", id.value(), " needs ", rows, " tokens; ", TokensInUse(),
        " of ", pool_->rows(), " tokens in use, largest free range ", pool_->LargestFree()));
  }
  if (s->len > 0) {  // move the sequence's K/V of every layer to the new range
    const size_t bytes = static_cast<size_t>(s->len * row_ * kv_elem_bytes_);
    for (int l = 0; l < dims_.num_layers; ++l) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(PoolK(l, start), PoolK(l, s->start), bytes,
                                           cudaMemcpyDeviceToDevice, stream_));
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(PoolV(l, start), PoolV(l, s->start), bytes,
                                           cudaMemcpyDeviceToDevice, stream_));
    }
  }
  if (s->cap > 0) pool_->Free(s->start, s->cap);
  s->start = start;
  s->cap = want;
  return absl::OkStatus();
}

absl::Status CudaBackend::Compact(bool trim_reservations) {
  // What each sequence keeps: its tokens, or what this step (BeginStep, layout_) already
  // reserved for it (Reserve runs item by item, before the lengths are set).
  absl::flat_hash_map<SequenceId, int64_t> rows;
  for (auto& [id, seq] : seqs_) rows[id] = seq.len;
  for (const StepLayout::Item& it : layout_->items) {
    const int64_t need = int64_t{it.start_pos} + it.tokens;
    if (seqs_.at(it.seq).cap >= need) rows[it.seq] = std::max(rows[it.seq], need);
  }
  std::vector<std::pair<Seq*, int64_t>> order;  // sequence, rows it keeps
  for (auto& [id, seq] : seqs_) {
    if (seq.cap == 0) continue;
    // A reservation it holds is kept (decode grows into it); only slack beyond it is trimmed.
    const int64_t keep =
        trim_reservations ? rows[id] : std::max(rows[id], std::min(seq.reserve, seq.cap));
    order.push_back({&seq, (keep + kPoolGranule - 1) / kPoolGranule * kPoolGranule});
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first->start < b.first->start; });
  // Every K and V plane of every layer is pool rows apart: one 2D copy moves a row range in all
  // of them. Moving down in pieces no longer than the gap never overwrites unread rows.
  const size_t plane = static_cast<size_t>(pool_->rows() * row_ * kv_elem_bytes_);
  const size_t row_bytes = static_cast<size_t>(row_ * kv_elem_bytes_);
  int64_t cursor = 0;
  int moved = 0;
  for (auto& [q, keep] : order) {
    if (q->start != cursor && q->len > 0) {
      const int64_t gap = q->start - cursor;  // > 0: sorted, and everything before is packed
      for (int64_t off = 0; off < q->len; off += gap) {
        const int64_t n = std::min(gap, q->len - off);
        CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
            PoolK(0, cursor + off), plane, PoolK(0, q->start + off), plane, n * row_bytes,
            2 * static_cast<size_t>(dims_.num_layers), cudaMemcpyDeviceToDevice, stream_));
      }
      ++moved;
    }
    q->start = cursor;
    q->cap = keep;
    cursor += keep;
  }
  pool_->ResetUsed(cursor);
  LOG(INFO) << "GPU KV pool compacted: " << moved << " of " << order.size() << " sequences moved, "
            << pool_->rows() - cursor << " rows free in one range";
  return absl::OkStatus();
}

absl::StatusOr<StepBuffers> CudaBackend::BeginStep(const StepLayout& layout, int world_size,
                                                   int vocab_shard) {
  const int64_t rows = layout.rows(), lr = static_cast<int64_t>(layout.logit_rows.size());
  if (rows > max_rows_) {
    return absl::InvalidArgumentError(
        absl::StrCat("step of ", rows, " tokens exceeds the cuda backend's ", max_rows_,
                     " rows per step (CudaBackendOptions::max_step_rows)"));
  }
  if (vocab_shard < vocab_end_ - vocab_begin_) {
    return absl::InternalError(absl::StrCat("vocab shard of ", vocab_shard,
                                            " columns < this rank's ", vocab_end_ - vocab_begin_,
                                            " vocabulary rows"));
  }
  layout_ = &layout;
  prof_.BeginStep(std::all_of(layout.items.begin(), layout.items.end(),
                              [](const StepLayout::Item& it) { return it.tokens == 1; }),
                  layout.rows());
  // KV rows for every item (lengths are set now; a failed step is truncated back by Model).
  for (const StepLayout::Item& it : layout.items) {
    if (seqs_.find(it.seq) == seqs_.end()) {
      return absl::InternalError(absl::StrCat("sequence ", it.seq.value(), " was not added"));
    }
  }
  for (const StepLayout::Item& it : layout.items) {
    Seq& s = seqs_.at(it.seq);
    s.reserve = std::max(s.reserve, it.reserve_tokens);
    if (tiers_ == nullptr) RETURN_IF_ERROR(Reserve(it.seq, &s, int64_t{it.start_pos} + it.tokens));
  }
  if (tiers_ != nullptr) {
    std::vector<CudaKvTiers::Item> items;
    items.reserve(layout.items.size());
    for (const StepLayout::Item& it : layout.items) {
      items.push_back(CudaKvTiers::Item{it.seq, it.start_pos, it.tokens, it.row});
    }
    RETURN_IF_ERROR(tiers_->Prepare(items));
  }
  for (const StepLayout::Item& it : layout.items) {
    Seq& s = seqs_.at(it.seq);
    tokens_in_use_ += int64_t{it.start_pos} + it.tokens - s.len;
    s.len = int64_t{it.start_pos} + it.tokens;
  }
  if (tiers_ == nullptr && kv_dtype_ == kernels::KvDtype::kFp8E5m2) {
    // The pool row of every step row, for AppendKv's encode kernel (one launch per layer).
    append_rows_.assign(static_cast<size_t>(rows), -1);
    for (const StepLayout::Item& it : layout.items) {
      const int64_t base = seqs_.at(it.seq).start + it.start_pos;
      for (int t = 0; t < it.tokens; ++t) append_rows_[it.row + t] = base + t;
    }
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(append_rows_dev_.get(), append_rows_.data(), rows * 8,
                                         cudaMemcpyHostToDevice, stream_));
  }
  if (hip_ != nullptr) {
    for (const StepLayout::Item& it : layout.items)
      hip_->BeginStep(it.seq, it.start_pos, it.tokens, it.mask_refresh_interval, it.ends_prompt,
                      it.hip_k);
  }
  // Decode runs: maximal runs of consecutive single-token items, one decode call each.
  decode_runs_.clear();
  std::vector<int64_t> starts;
  std::vector<int32_t> lens;
  for (int i = 0; i < static_cast<int>(layout.items.size()); ++i) {
    const StepLayout::Item& it = layout.items[i];
    if (it.tokens != 1) continue;
    if (decode_runs_.empty() || decode_runs_.back().first_item + decode_runs_.back().count != i) {
      decode_runs_.push_back(DecodeRun{i, 0, 0});
    }
    DecodeRun& run = decode_runs_.back();
    ++run.count;
    run.max_len = std::max(run.max_len, it.start_pos + 1);
    starts.push_back(seqs_.at(it.seq).start);
    lens.push_back(it.start_pos + 1);
  }
  decode_items_ = static_cast<int>(starts.size());
  if (decode_items_ > 0) {
    const int64_t meta = decode_items_ * int64_t{12};
    RETURN_IF_ERROR(EnsureBuffer(&decode_meta_dev_, meta));
    std::vector<uint8_t> host(meta);
    std::copy_n(reinterpret_cast<const uint8_t*>(starts.data()), decode_items_ * 8, host.data());
    std::copy_n(reinterpret_cast<const uint8_t*>(lens.data()), decode_items_ * 4,
                host.data() + decode_items_ * 8);
    // Pageable source: the call returns once `host` is staged, so it may go out of scope.
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(decode_meta_dev_.get(), host.data(), meta,
                                         cudaMemcpyHostToDevice, stream_));
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ids_dev_.get(), layout.ids.data(), rows * 4,
                                       cudaMemcpyHostToDevice, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(pos_dev_.get(), layout.positions.data(), rows * 4,
                                       cudaMemcpyHostToDevice, stream_));
  const int64_t h = dims_.hidden, q = int64_t{local_heads_} * dims_.head_dim, kv = row_;
  uint16_t* p = static_cast<uint16_t*>(acts_.get());
  auto take = [&](int64_t cols) {
    Tensor t{p, DType::kBf16, rows, cols};
    p += max_rows_ * cols;
    return t;
  };
  StepBuffers b;
  b.x = take(h);
  b.norm = take(h);
  b.proj = take(h);
  b.q = take(q);
  b.attn = take(q);
  b.k = take(kv);
  b.v = take(kv);
  b.gate = take(local_inter_);
  fused_ = static_cast<uint16_t*>(take(FusedCols(q, kv, local_inter_)).data);
  b.up = Tensor{fused_, DType::kBf16, rows, local_inter_};  // MlpGateUp's default path
  if (rows == 1) {  // one row of q|k|v is q, k and v back to back: no split needed
    uint16_t* f = fused_;
    b.q = Tensor{f, DType::kBf16, 1, q};
    b.k = Tensor{f + q, DType::kBf16, 1, kv};
    b.v = Tensor{f + q + kv, DType::kBf16, 1, kv};
  }
  RETURN_IF_ERROR(EnsureBuffer(&lm_in_, std::max<int64_t>(lr, 1) * h * 2));
  RETURN_IF_ERROR(EnsureBuffer(&logits_dev_, std::max<int64_t>(lr, 1) * vocab_shard * 4));
  b.logits = Tensor{logits_dev_.get(), DType::kFloat32, lr, vocab_shard};
  if (world_size == 1) {
    b.gathered = b.logits;
  } else {  // AllGather stacks the ranks' [lr, shard] blocks
    RETURN_IF_ERROR(
        EnsureBuffer(&gathered_dev_, std::max<int64_t>(lr, 1) * world_size * vocab_shard * 4));
    b.gathered = Tensor{gathered_dev_.get(), DType::kFloat32, world_size * lr, vocab_shard};
  }
  return b;
}

absl::Status CudaBackend::Norm(const Tensor& in, const Tensor* residual, int layer, NormId norm,
                               const Tensor& out) {
  const void* weight = nullptr;
  switch (norm) {
    case NormId::kAttn:
      weight = layers_[layer].attn_norm.get();
      break;
    case NormId::kFfn:
      weight = layers_[layer].ffn_norm.get();
      break;
    case NormId::kOutput:
      weight = output_norm_.get();
      break;
  }
  kernels::RmsNormGpuParams p;
  p.in = in.data;
  p.weight = weight;
  p.out = out.data;
  p.residual = residual == nullptr ? nullptr : residual->data;
  p.rows = static_cast<int>(in.rows);
  p.dim = static_cast<int>(in.cols);
  p.eps = dims_.rms_eps;
  prof_.Mark(stream_, StepProfiler::kOther);
  return kernels::RmsNormGpu(p, stream_);
}

absl::Status CudaBackend::Linear(const Tensor& in, int layer, LinearId id, const Tensor& out) {
  const LayerDev& l = layers_[layer];
  const int64_t h = dims_.hidden, q = int64_t{local_heads_} * dims_.head_dim;
  const uint16_t* w = nullptr;
  const uint16_t* bias = nullptr;
  const uint16_t* wqkv = static_cast<const uint16_t*>(l.wqkv.get());
  const uint16_t* bqkv = static_cast<const uint16_t*>(l.bqkv.get());
  int64_t bias_at = -1;  // offset into bqkv
  switch (id) {
    case LinearId::kWq:
      w = wqkv;
      bias_at = 0;
      break;
    case LinearId::kWk:
      w = wqkv + q * h;
      bias_at = q;
      break;
    case LinearId::kWv:
      w = wqkv + (q + row_) * h;
      bias_at = q + row_;
      break;
    case LinearId::kWo:
      w = static_cast<const uint16_t*>(l.wo.get());
      break;
    case LinearId::kGate:
      w = static_cast<const uint16_t*>(l.gate_up.get());
      break;
    case LinearId::kUp:
      w = static_cast<const uint16_t*>(l.gate_up.get()) + int64_t{local_inter_} * h;
      break;
    case LinearId::kDown:
      w = static_cast<const uint16_t*>(l.down.get());
      break;
  }
  if (bqkv != nullptr && bias_at >= 0) bias = bqkv + bias_at;
  return Gemm(in, w, bias, out);
}

absl::Status CudaBackend::Gemm(const Tensor& in, const void* w, const void* bias,
                               const Tensor& out) {
  kernels::GemmGpuParams g;
  g.context = gemm_.get();
  g.a = in.data;
  g.b = w;
  g.c = out.data;
  g.bias = bias;
  g.m = static_cast<int>(in.rows);
  g.n = static_cast<int>(out.cols);
  g.k = static_cast<int>(in.cols);
  g.c_type = kernels::GemmGpuOutType::kBf16;
  prof_.Mark(stream_, StepProfiler::kGemm);
  return kernels::GemmGpu(g, stream_);
}

absl::Status CudaBackend::LinearQkv(const Tensor& in, int layer, const Tensor& q, const Tensor& k,
                                    const Tensor& v) {
  const LayerDev& l = layers_[layer];
  const int64_t nq = q.cols, nkv = k.cols, rows = in.rows, n = nq + 2 * nkv;
  uint16_t* f = fused_;
  RETURN_IF_ERROR(Gemm(in, l.wqkv.get(), l.bqkv.get(), Tensor{f, DType::kBf16, rows, n}));
  if (q.data == f) return absl::OkStatus();  // one row: q, k, v are views of q|k|v
  // Split [rows, q | k | v] into the three contiguous tensors.
  const size_t pitch = static_cast<size_t>(n) * 2;
  const auto split = [&](const Tensor& dst, int64_t col) {
    return cudaMemcpy2DAsync(dst.data, static_cast<size_t>(dst.cols) * 2, f + col, pitch,
                             static_cast<size_t>(dst.cols) * 2, static_cast<size_t>(rows),
                             cudaMemcpyDeviceToDevice, stream_);
  };
  CUDA_RETURN_IF_ERROR(split(q, 0));
  CUDA_RETURN_IF_ERROR(split(k, nq));
  CUDA_RETURN_IF_ERROR(split(v, nq + nkv));
  return absl::OkStatus();
}

absl::Status CudaBackend::MlpGateUp(const Tensor& in, int layer, const Tensor& gate,
                                    const Tensor& /*up*/) {
  const int64_t inter = gate.cols, rows = in.rows;
  uint16_t* f = fused_;
  RETURN_IF_ERROR(
      Gemm(in, layers_[layer].gate_up.get(), nullptr, Tensor{f, DType::kBf16, rows, 2 * inter}));
  kernels::SwigluGpuParams p;
  p.gate = f;
  p.up = f + inter;
  p.in_stride = 2 * inter;
  p.out = gate.data;
  p.rows = static_cast<int>(rows);
  p.cols = static_cast<int>(inter);
  prof_.Mark(stream_, StepProfiler::kOther);
  return kernels::SwigluGpu(p, stream_);
}

absl::Status CudaBackend::AppendKv(int layer, const Tensor& k, const Tensor& v) {
  if (kv_dtype_ == kernels::KvDtype::kFp8E5m2) {  // encode on the GPU, scatter to pool rows
    KvFp8AppendParams p;
    p.k = k.data;
    p.v = v.data;
    p.dst_rows = static_cast<const int64_t*>(append_rows_dev_.get());
    p.rows = static_cast<int>(k.rows);
    p.row_elems = static_cast<int>(row_);
    p.pool_k = PoolK(layer);
    p.pool_v = PoolV(layer);
    return AppendKvRowsFp8(p, stream_);
  }
  const uint16_t* kin = static_cast<const uint16_t*>(k.data);
  const uint16_t* vin = static_cast<const uint16_t*>(v.data);
  for (const StepLayout::Item& it : layout_->items) {
    const Seq& s = seqs_.at(it.seq);
    const size_t bytes = static_cast<size_t>(int64_t{it.tokens} * row_ * 2);
    const int64_t dst = s.start + it.start_pos;
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(PoolK(layer, dst), kin + it.row * row_, bytes,
                                         cudaMemcpyDeviceToDevice, stream_));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(PoolV(layer, dst), vin + it.row * row_, bytes,
                                         cudaMemcpyDeviceToDevice, stream_));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Attention(int layer, const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out) {
  prof_.Mark(stream_, StepProfiler::kAttention);
  if (hip_ != nullptr) {
    if (tiers_ != nullptr) {
      RETURN_IF_ERROR(tiers_->Append(layer, k.data, v.data));  // un-rotated, fp8 in both tiers
    } else {
      RETURN_IF_ERROR(AppendKv(layer, k, v));  // un-rotated
    }
    return HipAttentionRun(layer, q, out);
  }
  // Dense attention uses real positions only: rotate q and the new keys once; keys are stored
  // rotated.
  kernels::RopeGpuParams r;
  r.x = q.data;
  r.positions = static_cast<const int32_t*>(pos_dev_.get());
  r.tokens = static_cast<int>(q.rows);
  r.heads = local_heads_;
  r.head_dim = dims_.head_dim;
  r.config = dims_.rope;
  RETURN_IF_ERROR(kernels::RopeGpu(r, stream_));
  r.x = k.data;
  r.heads = local_kv_heads_;
  RETURN_IF_ERROR(kernels::RopeGpu(r, stream_));
  RETURN_IF_ERROR(AppendKv(layer, k, v));
  return DenseAttention(layer, q, out);
}

absl::Status CudaBackend::HipAttentionRun(int layer, const Tensor& q, const Tensor& out) {
  const int64_t lq = q.cols;
  const uint16_t* qd = static_cast<const uint16_t*>(q.data);
  uint16_t* od = static_cast<uint16_t*>(out.data);
  // Decode tokens (one token at start_pos > 0: HiP decode steps) of all sequences: one batched
  // call (one mask + one BSA launch per extend mode). Prefill chunks: one call each.
  hip_batch_.clear();
  for (const StepLayout::Item& it : layout_->items) {
    if (it.tokens != 1 || it.start_pos == 0) continue;
    CudaHipAttention::DecodeItem d;
    d.seq = it.seq;
    d.q = qd + it.row * lq;
    d.out = od + it.row * lq;
    d.num_kv = it.start_pos + 1;
    if (tiers_ != nullptr) {
      ASSIGN_OR_RETURN(d.tiered, tiers_->Source(it.seq, layer));
    } else {
      d.kv_row = seqs_.at(it.seq).start;
    }
    hip_batch_.push_back(d);
  }
  if (!hip_batch_.empty()) {
    const bool pool = tiers_ == nullptr;
    RETURN_IF_ERROR(hip_->RunDecodeBatch(layer, hip_batch_, pool ? PoolK(layer) : nullptr,
                                         pool ? PoolV(layer) : nullptr, stream_, kv_dtype_));
  }
  for (const StepLayout::Item& it : layout_->items) {
    if (it.tokens == 1 && it.start_pos > 0) continue;  // in the batch above
    if (tiers_ != nullptr) {
      ASSIGN_OR_RETURN(const kernels::TieredKvSource src, tiers_->Source(it.seq, layer));
      RETURN_IF_ERROR(hip_->RunTiered(it.seq, layer, qd + it.row * lq, it.tokens, it.start_pos, src,
                                      it.start_pos + it.tokens, od + it.row * lq, stream_));
      continue;
    }
    const Seq& s = seqs_.at(it.seq);
    RETURN_IF_ERROR(hip_->Run(it.seq, layer, qd + it.row * lq, it.tokens, it.start_pos,
                              PoolK(layer, s.start), PoolV(layer, s.start),
                              it.start_pos + it.tokens, od + it.row * lq, stream_, kv_dtype_));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::DenseAttention(int layer, const Tensor& q, const Tensor& out) {
  const int hd = dims_.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t lq = q.cols;
  uint16_t* qd = static_cast<uint16_t*>(q.data);
  uint16_t* od = static_cast<uint16_t*>(out.data);
  for (const StepLayout::Item& it : layout_->items) {
    if (it.tokens == 1) continue;  // in a decode run
    const Seq& s = seqs_.at(it.seq);
    kernels::DensePrefillAttentionGpuParams a;
    a.q = qd + it.row * lq;
    a.k = PoolK(layer, s.start);
    a.v = PoolV(layer, s.start);
    a.kv_dtype = kv_dtype_;
    a.out = od + it.row * lq;
    a.num_q = it.tokens;
    a.q_offset = it.start_pos;
    a.num_heads = local_heads_;
    a.num_kv_heads = local_kv_heads_;
    a.head_dim = hd;
    a.scale = scale;
    RETURN_IF_ERROR(kernels::DensePrefillAttentionGpu(a, stream_));
  }
  int meta_index = 0;
  const int64_t* starts = static_cast<const int64_t*>(decode_meta_dev_.get());
  const int32_t* lens = reinterpret_cast<const int32_t*>(starts + decode_items_);
  for (const DecodeRun& run : decode_runs_) {
    const StepLayout::Item& first = layout_->items[run.first_item];
    kernels::DecodeAttentionGpuParams a;
    a.q = qd + first.row * lq;
    a.k = PoolK(layer);
    a.v = PoolV(layer);
    a.kv_dtype = kv_dtype_;
    a.out = od + first.row * lq;
    a.kv_start = starts + meta_index;
    a.kv_len = lens + meta_index;
    a.batch = run.count;
    a.num_heads = local_heads_;
    a.num_kv_heads = local_kv_heads_;
    a.head_dim = hd;
    a.max_kv_len = run.max_len;
    a.scale = scale;
    ASSIGN_OR_RETURN(size_t ws, kernels::DenseDecodeAttentionWorkspaceBytes(a));
    RETURN_IF_ERROR(EnsureBuffer(&decode_ws_, static_cast<int64_t>(ws)));
    a.workspace = decode_ws_.get();
    a.workspace_bytes = static_cast<size_t>(decode_ws_.bytes());
    RETURN_IF_ERROR(kernels::DenseDecodeAttentionGpu(a, stream_));
    meta_index += run.count;
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::LmHead(const Tensor& normed, const Tensor& logits) {
  const int64_t h = dims_.hidden;
  const int ns = static_cast<int>(logits.rows);
  if (ns == 0) return absl::OkStatus();
  prof_.Mark(stream_, StepProfiler::kLmHead);
  const uint16_t* src = static_cast<const uint16_t*>(normed.data);
  uint16_t* dst = static_cast<uint16_t*>(lm_in_.get());
  // Gather the logit rows; runs of consecutive rows move in one copy.
  for (int i = 0; i < ns;) {
    int j = i + 1;
    while (j < ns && layout_->logit_rows[j] == layout_->logit_rows[j - 1] + 1) ++j;
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst + int64_t{i} * h, src + int64_t{layout_->logit_rows[i]} * h,
                        static_cast<size_t>((j - i) * h * 2), cudaMemcpyDeviceToDevice, stream_));
    i = j;
  }
  kernels::GemmGpuParams g;
  g.context = gemm_.get();
  g.a = dst;
  g.b = lm_head_.get();
  const int local = static_cast<int>(vocab_end_ - vocab_begin_);
  const int shard = static_cast<int>(logits.cols);
  // The last rank's shard can be narrower than the padded width: multiply into a packed
  // buffer, then spread its rows. Padding columns stay unwritten: only the first
  // min(shard, vocab - r * shard) columns of a rank's block are ever read (Sample, ReadLogits).
  const bool packed = local != shard;
  if (packed) RETURN_IF_ERROR(EnsureBuffer(&lm_packed_, int64_t{ns} * local * 4));
  g.c = packed ? lm_packed_.get() : logits.data;
  g.m = ns;
  g.n = local;
  g.k = static_cast<int>(h);
  g.c_type = kernels::GemmGpuOutType::kFloat32;
  RETURN_IF_ERROR(kernels::GemmGpu(g, stream_));
  if (packed && local > 0) {
    CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(logits.data, shard * 4, lm_packed_.get(), local * 4,
                                           local * 4, ns, cudaMemcpyDeviceToDevice, stream_));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<kernels::SampleResult>> CudaBackend::Sample(
    const Tensor& gathered, int world_size, int vocab_size,
    const std::vector<kernels::SamplingOptions>& options) {
  const int n = static_cast<int>(options.size());
  if (n == 0) return std::vector<kernels::SampleResult>{};
  if (gathered.rows != int64_t{n} * world_size) {
    return absl::InternalError(absl::StrCat("sample: ", gathered.rows, " logit rows for ", n,
                                            " sequences on ", world_size, " ranks"));
  }
  const float* logits = static_cast<const float*>(gathered.data);
  int64_t row_stride = gathered.cols;
  if (world_size > 1) {
    // [world][n][shard] -> [n][vocab]: one strided copy per rank's block.
    RETURN_IF_ERROR(EnsureBuffer(&unsharded_, int64_t{n} * vocab_size * 4));
    const int shard = static_cast<int>(gathered.cols);
    for (int r = 0; r < world_size; ++r) {
      const int count = std::min(shard, vocab_size - r * shard);
      if (count <= 0) break;
      CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(
          static_cast<float*>(unsharded_.get()) + int64_t{r} * shard, int64_t{vocab_size} * 4,
          logits + int64_t{r} * n * shard, int64_t{shard} * 4, int64_t{count} * 4, n,
          cudaMemcpyDeviceToDevice, stream_));
    }
    logits = static_cast<const float*>(unsharded_.get());
    row_stride = vocab_size;
  }
  const int64_t opt_bytes = int64_t{n} * static_cast<int64_t>(sizeof(kernels::SamplingOptions));
  RETURN_IF_ERROR(EnsureBuffer(&options_dev_, opt_bytes));
  RETURN_IF_ERROR(EnsureBuffer(&sampled_dev_, int64_t{n} * 8));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(options_dev_.get(), options.data(), opt_bytes,
                                       cudaMemcpyHostToDevice, stream_));
  int32_t* tokens = static_cast<int32_t*>(sampled_dev_.get());
  float* logprobs = reinterpret_cast<float*>(tokens + n);
  kernels::SamplingGpuParams p;
  p.logits = logits;
  p.batch = n;
  p.vocab = vocab_size;
  p.row_stride = row_stride;
  p.options = static_cast<const kernels::SamplingOptions*>(options_dev_.get());
  p.tokens = tokens;
  p.logprobs = logprobs;
  RETURN_IF_ERROR(kernels::SampleGpu(p, stream_));
  std::vector<int32_t> host_tokens(n);
  std::vector<float> host_logprobs(n);
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(host_tokens.data(), tokens, n * 4, cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(host_logprobs.data(), logprobs, n * 4, cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  std::vector<kernels::SampleResult> out(n);
  for (int i = 0; i < n; ++i) {
    if (host_tokens[i] < 0) {
      return absl::InternalError(
          absl::StrCat("sampling produced no token for row ", i, " (non-finite logits?)"));
    }
    out[i].token = host_tokens[i];
    out[i].logprob = host_logprobs[i];
  }
  return out;
}

absl::Status CudaBackend::Candidates(const Tensor& logits, int c,
                                     const std::vector<float>& temperatures,
                                     const Tensor& records) {
  const int n = static_cast<int>(logits.rows);
  if (n == 0) return absl::OkStatus();
  if (static_cast<int>(temperatures.size()) != n || records.rows != n ||
      records.cols != kernels::CandidateRecordWords(c)) {
    return absl::InternalError(absl::StrCat("candidates: ", n, " logit rows, ", temperatures.size(),
                                            " temperatures, records [", records.rows, ", ",
                                            records.cols, "]"));
  }
  RETURN_IF_ERROR(EnsureBuffer(&cand_temps_, int64_t{n} * 4));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(cand_temps_.get(), temperatures.data(), int64_t{n} * 4,
                                       cudaMemcpyHostToDevice, stream_));
  kernels::CandidatesGpuParams p;
  p.logits = static_cast<const float*>(logits.data);
  p.rows = n;
  p.cols = static_cast<int>(vocab_end_ - vocab_begin_);  // padding columns are never written
  p.row_stride = logits.cols;
  p.id_begin = vocab_begin_;
  p.c = c;
  p.temperatures = static_cast<const float*>(cand_temps_.get());
  p.records = static_cast<int32_t*>(records.data);
  // `temperatures` outlives the copy: Model::SampleSharded waits for the stream (ToHost) before
  // it returns.
  return kernels::CandidatesGpu(p, stream_);
}

absl::Status CudaBackend::SelectRows(const Tensor& logits, const std::vector<int>& rows,
                                     const Tensor& out) {
  for (size_t i = 0; i < rows.size(); ++i) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(static_cast<float*>(out.data) + static_cast<int64_t>(i) * out.cols,
                        static_cast<const float*>(logits.data) + int64_t{rows[i]} * logits.cols,
                        static_cast<size_t>(logits.cols) * 4, cudaMemcpyDeviceToDevice, stream_));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> MakeCudaBackend(ModelWeights weights,
                                                                const ModelOptions& options) {
  return CudaBackend::Create(std::move(weights), options);
}

}  // namespace hipserve::worker
