// bench_accuracy: BENCHMARKS.md A2-A4 on the CPU backend with the real default model.
//   A2  passkey retrieval (a 5-digit key hidden in filler at several depths), greedy; success =
//       the key's digits appear in the answer. Contexts 2K/4K/8K, each attention mode.
//   A3  the same at 16K/32K (beyond SmolLM2's 8K window) with HiP + context extension.
//   A4  perplexity of a fixed public-domain text (bench/data/kjv_genesis_1-20.txt), first N
//       tokens, each attention mode; HiP reported as a ratio to dense from the same run.
// A mode that Model::Create rejects (e.g. "hip" before it lands) is reported as "n/a".
//
// Usage: bench_accuracy [--model=default|PATH] [--tests=a2,a4] [--attention=dense,hip]
//          [--contexts=2048] [--depths=0.1,0.5,0.9] [--trials=1] [--hip-config=JSON]
//          [--a3-contexts=16384,32768] [--a3-attention=hip] [--ppl-contexts=4096]
//          [--text=PATH] [--chunk=512] [--max-new=8] [--json=PATH] [--commit=SHA]
// Modes (--attention, --a3-attention): dense, hip (HiP with --hip-config, default HipConfig:
// context extension on), hip-noext (extend off: real positions).
// Progress goes to stderr; the table to stdout; --json writes every trial.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/accuracy/bench_model.h"
#include "common/flags/flags.h"
#include "nlohmann/json.hpp"

// Flags ('-' and '_' are interchangeable: --max-new = --max_new). The defaults keep one run under
// ~10 minutes on 2 CPU cores (the dense CPU attention is O(T^2) scalar code: a 2K prefill takes
// ~40 s, 4K ~2.5 min, 8K ~10 min on an idle machine). Full BENCHMARKS.md coverage:
// --tests=a2,a3,a4 --contexts=2048,4096,8192 --ppl-contexts=4096,8192 (hours on 2 cores).
using hipserve::flags::DoubleList;
using hipserve::flags::IntList;
ABSL_FLAG(std::string, model, "default", "Model: 'default' (SmolLM2-135M) or a GGUF / HF path.");
ABSL_FLAG(std::vector<std::string>, tests, (std::vector<std::string>{"a2", "a4"}),
          "Benchmarks to run, comma-separated: a2, a3, a4.");
ABSL_FLAG(std::vector<std::string>, attention, (std::vector<std::string>{"dense", "hip"}),
          "Attention modes, comma-separated: dense, hip.");
ABSL_FLAG(IntList, contexts, IntList{{2048}}, "A2: context lengths in tokens.");
ABSL_FLAG(DoubleList, depths, (DoubleList{{0.1, 0.5, 0.9}}),
          "A2: needle depths as fractions of the context.");
ABSL_FLAG(int, trials, 1, "A2/A3: needles per context and depth, > 0.");
ABSL_FLAG(IntList, a3_contexts, (IntList{{16384, 32768}}), "A3: context lengths in tokens.");
ABSL_FLAG(std::string, a3_attention, "hip", "A3: attention mode.");
ABSL_FLAG(IntList, ppl_contexts, IntList{{4096}}, "A4: perplexity window lengths in tokens.");
ABSL_FLAG(std::string, text, HIPSERVE_BENCH_DATA "/kjv_genesis_1-20.txt",
          "Text of the haystack (A2/A3) and of the perplexity (A4).");
ABSL_FLAG(int, chunk, 512, "Prefill chunk in tokens, > 0.");
ABSL_FLAG(int, max_new, 8, "A2/A3: tokens generated after the question, > 0.");
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(std::string, commit, HIPSERVE_GIT_COMMIT, "Commit recorded in the JSON.");
ABSL_FLAG(std::string, hip_config, "",
          "HiP parameters as JSON (worker::ParseHipConfig); empty = defaults.");
ABSL_FLAG(bool, recall, false,
          "HiP modes: print per layer the share of dense attention mass the selection keeps "
          "(sink+window only / selected / oracle with the same block count), for the last query "
          "of every query block; slow.");

namespace hipserve::bench {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The parsed flags (defaults and meaning: the ABSL_FLAG definitions above).
struct Flags {
  std::string model;
  std::vector<std::string> tests;
  std::vector<std::string> attention;
  std::vector<int> contexts;
  std::vector<double> depths;
  int trials = 1;
  std::vector<int> a3_contexts;
  std::string a3_attention;
  std::vector<int> ppl_contexts;
  std::string text;
  int chunk = 512;
  int max_new = 8;
  std::string json;
  std::string commit;
  std::string hip_config;
  bool recall = false;
};

// Fills `f` from the flags; false (after printing the error) when a value is out of range.
bool ParseFlags(Flags* f) {
  f->model = absl::GetFlag(FLAGS_model);
  f->tests = absl::GetFlag(FLAGS_tests);
  f->attention = absl::GetFlag(FLAGS_attention);
  f->contexts = absl::GetFlag(FLAGS_contexts).values;
  f->depths = absl::GetFlag(FLAGS_depths).values;
  f->trials = absl::GetFlag(FLAGS_trials);
  f->a3_contexts = absl::GetFlag(FLAGS_a3_contexts).values;
  f->a3_attention = absl::GetFlag(FLAGS_a3_attention);
  f->ppl_contexts = absl::GetFlag(FLAGS_ppl_contexts).values;
  f->text = absl::GetFlag(FLAGS_text);
  f->chunk = absl::GetFlag(FLAGS_chunk);
  f->max_new = absl::GetFlag(FLAGS_max_new);
  f->json = absl::GetFlag(FLAGS_json);
  f->commit = absl::GetFlag(FLAGS_commit);
  f->hip_config = absl::GetFlag(FLAGS_hip_config);
  f->recall = absl::GetFlag(FLAGS_recall);
  for (const absl::Status& s : {flags::CheckFlag(f->trials > 0, "trials", "> 0", f->trials),
                                flags::CheckFlag(f->chunk > 0, "chunk", "> 0", f->chunk),
                                flags::CheckFlag(f->max_new > 0, "max_new", "> 0", f->max_new)}) {
    if (!s.ok()) {
      std::fprintf(stderr, "bench_accuracy: %s\n", std::string(s.message()).c_str());
      return false;
    }
  }
  return true;
}

bool Has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// ---- A2/A3: passkey retrieval -------------------------------------------------------------

struct PasskeyParts {
  std::vector<int32_t> prefix, filler, question;
};

PasskeyParts MakeParts(const coordinator::Tokenizer& tok) {
  PasskeyParts p;
  p.prefix = tok.Encode(
      "There is an important piece of information hidden inside a lot of irrelevant text. "
      "Find it and memorize it. I will quiz you about the important information there.\n",
      false, false);
  p.filler = tok.Encode(
      " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back "
      "again.",
      false, false);
  p.question = tok.Encode("\nWhat is the pass key? The pass key is", false, false);
  return p;
}

// Prompt of at most `budget` tokens with the needle after round(depth * n) filler repeats.
std::vector<int32_t> PasskeyPrompt(const coordinator::Tokenizer& tok, const PasskeyParts& p,
                                   int budget, double depth, const std::string& key) {
  const std::vector<int32_t> needle = tok.Encode(
      absl::StrCat(" The pass key is ", key, ". Remember it. ", key, " is the pass key."), false,
      false);
  const int fixed = static_cast<int>(p.prefix.size() + needle.size() + p.question.size());
  const int n = std::max(0, (budget - fixed) / static_cast<int>(p.filler.size()));
  const int at = static_cast<int>(std::lround(depth * n));
  std::vector<int32_t> ids = p.prefix;
  for (int i = 0; i < n; ++i) {
    if (i == at) ids.insert(ids.end(), needle.begin(), needle.end());
    ids.insert(ids.end(), p.filler.begin(), p.filler.end());
  }
  if (at >= n) ids.insert(ids.end(), needle.begin(), needle.end());
  ids.insert(ids.end(), p.question.begin(), p.question.end());
  return ids;
}

std::string KeyFor(int context, int depth_index, int trial) {
  std::mt19937 rng(static_cast<uint32_t>(context * 131 + depth_index * 17 + trial * 7919 + 1));
  return std::to_string(10000 + static_cast<int>(rng() % 90000));
}

// Per-layer selection recall (HipAttentionOptions::measure_recall), printed and returned.
nlohmann::json RecallTable(const worker::HipAttention& hip) {
  nlohmann::json rows = nlohmann::json::array();
  std::fprintf(stderr,
               "recall (mean dense mass kept): layer | all block-last queries: n fixed selected "
               "oracle worst | token-producing queries: n fixed selected oracle worst\n");
  auto json_of = [](const worker::HipRecallSums& s) {
    const double n = static_cast<double>(std::max<int64_t>(s.samples, 1));
    return nlohmann::json{{"samples", s.samples},
                          {"fixed", s.fixed / n},
                          {"selected", s.selected / n},
                          {"oracle", s.oracle / n},
                          {"worst_selected", s.worst_selected}};
  };
  const auto& stats = hip.recall_stats();
  for (size_t l = 0; l < stats.size(); ++l) {
    const worker::HipRecallSums& a = stats[l].all;
    const worker::HipRecallSums& t = stats[l].last;
    if (a.samples == 0) continue;
    const double na = static_cast<double>(a.samples);
    const double nt = static_cast<double>(std::max<int64_t>(t.samples, 1));
    std::fprintf(stderr, "recall: %3zu | %6lld %.3f %.3f %.3f %.3f | %5lld %.3f %.3f %.3f %.3f\n",
                 l, static_cast<long long>(a.samples), a.fixed / na, a.selected / na, a.oracle / na,
                 a.worst_selected, static_cast<long long>(t.samples), t.fixed / nt, t.selected / nt,
                 t.oracle / nt, t.worst_selected);
    rows.push_back({{"layer", l}, {"all", json_of(a)}, {"last", json_of(t)}});
  }
  return rows;
}

// Runs passkey trials for one mode; returns per-trial JSON, or an "n/a" record.
nlohmann::json RunPasskey(const BenchSource& src, const Flags& f, const std::string& test,
                          const std::string& mode, const std::vector<int>& contexts, int* seq) {
  nlohmann::json out;
  out["mode"] = mode;
  int max_ctx = 0;
  for (int c : contexts) max_ctx = std::max(max_ctx, c);
  absl::StatusOr<BenchModel> bm = MakeBenchModel(src, mode, max_ctx, f.hip_config, f.recall);
  if (!bm.ok()) {
    out["status"] = "n/a";
    out["reason"] = std::string(bm.status().message());
    std::fprintf(stderr, "[%s] %s: n/a (%s)\n", test.c_str(), mode.c_str(),
                 std::string(bm.status().message()).c_str());
    return out;
  }
  const PasskeyParts parts = MakeParts(*src.tokenizer);
  nlohmann::json trials = nlohmann::json::array();
  nlohmann::json summary = nlohmann::json::object();
  for (int ctx : contexts) {
    int ok = 0, total = 0;
    for (size_t di = 0; di < f.depths.size(); ++di) {
      for (int t = 0; t < f.trials; ++t) {
        const std::string key = KeyFor(ctx, static_cast<int>(di), t);
        const std::vector<int32_t> prompt =
            PasskeyPrompt(*src.tokenizer, parts, ctx - f.max_new, f.depths[di], key);
        const auto t0 = Clock::now();
        absl::StatusOr<std::vector<int32_t>> gen =
            GreedyGenerate(*bm->model, src, (*seq)++, prompt, f.max_new);
        nlohmann::json r;
        r["context"] = ctx;
        r["depth"] = f.depths[di];
        r["trial"] = t;
        r["key"] = key;
        r["prompt_tokens"] = prompt.size();
        r["seconds"] = Since(t0);
        if (!gen.ok()) {
          r["error"] = std::string(gen.status().message());
          r["success"] = false;
        } else {
          const std::string answer = src.tokenizer->Decode(*gen);
          r["answer"] = answer;
          r["success"] = answer.find(key) != std::string::npos;
        }
        ok += r["success"].get<bool>();
        ++total;
        std::fprintf(stderr, "[%s] %s ctx %d depth %.2f trial %d: %s (%zu tokens, %.1f s) %s\n",
                     test.c_str(), mode.c_str(), ctx, f.depths[di], t,
                     r["success"].get<bool>() ? "ok  " : "MISS", prompt.size(),
                     r["seconds"].get<double>(),
                     r.contains("answer") ? r["answer"].dump().c_str() : r["error"].dump().c_str());
        trials.push_back(r);
      }
    }
    summary[std::to_string(ctx)] = {
        {"success", ok}, {"trials", total}, {"accuracy", total ? double(ok) / total : 0.0}};
  }
  out["status"] = "ok";
  out["trials"] = trials;
  out["summary"] = summary;
  if (f.recall && bm->model->hip() != nullptr) out["recall"] = RecallTable(*bm->model->hip());
  return out;
}

// ---- A4: perplexity -----------------------------------------------------------------------

nlohmann::json RunPerplexity(const BenchSource& src, const Flags& f, const std::string& mode,
                             const std::vector<int32_t>& text, int* seq) {
  nlohmann::json out;
  out["mode"] = mode;
  int max_ctx = 0;
  for (int c : f.ppl_contexts) max_ctx = std::max(max_ctx, c);
  absl::StatusOr<BenchModel> bm = MakeBenchModel(src, mode, max_ctx, f.hip_config);
  if (!bm.ok()) {
    out["status"] = "n/a";
    out["reason"] = std::string(bm.status().message());
    std::fprintf(stderr, "[a4] %s: n/a (%s)\n", mode.c_str(),
                 std::string(bm.status().message()).c_str());
    return out;
  }
  nlohmann::json rows = nlohmann::json::object();
  for (int ctx : f.ppl_contexts) {
    if (static_cast<int>(text.size()) < ctx) {
      rows[std::to_string(ctx)] = {{"error", "text too short"}};
      continue;
    }
    std::fprintf(stderr, "[a4] %s ctx %d\n", mode.c_str(), ctx);
    const auto t0 = Clock::now();
    std::vector<int32_t> window(text.begin(), text.begin() + ctx);
    absl::StatusOr<NllResult> r = ScoreTokens(*bm->model, (*seq)++, window, f.chunk, true);
    if (!r.ok()) {
      rows[std::to_string(ctx)] = {{"error", std::string(r.status().message())}};
      continue;
    }
    const double nll = r->nll_sum / r->predicted;
    rows[std::to_string(ctx)] = {{"tokens", ctx},
                                 {"predicted", r->predicted},
                                 {"mean_nll", nll},
                                 {"perplexity", std::exp(nll)},
                                 {"seconds", Since(t0)}};
    std::fprintf(stderr, "[a4] %s ctx %d: ppl %.4f (%.0f s)\n", mode.c_str(), ctx, std::exp(nll),
                 Since(t0));
  }
  out["status"] = "ok";
  out["contexts"] = rows;
  return out;
}

int Main() {
  Flags f;
  if (!ParseFlags(&f)) return 2;
  const auto t_start = Clock::now();
  std::fprintf(stderr, "loading %s\n", f.model.c_str());
  absl::StatusOr<BenchSource> src = LoadBenchSource(f.model);
  if (!src.ok()) {
    std::fprintf(stderr, "cannot load model %s: %s\n", f.model.c_str(),
                 std::string(src.status().message()).c_str());
    return 1;
  }
  nlohmann::json doc;
  doc["bench"] = "bench_accuracy";
  doc["date"] = NowUtc();
  doc["commit"] = f.commit;
  doc["model"] = f.model;
  doc["machine"] = {{"cpu", CpuModel()},
                    {"hardware_threads", std::thread::hardware_concurrency()},
                    {"blas_threads", BlasThreads()}};
  doc["settings"] = {{"depths", f.depths},        {"trials", f.trials}, {"max_new", f.max_new},
                     {"chunk", f.chunk},          {"text", f.text},     {"attention", f.attention},
                     {"hip_config", f.hip_config}};
  int seq = 1;
  if (Has(f.tests, "a2")) {
    nlohmann::json a2 = nlohmann::json::array();
    for (const std::string& mode : f.attention) {
      a2.push_back(RunPasskey(*src, f, "a2", mode, f.contexts, &seq));
    }
    doc["a2"] = a2;
  }
  if (Has(f.tests, "a3")) {
    doc["a3"] =
        nlohmann::json::array({RunPasskey(*src, f, "a3", f.a3_attention, f.a3_contexts, &seq)});
  }
  if (Has(f.tests, "a4")) {
    std::ifstream in(f.text);
    if (!in) {
      std::fprintf(stderr, "cannot open %s\n", f.text.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::vector<int32_t> text = src->tokenizer->Encode(ss.str(), false, false);
    doc["a4_text_tokens"] = text.size();
    nlohmann::json a4 = nlohmann::json::array();
    for (const std::string& mode : f.attention) {
      a4.push_back(RunPerplexity(*src, f, mode, text, &seq));
    }
    doc["a4"] = a4;
  }
  doc["total_seconds"] = Since(t_start);

  // Table.
  std::printf("bench_accuracy  model %s  commit %s  %s  cpu %s (%u threads, BLAS %d)\n",
              f.model.c_str(), f.commit.c_str(), doc["date"].get<std::string>().c_str(),
              CpuModel().c_str(), std::thread::hardware_concurrency(), BlasThreads());
  for (const char* test : {"a2", "a3"}) {
    if (!doc.contains(test)) continue;
    for (const auto& m : doc[test]) {
      if (m["status"] != "ok") {
        std::printf("%s  %-6s  n/a (%s)\n", test, m["mode"].get<std::string>().c_str(),
                    m["reason"].get<std::string>().c_str());
        continue;
      }
      for (const auto& [ctx, s] : m["summary"].items()) {
        std::printf("%s  %-6s  ctx %6s  passkey %d/%d (%.0f%%)\n", test,
                    m["mode"].get<std::string>().c_str(), ctx.c_str(), s["success"].get<int>(),
                    s["trials"].get<int>(), 100 * s["accuracy"].get<double>());
      }
    }
  }
  if (doc.contains("a4")) {
    const nlohmann::json* dense = nullptr;
    for (const auto& m : doc["a4"]) {
      if (m["mode"] == "dense" && m["status"] == "ok") dense = &m;
    }
    for (const auto& m : doc["a4"]) {
      if (m["status"] != "ok") {
        std::printf("a4  %-6s  n/a (%s)\n", m["mode"].get<std::string>().c_str(),
                    m["reason"].get<std::string>().c_str());
        continue;
      }
      for (const auto& [ctx, r] : m["contexts"].items()) {
        if (!r.contains("perplexity")) continue;
        std::string ratio;
        if (dense != nullptr && (*dense)["contexts"].contains(ctx) &&
            (*dense)["contexts"][ctx].contains("perplexity")) {
          ratio = absl::StrCat("  vs dense x",
                               r["perplexity"].get<double>() /
                                   (*dense)["contexts"][ctx]["perplexity"].get<double>());
        }
        std::printf("a4  %-6s  ctx %6s  perplexity %.4f%s\n", m["mode"].get<std::string>().c_str(),
                    ctx.c_str(), r["perplexity"].get<double>(), ratio.c_str());
      }
    }
  }
  std::printf("total %.0f s\n", doc["total_seconds"].get<double>());
  if (!f.json.empty()) {
    std::ofstream out(f.json);
    out << doc.dump(1) << "\n";
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", f.json.c_str());
      return 1;
    }
    std::fprintf(stderr, "wrote %s\n", f.json.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_accuracy: BENCHMARKS.md A2-A4 on the real default model, CPU backend.
A2: needle retrieval at --contexts and --depths; A3: needle retrieval at the long
--a3-contexts; A4: perplexity of --text at --ppl-contexts; each for every --attention mode.
--recall (HiP modes): print per layer the share of dense attention mass that the selection
keeps (sink+window only / selected / oracle with the same block count), for the last query
of every query block; slow.

Usage: bench_accuracy [--model=default|PATH] [--tests=a2,a4] [--attention=dense,hip]
         [--contexts=2048] [--depths=0.1,0.5,0.9] [--trials=1] [--hip-config=JSON]
         [--a3-contexts=16384,32768] [--a3-attention=hip] [--ppl-contexts=4096] [--text=PATH]
         [--chunk=512] [--max-new=8] [--json=PATH] [--commit=SHA] [--recall]
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main();
}
