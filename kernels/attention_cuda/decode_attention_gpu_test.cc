// Dense and BSA decode attention on the GPU against fp32 CPU references (ctest -L gpu).
// Dense: DenseAttentionRef per sequence. BSA: a small oracle below (exact softmax over an
// explicit sorted key-position list: sink + selected 8-key blocks + window, each key once).
// Pass rule (CONVENTIONS): max and mean error <= 2x those of a naive bf16 implementation
// (PyTorch-eager style: bf16 scores, bf16 probabilities, bf16 output) + a rounding atol; no NaN.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/attention_cuda/decode_test_util.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

constexpr uint16_t kBf16NaN = 0x7fc0;
constexpr int kGapRows = 3;  // NaN rows before every sequence: out-of-range reads show as NaN

using decode_test::DeviceBuffer;

struct DecodeCase {
  std::string name;
  int heads, kv_heads, head_dim;
  std::vector<int> lens;  // one per sequence
  int num_splits = 0;     // 0 = automatic
  // BSA only (bsa = false: dense).
  bool bsa = false;
  int n_sink = 256, n_window = 1024;
  int max_blocks = 0;   // blocks drawn per (sequence, kv head): between max_blocks/2 and max
  int block_shift = 0;  // block starts are 8 * i + block_shift
};

std::vector<float> RandomBf16(int64_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v = testing::RandomVector(n, seed, lo, hi);
  RoundToBf16InPlace(v.data(), n);
  return v;
}

std::vector<uint16_t> ToBf16(const std::vector<float>& f) {
  std::vector<uint16_t> b(f.size());
  FloatToBf16Array(f.data(), b.data(), static_cast<int64_t>(f.size()));
  return b;
}

// Attention of one query row over the key rows `pos` (already resolved positions).
// Double: the high-precision oracle. Naive bf16: scores and probabilities rounded to bf16
// (fp32 arithmetic in between), output rounded to bf16.
template <bool kNaiveBf16>
void AttendOver(const float* q, const float* k_base, const float* v_base, int64_t row_stride,
                const std::vector<int>& pos, int d, float scale, double* out) {
  std::vector<double> s(pos.size());
  double mx = -INFINITY;
  for (size_t j = 0; j < pos.size(); ++j) {
    const float* k = k_base + pos[j] * row_stride;
    if (kNaiveBf16) {
      float dot = 0.f;
      for (int x = 0; x < d; ++x) dot += q[x] * k[x];
      s[j] = RoundToBf16(RoundToBf16(dot) * scale);
    } else {
      double dot = 0;
      for (int x = 0; x < d; ++x) dot += static_cast<double>(q[x]) * k[x];
      s[j] = dot * scale;
    }
    mx = std::max(mx, s[j]);
  }
  double z = 0;
  for (double& e : s) z += (e = std::exp(e - mx));
  std::vector<double> acc(d, 0.0);
  for (size_t j = 0; j < pos.size(); ++j) {
    const double p = kNaiveBf16 ? RoundToBf16(static_cast<float>(s[j] / z)) : s[j] / z;
    const float* v = v_base + pos[j] * row_stride;
    for (int x = 0; x < d; ++x) acc[x] += p * v[x];
  }
  for (int x = 0; x < d; ++x)
    out[x] = kNaiveBf16 ? RoundToBf16(static_cast<float>(acc[x])) : acc[x];
}

// The BSA key list of one (sequence, kv head), in the order sink, blocks, window, each key once.
std::vector<int> BsaPositions(int seq_len, int n_sink, int n_window, const int32_t* starts,
                              int count) {
  const int n_s = std::min(n_sink, seq_len);
  const int win_start = std::max(seq_len - 1 - n_window, n_s);
  std::vector<int> pos;
  for (int i = 0; i < n_s; ++i) pos.push_back(i);
  for (int b = 0; b < count; ++b) {
    for (int o = 0; o < kBsaBlockSize; ++o) {
      const int p = starts[b] + o;
      if (p >= n_s && p < win_start) pos.push_back(p);
    }
  }
  for (int p = win_start; p < seq_len; ++p) pos.push_back(p);
  return pos;
}

class DecodeAttentionGpuTest : public ::testing::TestWithParam<DecodeCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(DecodeAttentionGpuTest, MatchesReference) {
  const DecodeCase& c = GetParam();
  const int batch = static_cast<int>(c.lens.size());
  const int d = c.head_dim;
  const int group = c.heads / c.kv_heads;
  const int64_t row = int64_t{c.kv_heads} * d;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the case name: fixed per case
  for (char ch : c.name) seed = (seed ^ static_cast<unsigned char>(ch)) * 1099511628211ull;

  // Packed K/V with NaN gap rows before each sequence.
  std::vector<int64_t> kv_start(batch);
  int64_t rows = 0;
  for (int b = 0; b < batch; ++b) {
    rows += kGapRows;
    kv_start[b] = rows;
    rows += c.lens[b];
  }
  std::vector<float> k = RandomBf16(rows * row, seed + 1, -2.f, 2.f);
  std::vector<float> v = RandomBf16(rows * row, seed + 2, -1.f, 1.f);
  for (int b = 0; b < batch; ++b) {
    for (int64_t r = kv_start[b] - kGapRows; r < kv_start[b]; ++r) {
      std::fill(k.begin() + r * row, k.begin() + (r + 1) * row, NAN);
      std::fill(v.begin() + r * row, v.begin() + (r + 1) * row, NAN);
    }
  }
  const std::vector<float> q = RandomBf16(int64_t{batch} * c.heads * d, seed + 3, -2.f, 2.f);
  const int64_t out_n = int64_t{batch} * c.heads * d;

  // Block lists (BSA): random distinct blocks anywhere in [0, T), including ones that overlap
  // the sink, the window or run past T; unused entries hold garbage that must not be read.
  const int max_blocks = c.max_blocks;
  std::vector<int32_t> starts(std::max<int64_t>(int64_t{batch} * c.kv_heads * max_blocks, 1),
                              -123456);
  std::vector<int32_t> counts(int64_t{batch} * c.kv_heads, 0);
  if (c.bsa) {
    testing::Rng rng(seed + 4);
    for (int b = 0; b < batch; ++b) {
      const int n_cand =
          std::max(0, (c.lens[b] - c.block_shift + kBsaBlockSize - 1) / kBsaBlockSize);
      for (int h = 0; h < c.kv_heads; ++h) {
        std::vector<int> idx(n_cand);
        for (int i = 0; i < n_cand; ++i) idx[i] = i;
        for (int i = n_cand - 1; i > 0; --i) std::swap(idx[i], idx[rng.Next() % (i + 1)]);
        const int want = max_blocks / 2 + static_cast<int>(rng.Next() % (max_blocks / 2 + 1));
        const int cnt = std::min(want, n_cand);
        std::sort(idx.begin(), idx.begin() + cnt);
        int32_t* row_starts = &starts[(int64_t{b} * c.kv_heads + h) * max_blocks];
        for (int i = 0; i < cnt; ++i) row_starts[i] = idx[i] * kBsaBlockSize + c.block_shift;
        counts[b * c.kv_heads + h] = cnt;
      }
    }
  }

  // References.
  std::vector<double> ref(out_n);
  std::vector<double> naive(out_n);
  for (int b = 0; b < batch; ++b) {
    const int T = c.lens[b];
    const float* kb = k.data() + kv_start[b] * row;
    const float* vb = v.data() + kv_start[b] * row;
    if (!c.bsa) {
      std::vector<float> out32 = testing::Poisoned(int64_t{c.heads} * d);
      DenseAttentionParams rp{q.data() + int64_t{b} * c.heads * d,
                              kb,
                              vb,
                              out32.data(),
                              1,
                              T,
                              c.heads,
                              c.kv_heads,
                              d,
                              T - 1,
                              scale};
      ASSERT_TRUE(DenseAttentionRef(rp).ok());
      std::copy(out32.begin(), out32.end(), ref.begin() + int64_t{b} * c.heads * d);
    }
    for (int kvh = 0; kvh < c.kv_heads; ++kvh) {
      std::vector<int> pos;
      if (c.bsa) {
        pos = BsaPositions(T, c.n_sink, c.n_window,
                           &starts[(int64_t{b} * c.kv_heads + kvh) * max_blocks],
                           counts[b * c.kv_heads + kvh]);
      } else {
        for (int t = 0; t < T; ++t) pos.push_back(t);
      }
      for (int g = 0; g < group; ++g) {
        const int h = kvh * group + g;
        const int64_t o = (int64_t{b} * c.heads + h) * d;
        if (c.bsa) {
          AttendOver<false>(q.data() + o, kb + kvh * d, vb + kvh * d, row, pos, d, scale,
                            ref.data() + o);
        }
        AttendOver<true>(q.data() + o, kb + kvh * d, vb + kvh * d, row, pos, d, scale,
                         naive.data() + o);
      }
    }
  }

  // GPU run, twice (bitwise equal: no races, no order dependence).
  DeviceBuffer d_q(ToBf16(q)), d_k(ToBf16(k)), d_v(ToBf16(v));
  DeviceBuffer d_start(kv_start), d_len(c.lens), d_starts(starts), d_counts(counts);
  DeviceBuffer d_out(out_n * sizeof(uint16_t));
  DecodeAttentionGpuParams p;
  p.q = d_q.get();
  p.k = d_k.get();
  p.v = d_v.get();
  p.out = d_out.get();
  p.kv_start = d_start.get<int64_t>();
  p.kv_len = d_len.get<int32_t>();
  p.batch = batch;
  p.num_heads = c.heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = d;
  p.max_kv_len = *std::max_element(c.lens.begin(), c.lens.end());
  p.scale = scale;
  p.num_splits = c.num_splits;
  BsaDecodeGpuParams bp;
  bp.attn = p;
  bp.block_starts = d_starts.get<int32_t>();
  bp.block_count = d_counts.get<int32_t>();
  bp.max_blocks = max_blocks;
  bp.n_sink = c.n_sink;
  bp.n_window = c.n_window;
  const absl::StatusOr<size_t> ws =
      c.bsa ? BsaDecodeAttentionWorkspaceBytes(bp) : DenseDecodeAttentionWorkspaceBytes(p);
  ASSERT_TRUE(ws.ok()) << ws.status();
  DeviceBuffer d_ws(*ws);
  std::vector<uint16_t> results[2];
  for (int run = 0; run < 2; ++run) {
    ASSERT_EQ(cudaMemset(d_ws.get(), 0xff, d_ws.bytes()), cudaSuccess);  // NaN partials
    const std::vector<uint16_t> poison(out_n, kBf16NaN);
    ASSERT_EQ(cudaMemcpy(d_out.get(), poison.data(), out_n * 2, cudaMemcpyHostToDevice),
              cudaSuccess);
    bp.attn.workspace = p.workspace = *ws > 0 ? d_ws.get() : nullptr;
    bp.attn.workspace_bytes = p.workspace_bytes = *ws;
    const absl::Status s =
        c.bsa ? BsaDecodeAttentionGpu(bp, nullptr) : DenseDecodeAttentionGpu(p, nullptr);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    results[run] = d_out.ToHost<uint16_t>(out_n);
  }
  EXPECT_EQ(results[0], results[1]) << "two runs differ";
  std::vector<float> got(out_n);
  Bf16ToFloatArray(results[0].data(), got.data(), out_n);

  // atol: 2^-16, below a bf16 rounding step of any output of magnitude >= 2^-8.
  EXPECT_TRUE(testing::MatchesReference(got, naive, ref, 0x1.0p-16)) << c.name;
  // And the usual relative L2 error of a bf16 output (METHOD.md: bf16 lands 1e-3..1e-2).
  double num = 0, den = 0;
  for (int64_t i = 0; i < out_n; ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  EXPECT_LT(std::sqrt(num / den), 5e-3) << c.name;
}

std::vector<DecodeCase> Cases() {
  std::vector<DecodeCase> v;
  // Dense, "8B layer" heads (32 q, 8 kv, 128).
  v.push_back({"dense_t1", 32, 8, 128, {1}});
  v.push_back({"dense_t100_b2", 32, 8, 128, {100, 37}});
  v.push_back({"dense_t4097_b3", 32, 8, 128, {4097, 1, 2500}});
  v.push_back({"dense_t65536", 32, 8, 128, {65536}});
  v.push_back({"dense_forced7_b2", 32, 8, 128, {1000, 5}, 7});
  v.push_back({"dense_forced256", 32, 8, 128, {4097}, 256});
  v.push_back({"dense_hd64_g3", 9, 3, 64, {300, 1000}});  // SmolLM2-135M heads
  v.push_back({"dense_g8", 16, 2, 128, {777, 3}});
  v.push_back({"dense_mha_hd64", 4, 4, 64, {129}});
  v.push_back({"dense_g5_hd64", 10, 2, 64, {4097}});
  // BSA.
  DecodeCase b;
  b.bsa = true;
  b.heads = 32, b.kv_heads = 8, b.head_dim = 128;
  b.max_blocks = 256;
  b.name = "bsa_t1", b.lens = {1};
  v.push_back(b);
  b.name = "bsa_t100_b2", b.lens = {100, 9}, b.max_blocks = 5;
  v.push_back(b);
  b.name = "bsa_t4097_b2", b.lens = {4097, 3000}, b.max_blocks = 64;
  v.push_back(b);
  b.name = "bsa_t65536", b.lens = {65536}, b.max_blocks = 256;
  v.push_back(b);
  b.name = "bsa_t65536_b3_forced5", b.lens = {65536, 2000, 40000}, b.num_splits = 5;
  v.push_back(b);
  b.num_splits = 0;
  b.name = "bsa_hd64_g3_shift3", b.heads = 9, b.kv_heads = 3, b.head_dim = 64;
  b.lens = {2000, 700}, b.n_sink = 16, b.n_window = 64, b.max_blocks = 20, b.block_shift = 3;
  v.push_back(b);
  b.name = "bsa_no_sink_window1_g8", b.heads = 16, b.kv_heads = 2, b.head_dim = 128;
  b.lens = {5000}, b.n_sink = 0, b.n_window = 1, b.max_blocks = 40, b.block_shift = 0;
  v.push_back(b);
  b.name = "bsa_no_blocks", b.lens = {3000, 100}, b.n_sink = 4, b.n_window = 16, b.max_blocks = 0;
  v.push_back(b);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, DecodeAttentionGpuTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<DecodeCase>& info) {
                           return info.param.name;
                         });

class DecodeAttentionGpuArgsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(DecodeAttentionGpuArgsTest, RejectsUnsupportedShapes) {
  DeviceBuffer buf(1 << 16);
  DecodeAttentionGpuParams p;
  p.q = p.k = p.v = buf.get();
  p.out = buf.get();
  p.kv_start = buf.get<int64_t>();
  p.kv_len = buf.get<int32_t>();
  p.batch = 1, p.num_heads = 32, p.num_kv_heads = 8, p.head_dim = 96, p.max_kv_len = 10;
  p.scale = 0.1f;
  absl::Status s = DenseDecodeAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: 64, 128"), std::string::npos) << s;
  p.head_dim = 128;
  p.num_heads = 128;  // group 16
  s = DenseDecodeAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: 1..8"), std::string::npos) << s;
  p.num_heads = 32;
  p.max_kv_len = 100000;  // needs a workspace
  s = DenseDecodeAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("workspace"), std::string::npos) << s;
  p.scale = 0.f;
  EXPECT_EQ(DenseDecodeAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.scale = 0.1f;
  BsaDecodeGpuParams bp;
  bp.attn = p;
  bp.n_window = -1;
  EXPECT_EQ(BsaDecodeAttentionGpu(bp, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::kernels
