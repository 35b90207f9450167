// ModelOptions: how one rank's Model runs (backend, attention mode, budgets). Plain data.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/cpu_gemv/gemv.h"
#include "kernels/dtype/dtype.h"
#include "kernels/hip/hip_params.h"

namespace hipserve::worker {

// CUDA backend only (worker/cuda_backend.h).
struct CudaBackendOptions {
  int device = 0;  // CUDA device ordinal
  // GPU memory the backend may use for weights, KV and workspaces; 0 = 90% of the memory free
  // when the backend starts. Weights that do not fit fail Create with the numbers named; the KV
  // pool gets what remains after weights and workspaces.
  int64_t gpu_memory_bytes = 0;
  // Largest number of rows (tokens over all sequences) of one step; sizes the activation
  // workspaces once, at Create, so they count in the memory plan. Longer steps fail
  // InvalidArgument. The coordinator sends its chunk + max batch (ConfigureRequest
  // .max_step_tokens), which sets this.
  int max_step_rows = 8192;
  // KV offload (worker/cuda_kv_tiers.h, HIP.md 7): "on" keeps every token in host memory as fp8
  // e5m2 (host_kv_bytes) with a GPU page pool of hot pages (what gpu_kv_bytes or the budget
  // leaves); "off" keeps bf16 K/V in GPU memory only; "auto" = on when attention is HiP and the
  // host tier holds more tokens than the bf16 GPU pool would, else off. "on" with dense
  // attention (which reads every key every step) is refused.
  std::string kv_offload = "auto";
  // Element type of the GPU-resident KV pool without offload (--kv_dtype): kBf16 (default) or
  // kFp8E5m2 (half the bytes per token, so the same budget holds twice the tokens; new K/V rows
  // are encoded on the GPU, round to nearest even, and the attention kernels decode them
  // exactly). Offloaded KV is fp8 e5m2 in both tiers whatever this says.
  kernels::KvDtype kv_dtype = kernels::KvDtype::kBf16;
  int64_t host_kv_bytes = 0;  // offload: the host tier (pinned), > 0 required
  int64_t gpu_kv_bytes = 0;   // offload: cap on the hot pool + tables; 0 = what the budget leaves
  // Tests and benchmarks: caps the hot page pool (0 = every read from host memory); -1 = none.
  int64_t hot_kv_tokens_cap = -1;
};

struct ModelOptions {
  // Forward backend: "cpu" (fp32 reference, worker/cpu_backend.h) or "cuda" (bf16 on the GPU,
  // worker/cuda_backend.h; Create fails Unimplemented on builds without CUDA and Unavailable
  // without a device).
  std::string backend = "cpu";
  // "dense" (exact causal attention) or "hip" (HiP sparse attention, HIP.md; see
  // worker/hip_attention.h).
  std::string attention = "dense";
  // HiP parameters, used when attention == "hip" (see worker/hip_config.h for the JSON form).
  kernels::HipConfig hip;
  // Diagnostic: HipAttentionOptions::measure_recall (benchmarks only; slow).
  bool hip_measure_recall = false;
  // Longest sequence accepted (prompt + generated). 0 = the model's pretrained length.
  int max_context = 0;
  // KV budget over all sequences, in tokens (each token: all layers, K and V). The CUDA backend
  // caps it further by the GPU memory left after weights.
  int64_t kv_budget_tokens = 1 << 20;
  // Storage of the linear weights (Q/K/V/O, MLP, LM head) on the CPU backend (--cpu_weights).
  // kFloat32: as loaded. kBf16: rounded to bf16 (round-to-nearest-even) once in Create, the
  // fp32 copies freed; products still accumulate in fp32 (kernels/cpu_gemv/gemv.h). Halves the
  // bytes a decode step streams; logits move by ~1e-2 (tests/reference/logits_test.cc).
  // Embeddings, norms and biases stay fp32 in both modes.
  kernels::CpuWeightType cpu_weights = kernels::CpuWeightType::kFloat32;
  // CPU backend: emulate where the CUDA backend stores bf16 (DESIGN.md "Numerics"): every
  // weight (embeddings, norms, biases too; linear weights as with cpu_weights = kBf16) and every
  // stored activation (each op's output, the residual stream, q after RoPE, K/V in the cache)
  // is rounded to bf16, math stays fp32. The CPU then differs from the GPU only by summation
  // order (A5 tests). Off by default: it costs accuracy, not speed.
  bool cpu_emulate_bf16 = false;
  CudaBackendOptions cuda;
};

// Parses "fp32" / "bf16" (the --cpu_weights flag values).
absl::StatusOr<kernels::CpuWeightType> ParseCpuWeights(const std::string& name);
// InvalidArgument unless `value` is "auto", "on" or "off" (CudaBackendOptions::kv_offload, the
// --kv_offload flag).
absl::Status CheckKvOffload(const std::string& value);
// The --kv_dtype flag: "bf16" -> kBf16, "fp8" -> kFp8E5m2; anything else InvalidArgument naming
// the flag and the values.
absl::StatusOr<kernels::KvDtype> ParseKvDtype(const std::string& value);
// Bytes one token takes in the CUDA backend's GPU-resident KV pool (no offload): K and V of
// every layer and local KV head in `dtype`. The memory plan divides the budget left after
// weights and workspaces by this; --gpu_kv_bytes / this is the token budget.
int64_t GpuKvPoolBytesPerToken(int num_layers, int local_kv_heads, int head_dim,
                               kernels::KvDtype dtype);

}  // namespace hipserve::worker
