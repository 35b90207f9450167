// EstimateMaskRef against a literal, unoptimised transcription of the definitions in
// mask_estimation.h (descent, row averaging, positions, top-k with position tie-break, the
// final causal cut). Random scores rarely come within an ulp of each other, so this checks the
// logic; the fp32 summation order is pinned by the GPU tests, whose kernels sum sequentially
// and must return exactly this reference's lists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using testing::RandomVector;

constexpr int kHeadDim = 16, kSink = 8, kWindow = 32;

struct SpecCase {
  PruningPositions positions;
  int num_kv, num_q, group;
};

// Score of one probe: max over the stage's rows (and group heads) of a sequential fp32 sum.
float ProbeScore(const MaskEstimationParams& p, int stage, int32_t key, int32_t key_pos,
                 int32_t n_chunks) {
  const int d = p.head_dim, stride = p.spec->stride_q[stage];
  std::vector<float> k(d), rot(d), row(d);
  p.rope->Rotate(p.k + key * p.k_token_stride, key_pos, k.data());
  float best = -std::numeric_limits<float>::infinity();
  for (int first = 0; first < p.num_q; first += stride) {
    const int last = std::min(p.num_q, first + stride);
    for (int g = 0; g < p.group; ++g) {
      std::fill(row.begin(), row.end(), 0.f);
      for (int i = first; i < last; ++i) {
        int32_t qp = p.q_pos[i];
        if (p.spec->positions == PruningPositions::kRelative) qp = p.spec->n_window + 1;
        if (p.spec->positions == PruningPositions::kChunkIndexed) {
          qp = std::min<int32_t>(qp, n_chunks + p.spec->n_window);
        }
        p.rope->Rotate(p.q + i * p.q_token_stride + g * d, qp, rot.data());
        for (int c = 0; c < d; ++c) row[c] += rot[c];
      }
      float dot = 0.f;
      for (int c = 0; c < d; ++c) {
        const float prod = (row[c] / static_cast<float>(last - first)) * k[c];
        dot = dot + prod;  // separate statements: no fused multiply-add
      }
      if (dot > best) best = dot;
    }
  }
  return best;
}

std::vector<int32_t> NaiveEstimate(const MaskEstimationParams& p) {
  const PruningSpec& s = *p.spec;
  ChunkList in =
      ChunksOfRange(p.range_begin, std::max(p.range_begin, p.range_end), s.chunk_sizes[0]);
  for (int stage = 0; stage < s.num_stages(); ++stage) {
    if (stage > 0) in = SplitChunks(in, s.chunk_sizes[stage]);
    const int n = static_cast<int>(in.starts.size()), m = s.keep_chunks(stage);
    if (n <= m) continue;
    std::vector<float> score(n);
    for (int i = 0; i < n; ++i) {
      int32_t lo = in.starts[i], hi = std::min(lo + in.chunk_size, in.range_end);
      auto pos = [&](int32_t key, bool right) {
        if (s.positions == PruningPositions::kRelative) return right ? 1 : 0;
        if (s.positions == PruningPositions::kChunkIndexed) return i;
        return key;
      };
      float best = -std::numeric_limits<float>::infinity();
      if (hi - lo == 1) best = ProbeScore(p, stage, lo, pos(lo, false), n);
      int iterations = 0;
      while ((1 << iterations) < in.chunk_size) ++iterations;
      for (int it = 0; it < iterations && hi - lo >= 2; ++it) {
        const int32_t mid = lo + (hi - lo) / 2;
        const int32_t l = lo + (mid - lo) / 2, r = mid + (hi - mid) / 2;
        const float sl = ProbeScore(p, stage, l, pos(l, false), n);
        const float sr = ProbeScore(p, stage, r, pos(r, true), n);
        best = std::max({best, sl, sr});
        if (sl >= sr)
          hi = mid;
        else
          lo = mid;
      }
      score[i] = best;
    }
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    order.resize(m);
    std::sort(order.begin(), order.end());
    ChunkList kept{in.chunk_size, in.range_end, {}};
    for (int i : order) kept.starts.push_back(in.starts[i]);
    in = kept;
  }
  std::vector<int32_t> out;
  for (int32_t b : in.starts) {
    if (b <= p.q_pos[p.num_q - 1]) out.push_back(b);
  }
  return out;
}

class MaskSpecTest : public ::testing::TestWithParam<SpecCase> {};

TEST_P(MaskSpecTest, EqualsLiteralDefinition) {
  const SpecCase& c = GetParam();
  PruningSpec spec;
  spec.chunk_sizes = {32, 8, 2};
  spec.keep_tokens = {256, 64, 16};
  spec.stride_q = {3, 2, 1};
  spec.positions = c.positions;
  spec.n_window = kWindow;
  auto q = RandomVector(int64_t{c.num_q} * c.group * kHeadDim, 100 + c.num_kv);
  auto k = RandomVector(int64_t{c.num_kv} * kHeadDim, 200 + c.num_q);
  std::vector<int32_t> q_pos(c.num_q);
  std::iota(q_pos.begin(), q_pos.end(), c.num_kv - c.num_q);
  auto rope = RopeTable::Create(RopeConfig{}, kHeadDim, c.num_kv + kWindow + 2);
  ASSERT_TRUE(rope.ok());
  MaskEstimationParams p;
  p.q = q.data();
  p.q_token_stride = int64_t{c.group} * kHeadDim;
  p.q_pos = q_pos.data();
  p.num_q = c.num_q;
  p.group = c.group;
  p.head_dim = kHeadDim;
  p.k = k.data();
  p.k_token_stride = kHeadDim;
  p.num_kv = c.num_kv;
  p.range_begin = kSink;
  p.range_end = std::max(kSink, q_pos.back() - kWindow);
  p.spec = &spec;
  p.rope = &*rope;
  MaskEstimationResult got;
  ASSERT_TRUE(EstimateMaskRef(p, &got).ok());
  const std::vector<int32_t> want = NaiveEstimate(p);
  EXPECT_EQ(got.block_starts(), want);
  EXPECT_EQ(static_cast<int>(want.size()), spec.keep_chunks(2)) << "pruning really happens";
}

INSTANTIATE_TEST_SUITE_P(Cases, MaskSpecTest,
                         ::testing::Values(SpecCase{PruningPositions::kRelative, 700, 7, 3},
                                           SpecCase{PruningPositions::kReal, 900, 1, 4},
                                           SpecCase{PruningPositions::kChunkIndexed, 613, 5, 2},
                                           SpecCase{PruningPositions::kRelative, 1500, 16, 1}),
                         [](const ::testing::TestParamInfo<SpecCase>& info) {
                           return absl::StrCat(PruningPositionsName(info.param.positions), "_kv",
                                               info.param.num_kv, "_q", info.param.num_q, "_g",
                                               info.param.group);
                         });

}  // namespace
}  // namespace hipserve::kernels
