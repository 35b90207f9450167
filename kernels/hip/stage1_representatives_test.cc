// Stage-1 representatives (HIP.md 2.1, kernels/hip/mask_estimation.h): page bounds and block
// means, their helpers, and what they guarantee against the probes' binary descent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using testing::RandomVector;

RopeTable MakeRope(int head_dim, int positions) {
  RopeConfig rc;
  rc.theta = 10000.f;
  auto t = RopeTable::Create(rc, head_dim, positions);
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

float Dot(const float* a, const float* b, int d) {
  float s = 0.f;
  for (int c = 0; c < d; ++c) s += a[c] * b[c];
  return s;
}

float AbsDot(const float* a, const float* b, int d) {
  float s = 0.f;
  for (int c = 0; c < d; ++c) s += std::fabs(a[c] * b[c]);
  return s;
}

TEST(Stage1HelpersTest, PageMinMaxAndBlockMeanAreTheDefinitions) {
  const int d = 8, n = 64, stride = 2 * d;  // two KV heads interleaved; head 1 used
  std::vector<float> k = RandomVector(int64_t{n} * stride, 5);
  const float* k1 = k.data() + d;
  std::vector<float> mn(d), mx(d), mean(d);
  KeyPageMinMax(k1, stride, d, 3, 40, mn.data(), mx.data());
  BlockMeanKey(k1, stride, d, 5, 16, mean.data());
  for (int c = 0; c < d; ++c) {
    float lo = k1[3 * stride + c], hi = lo;
    for (int j = 3; j < 43; ++j) {
      lo = std::min(lo, k1[j * stride + c]);
      hi = std::max(hi, k1[j * stride + c]);
    }
    EXPECT_EQ(mn[c], lo);
    EXPECT_EQ(mx[c], hi);
    double sum = 0;
    for (int j = 5; j < 21; ++j) sum += k1[j * stride + c];
    EXPECT_NEAR(mean[c], sum / 16, 1e-6) << c;
  }
  // Exactly representable: keys 1..8 in every dimension have mean 4.5.
  std::vector<float> ramp(8 * d);
  for (int j = 0; j < 8; ++j) std::fill_n(ramp.data() + j * d, d, float(j + 1));
  BlockMeanKey(ramp.data(), d, d, 0, 8, mean.data());
  for (float m : mean) EXPECT_EQ(m, 4.5f);
  // A page of one repeated key: the bound is that key's score, bit for bit.
  const float* q = k.data();
  EXPECT_EQ(PageBound(q, k1, k1, d), Dot(q, k1, d));
}

// The page bound is >= q . k for every key of the page at the mode's positions (randomized).
TEST(Stage1HelpersTest, PageBoundIsAnUpperBoundOfEveryKeyInThePage) {
  std::mt19937 rng(17);
  for (int d : {16, 64, 128}) {
    const int n_window = 64;
    RopeTable rope = MakeRope(d, 5000);
    for (int trial = 0; trial < 50; ++trial) {
      const float key_scale = trial % 5 == 0 ? 30.f : 1.f;
      std::vector<float> q = RandomVector(d, 1000 + trial);
      std::vector<float> k = RandomVector(int64_t{kHipPageSize} * d, 2000 + trial);
      // A few large, query-aligned keys so that the bound is sometimes nearly tight.
      for (int j = 0; j < kHipPageSize; j += 9) {
        for (int c = 0; c < d; ++c) k[j * d + c] = key_scale * q[c];
      }
      std::vector<float> mn(d), mx(d), row(d), un(d), kr(d);
      KeyPageMinMax(k.data(), d, d, 0, kHipPageSize, mn.data(), mx.data());
      const int32_t pos = 3000 + static_cast<int32_t>(rng() % 1000);
      const int32_t page_first = static_cast<int32_t>(rng() % 2000);
      const int32_t chunk_index = static_cast<int32_t>(rng() % 2000);
      // kRelative: query at n_window + 1, keys at 0 (not rotated).
      rope.Rotate(q.data(), n_window + 1, row.data());
      const float rel = PageBound(row.data(), mn.data(), mx.data(), d);
      // kChunkIndexed: every key at the chunk's index; the bound un-rotates the row instead.
      rope.Rotate(q.data(), pos, row.data());
      rope.RotateInverse(row.data(), chunk_index, un.data());
      const float chunk = PageBound(un.data(), mn.data(), mx.data(), d);
      const float any = PageBoundAnyRotation(row.data(), mn.data(), mx.data(), d);
      std::vector<float> rrel(d);
      rope.Rotate(q.data(), n_window + 1, rrel.data());
      for (int j = 0; j < kHipPageSize; ++j) {
        const float* kj = k.data() + j * d;
        const float tol = 1e-5f * (AbsDot(rrel.data(), kj, d) + 1.f);
        EXPECT_GE(rel, Dot(rrel.data(), kj, d) - tol) << "relative d=" << d << " key " << j;
        rope.Rotate(kj, chunk_index, kr.data());
        EXPECT_GE(chunk, Dot(row.data(), kr.data(), d) - tol) << "chunk_indexed key " << j;
        rope.Rotate(kj, page_first + j, kr.data());
        EXPECT_GE(any, Dot(row.data(), kr.data(), d) - tol) << "real key " << j;
      }
    }
  }
}

// ---- Stage 1 of EstimateMaskRef with each representative.

constexpr int kHeadDim = 16;
constexpr int kSink = 64;
constexpr int kWindow = 64;

// Stage 1 keeps 4 chunks of 256 (of ~31 at 8000 keys), then 32-key and 8-key stages.
PruningSpec Spec(PruningPositions positions, Stage1Representatives reps, int mean_block = 16) {
  PruningSpec s;
  s.chunk_sizes = {256, 32, 8};
  s.keep_tokens = {1024, 256, 64};
  s.stride_q = {1, 1, 1};
  s.positions = positions;
  s.n_window = kWindow;
  s.stage1 = reps;
  s.mean_block_size = mean_block;
  return s;
}

struct Problem {
  int num_kv = 0, group = 2, num_q = 1;
  std::vector<float> q, k;  // q [num_q][group][d]; k [num_kv][d]
  std::vector<int32_t> q_pos;
};

Problem MakeProblem(int num_kv, uint64_t seed) {
  Problem p;
  p.num_kv = num_kv;
  p.q = RandomVector(int64_t{p.num_q} * p.group * kHeadDim, seed);
  p.k = RandomVector(int64_t{num_kv} * kHeadDim, seed + 1);
  p.q_pos = {num_kv - 1};
  return p;
}

MaskEstimationParams Params(const Problem& pr, const PruningSpec& spec, const RopeTable& rope) {
  MaskEstimationParams p;
  p.q = pr.q.data();
  p.q_token_stride = int64_t{pr.group} * kHeadDim;
  p.q_pos = pr.q_pos.data();
  p.num_q = pr.num_q;
  p.group = pr.group;
  p.head_dim = kHeadDim;
  p.k = pr.k.data();
  p.k_token_stride = kHeadDim;
  p.num_kv = pr.num_kv;
  p.range_begin = kSink;
  p.range_end = std::max(kSink, pr.q_pos.back() - kWindow);
  p.spec = &spec;
  p.rope = &rope;
  return p;
}

// Writes into key j the direction of query 0 (head 0) as the mode scores key j, times `scale`.
void PlantAligned(Problem* pr, const RopeTable& rope, PruningPositions mode, int32_t j,
                  int32_t chunk_index, int n_chunks, float scale) {
  float* key = pr->k.data() + int64_t{j} * kHeadDim;
  const float* q0 = pr->q.data();
  int32_t shift = 0;
  switch (mode) {
    case PruningPositions::kReal:  // R(pos) q . R(j) k
      shift = pr->q_pos[0] - j;
      break;
    case PruningPositions::kRelative:  // R(n_window + 1) q . k (a left probe sits at 0)
      shift = kWindow + 1;
      break;
    case PruningPositions::kChunkIndexed:  // R(min(pos, n_chunks + n_window)) q . R(index) k
      shift = std::min(pr->q_pos[0], n_chunks + kWindow) - chunk_index;
      break;
  }
  rope.Rotate(q0, shift, key);
  for (int c = 0; c < kHeadDim; ++c) key[c] *= scale;
}

bool Has(const std::vector<int32_t>& v, int32_t x) {
  return std::binary_search(v.begin(), v.end(), x);
}

// A chunk whose descent is led away from a high-scoring span: the span is [a, a + 8), key
// a + 192 is weakly aligned (the first split goes right: probes at a + 64 and a + 192), every
// other key of the chunk is zero. Probes never reach the span and drop the chunk; the page
// bound and 8-key block means keep it, and stages 2-3 then find the span's block.
TEST(Stage1RepresentativesTest, SpanHiddenFromTheDescentIsKeptByPageBoundAndBlockMeans) {
  for (PruningPositions mode :
       {PruningPositions::kRelative, PruningPositions::kChunkIndexed, PruningPositions::kReal}) {
    Problem pr = MakeProblem(8000, 77);
    RopeTable rope = MakeRope(kHeadDim, 8000 + kWindow + 2);
    const int n_chunks = (8000 - kWindow - 1 - kSink + 255) / 256;
    const int index = 12;
    const int32_t a = kSink + 256 * index;
    for (int32_t j = a; j < a + 256; ++j) {
      const float scale = j < a + 8 ? 16.f : (j == a + 192 ? 0.05f : 0.f);
      PlantAligned(&pr, rope, mode, j, index, n_chunks, scale);
    }
    for (Stage1Representatives reps :
         {Stage1Representatives::kProbes, Stage1Representatives::kPageBound,
          Stage1Representatives::kBlockMeans}) {
      const PruningSpec spec = Spec(mode, reps, 8);
      MaskEstimationResult r;
      ASSERT_TRUE(EstimateMaskRef(Params(pr, spec, rope), &r).ok());
      const std::string what =
          absl::StrCat(PruningPositionsName(mode), " ", Stage1RepresentativesName(reps));
      if (reps == Stage1Representatives::kProbes) {
        EXPECT_FALSE(Has(r.kept[0].starts, a)) << what << ": the probes' miss this test shows";
      } else {
        EXPECT_TRUE(Has(r.kept[0].starts, a)) << what;
        EXPECT_TRUE(Has(r.block_starts(), a)) << what;
      }
    }
  }
}

// Randomized: a key (or span) scoring above every random page's bound is always kept by stage 1
// with the page bound, in every mode, also in the open last page (range_end = num_kv). The
// probes miss some of the same plants (counted: the test fails if they never do).
TEST(Stage1RepresentativesTest, PageBoundAlwaysKeepsAPlantedHighScoringSpan) {
  std::mt19937 rng(4242);
  int probe_misses = 0, plants = 0;
  for (PruningPositions mode :
       {PruningPositions::kRelative, PruningPositions::kChunkIndexed, PruningPositions::kReal}) {
    for (int trial = 0; trial < 12; ++trial) {
      const int num_kv = 8000 + static_cast<int>(rng() % 64);
      Problem pr = MakeProblem(num_kv, 500 + trial);
      RopeTable rope = MakeRope(kHeadDim, num_kv + kWindow + 2);
      const bool open_page = trial % 4 == 3;  // candidates up to num_kv: an open last page
      const int32_t range_end = open_page ? num_kv : num_kv - 1 - kWindow;
      const int n_chunks = (range_end - kSink + 255) / 256;
      const int len = 1 + static_cast<int>(rng() % 32);
      const int32_t first = open_page
                                ? num_kv - len
                                : kSink + static_cast<int32_t>(rng() % (range_end - kSink - len));
      for (int32_t j = first; j < first + len; ++j) {
        // Keys are in [-1, 1] and rows have |row|_1 <= 16 * |q|_inf <= 16: every random page
        // bounds at most sqrt(2) * 16 < 23; a scale of 8 gives 8 |q0|^2 >= 8 * 16 / 3 ~ 43 typ.
        PlantAligned(&pr, rope, mode, j, (j - kSink) / 256, n_chunks, 12.f);
      }
      for (Stage1Representatives reps :
           {Stage1Representatives::kProbes, Stage1Representatives::kPageBound}) {
        const PruningSpec spec = Spec(mode, reps);
        MaskEstimationParams p = Params(pr, spec, rope);
        p.range_end = range_end;
        MaskEstimationResult r;
        ASSERT_TRUE(EstimateMaskRef(p, &r).ok());
        const int32_t chunk = kSink + (first - kSink) / 256 * 256;
        if (reps == Stage1Representatives::kPageBound) {
          EXPECT_TRUE(Has(r.kept[0].starts, chunk))
              << PruningPositionsName(mode) << " trial " << trial << " span [" << first << ", "
              << first + len << ")";
          ++plants;
        } else if (!Has(r.kept[0].starts, chunk)) {
          ++probe_misses;
        }
      }
    }
  }
  EXPECT_EQ(plants, 36);
  EXPECT_GT(probe_misses, 0) << "expected the probes to miss some short spans";
}

// Block means score the mean key: a chunk whose every 16-key block averages to ~0 loses to a
// chunk holding one block aligned with the query, even when single keys of the former are
// larger than any key of the latter.
TEST(Stage1RepresentativesTest, BlockMeansScoreTheMeanNotTheMax) {
  Problem pr = MakeProblem(8000, 91);
  for (float& x : pr.k) x *= 0.01f;
  RopeTable rope = MakeRope(kHeadDim, 8000 + kWindow + 2);
  const PruningPositions mode = PruningPositions::kRelative;
  const int32_t alternating = kSink + 256 * 3, block = kSink + 256 * 20;
  for (int32_t j = alternating; j < alternating + 256; ++j) {
    PlantAligned(&pr, rope, mode, j, 0, 0, j % 2 == 0 ? 8.f : -8.f);
  }
  for (int32_t j = block; j < block + 16; ++j) PlantAligned(&pr, rope, mode, j, 0, 0, 2.f);
  PruningSpec spec = Spec(mode, Stage1Representatives::kBlockMeans);
  spec.keep_tokens = {256, 256, 64};  // one chunk
  MaskEstimationResult r;
  ASSERT_TRUE(EstimateMaskRef(Params(pr, spec, rope), &r).ok());
  EXPECT_EQ(r.kept[0].starts, std::vector<int32_t>{block});
  spec.stage1 = Stage1Representatives::kPageBound;
  ASSERT_TRUE(EstimateMaskRef(Params(pr, spec, rope), &r).ok());
  EXPECT_EQ(r.kept[0].starts, std::vector<int32_t>{alternating});
}

TEST(Stage1RepresentativesTest, DefaultIsProbesAndSpecCarriesTheChoice) {
  HipConfig c;
  EXPECT_EQ(c.stage1_representatives, Stage1Representatives::kProbes);
  EXPECT_EQ(PruningSpecForLayer(c, 5).stage1, Stage1Representatives::kProbes);
  c.stage1_representatives = Stage1Representatives::kBlockMeans;
  c.mean_block_size = 8;
  const PruningSpec s = PruningSpecForLayer(c, 1);  // an override layer keeps the choice
  EXPECT_EQ(s.stage1, Stage1Representatives::kBlockMeans);
  EXPECT_EQ(s.mean_block_size, 8);
  EXPECT_TRUE(ValidateHipConfig(c).ok());
  c.mean_block_size = 24;  // does not divide 256
  EXPECT_FALSE(ValidateHipConfig(c).ok());
  c.mean_block_size = 0;
  EXPECT_FALSE(ValidateHipConfig(c).ok());
}

}  // namespace
}  // namespace hipserve::kernels
