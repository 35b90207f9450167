#include "worker/hip_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/rope/rope.h"
#include "kernels/testing/compare.h"

namespace hipserve::worker {
namespace {

using common::SequenceId;
using kernels::HipConfig;
using kernels::testing::MatchesReference;
using kernels::testing::Poisoned;
using kernels::testing::RandomVector;

constexpr int kHeads = 4, kKvHeads = 2, kHeadDim = 16;

// Small pruning config: sink 8, window 16, chunks (32, 8, 4), keep 128 / 32 / 16 tokens.
HipConfig SmallConfig() {
  HipConfig c;
  c.n_sink = 8;
  c.n_window = 16;
  c.block_q = 8;
  c.chunk_sizes = {32, 8, 4};
  c.stage_keep = {128, 32};
  c.k = 16;
  c.stride_q = {2, 2, 1};
  c.mask_refresh_interval = {6, 3, 2};
  c.layer_overrides.clear();
  return c;
}

// Budget covering every key (and every stage refreshed each step): HiP must equal dense.
HipConfig CoveringConfig(bool extend) {
  HipConfig c = SmallConfig();
  c.stage_keep = {4096, 4096};
  c.k = 4096;
  c.mask_refresh_interval = {1, 1, 1};
  c.extend = extend;
  return c;
}

std::unique_ptr<HipAttention> Make(const HipConfig& config, int layers = 1, int threads = 0) {
  HipAttentionOptions o;
  o.threads = threads;
  o.config = config;
  o.num_layers = layers;
  o.num_heads = kHeads;
  o.num_kv_heads = kKvHeads;
  o.head_dim = kHeadDim;
  auto h = HipAttention::Create(o);
  EXPECT_TRUE(h.ok()) << h.status();
  return std::move(h).value();
}

// One sequence's growing KV ([T][kKvHeads][kHeadDim], un-rotated) for one layer.
struct Kv {
  std::vector<float> k, v;
  int tokens = 0;
  void Append(int n, uint64_t seed) {
    auto nk = RandomVector(int64_t{n} * kKvHeads * kHeadDim, seed);
    auto nv = RandomVector(int64_t{n} * kKvHeads * kHeadDim, seed + 7777);
    k.insert(k.end(), nk.begin(), nk.end());
    v.insert(v.end(), nv.begin(), nv.end());
    tokens += n;
  }
};

// Dense attention of queries at start.. (fp32 DenseAttentionRef, rotated with RopeRef) and an
// fp64 version of the same for the pass rule.
void Dense(const std::vector<float>& q, int n, int start, const Kv& kv, std::vector<float>* out,
           std::vector<double>* ref) {
  std::vector<int32_t> pos(kv.tokens);
  for (int i = 0; i < kv.tokens; ++i) pos[i] = i;
  std::vector<float> kr = kv.k, qr = q;
  kernels::RopeParams r;
  r.x = kr.data();
  r.positions = pos.data();
  r.tokens = kv.tokens;
  r.heads = kKvHeads;
  r.head_dim = kHeadDim;
  ASSERT_TRUE(kernels::RopeRef(r).ok());
  r.x = qr.data();
  r.positions = pos.data() + start;
  r.tokens = n;
  r.heads = kHeads;
  ASSERT_TRUE(kernels::RopeRef(r).ok());
  out->assign(q.size(), 0.f);
  kernels::DenseAttentionParams d;
  d.q = qr.data();
  d.k = kr.data();
  d.v = kv.v.data();
  d.out = out->data();
  d.num_q = n;
  d.num_kv = kv.tokens;
  d.num_heads = kHeads;
  d.num_kv_heads = kKvHeads;
  d.head_dim = kHeadDim;
  d.q_offset = start;
  d.scale = 1.f / std::sqrt(static_cast<float>(kHeadDim));
  ASSERT_TRUE(kernels::DenseAttentionRef(d).ok());
  ref->assign(q.size(), 0.0);
  const int group = kHeads / kKvHeads;
  for (int i = 0; i < n; ++i) {
    for (int h = 0; h < kHeads; ++h) {
      const float* qi = qr.data() + (int64_t{i} * kHeads + h) * kHeadDim;
      std::vector<double> s(start + i + 1);
      double mx = -INFINITY;
      for (int j = 0; j <= start + i; ++j) {
        const float* kj = kr.data() + (int64_t{j} * kKvHeads + h / group) * kHeadDim;
        double dot = 0;
        for (int c = 0; c < kHeadDim; ++c) dot += double{qi[c]} * kj[c];
        s[j] = dot / std::sqrt(double{kHeadDim});
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      std::vector<double> acc(kHeadDim, 0);
      for (int j = 0; j <= start + i; ++j) {
        const double w = std::exp(s[j] - mx);
        sum += w;
        for (int c = 0; c < kHeadDim; ++c) {
          acc[c] += w * kv.v[(int64_t{j} * kKvHeads + h / group) * kHeadDim + c];
        }
      }
      for (int c = 0; c < kHeadDim; ++c) {
        (*ref)[(int64_t{i} * kHeads + h) * kHeadDim + c] = acc[c] / sum;
      }
    }
  }
}

struct DenseCase {
  std::string name;
  bool extend;
  std::vector<int> prefill_chunks;
  int decode_steps;
};

class HipEqualsDenseTest : public ::testing::TestWithParam<DenseCase> {};

TEST_P(HipEqualsDenseTest, PrefillAndDecode) {
  const DenseCase& c = GetParam();
  auto hip = Make(CoveringConfig(c.extend));
  const SequenceId seq(1);
  Kv kv;
  uint64_t seed = 10;
  std::vector<int> steps = c.prefill_chunks;
  for (int i = 0; i < c.decode_steps; ++i) steps.push_back(1);
  for (size_t step = 0; step < steps.size(); ++step) {
    const int n = steps[step], start = kv.tokens;
    kv.Append(n, seed++);
    auto q = RandomVector(int64_t{n} * kHeads * kHeadDim, seed++);
    hip->BeginStep(seq, start, n);
    std::vector<float> out = Poisoned(static_cast<int64_t>(q.size()));
    ASSERT_TRUE(
        hip->Run(seq, 0, q.data(), n, start, kv.k.data(), kv.v.data(), kv.tokens, out.data()).ok());
    std::vector<float> dense;
    std::vector<double> ref;
    Dense(q, n, start, kv, &dense, &ref);
    EXPECT_TRUE(MatchesReference(out, dense, ref, 1e-6)) << "step " << step << " at " << start;
  }
  auto info = hip->CurrentStep(seq);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->decode, c.decode_steps > 0);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HipEqualsDenseTest,
    ::testing::Values(DenseCase{"ExtendOnePrefill", true, {150}, 12},
                      DenseCase{"RealOnePrefill", false, {150}, 12},
                      DenseCase{"ExtendChunkedUnaligned", true, {37, 64, 29}, 6},
                      DenseCase{"RealChunked", false, {16, 48, 80}, 6},
                      DenseCase{"ExtendTinyPrompt", true, {3}, 40}),
    [](const ::testing::TestParamInfo<DenseCase>& info) { return info.param.name; });

TEST(HipAttentionTest, ShortContextIsDenseEvenWithDefaults) {
  // T <= n_sink + n_window + k: nothing to prune, so the HIP.md defaults give dense attention.
  HipConfig c;
  auto hip = Make(c, 4);
  const SequenceId seq(3);
  Kv kv;
  kv.Append(300, 1);
  auto q = RandomVector(int64_t{300} * kHeads * kHeadDim, 2);
  hip->BeginStep(seq, 0, 300);
  std::vector<float> out = Poisoned(static_cast<int64_t>(q.size()));
  ASSERT_TRUE(hip->Run(seq, 3, q.data(), 300, 0, kv.k.data(), kv.v.data(), 300, out.data()).ok());
  std::vector<float> dense;
  std::vector<double> ref;
  Dense(q, 300, 0, kv, &dense, &ref);
  EXPECT_TRUE(MatchesReference(out, dense, ref, 1e-6));
}

TEST(HipAttentionTest, StepScheduleIsPerSequence) {
  HipConfig c = SmallConfig();  // intervals (6, 3, 2)
  auto hip = Make(c);
  const SequenceId a(1), b(2);
  // a: prefill, then decodes; b joins three steps later with its own prefill, and later a
  // second prefill chunk resets only b's counter.
  int a_len = 0, b_len = 0;
  int64_t a_step = 0, b_step = 0;
  for (int t = 0; t < 30; ++t) {
    const bool a_prefill = t == 0;
    hip->BeginStep(a, a_len, a_prefill ? 40 : 1);
    a_len += a_prefill ? 40 : 1;
    auto ia = hip->CurrentStep(a);
    ASSERT_TRUE(ia.ok());
    EXPECT_EQ(ia->decode, !a_prefill);
    if (!a_prefill) {
      EXPECT_EQ(ia->decode_step, a_step) << t;
      EXPECT_EQ(ia->refresh_stage, kernels::DecodeRefreshStage(c, a_step)) << t;
      ++a_step;
    }
    if (t >= 3) {
      const bool b_prefill = t == 3 || t == 17;
      hip->BeginStep(b, b_len, b_prefill ? 25 : 1);
      b_len += b_prefill ? 25 : 1;
      auto ib = hip->CurrentStep(b);
      ASSERT_TRUE(ib.ok());
      EXPECT_EQ(ib->decode, !b_prefill);
      EXPECT_EQ(ib->refresh_stage, b_prefill ? 0 : kernels::DecodeRefreshStage(c, b_step));
      b_step = b_prefill ? 0 : b_step + 1;
    }
  }
  // Explicit values for a: decode steps 0..5 -> 0, -1, 2, 1, 2, -1; step 6 -> 0.
  auto h2 = Make(c);
  const SequenceId s(9);
  h2->BeginStep(s, 0, 10);
  std::vector<int> stages;
  for (int i = 0; i < 7; ++i) {
    h2->BeginStep(s, 10 + i, 1);
    stages.push_back(h2->CurrentStep(s)->refresh_stage);
  }
  EXPECT_EQ(stages, (std::vector<int>{0, -1, 2, 1, 2, -1, 0}));
  // A one-token first step is a prefill.
  h2->BeginStep(SequenceId(10), 0, 1);
  EXPECT_FALSE(h2->CurrentStep(SequenceId(10))->decode);
  EXPECT_EQ(h2->CurrentStep(SequenceId(11)).status().code(), absl::StatusCode::kNotFound);
}

// The decode mask cache follows HIP.md 4 exactly: an oracle that runs EstimateMaskRef itself
// (restarting from its own cached kept lists) must produce the same block lists every step.
TEST(HipAttentionTest, DecodeCacheMatchesOracle) {
  HipConfig c = SmallConfig();
  auto hip = Make(c);
  auto rope = kernels::RopeTable::Create(kernels::RopeConfig{}, kHeadDim, 2048);
  ASSERT_TRUE(rope.ok());
  const kernels::PruningSpec spec = kernels::PruningSpecForLayer(c, 0);
  const SequenceId seq(5);
  Kv kv;
  kv.Append(400, 1);
  auto q = RandomVector(int64_t{400} * kHeads * kHeadDim, 2);
  hip->BeginStep(seq, 0, 400);
  std::vector<float> out(q.size());
  ASSERT_TRUE(hip->Run(seq, 0, q.data(), 400, 0, kv.k.data(), kv.v.data(), 400, out.data()).ok());
  std::vector<std::vector<kernels::ChunkList>> oracle(kKvHeads);
  int changed_without_refresh = 0, refreshes = 0;
  for (int i = 0; i < 25; ++i) {
    const int pos = kv.tokens;
    kv.Append(1, 100 + i);
    auto qd = RandomVector(int64_t{kHeads} * kHeadDim, 500 + i);
    std::vector<std::vector<int32_t>> before(kKvHeads);
    for (int h = 0; h < kKvHeads; ++h) {
      if (const auto* b = hip->CachedBlocks(seq, 0, h)) before[h] = *b;
    }
    hip->BeginStep(seq, pos, 1);
    ASSERT_TRUE(
        hip->Run(seq, 0, qd.data(), 1, pos, kv.k.data(), kv.v.data(), kv.tokens, out.data()).ok());
    const int stage = kernels::DecodeRefreshStage(c, i);
    ASSERT_EQ(hip->CurrentStep(seq)->refresh_stage, stage);
    for (int h = 0; h < kKvHeads; ++h) {
      if (stage >= 0) {
        ++refreshes;
        kernels::MaskEstimationParams p;
        p.q = qd.data() + h * (kHeads / kKvHeads) * kHeadDim;
        p.q_token_stride = kHeads * kHeadDim;
        const int32_t qpos = pos;
        p.q_pos = &qpos;
        p.num_q = 1;
        p.group = kHeads / kKvHeads;
        p.head_dim = kHeadDim;
        p.k = kv.k.data() + h * kHeadDim;
        p.k_token_stride = kKvHeads * kHeadDim;
        p.num_kv = kv.tokens;
        const kernels::CandidateRange r = kernels::CandidateRangeFor(c, pos);
        p.range_begin = r.begin;
        p.range_end = r.end;
        p.spec = &spec;
        p.rope = &*rope;
        p.start_stage = stage;
        p.start_input = stage > 0 ? &oracle[h][stage - 1] : nullptr;
        kernels::MaskEstimationResult res;
        ASSERT_TRUE(kernels::EstimateMaskRef(p, &res).ok());
        for (int s = stage; s < 3; ++s) {
          if (oracle[h].empty()) oracle[h].resize(3);
          oracle[h][s] = res.kept[s];
        }
      } else if (*hip->CachedBlocks(seq, 0, h) != before[h]) {
        ++changed_without_refresh;
      }
      const auto* got = hip->CachedBlocks(seq, 0, h);
      ASSERT_NE(got, nullptr);
      EXPECT_EQ(*got, oracle[h][2].starts) << "step " << i << " head " << h;
      EXPECT_EQ(static_cast<int>(got->size()), c.k / 4) << "pruning really happens";
    }
  }
  EXPECT_EQ(changed_without_refresh, 0);
  EXPECT_GT(refreshes, 0);
}

// HipConfig::tail_queries: the last prompt query gets its own selection, so its output equals
// that of the same query run as the first decode step (which refreshes every stage for one
// query). With the tail off it shares its block's selection, and the outputs differ.
TEST(HipAttentionTest, TailQueriesSelectLikeDecode) {
  constexpr int kTokens = 299;  // the last block_q = 8 block holds 3 queries
  Kv kv;
  kv.Append(kTokens, 11);
  auto q = RandomVector(int64_t{kTokens} * kHeads * kHeadDim, 12);
  const int64_t row = int64_t{kHeads} * kHeadDim;
  auto last_output = [&](int tail, bool as_decode) {
    HipConfig c = SmallConfig();
    c.tail_queries = tail;
    auto hip = Make(c);
    const SequenceId seq(1);
    std::vector<float> out(q.size(), std::nanf(""));
    if (as_decode) {
      hip->BeginStep(seq, 0, kTokens - 1);
      EXPECT_TRUE(hip->Run(seq, 0, q.data(), kTokens - 1, 0, kv.k.data(), kv.v.data(), kTokens - 1,
                           out.data())
                      .ok());
      hip->BeginStep(seq, kTokens - 1, 1);
      EXPECT_TRUE(hip->CurrentStep(seq)->decode);
      std::vector<float> one(row, std::nanf(""));
      EXPECT_TRUE(hip->Run(seq, 0, q.data() + (kTokens - 1) * row, 1, kTokens - 1, kv.k.data(),
                           kv.v.data(), kTokens, one.data())
                      .ok());
      EXPECT_EQ(static_cast<int>(hip->CachedBlocks(seq, 0, 0)->size()), c.k / 4)
          << "pruning really happens";
      return one;
    }
    hip->BeginStep(seq, 0, kTokens);
    EXPECT_TRUE(
        hip->Run(seq, 0, q.data(), kTokens, 0, kv.k.data(), kv.v.data(), kTokens, out.data()).ok());
    return std::vector<float>(out.end() - row, out.end());
  };
  const std::vector<float> decode = last_output(0, true);
  EXPECT_EQ(last_output(1, false), decode);
  EXPECT_EQ(last_output(64, false), decode);
  EXPECT_NE(last_output(0, false), decode) << "the shared block selection should differ";
}

// extend_min_tokens: a sequence up to the threshold runs with real positions (as extend off);
// past it, with the extension (as a threshold of 0).
TEST(HipAttentionTest, ExtensionStartsPastTheThreshold) {
  constexpr int kTokens = 300;
  Kv kv;
  kv.Append(kTokens, 31);
  auto q = RandomVector(int64_t{kTokens} * kHeads * kHeadDim, 32);
  auto run = [&](bool extend, int min_tokens) {
    HipConfig c = SmallConfig();
    c.extend = extend;
    c.extend_min_tokens = min_tokens;
    auto hip = Make(c);
    std::vector<float> out(q.size(), std::nanf(""));
    hip->BeginStep(SequenceId(1), 0, kTokens);
    EXPECT_TRUE(hip->Run(SequenceId(1), 0, q.data(), kTokens, 0, kv.k.data(), kv.v.data(), kTokens,
                         out.data())
                    .ok());
    return out;
  };
  const std::vector<float> real = run(false, 0), extended = run(true, 0);
  ASSERT_NE(real, extended) << "the two modes must differ for this test to mean anything";
  EXPECT_EQ(run(true, kTokens), real);
  EXPECT_EQ(run(true, kTokens - 1), extended);
  EXPECT_EQ(run(true, -1), extended) << "-1 with no pretrained length given = always";
}

// Run fans out over threads; the outputs and the decode cache must not depend on how many.
TEST(HipAttentionTest, ThreadCountDoesNotChangeResults) {
  Kv kv;
  kv.Append(333, 21);
  auto q = RandomVector(int64_t{340} * kHeads * kHeadDim, 22);
  std::vector<std::vector<float>> outs;
  std::vector<std::vector<int32_t>> blocks;
  for (int threads : {1, 3, 8}) {
    auto hip = Make(SmallConfig(), 1, threads);
    Kv local = kv;
    const SequenceId seq(4);
    std::vector<float> out(q.size(), std::nanf(""));
    hip->BeginStep(seq, 0, 333);
    ASSERT_TRUE(
        hip->Run(seq, 0, q.data(), 333, 0, local.k.data(), local.v.data(), 333, out.data()).ok());
    for (int i = 0; i < 7; ++i) {
      local.Append(1, 40 + i);
      hip->BeginStep(seq, 333 + i, 1);
      ASSERT_TRUE(hip->Run(seq, 0, q.data() + (333 + i) * kHeads * kHeadDim, 1, 333 + i,
                           local.k.data(), local.v.data(), 334 + i,
                           out.data() + (333 + i) * kHeads * kHeadDim)
                      .ok());
    }
    outs.push_back(std::vector<float>(out.begin(), out.begin() + 340 * kHeads * kHeadDim));
    blocks.push_back(*hip->CachedBlocks(seq, 0, 1));
  }
  for (size_t i = 1; i < outs.size(); ++i) {
    EXPECT_EQ(outs[i], outs[0]) << "threads variant " << i;
    EXPECT_EQ(blocks[i], blocks[0]) << "threads variant " << i;
  }
  for (float x : outs[0]) ASSERT_FALSE(std::isnan(x)) << "every output written";
}

TEST(HipAttentionTest, SnapshotRestoreAndRelease) {
  HipConfig c = SmallConfig();
  auto hip = Make(c);
  const SequenceId seq(1), fresh(2);
  Kv kv;
  kv.Append(200, 1);
  auto q = RandomVector(int64_t{200} * kHeads * kHeadDim, 2);
  std::vector<float> out(q.size());
  hip->BeginStep(seq, 0, 200);
  ASSERT_TRUE(hip->Run(seq, 0, q.data(), 200, 0, kv.k.data(), kv.v.data(), 200, out.data()).ok());
  kv.Append(1, 3);
  hip->BeginStep(seq, 200, 1);
  ASSERT_TRUE(hip->Run(seq, 0, q.data(), 1, 200, kv.k.data(), kv.v.data(), 201, out.data()).ok());
  const std::vector<int32_t> blocks = *hip->CachedBlocks(seq, 0, 1);
  auto snap = hip->Save({seq, fresh});
  // A step that would fail later: both sequences advance, then the step is rolled back.
  kv.Append(1, 4);
  hip->BeginStep(seq, 201, 1);
  hip->BeginStep(fresh, 0, 5);
  auto q2 = RandomVector(int64_t{kHeads} * kHeadDim, 9);
  ASSERT_TRUE(hip->Run(seq, 0, q2.data(), 1, 201, kv.k.data(), kv.v.data(), 202, out.data()).ok());
  hip->Restore(snap);
  EXPECT_EQ(hip->num_sequences(), 1);
  EXPECT_EQ(hip->CurrentStep(seq)->decode_step, 0);
  EXPECT_EQ(*hip->CachedBlocks(seq, 0, 1), blocks);
  hip->BeginStep(seq, 201, 1);
  EXPECT_EQ(hip->CurrentStep(seq)->decode_step, 1);  // the rolled-back step never happened
  hip->Release(seq);
  EXPECT_EQ(hip->num_sequences(), 0);
  EXPECT_EQ(hip->CachedBlocks(seq, 0, 1), nullptr);
}

TEST(HipAttentionTest, RejectsBadSetup) {
  HipAttentionOptions o;
  o.config = SmallConfig();
  o.num_layers = 2;
  o.num_heads = 4;
  o.num_kv_heads = 3;
  o.head_dim = 16;
  EXPECT_EQ(HipAttention::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.num_kv_heads = 2;
  o.config.k = 14;  // not a multiple of the last chunk size (4)
  auto s = HipAttention::Create(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("k = 14"), std::string::npos) << s;
  auto hip = Make(SmallConfig());
  std::vector<float> x(kHeads * kHeadDim);
  EXPECT_EQ(hip->Run(SequenceId(1), 0, x.data(), 1, 0, x.data(), x.data(), 1, x.data()).code(),
            absl::StatusCode::kFailedPrecondition);  // no BeginStep
}

// Per-request k bound: the last stage_keep with several stages, else the context rounded down
// to the block size (at least one block).
TEST(HipAttentionTest, MaxRequestK) {
  kernels::HipConfig c;
  EXPECT_EQ(MaxRequestK(c, 1 << 20), 8192);
  EXPECT_EQ(MaxRequestK(c, 100), 8192);
  c.chunk_sizes = {64};
  c.stage_keep = {};
  c.k = 128;
  c.stride_q = {1};
  c.mask_refresh_interval = {4};
  c.layer_overrides.clear();
  ASSERT_TRUE(kernels::ValidateHipConfig(c).ok());
  EXPECT_EQ(MaxRequestK(c, 1000), 960);
  EXPECT_EQ(MaxRequestK(c, 10), 64);
}

}  // namespace
}  // namespace hipserve::worker
