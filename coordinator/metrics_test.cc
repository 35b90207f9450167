#include "coordinator/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace hipserve::coordinator {
namespace {

// A strict-enough parser of the text exposition format: HELP/TYPE lines, then samples
// `name{l="v",...} value`. Fails the test on a malformed line.
struct Parsed {
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, double> samples;     // "name{labels}" -> value
};

Parsed Parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream l(line.substr(7));
      std::string name, type;
      l >> name >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      p.types[name] = type;
      continue;
    }
    if (line.rfind("# HELP ", 0) == 0) continue;
    EXPECT_NE(line[0], '#') << line;
    size_t space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    std::string key = line.substr(0, space);
    std::string value = line.substr(space + 1);
    size_t brace = key.find('{');
    std::string name = key.substr(0, brace);
    for (char c : name) EXPECT_TRUE(std::isalnum(c) || c == '_' || c == ':') << line;
    if (brace != std::string::npos) {
      EXPECT_EQ(key.back(), '}') << line;
    }
    double v = value == "+Inf" ? INFINITY : std::stod(value);
    p.samples[key] = v;
  }
  return p;
}

TEST(MetricsTest, RendersCountersGaugesAndHistogramsInTheTextFormat) {
  MetricsRegistry r;
  r.GetCounter("t_requests_total", "Requests.", {{"outcome", "stop"}, {"code", "OK"}})->Inc();
  r.GetCounter("t_requests_total", "Requests.", {{"outcome", "stop"}, {"code", "OK"}})->Inc(2);
  r.GetCounter("t_requests_total", "Requests.", {{"outcome", "error"}, {"code", "UNAVAILABLE"}})
      ->Inc();
  r.GetGauge("t_running", "Running.")->Set(3);
  r.AddGaugeCallback("t_kv", "KV \"tokens\"\nin use.", {}, [] { return 1.5; });
  Histogram* h = r.GetHistogram("t_latency_seconds", "Latency.", {0.1, 1, 10});
  h->Observe(0.05);
  h->Observe(0.1);  // le is inclusive
  h->Observe(5);
  h->Observe(100);
  const std::string text = r.Render();
  Parsed p = Parse(text);
  EXPECT_EQ(p.types["t_requests_total"], "counter");
  EXPECT_EQ(p.types["t_running"], "gauge");
  EXPECT_EQ(p.types["t_latency_seconds"], "histogram");
  EXPECT_EQ(p.samples["t_requests_total{code=\"OK\",outcome=\"stop\"}"], 3);
  EXPECT_EQ(p.samples["t_requests_total{code=\"UNAVAILABLE\",outcome=\"error\"}"], 1);
  EXPECT_EQ(p.samples["t_running"], 3);
  EXPECT_EQ(p.samples["t_kv"], 1.5);
  EXPECT_EQ(p.samples["t_latency_seconds_bucket{le=\"0.1\"}"], 2);
  EXPECT_EQ(p.samples["t_latency_seconds_bucket{le=\"1\"}"], 2);
  EXPECT_EQ(p.samples["t_latency_seconds_bucket{le=\"10\"}"], 3);
  EXPECT_EQ(p.samples["t_latency_seconds_bucket{le=\"+Inf\"}"], 4);
  EXPECT_EQ(p.samples["t_latency_seconds_count"], 4);
  EXPECT_DOUBLE_EQ(p.samples["t_latency_seconds_sum"], 105.15);
  // HELP text is escaped onto one line.
  EXPECT_NE(text.find("# HELP t_kv KV \"tokens\"\\nin use."), std::string::npos) << text;
  // One TYPE line per family even with several label sets.
  EXPECT_EQ(text.find("# TYPE t_requests_total"), text.rfind("# TYPE t_requests_total"));
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry r;
  Counter* c = r.GetCounter("t_total", "t");
  Histogram* h = r.GetHistogram("t_seconds", "t", ExponentialBuckets(0.001, 2, 10));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c->Inc();
        h->Observe(0.002);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->value(), 40000);
  EXPECT_EQ(h->count(), 40000u);
  Parsed p = Parse(r.Render());
  EXPECT_EQ(p.samples["t_seconds_bucket{le=\"0.002\"}"], 40000);
  EXPECT_EQ(p.samples["t_seconds_bucket{le=\"0.001\"}"], 0);
}

TEST(MetricsTest, FormatsValues) {
  EXPECT_EQ(FormatMetricValue(3), "3");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatMetricValue(NAN), "NaN");
}

}  // namespace
}  // namespace hipserve::coordinator
