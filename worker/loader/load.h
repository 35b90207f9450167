// LoadModel: reads a Llama-family model (one GGUF file, or a Hugging Face directory with
// config.json, *.safetensors and tokenizer.json) into canonical fp32 weights in Hugging Face
// layout, plus its config and tokenizer data.
//
// Canonical layout: PyTorch Linear [out_features, in_features], row-major. Q and K rows are in
// Hugging Face order, i.e. each head's rows are [first halves of the rotary pairs; second
// halves] for "rotate_half" RoPE. llama.cpp's converter interleaves them for llama-arch GGUF
// files; LoadModel undoes that (UnpermuteGgufRopeRows). qwen2 GGUFs are stored unpermuted.
// Every tensor's shape is checked against the config; a mismatch names tensor and shapes.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/loader/model_config.h"
#include "worker/loader/tensor.h"
#include "worker/loader/tokenizer_data.h"

namespace hipserve::worker::loader {

struct LayerTensors {
  Tensor attn_norm;     // [hidden]
  Tensor wq;            // [num_heads * head_dim, hidden]
  Tensor wk, wv;        // [num_kv_heads * head_dim, hidden]
  Tensor bq, bk, bv;    // empty, or [rows of wq/wk/wv] when config.qkv_bias
  Tensor wo;            // [hidden, num_heads * head_dim]
  Tensor ffn_norm;      // [hidden]
  Tensor w_gate, w_up;  // [intermediate, hidden]
  Tensor w_down;        // [hidden, intermediate]
};

struct LoadedModel {
  ModelConfig config;
  Tensor token_embd;                 // [vocab, hidden]
  std::vector<LayerTensors> layers;  // [num_layers]
  Tensor output_norm;                // [hidden]
  Tensor lm_head;                    // [vocab, hidden]; a copy of token_embd when tied
  // Empty, or [head_dim / 2]: llama.cpp's rope_freqs.weight (Llama 3.1 GGUFs), per-frequency
  // divisors with the llama3 rope scaling baked in: inv_freq[i] /= rope_freqs[i].
  Tensor rope_freqs;
  TokenizerData tok;
  std::string source;  // the path loaded
};

// `path`: a .gguf file or a directory holding a Hugging Face checkpoint.
absl::StatusOr<LoadedModel> LoadModel(const std::string& path);

class GgufFile;
// The same from an already opened GGUF file (tests, in-memory files).
absl::StatusOr<LoadedModel> LoadModelFromGguf(const GgufFile& gguf);

// llama.cpp's convert_hf_to_gguf.py permutes Q/K rows per head so that rotary pairs are
// adjacent (GGML "normal" RoPE on x[2i], x[2i+1]). With d = head_dim, for head h,
// i in [0, d/2) and s in {0, 1}:
//   gguf_row(h*d + 2*i + s) = hf_row(h*d + s*d/2 + i)
// Permute maps HF -> GGUF order, Unpermute maps GGUF -> HF. `rows_per_head` must be even and
// divide shape[0]; works on [rows, cols] weights and [rows] biases. InvalidArgument otherwise.
absl::StatusOr<Tensor> PermuteHfToGgufRopeRows(const Tensor& w, int64_t n_heads);
absl::StatusOr<Tensor> UnpermuteGgufRopeRows(const Tensor& w, int64_t n_heads);

}  // namespace hipserve::worker::loader
