#include "worker/model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/device.h"
#include "worker/builtin_model.h"

namespace hipserve::worker {
namespace {

std::unique_ptr<Model> MakeModel(
    Communicator* comm, int max_context = 256, int64_t budget = 1 << 20,
    kernels::CpuWeightType weights = kernels::CpuWeightType::kFloat32) {
  BuiltinModelOptions o;
  auto w = MakeBuiltinModel(o);
  EXPECT_TRUE(w.ok()) << w.status();
  ModelOptions mo;
  mo.max_context = max_context;
  mo.kv_budget_tokens = budget;
  mo.cpu_weights = weights;
  auto m = Model::Create(*std::move(w), comm, mo);
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

SeqStep Work(uint64_t seq, std::vector<int32_t> tokens, int start, bool sample = true) {
  SeqStep s;
  s.seq = SequenceId(seq);
  s.tokens = std::move(tokens);
  s.start_pos = start;
  s.sample = sample;
  return s;
}

// Greedy-generates `n` tokens after `prompt`, one decode step at a time.
std::vector<SampledToken> Generate(Model& m, uint64_t seq, std::vector<int32_t> prompt, int n) {
  std::vector<SampledToken> out;
  StepBatch b;
  b.work.push_back(Work(seq, prompt, 0));
  int pos = 0;
  for (int i = 0; i < n; ++i) {
    auto r = m.Step(b);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || r->size() != 1) return out;
    out.push_back((*r)[0]);
    pos += static_cast<int>(b.work[0].tokens.size());
    b.work[0] = Work(seq, {(*r)[0].token}, pos);
  }
  return out;
}

TEST(ModelTest, BackendIsChosenByName) {
  auto comm = MakeLocalCommunicator();
  auto w = MakeBuiltinModel(BuiltinModelOptions{});
  ASSERT_TRUE(w.ok());
  ModelOptions mo;
  mo.backend = "tpu";
  EXPECT_EQ(Model::Create(*w, comm.get(), mo).status().code(), absl::StatusCode::kInvalidArgument);
  mo.backend = "cpu";
  auto cpu = Model::Create(*w, comm.get(), mo);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*cpu)->backend_name(), "cpu");
  if (kernels::CudaDeviceCount() == 0) {
    // No device (or a CPU build): a clear refusal, never a crash.
    mo.backend = "cuda";
    const absl::StatusCode code = Model::Create(*w, comm.get(), mo).status().code();
    EXPECT_TRUE(code == absl::StatusCode::kUnimplemented || code == absl::StatusCode::kUnavailable)
        << code;
  }
}

// cpu_emulate_bf16 rounds what the GPU stores as bf16: logits move a little (never nothing,
// never much) and stay finite.
TEST(ModelTest, EmulatedBf16ActivationsStayCloseToFp32) {
  auto comm = MakeLocalCommunicator();
  auto w = MakeBuiltinModel(BuiltinModelOptions{});
  ASSERT_TRUE(w.ok());
  ModelOptions exact;
  ModelOptions emulated;
  emulated.cpu_emulate_bf16 = true;
  auto a = Model::Create(*w, comm.get(), exact);
  auto b = Model::Create(*w, comm.get(), emulated);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % 256);
  auto la = (*a)->PrefillLogits(SequenceId(1), ids, 0);
  auto lb = (*b)->PrefillLogits(SequenceId(1), ids, 0);
  ASSERT_TRUE(la.ok() && lb.ok());
  ASSERT_EQ(la->size(), lb->size());
  float range = 0, worst = 0;
  for (float x : *la) range = std::max(range, std::fabs(x));
  for (size_t i = 0; i < la->size(); ++i) {
    ASSERT_TRUE(std::isfinite((*lb)[i]));
    worst = std::max(worst, std::fabs((*la)[i] - (*lb)[i]));
  }
  EXPECT_GT(worst, 0.f);  // the rounding happened
  EXPECT_LT(worst, 0.05f * range);
}

TEST(ModelTest, ParseCpuWeights) {
  EXPECT_EQ(*ParseCpuWeights("fp32"), kernels::CpuWeightType::kFloat32);
  EXPECT_EQ(*ParseCpuWeights("bf16"), kernels::CpuWeightType::kBf16);
  EXPECT_EQ(ParseCpuWeights("fp16").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCpuWeights("").status().code(), absl::StatusCode::kInvalidArgument);
}

// --kv_dtype: the two values, anything else refused naming the flag (serve / worker exit 2 with
// this message: tests/integration/cli_test.cc).
TEST(ModelTest, ParseKvDtype) {
  EXPECT_EQ(*ParseKvDtype("bf16"), kernels::KvDtype::kBf16);
  EXPECT_EQ(*ParseKvDtype("fp8"), kernels::KvDtype::kFp8E5m2);
  for (const char* bad : {"fp16", "", "FP8", "fp8_e5m2", "e5m2"}) {
    const absl::Status s = ParseKvDtype(bad).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("--kv_dtype must be 'bf16' or 'fp8'"), std::string::npos) << s;
  }
}

// The GPU pool's bytes per token (the memory plan's divisor): fp8 is half of bf16, so a budget
// holds twice the tokens. Llama-3.1-8B (32 layers, 8 KV heads of 128): 128 KiB per token in
// bf16, 64 KiB in fp8 (the host tier's figure, docs/OFFLOAD.md); a TP-4 rank holds 2 KV heads.
TEST(ModelTest, GpuKvPoolBytesPerTokenHalvesWithFp8) {
  EXPECT_EQ(GpuKvPoolBytesPerToken(32, 8, 128, kernels::KvDtype::kBf16), 128 * 1024);
  EXPECT_EQ(GpuKvPoolBytesPerToken(32, 8, 128, kernels::KvDtype::kFp8E5m2), 64 * 1024);
  EXPECT_EQ(GpuKvPoolBytesPerToken(32, 2, 128, kernels::KvDtype::kFp8E5m2), 16 * 1024);
  // SmolLM2-135M: 30 layers, 3 KV heads of 64.
  EXPECT_EQ(GpuKvPoolBytesPerToken(30, 3, 64, kernels::KvDtype::kBf16), 23040);
  const int64_t budget = int64_t{40} << 30;  // --gpu_kv_bytes=40GiB, as WorkerState divides it
  EXPECT_EQ(budget / GpuKvPoolBytesPerToken(32, 8, 128, kernels::KvDtype::kBf16), 327680);
  EXPECT_EQ(budget / GpuKvPoolBytesPerToken(32, 8, 128, kernels::KvDtype::kFp8E5m2), 655360);
}

// The CPU backend keeps its own fp32 KV: --kv_dtype=fp8 (a CUDA pool setting) is logged and
// ignored, so `serve --backend=auto --kv_dtype=fp8` also runs where no GPU is visible; the plan
// says what the KV really is.
TEST(ModelTest, CpuBackendIgnoresFp8KvDtype) {
  auto comm = MakeLocalCommunicator();
  auto w = MakeBuiltinModel(BuiltinModelOptions{});
  ASSERT_TRUE(w.ok());
  ModelOptions bf16, fp8;
  fp8.cuda.kv_dtype = kernels::KvDtype::kFp8E5m2;
  auto a = Model::Create(*w, comm.get(), bf16);
  auto b = Model::Create(*w, comm.get(), fp8);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->memory_plan().kv_dtype, "fp32");
  EXPECT_EQ((*a)->memory_plan().kv_bytes, (*b)->memory_plan().kv_bytes);
  const std::vector<int32_t> ids = {3, 14, 15, 92, 65, 35};
  auto la = (*a)->PrefillLogits(SequenceId(1), ids, 0);
  auto lb = (*b)->PrefillLogits(SequenceId(1), ids, 0);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(*la, *lb);
}

// bf16 weights on the builtin model, whose weights are bf16 values already (builtin_model.cc):
// rounding them changes nothing, so the bf16 model's logits must equal the fp32 model's up to
// fp32 summation order (prefill: sgemm on bf16 widened per block; decode rows: the bf16 GEMV,
// bitwise equal to the fp32 GEMV on such values), and decoding one token at a time must give
// the logits of prefilling the same text. (The real model's bf16 rounding is checked in
// tests/reference/logits_test.cc.)
TEST(ModelTest, Bf16WeightsStayNearFp32AndDecodeMatchesPrefill) {
  auto comm = MakeLocalCommunicator();
  auto f32 = MakeModel(comm.get());
  auto b16 = MakeModel(comm.get(), 256, 1 << 20, kernels::CpuWeightType::kBf16);
  EXPECT_EQ(b16->dtype_name(), "bf16");
  const std::vector<int32_t> text = {72, 101, 108, 108, 111, 32, 119, 111, 114, 108};
  const int vocab = f32->dims().vocab_size;
  auto lf = f32->PrefillLogits(SequenceId(1), text, 0);
  auto lb = b16->PrefillLogits(SequenceId(1), text, 0);
  ASSERT_TRUE(lf.ok() && lb.ok());
  double scale = 1, worst = 0;
  for (float v : *lf) scale = std::max(scale, std::abs(double{v}));
  for (size_t i = 0; i < lf->size(); ++i) {
    worst = std::max(worst, std::abs(double{(*lb)[i]} - (*lf)[i]));
  }
  EXPECT_LE(worst, 1e-5 * scale);
  // The same text one token at a time (decode rows go through the GEMV).
  std::vector<float> step_logits;
  for (size_t i = 0; i < text.size(); ++i) {
    auto l = b16->PrefillLogits(SequenceId(2), {text[i]}, static_cast<int>(i));
    ASSERT_TRUE(l.ok()) << l.status();
    step_logits.insert(step_logits.end(), l->begin(), l->end());
  }
  ASSERT_EQ(step_logits.size(), lb->size());
  double gap = 0;
  for (size_t i = 0; i < lb->size(); ++i) {
    gap = std::max(gap, std::abs(double{step_logits[i]} - (*lb)[i]));
  }
  EXPECT_LE(gap, 1e-4 * scale) << "vocab " << vocab;
}

TEST(ModelTest, IncrementalDecodeMatchesFullPrefill) {
  auto comm = MakeLocalCommunicator();
  auto m = MakeModel(comm.get());
  std::vector<int32_t> prompt = {72, 101, 108, 108, 111, 32, 119};
  auto gen = Generate(*m, 1, prompt, 6);
  ASSERT_EQ(gen.size(), 6u);
  // Re-run the whole text (prompt + first 5 generated) as one prefill: the next token and its
  // log-probability must match the incremental path.
  std::vector<int32_t> full = prompt;
  for (int i = 0; i < 5; ++i) full.push_back(gen[i].token);
  StepBatch b;
  b.work.push_back(Work(2, full, 0));
  auto r = m->Step(b);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].token, gen[5].token);
  EXPECT_NEAR((*r)[0].logprob, gen[5].logprob, 1e-4);
}

TEST(ModelTest, BatchingDoesNotChangeResults) {
  auto comm = MakeLocalCommunicator();
  auto alone = MakeModel(comm.get());
  auto a = Generate(*alone, 1, {1, 2, 3, 4}, 4);
  auto b = Generate(*alone, 2, {200, 201}, 4);
  auto batched = MakeModel(comm.get());
  StepBatch batch;
  batch.work = {Work(1, {1, 2, 3, 4}, 0), Work(2, {200, 201}, 0)};
  int pos[2] = {4, 2};
  for (int step = 0; step < 4; ++step) {
    auto r = batched->Step(batch);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].token, a[step].token) << "step " << step;
    EXPECT_EQ((*r)[1].token, b[step].token) << "step " << step;
    batch.work = {Work(1, {(*r)[0].token}, pos[0]), Work(2, {(*r)[1].token}, pos[1])};
    pos[0]++;
    pos[1]++;
  }
}

TEST(ModelTest, SeededSamplingIsReproducible) {
  auto comm = MakeLocalCommunicator();
  auto m = MakeModel(comm.get());
  std::vector<int32_t> tokens[2];
  for (int run = 0; run < 2; ++run) {
    StepBatch b;
    b.work.push_back(Work(10 + run, {5, 6, 7}, 0));
    b.work[0].sampling.temperature = 1.0f;
    b.work[0].sampling.seed = 99;
    int pos = 3;
    for (int i = 0; i < 8; ++i) {
      b.work[0].sampling.sample_index = i;
      auto r = m->Step(b);
      ASSERT_TRUE(r.ok()) << r.status();
      tokens[run].push_back((*r)[0].token);
      b.work[0].tokens = {(*r)[0].token};
      b.work[0].start_pos = pos++;
    }
  }
  EXPECT_EQ(tokens[0], tokens[1]);
}

TEST(ModelTest, RejectsBadInputWithoutChangingState) {
  auto comm = MakeLocalCommunicator();
  auto m = MakeModel(comm.get(), /*max_context=*/16);
  StepBatch ok;
  ok.work.push_back(Work(1, {1, 2, 3}, 0));
  ASSERT_TRUE(m->Step(ok).ok());
  EXPECT_EQ(m->kv_tokens(), 3);

  StepBatch bad_token;
  bad_token.work.push_back(Work(1, {4, 9999}, 3));
  auto r = m->Step(bad_token);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("9999"), std::string::npos) << r.status();

  StepBatch wrong_pos;
  wrong_pos.work.push_back(Work(1, {4}, 7));
  EXPECT_EQ(m->Step(wrong_pos).status().code(), absl::StatusCode::kFailedPrecondition);

  StepBatch too_long;
  too_long.work.push_back(Work(1, std::vector<int32_t>(14, 1), 3));
  EXPECT_EQ(m->Step(too_long).status().code(), absl::StatusCode::kInvalidArgument);

  StepBatch empty;
  empty.work.push_back(Work(2, {}, 0));
  EXPECT_EQ(m->Step(empty).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(m->kv_tokens(), 3);
  EXPECT_EQ(m->num_sequences(), 1);
  StepBatch next;
  next.work.push_back(Work(1, {4}, 3));
  EXPECT_TRUE(m->Step(next).ok());
  EXPECT_EQ(m->kv_tokens(), 4);
}

TEST(ModelTest, KvBudgetFailureRollsBackTheWholeStep) {
  auto comm = MakeLocalCommunicator();
  auto m = MakeModel(comm.get(), 256, /*budget=*/10);
  StepBatch a;
  a.work.push_back(Work(1, {1, 2, 3, 4, 5, 6}, 0));
  ASSERT_TRUE(m->Step(a).ok());
  StepBatch b;
  b.work = {Work(2, {1, 2, 3}, 0), Work(3, {7, 8, 9}, 0)};
  auto r = m->Step(b);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_EQ(m->kv_tokens(), 6);
  EXPECT_EQ(m->num_sequences(), 1);
  // Releasing frees the budget for the others.
  StepBatch c;
  c.release = {SequenceId(1)};
  c.work = {Work(2, {1, 2, 3}, 0), Work(3, {7, 8, 9}, 0)};
  EXPECT_TRUE(m->Step(c).ok());
  EXPECT_EQ(m->kv_tokens(), 6);
  EXPECT_EQ(m->num_sequences(), 2);
}

TEST(ModelTest, ShardingRejectsIndivisibleDegree) {
  auto w = MakeBuiltinModel(BuiltinModelOptions{});
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(ShardWeights(*w, 0, 3).status().code(), absl::StatusCode::kInvalidArgument);
  auto s = ShardWeights(*w, 1, 2);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->local_kv_heads(), 1);
  EXPECT_EQ(s->vocab_begin, 130);
  EXPECT_EQ(s->vocab_end, 259);
}

}  // namespace
}  // namespace hipserve::worker
