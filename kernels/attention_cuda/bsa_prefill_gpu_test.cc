// HiP BSA prefill attention on the GPU against the CPU reference BsaRef (kernels/hip/bsa_ref.cc)
// with q_plan_row = position / 64 - first_block. Pass rule (CONVENTIONS): max and mean error <=
// 2x those of a naive bf16 implementation of the same key sets (queries and keys rotated at the
// reference's positions and rounded to bf16, bf16 scores and probabilities, bf16 output) + a
// rounding atol; no NaN. Outputs NaN-poisoned with guard rows past the end, K/V NaN past num_kv,
// two runs bitwise equal. One case takes its plan from HipPrefillMaskGpu (end to end).
// fp8 e5m2 K/V cases (both extend modes): K/V are encoded with kvstore's codec, the kernel gets
// the codes, BsaRef and the naive reference run on the DECODED values (guard rows: NaN codes).
// ctest label gpu; GTEST_SKIP without a device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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
  int block_shift = 0;     // block starts = shift + multiple of 8 (non-zero: unaligned, overlaps)
  bool gpu_plan = false;   // plan from HipPrefillMaskGpu (default "3K" preset) instead of random
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
    ASSERT_EQ(cudaMemcpy(starts.data(), plan.block_starts, starts.size() * 4,
                         cudaMemcpyDeviceToHost),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(counts.data(), plan.block_count, counts.size() * 4,
                         cudaMemcpyDeviceToHost),
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
  v.push_back({"plan_from_gpu_mask_t16k", 16384 + 3, 200, 8, 2, 128, 256, 1024, 0, true, 0,
               true});
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
    v.push_back({"fp8_small_chunk_off633" + e, 1333, 700, 8, 2, 128, 16, 64, 24, ext, 0, false,
                 f8});
    v.push_back({"fp8_small_shift3_overlaps" + e, 1000, 1000, 8, 2, 128, 16, 64, 40, ext, 3,
                 false, f8});
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

}  // namespace
}  // namespace hipserve::kernels
