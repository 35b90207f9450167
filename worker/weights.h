// ModelWeights: one rank's fp32 shard of a Llama-family decoder, in Hugging Face layout.
//
// Linear weights are PyTorch-style [out_features, in_features], row-major. On a rank of a
// tensor-parallel group of size W: wq/wk/wv/(bq/bk/bv)/w_gate/w_up hold this rank's output
// rows (whole KV heads with their query heads), wo/w_down hold this rank's input columns,
// token_embd/lm_head hold this rank's vocab rows [vocab_begin, vocab_end). Plain data, no
// invariants beyond the shapes documented per field; validated by Model::Create.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/rope/rope.h"

namespace hipserve::worker {

struct ModelDims {
  std::string name;
  std::string arch = "llama";  // "llama", "mistral", "qwen2"
  int vocab_size = 0;          // full vocabulary (all ranks)
  int hidden = 0;
  int intermediate = 0;  // full MLP width (all ranks)
  int num_layers = 0;
  int num_heads = 0;     // all ranks
  int num_kv_heads = 0;  // all ranks
  int head_dim = 0;
  float rms_eps = 1e-5f;
  kernels::RopeConfig rope;
  int max_context = 2048;  // pretrained context length
  bool qkv_bias = false;
  bool tie_word_embeddings = false;
};

struct LayerWeights {
  std::vector<float> attn_norm;     // [hidden]
  std::vector<float> wq;            // [local_heads * head_dim, hidden]
  std::vector<float> wk, wv;        // [local_kv_heads * head_dim, hidden]
  std::vector<float> bq, bk, bv;    // empty, or [rows of wq/wk/wv] when qkv_bias
  std::vector<float> wo;            // [hidden, local_heads * head_dim]
  std::vector<float> ffn_norm;      // [hidden]
  std::vector<float> w_gate, w_up;  // [local_intermediate, hidden]
  std::vector<float> w_down;        // [hidden, local_intermediate]
};

struct ModelWeights {
  ModelDims dims;
  int rank = 0;
  int world_size = 1;
  int64_t vocab_begin = 0, vocab_end = 0;  // this rank's vocab rows
  std::vector<float> token_embd;           // [vocab_end - vocab_begin, hidden]
  std::vector<LayerWeights> layers;        // [num_layers]
  std::vector<float> output_norm;          // [hidden]
  std::vector<float> lm_head;              // [vocab_end - vocab_begin, hidden]

  int local_heads() const { return dims.num_heads / world_size; }
  int local_kv_heads() const { return dims.num_kv_heads / world_size; }
  int local_intermediate() const { return dims.intermediate / world_size; }
};

}  // namespace hipserve::worker
