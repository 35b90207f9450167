// HipDecodeGraphs (decode_graph.h) against eager calls of the same kernels, driven by this
// test's own buffers and params (ctest label gpu; GTEST_SKIP without a device):
//   - graph replay == eager HipDecodeMaskGpu + BsaDecodeAttentionGpu, bit for bit (outputs and
//     every stage's lists), over steps with growing lengths, sequences joining mid-way (bucket
//     change), and per-sequence refresh stages that differ inside a bucket; also == RunEager;
//   - padding rows don't disturb real rows: a bucket with padding == an eager batch of exactly
//     the real rows (fixed split count), also after slots stop being real and after MoveSlot;
//     padding rows are written finite, rows past the bucket are not touched;
//   - bucket selection, and InvalidArgument for bad shapes / options / steps.
// Shapes come from kernels/testing/attention_cases.h.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/decode_graph.h"
#include "kernels/hip_cuda/decode_graph_plan.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/testing/attention_cases.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using testing::AttentionShape;

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr
#define STATUS_OK(expr)                    \
  do {                                     \
    const absl::Status _s = (expr);        \
    ASSERT_TRUE(_s.ok()) << _s.ToString(); \
  } while (0)

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(std::max<size_t>(bytes, 16)) {
    EXPECT_EQ(cudaMalloc(&ptr_, bytes_), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr_, 0xff, bytes_), cudaSuccess);  // poison
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

template <typename T>
std::vector<T> ToHost(const void* dev, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// Small HiP config whose three stages all select at the test lengths (3K-6K tokens).
HipConfig SmallConfig() {
  HipConfig c;
  c.n_sink = 64;
  c.n_window = 128;
  c.chunk_sizes = {64, 16, 8};
  c.stage_keep = {1024, 512};
  c.k = 256;
  c.stride_q = {1, 1, 1};
  c.mask_refresh_interval = {8, 4, 2};
  c.layer_overrides = {};
  return c;
}

RopeConfig Llama3Rope() {
  RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = RopeScaling::kLlama3;
  rc.factor = 8.f;
  return rc;
}

constexpr int kMaxKvLen = 6400;  // capacity; kDecodeTestLens + steps stay below
constexpr int64_t kSeqRows = 6500;
constexpr int kSeqs = 8;

// K, V and the RoPE table of one layer, random bf16 (never zero).
struct Layer {
  AttentionShape shape;
  int64_t rows = kSeqs * kSeqRows;
  std::unique_ptr<DeviceBuffer> k, v, rope;
  int rope_positions = kMaxKvLen;

  explicit Layer(const AttentionShape& s) : shape(s) {
    const int64_t n = rows * s.num_kv_heads * s.head_dim;
    k = std::make_unique<DeviceBuffer>(n * 2);
    v = std::make_unique<DeviceBuffer>(n * 2);
    const std::vector<uint16_t> kh = Bf16(testing::RandomVector(n, 101));
    const std::vector<uint16_t> vh = Bf16(testing::RandomVector(n, 202));
    EXPECT_EQ(cudaMemcpy(k->get(), kh.data(), n * 2, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v->get(), vh.data(), n * 2, cudaMemcpyHostToDevice), cudaSuccess);
    absl::StatusOr<RopeTable> table = RopeTable::Create(Llama3Rope(), s.head_dim, rope_positions);
    EXPECT_TRUE(table.ok());
    const std::vector<float> r = HipRopeRows(*table, rope_positions);
    rope = std::make_unique<DeviceBuffer>(r.size() * 4);
    EXPECT_EQ(cudaMemcpy(rope->get(), r.data(), r.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  }
  static std::vector<uint16_t> Bf16(const std::vector<float>& f) {
    std::vector<uint16_t> b(f.size());
    FloatToBf16Array(f.data(), b.data(), static_cast<int64_t>(f.size()));
    return b;
  }
  HipDecodeGraphTensors Tensors() const {
    return HipDecodeGraphTensors{k->get(), v->get(), rope->get<float>(), rope_positions};
  }
  HipDecodeGraphOptions Options(const std::vector<int>& buckets) const {
    HipDecodeGraphOptions o;
    o.num_heads = shape.num_heads;
    o.num_kv_heads = shape.num_kv_heads;
    o.head_dim = shape.head_dim;
    o.config = SmallConfig();
    o.layer = 0;
    o.max_kv_len = kMaxKvLen;
    o.kv_rows = rows;
    o.batch_buckets = buckets;
    return o;
  }
};

// Every stage's lists of slots [0, slots): count, range_end, and the used starts.
struct Lists {
  std::vector<std::vector<int32_t>> count, range_end, starts;
};

Lists ReadLists(const HipDecodeMaskGpuState& st, const PruningSpec& spec, int kvh, int slots) {
  Lists l;
  for (int s = 0; s < spec.num_stages(); ++s) {
    const size_t rows = static_cast<size_t>(slots) * kvh;
    l.count.push_back(ToHost<int32_t>(st.count[s], rows));
    l.range_end.push_back(ToHost<int32_t>(st.range_end[s], rows));
    std::vector<int32_t> starts = ToHost<int32_t>(st.starts[s], rows * spec.keep_chunks(s));
    for (size_t r = 0; r < rows; ++r) {  // entries past the count are unspecified
      for (int i = std::max(0, l.count[s][r]); i < spec.keep_chunks(s); ++i) {
        starts[r * spec.keep_chunks(s) + i] = 0;
      }
    }
    l.starts.push_back(std::move(starts));
  }
  return l;
}

// Slot a of `x` vs slot b of `y`, every stage.
void ExpectSameLists(const Lists& x, int a, const Lists& y, int b, const PruningSpec& spec, int kvh,
                     const std::string& where) {
  for (int s = 0; s < spec.num_stages(); ++s) {
    const int keep = spec.keep_chunks(s);
    for (int h = 0; h < kvh; ++h) {
      const int ra = a * kvh + h, rb = b * kvh + h;
      ASSERT_EQ(x.count[s][ra], y.count[s][rb]) << where << " stage " << s << " kvh " << h;
      ASSERT_EQ(x.range_end[s][ra], y.range_end[s][rb]) << where << " stage " << s;
      for (int i = 0; i < keep; ++i) {
        ASSERT_EQ(x.starts[s][ra * keep + i], y.starts[s][rb * keep + i])
            << where << " stage " << s << " kvh " << h << " entry " << i;
      }
    }
  }
}

// Eager reference: the two kernels called directly on this test's own buffers.
class EagerRef {
 public:
  EagerRef(const Layer& L, int max_batch, int num_splits, int keys_per_step)
      : L_(L), max_batch_(max_batch), splits_(num_splits), kps_(keys_per_step) {
    config_ = SmallConfig();
    spec_ = PruningSpecForLayer(config_, 0);
    const int64_t qn = int64_t{max_batch} * L.shape.num_heads * L.shape.head_dim;
    q_ = std::make_unique<DeviceBuffer>(qn * 2);
    out_ = std::make_unique<DeviceBuffer>(qn * 2);
    starts_ = std::make_unique<DeviceBuffer>(max_batch * 8);
    lens_ = std::make_unique<DeviceBuffer>(max_batch * 4);
    ss_ = std::make_unique<DeviceBuffer>(max_batch * 4);
    const size_t rows = static_cast<size_t>(max_batch) * L.shape.num_kv_heads;
    for (int s = 0; s < spec_.num_stages(); ++s) {
      state_mem_.push_back(std::make_unique<DeviceBuffer>(rows * spec_.keep_chunks(s) * 4));
      state_.starts[s] = state_mem_.back()->get<int32_t>();
      state_mem_.push_back(std::make_unique<DeviceBuffer>(rows * 4));
      state_.count[s] = state_mem_.back()->get<int32_t>();
      EXPECT_EQ(cudaMemset(state_.count[s], 0, rows * 4), cudaSuccess);
      state_mem_.push_back(std::make_unique<DeviceBuffer>(rows * 4));
      state_.range_end[s] = state_mem_.back()->get<int32_t>();
    }
    absl::StatusOr<size_t> mws = HipDecodeMaskWorkspaceBytes(Mask(max_batch, 0));
    EXPECT_TRUE(mws.ok()) << mws.status();
    mask_ws_ = std::make_unique<DeviceBuffer>(mws.ok() ? *mws : 16);
    size_t bws = 16;
    for (int b = 1; b <= max_batch; ++b) {
      absl::StatusOr<size_t> w = BsaDecodeAttentionWorkspaceBytes(Bsa(b));
      EXPECT_TRUE(w.ok()) << w.status();
      if (w.ok()) bws = std::max(bws, *w);
    }
    bsa_ws_ = std::make_unique<DeviceBuffer>(bws);
  }

  // One step over `batch` rows (host arrays of that size, padding rows included by the
  // caller); q rows [0, q_rows) from the device pointer.
  absl::Status Step(int batch, const std::vector<int64_t>& kv_start,
                    const std::vector<int32_t>& kv_len, const std::vector<int32_t>& ss,
                    const void* q, int q_rows) {
    const int64_t row = int64_t{L_.shape.num_heads} * L_.shape.head_dim * 2;
    cudaMemcpy(q_->get(), q, q_rows * row, cudaMemcpyDeviceToDevice);
    cudaMemcpy(starts_->get(), kv_start.data(), batch * 8, cudaMemcpyHostToDevice);
    cudaMemcpy(lens_->get(), kv_len.data(), batch * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(ss_->get(), ss.data(), batch * 4, cudaMemcpyHostToDevice);
    absl::StatusOr<int> mode = RefreshModeFor(ss, spec_.num_stages());
    if (!mode.ok()) return mode.status();
    if (*mode >= 0) {
      if (absl::Status s = HipDecodeMaskGpu(Mask(batch, *mode), nullptr); !s.ok()) return s;
    }
    if (absl::Status s = BsaDecodeAttentionGpu(Bsa(batch), nullptr); !s.ok()) return s;
    if (cudaDeviceSynchronize() != cudaSuccess) return absl::InternalError("sync");
    return absl::OkStatus();
  }
  void ZeroLastCounts(int from, int to) {
    const int kvh = L_.shape.num_kv_heads;
    if (to > from) {
      EXPECT_EQ(
          cudaMemset(state_.count[spec_.num_stages() - 1] + from * kvh, 0, (to - from) * kvh * 4),
          cudaSuccess);
    }
  }
  void Move(int from, int to) {
    const int kvh = L_.shape.num_kv_heads;
    for (int s = 0; s < spec_.num_stages(); ++s) {
      const int keep = spec_.keep_chunks(s) * kvh;
      cudaMemcpy(state_.starts[s] + to * keep, state_.starts[s] + from * keep, keep * 4,
                 cudaMemcpyDeviceToDevice);
      cudaMemcpy(state_.count[s] + to * kvh, state_.count[s] + from * kvh, kvh * 4,
                 cudaMemcpyDeviceToDevice);
      cudaMemcpy(state_.range_end[s] + to * kvh, state_.range_end[s] + from * kvh, kvh * 4,
                 cudaMemcpyDeviceToDevice);
    }
  }
  const HipDecodeMaskGpuState& state() const { return state_; }
  const PruningSpec& spec() const { return spec_; }
  const void* out() const { return out_->get(); }

 private:
  HipDecodeMaskGpuParams Mask(int batch, int start) const {
    HipDecodeMaskGpuParams p;
    p.q = q_->get();
    p.k = L_.k->get();
    p.kv_start = starts_->get<int64_t>();
    p.kv_len = lens_->get<int32_t>();
    p.batch = batch;
    p.num_heads = L_.shape.num_heads;
    p.num_kv_heads = L_.shape.num_kv_heads;
    p.head_dim = L_.shape.head_dim;
    p.max_kv_len = kMaxKvLen;
    p.n_sink = config_.n_sink;
    p.spec = &spec_;
    p.rope = L_.rope->get<float>();
    p.rope_positions = L_.rope_positions;
    p.start_stage = start;
    p.seq_start_stage = ss_->get<int32_t>();
    p.state = state_;
    p.workspace = mask_ws_ ? mask_ws_->get() : nullptr;
    p.workspace_bytes = mask_ws_ ? mask_ws_->bytes() : 0;
    return p;
  }
  BsaDecodeGpuParams Bsa(int batch) const {
    BsaDecodeGpuParams p;
    p.attn.q = q_->get();
    p.attn.k = L_.k->get();
    p.attn.v = L_.v->get();
    p.attn.out = out_->get();
    p.attn.kv_start = starts_->get<int64_t>();
    p.attn.kv_len = lens_->get<int32_t>();
    p.attn.batch = batch;
    p.attn.num_heads = L_.shape.num_heads;
    p.attn.num_kv_heads = L_.shape.num_kv_heads;
    p.attn.head_dim = L_.shape.head_dim;
    p.attn.max_kv_len = kMaxKvLen;
    p.attn.scale = 1.f / std::sqrt(static_cast<float>(L_.shape.head_dim));
    p.attn.workspace = bsa_ws_ ? bsa_ws_->get() : nullptr;
    p.attn.workspace_bytes = bsa_ws_ ? bsa_ws_->bytes() : 0;
    p.attn.num_splits = splits_;
    const int last = spec_.num_stages() - 1;
    p.block_starts = state_.starts[last];
    p.block_count = state_.count[last];
    p.max_blocks = spec_.keep_chunks(last);
    p.n_sink = config_.n_sink;
    p.n_window = config_.n_window;
    p.rope = L_.rope->get<float>();
    p.rope_positions = L_.rope_positions;
    p.extend = config_.extend;
    p.keys_per_step = kps_;
    return p;
  }

  const Layer& L_;
  int max_batch_, splits_, kps_;
  HipConfig config_;
  PruningSpec spec_;
  std::unique_ptr<DeviceBuffer> q_, out_, starts_, lens_, ss_, mask_ws_, bsa_ws_;
  std::vector<std::unique_ptr<DeviceBuffer>> state_mem_;
  HipDecodeMaskGpuState state_;
};

// A sequence of the test: where its KV sits, its length at its first step, when it joins.
struct Seq {
  int64_t kv_start;
  int32_t len0;
  int join;  // test step of its decode step 0
};

std::vector<Seq> TestSeqs() {
  std::vector<Seq> s;
  const auto& lens = testing::kDecodeTestLens;
  for (int b = 0; b < kSeqs; ++b) {
    s.push_back(Seq{b * kSeqRows + 7 * b, static_cast<int32_t>(lens[b % lens.size()] + 37 * b),
                    b < 3 ? 0 : b});
  }
  return s;
}

class DecodeGraphTest : public ::testing::TestWithParam<AttentionShape> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

std::vector<uint16_t> RandomQ(int rows, const AttentionShape& s, uint64_t seed) {
  return Layer::Bf16(testing::RandomVector(int64_t{rows} * s.num_heads * s.head_dim, seed));
}

bool IsNaN(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; }

// Graph replay and RunEager vs the eager reference with the same bucket rows, bit for bit.
TEST_P(DecodeGraphTest, GraphEqualsEagerOverSteps) {
  const AttentionShape shape = GetParam();
  Layer L(shape);
  const std::vector<int> buckets = {1, 2, 4, 8};
  absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> g =
      CreateHipDecodeGraphs(L.Options(buckets), L.Tensors());
  ASSERT_TRUE(g.ok()) << g.status();
  absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> e =
      CreateHipDecodeGraphs(L.Options(buckets), L.Tensors());
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*g)->num_graphs(), 4 * 4);
  EagerRef ref(L, 8, 0, 0);
  const PruningSpec& spec = ref.spec();
  const int kvh = shape.num_kv_heads, row = shape.num_heads * shape.head_dim;
  const std::vector<Seq> seqs = TestSeqs();
  const HipConfig config = SmallConfig();
  bool seen_mode[4] = {false, false, false, false};
  bool mixed = false, selected = false;
  DeviceBuffer dq(int64_t{8} * row * 2), dout(int64_t{8} * row * 2);
  for (int step = 0; step < 14; ++step) {
    // Sequences 0..2 from step 0, 3 and 4 join at steps 3 and 4 (bucket 4 -> 8).
    std::vector<int64_t> kv_start;
    std::vector<int32_t> kv_len, ss;
    for (int b = 0; b < 5 && seqs[b].join <= step; ++b) {
      kv_start.push_back(seqs[b].kv_start);
      kv_len.push_back(seqs[b].len0 + step - seqs[b].join);
      ss.push_back(DecodeRefreshStage(config, step - seqs[b].join));
    }
    const int n = static_cast<int>(ss.size());
    const int mode = *RefreshModeFor(ss, 3);
    seen_mode[mode + 1] = true;
    for (int32_t s : ss) mixed |= s != mode;
    const std::vector<uint16_t> qh = RandomQ(n, shape, 1000 + step);
    CUDA_OK(cudaMemcpy(dq.get(), qh.data(), qh.size() * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(dout.get(), 0xff, dout.bytes()));
    HipDecodeStep st;
    st.batch = n;
    st.kv_len = kv_len.data();
    st.kv_start = kv_start.data();
    st.start_stage = ss.data();
    st.q = dq.get();
    st.out = dout.get();
    STATUS_OK((*g)->Run(st, nullptr));
    st.out = nullptr;
    STATUS_OK((*e)->RunEager(st, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    // Reference over the same bucket rows, padding as decode_graph_plan.h says.
    const int bucket = *(*g)->BucketFor(n);
    std::vector<int64_t> rs = kv_start;
    std::vector<int32_t> rl = kv_len, rss = ss;
    rs.resize(bucket, kPadKvStart);
    rl.resize(bucket, kPadKvLen);
    rss.resize(bucket, kPadStartStage);
    STATUS_OK(ref.Step(bucket, rs, rl, rss, dq.get(), n));

    const std::string where = "step " + std::to_string(step) + " batch " + std::to_string(n);
    const std::vector<uint16_t> og = ToHost<uint16_t>(dout.get(), int64_t{n} * row);
    const std::vector<uint16_t> oe = ToHost<uint16_t>((*e)->out_buffer(), int64_t{n} * row);
    const std::vector<uint16_t> orf = ToHost<uint16_t>(ref.out(), int64_t{n} * row);
    for (size_t i = 0; i < og.size(); ++i) {
      ASSERT_FALSE(IsNaN(og[i])) << where << " element " << i;
      ASSERT_EQ(og[i], orf[i]) << where << " graph vs eager reference, element " << i;
      ASSERT_EQ(oe[i], orf[i]) << where << " RunEager vs eager reference, element " << i;
    }
    const Lists lg = ReadLists((*g)->mask_state(), spec, kvh, n);
    const Lists le = ReadLists((*e)->mask_state(), spec, kvh, n);
    const Lists lr = ReadLists(ref.state(), spec, kvh, n);
    for (int b = 0; b < n; ++b) {
      ExpectSameLists(lg, b, lr, b, spec, kvh, where + " slot " + std::to_string(b) + " graph");
      ExpectSameLists(le, b, lr, b, spec, kvh, where + " slot " + std::to_string(b) + " eager");
      const int c = lg.count[2][b * kvh];
      const int candidates = (kv_len[b] - 1 - config.n_window - config.n_sink) / 8;
      selected |= c == spec.keep_chunks(2) && c < candidates;
    }
  }
  for (int m = 0; m < 4; ++m) EXPECT_TRUE(seen_mode[m]) << "mode " << m - 1 << " not exercised";
  EXPECT_TRUE(mixed) << "no step had sequences with different start stages";
  EXPECT_TRUE(selected) << "the last stage never had to select";
}

// Padding rows (bucket 8 with 5 or 3 real rows, stale lists in slots that stopped being real)
// give the real rows exactly what an eager batch of only the real rows gives.
TEST_P(DecodeGraphTest, PaddingRowsDontDisturbRealRows) {
  const AttentionShape shape = GetParam();
  Layer L(shape);
  HipDecodeGraphOptions opt = L.Options({1, 2, 4, 8});
  opt.bsa_num_splits = 4;  // same partitions whatever the batch, so outputs compare exactly
  opt.bsa_keys_per_step = 8;
  absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> g = CreateHipDecodeGraphs(opt, L.Tensors());
  ASSERT_TRUE(g.ok()) << g.status();
  EagerRef ref(L, 8, 4, 8);
  const PruningSpec& spec = ref.spec();
  const int kvh = shape.num_kv_heads, row = shape.num_heads * shape.head_dim;
  const std::vector<Seq> seqs = TestSeqs();
  const HipConfig config = SmallConfig();
  DeviceBuffer dq(int64_t{8} * row * 2);
  std::vector<int> slot_seq = {0, 1, 2, 3, 4, 5, 6, 7};  // sequence in each slot
  for (int step = 0; step < 10; ++step) {
    int n = step < 3 ? 8 : step < 7 ? 5 : 3;
    if (step == 7) {  // sequences 2..4 leave but 4, which moves to slot 2
      STATUS_OK((*g)->MoveSlot(4, 2, nullptr));
      ref.Move(4, 2);
      slot_seq[2] = 4;
    }
    if (step == 3 || step == 7) ref.ZeroLastCounts(n, 8);  // eager: slots that left
    std::vector<int64_t> kv_start;
    std::vector<int32_t> kv_len, ss;
    for (int b = 0; b < n; ++b) {
      const Seq& s = seqs[slot_seq[b]];
      kv_start.push_back(s.kv_start);
      kv_len.push_back(s.len0 + step);
      ss.push_back(DecodeRefreshStage(config, step + slot_seq[b]));  // staggered counters
      if (step == 0) ss.back() = 0;
    }
    const std::vector<uint16_t> qh = RandomQ(n, shape, 2000 + step);
    CUDA_OK(cudaMemcpy(dq.get(), qh.data(), qh.size() * 2, cudaMemcpyHostToDevice));
    const int64_t max_elems = int64_t{8} * row;
    CUDA_OK(cudaMemset((*g)->out_buffer(), 0xff, max_elems * 2));
    HipDecodeStep st;
    st.batch = n;
    st.kv_len = kv_len.data();
    st.kv_start = kv_start.data();
    st.start_stage = ss.data();
    st.q = dq.get();
    STATUS_OK((*g)->Run(st, nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    STATUS_OK(ref.Step(n, kv_start, kv_len, ss, dq.get(), n));

    const std::string where = "step " + std::to_string(step) + " batch " + std::to_string(n);
    const int bucket = *(*g)->BucketFor(n);
    const std::vector<uint16_t> og = ToHost<uint16_t>((*g)->out_buffer(), max_elems);
    const std::vector<uint16_t> orf = ToHost<uint16_t>(ref.out(), int64_t{n} * row);
    for (int64_t i = 0; i < max_elems; ++i) {
      if (i < int64_t{n} * row) {
        ASSERT_EQ(og[i], orf[i]) << where << " real row element " << i;
      } else if (i < int64_t{bucket} * row) {
        ASSERT_FALSE(IsNaN(og[i])) << where << " padding row element " << i << " not written";
      } else {
        ASSERT_EQ(og[i], 0xffff) << where << " row past the bucket written, element " << i;
      }
    }
    const Lists lg = ReadLists((*g)->mask_state(), spec, kvh, n);
    const Lists lr = ReadLists(ref.state(), spec, kvh, n);
    for (int b = 0; b < n; ++b) {
      ExpectSameLists(lg, b, lr, b, spec, kvh, where + " slot " + std::to_string(b));
    }
    const Lists all = ReadLists((*g)->mask_state(), spec, kvh, 8);
    for (int b = n; b < 8; ++b) {
      for (int h = 0; h < kvh; ++h) {
        ASSERT_EQ(all.count[2][b * kvh + h], 0) << where << " padding slot " << b << " kept blocks";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, DecodeGraphTest,
                         ::testing::ValuesIn(testing::kSmallDecodeShapes.begin(),
                                             testing::kSmallDecodeShapes.end()),
                         [](const ::testing::TestParamInfo<AttentionShape>& i) {
                           return std::string(i.param.name);
                         });

class DecodeGraphArgsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(DecodeGraphArgsTest, BucketSelection) {
  Layer L(testing::kSmallG4);
  absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> g =
      CreateHipDecodeGraphs(L.Options({1, 2, 4, 8}), L.Tensors());
  ASSERT_TRUE(g.ok()) << g.status();
  const int expected[9] = {0, 1, 2, 4, 4, 8, 8, 8, 8};
  for (int n = 1; n <= 8; ++n) EXPECT_EQ(*(*g)->BucketFor(n), expected[n]) << n;
  EXPECT_EQ((*g)->BucketFor(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*g)->BucketFor(9).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*g)->max_batch(), 8);
  EXPECT_EQ((*g)->num_stages(), 3);
}

TEST_F(DecodeGraphArgsTest, BadShapesAndOptionsRejected) {
  Layer L(testing::kSmallG4);
  auto code = [&](HipDecodeGraphOptions o, HipDecodeGraphTensors t) {
    return CreateHipDecodeGraphs(o, t).status().code();
  };
  const absl::StatusCode kBad = absl::StatusCode::kInvalidArgument;
  HipDecodeGraphOptions o = L.Options({1, 2, 4});
  o.head_dim = 96;
  EXPECT_EQ(code(o, L.Tensors()), kBad) << "head_dim 96";
  o = L.Options({1, 2, 4});
  o.num_heads = 24;  // group 12
  EXPECT_EQ(code(o, L.Tensors()), kBad) << "group 12";
  o = L.Options({1, 2, 4});
  o.num_heads = 7;
  EXPECT_EQ(code(o, L.Tensors()), kBad) << "heads not a multiple of kv heads";
  o = L.Options({4, 2});
  EXPECT_EQ(code(o, L.Tensors()), kBad) << "unsorted buckets";
  o = L.Options({1, 2, 4});
  o.max_kv_len = 0;
  EXPECT_EQ(code(o, L.Tensors()), kBad) << "max_kv_len 0";
  o = L.Options({1, 2, 4});
  o.config.k = 100;  // not a multiple of the last chunk
  EXPECT_EQ(code(o, L.Tensors()), kBad) << "bad HiP config";
  HipDecodeGraphTensors t = L.Tensors();
  t.rope_positions = kMaxKvLen - 1;  // in-kernel BSA RoPE needs max_kv_len positions
  EXPECT_EQ(code(L.Options({1, 2, 4}), t), kBad) << "short rope table";
  t = L.Tensors();
  t.k = nullptr;
  EXPECT_EQ(code(L.Options({1, 2, 4}), t), kBad) << "null k";
}

TEST_F(DecodeGraphArgsTest, BadStepsRejected) {
  Layer L(testing::kSmallG4);
  absl::StatusOr<std::unique_ptr<HipDecodeGraphs>> g =
      CreateHipDecodeGraphs(L.Options({1, 2, 4}), L.Tensors());
  ASSERT_TRUE(g.ok()) << g.status();
  std::vector<int64_t> start = {0, kSeqRows};
  std::vector<int32_t> len = {4000, 4000}, ss = {0, 0};
  HipDecodeStep st;
  st.batch = 2;
  st.kv_len = len.data();
  st.kv_start = start.data();
  st.start_stage = ss.data();
  const absl::StatusCode kBad = absl::StatusCode::kInvalidArgument;
  st.batch = 5;
  EXPECT_EQ((*g)->Run(st, nullptr).code(), kBad) << "batch above the largest bucket";
  st.batch = 0;
  EXPECT_EQ((*g)->Run(st, nullptr).code(), kBad) << "batch 0";
  st.batch = 2;
  len[1] = kMaxKvLen + 1;
  EXPECT_EQ((*g)->Run(st, nullptr).code(), kBad) << "kv_len above capacity";
  len[1] = 4000;
  start[1] = L.rows - 10;
  EXPECT_EQ((*g)->Run(st, nullptr).code(), kBad) << "kv rows overrun";
  start[1] = kSeqRows;
  ss[1] = 1;
  EXPECT_EQ((*g)->Run(st, nullptr).code(), kBad) << "first step of a slot not from stage 0";
  ss[1] = 3;
  EXPECT_EQ((*g)->Run(st, nullptr).code(), kBad) << "stage out of range";
  ss[1] = 0;
  STATUS_OK((*g)->Run(st, nullptr));
  ss = {-1, 2};
  STATUS_OK((*g)->Run(st, nullptr));  // slots hold masks now
  st.batch = 1;
  STATUS_OK((*g)->Run(st, nullptr));  // slot 1 becomes padding
  st.batch = 2;
  EXPECT_EQ((*g)->Run(st, nullptr).code(), kBad) << "slot 1 lost its mask as padding";
  EXPECT_EQ((*g)->MoveSlot(0, 4, nullptr).code(), kBad);
  CUDA_OK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace hipserve::kernels
