// Dense split-K decode with fp8 e5m2 K/V against DenseAttentionRef on the decoded values
// (ctest -L gpu), the exact decoding of every e5m2 code through the kernel, and the
// InvalidArgument cases of the KV dtype / RoPE / tiered options.
// Pass rule (CONVENTIONS): max and mean error <= 2x those of a naive bf16 implementation + a
// rounding atol; no NaN. Fixed seeds; outputs and workspaces poisoned before each run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/attention_cuda/decode_attention.h"
#include "kernels/attention_cuda/decode_test_util.h"
#include "kernels/device.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using decode_test::DeviceBuffer;
using decode_test::KvTensor;

constexpr uint16_t kBf16NaN = 0x7fc0;

struct Fp8Case {
  std::string name;
  int heads, kv_heads, head_dim;
  std::vector<int> lens;
  int num_splits = 0;
};

class DenseDecodeFp8GpuTest : public ::testing::TestWithParam<Fp8Case> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(DenseDecodeFp8GpuTest, MatchesReferenceOnDecodedValues) {
  const Fp8Case& c = GetParam();
  const int batch = static_cast<int>(c.lens.size());
  const int d = c.head_dim, group = c.heads / c.kv_heads;
  const int64_t row = int64_t{c.kv_heads} * d;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const uint64_t seed = decode_test::SeedOf(c.name);
  std::vector<int64_t> kv_start(batch);
  int64_t rows = 0;
  for (int b = 0; b < batch; ++b) {
    rows += 2;  // fp8 NaN gap rows
    kv_start[b] = rows;
    rows += c.lens[b];
  }
  KvTensor k = decode_test::MakeKv(rows * row, seed + 1, -2.f, 2.f, true);
  KvTensor v = decode_test::MakeKv(rows * row, seed + 2, -1.f, 1.f, true);
  for (int b = 0; b < batch; ++b) {
    for (int64_t i = (kv_start[b] - 2) * row; i < kv_start[b] * row; ++i)
      k.fp8[i] = v.fp8[i] = 0x7f;
  }
  std::vector<float> q = testing::RandomVector(int64_t{batch} * c.heads * d, seed + 3, -2.f, 2.f);
  RoundToBf16InPlace(q.data(), static_cast<int64_t>(q.size()));
  const int64_t out_n = int64_t{batch} * c.heads * d;

  std::vector<double> ref(out_n), naive(out_n);
  for (int b = 0; b < batch; ++b) {
    const int T = c.lens[b];
    const float* kb = k.values.data() + kv_start[b] * row;
    const float* vb = v.values.data() + kv_start[b] * row;
    std::vector<float> out32 = testing::Poisoned(int64_t{c.heads} * d);
    DenseAttentionParams rp;
    rp.q = q.data() + int64_t{b} * c.heads * d;
    rp.k = kb;
    rp.v = vb;
    rp.out = out32.data();
    rp.num_q = 1;
    rp.num_kv = T;
    rp.num_heads = c.heads;
    rp.num_kv_heads = c.kv_heads;
    rp.head_dim = d;
    rp.q_offset = T - 1;
    rp.scale = scale;
    ASSERT_TRUE(DenseAttentionRef(rp).ok());
    std::copy(out32.begin(), out32.end(), ref.begin() + int64_t{b} * c.heads * d);
    for (int kvh = 0; kvh < c.kv_heads; ++kvh) {
      std::vector<const float*> kp(T), vp(T);
      for (int t = 0; t < T; ++t) {
        kp[t] = kb + t * row + int64_t{kvh} * d;
        vp[t] = vb + t * row + int64_t{kvh} * d;
      }
      for (int g = 0; g < group; ++g) {
        const int64_t o = (int64_t{b} * c.heads + kvh * group + g) * d;
        decode_test::NaiveBf16Attend(q.data() + o, kp, vp, d, scale, naive.data() + o);
      }
    }
  }

  DeviceBuffer d_q(decode_test::ToBf16Bits(q)), d_k(k.fp8), d_v(v.fp8);
  DeviceBuffer d_start(kv_start), d_len(c.lens), d_out(out_n * 2);
  DecodeAttentionGpuParams p;
  p.q = d_q.get();
  p.k = d_k.get();
  p.v = d_v.get();
  p.kv_dtype = KvDtype::kFp8E5m2;
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
  const absl::StatusOr<size_t> ws = DenseDecodeAttentionWorkspaceBytes(p);
  ASSERT_TRUE(ws.ok()) << ws.status();
  DeviceBuffer d_ws(*ws);
  ASSERT_EQ(cudaMemset(d_ws.get(), 0xff, d_ws.bytes()), cudaSuccess);
  const std::vector<uint16_t> poison(out_n, kBf16NaN);
  ASSERT_EQ(cudaMemcpy(d_out.get(), poison.data(), out_n * 2, cudaMemcpyHostToDevice), cudaSuccess);
  p.workspace = *ws > 0 ? d_ws.get() : nullptr;
  p.workspace_bytes = *ws;
  ASSERT_TRUE(DenseDecodeAttentionGpu(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> bits = d_out.ToHost<uint16_t>(out_n);
  std::vector<float> got(out_n);
  Bf16ToFloatArray(bits.data(), got.data(), out_n);
  EXPECT_TRUE(testing::MatchesReference(got, naive, ref, 0x1.0p-16)) << c.name;
  EXPECT_LT(decode_test::RelL2(got, ref), 5e-3) << c.name;
}

std::vector<Fp8Case> Fp8Cases() {
  return {
      {"fp8_dense_t1", 32, 8, 128, {1}},
      {"fp8_dense_t100_b2", 32, 8, 128, {100, 37}},
      {"fp8_dense_t4097_b3", 32, 8, 128, {4097, 1, 2500}},
      {"fp8_dense_t65536", 32, 8, 128, {65536}},
      {"fp8_dense_forced7_b2", 32, 8, 128, {1000, 5}, 7},
      {"fp8_dense_hd64_g3", 9, 3, 64, {300, 1000}},
      {"fp8_dense_g8", 16, 2, 128, {777, 3}},
      {"fp8_dense_mha_hd64", 4, 4, 64, {129}},
      {"fp8_dense_g5_hd64_t262144", 10, 2, 64, {262144}},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, DenseDecodeFp8GpuTest, ::testing::ValuesIn(Fp8Cases()),
                         [](const ::testing::TestParamInfo<Fp8Case>& info) {
                           return info.param.name;
                         });

class DecodeFp8GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// One key (T = 1): the softmax weight is exactly 1, so the output is V as decoded, rounded to
// bf16, i.e. exactly kvstore's Fp8E5m2ToBf16 of every code (NaN codes give NaN; -0 may come
// out as +0 after the fp32 accumulation, which compares equal).
TEST_F(DecodeFp8GpuTest, DecodesEveryCodeLikeTheKvstoreCodec) {
  const int kv_heads = 2, d = 128;  // 256 values: every code once
  std::vector<uint8_t> vcodes(kv_heads * d), kcodes(kv_heads * d, 0x3c);  // K = 1.0
  for (int i = 0; i < 256; ++i) vcodes[i] = static_cast<uint8_t>(i);
  const std::vector<uint16_t> q(kv_heads * d, FloatToBf16(0.5f));
  const std::vector<int64_t> start = {0};
  const std::vector<int32_t> len = {1};
  DeviceBuffer d_q(q), d_k(kcodes), d_v(vcodes), d_start(start), d_len(len), d_out(256 * 2);
  DecodeAttentionGpuParams p;
  p.q = d_q.get();
  p.k = d_k.get();
  p.v = d_v.get();
  p.kv_dtype = KvDtype::kFp8E5m2;
  p.out = d_out.get();
  p.kv_start = d_start.get<int64_t>();
  p.kv_len = d_len.get<int32_t>();
  p.batch = 1, p.num_heads = kv_heads, p.num_kv_heads = kv_heads, p.head_dim = d;
  p.max_kv_len = 1, p.scale = 0.125f;
  ASSERT_EQ(DenseDecodeAttentionWorkspaceBytes(p).value_or(1), 0u);
  ASSERT_TRUE(DenseDecodeAttentionGpu(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> out = d_out.ToHost<uint16_t>(256);
  int checked = 0;
  for (int c = 0; c < 256; ++c) {
    const float want = Bf16ToFloat(kvstore::Fp8E5m2ToBf16(static_cast<uint8_t>(c)));
    const float got = Bf16ToFloat(out[c]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
    } else {
      EXPECT_EQ(got, want) << "code " << c;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 256);
}

TEST_F(DecodeFp8GpuTest, RejectsUnsupportedOptions) {
  DeviceBuffer buf(1 << 16);
  DecodeAttentionGpuParams p;
  p.q = p.k = p.v = buf.get();
  p.out = buf.get();
  p.kv_start = buf.get<int64_t>();
  p.kv_len = buf.get<int32_t>();
  p.batch = 1, p.num_heads = 32, p.num_kv_heads = 8, p.head_dim = 128, p.max_kv_len = 10;
  p.scale = 0.1f;
  p.kv_dtype = static_cast<KvDtype>(7);
  absl::Status s = DenseDecodeAttentionGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: bf16, fp8_e5m2"), std::string::npos) << s;
  BsaDecodeGpuParams bp;
  bp.attn = p;
  bp.block_count = buf.get<int32_t>();
  s = BsaDecodeAttentionGpu(bp, nullptr);
  EXPECT_NE(s.message().find("supported: bf16, fp8_e5m2"), std::string::npos) << s;
  bp.attn.kv_dtype = KvDtype::kFp8E5m2;
  bp.rope = buf.get<float>();
  bp.rope_positions = 9;  // < max_kv_len
  s = BsaDecodeAttentionGpu(bp, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("rope table covers 9"), std::string::npos) << s;
  bp.rope_positions = 10;
  bp.tiered.slot_table = buf.get<int32_t>();
  bp.tiered.slot_stride = 5;
  s = BsaDecodeAttentionGpu(bp, nullptr);
  EXPECT_NE(s.message().find("slot_stride"), std::string::npos) << s;
  bp.tiered.slot_stride = 10;
  bp.tiered.page_stride = 1;
  s = BsaDecodeAttentionGpu(bp, nullptr);
  EXPECT_NE(s.message().find("bank_k, bank_v and cold_pages"), std::string::npos) << s;
  bp.tiered.page_stride = 0;
  s = BsaDecodeAttentionGpu(bp, nullptr);
  EXPECT_NE(s.message().find("page_stride"), std::string::npos) << s;
  bp.tiered = TieredKvSource{};
  bp.keys_per_step = 5;
  s = BsaDecodeAttentionGpu(bp, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("supported: 0 = auto, 4, 8"), std::string::npos) << s;
}

}  // namespace
}  // namespace hipserve::kernels
