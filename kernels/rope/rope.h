// Rotary position embedding, Hugging Face "rotate_half" (GPT-NeoX) layout: for i < head_dim/2
// the pair is (x[i], x[i + head_dim/2]) rotated by angle position * inv_freq[i].
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace hipserve::kernels {

enum class RopeScaling {
  kNone,    // inv_freq[i] = theta^(-2i/head_dim)
  kLlama3,  // Llama 3.1 "llama3" rope_type (HF _compute_llama3_parameters)
};

struct RopeConfig {
  float theta = 10000.f;  // rope_theta (> 0)
  RopeScaling scaling = RopeScaling::kNone;
  // The fields below are used only by kLlama3 (rope_scaling in config.json).
  float factor = 1.f;                // > 0
  float low_freq_factor = 1.f;       // > 0, != high_freq_factor
  float high_freq_factor = 4.f;      // > 0
  int original_max_position = 8192;  // original_max_position_embeddings (> 0)
};

struct RopeParams {
  float* x = nullptr;                  // [tokens, heads, head_dim], rotated in place
  const int32_t* positions = nullptr;  // [tokens], each >= 0
  int tokens = 0;                      // > 0
  int heads = 0;                       // > 0
  int head_dim = 0;                    // > 0 and even
  RopeConfig config;
};

// CPU reference. inv_freq, angle, cos and sin are computed in double (then cos/sin rounded to
// fp32), so positions in the millions keep their accuracy; HF's fp32 angles do not, so at such
// positions HF and this reference differ by HF's error. Position 0 leaves x unchanged bit for bit.
absl::Status RopeRef(const RopeParams& p);

// Writes the head_dim/2 inverse frequencies (after scaling; computed in double, rounded once to
// fp32) into inv_freq[0..head_dim/2). For GPU tables and tests.
absl::Status RopeInvFreq(const RopeConfig& config, int head_dim, float* inv_freq);

// GPU version, in place on bf16 (uint16_t storage, kernels/dtype/bf16.h) device tensors.
// Precision: at position p the angle is p * inv_freq[i]. In fp32 (HF) one ulp of the angle is
// already ~0.06 rad at p ~ 1M, far beyond bf16 tolerance, so the kernel does what RopeRef does:
// inv_freq (with llama3 scaling) is computed in fp64 from `config` (once per block, no host
// table to keep in sync), angle and sincos in fp64 once per (token, frequency) and shared by all
// heads through shared memory, cos/sin rounded to fp32, the rotation in fp32 and the result
// rounded once to bf16. Results thus match RopeRef within bf16 rounding at any int32 position.
// 16-byte vector path when head_dim % 16 == 0 and x is 16-byte aligned, scalar otherwise.
// Negative positions are not checked on the device (they rotate backwards).
struct RopeGpuParams {
  void* x = nullptr;                   // [tokens, heads, head_dim] bf16, device, rotated in place
  const int32_t* positions = nullptr;  // [tokens] int32, device
  int tokens = 0;                      // > 0
  int heads = 0;                       // > 0
  int head_dim = 0;                    // > 0, even, <= 1024
  RopeConfig config;
};
// `stream` is a cudaStream_t (null = default stream). Asynchronous; CPU builds return
// UnimplementedError. InvalidArgument names the offending field.
absl::Status RopeGpu(const RopeGpuParams& p, void* stream);

}  // namespace hipserve::kernels
