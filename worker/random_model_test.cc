#include "worker/random_model.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <set>

#include "coordinator/tokenizer/tokenizer.h"
#include "kernels/dtype/bf16.h"
#include "kernels/rope/rope.h"
#include "worker/hip_config.h"
#include "worker/loader/model_config.h"
#include "worker/model.h"
#include "worker/model_source.h"

namespace hipserve::worker {
namespace {

// meta-llama/Llama-3.1-8B-Instruct's config.json (as in loader/model_config_test.cc).
constexpr char kLlama31[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";

void ExpectSameRope(const kernels::RopeConfig& a, const kernels::RopeConfig& b) {
  EXPECT_EQ(a.theta, b.theta);
  EXPECT_EQ(a.scaling, b.scaling);
  EXPECT_EQ(a.factor, b.factor);
  EXPECT_EQ(a.low_freq_factor, b.low_freq_factor);
  EXPECT_EQ(a.high_freq_factor, b.high_freq_factor);
  EXPECT_EQ(a.original_max_position, b.original_max_position);
}

// The 8B preset's dims equal what the HF loader makes of Llama-3.1-8B's config.json (field by
// field as model_source.cc's FromLoaded maps them), without generating a weight.
TEST(RandomModelTest, Llama31_8BMatchesTheRealConfig) {
  auto d = RandomModelDims("llama-3.1-8b");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->name, "random:llama-3.1-8b");
  EXPECT_EQ(d->arch, "llama");
  EXPECT_EQ(d->vocab_size, 128256);
  EXPECT_EQ(d->hidden, 4096);
  EXPECT_EQ(d->intermediate, 14336);
  EXPECT_EQ(d->num_layers, 32);
  EXPECT_EQ(d->num_heads, 32);
  EXPECT_EQ(d->num_kv_heads, 8);
  EXPECT_EQ(d->head_dim, 128);
  EXPECT_EQ(d->rms_eps, 1e-5f);
  EXPECT_EQ(d->max_context, 131072);
  EXPECT_FALSE(d->qkv_bias);
  EXPECT_FALSE(d->tie_word_embeddings);
  EXPECT_EQ(d->rope.scaling, kernels::RopeScaling::kLlama3);
  EXPECT_EQ(d->rope.theta, 500000.f);
  EXPECT_EQ(d->rope.factor, 8.f);
  EXPECT_EQ(d->rope.low_freq_factor, 1.f);
  EXPECT_EQ(d->rope.high_freq_factor, 4.f);
  EXPECT_EQ(d->rope.original_max_position, 8192);

  auto c = loader::ConfigFromHfJson(kLlama31);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(d->vocab_size, c->vocab_size);
  EXPECT_EQ(d->hidden, c->hidden_size);
  EXPECT_EQ(d->intermediate, c->intermediate_size);
  EXPECT_EQ(d->num_layers, c->num_layers);
  EXPECT_EQ(d->num_heads, c->num_heads);
  EXPECT_EQ(d->num_kv_heads, c->num_kv_heads);
  EXPECT_EQ(d->head_dim, c->head_dim);
  EXPECT_EQ(d->rms_eps, c->rms_eps);
  EXPECT_EQ(d->max_context, c->max_position);
  EXPECT_EQ(d->tie_word_embeddings, c->tie_word_embeddings);
  EXPECT_EQ(d->qkv_bias, c->qkv_bias);
  ASSERT_EQ(c->rope_scaling.type, loader::RopeScalingType::kLlama3);
  kernels::RopeConfig hf;
  hf.theta = c->rope_theta;
  hf.scaling = kernels::RopeScaling::kLlama3;
  hf.factor = c->rope_scaling.factor;
  hf.low_freq_factor = c->rope_scaling.low_freq_factor;
  hf.high_freq_factor = c->rope_scaling.high_freq_factor;
  hf.original_max_position = static_cast<int>(c->rope_scaling.original_max_position);
  ExpectSameRope(d->rope, hf);

  // The scaling is in effect: the lowest frequency is divided by the factor, the highest kept.
  std::vector<float> scaled(64), plain(64);
  ASSERT_TRUE(kernels::RopeInvFreq(d->rope, 128, scaled.data()).ok());
  kernels::RopeConfig none = d->rope;
  none.scaling = kernels::RopeScaling::kNone;
  ASSERT_TRUE(kernels::RopeInvFreq(none, 128, plain.data()).ok());
  EXPECT_EQ(scaled[0], plain[0]);
  EXPECT_NEAR(scaled[63], plain[63] / 8, plain[63] * 1e-5);
}

TEST(RandomModelTest, SmallVariantsKeepTheStructure) {
  auto full = RandomModelDims("llama-3.1-8b");
  auto two = RandomModelDims("llama-3.1-8b-2l");
  auto tiny = RandomModelDims("tiny-llama3");
  ASSERT_TRUE(full.ok() && two.ok() && tiny.ok());
  EXPECT_EQ(two->num_layers, 2);
  EXPECT_EQ(two->vocab_size, full->vocab_size);
  EXPECT_EQ(two->hidden, full->hidden);
  EXPECT_EQ(two->intermediate, full->intermediate);
  EXPECT_EQ(two->num_heads, full->num_heads);
  EXPECT_EQ(two->num_kv_heads, full->num_kv_heads);
  EXPECT_EQ(two->head_dim, full->head_dim);
  EXPECT_EQ(two->max_context, full->max_context);
  ExpectSameRope(two->rope, full->rope);
  ExpectSameRope(tiny->rope, full->rope);
  EXPECT_EQ(tiny->max_context, full->max_context);
  EXPECT_GT(tiny->vocab_size, 259);  // ids past the byte tokenizer's table, as in the 8B
  EXPECT_EQ(tiny->num_heads % tiny->num_kv_heads, 0);
  EXPECT_EQ(RandomModelPresetNames(),
            (std::vector<std::string>{"llama-3.1-8b", "llama-3.1-8b-2l", "tiny-llama3"}));
}

TEST(RandomModelTest, UnknownNameListsTheKnownOnes) {
  auto d = RandomModelDims("llama-4");
  ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& n : RandomModelPresetNames()) {
    EXPECT_NE(d.status().message().find("random:" + n), absl::string_view::npos)
        << d.status().message();
  }
  auto s = LoadModelSource("random:nope", 0);
  ASSERT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("random:nope"), absl::string_view::npos);
  EXPECT_NE(s.status().message().find("random:llama-3.1-8b"), absl::string_view::npos);
  EXPECT_EQ(LoadModelSource("random:", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

void ExpectSameWeights(const ModelWeights& a, const ModelWeights& b) {
  EXPECT_EQ(a.token_embd, b.token_embd);
  EXPECT_EQ(a.lm_head, b.lm_head);
  EXPECT_EQ(a.output_norm, b.output_norm);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerWeights &x = a.layers[i], &y = b.layers[i];
    EXPECT_EQ(x.attn_norm, y.attn_norm);
    EXPECT_EQ(x.wq, y.wq);
    EXPECT_EQ(x.wk, y.wk);
    EXPECT_EQ(x.wv, y.wv);
    EXPECT_EQ(x.wo, y.wo);
    EXPECT_EQ(x.ffn_norm, y.ffn_norm);
    EXPECT_EQ(x.w_gate, y.w_gate);
    EXPECT_EQ(x.w_up, y.w_up);
    EXPECT_EQ(x.w_down, y.w_down);
  }
}

double Std(const std::vector<float>& v) {
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += double{x} * x;
  const double m = s / v.size();
  return std::sqrt(s2 / v.size() - m * m);
}

TEST(RandomModelTest, DeterministicAcrossThreadCountsAndSeeded) {
  RandomWeightsOptions one{7, 1}, pool{7, 0}, other{8, 0};
  auto a = MakeRandomModel("tiny-llama3", one);
  auto b = MakeRandomModel("tiny-llama3", pool);
  auto c = MakeRandomModel("tiny-llama3", other);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status() << c.status();
  ExpectSameWeights(*a, *b);
  EXPECT_NE(a->token_embd, c->token_embd);
  EXPECT_NE(a->layers[3].w_down, c->layers[3].w_down);
  EXPECT_EQ(a->dims.name, "random:tiny-llama3/seed7");
  // Tensors are distinct streams (not one tensor's values repeated in another).
  EXPECT_NE(a->layers[0].w_gate, a->layers[0].w_up);
  EXPECT_NE(a->layers[0].wq, a->layers[1].wq);

  const ModelDims& d = a->dims;
  EXPECT_EQ(a->token_embd.size(), size_t(d.vocab_size) * d.hidden);
  EXPECT_EQ(a->layers[0].wk.size(), size_t(d.num_kv_heads) * d.head_dim * d.hidden);
  EXPECT_EQ(a->vocab_end, d.vocab_size);
  // bf16 values, norms 1, the documented scales.
  for (float x : a->layers[2].w_up) ASSERT_EQ(x, kernels::RoundToBf16(x));
  for (float x : a->layers[1].ffn_norm) ASSERT_EQ(x, 1.f);
  EXPECT_NEAR(Std(a->token_embd), 1.0, 0.02);
  EXPECT_NEAR(Std(a->layers[0].wq) * std::sqrt(d.hidden), 1.0, 0.03);
  EXPECT_NEAR(Std(a->layers[0].w_down) * std::sqrt(d.intermediate), 0.5, 0.02);
  EXPECT_NEAR(Std(a->lm_head) * std::sqrt(d.hidden), 3.0, 0.06);
}

// The tokenizer a random model hands to the coordinator, rebuilt as the coordinator does
// (remote_worker_group.cc FromProto, non-"byte" branch): the byte tokenizer's ids for text, and
// a table over the model's whole vocabulary, so sampled ids and benchmark prompts of random
// ids past the byte range are valid and decode to harmless text.
TEST(RandomModelTest, TokenizerCoversTheVocabulary) {
  auto src = LoadModelSource("random:tiny-llama3", 0);
  ASSERT_TRUE(src.ok()) << src.status();
  const v1::control::TokenizerSpec& p = src->tokenizer;
  coordinator::TokenizerSpec spec;
  spec.model = p.model();
  spec.tokens.assign(p.tokens().begin(), p.tokens().end());
  spec.merges.assign(p.merges().begin(), p.merges().end());
  spec.token_types.assign(p.token_types().begin(), p.token_types().end());
  spec.bos_token_id = p.bos_token_id();
  spec.eos_token_ids.assign(p.eos_token_ids().begin(), p.eos_token_ids().end());
  spec.chat_template = p.chat_template();
  spec.add_bos = p.add_bos();
  spec.pre = p.pre();
  auto tok = coordinator::Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const coordinator::Tokenizer& t = **tok;
  EXPECT_EQ(t.vocab_size(), src->weights.dims.vocab_size);
  EXPECT_TRUE(t.IsEos(256));
  EXPECT_TRUE(t.IsEos(258));
  EXPECT_FALSE(t.IsEos(300));
  EXPECT_TRUE(t.Validate({0, 255, 258, 259, 511}).ok());

  // Text encodes to its bytes (as the "byte" tokenizer), specials to 256..258.
  const std::string text = "Hello, w\xC3\xB6rld!\n\t~ \x7F";
  std::vector<int32_t> bytes;
  for (char c : text) bytes.push_back(static_cast<uint8_t>(c));
  EXPECT_EQ(t.Encode(text, true, false), bytes);
  EXPECT_EQ(t.Decode(bytes), text);
  EXPECT_EQ(t.Encode("<|im_start|>hi<|im_end|>", true, true),
            (std::vector<int32_t>{257, 'h', 'i', 258}));
  auto compare = coordinator::MakeByteTokenizerSpec();
  EXPECT_EQ(spec.chat_template, compare.chat_template);
  for (int b = 0; b < 256; ++b) ASSERT_EQ(t.TokenText(b), std::string(1, char(b))) << b;

  // Ids past the specials: distinct short words.
  EXPECT_EQ(t.TokenText(259), " a");
  EXPECT_EQ(t.TokenText(259 + 25), " z");
  EXPECT_EQ(t.TokenText(259 + 26), " aa");
  std::set<std::string> words;
  for (int id = 259; id < t.vocab_size(); ++id) words.insert(t.TokenText(id));
  EXPECT_EQ(words.size(), size_t(t.vocab_size() - 259));

  // The 8B's table (built without the weights): every id a token, the last a 4-letter word.
  auto dims = RandomModelDims("llama-3.1-8b");
  ASSERT_TRUE(dims.ok());
  auto big = ByteLevelTokenizerSpec(dims->vocab_size);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->tokens_size(), 128256);
  EXPECT_EQ(big->token_types_size(), 128256);
  EXPECT_EQ(big->tokens(128255).size(), 2u + 4u);  // "\xC4\xA0" (the space) + 4 letters
  EXPECT_EQ(ByteLevelTokenizerSpec(258).status().code(), absl::StatusCode::kInvalidArgument);
}

// The small preset through LoadModelSource and worker::Model, as `serve --model=random:...`:
// byte tokenizer, finite and varied logits, ids past the byte range accepted as input, greedy
// decoding, HiP attention, a --max_context beyond the pretrained length.
TEST(RandomModelTest, TinyRunsThroughModel) {
  auto src = LoadModelSource("random:tiny-llama3", 0);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(src->tokenizer.model(), "gpt2");  // byte-level (TokenizerCoversTheVocabulary)
  EXPECT_EQ(src->tokenizer.tokens_size(), src->weights.dims.vocab_size);
  EXPECT_EQ(src->weights.dims.name, "random:tiny-llama3/seed1234");
  const int vocab = src->weights.dims.vocab_size;

  auto comm = MakeLocalCommunicator();
  ModelOptions mo;
  mo.max_context = 2 * 131072;  // beyond the pretrained length, as --max_context allows
  auto model = Model::Create(std::move(src->weights), comm.get(), mo);
  ASSERT_TRUE(model.ok()) << model.status();
  Model& m = **model;
  EXPECT_EQ(m.max_context(), 2 * 131072);

  const std::vector<int32_t> text = {72, 101, 108, 108, 111, 32, 300, 511, 258, 119, 111, 114};
  auto logits = m.PrefillLogits(SequenceId(1), text, 0);
  ASSERT_TRUE(logits.ok()) << logits.status();
  ASSERT_EQ(logits->size(), text.size() * vocab);
  std::set<int> argmaxes;
  for (size_t t = 0; t < text.size(); ++t) {
    const float* row = logits->data() + t * vocab;
    int best = 0;
    float lo = row[0], hi = row[0];
    for (int v = 0; v < vocab; ++v) {
      ASSERT_TRUE(std::isfinite(row[v])) << "position " << t << " id " << v;
      if (row[v] > row[best]) best = v;
      lo = std::min(lo, row[v]);
      hi = std::max(hi, row[v]);
    }
    EXPECT_GT(hi - lo, 1.f) << "flat logits at position " << t;
    EXPECT_LT(hi - lo, 100.f) << "exploding logits at position " << t;
    argmaxes.insert(best);
  }
  EXPECT_GE(argmaxes.size(), text.size() / 2) << "argmax barely depends on the input";

  // Greedy decode, feeding every sampled id back (most are past the byte range).
  StepBatch b;
  SeqStep s;
  s.seq = SequenceId(2);
  s.tokens = text;
  s.sample = true;
  b.work.push_back(s);
  int pos = 0;
  std::set<int32_t> generated;
  for (int i = 0; i < 12; ++i) {
    auto r = m.Step(b);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->size(), 1u);
    const int32_t tok = (*r)[0].token;
    ASSERT_GE(tok, 0);
    ASSERT_LT(tok, vocab);
    EXPECT_TRUE(std::isfinite((*r)[0].logprob));
    generated.insert(tok);
    pos += static_cast<int>(b.work[0].tokens.size());
    b.work[0].tokens = {tok};
    b.work[0].start_pos = pos;
  }
  EXPECT_GE(generated.size(), 2u);

  // HiP attention with a pruning configuration (small sink / window / k).
  auto hip = ParseHipConfig(R"({
    "n_sink": 4, "n_window": 8, "block_q": 4, "chunk_sizes": [16, 4, 2], "extend_min_tokens": 0,
    "stage_keep": [64, 16], "k": 8, "stride_q": [2, 2, 1], "mask_refresh_interval": [6, 3, 2],
    "layer_overrides": [{"layers": [0], "k": 12, "pruning_positions": "chunk_indexed"}]})");
  ASSERT_TRUE(hip.ok()) << hip.status();
  auto w = MakeRandomModel("tiny-llama3", RandomWeightsOptions{});
  ASSERT_TRUE(w.ok());
  ModelOptions ho;
  ho.attention = "hip";
  ho.hip = *hip;
  auto hm = Model::Create(*std::move(w), comm.get(), ho);
  ASSERT_TRUE(hm.ok()) << hm.status();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 80; ++i) prompt.push_back((i * 37) % vocab);
  auto hl = (*hm)->PrefillLogits(SequenceId(3), prompt, 0);
  ASSERT_TRUE(hl.ok()) << hl.status();
  for (float x : *hl) ASSERT_TRUE(std::isfinite(x));
}

// Logits of `text` (prefilled as sequence 1): finite, not flat, not exploding, and the argmax
// moves with the input. Returns the distinct argmaxes.
std::set<int> CheckLogits(Model& m, const std::vector<int32_t>& text) {
  const int vocab = m.dims().vocab_size;
  auto logits = m.PrefillLogits(SequenceId(1), text, 0);
  EXPECT_TRUE(logits.ok()) << logits.status();
  std::set<int> argmaxes;
  if (!logits.ok()) return argmaxes;
  EXPECT_EQ(logits->size(), text.size() * vocab);
  for (size_t t = 0; t < text.size(); ++t) {
    const float* row = logits->data() + t * vocab;
    int best = 0;
    float lo = row[0], hi = row[0];
    double sum = 0, sum2 = 0;
    for (int v = 0; v < vocab; ++v) {
      if (!std::isfinite(row[v])) {
        ADD_FAILURE() << "position " << t << " id " << v << ": " << row[v];
        return argmaxes;
      }
      if (row[v] > row[best]) best = v;
      lo = std::min(lo, row[v]);
      hi = std::max(hi, row[v]);
      sum += row[v];
      sum2 += double{row[v]} * row[v];
    }
    const double sd = std::sqrt(sum2 / vocab - (sum / vocab) * (sum / vocab));
    EXPECT_GT(sd, 0.3) << "flat logits at position " << t;
    EXPECT_LT(hi - lo, 100.f) << "exploding logits at position " << t;
    if (t < 4) {
      std::cout << "position " << t << ": argmax " << best << ", logits in [" << lo << ", " << hi
                << "], std " << sd << "\n";
    }
    argmaxes.insert(best);
  }
  EXPECT_GE(argmaxes.size(), text.size() / 2) << "argmax barely depends on the input";
  return argmaxes;
}

// The 8B's depth at a tiny width: pre-norm blocks with these scales keep the residual stream
// and logits sane through 32 layers.
TEST(RandomModelTest, ThirtyTwoLayersStaySane) {
  auto d = RandomModelDims("tiny-llama3");
  ASSERT_TRUE(d.ok());
  d->num_layers = 32;
  auto w = MakeRandomWeights(*d, RandomWeightsOptions{});
  ASSERT_TRUE(w.ok()) << w.status();
  auto comm = MakeLocalCommunicator();
  auto m = Model::Create(*std::move(w), comm.get(), ModelOptions{});
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<int32_t> text;
  for (int i = 0; i < 24; ++i) text.push_back((i * 131 + 7) % d->vocab_size);
  CheckLogits(**m, text);
}

// The real thing, opt-in (32 GB of host memory; a minute or so on 16 cores):
// HIPSERVE_RANDOM_8B_TEST=1 generates random:llama-3.1-8b with bf16 CPU weights and checks its
// logits. Skipped otherwise.
TEST(RandomModelTest, Llama31_8BOptIn) {
  const char* on = std::getenv("HIPSERVE_RANDOM_8B_TEST");
  if (on == nullptr || std::string(on) != "1") GTEST_SKIP() << "HIPSERVE_RANDOM_8B_TEST != 1";
  const std::string preset = std::getenv("HIPSERVE_RANDOM_8B_PRESET") != nullptr
                                 ? std::getenv("HIPSERVE_RANDOM_8B_PRESET")
                                 : "llama-3.1-8b";
  auto t0 = std::chrono::steady_clock::now();
  auto src = LoadModelSource("random:" + preset, 0);
  ASSERT_TRUE(src.ok()) << src.status();
  auto t1 = std::chrono::steady_clock::now();
  std::cout << "generated in " << std::chrono::duration<double>(t1 - t0).count() << " s\n";
  const std::vector<float>& e = src->weights.token_embd;
  EXPECT_EQ(e.size(), size_t{128256} * 4096);
  EXPECT_NEAR(Std(std::vector<float>(e.end() - (1 << 20), e.end())), 1.0, 0.01);
  auto comm = MakeLocalCommunicator();
  ModelOptions mo;
  mo.cpu_weights = kernels::CpuWeightType::kBf16;
  mo.kv_budget_tokens = 4096;
  auto m = Model::Create(std::move(src->weights), comm.get(), mo);
  ASSERT_TRUE(m.ok()) << m.status();
  auto t2 = std::chrono::steady_clock::now();
  std::cout << "model created in " << std::chrono::duration<double>(t2 - t1).count() << " s\n";
  std::vector<int32_t> text;
  for (int i = 0; i < 16; ++i) text.push_back((i * 7919 + 11) % 128256);
  CheckLogits(**m, text);
  auto t3 = std::chrono::steady_clock::now();
  std::cout << "prefill of 16 tokens in " << std::chrono::duration<double>(t3 - t2).count()
            << " s\n";
}

}  // namespace
}  // namespace hipserve::worker
