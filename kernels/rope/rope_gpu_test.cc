// RopeGpu against RopeRef on the same bf16-rounded inputs (ctest -L gpu), at small positions and
// at positions around 1M, where fp32 angles (HF's) would be off by up to ~0.06 rad.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/dtype/bf16.h"
#include "kernels/rope/rope.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;

RopeConfig MakeConfig(bool llama3) {
  RopeConfig c;
  if (llama3) {  // Llama 3.1 8B
    c.theta = 500000.f;
    c.scaling = RopeScaling::kLlama3;
    c.factor = 8.f;
    c.low_freq_factor = 1.f;
    c.high_freq_factor = 4.f;
    c.original_max_position = 8192;
  }
  return c;
}

// cos/sin of pos * inv_freq[i] as RopeRef computes them (fp64 angles, rounded to fp32), read off
// RopeRef applied to the probe x = (1, ..., 1, 0, ..., 0): it becomes (cos_0.., sin_0..).
std::vector<float> RefCosSin(int32_t pos, int head_dim, const RopeConfig& config) {
  std::vector<float> probe(head_dim, 0.f);
  std::fill(probe.begin(), probe.begin() + head_dim / 2, 1.f);
  RopeParams rp;
  rp.x = probe.data();
  rp.positions = &pos;
  rp.tokens = 1;
  rp.heads = 1;
  rp.head_dim = head_dim;
  rp.config = config;
  EXPECT_TRUE(RopeRef(rp).ok());
  return probe;
}

// Naive bf16 RoPE, HF eager style (cos/sin cast to bf16, every product and sum rounded to
// bf16) but with accurate angles, so the pass rule's bound reflects bf16 storage only and an
// fp32-angle kernel fails at large positions.
std::vector<float> NaiveBf16Rope(const std::vector<float>& x, const std::vector<int32_t>& pos,
                                 int heads, int head_dim, const RopeConfig& config) {
  std::vector<float> out = x;
  const int half = head_dim / 2;
  for (size_t t = 0; t < pos.size(); ++t) {
    const std::vector<float> cs = RefCosSin(pos[t], head_dim, config);
    for (int h = 0; h < heads; ++h) {
      float* v = out.data() + (static_cast<int64_t>(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float c = RoundToBf16(cs[i]);
        const float s = RoundToBf16(cs[i + half]);
        const float x1 = v[i], x2 = v[i + half];
        v[i] = RoundToBf16(RoundToBf16(x1 * c) - RoundToBf16(x2 * s));
        v[i + half] = RoundToBf16(RoundToBf16(x2 * c) + RoundToBf16(x1 * s));
      }
    }
  }
  return out;
}

std::vector<float> RunGpu(const std::vector<float>& x, const std::vector<int32_t>& pos, int heads,
                          int head_dim, const RopeConfig& config, int pad) {
  std::vector<uint16_t> xb(x.size());
  FloatToBf16Array(x.data(), xb.data(), static_cast<int64_t>(x.size()));
  DeviceVec<uint16_t> d_x(xb, pad);
  DeviceVec<int32_t> d_pos(pos);
  RopeGpuParams p;
  p.x = d_x.data();
  p.positions = d_pos.data();
  p.tokens = static_cast<int>(pos.size());
  p.heads = heads;
  p.head_dim = head_dim;
  p.config = config;
  const absl::Status s = RopeGpu(p, nullptr);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<uint16_t> ob = d_x.ToHost();
  std::vector<float> out(ob.size());
  Bf16ToFloatArray(ob.data(), out.data(), static_cast<int64_t>(out.size()));
  return out;
}

void CheckCase(int tokens, int heads, int head_dim, bool llama3, bool large_pos, int pad) {
  const RopeConfig config = MakeConfig(llama3);
  const int64_t n = int64_t{tokens} * heads * head_dim;
  std::vector<float> x = testing::RandomVector(n, 1000 + head_dim * 7 + tokens, -2.f, 2.f);
  RoundToBf16InPlace(x.data(), n);
  testing::Rng rng(55 + tokens + heads);
  std::vector<int32_t> pos(tokens);
  for (int32_t& q : pos) {
    q = static_cast<int32_t>(large_pos ? 1000000 + rng.Next() % 48576 : rng.Next() % 4096);
  }
  if (tokens > 1) pos[1] = large_pos ? (1 << 20) - 1 : 0;

  // x is poisoned implicitly: RopeGpu works in place, so an unwritten element keeps its input
  // value, which is wrong for every position but 0 (and exactly right there).
  const std::vector<float> gpu = RunGpu(x, pos, heads, head_dim, config, pad);

  std::vector<float> ref = x;
  RopeParams rp;
  rp.x = ref.data();
  rp.positions = pos.data();
  rp.tokens = tokens;
  rp.heads = heads;
  rp.head_dim = head_dim;
  rp.config = config;
  ASSERT_TRUE(RopeRef(rp).ok());
  const std::vector<float> naive = NaiveBf16Rope(x, pos, heads, head_dim, config);

  constexpr double kAtol = 0x1.0p-10;
  EXPECT_TRUE(testing::MatchesReference(gpu, naive, testing::ToDouble(ref), kAtol));
  // Within bf16 rounding of the output (|out| < 2*sqrt(2) here): at most one bf16 ulp off.
  const testing::ErrorStats e = testing::Errors(gpu, testing::ToDouble(ref));
  EXPECT_LE(e.max_abs, 0x1.0p-6) << "worst index " << e.worst_index;
}

using Case = std::tuple<int, int, int, bool, bool>;  // tokens, heads, head_dim, llama3, large

class RopeGpuTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(RopeGpuTest, MatchesRef) {
  const auto [tokens, heads, head_dim, llama3, large] = GetParam();
  CheckCase(tokens, heads, head_dim, llama3, large, /*pad=*/0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RopeGpuTest,
    ::testing::Combine(::testing::Values(1, 37), ::testing::Values(1, 8),
                       // 64, 128: 16-byte path; 6, 72: scalar path (half % 8 != 0)
                       ::testing::Values(6, 64, 72, 128), ::testing::Bool(), ::testing::Bool()),
    [](const ::testing::TestParamInfo<Case>& info) {
      return absl::StrCat("tokens", std::get<0>(info.param), "_heads", std::get<1>(info.param),
                          "_hd", std::get<2>(info.param),
                          std::get<3>(info.param) ? "_llama3" : "_plain",
                          std::get<4>(info.param) ? "_pos1M" : "_pos4k");
    });

class RopeGpuEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(RopeGpuEdgeTest, ManyTokensGridStride) {
  CheckCase(/*tokens=*/2600, /*heads=*/2, /*head_dim=*/64, /*llama3=*/true, /*large_pos=*/true,
            /*pad=*/0);
}

TEST_F(RopeGpuEdgeTest, MisalignedFallsBackToScalar) {
  CheckCase(5, 4, 128, /*llama3=*/false, /*large_pos=*/false, /*pad=*/1);
}

TEST_F(RopeGpuEdgeTest, PositionZeroIsIdentity) {
  const int heads = 3, head_dim = 128;
  std::vector<float> x = testing::RandomVector(heads * head_dim, 9, -2.f, 2.f);
  RoundToBf16InPlace(x.data(), static_cast<int64_t>(x.size()));
  const std::vector<float> out = RunGpu(x, {0}, heads, head_dim, MakeConfig(true), 0);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(out[i], x[i]) << i;
}

TEST_F(RopeGpuEdgeTest, InvalidParams) {
  RopeGpuParams p;
  EXPECT_EQ(RopeGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  int dummy = 0;
  p.x = &dummy;
  p.positions = &dummy;
  p.tokens = 1;
  p.heads = 1;
  p.head_dim = 7;
  absl::Status s = RopeGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("head_dim"), std::string::npos) << s;
  p.head_dim = 64;
  p.heads = 0;
  EXPECT_NE(RopeGpu(p, nullptr).message().find("heads"), std::string::npos);
  p.heads = 1;
  p.config.theta = 0.f;
  EXPECT_NE(RopeGpu(p, nullptr).message().find("theta"), std::string::npos);
  p.config = MakeConfig(true);
  p.config.factor = -1.f;
  EXPECT_NE(RopeGpu(p, nullptr).message().find("factor"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::kernels
