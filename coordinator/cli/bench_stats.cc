#include "coordinator/cli/bench_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace hipserve::cli::bench {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  p = std::clamp(p, 0.0, 100.0);
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

Distribution Summarize(const std::vector<double>& values) {
  Distribution d;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  d.mean = d.min = d.max = d.p50 = d.p90 = d.p99 = nan;
  d.count = values.size();
  if (values.empty()) return d;
  std::vector<double> v = values;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  d.mean = sum / static_cast<double>(v.size());
  d.min = v.front();
  d.max = v.back();
  d.p50 = Percentile(v, 50);
  d.p90 = Percentile(v, 90);
  d.p99 = Percentile(v, 99);
  return d;
}

RequestMetrics ComputeRequestMetrics(double start, double end,
                                     const std::vector<TokenChunk>& chunks) {
  RequestMetrics m;
  m.latency_s = end - start;
  bool first = true;
  double prev = 0, first_t = 0, last_t = 0;
  for (const TokenChunk& c : chunks) {
    if (c.tokens <= 0) continue;
    if (first) {
      m.ttft_s = c.t - start;
      first_t = c.t;
      first = false;
    } else {
      const double gap = (c.t - prev) / c.tokens;
      for (int i = 0; i < c.tokens; ++i) m.itl_s.push_back(gap);
    }
    m.output_tokens += c.tokens;
    prev = last_t = c.t;
  }
  if (m.output_tokens >= 2 && last_t > first_t) {
    m.stream_tok_s = (m.output_tokens - 1) / (last_t - first_t);
  }
  if (m.latency_s > 0) m.e2e_tok_s = m.output_tokens / m.latency_s;
  return m;
}

RunSummary SummarizeRun(const std::vector<RequestRecord>& records) {
  RunSummary s;
  std::vector<double> ttft, itl, latency, stream;
  double first = std::numeric_limits<double>::infinity();
  double last = -std::numeric_limits<double>::infinity();
  for (const RequestRecord& r : records) {
    first = std::min(first, r.start_s);
    last = std::max(last, r.end_s);
    if (!r.ok) {
      ++s.requests_failed;
      continue;
    }
    ++s.requests_ok;
    s.output_tokens += r.m.output_tokens;
    s.prompt_tokens += r.prompt_tokens;
    if (r.m.output_tokens > 0) ttft.push_back(r.m.ttft_s);
    itl.insert(itl.end(), r.m.itl_s.begin(), r.m.itl_s.end());
    latency.push_back(r.m.latency_s);
    if (r.m.stream_tok_s > 0) stream.push_back(r.m.stream_tok_s);
  }
  s.wall_s = records.empty() ? 0 : std::max(0.0, last - first);
  if (s.wall_s > 0) {
    s.output_tok_s = s.output_tokens / s.wall_s;
    s.total_tok_s = (s.output_tokens + s.prompt_tokens) / s.wall_s;
    s.requests_per_s = s.requests_ok / s.wall_s;
  }
  // The window in which every ok stream decodes: (last first token, first end].
  double w0 = -std::numeric_limits<double>::infinity();
  double w1 = std::numeric_limits<double>::infinity();
  for (const RequestRecord& r : records) {
    if (!r.ok) continue;
    if (r.m.output_tokens == 0) {  // never decoded: no window
      w1 = w0;
      break;
    }
    w0 = std::max(w0, r.start_s + r.m.ttft_s);
    w1 = std::min(w1, r.end_s);
  }
  if (s.requests_ok > 0 && w1 > w0) {
    int64_t in_window = 0;
    for (const RequestRecord& r : records) {
      if (!r.ok) continue;
      double t = r.start_s + r.m.ttft_s;  // the first token; later ones from the ITL samples
      for (double gap : r.m.itl_s) {
        t += gap;
        if (t > w0 && t <= w1) ++in_window;
      }
    }
    s.all_decoding_s = w1 - w0;
    s.all_decoding_tok_s = static_cast<double>(in_window) / s.all_decoding_s;
  }
  s.ttft_s = Summarize(ttft);
  s.itl_s = Summarize(itl);
  s.latency_s = Summarize(latency);
  s.stream_tok_s = Summarize(stream);
  return s;
}

namespace {
// splitmix64: a small, fully specified generator (same ids on every platform and compiler,
// unlike std::uniform_int_distribution).
uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
}  // namespace

std::vector<int32_t> SyntheticPrompt(uint64_t seed, uint64_t index, int n, int vocab_size,
                                     const std::vector<int32_t>& exclude) {
  std::set<int32_t> ex;
  for (int32_t id : exclude) {
    if (id >= 0 && id < vocab_size) ex.insert(id);
  }
  std::vector<int32_t> allowed_gaps;  // sorted excluded ids, to map [0, m) onto allowed ids
  allowed_gaps.assign(ex.begin(), ex.end());
  const uint64_t m = static_cast<uint64_t>(vocab_size) - allowed_gaps.size();
  std::vector<int32_t> out;
  if (n <= 0 || vocab_size <= 0 || m == 0) return out;
  uint64_t state = seed ^ (index * 0xD1B54A32D192ED03ULL + 0x8CB92BA72F3D8DD7ULL);
  SplitMix(state);
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    // Rejection sampling avoids modulo bias.
    const uint64_t limit = UINT64_MAX - UINT64_MAX % m;
    uint64_t x;
    do {
      x = SplitMix(state);
    } while (x >= limit);
    int64_t id = static_cast<int64_t>(x % m);
    // Skip over excluded ids: the k-th allowed id.
    for (int32_t e : allowed_gaps) {
      if (e <= id)
        ++id;
      else
        break;
    }
    out.push_back(static_cast<int32_t>(id));
  }
  return out;
}

std::vector<int32_t> FitToLength(const std::vector<int32_t>& ids, int n) {
  std::vector<int32_t> out;
  if (ids.empty() || n <= 0) return out;
  out.reserve(n);
  while (static_cast<int>(out.size()) < n) out.push_back(ids[out.size() % ids.size()]);
  return out;
}

}  // namespace hipserve::cli::bench
