// Pure statistics for `hipserve bench`: percentiles, per-request metrics from token arrival
// times, the run summary, and synthetic prompt ids. No I/O, no gRPC: unit-tested on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hipserve::cli::bench {

// The p-th percentile (p in [0, 100], clamped) of `values` with linear interpolation between
// closest ranks (numpy's default): rank = p / 100 * (n - 1). Input need not be sorted.
// Returns NaN when `values` is empty.
double Percentile(std::vector<double> values, double p);

// count, mean, min, max, p50, p90, p99 of a sample. All NaN (count 0) when empty.
struct Distribution {
  size_t count = 0;
  double mean, min, max, p50, p90, p99;
};
Distribution Summarize(const std::vector<double>& values);

// One message of a Generate stream that carried tokens: when it arrived (seconds on the
// bench clock) and how many tokens it held.
struct TokenChunk {
  double t = 0;
  int tokens = 0;
};

// What one request measured, on the bench's clock (seconds since the run started).
struct RequestMetrics {
  int output_tokens = 0;
  double ttft_s = 0;     // send -> first token
  double latency_s = 0;  // send -> end of stream
  // Inter-token latencies: for each message after the first, the gap since the previous
  // token-bearing message, split evenly over its tokens (k tokens -> k samples of gap / k).
  // Extra tokens that arrive in the same message as the first token add no sample.
  std::vector<double> itl_s;
  // Decode speed of this stream after its first token: (tokens - 1) / (last - first token);
  // 0 when fewer than 2 tokens or no time passed (excluded from the summary).
  double stream_tok_s = 0;
  // End-to-end: tokens / latency.
  double e2e_tok_s = 0;
};
// `start` is when the request was sent, `end` when the stream finished; chunks in arrival
// order (messages without tokens are skipped by the caller or carry tokens = 0).
RequestMetrics ComputeRequestMetrics(double start, double end,
                                     const std::vector<TokenChunk>& chunks);

// A finished measured request, as the summary sees it.
struct RequestRecord {
  bool ok = false;
  int prompt_tokens = 0;
  double start_s = 0, end_s = 0;
  RequestMetrics m;
};

struct RunSummary {
  int requests_ok = 0;
  int requests_failed = 0;
  // From the first measured send to the last measured completion (ok or not).
  double wall_s = 0;
  int64_t output_tokens = 0;
  int64_t prompt_tokens = 0;
  double output_tok_s = 0;    // aggregate: output tokens / wall
  double total_tok_s = 0;     // (prompt + output tokens) / wall
  double requests_per_s = 0;  // ok requests / wall
  // Steady decode of the whole batch: the window from the last ok stream's first token to the
  // first ok stream's end, when every ok stream is past its prefill and none has ended, and the
  // output tokens per second that arrived in it (token times from the ITL samples). 0 when there
  // is no such window (e.g. more requests than the concurrency, in waves).
  double all_decoding_s = 0;
  double all_decoding_tok_s = 0;
  Distribution ttft_s, itl_s, latency_s, stream_tok_s;
};
RunSummary SummarizeRun(const std::vector<RequestRecord>& records);

// `n` token ids drawn uniformly from [0, vocab_size) minus `exclude` (e.g. EOS ids), from a
// generator seeded with (seed, index): the same arguments always give the same prompt, and
// different indices give different prompts. Requires vocab_size > exclude.size().
std::vector<int32_t> SyntheticPrompt(uint64_t seed, uint64_t index, int n, int vocab_size,
                                     const std::vector<int32_t>& exclude);

// `ids` repeated or cut to exactly `n` ids (empty stays empty).
std::vector<int32_t> FitToLength(const std::vector<int32_t>& ids, int n);

}  // namespace hipserve::cli::bench
