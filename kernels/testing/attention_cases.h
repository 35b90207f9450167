// One table of attention shapes shared by the GPU tests and the benchmarks (CONVENTIONS.md:
// "one case table drives both the correctness tests and the benchmarks", as ggml's
// test-backend-ops). shared/BENCHMARKS.md defines the "8B layer"; tests use the small shapes so
// that they run in seconds (and under compute-sanitizer), benches the large ones.
// Header-only, no dependencies: include it from tests (kernels/**/*_test.cc) and bench/.
#pragma once

#include <array>
#include <cstdint>

namespace hipserve::kernels::testing {

// One attention layer's head layout (bf16 queries; K/V bf16 unless a case says otherwise).
struct AttentionShape {
  const char* name;  // readable, usable in test names once non-alnum chars are replaced
  int num_heads;     // query heads
  int num_kv_heads;  // KV heads; group = num_heads / num_kv_heads
  int head_dim;
  int group() const { return num_heads / num_kv_heads; }
};

// Llama-3.1-8B attention layer (shared/BENCHMARKS.md "8B layer").
inline constexpr AttentionShape k8BLayer{"8B_layer", 32, 8, 128};
// Small shapes for correctness tests: GQA group 4 at head dim 128, group 8 at head dim 64.
inline constexpr AttentionShape kSmallG4{"small_g4_hd128", 8, 2, 128};
inline constexpr AttentionShape kSmallG8Hd64{"small_g8_hd64", 16, 2, 64};
inline constexpr std::array<AttentionShape, 2> kSmallDecodeShapes = {kSmallG4, kSmallG8Hd64};

// Decode context lengths of the kernel benchmarks (K1, K2, K3, K5): 128K and 1M.
inline constexpr std::array<int, 2> kDecodeBenchLens = {131072, 1048576};
// A1 (needle accuracy) lengths.
inline constexpr std::array<int, 2> kA1Lens = {131072, 1048576};
// Decode batch sizes the benchmarks report (single stream and K5's batch).
inline constexpr std::array<int, 2> kDecodeBenchBatches = {1, 32};
// Batch buckets of the decode CUDA graphs (kernels/hip_cuda/decode_graph.h default).
inline constexpr std::array<int, 6> kDecodeBatchBuckets = {1, 2, 4, 8, 16, 32};
// Lengths for correctness tests: long enough that every HiP stage of the small test config
// (decode_graph_gpu_test) selects, short enough for a fast CPU comparison.
inline constexpr std::array<int, 3> kDecodeTestLens = {3000, 4500, 6000};

}  // namespace hipserve::kernels::testing
