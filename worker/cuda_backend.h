// CudaBackend: the ForwardBackend on one CUDA device. bf16 weights (converted once at Create,
// quantized GGUF tensors arrive dequantized from the loader) and activations in device memory,
// fp32 accumulation; every op is one of the tested kernels (kernels/*: embedding, RMSNorm with
// fused residual, cuBLASLt GEMM, RoPE, SwiGLU, dense flash prefill and split-K decode attention,
// sampling) queued on the backend's stream.
//
// Attention: dense (keys stored rotated) or HiP (worker/cuda_hip_attention.h: keys stored
// un-rotated and rotated at use with the HIP.md 5 position rewrites; the same schedule and block
// lists as the CPU backend's HipAttention).
//
// KV without offload: per layer one device pool [pool_rows][local_kv_heads][head_dim] for K
// and one for V, in bf16 or fp8 e5m2 (CudaBackendOptions::kv_dtype, --kv_dtype; fp8 rows are
// encoded on the GPU as they are appended, worker/cuda_kv_encode.h, and every attention kernel
// decodes them exactly); each sequence owns a contiguous row range (grown by doubling, moved
// when its neighbour is taken), which the decode kernel reads through per-sequence row offsets.
// With offload (--kv_offload): worker/cuda_kv_tiers.h, fp8 e5m2 in both tiers. Memory plan:
// weights + workspaces + KV pool within CudaBackendOptions::gpu_memory_bytes, logged at Create
// (with the KV dtype); Create fails ResourceExhausted naming the numbers when the weights do
// not fit.
//
// Tensor parallelism: a rank holds its shard (whole KV heads, an MLP slice, a vocabulary slice);
// Model all-reduces the bf16 activations and all-gathers the fp32 logits through the
// communicator (NCCL on the backend's stream); rank 0 un-shards them on the device and samples.
// Written and unit-checked at world size 1 only: runs with several GPUs are issue 11's.
//
// Not yet: CUDA graphs for decode.
//
// CPU builds (HIPSERVE_CUDA=OFF) link cuda_backend_cpu.cc, whose MakeCudaBackend returns
// Unimplemented. A machine without a device gets Unavailable.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/forward_backend.h"
#include "worker/model_options.h"
#include "worker/weights.h"

namespace hipserve::worker {

absl::StatusOr<std::unique_ptr<ForwardBackend>> MakeCudaBackend(ModelWeights weights,
                                                                const ModelOptions& options);

}  // namespace hipserve::worker
