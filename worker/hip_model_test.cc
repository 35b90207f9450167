// Model-level HiP tests on the builtin tiny model (2 layers, 4 heads, 2 KV heads, head_dim 16).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "worker/builtin_model.h"
#include "worker/hip_config.h"
#include "worker/model.h"
#include "worker/worker_state.h"

namespace hipserve::worker {
namespace {

using kernels::HipConfig;

std::unique_ptr<Model> MakeModel(Communicator* comm, const std::string& attention,
                                 const HipConfig& hip = HipConfig{}, int64_t budget = 1 << 20) {
  auto w = MakeBuiltinModel(BuiltinModelOptions{});
  EXPECT_TRUE(w.ok()) << w.status();
  ModelOptions mo;
  mo.attention = attention;
  mo.hip = hip;
  mo.max_context = 512;
  mo.kv_budget_tokens = budget;
  auto m = Model::Create(*std::move(w), comm, mo);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

// Small enough that pruning happens at a few dozen tokens: sink 4, window 8, chunks (16, 4, 2),
// keep 64 / 16 / 8 tokens; layer 0 gets k = 12 with chunk-indexed positions. The extension
// applies from the first token (the builtin model's pretrained window is far longer).
HipConfig PruningConfig() {
  auto c = ParseHipConfig(R"({
    "n_sink": 4, "n_window": 8, "block_q": 4, "chunk_sizes": [16, 4, 2], "extend_min_tokens": 0,
    "stage_keep": [64, 16], "k": 8, "stride_q": [2, 2, 1], "mask_refresh_interval": [6, 3, 2],
    "layer_overrides": [{"layers": [0], "k": 12, "pruning_positions": "chunk_indexed"}]})");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// Same small sink / window, but a budget covering every key, refreshed every step.
HipConfig CoveringConfig(bool extend) {
  HipConfig c = PruningConfig();
  c.stage_keep = {1024, 1024};
  c.k = 1024;
  c.layer_overrides[0].k = 1024;
  c.mask_refresh_interval = {1, 1, 1};
  c.extend = extend;
  return c;
}

SeqStep Work(uint64_t seq, std::vector<int32_t> tokens, int start) {
  SeqStep s;
  s.seq = SequenceId(seq);
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.sample = true;
  return s;
}

std::vector<int32_t> Prompt(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back((i * 37 + salt * 11 + 5) % 250);
  return p;
}

// Greedy generation; the prompt is fed in `chunks` (sizes summing to its length).
std::vector<SampledToken> Generate(Model& m, uint64_t seq, const std::vector<int32_t>& prompt,
                                   std::vector<int> chunks, int n) {
  std::vector<SampledToken> out;
  int pos = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    StepBatch b;
    b.work.push_back(Work(seq, {prompt.begin() + pos, prompt.begin() + pos + chunks[c]}, pos));
    b.work[0].sample = c + 1 == chunks.size();
    auto r = m.Step(b);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return out;
    pos += chunks[c];
    if (b.work[0].sample) out.push_back((*r)[0]);
  }
  while (static_cast<int>(out.size()) < n) {
    StepBatch b;
    b.work.push_back(Work(seq, {out.back().token}, pos++));
    auto r = m.Step(b);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || r->size() != 1) return out;
    out.push_back((*r)[0]);
  }
  return out;
}

// Largest logprob difference over the tokens two runs share before they first differ: > 0 when
// their settings change the result (so a comparison of those settings can fail).
double LogprobGapOverSharedTokens(const std::vector<SampledToken>& a,
                                  const std::vector<SampledToken>& b) {
  double gap = 0;
  for (size_t i = 0; i < a.size() && i < b.size() && a[i].token == b[i].token; ++i) {
    gap = std::max(gap, std::fabs(double{a[i].logprob} - b[i].logprob));
  }
  return gap;
}

// The same tokens as `want`, logprobs within 1e-5.
void ExpectSameTokens(const std::vector<SampledToken>& got, const std::vector<SampledToken>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].token, want[i].token) << i;
    EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-5) << i;
  }
}

struct CoverCase {
  std::string name;
  bool extend;
  std::vector<int> chunks;
};

class HipModelCoveringTest : public ::testing::TestWithParam<CoverCase> {};

TEST_P(HipModelCoveringTest, SameGreedyTokensAsDense) {
  const CoverCase& c = GetParam();
  auto comm = MakeLocalCommunicator();
  auto dense = MakeModel(comm.get(), "dense");
  auto hip = MakeModel(comm.get(), "hip", CoveringConfig(c.extend));
  int len = 0;
  for (int n : c.chunks) len += n;
  const std::vector<int32_t> prompt = Prompt(len, 1);
  auto want = Generate(*dense, 1, prompt, {len}, 24);
  auto got = Generate(*hip, 1, prompt, c.chunks, 24);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].token, want[i].token) << "token " << i;
    EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-4) << "token " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, HipModelCoveringTest,
                         ::testing::Values(CoverCase{"Extend", true, {60}},
                                           CoverCase{"Real", false, {60}},
                                           CoverCase{"ExtendChunked", true, {13, 32, 15}},
                                           CoverCase{"RealChunked", false, {8, 52}}),
                         [](const ::testing::TestParamInfo<CoverCase>& info) {
                           return info.param.name;
                         });

TEST(HipModelTest, DefaultConfigShortContextEqualsDense) {
  auto comm = MakeLocalCommunicator();
  auto dense = MakeModel(comm.get(), "dense");
  auto hip = MakeModel(comm.get(), "hip");  // HIP.md defaults: 256 + 1024 + 2048 covers this
  const std::vector<int32_t> prompt = Prompt(40, 2);
  auto want = Generate(*dense, 1, prompt, {40}, 10);
  auto got = Generate(*hip, 1, prompt, {40}, 10);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i].token, want[i].token) << i;
}

TEST(HipModelTest, PruningRunsAndDoesNotDependOnBatching) {
  auto comm = MakeLocalCommunicator();
  const HipConfig cfg = PruningConfig();
  auto alone = MakeModel(comm.get(), "hip", cfg);
  const std::vector<int32_t> pa = Prompt(70, 3), pb = Prompt(45, 4);
  auto a = Generate(*alone, 1, pa, {70}, 16);
  auto b = Generate(*alone, 2, pb, {45}, 16);
  ASSERT_EQ(a.size(), 16u);
  ASSERT_EQ(b.size(), 16u);
  // Pruning really happened: layer 1 keeps k / 2 = 4 blocks, layer 0 (override) 6.
  ASSERT_NE(alone->hip(), nullptr);
  ASSERT_NE(alone->hip()->CachedBlocks(SequenceId(1), 1, 0), nullptr);
  EXPECT_EQ(alone->hip()->CachedBlocks(SequenceId(1), 1, 0)->size(), 4u);
  EXPECT_EQ(alone->hip()->CachedBlocks(SequenceId(1), 0, 1)->size(), 6u);
  auto dense = MakeModel(comm.get(), "dense");
  auto d = Generate(*dense, 1, pa, {70}, 16);
  double diff = 0;
  for (size_t i = 0; i < d.size() && i < a.size() && d[i].token == a[i].token; ++i) {
    diff = std::max(diff, std::fabs(double{d[i].logprob} - a[i].logprob));
  }
  EXPECT_GT(diff, 1e-6) << "a pruned run should not be bit-identical to dense";

  // Batched, with b starting three steps later: each sequence keeps its own schedule.
  auto batched = MakeModel(comm.get(), "hip", cfg);
  std::vector<SampledToken> ga, gb;
  int pos_a = 0, pos_b = 0;
  for (int t = 0; t < 19; ++t) {
    StepBatch batch;
    if (t < 16) batch.work.push_back(t == 0 ? Work(1, pa, 0) : Work(1, {ga.back().token}, pos_a));
    if (t >= 3) {
      batch.work.push_back(t == 3 ? Work(2, pb, 0) : Work(2, {gb.back().token}, pos_b));
    }
    auto r = batched->Step(batch);
    ASSERT_TRUE(r.ok()) << r.status();
    size_t i = 0;
    if (t < 16) {
      pos_a += static_cast<int>(batch.work[0].tokens.size());
      ga.push_back((*r)[i++]);
    }
    if (t >= 3) {
      pos_b += static_cast<int>(batch.work.back().tokens.size());
      gb.push_back((*r)[i]);
    }
  }
  ASSERT_EQ(ga.size(), a.size());
  ASSERT_EQ(gb.size(), b.size());
  ExpectSameTokens(ga, a);
  ExpectSameTokens(gb, b);
}

// How the scheduler splits a prompt into steps depends on what else is batched. With the cuts
// on multiples of block_q and at least tail_queries tokens left to the last step (the
// scheduler's rule), the split changes nothing: only the step that ends the prompt runs tail
// queries (HipStepInfo::tail), and every query block sees the same queries.
TEST(HipModelTest, PrefillSplitOnBlockBoundariesChangesNothing) {
  auto comm = MakeLocalCommunicator();
  HipConfig cfg = PruningConfig();
  cfg.tail_queries = 8;
  auto hip = MakeModel(comm.get(), "hip", cfg);
  const std::vector<int32_t> prompt = Prompt(120, 3);
  const auto whole = Generate(*hip, 1, prompt, {120}, 16);
  const auto split = Generate(*hip, 2, prompt, {32, 48, 40}, 16);  // cuts at 32 and 80
  ASSERT_EQ(whole.size(), 16u);
  ASSERT_EQ(split.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(split[i].token, whole[i].token) << "token " << i;
    EXPECT_NEAR(split[i].logprob, whole[i].logprob, 1e-4) << "token " << i;  // GEMM row blocking
  }
}

TEST(HipModelTest, FailedStepRollsBackTheSchedule) {
  auto comm = MakeLocalCommunicator();
  const HipConfig cfg = PruningConfig();
  auto ref = MakeModel(comm.get(), "hip", cfg);
  const std::vector<int32_t> prompt = Prompt(50, 5);
  auto want = Generate(*ref, 1, prompt, {50}, 8);

  auto m = MakeModel(comm.get(), "hip", cfg, /*budget=*/60);
  auto got = Generate(*m, 1, prompt, {50}, 3);
  ASSERT_EQ(got.size(), 3u);
  // A step that fails on the KV budget (seq 2 does not fit) after seq 1's HiP step began.
  StepBatch bad;
  bad.work = {Work(1, {got.back().token}, 52), Work(2, Prompt(20, 6), 0)};
  EXPECT_EQ(m->Step(bad).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(m->hip()->num_sequences(), 1);
  // Seq 1 continues exactly as if the failed step never happened.
  int pos = 52;
  while (got.size() < want.size()) {
    StepBatch b;
    b.work.push_back(Work(1, {got.back().token}, pos++));
    auto r = m->Step(b);
    ASSERT_TRUE(r.ok()) << r.status();
    got.push_back((*r)[0]);
  }
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].token, want[i].token) << i;
    EXPECT_EQ(got[i].logprob, want[i].logprob) << i;
  }
  ASSERT_TRUE(m->Release(SequenceId(1)).ok());
  EXPECT_EQ(m->hip()->num_sequences(), 0);
}

// A per-request mask_refresh_interval (SeqStep::mask_refresh_interval, sent with every step of
// the sequence) changes that sequence's decode schedule only: in one batch, seq 1 with [1, 1, 1]
// refreshes every stage every step and gives exactly the tokens of a model configured with
// [1, 1, 1]; seq 2 keeps the configured [6, 3, 2] and the tokens it gets alone.
TEST(HipModelTest, PerSequenceRefreshIntervalOverride) {
  auto comm = MakeLocalCommunicator();
  const HipConfig cfg = PruningConfig();
  HipConfig every = cfg;
  every.mask_refresh_interval = {1, 1, 1};
  const std::vector<int32_t> pa = Prompt(70, 3), pb = Prompt(45, 4);
  auto ref_every = MakeModel(comm.get(), "hip", every);
  auto ref_server = MakeModel(comm.get(), "hip", cfg);
  const auto a = Generate(*ref_every, 1, pa, {70}, 16);
  const auto a_server = Generate(*ref_server, 1, pa, {70}, 16);
  const auto b = Generate(*ref_server, 2, pb, {45}, 16);
  ASSERT_EQ(a.size(), 16u);
  ASSERT_EQ(b.size(), 16u);
  // The schedules give different results for this prompt, so the comparison below can fail.
  EXPECT_GT(LogprobGapOverSharedTokens(a, a_server), 1e-6)
      << "[1, 1, 1] and [6, 3, 2] should not be bit-identical here";

  auto m = MakeModel(comm.get(), "hip", cfg);
  std::vector<SampledToken> ga, gb;
  int pos_a = 0, pos_b = 0;
  for (int t = 0; t < 16; ++t) {
    StepBatch batch;
    batch.work.push_back(t == 0 ? Work(1, pa, 0) : Work(1, {ga.back().token}, pos_a));
    batch.work[0].mask_refresh_interval = {1, 1, 1};
    batch.work.push_back(t == 0 ? Work(2, pb, 0) : Work(2, {gb.back().token}, pos_b));
    auto r = m->Step(batch);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 2u);
    pos_a += static_cast<int>(batch.work[0].tokens.size());
    pos_b += static_cast<int>(batch.work[1].tokens.size());
    ga.push_back((*r)[0]);
    gb.push_back((*r)[1]);
    if (t == 0) continue;
    auto sa = m->hip()->CurrentStep(SequenceId(1));
    auto sb = m->hip()->CurrentStep(SequenceId(2));
    ASSERT_TRUE(sa.ok() && sb.ok());
    ASSERT_TRUE(sa->decode && sb->decode);
    EXPECT_EQ(sa->decode_step, t - 1);
    EXPECT_EQ(sa->refresh_stage, 0) << "step " << t;
    EXPECT_EQ(sb->refresh_stage, kernels::DecodeRefreshStage(cfg, t - 1)) << "step " << t;
  }
  ExpectSameTokens(ga, a);
  ExpectSameTokens(gb, b);

  // Malformed overrides fail the step for that sequence, before anything runs.
  for (const std::vector<int>& bad : {std::vector<int>{1, 1}, std::vector<int>{4, 0, 2}}) {
    StepBatch b2;
    b2.work.push_back(Work(3, Prompt(10, 7), 0));
    b2.work[0].mask_refresh_interval = bad;
    auto s = m->Step(b2).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("mask_refresh_interval"), std::string::npos) << s;
    EXPECT_EQ(m->last_failed_sequence(), SequenceId(3));
  }
  auto dense = MakeModel(comm.get(), "dense");
  StepBatch b3;
  b3.work.push_back(Work(1, Prompt(10, 7), 0));
  b3.work[0].mask_refresh_interval = {1, 1, 1};
  EXPECT_EQ(dense->Step(b3).status().code(), absl::StatusCode::kInvalidArgument);
}

// A per-request k (SeqStep::hip_k) changes that sequence's final keep only (layers without a
// layer override): in one batch, seq 1 with k = 16 gives exactly the tokens of a model configured
// with k = 16 and keeps 8 blocks of 2 in layer 1 (4 with the configured k = 8), while seq 2 keeps
// the configured k and the tokens it gets alone. Layer 0's override (k = 12) applies to both.
TEST(HipModelTest, PerSequenceKOverride) {
  auto comm = MakeLocalCommunicator();
  const HipConfig cfg = PruningConfig();
  HipConfig k16 = cfg;
  k16.k = 16;
  const std::vector<int32_t> pa = Prompt(70, 5), pb = Prompt(45, 6);
  auto ref_k16 = MakeModel(comm.get(), "hip", k16);
  auto ref_server = MakeModel(comm.get(), "hip", cfg);
  const auto a = Generate(*ref_k16, 1, pa, {70}, 16);
  const auto a_server = Generate(*ref_server, 1, pa, {70}, 16);
  const auto b = Generate(*ref_server, 2, pb, {45}, 16);
  ASSERT_EQ(a.size(), 16u);
  ASSERT_EQ(b.size(), 16u);
  // k = 16 and k = 8 give different results for this prompt, so the comparison below can fail.
  EXPECT_GT(LogprobGapOverSharedTokens(a, a_server), 1e-6)
      << "k = 16 and k = 8 should not be bit-identical here";

  auto m = MakeModel(comm.get(), "hip", cfg);
  std::vector<SampledToken> ga, gb;
  int pos_a = 0, pos_b = 0;
  for (int t = 0; t < 16; ++t) {
    StepBatch batch;
    batch.work.push_back(t == 0 ? Work(1, pa, 0) : Work(1, {ga.back().token}, pos_a));
    batch.work[0].hip_k = 16;
    batch.work.push_back(t == 0 ? Work(2, pb, 0) : Work(2, {gb.back().token}, pos_b));
    auto r = m->Step(batch);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 2u);
    pos_a += static_cast<int>(batch.work[0].tokens.size());
    pos_b += static_cast<int>(batch.work[1].tokens.size());
    ga.push_back((*r)[0]);
    gb.push_back((*r)[1]);
    if (t == 0) continue;
    for (int h = 0; h < 2; ++h) {
      const std::vector<int32_t>* la1 = m->hip()->CachedBlocks(SequenceId(1), 1, h);
      const std::vector<int32_t>* lb1 = m->hip()->CachedBlocks(SequenceId(2), 1, h);
      const std::vector<int32_t>* la0 = m->hip()->CachedBlocks(SequenceId(1), 0, h);
      const std::vector<int32_t>* lb0 = m->hip()->CachedBlocks(SequenceId(2), 0, h);
      ASSERT_TRUE(la1 != nullptr && lb1 != nullptr && la0 != nullptr && lb0 != nullptr);
      EXPECT_EQ(la1->size(), 8u) << "step " << t << " head " << h;  // k 16 / block 2
      EXPECT_EQ(lb1->size(), 4u) << "step " << t << " head " << h;  // k 8 / block 2
      EXPECT_EQ(la0->size(), 6u) << "step " << t << " head " << h;  // layer override k 12
      EXPECT_EQ(lb0->size(), 6u) << "step " << t << " head " << h;
    }
  }
  ExpectSameTokens(ga, a);
  ExpectSameTokens(gb, b);

  // Malformed k values fail the step for that sequence, before anything runs: not a multiple of
  // the block size 2, negative, above the last stage_keep 16.
  for (int bad : {7, -2, 18}) {
    StepBatch b2;
    b2.work.push_back(Work(3, Prompt(10, 7), 0));
    b2.work[0].hip_k = bad;
    auto s = m->Step(b2).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << s;
    EXPECT_NE(s.message().find("hip_k"), std::string::npos) << s;
    EXPECT_EQ(m->last_failed_sequence(), SequenceId(3));
  }
  auto dense = MakeModel(comm.get(), "dense");
  StepBatch b3;
  b3.work.push_back(Work(1, Prompt(10, 7), 0));
  b3.work[0].hip_k = 16;
  EXPECT_EQ(dense->Step(b3).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HipModelTest, RejectsBadSetup) {
  auto comm = MakeLocalCommunicator();
  auto w = MakeBuiltinModel(BuiltinModelOptions{});
  ASSERT_TRUE(w.ok());
  ModelOptions mo;
  mo.attention = "sparse";
  EXPECT_EQ(Model::Create(*w, comm.get(), mo).status().code(), absl::StatusCode::kInvalidArgument);
  mo.attention = "hip";
  mo.hip.n_window = -3;
  auto s = Model::Create(*w, comm.get(), mo).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("n_window"), std::string::npos) << s;
  // The default overrides name layers 0..2; layers the model lacks are ignored.
  mo.hip = HipConfig{};
  EXPECT_TRUE(Model::Create(*w, comm.get(), mo).ok());
}

TEST(HipWorkerStateTest, ConfigureReadsHipConfigJson) {
  WorkerState ws(WorkerOptions{});
  v1::control::ConfigureRequest req;
  req.set_model("builtin:tiny");
  req.set_world_size(1);
  req.set_rank(0);
  req.set_attention("hip");
  req.set_hip_config_json(R"({"n_sinks": 4})");
  auto r = ws.Configure(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("n_sinks"), std::string::npos) << r.status();
  req.set_hip_config_json(HipConfigToJson(PruningConfig()));
  ASSERT_TRUE(ws.Configure(req).ok());
  v1::control::StepRequest step;
  v1::control::SeqWork* w = step.add_work();
  w->set_seq_id(1);
  for (int32_t t : Prompt(40, 7)) w->add_tokens(t);
  w->set_sample(true);
  w->mutable_sampling()->set_top_p(1.f);  // greedy
  v1::control::StepResult res = ws.Step(step);
  EXPECT_TRUE(res.error().empty()) << res.error();
  EXPECT_EQ(res.outputs_size(), 1);
}

// WorkerOptions::kv_dtype (--kv_dtype of `hipserve worker`) is parsed at Configure: a bad value
// fails it naming the flag; "fp8" on the CPU backend configures (ignored there, fp32 KV).
TEST(HipWorkerStateTest, ConfigureChecksKvDtype) {
  v1::control::ConfigureRequest req;
  req.set_model("builtin:tiny");
  req.set_world_size(1);
  req.set_rank(0);
  WorkerOptions bad;
  bad.kv_dtype = "int4";
  WorkerState wb(bad);
  auto r = wb.Configure(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("--kv_dtype"), std::string::npos) << r.status();
  WorkerOptions fp8;
  fp8.kv_dtype = "fp8";
  WorkerState wf(fp8);
  auto ok = wf.Configure(req);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->memory_plan().kv_dtype(), "fp32");
}

}  // namespace
}  // namespace hipserve::worker
