// HiP BSA prefill attention on the GPU against the CPU reference BsaRef (kernels/hip/bsa_ref.cc)
// with q_plan_row = position / 64 - first_block. Pass rule (CONVENTIONS): max and mean error <=
// 2x those of a naive bf16 implementation of the same key sets (queries and keys rotated at the
// reference's positions and rounded to bf16, bf16 scores and probabilities, bf16 output) + a
// rounding atol; no NaN. Outputs NaN-poisoned with guard rows past the end, K/V NaN past num_kv,
// two runs bitwise equal. One case takes its plan from HipPrefillMaskGpu (end to end).
// fp8 e5m2 K/V cases (both extend modes): K/V are encoded with kvstore's codec, the kernel gets
// the codes, BsaRef and the naive reference run on the DECODED values (guard rows: NaN codes).
// Tiered K/V cases (BsaPrefillTieredGpuTest, HIP.md 7): see the section below.
// ctest label gpu; GTEST_SKIP without a device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention_cuda/bsa_prefill.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/hip/bsa.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/prefill_mask.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"
#include "kvstore/fp8_e5m2.h"  // header-only codec: the codes the kernel must decode

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;

constexpr int kGuardRows = 67;

struct BsaPrefillCase {
  std::string name;
  int num_kv, num_q;
  int heads, kv_heads, head_dim;
  int n_sink, n_window, max_blocks;
  bool extend;
  int block_shift = 0;    // block starts = shift + multiple of 8 (non-zero: unaligned, overlaps)
  bool gpu_plan = false;  // plan from HipPrefillMaskGpu (default "3K" preset) instead of random
  KvDtype kv = KvDtype::kBf16;  // K/V dtype given to the kernel
};

// Replaces the (bf16) values of `x` by their fp8 e5m2 rounding and returns the codes.
std::vector<uint8_t> RoundToFp8InPlace(std::vector<float>& x) {
  std::vector<uint8_t> codes(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    codes[i] = kvstore::Bf16ToFp8E5m2(FloatToBf16(x[i]));
    x[i] = Bf16ToFloat(kvstore::Fp8E5m2ToBf16(codes[i]));
  }
  return codes;
}

constexpr int kBlockSize = 8;

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

std::vector<float> RandomBf16(int64_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v = testing::RandomVector(n, seed, lo, hi);
  RoundToBf16InPlace(v.data(), n);
  return v;
}

// Naive bf16 BSA over exactly BsaKeysForQuery's keys and positions.
std::vector<double> NaiveBf16(const BsaParams& p) {
  const int d = p.head_dim, half = d / 2, group = p.num_heads / p.num_kv_heads;
  const int64_t qrow = int64_t{p.num_heads} * d, kvrow = int64_t{p.num_kv_heads} * d;
  std::vector<double> out(int64_t{p.num_q} * qrow);
  BsaKeySet set;
  std::vector<float> kr, qr(d), s, acc(d);
  auto rotate = [&](const float* x, int pos, float* o) {
    p.rope->Rotate(x, pos, o);
    for (int c = 0; c < d; ++c) o[c] = RoundToBf16(o[c]);
  };
  (void)half;
  for (int i = 0; i < p.num_q; ++i) {
    const int32_t pos = p.q_pos[i];
    for (int kh = 0; kh < p.num_kv_heads; ++kh) {
      const int64_t plan = int64_t{p.q_plan_row[i]} * p.num_kv_heads + kh;
      const int count = p.max_blocks > 0 ? p.block_counts[plan] : 0;
      BsaKeysForQuery(pos, p.block_starts + plan * p.max_blocks, count, p.block_size, p.n_sink,
                      p.n_window, p.extend, &set);
      const int n = static_cast<int>(set.keys.size());
      kr.resize(int64_t{n} * d);
      s.resize(n);
      for (int j = 0; j < n; ++j) {
        rotate(p.k + set.keys[j] * kvrow + kh * d, set.rope_positions[j], kr.data() + j * d);
      }
      for (int g = 0; g < group; ++g) {
        const int h = kh * group + g;
        rotate(p.q + i * qrow + h * d, pos, qr.data());
        float mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          float dot = 0.f;
          for (int c = 0; c < d; ++c) dot += qr[c] * kr[j * d + c];
          s[j] = RoundToBf16(RoundToBf16(dot) * p.scale);
          mx = std::max(mx, s[j]);
        }
        float z = 0.f;
        for (int j = 0; j < n; ++j) z += (s[j] = std::exp(s[j] - mx));
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int j = 0; j < n; ++j) {
          const float w = RoundToBf16(s[j] / z);
          const float* vj = p.v + set.keys[j] * kvrow + kh * d;
          for (int c = 0; c < d; ++c) acc[c] += w * vj[c];
        }
        for (int c = 0; c < d; ++c) out[i * qrow + h * d + c] = RoundToBf16(acc[c]);
      }
    }
  }
  return out;
}

class BsaPrefillGpuTest : public ::testing::TestWithParam<BsaPrefillCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(BsaPrefillGpuTest, MatchesBsaRef) {
  const BsaPrefillCase& c = GetParam();
  const int d = c.head_dim;
  const int q_offset = c.num_kv - c.num_q;
  const int64_t qrow = int64_t{c.heads} * d, kvrow = int64_t{c.kv_heads} * d;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the case name: fixed per case
  for (char ch : c.name) seed = (seed ^ static_cast<unsigned char>(ch)) * 1099511628211ull;

  const std::vector<float> q = RandomBf16(c.num_q * qrow, seed + 1, -2.f, 2.f);
  std::vector<float> k = RandomBf16((c.num_kv + kGuardRows) * kvrow, seed + 2, -2.f, 2.f);
  std::vector<float> v = RandomBf16((c.num_kv + kGuardRows) * kvrow, seed + 3, -1.f, 1.f);
  std::fill(k.begin() + c.num_kv * kvrow, k.end(), NAN);
  std::fill(v.begin() + c.num_kv * kvrow, v.end(), NAN);
  const bool fp8 = c.kv == KvDtype::kFp8E5m2;
  ASSERT_FALSE(fp8 && c.gpu_plan) << "the GPU mask reads bf16 keys";
  // fp8: k / v become the decoded values (the references' inputs).
  std::vector<uint8_t> k8(16), v8(16);
  if (fp8) {
    k8 = RoundToFp8InPlace(k);
    v8 = RoundToFp8InPlace(v);
  }
  DeviceVec<uint8_t> d_k8(k8), d_v8(v8);
  absl::StatusOr<RopeTable> rope = RopeTable::Create(Llama3Rope(), d, c.num_kv + 1);
  ASSERT_TRUE(rope.ok()) << rope.status();
  DeviceVec<float> d_rope(HipRopeRows(*rope, c.num_kv));
  DeviceVec<uint16_t> d_q(testing::ToBf16(q)), d_k(testing::ToBf16(k)), d_v(testing::ToBf16(v));

  // The plan.
  const int first_block = q_offset / kBsaPrefillBlockQ;
  const int rows = (c.num_kv - 1) / kBsaPrefillBlockQ - first_block + 1;
  int max_blocks = c.max_blocks;
  std::vector<int32_t> starts, counts;
  std::unique_ptr<DeviceVec<int32_t>> d_starts, d_counts;
  std::unique_ptr<DeviceVec<uint8_t>> d_ws;
  HipConfig cfg;  // default "3K" preset for the GPU plan
  cfg.layer_overrides.clear();
  const PruningSpec spec = PruningSpecForLayer(cfg, 5);
  HipPrefillPlan plan;
  if (c.gpu_plan) {
    ASSERT_EQ(c.n_sink, cfg.n_sink);
    ASSERT_EQ(c.n_window, cfg.n_window);
    HipPrefillMaskGpuParams mp;
    mp.q = d_q.data();
    mp.k = d_k.data();
    mp.num_q = c.num_q;
    mp.q_offset = q_offset;
    mp.num_heads = c.heads;
    mp.num_kv_heads = c.kv_heads;
    mp.head_dim = d;
    mp.n_sink = cfg.n_sink;
    mp.spec = &spec;
    mp.rope = d_rope.data();
    mp.rope_positions = c.num_kv;
    absl::StatusOr<size_t> ws = HipPrefillMaskWorkspaceBytes(mp);
    ASSERT_TRUE(ws.ok()) << ws.status();
    d_ws = std::make_unique<DeviceVec<uint8_t>>(std::vector<uint8_t>(*ws, 0xff));
    mp.workspace = d_ws->data();
    mp.workspace_bytes = *ws;
    absl::StatusOr<HipPrefillPlan> pl = HipPrefillMaskGpu(mp, nullptr);
    ASSERT_TRUE(pl.ok()) << pl.status();
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    plan = *pl;
    max_blocks = plan.max_blocks;
    starts.resize(int64_t{rows} * c.kv_heads * max_blocks);
    counts.resize(int64_t{rows} * c.kv_heads);
    ASSERT_EQ(
        cudaMemcpy(starts.data(), plan.block_starts, starts.size() * 4, cudaMemcpyDeviceToHost),
        cudaSuccess);
    ASSERT_EQ(
        cudaMemcpy(counts.data(), plan.block_count, counts.size() * 4, cudaMemcpyDeviceToHost),
        cudaSuccess);
    int total = 0;
    for (int32_t n : counts) total += n;
    EXPECT_GT(total, 0) << "the mask selected nothing: the case tests no block";
  } else {
    starts.assign(int64_t{rows} * c.kv_heads * std::max(max_blocks, 1), -1);
    counts.assign(int64_t{rows} * c.kv_heads, 0);
    testing::Rng rng(seed + 4);
    for (int r = 0; r < rows; ++r) {
      const int last_pos = std::min(c.num_kv, (first_block + r + 1) * kBsaPrefillBlockQ) - 1;
      std::vector<int32_t> cand;
      for (int32_t s = c.block_shift; s <= last_pos; s += kBlockSize) cand.push_back(s);
      for (int h = 0; h < c.kv_heads; ++h) {
        // Random subset (some rows empty, some full), anywhere in [0, last_pos]: blocks in the
        // sink or the window, and blocks cut by the window, must be handled as BsaRef does.
        const int want = static_cast<int>(rng.Next() % (max_blocks + 1));
        const int n = std::min<int>(want, static_cast<int>(cand.size()));
        for (int i = 0; i < n; ++i) {
          std::swap(cand[i], cand[i + rng.Next() % (cand.size() - i)]);
        }
        std::vector<int32_t> pick(cand.begin(), cand.begin() + n);
        std::sort(pick.begin(), pick.end());
        const int64_t list = int64_t{r} * c.kv_heads + h;
        counts[list] = n;
        std::copy(pick.begin(), pick.end(), starts.begin() + list * std::max(max_blocks, 1));
      }
    }
    d_starts = std::make_unique<DeviceVec<int32_t>>(starts);
    d_counts = std::make_unique<DeviceVec<int32_t>>(counts);
    plan.block_starts = d_starts->data();
    plan.block_count = d_counts->data();
    plan.num_rows = rows;
    plan.first_block = first_block;
    plan.max_blocks = max_blocks;
    plan.block_size = kBlockSize;
  }

  // References: BsaRef (fp32) and the naive bf16 implementation.
  std::vector<int32_t> q_pos(c.num_q), q_row(c.num_q);
  for (int i = 0; i < c.num_q; ++i) {
    q_pos[i] = q_offset + i;
    q_row[i] = q_pos[i] / kBsaPrefillBlockQ - first_block;
  }
  const int64_t out_n = c.num_q * qrow;
  std::vector<float> ref32 = testing::Poisoned(out_n);
  BsaParams bp;
  bp.q = q.data();
  bp.q_pos = q_pos.data();
  bp.q_plan_row = q_row.data();
  bp.num_q = c.num_q;
  bp.num_heads = c.heads;
  bp.num_kv_heads = c.kv_heads;
  bp.head_dim = d;
  bp.k = k.data();
  bp.v = v.data();
  bp.num_kv = c.num_kv;
  bp.block_starts = starts.data();
  bp.block_counts = counts.data();
  bp.num_rows = rows;
  bp.max_blocks = std::max(max_blocks, 1);
  bp.block_size = kBlockSize;
  bp.n_sink = c.n_sink;
  bp.n_window = c.n_window;
  bp.extend = c.extend;
  bp.rope = &*rope;
  bp.scale = scale;
  bp.out = ref32.data();
  const absl::Status rs = BsaRef(bp);
  ASSERT_TRUE(rs.ok()) << rs;
  const std::vector<double> ref = testing::ToDouble(ref32);
  const std::vector<double> naive = NaiveBf16(bp);

  // GPU, twice.
  const std::vector<uint16_t> poison(out_n + kGuardRows * qrow, testing::kBf16NaN);
  DeviceVec<uint16_t> d_out(poison);
  BsaPrefillGpuParams p;
  p.q = d_q.data();
  p.k = fp8 ? static_cast<const void*>(d_k8.data()) : d_k.data();
  p.v = fp8 ? static_cast<const void*>(d_v8.data()) : d_v.data();
  p.kv_dtype = c.kv;
  p.out = d_out.data();
  p.num_q = c.num_q;
  p.q_offset = q_offset;
  p.num_heads = c.heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = d;
  SetBsaPrefillPlan(plan, &p);
  p.n_sink = c.n_sink;
  p.n_window = c.n_window;
  p.extend = c.extend;
  p.rope = d_rope.data();
  p.rope_positions = c.num_kv;
  p.scale = scale;
  std::vector<uint16_t> results[2];
  for (int run = 0; run < 2; ++run) {
    ASSERT_EQ(cudaMemcpy(d_out.data(), poison.data(), poison.size() * 2, cudaMemcpyHostToDevice),
              cudaSuccess);
    const absl::Status s = BsaPrefillAttentionGpu(p, nullptr);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    results[run] = d_out.ToHost();
  }
  EXPECT_EQ(results[0], results[1]) << "two runs differ";
  for (size_t i = out_n; i < results[0].size(); ++i) {
    ASSERT_EQ(results[0][i], testing::kBf16NaN) << "write past the end at " << i;
  }
  results[0].resize(out_n);
  const std::vector<float> got = testing::ToFloat(results[0]);
  // atol: 2^-16, below a bf16 rounding step of any output of magnitude >= 2^-8.
  EXPECT_TRUE(testing::MatchesReference(got, naive, ref, 0x1.0p-16)) << c.name;
}

std::vector<BsaPrefillCase> Cases() {
  std::vector<BsaPrefillCase> v;
  for (bool ext : {true, false}) {
    const std::string e = ext ? "_extend" : "_real";
    for (int hd : {64, 128}) {
      const std::string h = "_hd" + std::to_string(hd);
      v.push_back({"small_g4" + e + h, 1000, 1000, 8, 2, hd, 16, 64, 24, ext});
      v.push_back({"small_g1" + e + h, 700, 700, 2, 2, hd, 16, 64, 24, ext});
      v.push_back({"small_g8" + e + h, 900, 900, 16, 2, hd, 16, 64, 16, ext});
    }
    v.push_back({"small_chunk_off633" + e, 1333, 700, 8, 2, 128, 16, 64, 24, ext});
    v.push_back({"small_shift3_overlaps" + e, 1000, 1000, 8, 2, 128, 16, 64, 40, ext, 3});
    v.push_back({"small_nosink" + e, 800, 800, 4, 1, 128, 0, 100, 30, ext});
    v.push_back({"small_nowindow" + e, 800, 800, 4, 1, 64, 32, 0, 30, ext});
    v.push_back({"small_noblocks" + e, 500, 500, 4, 1, 128, 16, 64, 0, ext});
    v.push_back({"default_t8k_chunk" + e, 8192 + 21, 150, 8, 2, 128, 256, 1024, 256, ext});
  }
  v.push_back({"plan_from_gpu_mask_t16k", 16384 + 3, 200, 8, 2, 128, 256, 1024, 0, true, 0, true});
  // fp8 e5m2 K/V, both extend modes.
  const KvDtype f8 = KvDtype::kFp8E5m2;
  for (bool ext : {true, false}) {
    const std::string e = ext ? "_extend" : "_real";
    for (int hd : {64, 128}) {
      const std::string h = "_hd" + std::to_string(hd);
      v.push_back({"fp8_small_g4" + e + h, 1000, 1000, 8, 2, hd, 16, 64, 24, ext, 0, false, f8});
      v.push_back({"fp8_small_g1" + e + h, 700, 700, 2, 2, hd, 16, 64, 24, ext, 0, false, f8});
      v.push_back({"fp8_small_g8" + e + h, 900, 900, 16, 2, hd, 16, 64, 16, ext, 0, false, f8});
    }
    v.push_back(
        {"fp8_small_chunk_off633" + e, 1333, 700, 8, 2, 128, 16, 64, 24, ext, 0, false, f8});
    v.push_back(
        {"fp8_small_shift3_overlaps" + e, 1000, 1000, 8, 2, 128, 16, 64, 40, ext, 3, false, f8});
    v.push_back({"fp8_default_t8k_chunk" + e, 8192 + 21, 150, 8, 2, 128, 256, 1024, 256, ext, 0,
                 false, f8});
    v.push_back({"fp8_default_t32k_chunk_g8_hd64" + e, 32768 - 5, 100, 8, 1, 64, 256, 1024, 256,
                 ext, 0, false, f8});
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, BsaPrefillGpuTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<BsaPrefillCase>& info) {
                           return info.param.name;
                         });

TEST(BsaPrefillGpuArgs, RejectsBadParams) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  DeviceVec<uint16_t> buf(std::vector<uint16_t>(1 << 15));
  DeviceVec<float> rope(std::vector<float>(128 * 256));
  DeviceVec<int32_t> lists(std::vector<int32_t>(64));
  BsaPrefillGpuParams p;
  p.q = p.k = p.v = p.out = buf.data();
  p.num_q = 4, p.num_heads = 8, p.num_kv_heads = 2, p.head_dim = 96, p.scale = 0.1f;
  p.block_starts = p.block_count = lists.data();
  p.num_rows = 1, p.max_blocks = 4, p.block_size = 8, p.n_sink = 4, p.n_window = 4;
  p.rope = rope.data(), p.rope_positions = 256;
  absl::Status s = BsaPrefillAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: 64, 128"), std::string::npos) << s;
  p.head_dim = 64;
  EXPECT_TRUE(BsaPrefillAttentionGpu(p, nullptr).ok());
  p.num_rows = 2;  // plan geometry does not match the chunk
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.num_rows = 1, p.rope_positions = 3;
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.rope_positions = 256, p.scale = 0.f;
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.scale = 0.1f, p.kv_dtype = static_cast<KvDtype>(3);
  s = BsaPrefillAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: bf16, fp8_e5m2"), std::string::npos) << s;
  p.kv_dtype = KvDtype::kFp8E5m2;
  EXPECT_TRUE(BsaPrefillAttentionGpu(p, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// ---- Tiered K/V (HIP.md 7): slot table -> bank row (bf16 or fp8) or fp8 page in mapped host
// memory. The output must equal, bit for bit, the same kernel on the all-hot contiguous layout
// (kv_dtype = the bank dtype) holding the same decoded values, and pass the CONVENTIONS rule
// against BsaRef on those values (on a sample of queries for large chunks). Poison: bank rows
// no token maps to are NaN, the host row of every HIT token is NaN (a hit must come from the
// bank), page tails past num_kv are NaN.

struct TieredCase {
  std::string name;
  int num_kv, num_q;
  int heads, kv_heads, head_dim;
  int n_sink, n_window, max_blocks;
  bool extend;
  KvDtype bank;     // bank dtype (= kv_dtype of the call)
  double hit;       // fraction of tokens in the bank
  int ref_queries;  // queries checked against BsaRef (the first and last 64, others random)
};

// Host RAM the GPU reads directly: cudaHostAlloc(cudaHostAllocMapped).
class MappedHost {
 public:
  explicit MappedHost(size_t bytes) {
    EXPECT_EQ(cudaHostAlloc(&host_, std::max<size_t>(bytes, 16), cudaHostAllocMapped), cudaSuccess);
    EXPECT_EQ(cudaHostGetDevicePointer(&device_, host_, 0), cudaSuccess);
  }
  ~MappedHost() { cudaFreeHost(host_); }
  MappedHost(const MappedHost&) = delete;
  MappedHost& operator=(const MappedHost&) = delete;
  uint8_t* host() const { return static_cast<uint8_t*>(host_); }
  uint64_t device_address() const { return reinterpret_cast<uint64_t>(device_); }

 private:
  void* host_ = nullptr;
  void* device_ = nullptr;
};

// The tiered source of one case built from fp8 codes k8 / v8 ([num_kv, kv_heads, d]).
struct TieredKv {
  std::unique_ptr<MappedHost> cold;
  std::unique_ptr<DeviceVec<uint8_t>> bank_k, bank_v;
  std::unique_ptr<DeviceVec<int32_t>> slots;
  std::unique_ptr<DeviceVec<uint64_t>> pages;
  TieredKvSource src;
  int64_t hits = 0, total = 0;
};

void BuildTieredKv(const TieredCase& c, const std::vector<uint8_t>& k8,
                   const std::vector<uint8_t>& v8, uint64_t seed, TieredKv* f) {
  const int d = c.head_dim, nh = c.kv_heads;
  const int64_t row = int64_t{nh} * d;
  const int64_t page_stride = (c.num_kv + kKvPageTokens - 1) / kKvPageTokens + 1;
  const int64_t slot_stride = c.num_kv + 5;
  const int64_t page_bytes = int64_t{2} * kKvPageTokens * d;
  const int64_t n_pages = nh * page_stride;
  testing::Rng rng(seed);
  std::vector<int64_t> place(n_pages);  // pages in shuffled order
  for (int64_t i = 0; i < n_pages; ++i) place[i] = i;
  for (int64_t i = n_pages - 1; i > 0; --i) std::swap(place[i], place[rng.Next() % (i + 1)]);
  f->cold = std::make_unique<MappedHost>(n_pages * page_bytes);
  std::fill_n(f->cold->host(), n_pages * page_bytes, uint8_t{0x7f});  // fp8 NaN
  const bool fp8 = c.bank == KvDtype::kFp8E5m2;
  const int64_t sph = c.num_kv + 3;  // bank rows per head
  const int64_t bank_elems = nh * sph * d;
  std::vector<uint8_t> bk(bank_elems * (fp8 ? 1 : 2)), bv(bk.size());
  if (fp8) {
    std::fill(bk.begin(), bk.end(), uint8_t{0x7f});
    std::fill(bv.begin(), bv.end(), uint8_t{0x7f});
  } else {
    std::fill_n(reinterpret_cast<uint16_t*>(bk.data()), bank_elems, testing::kBf16NaN);
    std::fill_n(reinterpret_cast<uint16_t*>(bv.data()), bank_elems, testing::kBf16NaN);
  }
  std::vector<int32_t> slots(nh * slot_stride, -1);
  std::vector<uint64_t> pages(n_pages, 0);
  for (int h = 0; h < nh; ++h) {
    std::vector<int32_t> free_rows(sph);
    for (int64_t i = 0; i < sph; ++i) free_rows[i] = static_cast<int32_t>(h * sph + i);
    for (int64_t i = sph - 1; i > 0; --i) std::swap(free_rows[i], free_rows[rng.Next() % (i + 1)]);
    int64_t used = 0;
    for (int64_t p = 0; p < page_stride; ++p) {
      pages[h * page_stride + p] =
          f->cold->device_address() + place[h * page_stride + p] * page_bytes;
    }
    for (int t = 0; t < c.num_kv; ++t) {
      const int64_t src = t * row + int64_t{h} * d;
      ++f->total;
      const bool hit = c.hit >= 1.0 || (rng.Next() % 1000000) < c.hit * 1000000;
      if (!hit) {
        uint8_t* page = f->cold->host() + place[h * page_stride + t / kKvPageTokens] * page_bytes;
        std::copy_n(k8.data() + src, d, page + (t % kKvPageTokens) * d);
        std::copy_n(v8.data() + src, d, page + (kKvPageTokens + t % kKvPageTokens) * d);
        slots[h * slot_stride + t] = (rng.Next() & 1) ? -1 : -9;  // any negative is absent
        continue;
      }
      const int32_t r = free_rows[used++];
      slots[h * slot_stride + t] = r;
      ++f->hits;
      for (int x = 0; x < d; ++x) {
        if (fp8) {
          bk[int64_t{r} * d + x] = k8[src + x];
          bv[int64_t{r} * d + x] = v8[src + x];
        } else {
          reinterpret_cast<uint16_t*>(bk.data())[int64_t{r} * d + x] =
              kvstore::Fp8E5m2ToBf16(k8[src + x]);
          reinterpret_cast<uint16_t*>(bv.data())[int64_t{r} * d + x] =
              kvstore::Fp8E5m2ToBf16(v8[src + x]);
        }
      }
    }
  }
  f->bank_k = std::make_unique<DeviceVec<uint8_t>>(bk);
  f->bank_v = std::make_unique<DeviceVec<uint8_t>>(bv);
  f->slots = std::make_unique<DeviceVec<int32_t>>(slots);
  f->pages = std::make_unique<DeviceVec<uint64_t>>(pages);
  f->src.bank_k = f->bank_k->data();
  f->src.bank_v = f->bank_v->data();
  f->src.slot_table = f->slots->data();
  f->src.slot_stride = slot_stride;
  f->src.cold_pages = f->pages->data();
  f->src.page_stride = page_stride;
}

// Random plan lists (as MatchesBsaRef draws them): per (row, KV head) up to max_blocks 8-key
// blocks anywhere in [0, last position of the row].
void DrawPlan(const TieredCase& c, int first_block, int rows, uint64_t seed,
              std::vector<int32_t>* starts, std::vector<int32_t>* counts) {
  const int mb = std::max(c.max_blocks, 1);
  starts->assign(int64_t{rows} * c.kv_heads * mb, -1);
  counts->assign(int64_t{rows} * c.kv_heads, 0);
  testing::Rng rng(seed);
  for (int r = 0; r < rows; ++r) {
    const int last_pos = std::min(c.num_kv, (first_block + r + 1) * kBsaPrefillBlockQ) - 1;
    std::vector<int32_t> cand;
    for (int32_t s = 0; s <= last_pos; s += kBlockSize) cand.push_back(s);
    for (int h = 0; h < c.kv_heads; ++h) {
      const int want = c.max_blocks / 2 + static_cast<int>(rng.Next() % (c.max_blocks / 2 + 1));
      const int n = std::min<int>(want, static_cast<int>(cand.size()));
      for (int i = 0; i < n; ++i) std::swap(cand[i], cand[i + rng.Next() % (cand.size() - i)]);
      std::vector<int32_t> pick(cand.begin(), cand.begin() + n);
      std::sort(pick.begin(), pick.end());
      const int64_t list = int64_t{r} * c.kv_heads + h;
      (*counts)[list] = n;
      std::copy(pick.begin(), pick.end(), starts->begin() + list * mb);
    }
  }
}

class BsaPrefillTieredGpuTest : public ::testing::TestWithParam<TieredCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// Runs the kernel on a NaN-poisoned output (with guard rows); returns the output bits.
std::vector<uint16_t> RunPrefill(const BsaPrefillGpuParams& p, int64_t out_n, int64_t guard) {
  std::vector<uint16_t> h(out_n + guard, testing::kBf16NaN);
  DeviceVec<uint16_t> d_out(h);
  BsaPrefillGpuParams q = p;
  q.out = d_out.data();
  const absl::Status s = BsaPrefillAttentionGpu(q, nullptr);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  h = d_out.ToHost();
  for (int64_t i = out_n; i < out_n + guard; ++i) {
    EXPECT_EQ(h[i], testing::kBf16NaN) << "write past the end at " << i;
    if (h[i] != testing::kBf16NaN) break;
  }
  h.resize(out_n);
  return h;
}

TEST_P(BsaPrefillTieredGpuTest, MatchesAllHotAndBsaRef) {
  const TieredCase& c = GetParam();
  const int d = c.head_dim;
  const int q_offset = c.num_kv - c.num_q;
  const int64_t qrow = int64_t{c.heads} * d, kvrow = int64_t{c.kv_heads} * d;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the case name: fixed per case
  for (char ch : c.name) seed = (seed ^ static_cast<unsigned char>(ch)) * 1099511628211ull;

  const std::vector<float> q = RandomBf16(c.num_q * qrow, seed + 1, -2.f, 2.f);
  std::vector<float> k = RandomBf16(c.num_kv * kvrow, seed + 2, -2.f, 2.f);
  std::vector<float> v = RandomBf16(c.num_kv * kvrow, seed + 3, -1.f, 1.f);
  std::vector<uint8_t> k8 = RoundToFp8InPlace(k), v8 = RoundToFp8InPlace(v);  // k, v: decoded
  absl::StatusOr<RopeTable> rope = RopeTable::Create(Llama3Rope(), d, c.num_kv + 1);
  ASSERT_TRUE(rope.ok()) << rope.status();
  DeviceVec<float> d_rope(HipRopeRows(*rope, c.num_kv));
  DeviceVec<uint16_t> d_q(testing::ToBf16(q));

  const int first_block = q_offset / kBsaPrefillBlockQ;
  const int rows = (c.num_kv - 1) / kBsaPrefillBlockQ - first_block + 1;
  std::vector<int32_t> starts, counts;
  DrawPlan(c, first_block, rows, seed + 4, &starts, &counts);
  DeviceVec<int32_t> d_starts(starts), d_counts(counts);

  // All-hot contiguous layout in the bank dtype (NaN guard rows past num_kv).
  const bool fp8 = c.bank == KvDtype::kFp8E5m2;
  std::vector<uint8_t> hot_k8 = k8, hot_v8 = v8;
  hot_k8.resize((c.num_kv + kGuardRows) * kvrow, 0x7f);
  hot_v8.resize(hot_k8.size(), 0x7f);
  std::vector<float> hot_k = k, hot_v = v;
  hot_k.resize(hot_k8.size(), NAN);
  hot_v.resize(hot_k8.size(), NAN);
  std::unique_ptr<DeviceVec<uint8_t>> hk8, hv8;
  std::unique_ptr<DeviceVec<uint16_t>> hk16, hv16;
  BsaPrefillGpuParams p;
  if (fp8) {
    hk8 = std::make_unique<DeviceVec<uint8_t>>(hot_k8);
    hv8 = std::make_unique<DeviceVec<uint8_t>>(hot_v8);
    p.k = hk8->data();
    p.v = hv8->data();
  } else {
    hk16 = std::make_unique<DeviceVec<uint16_t>>(testing::ToBf16(hot_k));
    hv16 = std::make_unique<DeviceVec<uint16_t>>(testing::ToBf16(hot_v));
    p.k = hk16->data();
    p.v = hv16->data();
  }
  p.q = d_q.data();
  p.kv_dtype = c.bank;
  p.num_q = c.num_q;
  p.q_offset = q_offset;
  p.num_heads = c.heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = d;
  p.block_starts = d_starts.data();
  p.block_count = d_counts.data();
  p.num_rows = rows;
  p.first_block = first_block;
  p.max_blocks = std::max(c.max_blocks, 1);
  p.block_size = kBlockSize;
  p.n_sink = c.n_sink;
  p.n_window = c.n_window;
  p.extend = c.extend;
  p.rope = d_rope.data();
  p.rope_positions = c.num_kv;
  p.scale = scale;
  const int64_t out_n = c.num_q * qrow, guard = kGuardRows * qrow;
  const std::vector<uint16_t> hot = RunPrefill(p, out_n, guard);
  ASSERT_EQ(static_cast<int64_t>(hot.size()), out_n);

  TieredKv f;
  BuildTieredKv(c, k8, v8, seed + 5, &f);
  const double frac = static_cast<double>(f.hits) / f.total;
  EXPECT_NEAR(frac, c.hit, 4 * std::sqrt(c.hit * (1 - c.hit) / f.total) + 1e-9)
      << "hits " << f.hits << " / " << f.total;
  BsaPrefillGpuParams tp = p;
  tp.k = tp.v = nullptr;  // must not be read
  tp.tiered = f.src;
  const std::vector<uint16_t> got_bits = RunPrefill(tp, out_n, guard);
  EXPECT_EQ(RunPrefill(tp, out_n, guard), got_bits) << "two tiered runs differ";
  int64_t diff = 0, first_diff = -1;
  for (int64_t i = 0; i < out_n; ++i) {
    if (got_bits[i] != hot[i] && first_diff < 0) first_diff = i;
    diff += got_bits[i] != hot[i];
  }
  EXPECT_EQ(diff, 0) << "tiered differs from all-hot in " << diff << " of " << out_n
                     << " values (first at " << first_diff << "; hits " << f.hits << " / "
                     << f.total << ")";

  // BsaRef and the naive bf16 reference on the decoded values, sampled queries.
  std::vector<int32_t> pick;
  for (int i = 0; i < c.num_q; ++i) {
    if (c.ref_queries >= c.num_q || i < 64 || i >= c.num_q - 64) pick.push_back(i);
  }
  testing::Rng rng(seed + 6);
  for (int n = static_cast<int>(pick.size()); n < std::min(c.ref_queries, c.num_q); ++n) {
    pick.push_back(64 + static_cast<int>(rng.Next() % (c.num_q - 128)));
  }
  std::sort(pick.begin(), pick.end());
  pick.erase(std::unique(pick.begin(), pick.end()), pick.end());
  const int nq = static_cast<int>(pick.size());
  std::vector<float> qs(nq * qrow), got(nq * qrow);
  std::vector<int32_t> q_pos(nq), q_row(nq);
  for (int j = 0; j < nq; ++j) {
    std::copy_n(q.begin() + pick[j] * qrow, qrow, qs.begin() + j * qrow);
    for (int64_t x = 0; x < qrow; ++x)
      got[j * qrow + x] = Bf16ToFloat(got_bits[pick[j] * qrow + x]);
    q_pos[j] = q_offset + pick[j];
    q_row[j] = q_pos[j] / kBsaPrefillBlockQ - first_block;
  }
  std::vector<float> ref32 = testing::Poisoned(nq * qrow);
  BsaParams bp;
  bp.q = qs.data();
  bp.q_pos = q_pos.data();
  bp.q_plan_row = q_row.data();
  bp.num_q = nq;
  bp.num_heads = c.heads;
  bp.num_kv_heads = c.kv_heads;
  bp.head_dim = d;
  bp.k = k.data();
  bp.v = v.data();
  bp.num_kv = c.num_kv;
  bp.block_starts = starts.data();
  bp.block_counts = counts.data();
  bp.num_rows = rows;
  bp.max_blocks = std::max(c.max_blocks, 1);
  bp.block_size = kBlockSize;
  bp.n_sink = c.n_sink;
  bp.n_window = c.n_window;
  bp.extend = c.extend;
  bp.rope = &*rope;
  bp.scale = scale;
  bp.out = ref32.data();
  const absl::Status rs = BsaRef(bp);
  ASSERT_TRUE(rs.ok()) << rs;
  EXPECT_TRUE(testing::MatchesReference(got, NaiveBf16(bp), testing::ToDouble(ref32), 0x1.0p-16))
      << c.name << " (" << nq << " queries checked)";
}

std::vector<TieredCase> TieredCases() {
  const KvDtype b16 = KvDtype::kBf16, f8 = KvDtype::kFp8E5m2;
  std::vector<TieredCase> v;
  // Small (compute-sanitizer): every query checked.
  v.push_back(
      {"small_bf16_hit50_g4_hd128_ext", 700, 700, 8, 2, 128, 16, 64, 24, true, b16, 0.5, 1 << 30});
  v.push_back(
      {"small_fp8_hit50_g4_hd64_real", 700, 700, 8, 2, 64, 16, 64, 24, false, f8, 0.5, 1 << 30});
  v.push_back(
      {"small_fp8_hit0_g1_hd128_real", 600, 400, 2, 2, 128, 16, 64, 24, false, f8, 0.0, 1 << 30});
  v.push_back(
      {"small_bf16_hit90_g8_hd64_ext", 900, 900, 16, 2, 64, 16, 64, 16, true, b16, 0.9, 1 << 30});
  // A 4K chunk at q_offset 4117 of 8213 keys, "3K"-preset sink / window, 256 blocks.
  auto t4k = [&](const std::string& n, int heads, int kvh, int hd, bool ext, KvDtype bank,
                 double hit) {
    v.push_back({"t4k_" + n, 8192 + 21, 4096, heads, kvh, hd, 256, 1024, 256, ext, bank, hit, 192});
  };
  t4k("bf16_hit0_g4_hd128_ext", 8, 2, 128, true, b16, 0.0);
  t4k("bf16_hit50_g1_hd64_real", 2, 2, 64, false, b16, 0.5);
  t4k("bf16_hit90_g8_hd128_real", 8, 1, 128, false, b16, 0.9);
  t4k("bf16_hit100_g4_hd64_ext", 8, 2, 64, true, b16, 1.0);
  t4k("bf16_hit50_g8_hd64_ext", 16, 2, 64, true, b16, 0.5);
  t4k("fp8_hit0_g8_hd64_ext", 8, 1, 64, true, f8, 0.0);
  t4k("fp8_hit50_g4_hd128_ext", 8, 2, 128, true, f8, 0.5);
  t4k("fp8_hit90_g1_hd128_ext", 2, 2, 128, true, f8, 0.9);
  t4k("fp8_hit100_g8_hd128_real", 8, 1, 128, false, f8, 1.0);
  t4k("fp8_hit50_g4_hd64_real", 8, 2, 64, false, f8, 0.5);
  // A 32K chunk (q_offset 67).
  auto t32k = [&](const std::string& n, int heads, int kvh, int hd, bool ext, KvDtype bank,
                  double hit) {
    v.push_back(
        {"t32k_" + n, 32768 + 67, 32768, heads, kvh, hd, 256, 1024, 256, ext, bank, hit, 160});
  };
  t32k("bf16_hit50_g4_hd128_ext", 4, 1, 128, true, b16, 0.5);
  t32k("fp8_hit90_g8_hd64_real", 8, 1, 64, false, f8, 0.9);
  t32k("fp8_hit0_g1_hd128_ext", 1, 1, 128, true, f8, 0.0);
  t32k("bf16_hit100_g8_hd64_real", 8, 1, 64, false, b16, 1.0);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Tiered, BsaPrefillTieredGpuTest, ::testing::ValuesIn(TieredCases()),
                         [](const ::testing::TestParamInfo<TieredCase>& info) {
                           return info.param.name;
                         });

TEST(BsaPrefillGpuArgs, TieredValidation) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  DeviceVec<uint16_t> buf(std::vector<uint16_t>(1 << 15));
  DeviceVec<float> rope(std::vector<float>(64 * 256));
  DeviceVec<int32_t> lists(std::vector<int32_t>(64, 0));
  DeviceVec<int32_t> slots(std::vector<int32_t>(2 * 8, 0));  // every token: bank row 0
  DeviceVec<uint64_t> pages(std::vector<uint64_t>(2, 0));
  BsaPrefillGpuParams p;
  p.q = p.out = buf.data();
  p.num_q = 4, p.num_heads = 8, p.num_kv_heads = 2, p.head_dim = 64, p.scale = 0.1f;
  p.block_starts = p.block_count = lists.data();
  p.num_rows = 1, p.max_blocks = 4, p.block_size = 8, p.n_sink = 4, p.n_window = 4;
  p.rope = rope.data(), p.rope_positions = 256;
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument)
      << "k / v null without a tiered source";
  p.tiered.bank_k = p.tiered.bank_v = buf.data();
  p.tiered.slot_table = slots.data();
  p.tiered.cold_pages = pages.data();
  p.tiered.slot_stride = 8, p.tiered.page_stride = 1;
  EXPECT_TRUE(BsaPrefillAttentionGpu(p, nullptr).ok());
  p.tiered.slot_stride = 3;  // < num_kv
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.tiered.slot_stride = 8, p.tiered.page_stride = 0;
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.tiered.page_stride = 1, p.tiered.cold_pages = nullptr;
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.tiered.cold_pages = pages.data();
  p.tiered.bank_k = reinterpret_cast<const uint8_t*>(buf.data()) + 8;  // misaligned
  EXPECT_EQ(BsaPrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace hipserve::kernels
