// Dense causal prefill attention on the GPU against the fp32 CPU reference DenseAttentionRef
// (ctest -L gpu). Random bf16 inputs (already "rotated": the kernel takes q/k as stored).
// Pass rule (CONVENTIONS): max and mean error <= 2x those of a naive bf16 implementation
// (bf16 scores, bf16 probabilities, bf16 output) + a rounding atol; no NaN. Outputs are
// poisoned (NaN) before each run, K/V carry NaN rows past the end (an over-read shows), the
// output buffer has NaN guard rows past the end (an over-write shows), and two runs must be
// bitwise equal.
// fp8 e5m2 K/V cases: the bf16 inputs are encoded with kvstore's codec, the device gets the
// codes, and both references run on the DECODED values (the guard rows are NaN codes). Long
// cases (8K-32K keys) compare a sample of the query rows (every `check_stride`-th and the last
// 64) so the CPU references stay fast; every output row is still checked for NaN poison.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/attention_cuda/prefill_attention.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"
#include "kvstore/fp8_e5m2.h"  // header-only codec: the codes the kernel must decode

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;

constexpr int kGuardRows = 67;  // NaN rows past the end of k/v and out

struct PrefillCase {
  std::string name;
  int num_q;
  int q_offset;
  int heads, kv_heads, head_dim;
  KvDtype kv = KvDtype::kBf16;
  int check_stride = 1;  // compare rows i % check_stride == 0 and the last 64
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

std::vector<float> RandomBf16(int64_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v = testing::RandomVector(n, seed, lo, hi);
  RoundToBf16InPlace(v.data(), n);
  return v;
}

// Naive bf16 causal attention of query rows `rows`: scores and probabilities rounded to bf16,
// output rounded to bf16. Result [rows.size(), heads, head_dim].
std::vector<double> NaiveBf16(const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, const PrefillCase& c, float scale,
                              const std::vector<int>& rows) {
  const int d = c.head_dim, group = c.heads / c.kv_heads;
  const int64_t qrow = int64_t{c.heads} * d, kvrow = int64_t{c.kv_heads} * d;
  std::vector<double> out(static_cast<int64_t>(rows.size()) * qrow);
  std::vector<float> s(c.q_offset + c.num_q);
  std::vector<float> acc(d);
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const int i = rows[ri];
    const int n = c.q_offset + i + 1;
    for (int h = 0; h < c.heads; ++h) {
      const float* qi = &q[i * qrow + h * d];
      const int kvh = h / group;
      float mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        const float* kj = &k[j * kvrow + kvh * d];
        float dot = 0.f;
        for (int x = 0; x < d; ++x) dot += qi[x] * kj[x];
        s[j] = RoundToBf16(RoundToBf16(dot) * scale);
        mx = std::max(mx, s[j]);
      }
      float z = 0.f;
      for (int j = 0; j < n; ++j) z += (s[j] = std::exp(s[j] - mx));
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int j = 0; j < n; ++j) {
        const float p = RoundToBf16(s[j] / z);
        const float* vj = &v[j * kvrow + kvh * d];
        for (int x = 0; x < d; ++x) acc[x] += p * vj[x];
      }
      for (int x = 0; x < d; ++x) out[ri * qrow + h * d + x] = RoundToBf16(acc[x]);
    }
  }
  return out;
}

class PrefillAttentionGpuTest : public ::testing::TestWithParam<PrefillCase> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(PrefillAttentionGpuTest, MatchesReference) {
  const PrefillCase& c = GetParam();
  const int d = c.head_dim;
  const int num_kv = c.q_offset + c.num_q;
  const int64_t qrow = int64_t{c.heads} * d, kvrow = int64_t{c.kv_heads} * d;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of the case name: fixed per case
  for (char ch : c.name) seed = (seed ^ static_cast<unsigned char>(ch)) * 1099511628211ull;

  const std::vector<float> q = RandomBf16(c.num_q * qrow, seed + 1, -2.f, 2.f);
  std::vector<float> k = RandomBf16((num_kv + kGuardRows) * kvrow, seed + 2, -2.f, 2.f);
  std::vector<float> v = RandomBf16((num_kv + kGuardRows) * kvrow, seed + 3, -1.f, 1.f);
  std::fill(k.begin() + num_kv * kvrow, k.end(), NAN);
  std::fill(v.begin() + num_kv * kvrow, v.end(), NAN);
  const bool fp8 = c.kv == KvDtype::kFp8E5m2;
  // fp8: k / v become the decoded values (the references' inputs); NaN guards -> NaN codes.
  std::vector<uint8_t> k8, v8;
  if (fp8) {
    k8 = RoundToFp8InPlace(k);
    v8 = RoundToFp8InPlace(v);
  }

  // References on the checked rows.
  std::vector<int> rows;
  for (int i = 0; i < c.num_q; ++i) {
    if (i % c.check_stride == 0 || i >= c.num_q - 64) rows.push_back(i);
  }
  const int64_t out_n = c.num_q * qrow;
  std::vector<double> ref(rows.size() * qrow);
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const int i = rows[ri];
    std::vector<float> ref32 = testing::Poisoned(qrow);
    DenseAttentionParams rp{
        q.data() + i * qrow, k.data(), v.data(),       ref32.data(), 1, c.q_offset + i + 1, c.heads,
        c.kv_heads,          d,        c.q_offset + i, scale};
    ASSERT_TRUE(DenseAttentionRef(rp).ok());
    std::copy(ref32.begin(), ref32.end(), ref.begin() + ri * qrow);
  }
  const std::vector<double> naive = NaiveBf16(q, k, v, c, scale, rows);

  // GPU run, twice.
  DeviceVec<uint16_t> d_q(testing::ToBf16(q));
  DeviceVec<uint16_t> d_k(fp8 ? std::vector<uint16_t>(8) : testing::ToBf16(k));
  DeviceVec<uint16_t> d_v(fp8 ? std::vector<uint16_t>(8) : testing::ToBf16(v));
  DeviceVec<uint8_t> d_k8(fp8 ? k8 : std::vector<uint8_t>(16));
  DeviceVec<uint8_t> d_v8(fp8 ? v8 : std::vector<uint8_t>(16));
  const std::vector<uint16_t> poison(out_n + kGuardRows * qrow, testing::kBf16NaN);
  DeviceVec<uint16_t> d_out(poison);
  DensePrefillAttentionGpuParams p;
  p.q = d_q.data();
  p.k = fp8 ? static_cast<const void*>(d_k8.data()) : d_k.data();
  p.v = fp8 ? static_cast<const void*>(d_v8.data()) : d_v.data();
  p.kv_dtype = c.kv;
  p.out = d_out.data();
  p.num_q = c.num_q;
  p.q_offset = c.q_offset;
  p.num_heads = c.heads;
  p.num_kv_heads = c.kv_heads;
  p.head_dim = d;
  p.scale = scale;
  std::vector<uint16_t> results[2];
  for (int run = 0; run < 2; ++run) {
    ASSERT_EQ(cudaMemcpy(d_out.data(), poison.data(), poison.size() * 2, cudaMemcpyHostToDevice),
              cudaSuccess);
    const absl::Status s = DensePrefillAttentionGpu(p, nullptr);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    results[run] = d_out.ToHost();
  }
  EXPECT_EQ(results[0], results[1]) << "two runs differ";
  for (size_t i = out_n; i < results[0].size(); ++i) {
    ASSERT_EQ(results[0][i], testing::kBf16NaN) << "write past the end at " << i;
  }
  results[0].resize(out_n);
  const std::vector<float> all = testing::ToFloat(results[0]);
  int64_t nan_outputs = 0;
  for (const float x : all) nan_outputs += std::isnan(x) ? 1 : 0;
  EXPECT_EQ(nan_outputs, 0) << "unwritten or NaN outputs";
  std::vector<float> got(rows.size() * qrow);
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    std::copy(all.begin() + rows[ri] * qrow, all.begin() + (rows[ri] + 1) * qrow,
              got.begin() + ri * qrow);
  }

  // atol: 2^-16, below a bf16 rounding step of any output of magnitude >= 2^-8.
  EXPECT_TRUE(testing::MatchesReference(got, naive, ref, 0x1.0p-16)) << c.name;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  EXPECT_LT(std::sqrt(num / den), 5e-3) << c.name;
}

std::vector<PrefillCase> Cases() {
  std::vector<PrefillCase> v;
  for (int hd : {64, 128}) {
    const std::string h = "_hd" + std::to_string(hd);
    v.push_back({"t1_mha" + h, 1, 0, 2, 2, hd});
    v.push_back({"t17_g4" + h, 17, 0, 8, 2, hd});
    v.push_back({"t64_mha" + h, 64, 0, 3, 3, hd});
    v.push_back({"t1000_g4" + h, 1000, 0, 8, 2, hd});
    v.push_back({"t1000_mha" + h, 1000, 0, 2, 2, hd});
    v.push_back({"t4096_g4" + h, 4096, 0, 4, 1, hd});
    v.push_back({"chunk300_off700_g4" + h, 300, 700, 8, 2, hd});
    v.push_back({"chunk1_off4095_g4" + h, 1, 4095, 8, 2, hd});
  }
  v.push_back({"chunk129_off37_mha_hd128", 129, 37, 2, 2, 128});
  // fp8 e5m2 K/V: GQA 1 / 4 / 8, both head dims, short prompts, chunk and causal edges.
  const KvDtype f8 = KvDtype::kFp8E5m2;
  for (int hd : {64, 128}) {
    const std::string h = "_hd" + std::to_string(hd);
    v.push_back({"fp8_t1_mha" + h, 1, 0, 2, 2, hd, f8});
    v.push_back({"fp8_t17_g4" + h, 17, 0, 8, 2, hd, f8});
    v.push_back({"fp8_t1000_mha" + h, 1000, 0, 2, 2, hd, f8});
    v.push_back({"fp8_t1000_g4" + h, 1000, 0, 8, 2, hd, f8});
    v.push_back({"fp8_t1000_g8" + h, 1000, 0, 16, 2, hd, f8});
    v.push_back({"fp8_chunk300_off700_g4" + h, 300, 700, 8, 2, hd, f8});
    v.push_back({"fp8_chunk1_off4095_g8" + h, 1, 4095, 8, 1, hd, f8});
  }
  v.push_back({"fp8_chunk129_off37_mha_hd128", 129, 37, 2, 2, 128, f8});
  // Long: 8K-32K keys (sampled query rows).
  v.push_back({"fp8_t8192_g8_hd128", 8192, 0, 8, 1, 128, f8, 64});
  v.push_back({"fp8_t16384_g4_hd64", 16384, 0, 4, 1, 64, f8, 128});
  v.push_back({"fp8_t32768_mha_hd128", 32768, 0, 2, 2, 128, f8, 512});
  v.push_back({"fp8_chunk128_off32640_g4_hd128", 128, 32640, 8, 2, 128, f8});
  v.push_back({"fp8_chunk77_off8180_g8_hd64", 77, 8180, 8, 1, 64, f8});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, PrefillAttentionGpuTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<PrefillCase>& info) {
                           return info.param.name;
                         });

class PrefillAttentionGpuArgsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(PrefillAttentionGpuArgsTest, RejectsUnsupportedShapes) {
  DeviceVec<uint16_t> buf(std::vector<uint16_t>(1 << 15));
  DensePrefillAttentionGpuParams p;
  p.q = p.k = p.v = p.out = buf.data();
  p.num_q = 4, p.num_heads = 8, p.num_kv_heads = 2, p.head_dim = 96, p.scale = 0.1f;
  absl::Status s = DensePrefillAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: 64, 128"), std::string::npos) << s;
  p.head_dim = 64;
  EXPECT_TRUE(DensePrefillAttentionGpu(p, nullptr).ok());
  p.num_heads = 7;
  EXPECT_EQ(DensePrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.num_heads = 8, p.q_offset = -1;
  EXPECT_EQ(DensePrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.q_offset = 0, p.scale = 0.f;
  EXPECT_EQ(DensePrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.scale = 0.1f, p.num_q = 0;
  EXPECT_EQ(DensePrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  p.num_q = 4, p.kv_dtype = static_cast<KvDtype>(7);
  s = DensePrefillAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: bf16, fp8_e5m2"), std::string::npos) << s;
  p.kv_dtype = KvDtype::kFp8E5m2;
  EXPECT_TRUE(DensePrefillAttentionGpu(p, nullptr).ok());
  p.k = static_cast<const uint8_t*>(p.k) + 8;  // fp8 rows still need 16-byte alignment
  EXPECT_EQ(DensePrefillAttentionGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// One key (a one-query prefill): the softmax weight is exactly 1, so the output is V as decoded,
// i.e. exactly kvstore's Fp8E5m2ToBf16 of every code (NaN codes give NaN, +-Inf stay +-Inf;
// -0 may come out as +0 after the fp32 accumulation, which compares equal). K goes through the
// same decoder (DecodeTileFp8); the random cases above cover its values.
TEST_F(PrefillAttentionGpuArgsTest, Fp8DecodesEveryCodeLikeTheKvstoreCodec) {
  constexpr int kHeads = 2, kD = 128;                           // 256 values: every code once
  std::vector<uint8_t> k8(kHeads * kD, 0x3c), v8(kHeads * kD);  // K = 1.0
  for (int i = 0; i < kHeads * kD; ++i) v8[i] = static_cast<uint8_t>(i);
  const std::vector<uint16_t> q(kHeads * kD, FloatToBf16(0.5f));
  DeviceVec<uint16_t> d_q(q);
  DeviceVec<uint8_t> d_k(k8), d_v(v8);
  DeviceVec<uint16_t> d_out(std::vector<uint16_t>(kHeads * kD, testing::kBf16NaN));
  DensePrefillAttentionGpuParams p;
  p.q = d_q.data();
  p.k = d_k.data();
  p.v = d_v.data();
  p.kv_dtype = KvDtype::kFp8E5m2;
  p.out = d_out.data();
  p.num_q = 1, p.num_heads = kHeads, p.num_kv_heads = kHeads, p.head_dim = kD, p.scale = 0.125f;
  ASSERT_TRUE(DensePrefillAttentionGpu(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<float> out = testing::ToFloat(d_out.ToHost());
  int checked = 0;
  for (int c = 0; c < 256; ++c) {
    const float want = Bf16ToFloat(kvstore::Fp8E5m2ToBf16(static_cast<uint8_t>(c)));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(out[c])) << "code " << c;
    } else {
      EXPECT_EQ(out[c], want) << "code " << c;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 256);
}

}  // namespace
}  // namespace hipserve::kernels
