// EmbeddingGpu against EmbeddingRef on the same bf16 table (ctest -L gpu). A gather is exact, so
// the pass rule's naive reference is the reference itself and atol is 0: every element must
// match bit for bit, zero rows included.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/embedding/embedding.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;
using testing::kBf16NaN;

// Device copy of a host vector, `pad` elements past a 256-byte aligned base (to misalign).
// num_tokens, hidden, shard (0: whole vocab; 1: a middle shard, so ids fall on both sides)
using Case = std::tuple<int, int, int>;

void CheckCase(int num_tokens, int hidden, bool middle_shard, int pad) {
  constexpr int64_t kVocab = 3000;
  const int64_t begin = middle_shard ? 1000 : 0;
  const int64_t end = middle_shard ? 2000 : kVocab;
  const int64_t rows = end - begin;

  std::vector<float> table = testing::RandomVector(rows * hidden, 7 + hidden, -2.f, 2.f);
  RoundToBf16InPlace(table.data(), static_cast<int64_t>(table.size()));
  std::vector<uint16_t> table_bf16(table.size());
  FloatToBf16Array(table.data(), table_bf16.data(), static_cast<int64_t>(table.size()));

  testing::Rng rng(11 + num_tokens);
  std::vector<int32_t> ids(num_tokens);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng.Next() % kVocab);
  ids[0] = static_cast<int32_t>(begin);        // first row of the shard
  ids.back() = static_cast<int32_t>(end - 1);  // last row of the shard
  if (middle_shard && num_tokens >= 4) {
    ids[1] = static_cast<int32_t>(begin - 1);  // just outside, both sides
    ids[2] = static_cast<int32_t>(end);
  }

  DeviceVec<uint16_t> d_table(table_bf16, pad);
  DeviceVec<int32_t> d_ids(ids);
  DeviceVec<uint16_t> d_out(std::vector<uint16_t>(int64_t{num_tokens} * hidden, kBf16NaN), pad);
  EmbeddingGpuParams p;
  p.table = d_table.data();
  p.vocab_begin = begin;
  p.vocab_end = end;
  p.hidden = hidden;
  p.ids = d_ids.data();
  p.num_tokens = num_tokens;
  p.out = d_out.data();
  const absl::Status s = EmbeddingGpu(p, nullptr);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> out_bf16 = d_out.ToHost();
  std::vector<float> out(out_bf16.size());
  Bf16ToFloatArray(out_bf16.data(), out.data(), static_cast<int64_t>(out.size()));

  std::vector<float> ref = testing::Poisoned(int64_t{num_tokens} * hidden);
  ASSERT_TRUE(
      EmbeddingRef({table.data(), begin, end, hidden, ids.data(), num_tokens, ref.data()}).ok());
  EXPECT_TRUE(testing::MatchesReference(out, ref, testing::ToDouble(ref), /*atol=*/0.0));
}

class EmbeddingGpuTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(EmbeddingGpuTest, MatchesRef) {
  const auto [tokens, hidden, shard] = GetParam();
  CheckCase(tokens, hidden, shard == 1, /*pad=*/0);
}

INSTANTIATE_TEST_SUITE_P(Cases, EmbeddingGpuTest,
                         ::testing::Combine(::testing::Values(1, 5, 300),
                                            // 576/2048/4096: 16-byte path; 7, 100: scalar path
                                            ::testing::Values(7, 100, 576, 2048, 4096),
                                            ::testing::Values(0, 1)),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrCat("tokens", std::get<0>(info.param), "_hidden",
                                               std::get<1>(info.param),
                                               std::get<2>(info.param) ? "_shard" : "_full");
                         });

class EmbeddingGpuEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(EmbeddingGpuEdgeTest, MisalignedPointersFallBackToScalar) {
  CheckCase(17, 256, /*middle_shard=*/true, /*pad=*/1);
}

TEST_F(EmbeddingGpuEdgeTest, NegativeIdGivesZeroRow) {
  DeviceVec<uint16_t> d_table(std::vector<uint16_t>(16, 0x3f80));  // 1.0
  DeviceVec<int32_t> d_ids(std::vector<int32_t>{-5, 1});
  DeviceVec<uint16_t> d_out(std::vector<uint16_t>(16, kBf16NaN));
  EmbeddingGpuParams p{d_table.data(), 0, 2, 8, d_ids.data(), 2, d_out.data()};
  ASSERT_TRUE(EmbeddingGpu(p, nullptr).ok());
  const std::vector<uint16_t> out = d_out.ToHost();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[i], 0) << i;
  for (int i = 8; i < 16; ++i) EXPECT_EQ(out[i], 0x3f80) << i;
}

TEST_F(EmbeddingGpuEdgeTest, InvalidParams) {
  EmbeddingGpuParams p;
  EXPECT_EQ(EmbeddingGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  int dummy = 0;
  p.table = &dummy;
  p.ids = reinterpret_cast<const int32_t*>(&dummy);
  p.out = &dummy;
  p.vocab_begin = 5;
  p.vocab_end = 5;
  p.hidden = 8;
  p.num_tokens = 1;
  absl::Status s = EmbeddingGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("vocab_end"), std::string::npos) << s;
  p.vocab_end = 6;
  p.hidden = 0;
  EXPECT_NE(EmbeddingGpu(p, nullptr).message().find("hidden"), std::string::npos);
  p.hidden = 8;
  p.num_tokens = 0;
  EXPECT_NE(EmbeddingGpu(p, nullptr).message().find("num_tokens"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::kernels
