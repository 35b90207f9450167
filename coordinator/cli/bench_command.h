// `hipserve bench`: a load generator for a running server. Sends streaming Generate calls
// from --concurrency client streams and measures time to first token, inter-token latency,
// per-stream and aggregate tokens/s; prints a table and optionally writes JSON
// (scripts/plot_bench.py turns that into a PNG). See docs/BENCH_TOOL.md.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace hipserve::cli {

struct BenchOptions {
  std::string server = "localhost:50051";
  int concurrency = 4;       // client streams in flight
  int prompt_tokens = 0;     // 0 = 128 synthetic ids, or the whole --prompt_file
  std::string prompt_file;   // text; tokenized once by the server (Tokenize)
  int max_tokens = 128;      // output tokens per request (ignore_eos: exact)
  int num_requests = 0;      // measured requests; 0 = 100 unless duration_s is set
  double duration_s = 0;     // stop sending new measured requests after this long
  int warmup_requests = -1;  // unmeasured requests first; -1 = concurrency
  uint64_t seed = 0;         // synthetic prompt ids and sampling seeds
  double temperature = 0;
  double timeout_s = 600;  // deadline of each request
  double wait_ready_s = 60;
  std::string json_out;
  bool progress = true;
  double progress_interval_s = 10;  // one-line progress when stderr is not a terminal
};

// Checks the options; the error names the flag.
absl::Status ValidateBenchOptions(const BenchOptions& o);

// Runs the benchmark: table to `out`, progress and notes to stderr, JSON to o.json_out.
// Returns an error when the server cannot be used, or when any measured request failed
// (after printing and writing what was measured).
absl::Status RunBench(const BenchOptions& o, std::ostream& out);

int BenchCommand(const std::vector<std::string>& args);

}  // namespace hipserve::cli
