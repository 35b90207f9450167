#include "bench/accuracy/bench_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/remote_worker_group.h"
#include "worker/builtin_model.h"
#include "worker/hip_config.h"

extern "C" int openblas_get_num_threads(void) __attribute__((weak));

namespace hipserve::bench {

absl::StatusOr<BenchSource> LoadBenchSource(const std::string& model) {
  ASSIGN_OR_RETURN(worker::LoadedSource src, worker::LoadModelSource(model, 1234));
  const coordinator::TokenizerSpec s = coordinator::TokenizerSpecFromProto(src.tokenizer);
  BenchSource out;
  out.eos_ids = s.eos_token_ids;
  ASSIGN_OR_RETURN(out.tokenizer, coordinator::Tokenizer::Create(s));
  out.weights = std::move(src.weights);
  return out;
}

absl::StatusOr<BenchModel> MakeBenchModel(const BenchSource& src, const std::string& mode,
                                          int max_context, const std::string& hip_config_json,
                                          bool measure_recall, const std::string& cpu_weights) {
  ASSIGN_OR_RETURN(worker::ModelWeights w, worker::ShardWeights(src.weights, 0, 1));
  BenchModel b;
  b.comm = worker::MakeLocalCommunicator();
  worker::ModelOptions o;
  if (mode == "dense") {
    o.attention = "dense";
  } else if (mode == "hip" || mode == "hip-noext") {
    o.attention = "hip";
    ASSIGN_OR_RETURN(o.hip, worker::ParseHipConfig(hip_config_json));
    if (mode == "hip-noext") o.hip.extend = false;
    o.hip_measure_recall = measure_recall;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown mode '", mode, "' (dense, hip, hip-noext)"));
  }
  ASSIGN_OR_RETURN(o.cpu_weights, worker::ParseCpuWeights(cpu_weights));
  o.max_context = max_context;
  o.kv_budget_tokens = std::max<int64_t>(int64_t{max_context} + 1024, 1 << 16);
  ASSIGN_OR_RETURN(b.model, worker::Model::Create(std::move(w), b.comm.get(), o));
  return b;
}

absl::StatusOr<std::vector<int32_t>> GreedyGenerate(worker::Model& m, const BenchSource& src,
                                                    int64_t seq_id,
                                                    const std::vector<int32_t>& prompt,
                                                    int max_new) {
  const common::SequenceId seq(seq_id);
  worker::SeqStep s;
  s.seq = seq;
  s.tokens = prompt;
  s.start_pos = 0;
  s.sample = true;  // temperature 0 = greedy
  std::vector<int32_t> out;
  absl::Status status;
  for (int i = 0; i < max_new; ++i) {
    worker::StepBatch b;
    b.work.push_back(s);
    absl::StatusOr<std::vector<worker::SampledToken>> r = m.Step(b);
    if (!r.ok()) {
      status = r.status();
      break;
    }
    const int32_t t = (*r)[0].token;
    out.push_back(t);
    if (std::find(src.eos_ids.begin(), src.eos_ids.end(), t) != src.eos_ids.end()) break;
    s.start_pos += static_cast<int32_t>(s.tokens.size());
    s.tokens = {t};
  }
  m.Release(seq).IgnoreError();
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<NllResult> ScoreTokens(worker::Model& m, int64_t seq_id,
                                      const std::vector<int32_t>& tokens, int chunk,
                                      bool progress) {
  const common::SequenceId seq(seq_id);
  const int n = static_cast<int>(tokens.size());
  const int vocab = m.dims().vocab_size;
  NllResult res;
  absl::Status status;
  const auto t0 = std::chrono::steady_clock::now();
  for (int begin = 0; begin < n - 1; begin += chunk) {
    const int end = std::min(begin + chunk, n - 1);  // the last token is only a target
    std::vector<int32_t> part(tokens.begin() + begin, tokens.begin() + end);
    absl::StatusOr<std::vector<float>> logits = m.PrefillLogits(seq, part, begin);
    if (!logits.ok()) {
      status = logits.status();
      break;
    }
    for (int i = 0; i < end - begin; ++i) {
      const float* row = logits->data() + int64_t{i} * vocab;
      double mx = row[0];
      for (int j = 1; j < vocab; ++j) mx = std::max(mx, static_cast<double>(row[j]));
      double z = 0;
      for (int j = 0; j < vocab; ++j) z += std::exp(row[j] - mx);
      res.nll_sum += (mx + std::log(z)) - row[tokens[begin + i + 1]];
      ++res.predicted;
    }
    if (progress) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "    scored %d/%d tokens (%.0f s)\n", end, n - 1, s);
    }
  }
  m.Release(seq).IgnoreError();
  if (!status.ok()) return status;
  return res;
}

int BlasThreads() {
  if (openblas_get_num_threads != nullptr) return openblas_get_num_threads();
  return 1;
}

std::string NowUtc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      if (c != std::string::npos) return line.substr(c + 2);
    }
  }
  return "unknown";
}

}  // namespace hipserve::bench
