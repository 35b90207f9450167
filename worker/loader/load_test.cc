// LoadModel end to end on tiny synthetic models (GGUF and Hugging Face layouts), and the
// Q/K RoPE row (un)permutation.
#include "worker/loader/load.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/loader/testing/writers.h"

namespace hipserve::worker::loader {
namespace {

using testing::MakeTinyModel;
using testing::TinyModelOptions;

Tensor RandomMatrix(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d;
  Tensor t{{rows, cols}, std::vector<float>(rows * cols)};
  for (float& v : t.data) v = d(rng);
  return t;
}

TEST(RopePermuteTest, ExplicitSmallCase) {
  // 2 heads of head_dim 4, one column: HF rows 0..7 -> GGUF order [0,2,1,3, 4,6,5,7].
  Tensor hf{{8, 1}, {0, 1, 2, 3, 4, 5, 6, 7}};
  auto g = PermuteHfToGgufRopeRows(hf, 2);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->data, (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  // head_dim 6: [0,3,1,4,2,5].
  Tensor hf6{{6}, {0, 1, 2, 3, 4, 5}};
  EXPECT_EQ(PermuteHfToGgufRopeRows(hf6, 1)->data, (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(UnpermuteGgufRopeRows(*PermuteHfToGgufRopeRows(hf6, 1), 1)->data, hf6.data);
}

TEST(RopePermuteTest, RoundTripIsIdentity) {
  for (int64_t heads : {1, 3, 9}) {
    const Tensor w = RandomMatrix(heads * 64, 5, heads);
    auto p = PermuteHfToGgufRopeRows(w, heads);
    ASSERT_TRUE(p.ok());
    EXPECT_NE(p->data, w.data);
    auto u = UnpermuteGgufRopeRows(*p, heads);
    ASSERT_TRUE(u.ok());
    EXPECT_EQ(u->shape, w.shape);
    EXPECT_EQ(u->data, w.data);
    EXPECT_EQ(PermuteHfToGgufRopeRows(*UnpermuteGgufRopeRows(w, heads), heads)->data, w.data);
  }
}

TEST(RopePermuteTest, RejectsBadShapes) {
  EXPECT_FALSE(PermuteHfToGgufRopeRows(Tensor{{6, 1}, std::vector<float>(6)}, 4).ok());
  EXPECT_FALSE(PermuteHfToGgufRopeRows(Tensor{{6, 1}, std::vector<float>(6)}, 2).ok());  // odd
  EXPECT_FALSE(UnpermuteGgufRopeRows(Tensor{{4, 1}, std::vector<float>(3)}, 1).ok());
  EXPECT_FALSE(UnpermuteGgufRopeRows(Tensor{{4, 1}, std::vector<float>(4)}, 0).ok());
}

// The semantic check: HF weights with rotate_half RoPE give the same rotated q as the
// permuted (GGUF) weights with interleaved RoPE, up to the same row permutation.
TEST(RopePermuteTest, RotateHalfOnHfEqualsInterleavedOnGguf) {
  const int64_t heads = 3, d = 8, hidden = 5, pos = 7;
  const double theta = 10000.0;
  const Tensor w = RandomMatrix(heads * d, hidden, 42);
  const Tensor x = RandomMatrix(hidden, 1, 43);
  auto matvec = [&](const Tensor& m) {
    std::vector<double> y(m.shape[0], 0.0);
    for (int64_t r = 0; r < m.shape[0]; ++r)
      for (int64_t c = 0; c < hidden; ++c) y[r] += double{m.data[r * hidden + c]} * x.data[c];
    return y;
  };
  auto angle = [&](int64_t i) { return pos * std::pow(theta, -2.0 * i / d); };
  std::vector<double> q_hf = matvec(w);  // rotate_half: pairs (i, i + d/2)
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < d / 2; ++i) {
      double& a = q_hf[h * d + i];
      double& b = q_hf[h * d + i + d / 2];
      const double c = std::cos(angle(i)), s = std::sin(angle(i));
      const double na = a * c - b * s, nb = b * c + a * s;
      a = na;
      b = nb;
    }
  }
  std::vector<double> q_g = matvec(*PermuteHfToGgufRopeRows(w, heads));  // pairs (2i, 2i+1)
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < d / 2; ++i) {
      double& a = q_g[h * d + 2 * i];
      double& b = q_g[h * d + 2 * i + 1];
      const double c = std::cos(angle(i)), s = std::sin(angle(i));
      const double na = a * c - b * s, nb = b * c + a * s;
      a = na;
      b = nb;
    }
  }
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < d / 2; ++i)
      for (int64_t s = 0; s < 2; ++s)
        EXPECT_NEAR(q_g[h * d + 2 * i + s], q_hf[h * d + s * d / 2 + i], 1e-9);
}

void ExpectTensorEq(const Tensor& a, const Tensor& b, const std::string& what) {
  EXPECT_EQ(a.shape, b.shape) << what;
  EXPECT_EQ(a.data, b.data) << what;
}

void ExpectSameModel(const LoadedModel& want, const LoadedModel& got) {
  const ModelConfig &a = want.config, &b = got.config;
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.max_position, b.max_position);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  ExpectTensorEq(want.token_embd, got.token_embd, "token_embd");
  ASSERT_EQ(want.layers.size(), got.layers.size());
  for (size_t i = 0; i < want.layers.size(); ++i) {
    const LayerTensors &x = want.layers[i], &y = got.layers[i];
    const std::string l = "layer " + std::to_string(i) + " ";
    ExpectTensorEq(x.attn_norm, y.attn_norm, l + "attn_norm");
    ExpectTensorEq(x.wq, y.wq, l + "wq");
    ExpectTensorEq(x.wk, y.wk, l + "wk");
    ExpectTensorEq(x.wv, y.wv, l + "wv");
    ExpectTensorEq(x.bq, y.bq, l + "bq");
    ExpectTensorEq(x.bk, y.bk, l + "bk");
    ExpectTensorEq(x.bv, y.bv, l + "bv");
    ExpectTensorEq(x.wo, y.wo, l + "wo");
    ExpectTensorEq(x.ffn_norm, y.ffn_norm, l + "ffn_norm");
    ExpectTensorEq(x.w_gate, y.w_gate, l + "w_gate");
    ExpectTensorEq(x.w_up, y.w_up, l + "w_up");
    ExpectTensorEq(x.w_down, y.w_down, l + "w_down");
  }
  ExpectTensorEq(want.output_norm, got.output_norm, "output_norm");
  ExpectTensorEq(want.lm_head, got.lm_head, "lm_head");
  const TokenizerData &s = want.tok, &t = got.tok;
  EXPECT_EQ(s.model, t.model);
  EXPECT_EQ(s.tokens, t.tokens);
  EXPECT_EQ(s.merges, t.merges);
  EXPECT_EQ(s.token_types, t.token_types);
  EXPECT_EQ(s.bos, t.bos);
  EXPECT_EQ(s.eos, t.eos);
  EXPECT_EQ(s.chat_template, t.chat_template);
  EXPECT_EQ(s.add_bos, t.add_bos);
  EXPECT_EQ(s.pre, t.pre);
}

struct Case {
  std::string arch;
  bool tie;
  GgmlType type;
};

class GgufLoadTest : public ::testing::TestWithParam<Case> {};

TEST_P(GgufLoadTest, RoundTrip) {
  const Case& c = GetParam();
  TinyModelOptions o;
  o.arch = c.arch;
  o.tie = c.tie;
  const LoadedModel want = MakeTinyModel(o);
  const std::string dir = testing::MakeTempDir("gguf_load");
  const std::string path = dir + "/tiny.gguf";
  testing::WriteFile(path, testing::TinyModelToGguf(want, c.type));
  auto got = LoadModel(path);
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameModel(want, *got);
  EXPECT_EQ(got->source, path);
  EXPECT_TRUE(got->rope_freqs.empty());
}

INSTANTIATE_TEST_SUITE_P(Variants, GgufLoadTest,
                         ::testing::Values(Case{"llama", false, GgmlType::kF32},
                                           Case{"llama", true, GgmlType::kF16},
                                           Case{"llama", false, GgmlType::kBF16},
                                           Case{"qwen2", false, GgmlType::kF32},
                                           Case{"qwen2", true, GgmlType::kF16}),
                         [](const ::testing::TestParamInfo<Case>& p) {
                           return p.param.arch + (p.param.tie ? "_tied_" : "_untied_") +
                                  GgmlTypeName(static_cast<uint32_t>(p.param.type));
                         });

TEST(HfLoadTest, SingleAndShardedMatchGguf) {
  for (const std::string arch : {"llama", "qwen2"}) {
    for (int shards : {1, 3}) {
      for (const std::string dtype : {"F32", "BF16", "F16"}) {
        TinyModelOptions o;
        o.arch = arch;
        o.tie = shards == 1;
        const LoadedModel want = MakeTinyModel(o);
        const std::string dir = testing::MakeTempDir("hf_load");
        testing::TinyModelToHfDir(want, dir, shards, dtype);
        auto got = LoadModel(dir);
        ASSERT_TRUE(got.ok()) << got.status();
        SCOPED_TRACE(arch + " shards=" + std::to_string(shards) + " " + dtype);
        ExpectSameModel(want, *got);
        // And the same model through GGUF loads identically.
        testing::WriteFile(dir + "/m.gguf", testing::TinyModelToGguf(want));
        auto via_gguf = LoadModel(dir + "/m.gguf");
        ASSERT_TRUE(via_gguf.ok()) << via_gguf.status();
        ExpectSameModel(*got, *via_gguf);
      }
    }
  }
}

TEST(LoadErrorTest, ShapeMismatchAndMissingTensor) {
  TinyModelOptions o;
  LoadedModel m = MakeTinyModel(o);
  const std::string dir = testing::MakeTempDir("load_err");
  // Wrong shape for blk.1.ffn_up.weight: [24, 16] -> [16, 24].
  m.layers[1].w_up.shape = {16, 24};
  testing::WriteFile(dir + "/bad.gguf", testing::TinyModelToGguf(m));
  auto r = LoadModel(dir + "/bad.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(
                "tensor 'blk.1.ffn_up.weight' has shape [16, 24], expected [24, 16]"),
            std::string::npos)
      << r.status();
  // HF checkpoint without lm_head and without tying.
  m = MakeTinyModel(o);
  testing::TinyModelToHfDir(m, dir, 1);
  testing::WriteFile(
      dir + "/model.safetensors",
      testing::BuildSafetensors({testing::StFloat("model.embed_tokens.weight", m.token_embd)}));
  r = LoadModel(dir);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_NE(r.status().message().find("model.layers.0.input_layernorm.weight"), std::string::npos)
      << r.status();
  EXPECT_EQ(LoadModel("/nonexistent/x.gguf").status().code(), absl::StatusCode::kNotFound);
  testing::WriteFile(dir + "/not.gguf", "hello world, not a model");
  r = LoadModel(dir + "/not.gguf");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
}

TEST(LoadErrorTest, TokenizerTextMustBeUtf8) {
  TinyModelOptions o;
  LoadedModel m = MakeTinyModel(o);
  m.tok.tokens[7] = "\xC3";  // truncated 2-byte sequence
  const std::string dir = testing::MakeTempDir("load_utf8");
  testing::WriteFile(dir + "/m.gguf", testing::TinyModelToGguf(m));
  auto r = LoadModel(dir + "/m.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tokenizer.ggml.tokens entry 7 is not valid UTF-8"),
            std::string::npos)
      << r.status();
  m.tok.tokens[7] = "\xE2\x82\xAC\xF0\x9F\x98\x80";  // valid: euro sign, emoji
  testing::WriteFile(dir + "/m.gguf", testing::TinyModelToGguf(m));
  EXPECT_TRUE(LoadModel(dir + "/m.gguf").ok());
  m.tok.tokens[7] = "\xED\xA0\x80";  // UTF-16 surrogate
  testing::WriteFile(dir + "/m.gguf", testing::TinyModelToGguf(m));
  EXPECT_FALSE(LoadModel(dir + "/m.gguf").ok());
}

TEST(LoadErrorTest, TokenizerIdsChecked) {
  TinyModelOptions o;
  LoadedModel m = MakeTinyModel(o);
  m.tok.bos = 1000;  // outside the 40-token vocab
  const std::string dir = testing::MakeTempDir("load_tok");
  testing::WriteFile(dir + "/m.gguf", testing::TinyModelToGguf(m));
  auto r = LoadModel(dir + "/m.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bos_token_id = 1000 is outside the vocabulary of 40"),
            std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace hipserve::worker::loader
