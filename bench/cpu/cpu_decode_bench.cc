// bench_cpu_decode: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "bench/accuracy/bench_model.h"
#include "common/flags/flags.h"
#include "common/spin_pool.h"
#include "kernels/attention/dense_attention.h"
#include "kernels/cpu_gemv/gemv.h"
#include "kernels/dtype/bf16.h"
#include "nlohmann/json.hpp"

// Flags: see kUsage at the end of the file. '-' and '_' are interchangeable in names.
ABSL_FLAG(std::string, model, "default", "Model: 'default' (SmolLM2-135M) or a GGUF / HF path.");
ABSL_FLAG(std::string, attention, "dense", "Attention of the decode steps: dense or hip.");
ABSL_FLAG(std::string, cpu_weights, "fp32",
          "Linear weights kept in fp32 (as loaded) or rounded to bf16 (half the bytes per decode "
          "step; fp32 accumulation).");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(std::string, commit, HIPSERVE_GIT_COMMIT, "Commit recorded in the JSON.");
ABSL_FLAG(int, context, 4096, "Prefilled tokens before the timed decode steps, > 1.");
ABSL_FLAG(int, steps, 64, "Timed greedy decode steps (batch 1), > 0.");
ABSL_FLAG(int, prefill_chunk, 0, "Prefill this many tokens per step, >= 0; 0 = one step.");
ABSL_FLAG(bool, breakdown, false,
          "Also time each kernel of one decode step alone (QKV/O/MLP, LM head, attention).");
ABSL_FLAG(bool, breakdown_only, false,
          "Only the kernel timings of --breakdown (seconds instead of a 4K prefill).");

namespace hipserve::bench {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// CPU seconds used by this process (all threads). On a shared machine wall time includes time
// spent waiting for a core; CPU time does not, so both are reported.
double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double LoadAverage1() {
  double l[3] = {0, 0, 0};
  return getloadavg(l, 3) >= 1 ? l[0] : -1;
}

// Median wall seconds of `reps` runs of fn, after one warm-up. Wall time, because the kernels
// run on two threads (CPU time would count both, and the pool's spin-waits); the median keeps
// other jobs on a shared machine from skewing it much.
template <typename F>
double TimeIt(int reps, F fn) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto c0 = Clock::now();
    fn();
    t.push_back(Since(c0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "kernel failed: %s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
}

// Per-decode-step cost of each piece, all layers, in seconds: the kernels Model::Step runs for
// one token (CpuMatmul with m = 1 on `type` weights, DenseAttentionBlocked over `context`
// keys), each over every layer's own weights / KV, so that, as in a real step, they stream from
// memory rather than from a warm cache. Wall time (TimeIt).
nlohmann::json Breakdown(const worker::ModelWeights& w, int context, kernels::CpuWeightType type) {
  const worker::ModelDims& d = w.dims;
  const int h = d.hidden, hd = d.head_dim, nh = d.num_heads, nkv = d.num_kv_heads;
  const int inter = d.intermediate, L = d.num_layers, T = context;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto randv = [&](int64_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
  };
  std::vector<float> x = randv(std::max(h, inter)), y(std::max({h, inter, nh * hd, d.vocab_size}));
  std::vector<std::vector<float>> kcache, vcache;
  for (int i = 0; i < L; ++i) {
    kcache.push_back(randv(int64_t{T} * nkv * hd));
    vcache.push_back(randv(int64_t{T} * nkv * hd));
  }
  std::vector<float> q = randv(nh * hd), out(nh * hd);
  // The weights in the benchmarked storage (bf16 copies made here when asked).
  std::vector<std::vector<uint16_t>> bf16_store;
  bf16_store.reserve(8 * L + 1);
  auto weight = [&](const std::vector<float>& wt) -> const void* {
    if (type == kernels::CpuWeightType::kFloat32) return wt.data();
    bf16_store.emplace_back(wt.size());
    kernels::FloatToBf16Array(wt.data(), bf16_store.back().data(), static_cast<int64_t>(wt.size()));
    return bf16_store.back().data();
  };
  struct LayerPtrs {
    const void *wq, *wk, *wv, *wo, *wg, *wu, *wd;
  };
  std::vector<LayerPtrs> lw;
  for (const worker::LayerWeights& l : w.layers) {
    lw.push_back({weight(l.wq), weight(l.wk), weight(l.wv), weight(l.wo), weight(l.w_gate),
                  weight(l.w_up), weight(l.w_down)});
  }
  const void* lm = weight(w.lm_head);
  auto gemv = [&](const void* wt, int n, int k) {
    kernels::CpuMatmulParams p;
    p.a = x.data();
    p.b = wt;
    p.b_type = type;
    p.c = y.data();
    p.m = 1;
    p.n = n;
    p.k = k;
    Check(kernels::CpuMatmul(p));
  };
  const int reps = 9;
  nlohmann::json b;
  b["gemm_qkv"] = TimeIt(reps, [&] {
    for (const LayerPtrs& l : lw) {
      gemv(l.wq, nh * hd, h);
      gemv(l.wk, nkv * hd, h);
      gemv(l.wv, nkv * hd, h);
    }
  });
  b["gemm_o"] = TimeIt(reps, [&] {
    for (const LayerPtrs& l : lw) gemv(l.wo, h, nh * hd);
  });
  b["gemm_mlp"] = TimeIt(reps, [&] {
    for (const LayerPtrs& l : lw) {
      gemv(l.wg, inter, h);
      gemv(l.wu, inter, h);
      gemv(l.wd, h, inter);
    }
  });
  b["lm_head"] = TimeIt(reps, [&] { gemv(lm, d.vocab_size, h); });
  b["dense_attention"] = TimeIt(reps, [&] {
    for (int i = 0; i < L; ++i) {
      kernels::DenseAttentionParams a;
      a.q = q.data();
      a.k = kcache[i].data();
      a.v = vcache[i].data();
      a.out = out.data();
      a.num_q = 1;
      a.num_kv = T;
      a.num_heads = nh;
      a.num_kv_heads = nkv;
      a.head_dim = hd;
      a.q_offset = T - 1;
      a.scale = 1.f / std::sqrt(static_cast<float>(hd));
      Check(kernels::DenseAttentionBlocked(a));
    }
  });
  double sum = 0;
  for (auto& [k, v] : b.items()) sum += v.get<double>();
  b["sum"] = sum;
  return b;
}

int Main() {
  const std::string model = absl::GetFlag(FLAGS_model), attention = absl::GetFlag(FLAGS_attention);
  const std::string json = absl::GetFlag(FLAGS_json), commit = absl::GetFlag(FLAGS_commit);
  const std::string cpu_weights = absl::GetFlag(FLAGS_cpu_weights);
  const int context = absl::GetFlag(FLAGS_context), steps = absl::GetFlag(FLAGS_steps);
  const int chunk = absl::GetFlag(FLAGS_prefill_chunk);
  const bool breakdown_only = absl::GetFlag(FLAGS_breakdown_only);
  const bool breakdown = absl::GetFlag(FLAGS_breakdown) || breakdown_only;
  for (const absl::Status& s :
       {flags::CheckFlag(context > 1, "context", "> 1", context),
        flags::CheckFlag(steps > 0, "steps", "> 0", steps),
        flags::CheckFlag(chunk >= 0, "prefill_chunk", ">= 0", chunk),
        worker::ParseCpuWeights(cpu_weights).ok()
            ? absl::OkStatus()
            : absl::InvalidArgumentError("--cpu_weights must be fp32 or bf16, got " +
                                         cpu_weights)}) {
    if (!s.ok()) {
      std::fprintf(stderr, "bench_cpu_decode: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  std::fprintf(stderr, "loading %s\n", model.c_str());
  absl::StatusOr<BenchSource> src = LoadBenchSource(model);
  if (!src.ok()) {
    std::fprintf(stderr, "cannot load %s: %s\n", model.c_str(),
                 std::string(src.status().message()).c_str());
    return 1;
  }
  const kernels::CpuWeightType wtype = *worker::ParseCpuWeights(cpu_weights);
  const int pool_threads = common::SpinPool::Shared().threads();
  if (breakdown_only) {
    nlohmann::json b = Breakdown(src->weights, context, wtype);
    std::printf(
        "per decode step at context %d, %s weights, all layers, kernels timed alone "
        "(wall ms, median of 9, %d threads, %s):\n",
        context, cpu_weights.c_str(), pool_threads, kernels::CpuIsaName(kernels::BestCpuIsa()));
    for (auto& [k, v] : b.items())
      std::printf("  %-16s %8.2f ms\n", k.c_str(), 1e3 * v.get<double>());
    return 0;
  }
  absl::StatusOr<BenchModel> bm =
      MakeBenchModel(*src, attention, context + steps, "", false, cpu_weights);
  if (!bm.ok()) {
    std::fprintf(stderr, "attention %s: %s\n", attention.c_str(),
                 std::string(bm.status().message()).c_str());
    return 1;
  }
  worker::Model& m = *bm->model;
  // Prompt: deterministic pseudo-random ids below 10000 (ordinary tokens).
  std::mt19937 rng(42);
  std::vector<int32_t> prompt(context);
  for (int32_t& t : prompt) t = static_cast<int32_t>(100 + rng() % 9900);
  const common::SequenceId seq(1);
  std::fprintf(stderr, "prefill %d tokens (%s)\n", context,
               chunk > 0 ? ("chunks of " + std::to_string(chunk)).c_str() : "one step");
  const double load_before = LoadAverage1();
  const auto tp = Clock::now();
  const double cp = ProcessCpuSeconds();
  int32_t next = 0;
  const int step_chunk = chunk > 0 ? chunk : context;
  for (int begin = 0; begin < context; begin += step_chunk) {
    const int end = std::min(context, begin + step_chunk);
    worker::StepBatch b;
    worker::SeqStep s;
    s.seq = seq;
    s.tokens.assign(prompt.begin() + begin, prompt.begin() + end);
    s.start_pos = begin;
    s.sample = end == context;
    b.work.push_back(s);
    absl::StatusOr<std::vector<worker::SampledToken>> r = m.Step(b);
    if (!r.ok()) {
      std::fprintf(stderr, "prefill failed: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    if (s.sample) next = (*r)[0].token;
    std::fprintf(stderr, "  %d/%d (%.1f s)\n", end, context, Since(tp));
  }
  const double prefill_s = Since(tp);
  const double prefill_cpu_s = ProcessCpuSeconds() - cp;
  std::vector<double> step_s;
  const double cd = ProcessCpuSeconds();
  for (int i = 0; i < steps; ++i) {
    worker::StepBatch b;
    worker::SeqStep s;
    s.seq = seq;
    s.tokens = {next};
    s.start_pos = context + i;
    s.sample = true;
    b.work.push_back(s);
    const auto t0 = Clock::now();
    absl::StatusOr<std::vector<worker::SampledToken>> r = m.Step(b);
    step_s.push_back(Since(t0));
    if (!r.ok()) {
      std::fprintf(stderr, "decode failed: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    next = (*r)[0].token;
    if (i % 16 == 15) std::fprintf(stderr, "  decode %d/%d\n", i + 1, steps);
  }
  const double decode_cpu_s = ProcessCpuSeconds() - cd;
  double total = 0;
  for (double s : step_s) total += s;
  std::vector<double> sorted = step_s;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];

  nlohmann::json doc;
  doc["bench"] = "bench_cpu_decode";
  doc["id"] = "E6";
  doc["date"] = NowUtc();
  doc["commit"] = commit;
  doc["model"] = model;
  doc["attention"] = attention;
  doc["cpu_weights"] = cpu_weights;
  doc["machine"] = {{"cpu", CpuModel()},
                    {"hardware_threads", std::thread::hardware_concurrency()},
                    {"blas_threads", BlasThreads()},
                    {"cpu_pool_threads", pool_threads},
                    {"cpu_isa", kernels::CpuIsaName(kernels::BestCpuIsa())}};
  doc["context"] = context;
  doc["prefill_chunk"] = chunk;
  doc["prefill_seconds"] = prefill_s;
  doc["prefill_tok_s"] = context / prefill_s;
  doc["prefill_cpu_seconds"] = prefill_cpu_s;
  doc["decode_cpu_seconds"] = decode_cpu_s;
  doc["decode_cpu_ms_per_token"] = 1e3 * decode_cpu_s / steps;
  doc["load_average_1m"] = {{"before", load_before}, {"after", LoadAverage1()}};
  doc["decode_steps"] = steps;
  doc["decode_step_median_ms"] = 1e3 * median;
  doc["decode_step_mean_ms"] = 1e3 * total / steps;
  doc["decode_tok_s"] = steps / total;
  doc["decode_tok_s_median"] = 1.0 / median;
  nlohmann::json ms = nlohmann::json::array();
  for (double s : step_s) ms.push_back(1e3 * s);
  doc["decode_step_ms"] = ms;
  std::printf("E6 bench_cpu_decode  %s  commit %s  cpu %s (%u threads, BLAS %d, pool %d, %s)\n",
              doc["date"].get<std::string>().c_str(), commit.c_str(), CpuModel().c_str(),
              std::thread::hardware_concurrency(), BlasThreads(), pool_threads,
              kernels::CpuIsaName(kernels::BestCpuIsa()));
  std::printf(
      "context %d  attention %s  weights %s  prefill %.1f tok/s (%.1f s)  decode "
      "%.2f tok/s (median step %.1f ms, mean %.1f ms, %d steps)\n",
      context, attention.c_str(), cpu_weights.c_str(), context / prefill_s, prefill_s,
      steps / total, 1e3 * median, 1e3 * total / steps, steps);
  std::printf(
      "CPU time: prefill %.1f s, decode %.1f ms/token (all threads)  load average "
      "%.1f -> %.1f (machine shared: wall time includes waiting for a core)\n",
      prefill_cpu_s, 1e3 * decode_cpu_s / steps, load_before, LoadAverage1());
  if (breakdown) {
    std::fprintf(stderr, "timing the pieces of one decode step at context %d\n", context);
    nlohmann::json b = Breakdown(src->weights, context + steps / 2, wtype);
    doc["breakdown_ms"] = nlohmann::json::object();
    std::printf(
        "per decode step, all layers, kernels timed alone (wall ms, median of 9; "
        "%% of the measured median decode step):\n");
    for (auto& [k, v] : b.items()) {
      doc["breakdown_ms"][k] = 1e3 * v.get<double>();
      std::printf("  %-16s %8.2f ms  (%4.1f%%)\n", k.c_str(), 1e3 * v.get<double>(),
                  100 * v.get<double>() / median);
    }
  }
  if (!json.empty()) {
    std::ofstream out(json);
    out << doc.dump(1) << "\n";
    std::fprintf(stderr, "wrote %s\n", json.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_cpu_decode: BENCHMARKS.md E6, CPU backend decode speed of SmolLM2-135M at 4K context.
Prefills --context tokens (one step, or --prefill-chunk at a time), then times --steps greedy
decode steps (batch 1). Reports prefill tok/s, decode tok/s (median and mean step time) and
the threads used. --cpu_weights picks the linear weights' storage (ModelOptions::cpu_weights:
fp32 as loaded, or bf16). --breakdown additionally times, in isolation and with the exact
shapes and kernels Model::Step uses for one decode token at this context (all layers): the
QKV/O/MLP products, the LM head and dense decode attention; so the step time can be
attributed without a profiler.

Usage: bench_cpu_decode [--model=default|PATH] [--context=4096] [--steps=64]
         [--attention=dense] [--cpu_weights=fp32|bf16] [--prefill-chunk=0] [--breakdown]
         [--breakdown-only] [--json=PATH] [--commit=SHA]
--breakdown-only: only the kernel timings (seconds instead of a 4K prefill).
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main();
}
