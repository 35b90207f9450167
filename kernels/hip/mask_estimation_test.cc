#include "kernels/hip/mask_estimation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using testing::RandomVector;

constexpr int kHeadDim = 16;
constexpr int kKvHeads = 2;  // keys are stored for 2 KV heads; tests use head 1 (strides)
constexpr int kSink = 16;
constexpr int kWindow = 64;

// Three stages (64, 16, 8) keeping 512, 128 and 32 tokens: K_s - c_s + c_{s+1} >= K_{s+1},
// so a partial chunk can never make a later stage run short and the final count is exact.
PruningSpec SmallSpec(PruningPositions positions) {
  PruningSpec s;
  s.chunk_sizes = {64, 16, 8};
  s.keep_tokens = {512, 128, 32};
  s.stride_q = {2, 2, 1};
  s.positions = positions;
  s.n_window = kWindow;
  return s;
}

struct Problem {
  int num_kv = 0, num_q = 0, group = 0;
  std::vector<float> q;  // [num_q][group][head_dim]
  std::vector<float> k;  // [num_kv][kKvHeads][head_dim]
  std::vector<int32_t> q_pos;
};

Problem MakeProblem(int num_kv, int num_q, int group, uint64_t seed) {
  Problem p;
  p.num_kv = num_kv;
  p.num_q = num_q;
  p.group = group;
  p.q = RandomVector(int64_t{num_q} * group * kHeadDim, seed);
  p.k = RandomVector(int64_t{num_kv} * kKvHeads * kHeadDim, seed + 1);
  for (int i = 0; i < num_q; ++i) p.q_pos.push_back(num_kv - num_q + i);
  return p;
}

RopeTable MakeRope(int positions) {
  RopeConfig rc;
  rc.theta = 10000.f;
  auto t = RopeTable::Create(rc, kHeadDim, positions);
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

MaskEstimationParams Params(const Problem& pr, const PruningSpec& spec, const RopeTable& rope) {
  MaskEstimationParams p;
  p.q = pr.q.data();
  p.q_token_stride = int64_t{pr.group} * kHeadDim;
  p.q_pos = pr.q_pos.data();
  p.num_q = pr.num_q;
  p.group = pr.group;
  p.head_dim = kHeadDim;
  p.k = pr.k.data() + kHeadDim;  // KV head 1
  p.k_token_stride = int64_t{kKvHeads} * kHeadDim;
  p.num_kv = pr.num_kv;
  p.range_begin = kSink;
  p.range_end = std::max(kSink, pr.q_pos.back() - kWindow);
  p.spec = &spec;
  p.rope = &rope;
  return p;
}

bool IsSubset(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  return std::includes(b.begin(), b.end(), a.begin(), a.end());
}

struct InvariantCase {
  PruningPositions positions;
  int num_kv;
  int num_q;
  int group;
};

std::string CaseName(const ::testing::TestParamInfo<InvariantCase>& info) {
  return absl::StrCat(PruningPositionsName(info.param.positions), "_kv", info.param.num_kv, "_q",
                      info.param.num_q, "_g", info.param.group);
}

class MaskInvariantsTest : public ::testing::TestWithParam<InvariantCase> {};

TEST_P(MaskInvariantsTest, SortedUniqueCausalExactCount) {
  const InvariantCase& c = GetParam();
  Problem pr = MakeProblem(c.num_kv, c.num_q, c.group, 100 + c.num_kv);
  PruningSpec spec = SmallSpec(c.positions);
  RopeTable rope = MakeRope(c.num_kv + kWindow + 2);
  MaskEstimationParams p = Params(pr, spec, rope);
  MaskEstimationResult r;
  ASSERT_TRUE(EstimateMaskRef(p, &r).ok());
  ASSERT_EQ(r.kept.size(), 3u);

  const int candidates = p.range_end - p.range_begin;
  const int candidate_blocks = (candidates + 7) / 8;
  EXPECT_EQ(r.count(), std::min(spec.keep_chunks(2), candidate_blocks));
  const std::vector<int32_t>& b = r.block_starts();
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_GE(b[i], kSink) << "sink keys are never candidates";
    EXPECT_LT(b[i], p.range_end) << "window keys are never candidates";
    EXPECT_LE(b[i], pr.q_pos.back()) << "causal";
    EXPECT_EQ((b[i] - kSink) % 8, 0) << "block aligned to the candidate range";
    if (i > 0) {
      EXPECT_LT(b[i - 1], b[i]) << "sorted and unique";
    }
  }
  // Each stage keeps min(keep, input) chunks, chosen from its input.
  ChunkList input = ChunksOfRange(p.range_begin, p.range_end, 64);
  for (int s = 0; s < 3; ++s) {
    if (s > 0) input = SplitChunks(r.kept[s - 1], spec.chunk_sizes[s]);
    EXPECT_EQ(r.kept[s].chunk_size, spec.chunk_sizes[s]);
    EXPECT_EQ(static_cast<int>(r.kept[s].starts.size()),
              std::min<int>(spec.keep_chunks(s), input.starts.size()))
        << "stage " << s;
    EXPECT_TRUE(IsSubset(r.kept[s].starts, input.starts)) << "stage " << s;
  }
}

TEST_P(MaskInvariantsTest, RestartFromCachedStageInputIsIdentical) {
  const InvariantCase& c = GetParam();
  Problem pr = MakeProblem(c.num_kv, c.num_q, c.group, 200 + c.num_kv);
  PruningSpec spec = SmallSpec(c.positions);
  RopeTable rope = MakeRope(c.num_kv + kWindow + 2);
  MaskEstimationParams p = Params(pr, spec, rope);
  MaskEstimationResult full;
  ASSERT_TRUE(EstimateMaskRef(p, &full).ok());
  for (int s = 1; s < 3; ++s) {
    MaskEstimationParams rp = p;
    rp.start_stage = s;
    rp.start_input = &full.kept[s - 1];
    MaskEstimationResult part;
    ASSERT_TRUE(EstimateMaskRef(rp, &part).ok());
    for (int t = 0; t < s; ++t) EXPECT_TRUE(part.kept[t].starts.empty());
    for (int t = s; t < 3; ++t) EXPECT_EQ(part.kept[t].starts, full.kept[t].starts) << s << t;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MaskInvariantsTest,
    ::testing::Values(InvariantCase{PruningPositions::kReal, 3000, 1, 1},
                      InvariantCase{PruningPositions::kReal, 2500, 16, 2},
                      InvariantCase{PruningPositions::kRelative, 3000, 1, 2},
                      InvariantCase{PruningPositions::kRelative, 2077, 13, 3},
                      InvariantCase{PruningPositions::kChunkIndexed, 3000, 1, 2},
                      InvariantCase{PruningPositions::kChunkIndexed, 1999, 16, 1},
                      // Few candidates: everything is kept.
                      InvariantCase{PruningPositions::kRelative, 120, 4, 2},
                      // Fewer candidates than one block / none at all.
                      InvariantCase{PruningPositions::kReal, kSink + kWindow + 3, 1, 1},
                      InvariantCase{PruningPositions::kReal, 40, 1, 1}),
    CaseName);

TEST(MaskEstimationTest, BudgetCoveringEverythingKeepsEveryBlock) {
  Problem pr = MakeProblem(700, 8, 2, 7);
  PruningSpec spec = SmallSpec(PruningPositions::kRelative);
  spec.keep_tokens = {1024, 1024, 1024};
  RopeTable rope = MakeRope(700 + kWindow + 2);
  MaskEstimationParams p = Params(pr, spec, rope);
  MaskEstimationResult r;
  ASSERT_TRUE(EstimateMaskRef(p, &r).ok());
  EXPECT_EQ(r.block_starts(), ChunksOfRange(p.range_begin, p.range_end, 8).starts);
}

TEST(MaskEstimationTest, TiesGoToLowerPositions) {
  Problem pr = MakeProblem(3000, 4, 2, 9);
  std::fill(pr.k.begin(), pr.k.end(), 0.f);  // every score is 0
  PruningSpec spec = SmallSpec(PruningPositions::kReal);
  RopeTable rope = MakeRope(3000 + kWindow + 2);
  MaskEstimationParams p = Params(pr, spec, rope);
  MaskEstimationResult r;
  ASSERT_TRUE(EstimateMaskRef(p, &r).ok());
  EXPECT_EQ(r.block_starts(), (std::vector<int32_t>{kSink, kSink + 8, kSink + 16, kSink + 24}));
}

TEST(MaskEstimationTest, DropsBlocksAfterTheLastQuery) {
  // A range reaching past the block's last query (callers never pass one, but the final list
  // must stay causal regardless).
  Problem pr = MakeProblem(1000, 1, 1, 11);
  pr.q_pos = {500};
  PruningSpec spec = SmallSpec(PruningPositions::kReal);
  spec.keep_tokens = {1024, 1024, 1024};
  RopeTable rope = MakeRope(1000 + kWindow + 2);
  MaskEstimationParams p = Params(pr, spec, rope);
  p.range_end = 1000;
  MaskEstimationResult r;
  ASSERT_TRUE(EstimateMaskRef(p, &r).ok());
  ASSERT_FALSE(r.block_starts().empty());
  EXPECT_LE(r.block_starts().back(), 500);
  EXPECT_EQ(r.block_starts().back(), 496);
}

struct NeedleCase {
  PruningPositions positions;
  int num_q;
  int chunk;  // stage-1 chunk holding the needle
};

class MaskNeedleTest : public ::testing::TestWithParam<NeedleCase> {};

// A block of 8 keys aligned with query 0 of head 0 (after the mode's rotations), among random
// keys, must be selected. Its stage-1 chunk [a, a + 64) is laid out so that only a correct
// binary descent finds it: [a, a + 24) is weakly aligned (it wins the first split), the needle
// is [a + 24, a + 32) (probed at the second level), and [a + 32, a + 64) is zero. A descent
// taking the wrong half sees only zeros and weak keys, and the chunk loses to random chunks.
TEST_P(MaskNeedleTest, PlantedBlockIsSelected) {
  const NeedleCase& c = GetParam();
  Problem pr = MakeProblem(4000, c.num_q, 2, 300 + c.chunk);
  PruningSpec spec = SmallSpec(c.positions);
  RopeTable rope = MakeRope(4000 + kWindow + 2);
  const int32_t chunk = kSink + 64 * c.chunk;
  const int32_t needle = chunk + 24;
  const float* q0 = pr.q.data();  // query 0, head 0
  for (int32_t j = chunk; j < chunk + 64; ++j) {
    float* key = pr.k.data() + (int64_t{j} * kKvHeads + 1) * kHeadDim;
    // Real: score = R(pos0) q0 . R(j) key, so key = R(pos0 - j) q0 aligns them.
    // Relative: the query sits at n_window + 1 and a left probe at 0: key = R(n_window + 1) q0.
    const int32_t shift = c.positions == PruningPositions::kReal ? pr.q_pos[0] - j : kWindow + 1;
    rope.Rotate(q0, shift, key);
    const float scale = j >= chunk + 32 ? 0.f : (j >= needle ? 16.f : 0.05f);
    for (int d = 0; d < kHeadDim; ++d) key[d] *= scale;
  }
  MaskEstimationParams p = Params(pr, spec, rope);
  MaskEstimationResult r;
  ASSERT_TRUE(EstimateMaskRef(p, &r).ok());
  const auto& b = r.block_starts();
  EXPECT_TRUE(std::binary_search(b.begin(), b.end(), needle)) << "needle at " << needle;
  EXPECT_TRUE(std::binary_search(r.kept[0].starts.begin(), r.kept[0].starts.end(), chunk));
}

INSTANTIATE_TEST_SUITE_P(Cases, MaskNeedleTest,
                         ::testing::Values(NeedleCase{PruningPositions::kReal, 1, 10},
                                           NeedleCase{PruningPositions::kReal, 8, 33},
                                           NeedleCase{PruningPositions::kRelative, 1, 3},
                                           NeedleCase{PruningPositions::kRelative, 8, 50}),
                         [](const ::testing::TestParamInfo<NeedleCase>& info) {
                           return absl::StrCat(PruningPositionsName(info.param.positions), "_q",
                                               info.param.num_q, "_chunk", info.param.chunk);
                         });

TEST(MaskEstimationTest, RejectsBadParams) {
  Problem pr = MakeProblem(500, 1, 1, 5);
  PruningSpec spec = SmallSpec(PruningPositions::kReal);
  RopeTable rope = MakeRope(500 + kWindow + 2);
  MaskEstimationParams p = Params(pr, spec, rope);
  MaskEstimationResult r;
  MaskEstimationParams bad = p;
  bad.start_stage = 1;  // no start_input
  EXPECT_EQ(EstimateMaskRef(bad, &r).code(), absl::StatusCode::kInvalidArgument);
  ChunkList wrong = ChunksOfRange(kSink, 300, 16);  // stage 0 keeps chunks of 64, not 16
  bad.start_input = &wrong;
  EXPECT_EQ(EstimateMaskRef(bad, &r).code(), absl::StatusCode::kInvalidArgument);
  bad = p;
  bad.range_end = 501;
  EXPECT_EQ(EstimateMaskRef(bad, &r).code(), absl::StatusCode::kInvalidArgument);
  RopeTable small = MakeRope(10);
  bad = p;
  bad.rope = &small;
  EXPECT_EQ(EstimateMaskRef(bad, &r).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::kernels
