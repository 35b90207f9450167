// HiP decode mask estimation on the GPU against the CPU reference EstimateMaskRef
// (kernels/hip/mask_estimation_ref.cc): every stage's kept list must be EXACTLY equal (same
// chunk starts, same count, same range_end) on the same bf16 inputs. Also: restarting from a
// cached stage list (decode mask refresh), per-sequence refresh stages, and argument checks.
// ctest label gpu; every case GTEST_SKIPs without a CUDA device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/testing/compare.h"
#include "kvstore/fp8_e5m2.h"

namespace hipserve::kernels {
namespace {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(std::max<size_t>(bytes, 16)) {
    EXPECT_EQ(cudaMalloc(&ptr_, bytes_), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr_, 0xff, bytes_), cudaSuccess);  // poison: -1 / NaN
  }
  template <typename T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    Upload(host);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  void Upload(const std::vector<T>& host) {
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  template <typename T>
  std::vector<T> ToHost(size_t n) const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr_, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

RopeConfig Llama3Rope() {
  RopeConfig rc;
  rc.theta = 500000.f;
  rc.scaling = RopeScaling::kLlama3;
  rc.factor = 8.f;
  rc.low_freq_factor = 1.f;
  rc.high_freq_factor = 4.f;
  rc.original_max_position = 8192;
  return rc;
}

enum class Keys { kRandom, kNeedle, kAllEqual };

struct MaskCase {
  std::string name;
  std::vector<int> lens;  // one per sequence
  int heads = 32, kv_heads = 8, head_dim = 128;
  PruningPositions positions = PruningPositions::kRelative;
  Keys keys = Keys::kRandom;
  bool small_spec = false;  // (64, 16, 8) keeping (512, 128, 64): all stages score at 4K
  // Every stage's representatives (entry 0 = stage 1; empty = probes everywhere), and the
  // HipConfig fields they use.
  std::vector<Stage1Representatives> reps = {};
  int mean_block_size = 16;
  int n_window = -1;  // >= 0 replaces the preset's (small values leave pages open)
  bool fp8 = false;   // contiguous fp8 e5m2 keys (the reference sees the decoded values)
  // The final lists of some (sequence, KV head) must differ from probes' (random keys with
  // enough candidates: a scorer that silently ran probes would fail here).
  bool differs_from_probes = false;
};

HipConfig ConfigFor(const MaskCase& c) {
  HipConfig cfg;
  if (c.small_spec) {
    cfg.n_sink = 16;
    cfg.n_window = 64;
    cfg.chunk_sizes = {64, 16, 8};
    cfg.stage_keep = {512, 128};
    cfg.k = 64;
  }
  cfg.layer_overrides.clear();
  cfg.extend = c.positions != PruningPositions::kReal;
  cfg.pruning_positions = cfg.extend ? c.positions : PruningPositions::kRelative;
  if (!c.reps.empty()) {
    cfg.stage1_representatives = c.reps[0];
    cfg.later_stage_representatives.assign(c.reps.begin() + 1, c.reps.end());
  }
  cfg.mean_block_size = c.mean_block_size;
  if (c.n_window >= 0) cfg.n_window = c.n_window;
  return cfg;
}

// Host + device copies of one problem: sequences laid out one after another with a gap.
struct Problem {
  int batch = 0, heads = 0, kv_heads = 0, hd = 0, max_len = 0;
  std::vector<int64_t> kv_start;
  std::vector<int32_t> kv_len;
  std::vector<float> q;        // [batch][heads][hd], bf16-exact
  std::vector<float> k;        // [rows][kv_heads][hd], bf16-exact (fp8: the decoded values)
  std::vector<uint8_t> k_fp8;  // fp8 cases: the e5m2 codes the GPU reads
  int64_t rows = 0;
};

Problem MakeProblem(const MaskCase& c, int extra_tokens, uint64_t seed) {
  Problem p;
  p.batch = static_cast<int>(c.lens.size());
  p.heads = c.heads;
  p.kv_heads = c.kv_heads;
  p.hd = c.head_dim;
  int64_t row = 5;  // a few rows before the first sequence
  for (int len : c.lens) {
    p.kv_start.push_back(row);
    p.kv_len.push_back(len);
    p.max_len = std::max(p.max_len, len + extra_tokens);
    row += len + extra_tokens + 3;
  }
  p.rows = row;
  p.q = testing::RandomVector(int64_t{p.batch} * p.heads * p.hd, seed);
  RoundToBf16InPlace(p.q.data(), static_cast<int64_t>(p.q.size()));
  const int64_t row_elems = int64_t{p.kv_heads} * p.hd;
  if (c.keys == Keys::kAllEqual) {
    const std::vector<float> one = testing::RandomVector(row_elems, seed + 1);
    p.k.resize(p.rows * row_elems);
    for (int64_t r = 0; r < p.rows; ++r)
      std::copy(one.begin(), one.end(), p.k.begin() + r * row_elems);
  } else {
    p.k = testing::RandomVector(p.rows * row_elems, seed + 1);
  }
  if (c.keys == Keys::kNeedle) {
    // One 32-key span per (sequence, KV head) along the group's mean query, 8x the key scale.
    const int group = p.heads / p.kv_heads;
    testing::Rng rng(seed + 2);
    for (int b = 0; b < p.batch; ++b) {
      for (int h = 0; h < p.kv_heads; ++h) {
        std::vector<double> dir(p.hd, 0.0);
        for (int g = 0; g < group; ++g) {
          for (int x = 0; x < p.hd; ++x)
            dir[x] += p.q[(int64_t{b} * p.heads + h * group + g) * p.hd + x];
        }
        double norm = 0;
        for (double v : dir) norm += v * v;
        norm = std::sqrt(norm);
        const int span_lo = 300, span_hi = std::max(span_lo + 1, p.kv_len[b] - 1100 - 32);
        const int at = span_lo + static_cast<int>(rng.Next() % (span_hi - span_lo));
        for (int t = at; t < std::min(at + 32, p.kv_len[b]); ++t) {
          float* kr = p.k.data() + (p.kv_start[b] + t) * row_elems + int64_t{h} * p.hd;
          for (int x = 0; x < p.hd; ++x)
            kr[x] = static_cast<float>(8.0 * dir[x] / norm * std::sqrt(p.hd) * 0.6);
        }
      }
    }
  }
  RoundToBf16InPlace(p.k.data(), static_cast<int64_t>(p.k.size()));
  if (c.fp8) {
    p.k_fp8.resize(p.k.size());
    for (size_t i = 0; i < p.k.size(); ++i) {
      p.k_fp8[i] = kvstore::Bf16ToFp8E5m2(FloatToBf16(p.k[i]));
      p.k[i] = Bf16ToFloat(kvstore::Fp8E5m2ToBf16(p.k_fp8[i]));
    }
  }
  return p;
}

std::vector<uint16_t> ToBf16(const std::vector<float>& f) {
  std::vector<uint16_t> b(f.size());
  FloatToBf16Array(f.data(), b.data(), static_cast<int64_t>(f.size()));
  return b;
}

// One stage's list as the GPU left it.
struct GpuLists {
  std::vector<std::vector<int32_t>> starts, count, range_end;  // [stage][...]
};

// Device state + workspace + inputs for a problem, and the call.
class GpuRunner {
 public:
  GpuRunner(const Problem& pr, const HipConfig& cfg, const PruningSpec& spec, const RopeTable& rope)
      : pr_(pr),
        spec_(spec),
        q_(ToBf16(pr.q)),
        k_(pr.k_fp8.empty() ? pr.k.size() * sizeof(uint16_t) : pr.k_fp8.size()),
        kv_start_(pr.kv_start),
        kv_len_(pr.kv_len),
        seq_stage_(sizeof(int32_t) * pr.batch) {
    if (pr.k_fp8.empty()) {
      k_.Upload(ToBf16(pr.k));
    } else {
      k_.Upload(pr.k_fp8);
      p_.k_dtype = KvDtype::kFp8E5m2;
    }
    p_.q = q_.get();
    p_.k = k_.get();
    p_.kv_start = kv_start_.get<int64_t>();
    p_.kv_len = kv_len_.get<int32_t>();
    p_.batch = pr.batch;
    p_.num_heads = pr.heads;
    p_.num_kv_heads = pr.kv_heads;
    p_.head_dim = pr.hd;
    p_.max_kv_len = pr.max_len;
    p_.n_sink = cfg.n_sink;
    p_.spec = &spec_;
    absl::StatusOr<int> npos = HipDecodeMaskRopePositions(p_);
    EXPECT_TRUE(npos.ok()) << npos.status();
    rope_ = std::make_unique<DeviceBuffer>(HipRopeRows(rope, *npos));
    p_.rope = rope_->get<float>();
    p_.rope_positions = *npos;
    for (int s = 0; s < spec.num_stages(); ++s) {
      const int64_t lists = int64_t{pr.batch} * pr.kv_heads;
      state_.push_back(std::make_unique<DeviceBuffer>(lists * spec.keep_chunks(s) * 4));
      state_.push_back(std::make_unique<DeviceBuffer>(lists * 4));
      state_.push_back(std::make_unique<DeviceBuffer>(lists * 4));
      p_.state.starts[s] = state_[3 * s]->get<int32_t>();
      p_.state.count[s] = state_[3 * s + 1]->get<int32_t>();
      p_.state.range_end[s] = state_[3 * s + 2]->get<int32_t>();
    }
    absl::StatusOr<size_t> ws = HipDecodeMaskWorkspaceBytes(p_);
    EXPECT_TRUE(ws.ok()) << ws.status();
    ws_ = std::make_unique<DeviceBuffer>(*ws);
    p_.workspace = ws_->get();
    p_.workspace_bytes = *ws;
  }

  HipDecodeMaskGpuParams& params() { return p_; }
  void SetLens(const std::vector<int32_t>& lens) { kv_len_.Upload(lens); }
  void SetSeqStages(const std::vector<int32_t>& st) { seq_stage_.Upload(st); }
  const int32_t* seq_stage() const { return seq_stage_.get<int32_t>(); }

  absl::Status Run(int start_stage, const int32_t* seq_stage = nullptr) {
    HipDecodeMaskGpuParams p = p_;
    p.start_stage = start_stage;
    p.seq_start_stage = seq_stage;
    absl::Status s = HipDecodeMaskGpu(p, nullptr);
    if (!s.ok()) return s;
    if (cudaDeviceSynchronize() != cudaSuccess) return absl::InternalError("kernel failed");
    return absl::OkStatus();
  }

  GpuLists Read() const {
    GpuLists l;
    const int64_t lists = int64_t{pr_.batch} * pr_.kv_heads;
    for (int s = 0; s < spec_.num_stages(); ++s) {
      l.starts.push_back(state_[3 * s]->ToHost<int32_t>(lists * spec_.keep_chunks(s)));
      l.count.push_back(state_[3 * s + 1]->ToHost<int32_t>(lists));
      l.range_end.push_back(state_[3 * s + 2]->ToHost<int32_t>(lists));
    }
    return l;
  }

 private:
  const Problem& pr_;
  PruningSpec spec_;
  DeviceBuffer q_, k_, kv_start_, kv_len_, seq_stage_;
  std::unique_ptr<DeviceBuffer> rope_, ws_;
  std::vector<std::unique_ptr<DeviceBuffer>> state_;
  HipDecodeMaskGpuParams p_;
};

// CPU reference for (b, kvh) at length `len`, optionally restarting from `start_input`.
MaskEstimationResult Reference(const Problem& pr, const HipConfig& cfg, const PruningSpec& spec,
                               const RopeTable& rope, int b, int kvh, int len, int start_stage = 0,
                               const ChunkList* start_input = nullptr) {
  const int group = pr.heads / pr.kv_heads;
  const int32_t q_pos = len - 1;
  MaskEstimationParams p;
  p.q = pr.q.data() + (int64_t{b} * pr.heads + kvh * group) * pr.hd;
  p.q_token_stride = int64_t{group} * pr.hd;
  p.q_pos = &q_pos;
  p.num_q = 1;
  p.group = group;
  p.head_dim = pr.hd;
  p.k = pr.k.data() + pr.kv_start[b] * pr.kv_heads * pr.hd + int64_t{kvh} * pr.hd;
  p.k_token_stride = int64_t{pr.kv_heads} * pr.hd;
  p.num_kv = len;
  const CandidateRange r = CandidateRangeFor(cfg, q_pos);
  p.range_begin = r.begin;
  p.range_end = r.end;
  p.spec = &spec;
  p.rope = &rope;
  p.start_stage = start_stage;
  p.start_input = start_input;
  MaskEstimationResult out;
  const absl::Status s = EstimateMaskRef(p, &out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// Compares the GPU lists of stages [from, S) with the reference for (b, kvh).
void ExpectEqualLists(const GpuLists& g, const MaskEstimationResult& ref, const PruningSpec& spec,
                      int list, int from, const std::string& what) {
  for (int s = from; s < spec.num_stages(); ++s) {
    const std::vector<int32_t>& want = ref.kept[s].starts;
    const int cnt = g.count[s][list];
    ASSERT_EQ(cnt, static_cast<int>(want.size())) << what << " stage " << s;
    EXPECT_EQ(g.range_end[s][list], ref.kept[s].range_end) << what << " stage " << s;
    const int stride = spec.keep_chunks(s);
    const std::vector<int32_t> got(g.starts[s].begin() + int64_t{list} * stride,
                                   g.starts[s].begin() + int64_t{list} * stride + cnt);
    int first_diff = -1;
    for (int i = 0; i < cnt && first_diff < 0; ++i) {
      if (got[i] != want[i]) first_diff = i;
    }
    EXPECT_EQ(first_diff, -1) << what << " stage " << s << ": first difference at " << first_diff
                              << " (gpu " << (first_diff >= 0 ? got[first_diff] : 0) << ", cpu "
                              << (first_diff >= 0 ? want[first_diff] : 0) << ")";
  }
}

RopeTable MakeRope(int positions, int hd) {
  auto t = RopeTable::Create(Llama3Rope(), hd, positions);
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

int RopePositionsFor(const HipConfig& cfg, int max_len) {
  return std::max(max_len, cfg.n_window + 2) + 8;
}

class HipMaskGpuTest : public ::testing::TestWithParam<MaskCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(HipMaskGpuTest, AllStagesEqualCpuReference) {
  const MaskCase& c = GetParam();
  const HipConfig cfg = ConfigFor(c);
  ASSERT_TRUE(ValidateHipConfig(cfg).ok()) << ValidateHipConfig(cfg);
  const PruningSpec spec = PruningSpecForLayer(cfg, 5);
  const Problem pr = MakeProblem(c, 0, 1000 + c.lens[0]);
  const RopeTable rope = MakeRope(RopePositionsFor(cfg, pr.max_len), pr.hd);
  GpuRunner gpu(pr, cfg, spec, rope);
  ASSERT_TRUE(gpu.Run(0).ok());
  const GpuLists g = gpu.Read();
  PruningSpec probes = spec;
  probes.stage1 = Stage1Representatives::kProbes;
  probes.later_stages.clear();
  int differ = 0;
  for (int b = 0; b < pr.batch; ++b) {
    for (int h = 0; h < pr.kv_heads; ++h) {
      const MaskEstimationResult ref = Reference(pr, cfg, spec, rope, b, h, pr.kv_len[b]);
      ExpectEqualLists(g, ref, spec, b * pr.kv_heads + h, 0, absl::StrCat("b", b, " kvh", h));
      bool means = false;  // a block mean of equal keys is a rounded sum / n: no exact ties
      for (int s = 0; s < spec.num_stages(); ++s) {
        means = means || spec.representatives(s) == Stage1Representatives::kBlockMeans;
      }
      if (c.keys == Keys::kAllEqual && !means) {
        // Every score ties: the lowest positions win.
        const std::vector<int32_t>& f = ref.block_starts();
        for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f[i], cfg.n_sink + 8 * static_cast<int>(i));
      }
      if (c.differs_from_probes &&
          Reference(pr, cfg, probes, rope, b, h, pr.kv_len[b]).block_starts() !=
              ref.block_starts()) {
        ++differ;
      }
    }
  }
  if (c.differs_from_probes) {
    EXPECT_GT(differ, 0) << "every list equals probes'";
  }
}

// Decode refresh: after a full run at T, the sequence grows; restarting from stage 1 or 2 with
// the cached lists must give the reference's restart on the same cached input.
TEST_P(HipMaskGpuTest, RestartFromCachedStagesEqualsCpuReference) {
  const MaskCase& c = GetParam();
  const HipConfig cfg = ConfigFor(c);
  const PruningSpec spec = PruningSpecForLayer(cfg, 5);
  constexpr int kGrow = 45;
  const Problem pr = MakeProblem(c, kGrow, 2000 + c.lens[0]);
  const RopeTable rope = MakeRope(RopePositionsFor(cfg, pr.max_len), pr.hd);
  GpuRunner gpu(pr, cfg, spec, rope);
  ASSERT_TRUE(gpu.Run(0).ok());
  const GpuLists first = gpu.Read();
  std::vector<int32_t> grown = pr.kv_len;
  for (int32_t& l : grown) l += kGrow;
  gpu.SetLens(grown);
  for (int start = spec.num_stages() - 1; start >= 1; --start) {
    // Re-establish the cached lists of the full run (stage `start` - 1 is still cached; the
    // later ones are overwritten by the previous iteration, which does not matter).
    ASSERT_TRUE(gpu.Run(start).ok());
    const GpuLists g = gpu.Read();
    for (int b = 0; b < pr.batch; ++b) {
      for (int h = 0; h < pr.kv_heads; ++h) {
        const int list = b * pr.kv_heads + h;
        const MaskEstimationResult full = Reference(pr, cfg, spec, rope, b, h, pr.kv_len[b]);
        // The cached input equals the reference's (checked by the other test; re-check here).
        ExpectEqualLists(first, full, spec, list, 0, "first run");
        const MaskEstimationResult ref =
            Reference(pr, cfg, spec, rope, b, h, grown[b], start, &full.kept[start - 1]);
        ExpectEqualLists(g, ref, spec, list, start,
                         absl::StrCat("restart from ", start, " b", b, " kvh", h));
      }
    }
  }
}

std::string Name(const ::testing::TestParamInfo<MaskCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    Cases, HipMaskGpuTest,
    ::testing::Values(
        MaskCase{"t4k", {4096}},
        MaskCase{
            "t4k_b2_needle", {4096, 3001}, 32, 8, 128, PruningPositions::kRelative, Keys::kNeedle},
        MaskCase{"t64k", {65536 + 77}, 16, 4},
        MaskCase{"t64k_needle", {65536}, 16, 4, 128, PruningPositions::kRelative, Keys::kNeedle},
        MaskCase{"t256k", {262144 + 5}, 8, 2},
        MaskCase{"t256k_needle", {262144}, 8, 2, 128, PruningPositions::kRelative, Keys::kNeedle},
        MaskCase{"small_t4k_relative",
                 {4096 + 3, 2500},
                 8,
                 2,
                 128,
                 PruningPositions::kRelative,
                 Keys::kRandom,
                 true},
        MaskCase{
            "small_t4k_real", {4096 + 3}, 8, 2, 128, PruningPositions::kReal, Keys::kRandom, true},
        MaskCase{"small_t4k_chunk_indexed",
                 {4096 + 3},
                 8,
                 2,
                 128,
                 PruningPositions::kChunkIndexed,
                 Keys::kRandom,
                 true},
        MaskCase{
            "small_t4k_g1", {4096}, 4, 4, 128, PruningPositions::kRelative, Keys::kRandom, true},
        MaskCase{
            "small_t4k_g3", {4096}, 6, 2, 128, PruningPositions::kRelative, Keys::kRandom, true},
        MaskCase{
            "small_t4k_g8", {4096}, 16, 2, 128, PruningPositions::kRelative, Keys::kRandom, true},
        MaskCase{
            "small_t4k_hd64", {4096}, 8, 2, 64, PruningPositions::kRelative, Keys::kRandom, true},
        MaskCase{"small_t4k_hd64_g8",
                 {4096},
                 16,
                 2,
                 64,
                 PruningPositions::kRelative,
                 Keys::kRandom,
                 true},
        MaskCase{"small_t4k_ties",
                 {4096},
                 8,
                 2,
                 128,
                 PruningPositions::kRelative,
                 Keys::kAllEqual,
                 true},
        MaskCase{"small_short",
                 {1234, 1202, 90, 1},
                 8,
                 2,
                 128,
                 PruningPositions::kRelative,
                 Keys::kRandom,
                 true}),
    Name);

using R = Stage1Representatives;

MaskCase WithReps(MaskCase c, std::vector<R> reps, bool differs = false) {
  for (R r : reps) absl::StrAppend(&c.name, "_", Stage1RepresentativesName(r));
  c.reps = std::move(reps);
  c.differs_from_probes = differs;
  return c;
}
MaskCase Named(MaskCase c, const std::string& suffix) {
  c.name += suffix;
  return c;
}
MaskCase Mean8(MaskCase c) {
  c.mean_block_size = 8;
  return Named(std::move(c), "_mean8");
}
MaskCase Window(MaskCase c, int n_window) {
  c.n_window = n_window;
  return Named(std::move(c), absl::StrCat("_window", n_window));
}
MaskCase Fp8(MaskCase c) {
  c.fp8 = true;
  return Named(std::move(c), "_fp8");
}

constexpr PruningPositions kRel = PruningPositions::kRelative;
constexpr PruningPositions kChunk = PruningPositions::kChunkIndexed;
constexpr PruningPositions kReal = PruningPositions::kReal;

// Small spec at 4K (every stage prunes; n_sink = 16, so stage 1's 64-key chunks straddle two
// 64-key pages), two sequences.
MaskCase Small(PruningPositions pos, int heads = 8, int kv_heads = 2, int hd = 128) {
  return MaskCase{absl::StrCat("small_t4k_", PruningPositionsName(pos), "_h", heads, "_kv",
                               kv_heads, "_hd", hd),
                  {4096 + 3, 2500},
                  heads,
                  kv_heads,
                  hd,
                  pos,
                  Keys::kRandom,
                  true};
}
// The "3K" preset at `len` keys (stage 1 prunes above ~34K, stage 2 above ~9.5K).
MaskCase Preset(int len, PruningPositions pos, int heads = 16, int kv_heads = 4) {
  return MaskCase{absl::StrCat("t", len, "_", PruningPositionsName(pos)),
                  {len},
                  heads,
                  kv_heads,
                  128,
                  pos,
                  Keys::kRandom,
                  false};
}

const std::vector<R> kPB3 = {R::kPageBound, R::kPageBound, R::kPageBound};
const std::vector<R> kBM3 = {R::kBlockMeans, R::kBlockMeans, R::kBlockMeans};
const std::vector<R> kEX3 = {R::kExact, R::kExact, R::kExact};
const std::vector<R> kPBPBEX = {R::kPageBound, R::kPageBound, R::kExact};
const std::vector<R> kBMBMEX = {R::kBlockMeans, R::kBlockMeans, R::kExact};
const std::vector<R> kPREXEX = {R::kProbes, R::kExact, R::kExact};
const std::vector<R> kPBBMBM = {R::kPageBound, R::kBlockMeans, R::kBlockMeans};

// Stage representatives (docs/HIP_NOTES.md 7) at every stage: page bounds (relative, chunk-
// indexed with the row un-rotated per chunk, real positions with the pair-norm bound), block
// means (16 and 8 keys), exact scores, and mixes; small windows leave the last page open (scored
// key by key, and closed by the restart test's growth); fp8 keys; GQA 1..8, head_dim 64 / 128;
// 64K and 256K with the "3K" preset.
INSTANTIATE_TEST_SUITE_P(
    Representatives, HipMaskGpuTest,
    ::testing::Values(
        WithReps(Small(kRel), kPB3), WithReps(Small(kRel), kBM3), WithReps(Small(kRel), kEX3),
        WithReps(Small(kRel), kPBPBEX), WithReps(Small(kRel), kPREXEX),
        WithReps(Small(kRel), kPBBMBM), WithReps(Mean8(Small(kRel)), kBM3),
        WithReps(Small(kChunk), kPB3), WithReps(Small(kChunk), kBM3), WithReps(Small(kChunk), kEX3),
        WithReps(Small(kChunk), kBMBMEX), WithReps(Mean8(Small(kChunk)), kBM3),
        WithReps(Small(kReal), kPB3), WithReps(Small(kReal), kBM3), WithReps(Small(kReal), kEX3),
        WithReps(Small(kReal), kPBPBEX), WithReps(Small(kRel, 4, 4), kPB3),
        WithReps(Small(kRel, 6, 2), kBM3), WithReps(Small(kChunk, 16, 2), kPB3),
        WithReps(Small(kRel, 16, 2, 64), kPBPBEX), WithReps(Small(kChunk, 16, 2, 64), kBM3),
        WithReps(Small(kReal, 8, 2, 64), kPB3), WithReps(Window(Small(kRel), 8), kPB3),
        WithReps(Window(Small(kChunk), 8), kPB3), WithReps(Window(Small(kReal), 8), kPB3),
        WithReps(Window(Small(kRel), 0), kPBBMBM), WithReps(Window(Small(kChunk), 8), kBM3),
        WithReps(Fp8(Small(kRel)), kPB3), WithReps(Fp8(Small(kChunk)), kBM3),
        WithReps(Fp8(Small(kReal)), kEX3), WithReps(Fp8(Small(kRel, 16, 2, 64)), kPBBMBM),
        WithReps(MaskCase{"small_short", {1234, 1202, 90, 1}, 8, 2, 128, kRel, Keys::kRandom, true},
                 kPB3),
        WithReps(
            MaskCase{"small_short", {1234, 1202, 90, 1}, 8, 2, 128, kChunk, Keys::kRandom, true},
            kBMBMEX),
        WithReps(MaskCase{"small_ties", {4096}, 8, 2, 128, kRel, Keys::kAllEqual, true}, kPB3),
        WithReps(MaskCase{"small_ties", {4096}, 8, 2, 128, kChunk, Keys::kAllEqual, true}, kBM3),
        WithReps(MaskCase{"t4k_b2_needle", {4096, 3001}, 32, 8, 128, kRel, Keys::kNeedle}, kPBPBEX),
        WithReps(Preset(65536 + 77, kRel), kPB3, true),
        WithReps(Preset(65536 + 77, kRel), kBM3, true),
        WithReps(Preset(65536 + 77, kRel), kPBPBEX, true),
        WithReps(Preset(65536 + 77, kRel), kBMBMEX, true),
        WithReps(Preset(65536 + 77, kRel), kPREXEX, true),
        WithReps(Mean8(Preset(65536 + 77, kRel)), kBM3, true),
        WithReps(Preset(65536 + 5, kChunk), kPB3, true),
        WithReps(Preset(65536 + 5, kChunk), kBM3, true),
        WithReps(Preset(65536 + 5, kChunk), kPBPBEX, true),
        WithReps(Preset(65536 + 5, kReal), kPB3, true),
        WithReps(Preset(65536 + 5, kReal), kBMBMEX, true),
        WithReps(Fp8(Preset(65536, kRel)), kPBPBEX, true),
        WithReps(MaskCase{"t64k_needle", {65536}, 16, 4, 128, kRel, Keys::kNeedle}, kBM3),
        WithReps(Preset(262144 + 5, kRel, 8, 2), kPB3, true),
        WithReps(Preset(262144 + 5, kRel, 8, 2), kBM3, true),
        WithReps(Preset(262144 + 5, kRel, 8, 2), kEX3, true),
        WithReps(Preset(262144, kChunk, 8, 2), kPBPBEX, true)),
    Name);

// Per-sequence refresh: sequence 1 (stage -1) keeps its lists while sequence 0 restarts.
TEST(HipMaskGpuSeqStage, SequencesKeepTheirOwnLists) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  MaskCase c{"seq", {4096, 4096}, 8, 2, 128, PruningPositions::kRelative, Keys::kRandom, true};
  const HipConfig cfg = ConfigFor(c);
  const PruningSpec spec = PruningSpecForLayer(cfg, 5);
  const Problem pr = MakeProblem(c, 50, 77);
  const RopeTable rope = MakeRope(RopePositionsFor(cfg, pr.max_len), pr.hd);
  GpuRunner gpu(pr, cfg, spec, rope);
  ASSERT_TRUE(gpu.Run(0).ok());
  const GpuLists before = gpu.Read();
  gpu.SetLens({4096 + 50, 4096 + 50});
  gpu.SetSeqStages({1, -1});
  ASSERT_TRUE(gpu.Run(1, gpu.seq_stage()).ok());
  const GpuLists after = gpu.Read();
  for (int s = 0; s < spec.num_stages(); ++s) {
    for (int h = 0; h < pr.kv_heads; ++h) {
      const int list = pr.kv_heads + h;  // sequence 1: untouched
      EXPECT_EQ(after.count[s][list], before.count[s][list]);
      for (int i = 0; i < spec.keep_chunks(s); ++i) {
        const int64_t e = int64_t{list} * spec.keep_chunks(s) + i;
        EXPECT_EQ(after.starts[s][e], before.starts[s][e]) << "stage " << s;
      }
    }
  }
  for (int h = 0; h < pr.kv_heads; ++h) {
    const MaskEstimationResult full = Reference(pr, cfg, spec, rope, 0, h, 4096);
    const MaskEstimationResult ref =
        Reference(pr, cfg, spec, rope, 0, h, 4096 + 50, 1, &full.kept[0]);
    ExpectEqualLists(after, ref, spec, h, 1, "sequence 0");
  }
}

TEST(HipMaskGpuArgs, RejectsUnsupportedShapes) {
  PruningSpec spec = PruningSpecForLayer(HipConfig{}, 5);
  HipDecodeMaskGpuParams p;
  p.batch = 1;
  p.num_heads = 32;
  p.num_kv_heads = 8;
  p.head_dim = 96;
  p.max_kv_len = 4096;
  p.spec = &spec;
  absl::StatusOr<size_t> ws = HipDecodeMaskWorkspaceBytes(p);
  if (ws.status().code() == absl::StatusCode::kUnimplemented) GTEST_SKIP() << "CPU build";
  EXPECT_EQ(ws.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ws.status().message().find("64, 128"), std::string::npos) << ws.status();
  p.head_dim = 128;
  p.num_heads = 80;  // group 10
  EXPECT_EQ(HipDecodeMaskWorkspaceBytes(p).status().code(), absl::StatusCode::kInvalidArgument);
  p.num_heads = 32;
  EXPECT_TRUE(HipDecodeMaskWorkspaceBytes(p).ok());
  p.start_stage = 3;
  EXPECT_EQ(HipDecodeMaskWorkspaceBytes(p).status().code(), absl::StatusCode::kInvalidArgument);
  p.start_stage = 0;
  // Null pointers are rejected before any launch.
  EXPECT_EQ(HipDecodeMaskGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::kernels
