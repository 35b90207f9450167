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
// Tolerance. hipserve computes in fp32 (OpenBLAS sgemm), the reference in fp64 on the same
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
const std::vector<int32_t> kExpectedGreedy = {2822, 24,  38572, 46477, 24, 94,  731, 216,
                                              34,   25,  1232,  216,   33, 28,  304, 25};

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

class ReferenceLogitsTest : public ::testing::Test {
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
    auto shard = worker::ShardWeights(std::move(src->weights), 0, 1);
    if (!shard.ok()) {
      load_error_ = new std::string(std::string(shard.status().message()));
      return;
    }
    comm_ = worker::MakeLocalCommunicator().release();
    worker::ModelOptions o;
    o.attention = "dense";
    o.kv_budget_tokens = 4096;
    auto model = worker::Model::Create(std::move(*shard), comm_, o);
    if (!model.ok()) {
      load_error_ = new std::string(std::string(model.status().message()));
      return;
    }
    model_ = model->release();
  }
  static void TearDownTestSuite() {
    delete model_;
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
    ASSERT_EQ(load_error_, nullptr) << "HIPSERVE_DEFAULT_MODEL=" << ModelPath() << ": "
                                    << *load_error_;
    ASSERT_NE(model_, nullptr);
  }

  static std::string* load_error_;
  static nlohmann::json* ref_;
  static worker::Communicator* comm_;
  static worker::Model* model_;
  static coordinator::Tokenizer* tokenizer_;
};

std::string* ReferenceLogitsTest::load_error_ = nullptr;
nlohmann::json* ReferenceLogitsTest::ref_ = nullptr;
worker::Communicator* ReferenceLogitsTest::comm_ = nullptr;
worker::Model* ReferenceLogitsTest::model_ = nullptr;
coordinator::Tokenizer* ReferenceLogitsTest::tokenizer_ = nullptr;

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

TEST_F(ReferenceLogitsTest, GreedyCompletionIsFixed) {
  const auto& p = (*ref_)["prompts"][kGreedyPrompt];
  const auto numpy_greedy = p["greedy"].get<std::vector<int32_t>>();
  EXPECT_EQ(numpy_greedy, kExpectedGreedy) << "numpy's greedy continuation changed";
  const common::SequenceId seq(7);
  std::vector<int32_t> got;
  worker::StepBatch b;
  worker::SeqStep s;
  s.seq = seq;
  s.tokens = p["ids"].get<std::vector<int32_t>>();
  s.start_pos = 0;
  s.sample = true;  // default SamplingOptions: temperature 0 = greedy
  for (int i = 0; i < kGreedySteps; ++i) {
    b.work = {s};
    auto out = model_->Step(b);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ(out->size(), 1u);
    got.push_back((*out)[0].token);
    s.start_pos += static_cast<int32_t>(s.tokens.size());
    s.tokens = {(*out)[0].token};
  }
  ASSERT_TRUE(model_->Release(seq).ok());
  EXPECT_EQ(got, kExpectedGreedy) << "decoded: " << tokenizer_->Decode(got);
}

}  // namespace
}  // namespace hipserve
