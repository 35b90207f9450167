// CandidatesGpu against CandidatesRef (ctest -L gpu): counts, flags, max and every candidate pair
// identical; the fp64 normalisers within 1e-12 relative (different summation order); two runs
// bit-identical. Rows: continuous, tie-heavy (with -0/+0), masked, NaN / +inf, empty shards,
// padded strides, id offsets, c from 1 to the cap.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/device.h"
#include "kernels/sampling/candidates.h"
#include "kernels/testing/compare.h"
#include "kernels/testing/device_vec.h"

namespace hipserve::kernels {
namespace {

using testing::DeviceVec;

double DoubleAt(const int32_t* w) {
  double d;
  std::memcpy(&d, w, 8);
  return d;
}

struct Case {
  int rows, cols, stride, c;
  int64_t id_begin;
  int shape;  // 0 continuous, 1 ties with signed zeros, 2 masked 90%, 3 with NaN / +inf
};

std::vector<float> MakeRows(const Case& k, uint64_t seed) {
  testing::Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(k.rows) * k.stride + 1, std::nanf(""));  // padding
  for (int r = 0; r < k.rows; ++r) {
    float* row = v.data() + static_cast<int64_t>(r) * k.stride;
    for (int i = 0; i < k.cols; ++i) {
      switch (k.shape) {
        case 1:
          row[i] = static_cast<float>(static_cast<int>(rng.Next() % 5) - 2);
          if (row[i] == 0.f && (rng.Next() & 1)) row[i] = -0.f;
          break;
        case 2:
          row[i] = rng.Uniform(0.f, 1.f) < 0.9f ? -INFINITY : rng.Uniform(-5.f, 5.f);
          break;
        default:
          row[i] = rng.Uniform(-8.f, 8.f);
      }
    }
    if (k.shape == 3 && k.cols > 0) row[rng.Next() % k.cols] = (r & 1) ? INFINITY : std::nanf("");
  }
  return v;
}

void RunCase(const Case& k, const std::string& label) {
  const std::vector<float> logits = MakeRows(k, 1234 + k.cols + k.c);
  std::vector<float> temps(k.rows);
  for (int r = 0; r < k.rows; ++r) temps[r] = (r % 3 == 0) ? 0.f : 0.25f + 0.5f * r;
  const int words = CandidateRecordWords(k.c);
  DeviceVec<float> d_logits(logits);
  DeviceVec<float> d_temps(temps);
  std::vector<int32_t> poison(static_cast<size_t>(k.rows) * words, 0x7f7f7f7f);
  DeviceVec<int32_t> d_rec(poison);
  CandidatesGpuParams p;
  p.logits = d_logits.data();
  p.rows = k.rows;
  p.cols = k.cols;
  p.row_stride = k.stride;
  p.id_begin = k.id_begin;
  p.c = k.c;
  p.temperatures = d_temps.data();
  p.records = d_rec.data();
  ASSERT_TRUE(CandidatesGpu(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<int32_t> gpu = d_rec.ToHost();
  ASSERT_TRUE(CandidatesGpu(p, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(d_rec.ToHost(), gpu) << label << ": not deterministic";
  std::vector<int32_t> ref(words);
  for (int r = 0; r < k.rows; ++r) {
    ASSERT_TRUE(CandidatesRef(logits.data() + static_cast<int64_t>(r) * k.stride, k.cols,
                              k.id_begin, k.c, temps[r], ref.data())
                    .ok());
    const int32_t* g = gpu.data() + static_cast<int64_t>(r) * words;
    for (int w = 0; w < words; ++w) {
      if (w >= 4 && w < 8) continue;
      ASSERT_EQ(g[w], ref[w]) << label << " row " << r << " word " << w;
    }
    for (int w : {4, 6}) {
      const double a = DoubleAt(g + w), b = DoubleAt(ref.data() + w);
      EXPECT_LE(std::fabs(a - b), 1e-12 * std::fabs(b)) << label << " row " << r << " word " << w;
    }
  }
}

class CandidatesGpuTest : public ::testing::TestWithParam<Case> {};

TEST_P(CandidatesGpuTest, MatchesRef) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  const Case& k = GetParam();
  RunCase(k, absl::StrCat("rows ", k.rows, " cols ", k.cols, " c ", k.c, " shape ", k.shape));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CandidatesGpuTest,
    ::testing::Values(Case{4, 1, 1, 1, 0, 0}, Case{3, 7, 9, 16, 5, 0}, Case{5, 300, 300, 1, 0, 1},
                      Case{5, 300, 301, 256, 100, 1}, Case{8, 5000, 5000, 40, 5000, 0},
                      Case{8, 5000, 5003, 256, 0, 1}, Case{4, 24576, 24576, 256, 24576, 0},
                      Case{4, 75968, 75968, 64, 75968, 0}, Case{3, 75968, 75968, 256, 0, 1},
                      Case{6, 2000, 2000, 50, 0, 2}, Case{6, 2000, 2000, 256, 0, 3},
                      Case{2, 0, 0, 8, 49152, 0}),
    [](const ::testing::TestParamInfo<Case>& i) {
      return absl::StrCat("r", i.param.rows, "_cols", i.param.cols, "_s", i.param.stride, "_c",
                          i.param.c, "_shape", i.param.shape);
    });

TEST(CandidatesGpuArgsTest, BadParamsAreInvalidArgument) {
  CandidatesGpuParams p;
  float dummy = 0;
  int32_t out = 0;
  p.logits = &dummy;
  p.temperatures = &dummy;
  p.records = &out;
  p.rows = 1;
  p.cols = 1;
  p.c = 1;
  auto code = [&](CandidatesGpuParams q) { return CandidatesGpu(q, nullptr).code(); };
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  CandidatesGpuParams q = p;
  q.c = 0;
  EXPECT_EQ(code(q), absl::StatusCode::kInvalidArgument);
  q = p;
  q.c = kMaxSamplingCandidates + 1;
  EXPECT_EQ(code(q), absl::StatusCode::kInvalidArgument);
  q = p;
  q.rows = 0;
  EXPECT_EQ(code(q), absl::StatusCode::kInvalidArgument);
  q = p;
  q.row_stride = -1;
  EXPECT_EQ(code(q), absl::StatusCode::kInvalidArgument);
  q = p;
  q.records = nullptr;
  EXPECT_EQ(code(q), absl::StatusCode::kInvalidArgument);
  q = p;
  q.id_begin = INT32_MAX;
  EXPECT_EQ(code(q), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::kernels
