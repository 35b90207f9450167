// Representatives at every pruning stage (PruningSpec::later_stages, issue 12 item 1): a
// single high-scoring key inside a 32-key stage-2 chunk that the stage-2 probes miss is kept by
// page bounds, block means and exact scores applied to all stages; the default (empty list) is
// bit-identical to probes; the GPU checks accept every option for the decode and the prefill
// mask.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/mask_estimation.h"
#include "kernels/testing/compare.h"

namespace hipserve::kernels {
namespace {

using testing::RandomVector;
using R = Stage1Representatives;

constexpr int kHeadDim = 16;
constexpr int kHalf = kHeadDim / 2;
constexpr int kSink = 64;
constexpr int kWindow = 64;
constexpr int kNumKv = 8000;

RopeTable MakeRope(int positions) {
  RopeConfig rc;
  rc.theta = 10000.f;
  auto t = RopeTable::Create(rc, kHeadDim, positions);
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

// Stage 1 keeps everything (31 chunks of 256 < 64), so stage 2 is the first that prunes: it
// keeps 8 of ~246 chunks of 32; stage 3 keeps 8 of the 32 resulting 8-key blocks.
PruningSpec Spec(PruningPositions positions, R stage1, std::vector<R> later) {
  PruningSpec s;
  s.chunk_sizes = {256, 32, 8};
  s.keep_tokens = {256 * 64, 256, 64};
  s.stride_q = {1, 1, 1};
  s.positions = positions;
  s.n_window = kWindow;
  s.stage1 = stage1;
  s.later_stages = std::move(later);
  s.mean_block_size = 16;
  return s;
}

struct Problem {
  int group = 2;
  std::vector<float> q, k;  // q [1][group][d]; k [kNumKv][d]
  std::vector<int32_t> q_pos = {kNumKv - 1};
};

MaskEstimationParams Params(const Problem& pr, const PruningSpec& spec, const RopeTable& rope) {
  MaskEstimationParams p;
  p.q = pr.q.data();
  p.q_token_stride = int64_t{pr.group} * kHeadDim;
  p.q_pos = pr.q_pos.data();
  p.num_q = 1;
  p.group = pr.group;
  p.head_dim = kHeadDim;
  p.k = pr.k.data();
  p.k_token_stride = kHeadDim;
  p.num_kv = kNumKv;
  p.range_begin = kSink;
  p.range_end = pr.q_pos.back() - kWindow;
  p.spec = &spec;
  p.rope = &rope;
  return p;
}

bool Has(const std::vector<int32_t>& v, int32_t x) {
  return std::binary_search(v.begin(), v.end(), x);
}

// Key j := scale * (query 0 rotated by `shift`), restricted to the lowest-frequency rotation
// pair (dims kHalf - 1 and kHeadDim - 1): that pair turns by < 0.003 rad per position, so the
// key stays aligned with the query at every stage's scoring positions (the chunk-indexed
// positions differ between stages).
void PlantSlow(Problem* pr, const RopeTable& rope, int32_t j, int32_t shift, float scale) {
  std::vector<float> rot(kHeadDim);
  rope.Rotate(pr->q.data(), shift, rot.data());
  float* key = pr->k.data() + int64_t{j} * kHeadDim;
  std::fill_n(key, kHeadDim, 0.f);
  key[kHalf - 1] = scale * rot[kHalf - 1];
  key[kHeadDim - 1] = scale * rot[kHeadDim - 1];
}

// Shift that makes key j face query 0 in `mode` at stage 2 (chunk-indexed: the sub-chunk's
// index in stage 2's input, all 256-key chunks kept, so index = (j - kSink) / 32).
int32_t StageTwoShift(PruningPositions mode, int32_t j, int n_stage2_chunks) {
  switch (mode) {
    case PruningPositions::kReal:
      return (kNumKv - 1) - j;
    case PruningPositions::kRelative:
      return kWindow + 1;
    case PruningPositions::kChunkIndexed:
      return std::min(kNumKv - 1, n_stage2_chunks + kWindow) - (j - kSink) / 32;
  }
  return 0;
}

// The 32-key chunk [a, a + 32) holds zeros, a weak query-aligned key at a + 24 (stage 2's first
// split probes a + 8 and a + 24 and goes right) and one strong key at a + 3, which the descent
// never probes. Stage-2 probes drop the chunk; page bounds, block means and exact scores keep
// it when applied to every stage, and then stage 3 keeps the strong key's 8-key block too.
TEST(StageRepresentativesTest, KeyHiddenFromStageTwoProbesIsKeptByEveryAllStageOption) {
  for (PruningPositions mode :
       {PruningPositions::kRelative, PruningPositions::kChunkIndexed, PruningPositions::kReal}) {
    Problem pr;
    pr.q = RandomVector(int64_t{pr.group} * kHeadDim, 31);
    pr.k = RandomVector(int64_t{kNumKv} * kHeadDim, 32);
    const float pair = pr.q[kHalf - 1] * pr.q[kHalf - 1] + pr.q[kHeadDim - 1] * pr.q[kHeadDim - 1];
    ASSERT_GT(pair, 0.25f) << "the seed's query has a weak slow pair; pick another seed";
    RopeTable rope = MakeRope(kNumKv + kWindow + 2);
    const int32_t range_end = kNumKv - 1 - kWindow;
    const int n2 = (range_end - kSink + 31) / 32;  // stage-2 input (every 256-chunk kept)
    const int32_t a = kSink + 32 * 100;            // stage-2 chunk 100
    for (int32_t j = a; j < a + 32; ++j) std::fill_n(pr.k.data() + int64_t{j} * kHeadDim, 16, 0.f);
    PlantSlow(&pr, rope, a + 24, StageTwoShift(mode, a + 24, n2), 0.05f);
    PlantSlow(&pr, rope, a + 3, StageTwoShift(mode, a + 3, n2), 64.f);
    struct Case {
      R stage1;
      std::vector<R> later;
      bool kept;  // is the strong key's block in the final list
    };
    const std::vector<Case> cases = {
        {R::kProbes, {}, false},
        {R::kProbes, {R::kProbes, R::kProbes}, false},
        {R::kPageBound, {}, false},  // stage 1 only: stage 2's probes still miss it
        {R::kBlockMeans, {}, false},
        {R::kPageBound, {R::kPageBound, R::kPageBound}, true},
        {R::kBlockMeans, {R::kBlockMeans, R::kBlockMeans}, true},
        {R::kExact, {R::kExact, R::kExact}, true},
        {R::kPageBound, {R::kPageBound, R::kExact}, true},
        {R::kProbes, {R::kExact, R::kExact}, true},
    };
    for (const Case& c : cases) {
      const PruningSpec spec = Spec(mode, c.stage1, c.later);
      std::string what = absl::StrCat(PruningPositionsName(mode), " ",
                                      Stage1RepresentativesName(c.stage1), " then");
      for (R r : c.later) absl::StrAppend(&what, " ", Stage1RepresentativesName(r));
      MaskEstimationResult r;
      ASSERT_TRUE(EstimateMaskRef(Params(pr, spec, rope), &r).ok()) << what;
      ASSERT_EQ(r.kept[0].starts.size(), static_cast<size_t>((range_end - kSink + 255) / 256));
      EXPECT_EQ(Has(r.kept[1].starts, a), c.kept) << what << " (stage 2)";
      EXPECT_EQ(Has(r.block_starts(), a), c.kept) << what << " (final)";
    }
  }
}

// kExact selects the chunks whose best key scores highest: compared with a brute-force score of
// every stage-3 candidate (relative positions: keys at 0, query row at n_window + 1).
TEST(StageRepresentativesTest, ExactKeepsTheChunksWithTheBestKeys) {
  Problem pr;
  pr.q = RandomVector(int64_t{pr.group} * kHeadDim, 41);
  pr.k = RandomVector(int64_t{kNumKv} * kHeadDim, 42);
  RopeTable rope = MakeRope(kNumKv + kWindow + 2);
  const PruningSpec spec = Spec(PruningPositions::kRelative, R::kProbes, {R::kProbes, R::kExact});
  MaskEstimationResult r;
  ASSERT_TRUE(EstimateMaskRef(Params(pr, spec, rope), &r).ok());
  std::vector<std::vector<float>> rows(pr.group, std::vector<float>(kHeadDim));
  for (int g = 0; g < pr.group; ++g) {
    rope.Rotate(pr.q.data() + g * kHeadDim, kWindow + 1, rows[g].data());
  }
  const ChunkList in = SplitChunks(r.kept[1], 8);
  std::vector<float> score(in.starts.size(), -INFINITY);
  for (size_t i = 0; i < in.starts.size(); ++i) {
    for (int32_t j = in.starts[i]; j < in.starts[i] + 8; ++j) {
      for (int g = 0; g < pr.group; ++g) {
        float dot = 0.f;
        for (int c = 0; c < kHeadDim; ++c) dot += rows[g][c] * pr.k[int64_t{j} * kHeadDim + c];
        score[i] = std::max(score[i], dot);
      }
    }
  }
  std::vector<int> order(in.starts.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return score[x] > score[y]; });
  ASSERT_GT(score[order[7]], score[order[8]] + 1e-3f) << "no clear top 8 for this seed";
  std::vector<int32_t> want;
  for (int i = 0; i < 8; ++i) want.push_back(in.starts[order[i]]);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(r.block_starts(), want);
}

// An explicit all-probes list is the default, bit for bit, in every mode and from every
// restart stage.
TEST(StageRepresentativesTest, ExplicitProbesEqualTheDefault) {
  for (PruningPositions mode :
       {PruningPositions::kRelative, PruningPositions::kChunkIndexed, PruningPositions::kReal}) {
    Problem pr;
    pr.q = RandomVector(int64_t{pr.group} * kHeadDim, 51);
    pr.k = RandomVector(int64_t{kNumKv} * kHeadDim, 52);
    RopeTable rope = MakeRope(kNumKv + kWindow + 2);
    PruningSpec def = Spec(mode, R::kProbes, {});
    def.keep_tokens = {2048, 512, 64};
    PruningSpec expl = def;
    expl.later_stages = {R::kProbes, R::kProbes};
    MaskEstimationResult a, b;
    ASSERT_TRUE(EstimateMaskRef(Params(pr, def, rope), &a).ok());
    ASSERT_TRUE(EstimateMaskRef(Params(pr, expl, rope), &b).ok());
    for (int s = 0; s < 3; ++s) EXPECT_EQ(a.kept[s].starts, b.kept[s].starts) << s;
    // And the all-stage option does change the later stages on random data.
    PruningSpec exact = def;
    exact.later_stages = {R::kExact, R::kExact};
    MaskEstimationResult c;
    ASSERT_TRUE(EstimateMaskRef(Params(pr, exact, rope), &c).ok());
    EXPECT_EQ(a.kept[0].starts, c.kept[0].starts);
    EXPECT_NE(a.block_starts(), c.block_starts()) << PruningPositionsName(mode);
  }
}

TEST(StageRepresentativesTest, SpecValidation) {
  Problem pr;
  pr.q = RandomVector(int64_t{pr.group} * kHeadDim, 61);
  pr.k = RandomVector(int64_t{kNumKv} * kHeadDim, 62);
  RopeTable rope = MakeRope(kNumKv + kWindow + 2);
  const PruningSpec spec = Spec(PruningPositions::kRelative, R::kProbes, {R::kExact});
  MaskEstimationResult r;
  const absl::Status st = EstimateMaskRef(Params(pr, spec, rope), &r);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("later_stages"), std::string::npos) << st;
}

TEST(StageRepresentativesTest, ConfigCarriesTheListAndValidatesIt) {
  HipConfig c;
  EXPECT_TRUE(c.later_stage_representatives.empty());
  EXPECT_TRUE(PruningSpecForLayer(c, 5).later_stages.empty());
  EXPECT_EQ(PruningSpecForLayer(c, 5).representatives(2), R::kProbes);
  c.stage1_representatives = R::kPageBound;
  c.later_stage_representatives = {R::kPageBound, R::kExact};
  ASSERT_TRUE(ValidateHipConfig(c).ok());
  for (int layer : {0, 5}) {  // an override (chunk-indexed) layer keeps the choice
    const PruningSpec s = PruningSpecForLayer(c, layer);
    EXPECT_EQ(s.representatives(0), R::kPageBound);
    EXPECT_EQ(s.representatives(1), R::kPageBound);
    EXPECT_EQ(s.representatives(2), R::kExact);
  }
  c.later_stage_representatives = {R::kExact};
  const absl::Status st = ValidateHipConfig(c);
  EXPECT_NE(st.message().find("stage_representatives must have 3 entries"), std::string::npos)
      << st;
  c.later_stage_representatives = {R::kExact, static_cast<R>(17)};
  EXPECT_FALSE(ValidateHipConfig(c).ok());
}

// The shared GPU checks: the decode mask (HipDecodeMaskGpu, HipDecodeGraphs,
// CudaHipAttention::Create) and the prefill mask (HipPrefillMaskGpu, CudaHipAttention's prefill
// steps) both implement every option at every stage, in every kind of layer; a value neither
// knows is refused, naming the field, the stage and the path.
TEST(StageRepresentativesTest, GpuChecksAcceptEveryOptionOnBothPaths) {
  using P = HipGpuMaskPath;
  EXPECT_STREQ(HipGpuMaskPathName(P::kDecode), "decode");
  EXPECT_STREQ(HipGpuMaskPathName(P::kPrefill), "prefill");
  for (int stage = 0; stage < 4; ++stage) {
    for (R r : {R::kProbes, R::kPageBound, R::kBlockMeans, R::kExact}) {
      EXPECT_TRUE(HipGpuMaskImplements(P::kDecode, stage, r)) << stage;
      EXPECT_TRUE(HipGpuMaskImplements(P::kPrefill, stage, r)) << stage;
    }
    EXPECT_FALSE(HipGpuMaskImplements(P::kPrefill, stage, static_cast<R>(17)));
  }
  HipConfig c;
  for (P path : {P::kDecode, P::kPrefill}) {
    EXPECT_TRUE(HipConfigRunsOnGpu(c, path, "X").ok());
    c.later_stage_representatives = {R::kProbes, R::kProbes};
    EXPECT_TRUE(HipConfigRunsOnGpu(c, path, "X").ok());
    EXPECT_TRUE(PruningSpecRunsOnGpu(PruningSpecForLayer(c, 3), path, "X").ok());
    c.later_stage_representatives.clear();
  }
  // Every option at every stage, and mixes, in chunk-indexed (override) and relative layers,
  // and with real positions (extend off).
  for (R r : {R::kPageBound, R::kBlockMeans, R::kExact}) {
    for (bool extend : {true, false}) {
      c.extend = extend;
      c.stage1_representatives = r;
      c.later_stage_representatives = {r, r};
      for (P path : {P::kDecode, P::kPrefill}) {
        EXPECT_TRUE(HipConfigRunsOnGpu(c, path, "X").ok()) << Stage1RepresentativesName(r);
        for (int layer : {0, 3}) {
          EXPECT_TRUE(PruningSpecRunsOnGpu(PruningSpecForLayer(c, layer), path, "X").ok());
        }
      }
      c.stage1_representatives = R::kProbes;
      c.later_stage_representatives = {R::kPageBound, r};
      EXPECT_TRUE(HipConfigRunsOnGpu(c, P::kPrefill, "X").ok());
      EXPECT_TRUE(PruningSpecRunsOnGpu(PruningSpecForLayer(c, 0), "X").ok());
    }
  }
  c.extend = true;
  c.stage1_representatives = R::kProbes;
  c.later_stage_representatives = {R::kProbes, static_cast<R>(17)};
  absl::Status st = HipConfigRunsOnGpu(c, P::kPrefill, "CudaHipAttention");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(),
            "CudaHipAttention: stage_representatives[2] 'unknown' are not implemented by the GPU "
            "prefill mask (GPU prefill: 'probes', 'page_bound', 'block_means', 'exact')");
  st = PruningSpecRunsOnGpu(PruningSpecForLayer(c, 3), P::kDecode, "HipDecodeMaskGpu");
  EXPECT_EQ(st.message(),
            "HipDecodeMaskGpu: spec stage 2 representatives 'unknown' are not implemented by the "
            "GPU decode mask (GPU decode: 'probes', 'page_bound', 'block_means', 'exact')");
  // The two-argument form (what HipPrefillMaskGpu calls) is the prefill check.
  EXPECT_EQ(PruningSpecRunsOnGpu(PruningSpecForLayer(c, 3), "HipPrefillMaskGpu").message(),
            "HipPrefillMaskGpu: spec stage 2 representatives 'unknown' are not implemented by the "
            "GPU prefill mask (GPU prefill: 'probes', 'page_bound', 'block_means', 'exact')");
  c.later_stage_representatives.clear();
  c.stage1_representatives = static_cast<R>(17);
  EXPECT_FALSE(HipConfigRunsOnGpu(c, P::kDecode, "X").ok());
  EXPECT_FALSE(PruningSpecRunsOnGpu(PruningSpecForLayer(c, 3), "X").ok());
}

}  // namespace
}  // namespace hipserve::kernels
