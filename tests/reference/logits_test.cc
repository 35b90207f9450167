// hipserve's CPU forward pass on the real default model (SmolLM2-135M-Instruct, GGUF Q4_1)
// against an independent float64 numpy implementation: scripts/reference/logits_reference.py
// dequantises the GGUF itself and applies GGML's interleaved RoPE to the raw (llama.cpp-
// permuted) Q/K rows, while hipserve un-permutes the rows at load time and applies HF's
// half-split RoPE; the two agree only if loader, dequantisation and forward pass are right.
//
// Needs HIPSERVE_DEFAULT_MODEL (scripts/test.sh sets it from scripts/fetch-model.sh):
//   HIPSERVE_DEFAULT_MODEL=$(scripts/fetch-model.sh | tail -n1) ctest -R reference_logits_test
// Skipped when the variable is unset; FAILS when it is set but the model does not load.
//
// Suites: ReferenceLogitsTest runs the default fp32 weights (--cpu_weights=fp32);
// ReferenceLogitsBf16Test the bf16 weights against the fp32 model (bound stated at that suite).
//
// Tolerance. hipserve computes in fp32 (OpenBLAS sgemm for prefill, kernels/cpu_gemv for
// decode rows), the reference in fp64 on the same
// dequantised weights, so the only difference is fp32 rounding through 30 layers.
// `logits_reference.py --dtype float32 --compare` measures that effect for a numpy fp32 run:
// max |dlogit| 2.1e-5 over the committed top-20 logits (|logit| <= 28). hipserve's own
// measured worst case is 2.6e-5 (summation order differs: BLAS blocking, its softmax). The test
// allows |dlogit| <= 2e-3 * max(1, max|logit|) (~0.056 here; ~1e-3 relative, as the models
// issue asks): ~2000x above the measured error, and ~100x below what a real bug moves:
// running the numpy reference with half-split RoPE on the raw GGUF rows (the classic
// permutation bug) moves the top-20 logits by 5.2-8.3 and flips two of the three argmaxes.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/builtin_model.h"
#include "worker/communicator.h"
#include "worker/model.h"
#include "worker/model_source.h"

namespace hipserve {
namespace {

constexpr double kRelTol = 2e-3;  // of max(1, max|logit|); see the file comment
constexpr int kGreedySteps = 16;
// hipserve's own greedy continuation of prompt 2 (python_fibonacci), 16 tokens:
// " fib(n-1) + fib(n-2)"-style code. It equals the numpy reference's "greedy" list in the JSON
// (checked below); the smallest top-1/top-2 logit margin on the way is 0.40 ("greedy_margins"),
// ~10^4 times the measured hipserve-numpy logit difference, so the sequence is not tie-fragile.
constexpr int kGreedyPrompt = 2;
const std::vector<int32_t> kExpectedGreedy = {2822, 24, 38572, 46477, 24, 94, 731, 216,
                                              34,   25, 1232,  216,   33, 28, 304, 25};

const char* ModelPath() { return std::getenv("HIPSERVE_DEFAULT_MODEL"); }

coordinator::TokenizerSpec FromProto(const v1::control::TokenizerSpec& p) {
  coordinator::TokenizerSpec s;
  s.model = p.model();
  s.tokens.assign(p.tokens().begin(), p.tokens().end());
  s.merges.assign(p.merges().begin(), p.merges().end());
  s.token_types.assign(p.token_types().begin(), p.token_types().end());
  s.bos_token_id = p.bos_token_id();
  s.eos_token_ids.assign(p.eos_token_ids().begin(), p.eos_token_ids().end());
  s.chat_template = p.chat_template();
  s.add_bos = p.add_bos();
  s.pre = p.pre();
  return s;
}

// The model, tokenizer and reference, loaded once per suite; `weights` = ModelOptions::
// cpu_weights of the suite's model.
template <kernels::CpuWeightType kWeights>
class ReferenceFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (ModelPath() == nullptr) return;
    const std::string path = std::string(HIPSERVE_REFERENCE_TESTDATA) + "/smollm2_logits.json";
    std::ifstream in(path);
    if (!in) {
      load_error_ = new std::string("cannot open " + path);
      return;
    }
    ref_ = new nlohmann::json(nlohmann::json::parse(in));
    auto src = worker::LoadModelSource(ModelPath(), 0);
    if (!src.ok()) {
      load_error_ = new std::string(std::string(src.status().message()));
      return;
    }
    auto tok = coordinator::Tokenizer::Create(FromProto(src->tokenizer));
    if (!tok.ok()) {
      load_error_ = new std::string("tokenizer: " + std::string(tok.status().message()));
      return;
    }
    tokenizer_ = tok->release();
    comm_ = worker::MakeLocalCommunicator().release();
    // bf16 suites also get an fp32 model of the same weights to compare with.
    const bool with_fp32 = kWeights != kernels::CpuWeightType::kFloat32;
    for (int i = 0; i < (with_fp32 ? 2 : 1); ++i) {
      const bool last = i == (with_fp32 ? 1 : 0);
      auto shard = last ? worker::ShardWeights(std::move(src->weights), 0, 1)
                        : worker::ShardWeights(src->weights, 0, 1);
      if (!shard.ok()) {
        load_error_ = new std::string(std::string(shard.status().message()));
        return;
      }
      worker::ModelOptions o;
      o.attention = "dense";
      o.kv_budget_tokens = 4096;
      o.cpu_weights = last ? kWeights : kernels::CpuWeightType::kFloat32;
      auto model = worker::Model::Create(std::move(*shard), comm_, o);
      if (!model.ok()) {
        load_error_ = new std::string(std::string(model.status().message()));
        return;
      }
      (last ? model_ : fp32_model_) = model->release();
    }
  }
  static void TearDownTestSuite() {
    delete model_;
    delete fp32_model_;
    fp32_model_ = nullptr;
    delete comm_;
    delete tokenizer_;
    delete ref_;
    delete load_error_;
    model_ = nullptr;
    comm_ = nullptr;
    tokenizer_ = nullptr;
    ref_ = nullptr;
    load_error_ = nullptr;
  }
  void SetUp() override {
    if (ModelPath() == nullptr) {
      GTEST_SKIP() << "HIPSERVE_DEFAULT_MODEL is not set (scripts/test.sh sets it)";
    }
    ASSERT_EQ(load_error_, nullptr)
        << "HIPSERVE_DEFAULT_MODEL=" << ModelPath() << ": " << *load_error_;
    ASSERT_NE(model_, nullptr);
  }

  static std::string* load_error_;
  static nlohmann::json* ref_;
  static worker::Communicator* comm_;
  static worker::Model* model_;
  static worker::Model* fp32_model_;  // bf16 suites only: the same weights in fp32
  static coordinator::Tokenizer* tokenizer_;
};

template <kernels::CpuWeightType W>
std::string* ReferenceFixture<W>::load_error_ = nullptr;
template <kernels::CpuWeightType W>
nlohmann::json* ReferenceFixture<W>::ref_ = nullptr;
template <kernels::CpuWeightType W>
worker::Communicator* ReferenceFixture<W>::comm_ = nullptr;
template <kernels::CpuWeightType W>
worker::Model* ReferenceFixture<W>::model_ = nullptr;
template <kernels::CpuWeightType W>
worker::Model* ReferenceFixture<W>::fp32_model_ = nullptr;
template <kernels::CpuWeightType W>
coordinator::Tokenizer* ReferenceFixture<W>::tokenizer_ = nullptr;

using ReferenceLogitsTest = ReferenceFixture<kernels::CpuWeightType::kFloat32>;

TEST_F(ReferenceLogitsTest, TokenizerEncodesTheCommittedIds) {
  for (const auto& p : (*ref_)["prompts"]) {
    const auto want = p["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer_->Encode(p["text"].get<std::string>(), /*add_special=*/false,
                                 /*parse_special=*/true),
              want)
        << p["name"];
  }
}

TEST_F(ReferenceLogitsTest, LastPositionLogitsMatchNumpy) {
  const int vocab = model_->dims().vocab_size;
  int seq = 100;
  double worst = 0;
  for (const auto& p : (*ref_)["prompts"]) {
    const std::string name = p["name"];
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    auto logits = model_->PrefillLogits(common::SequenceId(seq), ids, 0);
    ASSERT_TRUE(logits.ok()) << name << ": " << logits.status();
    ASSERT_TRUE(model_->Release(common::SequenceId(seq)).ok());
    ++seq;
    ASSERT_EQ(logits->size(), ids.size() * vocab);
    const float* last = logits->data() + (ids.size() - 1) * vocab;
    const int argmax = static_cast<int>(std::max_element(last, last + vocab) - last);
    EXPECT_EQ(argmax, p["argmax"].get<int>()) << name;
    const double tol = kRelTol * std::max(1.0, p["logit_max_abs"].get<double>());
    const auto top_ids = p["top_ids"].get<std::vector<int>>();
    const auto top_logits = p["top_logits"].get<std::vector<double>>();
    for (size_t i = 0; i < top_ids.size(); ++i) {
      const double got = last[top_ids[i]];
      worst = std::max(worst, std::abs(got - top_logits[i]));
      EXPECT_NEAR(got, top_logits[i], tol) << name << " rank " << i << " id " << top_ids[i];
    }
  }
  std::printf("max |hipserve - numpy| over the top-20 logits: %.3e\n", worst);
}

// Greedy continuation of `prompt`, `steps` tokens, prefill then one token per step (the decode
// path); releases the sequence.
std::vector<int32_t> Greedy(worker::Model& m, const std::vector<int32_t>& prompt, int steps) {
  const common::SequenceId seq(7);
  std::vector<int32_t> got;
  worker::StepBatch b;
  worker::SeqStep s;
  s.seq = seq;
  s.tokens = prompt;
  s.start_pos = 0;
  s.sample = true;  // default SamplingOptions: temperature 0 = greedy
  for (int i = 0; i < steps; ++i) {
    b.work = {s};
    auto out = m.Step(b);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok() || out->size() != 1u) break;
    got.push_back((*out)[0].token);
    s.start_pos += static_cast<int32_t>(s.tokens.size());
    s.tokens = {(*out)[0].token};
  }
  EXPECT_TRUE(m.Release(seq).ok());
  return got;
}

TEST_F(ReferenceLogitsTest, GreedyCompletionIsFixed) {
  const auto& p = (*ref_)["prompts"][kGreedyPrompt];
  const auto numpy_greedy = p["greedy"].get<std::vector<int32_t>>();
  EXPECT_EQ(numpy_greedy, kExpectedGreedy) << "numpy's greedy continuation changed";
  const std::vector<int32_t> got =
      Greedy(*model_, p["ids"].get<std::vector<int32_t>>(), kGreedySteps);
  EXPECT_EQ(got, kExpectedGreedy) << "decoded: " << tokenizer_->Decode(got);
}

// ---- bf16 weights (ModelOptions::cpu_weights = kBf16, --cpu_weights=bf16) ------------------
// Rounding every linear weight to bf16 (8 significant bits, relative error <= 2^-9) is a real
// change of the model, not a rounding-order effect, so it gets its own, looser bound, against
// hipserve's fp32 logits of the same weights (which equal the numpy reference to ~1e-5):
// |dlogit| <= kBf16RelTol * max(1, max|logit|) over the whole vocabulary at the last position.
// Measured on the committed prompts: 6.9e-3 (|dlogit| ~0.19 at max|logit| ~28); the bound,
// 2e-2, is ~3x that and ~10x below what the RoPE permutation bug moves (5.2-8.3, see the file
// comment). The argmax of every prompt and the 16-token greedy continuation (smallest top-1/
// top-2 margin 0.40) must be the fp32 ones.
constexpr double kBf16RelTol = 2e-2;
using ReferenceLogitsBf16Test = ReferenceFixture<kernels::CpuWeightType::kBf16>;

TEST_F(ReferenceLogitsBf16Test, LastPositionLogitsNearFp32) {
  ASSERT_NE(fp32_model_, nullptr);
  EXPECT_EQ(model_->dtype_name(), "bf16");
  const int vocab = model_->dims().vocab_size;
  int seq = 200;
  double worst_rel = 0;
  for (const auto& p : (*ref_)["prompts"]) {
    const std::string name = p["name"];
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    std::vector<float> last[2];
    for (int i = 0; i < 2; ++i) {
      worker::Model* m = i == 0 ? fp32_model_ : model_;
      auto logits = m->PrefillLogits(common::SequenceId(seq), ids, 0);
      ASSERT_TRUE(logits.ok()) << name << ": " << logits.status();
      ASSERT_TRUE(m->Release(common::SequenceId(seq)).ok());
      last[i].assign(logits->end() - vocab, logits->end());
    }
    ++seq;
    double scale = 1, worst = 0;
    for (int t = 0; t < vocab; ++t) scale = std::max(scale, std::abs(double{last[0][t]}));
    for (int t = 0; t < vocab; ++t) {
      worst = std::max(worst, std::abs(double{last[1][t]} - last[0][t]));
    }
    worst_rel = std::max(worst_rel, worst / scale);
    EXPECT_LE(worst, kBf16RelTol * scale) << name;
    const auto argmax = [](const std::vector<float>& v) {
      return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
    };
    EXPECT_EQ(argmax(last[1]), argmax(last[0])) << name;
    EXPECT_EQ(argmax(last[1]), p["argmax"].get<int>()) << name;
  }
  std::printf("bf16 weights: max |bf16 - fp32| / max(1, max|logit|) over the vocabulary: %.3e\n",
              worst_rel);
}

TEST_F(ReferenceLogitsBf16Test, GreedyCompletionMatchesFp32) {
  const auto& p = (*ref_)["prompts"][kGreedyPrompt];
  const std::vector<int32_t> got =
      Greedy(*model_, p["ids"].get<std::vector<int32_t>>(), kGreedySteps);
  EXPECT_EQ(got, kExpectedGreedy) << "decoded: " << tokenizer_->Decode(got);
}

}  // namespace
}  // namespace hipserve
