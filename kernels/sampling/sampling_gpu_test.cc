// SampleGpu against SampleRef on the same fp32 logits (ctest -L gpu): the token must be
// identical for every row, seed and option set; the logprob within 1e-5 (+1e-6 relative).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/sampling/sampling.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;

constexpr int32_t kPoisonToken = -7;

struct GpuResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

GpuResult RunGpu(const std::vector<float>& logits, int batch, int vocab, int64_t row_stride,
                 const std::vector<SamplingOptions>& options) {
  DeviceVec<float> d_logits(logits);
  DeviceVec<SamplingOptions> d_options(options);
  DeviceVec<int32_t> d_tokens(std::vector<int32_t>(batch, kPoisonToken));
  DeviceVec<float> d_logprobs(testing::Poisoned(batch));
  SamplingGpuParams p;
  p.logits = d_logits.data();
  p.batch = batch;
  p.vocab = vocab;
  p.row_stride = row_stride;
  p.options = d_options.data();
  p.tokens = d_tokens.data();
  p.logprobs = d_logprobs.data();
  const absl::Status s = SampleGpu(p, nullptr);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {d_tokens.ToHost(), d_logprobs.ToHost()};
}

// Logits shaped like a model's: a broad body plus a few strong candidates, optionally with a
// share of -inf (masked) entries. Ties are rare (values are continuous fp32).
std::vector<float> MakeLogits(int batch, int vocab, int64_t stride, uint64_t seed,
                              double masked_share) {
  testing::Rng rng(seed);
  std::vector<float> logits(batch * stride, std::nanf(""));  // padding is NaN: must be unread
  for (int r = 0; r < batch; ++r) {
    float* row = logits.data() + r * stride;
    for (int i = 0; i < vocab; ++i) row[i] = rng.Uniform(-4.f, 4.f);
    for (int j = 0; j < 1 + vocab / 500; ++j) row[rng.Next() % vocab] += rng.Uniform(2.f, 10.f);
    if (masked_share > 0) {
      for (int i = 0; i < vocab; ++i) {
        if (rng.Uniform(0.f, 1.f) < masked_share) row[i] = -INFINITY;
      }
      row[rng.Next() % vocab] = 3.f;  // at least one finite entry
    }
  }
  return logits;
}

void ExpectMatchesRef(const std::vector<float>& logits, int batch, int vocab, int64_t stride,
                      const std::vector<SamplingOptions>& options, const GpuResult& gpu,
                      const std::string& label) {
  for (int r = 0; r < batch; ++r) {
    const absl::StatusOr<SampleResult> ref =
        SampleRef(logits.data() + r * stride, vocab, options[r]);
    ASSERT_TRUE(ref.ok()) << ref.status();
    EXPECT_EQ(gpu.tokens[r], ref->token) << label << " row " << r << " seed " << options[r].seed
                                         << " index " << options[r].sample_index;
    EXPECT_LE(std::fabs(gpu.logprobs[r] - ref->logprob), 1e-5 + 1e-6 * std::fabs(ref->logprob))
        << label << " row " << r << " gpu " << gpu.logprobs[r] << " ref " << ref->logprob;
  }
}

struct OptionSet {
  const char* name;
  float temperature, top_p;
  int top_k;  // -1: vocab + 5 (larger than the vocab: off)
};
constexpr OptionSet kOptionSets[] = {
    {"greedy", 0.f, 1.f, 0},           {"t1", 1.f, 1.f, 0},
    {"t07_k50", 0.7f, 1.f, 50},        {"t1_p09", 1.f, 0.9f, 0},
    {"t08_k40_p095", 0.8f, 0.95f, 40}, {"t13_k1", 1.3f, 1.f, 1},
    {"t05_kbig", 0.5f, 1.f, -1},       {"t1_p001", 1.f, 0.01f, 0},
    {"t2_k1000_p05", 2.f, 0.5f, 1000}, {"t025", 0.25f, 1.f, 0},
};

using Case = std::tuple<int, int>;  // vocab, option set index

class SampleGpuTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(SampleGpuTest, MatchesRefExactly) {
  const auto [vocab, set_index] = GetParam();
  const OptionSet& set = kOptionSets[set_index];
  const int batch = vocab >= 100000 ? 12 : 32;
  const std::vector<float> logits =
      MakeLogits(batch, vocab, vocab, 1000 + vocab + set_index, /*masked_share=*/0.0);
  std::vector<SamplingOptions> options(batch);
  for (int r = 0; r < batch; ++r) {
    options[r].temperature = set.temperature;
    options[r].top_p = set.top_p;
    options[r].top_k = set.top_k < 0 ? vocab + 5 : set.top_k;
    options[r].seed = 0x1234567ull * (r + 1) + set_index;
    options[r].sample_index = r * 3 + vocab;
  }
  const GpuResult gpu = RunGpu(logits, batch, vocab, vocab, options);
  ExpectMatchesRef(logits, batch, vocab, vocab, options, gpu, set.name);
}

INSTANTIATE_TEST_SUITE_P(Cases, SampleGpuTest,
                         ::testing::Combine(::testing::Values(1, 7, 1000, 32000, 151936),
                                            ::testing::Range(0, 10)),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return absl::StrCat("vocab", std::get<0>(info.param), "_",
                                               kOptionSets[std::get<1>(info.param)].name);
                         });

class SampleGpuEdgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// One logits row, 1024 seeds per option set: every draw identical to SampleRef's.
TEST_F(SampleGpuEdgeTest, ManySeedsSameLogits) {
  const int vocab = 4096, batch = 1024;
  const std::vector<float> one = MakeLogits(1, vocab, vocab, 77, 0.0);
  std::vector<float> logits;
  for (int r = 0; r < batch; ++r) logits.insert(logits.end(), one.begin(), one.end());
  for (const OptionSet& set : kOptionSets) {
    std::vector<SamplingOptions> options(batch);
    for (int r = 0; r < batch; ++r) {
      options[r] = {set.temperature, set.top_p, set.top_k < 0 ? vocab + 5 : set.top_k,
                    static_cast<uint64_t>(r), static_cast<uint64_t>(r % 7)};
    }
    const GpuResult gpu = RunGpu(logits, batch, vocab, vocab, options);
    ExpectMatchesRef(logits, batch, vocab, vocab, options, gpu, set.name);
  }
}

// Exact ties (logits from 4 values), masked entries and a padded row stride whose padding is NaN.
TEST_F(SampleGpuEdgeTest, TiesMasksAndRowStride) {
  const int vocab = 3000, batch = 64;
  const int64_t stride = vocab + 13;
  std::vector<float> logits = MakeLogits(batch, vocab, stride, 5, /*masked_share=*/0.2);
  testing::Rng rng(9);
  for (int r = 0; r < batch / 2; ++r) {  // first half: heavy ties, some -0 and +0
    for (int i = 0; i < vocab; ++i) {
      float& l = logits[r * stride + i];
      if (l != -INFINITY) l = static_cast<float>(rng.Next() % 4) - 1.f;
      if (l == 0.f && rng.Next() % 2 == 0) l = -0.f;
    }
  }
  for (const OptionSet& set : kOptionSets) {
    std::vector<SamplingOptions> options(batch);
    for (int r = 0; r < batch; ++r) {
      options[r] = {set.temperature, set.top_p, set.top_k < 0 ? vocab + 5 : set.top_k,
                    static_cast<uint64_t>(r * 1000 + 1), 5};
    }
    const GpuResult gpu = RunGpu(logits, batch, vocab, stride, options);
    ExpectMatchesRef(logits, batch, vocab, stride, options, gpu, set.name);
  }
}

// Rows SampleRef rejects get token -1 and a NaN logprob; their neighbours are unaffected.
TEST_F(SampleGpuEdgeTest, InvalidRowsGiveMinusOne) {
  const int vocab = 500, batch = 8;
  std::vector<float> logits = MakeLogits(batch, vocab, vocab, 3, 0.0);
  std::vector<SamplingOptions> options(batch, SamplingOptions{0.9f, 0.9f, 20, 1, 2});
  logits[1 * vocab + 17] = std::nanf("");
  logits[2 * vocab + 400] = INFINITY;
  for (int i = 0; i < vocab; ++i) logits[3 * vocab + i] = -INFINITY;
  options[4].top_p = 0.f;
  options[5].temperature = -1.f;
  options[6].top_k = -2;
  const GpuResult gpu = RunGpu(logits, batch, vocab, vocab, options);
  for (int r = 1; r <= 6; ++r) {
    EXPECT_FALSE(SampleRef(logits.data() + r * vocab, vocab, options[r]).ok()) << r;
    EXPECT_EQ(gpu.tokens[r], -1) << r;
    EXPECT_TRUE(std::isnan(gpu.logprobs[r])) << r;
  }
  for (int r : {0, 7}) {
    const absl::StatusOr<SampleResult> ref =
        SampleRef(logits.data() + r * vocab, vocab, options[r]);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(gpu.tokens[r], ref->token) << r;
  }
}

TEST_F(SampleGpuEdgeTest, InvalidParams) {
  SamplingGpuParams p;
  EXPECT_EQ(SampleGpu(p, nullptr).code(), absl::StatusCode::kInvalidArgument);
  float dummy = 0;
  SamplingOptions o;
  int32_t t = 0;
  p.logits = &dummy;
  p.options = &o;
  p.tokens = &t;
  p.batch = 1;
  p.vocab = 0;
  absl::Status s = SampleGpu(p, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("vocab"), std::string::npos) << s;
  p.vocab = 1 << 24;
  EXPECT_NE(SampleGpu(p, nullptr).message().find("vocab"), std::string::npos);
  p.vocab = 10;
  p.row_stride = 5;
  EXPECT_NE(SampleGpu(p, nullptr).message().find("row_stride"), std::string::npos);
  p.row_stride = 0;
  p.batch = 0;
  EXPECT_NE(SampleGpu(p, nullptr).message().find("batch"), std::string::npos);
}

}  // namespace
}  // namespace hipserve::kernels
