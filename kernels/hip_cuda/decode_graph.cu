// HipDecodeGraphs: buffers, graph capture and per-step enqueueing (see decode_graph.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/param_checks.h"
#include "kernels/hip_cuda/decode_graph.h"
#include "kernels/hip_cuda/decode_graph_plan.h"

namespace hipserve::kernels {
namespace {

using internal::Aligned16;
using internal::Invalid;

constexpr char kFn[] = "HipDecodeGraphs";

class DecodeGraphsImpl : public HipDecodeGraphs {
 public:
  DecodeGraphsImpl(const HipDecodeGraphOptions& o, const HipDecodeGraphTensors& t)
      : opt_(o), t_(t) {}
  ~DecodeGraphsImpl() override;

  absl::Status Init();

  absl::Status Run(const HipDecodeStep& step, void* stream) override {
    return Enqueue(step, static_cast<cudaStream_t>(stream), /*graph=*/true);
  }
  absl::Status RunEager(const HipDecodeStep& step, void* stream) override {
    return Enqueue(step, static_cast<cudaStream_t>(stream), /*graph=*/false);
  }
  absl::Status MoveSlot(int from, int to, void* stream) override;
  absl::StatusOr<int> BucketFor(int batch) const override {
    const int i = BatchBucketIndex(opt_.batch_buckets, batch);
    if (i < 0) {
      return Invalid(kFn, absl::StrCat("batch ", batch, " outside [1, ", max_batch_, "]"));
    }
    return opt_.batch_buckets[i];
  }
  int num_graphs() const override { return static_cast<int>(execs_.size()); }
  int max_batch() const override { return max_batch_; }
  int num_stages() const override { return stages_; }
  void* q_buffer() const override { return q_; }
  void* out_buffer() const override { return out_; }
  const HipDecodeMaskGpuState& mask_state() const override { return state_; }

 private:
  // Device input block: kv_start [max_batch] int64, kv_len [max_batch] int32, start stage
  // [max_batch] int32 (one contiguous upload per step).
  size_t InputBytes() const { return static_cast<size_t>(max_batch_) * 16; }
  int64_t* d_kv_start() const { return static_cast<int64_t*>(inputs_); }
  int32_t* d_kv_len() const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(inputs_) + 8 * max_batch_);
  }
  int32_t* d_start_stage() const {
    return reinterpret_cast<int32_t*>(static_cast<char*>(inputs_) + 12 * max_batch_);
  }
  int64_t QRowElems() const { return int64_t{opt_.num_heads} * opt_.head_dim; }

  HipDecodeMaskGpuParams MaskParams(int batch, int mode) const;
  BsaDecodeGpuParams BsaParams(int batch) const;
  absl::Status LaunchKernels(int batch, int mode, cudaStream_t s) const;
  absl::Status ValidateStep(const HipDecodeStep& step) const;
  absl::Status Enqueue(const HipDecodeStep& step, cudaStream_t s, bool graph);

  HipDecodeGraphOptions opt_;
  HipDecodeGraphTensors t_;
  PruningSpec spec_;
  int stages_ = 0;
  int max_batch_ = 0;
  void* q_ = nullptr;
  void* out_ = nullptr;
  void* inputs_ = nullptr;
  std::vector<void*> state_mem_;
  HipDecodeMaskGpuState state_;
  void* mask_ws_ = nullptr;
  size_t mask_ws_bytes_ = 0;
  void* bsa_ws_ = nullptr;
  size_t bsa_ws_bytes_ = 0;
  char* staging_ = nullptr;  // pinned, [staging_depth][InputBytes()]
  std::vector<cudaEvent_t> staging_events_;
  int next_staging_ = 0;
  cudaStream_t capture_stream_ = nullptr;
  std::vector<cudaGraphExec_t> execs_;  // DecodeGraphIndex(bucket, mode)
  std::vector<char> ready_;             // per slot: holds a full mask for its sequence
  int dirty_hi_ = 0;                    // slots >= dirty_hi_ have zero last-stage block counts
};

DecodeGraphsImpl::~DecodeGraphsImpl() {
  cudaDeviceSynchronize();  // buffers may still be in use by enqueued steps
  for (cudaGraphExec_t e : execs_) cudaGraphExecDestroy(e);
  for (cudaEvent_t e : staging_events_) cudaEventDestroy(e);
  if (capture_stream_ != nullptr) cudaStreamDestroy(capture_stream_);
  if (staging_ != nullptr) cudaFreeHost(staging_);
  for (void* p : state_mem_) cudaFree(p);
  cudaFree(q_);
  cudaFree(out_);
  cudaFree(inputs_);
  cudaFree(mask_ws_);
  cudaFree(bsa_ws_);
}

HipDecodeMaskGpuParams DecodeGraphsImpl::MaskParams(int batch, int mode) const {
  HipDecodeMaskGpuParams p;
  p.q = q_;
  p.k = t_.k;
  p.kv_start = d_kv_start();
  p.kv_len = d_kv_len();
  p.batch = batch;
  p.num_heads = opt_.num_heads;
  p.num_kv_heads = opt_.num_kv_heads;
  p.head_dim = opt_.head_dim;
  p.max_kv_len = opt_.max_kv_len;
  p.n_sink = opt_.config.n_sink;
  p.spec = &spec_;
  p.rope = t_.rope;
  p.rope_positions = t_.rope_positions;
  p.start_stage = std::max(mode, 0);
  p.seq_start_stage = d_start_stage();
  p.state = state_;
  p.workspace = mask_ws_;
  p.workspace_bytes = mask_ws_bytes_;
  return p;
}

BsaDecodeGpuParams DecodeGraphsImpl::BsaParams(int batch) const {
  BsaDecodeGpuParams p;
  DecodeAttentionGpuParams& a = p.attn;
  a.q = q_;
  a.k = t_.k;
  a.v = t_.v;
  a.kv_dtype = KvDtype::kBf16;
  a.out = out_;
  a.kv_start = d_kv_start();
  a.kv_len = d_kv_len();
  a.batch = batch;
  a.num_heads = opt_.num_heads;
  a.num_kv_heads = opt_.num_kv_heads;
  a.head_dim = opt_.head_dim;
  a.max_kv_len = opt_.max_kv_len;
  a.scale = 1.f / std::sqrt(static_cast<float>(opt_.head_dim));
  a.workspace = bsa_ws_;
  a.workspace_bytes = bsa_ws_bytes_;
  a.num_splits = opt_.bsa_num_splits;
  p.block_starts = state_.starts[stages_ - 1];
  p.block_count = state_.count[stages_ - 1];
  p.max_blocks = spec_.keep_chunks(stages_ - 1);
  p.n_sink = opt_.config.n_sink;
  p.n_window = opt_.config.n_window;  // [pos - n_window, pos], as BsaRef
  if (opt_.bsa_rope) {
    p.rope = t_.rope;
    p.rope_positions = t_.rope_positions;
  }
  p.extend = opt_.config.extend;
  p.keys_per_step = opt_.bsa_keys_per_step;
  return p;
}

absl::Status DecodeGraphsImpl::LaunchKernels(int batch, int mode, cudaStream_t s) const {
  if (mode != kRefreshBsaOnly) {
    if (absl::Status st = HipDecodeMaskGpu(MaskParams(batch, mode), s); !st.ok()) return st;
  }
  return BsaDecodeAttentionGpu(BsaParams(batch), s);
}

absl::Status DecodeGraphsImpl::Init() {
  const HipDecodeGraphOptions& o = opt_;
  if (absl::Status s = ValidateHipConfig(o.config); !s.ok())
    return Invalid(kFn, std::string(s.message()));
  if (absl::Status s = HipConfigRunsOnGpu(o.config, HipGpuMaskPath::kDecode, kFn); !s.ok()) {
    return s;
  }
  if (o.layer < 0) return Invalid(kFn, absl::StrCat("layer must be >= 0, got ", o.layer));
  if (absl::Status s = ValidateBatchBuckets(o.batch_buckets); !s.ok()) {
    return Invalid(kFn, std::string(s.message()));
  }
  if (o.max_kv_len <= 0)
    return Invalid(kFn, absl::StrCat("max_kv_len must be > 0, got ", o.max_kv_len));
  if (o.kv_rows < 1) return Invalid(kFn, absl::StrCat("kv_rows must be >= 1, got ", o.kv_rows));
  if (o.staging_depth < 1) {
    return Invalid(kFn, absl::StrCat("staging_depth must be >= 1, got ", o.staging_depth));
  }
  if (t_.k == nullptr || t_.v == nullptr || t_.rope == nullptr) {
    return Invalid(kFn, "tensors k, v and rope must be non-null");
  }
  if (!Aligned16(t_.k) || !Aligned16(t_.v) || !Aligned16(t_.rope)) {
    return Invalid(kFn, "tensors k, v and rope must be 16-byte aligned");
  }
  spec_ = PruningSpecForLayer(o.config, o.layer);
  stages_ = spec_.num_stages();
  max_batch_ = o.batch_buckets.back();
  // Shapes, spec, rope coverage and workspaces, through the kernels' own validation.
  absl::StatusOr<int> rope_need = HipDecodeMaskRopePositions(MaskParams(max_batch_, 0));
  if (!rope_need.ok()) return rope_need.status();
  const int need = o.bsa_rope ? std::max(*rope_need, o.max_kv_len) : *rope_need;
  if (t_.rope_positions < need) {
    return Invalid(kFn,
                   absl::StrCat("rope table covers ", t_.rope_positions, " positions; ", need,
                                " needed (mask", o.bsa_rope ? " and in-kernel BSA RoPE" : "", ")"));
  }
  absl::StatusOr<size_t> mws = HipDecodeMaskWorkspaceBytes(MaskParams(max_batch_, 0));
  if (!mws.ok()) return mws.status();
  mask_ws_bytes_ = *mws;
  for (int b : o.batch_buckets) {
    absl::StatusOr<size_t> bws = BsaDecodeAttentionWorkspaceBytes(BsaParams(b));
    if (!bws.ok()) return bws.status();
    bsa_ws_bytes_ = std::max(bsa_ws_bytes_, *bws);
  }

  // Buffers. q / out zeroed so padding rows compute on finite data; inputs hold padding rows.
  const size_t q_bytes = static_cast<size_t>(max_batch_) * QRowElems() * 2;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&q_, q_bytes));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&out_, q_bytes));
  CUDA_RETURN_IF_ERROR(cudaMemset(q_, 0, q_bytes));
  CUDA_RETURN_IF_ERROR(cudaMemset(out_, 0, q_bytes));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&inputs_, InputBytes()));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&mask_ws_, std::max<size_t>(mask_ws_bytes_, 16)));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&bsa_ws_, std::max<size_t>(bsa_ws_bytes_, 16)));
  const size_t rows = static_cast<size_t>(max_batch_) * o.num_kv_heads;
  for (int s = 0; s < stages_; ++s) {
    const size_t sizes[3] = {rows * spec_.keep_chunks(s), rows, rows};
    int32_t** dst[3] = {&state_.starts[s], &state_.count[s], &state_.range_end[s]};
    for (int i = 0; i < 3; ++i) {
      void* p = nullptr;
      CUDA_RETURN_IF_ERROR(cudaMalloc(&p, sizes[i] * sizeof(int32_t)));
      state_mem_.push_back(p);
      CUDA_RETURN_IF_ERROR(cudaMemset(p, 0, sizes[i] * sizeof(int32_t)));
      *dst[i] = static_cast<int32_t*>(p);
    }
  }
  CUDA_RETURN_IF_ERROR(cudaHostAlloc(reinterpret_cast<void**>(&staging_),
                                     InputBytes() * o.staging_depth, cudaHostAllocDefault));
  staging_events_.resize(o.staging_depth, nullptr);
  for (cudaEvent_t& e : staging_events_) {
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  {
    std::vector<char> pad(InputBytes());
    for (int b = 0; b < max_batch_; ++b) {
      std::memcpy(pad.data() + 8 * b, &kPadKvStart, 8);
      std::memcpy(pad.data() + 8 * max_batch_ + 4 * b, &kPadKvLen, 4);
      std::memcpy(pad.data() + 12 * max_batch_ + 4 * b, &kPadStartStage, 4);
    }
    CUDA_RETURN_IF_ERROR(cudaMemcpy(inputs_, pad.data(), pad.size(), cudaMemcpyHostToDevice));
  }
  ready_.assign(max_batch_, 0);

  // One graph per (bucket, mode). Launch parameters are fixed here; the kernels read lengths,
  // start stages, queries and lists from the buffers above when they run.
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking));
  execs_.assign(o.batch_buckets.size() * (stages_ + 1), nullptr);
  for (size_t bi = 0; bi < o.batch_buckets.size(); ++bi) {
    for (int mode = kRefreshBsaOnly; mode < stages_; ++mode) {
      CUDA_RETURN_IF_ERROR(
          cudaStreamBeginCapture(capture_stream_, cudaStreamCaptureModeThreadLocal));
      const absl::Status launched = LaunchKernels(o.batch_buckets[bi], mode, capture_stream_);
      cudaGraph_t g = nullptr;
      const cudaError_t end = cudaStreamEndCapture(capture_stream_, &g);
      if (!launched.ok()) {
        if (g != nullptr) cudaGraphDestroy(g);
        return launched;
      }
      CUDA_RETURN_IF_ERROR(end);
      cudaGraphExec_t exec = nullptr;
      const cudaError_t inst = cudaGraphInstantiate(&exec, g, 0);
      cudaGraphDestroy(g);
      CUDA_RETURN_IF_ERROR(inst);
      execs_[DecodeGraphIndex(static_cast<int>(bi), mode, stages_)] = exec;
    }
  }
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return absl::OkStatus();
}

absl::Status DecodeGraphsImpl::ValidateStep(const HipDecodeStep& st) const {
  if (st.batch < 1 || st.batch > max_batch_) {
    return Invalid(kFn, absl::StrCat("batch ", st.batch, " outside [1, ", max_batch_, "]"));
  }
  if (st.kv_len == nullptr || st.kv_start == nullptr || st.start_stage == nullptr) {
    return Invalid(kFn, "kv_len, kv_start and start_stage must be non-null host arrays");
  }
  if ((st.q != nullptr && !Aligned16(st.q)) || (st.out != nullptr && !Aligned16(st.out))) {
    return Invalid(kFn, "q and out must be 16-byte aligned");
  }
  for (int b = 0; b < st.batch; ++b) {
    const int32_t len = st.kv_len[b];
    const int64_t start = st.kv_start[b];
    if (len < 1 || len > opt_.max_kv_len) {
      return Invalid(kFn, absl::StrCat("kv_len[", b, "] = ", len,
                                       " outside [1, max_kv_len = ", opt_.max_kv_len, "]"));
    }
    if (start < 0 || start + len > opt_.kv_rows) {
      return Invalid(kFn, absl::StrCat("kv_start[", b, "] = ", start, " with kv_len ", len,
                                       " exceeds kv_rows ", opt_.kv_rows));
    }
    const int32_t ss = st.start_stage[b];
    if (ss < kRefreshBsaOnly || ss >= stages_) {
      return Invalid(kFn,
                     absl::StrCat("start_stage[", b, "] = ", ss, " outside [-1, ", stages_, ")"));
    }
    if (ss != 0 && !ready_[b]) {
      return Invalid(kFn, absl::StrCat("slot ", b,
                                       " holds no mask yet (new or padded since); its "
                                       "first step must recompute from stage 0, got ",
                                       ss));
    }
  }
  return absl::OkStatus();
}

absl::Status DecodeGraphsImpl::Enqueue(const HipDecodeStep& st, cudaStream_t s, bool graph) {
  if (absl::Status v = ValidateStep(st); !v.ok()) return v;
  absl::StatusOr<int> mode = RefreshModeFor(absl::MakeConstSpan(st.start_stage, st.batch), stages_);
  if (!mode.ok()) return Invalid(kFn, std::string(mode.status().message()));
  const int bi = BatchBucketIndex(opt_.batch_buckets, st.batch);
  const int bucket = opt_.batch_buckets[bi];

  // Lengths and start stages: one pinned slot, one async copy. The slot's previous copy was
  // enqueued staging_depth steps ago; waiting for it bounds how far the host runs ahead.
  cudaEvent_t ev = staging_events_[next_staging_];
  char* h = staging_ + InputBytes() * next_staging_;
  next_staging_ = (next_staging_ + 1) % opt_.staging_depth;
  CUDA_RETURN_IF_ERROR(cudaEventSynchronize(ev));
  for (int b = 0; b < max_batch_; ++b) {
    const bool real = b < st.batch;
    const int64_t start = real ? st.kv_start[b] : kPadKvStart;
    const int32_t len = real ? st.kv_len[b] : kPadKvLen;
    const int32_t ss = real ? st.start_stage[b] : kPadStartStage;
    std::memcpy(h + 8 * b, &start, 8);
    std::memcpy(h + 8 * max_batch_ + 4 * b, &len, 4);
    std::memcpy(h + 12 * max_batch_ + 4 * b, &ss, 4);
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(inputs_, h, InputBytes(), cudaMemcpyHostToDevice, s));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(ev, s));

  // Slots that were real and are padding now: their block lists would point past kv_len 1.
  if (dirty_hi_ > st.batch) {
    const size_t kvh = opt_.num_kv_heads;
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(state_.count[stages_ - 1] + st.batch * kvh, 0,
                                         (dirty_hi_ - st.batch) * kvh * sizeof(int32_t), s));
  }
  if (st.q != nullptr && st.q != q_) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(q_, st.q, st.batch * QRowElems() * 2, cudaMemcpyDeviceToDevice, s));
  }
  if (graph) {
    CUDA_RETURN_IF_ERROR(cudaGraphLaunch(execs_[DecodeGraphIndex(bi, *mode, stages_)], s));
  } else {
    if (absl::Status k = LaunchKernels(bucket, *mode, s); !k.ok()) return k;
  }
  if (st.out != nullptr) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(st.out, out_, st.batch * QRowElems() * 2, cudaMemcpyDeviceToDevice, s));
  }
  for (int b = 0; b < max_batch_; ++b) {
    if (b >= st.batch) {
      ready_[b] = 0;
    } else if (st.start_stage[b] == 0) {
      ready_[b] = 1;
    }
  }
  dirty_hi_ = st.batch;
  return absl::OkStatus();
}

absl::Status DecodeGraphsImpl::MoveSlot(int from, int to, void* stream) {
  if (from < 0 || from >= max_batch_ || to < 0 || to >= max_batch_) {
    return Invalid(
        kFn, absl::StrCat("MoveSlot(", from, ", ", to, "): slots are in [0, ", max_batch_, ")"));
  }
  if (from == to) return absl::OkStatus();
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t kvh = opt_.num_kv_heads;
  for (int st = 0; st < stages_; ++st) {
    const size_t keep = static_cast<size_t>(spec_.keep_chunks(st)) * kvh;
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(state_.starts[st] + to * keep,
                                         state_.starts[st] + from * keep, keep * sizeof(int32_t),
                                         cudaMemcpyDeviceToDevice, s));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(state_.count[st] + to * kvh, state_.count[st] + from * kvh,
                                         kvh * sizeof(int32_t), cudaMemcpyDeviceToDevice, s));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(state_.range_end[st] + to * kvh,
                                         state_.range_end[st] + from * kvh, kvh * sizeof(int32_t),
                                         cudaMemcpyDeviceToDevice, s));
  }
  ready_[to] = ready_[from];
  dirty_hi_ = std::max(dirty_hi_, to + 1);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> CreateHipDecodeGraphs(
    const HipDecodeGraphOptions& options, const HipDecodeGraphTensors& tensors) {
  auto g = std::make_unique<DecodeGraphsImpl>(options, tensors);
  if (absl::Status s = g->Init(); !s.ok()) return s;
  return std::unique_ptr<HipDecodeGraphs>(std::move(g));
}

}  // namespace hipserve::kernels
