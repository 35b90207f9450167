// Shared helpers of the CPU accuracy / speed benchmarks: load a model source once, build Models
// from it with a given attention mode, run greedy decoding and per-position scoring.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "worker/communicator.h"
#include "worker/model.h"
#include "worker/model_source.h"

namespace hipserve::bench {

struct BenchSource {
  worker::ModelWeights weights;  // full weights, world size 1
  std::unique_ptr<coordinator::Tokenizer> tokenizer;
  std::vector<int32_t> eos_ids;
};

// `model`: a path, "default" (scripts/fetch-model.sh's cache) or "builtin:tiny".
absl::StatusOr<BenchSource> LoadBenchSource(const std::string& model);

struct BenchModel {
  std::unique_ptr<worker::Communicator> comm;
  std::unique_ptr<worker::Model> model;
};

// Copies the weights into a fresh single-rank Model. max_context 0 = the model's own.
// `mode`: "dense", "hip" (HiP with `hip_config_json`, empty = HipConfig defaults, which have
// context extension on) or "hip-noext" (the same with extend forced off: real positions).
// measure_recall: HipAttentionOptions::measure_recall (HiP modes; slow diagnostic).
// cpu_weights: ModelOptions::cpu_weights ("fp32" or "bf16").
absl::StatusOr<BenchModel> MakeBenchModel(const BenchSource& src, const std::string& mode,
                                          int max_context, const std::string& hip_config_json = "",
                                          bool measure_recall = false,
                                          const std::string& cpu_weights = "fp32");

// Greedy continuation of `prompt` (fed as one prefill step, then one token per step) on a new
// sequence `seq`, at most max_new tokens, stopping after an EOS id. Releases the sequence.
absl::StatusOr<std::vector<int32_t>> GreedyGenerate(worker::Model& m, const BenchSource& src,
                                                    int64_t seq, const std::vector<int32_t>& prompt,
                                                    int max_new);

// Sum of -log p(tokens[i+1] | tokens[..i]) over i in [0, n-1), prefilled `chunk` tokens at a
// time through Model::PrefillLogits (fp64 log-sum-exp). Releases the sequence.
struct NllResult {
  double nll_sum = 0;
  int64_t predicted = 0;
};
absl::StatusOr<NllResult> ScoreTokens(worker::Model& m, int64_t seq,
                                      const std::vector<int32_t>& tokens, int chunk, bool progress);

// Threads the BLAS library uses (OpenBLAS), or 1 when it cannot tell.
int BlasThreads();

std::string NowUtc();  // "2025-01-31T12:34:56Z"

// The CPU's "model name" from /proc/cpuinfo, or "unknown".
std::string CpuModel();

}  // namespace hipserve::bench
