// A small Prometheus metrics registry (text exposition format 0.0.4) and the HTTP server that
// exposes it (GET /metrics on --metrics_port).
//
// Counters, gauges and histograms with fixed buckets. Updates are lock-free (atomics); the
// registry's mutex is taken only to create a metric (or find a labelled child) and to render.
// Metrics are owned by the registry and live as long as it; the pointers it hands out stay
// valid. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace hipserve::coordinator {

// label name -> value, rendered in this (sorted) order.
using MetricLabels = std::map<std::string, std::string>;

class Counter {
 public:
  void Inc(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  // `bounds`: the upper bounds of the buckets, increasing (+Inf is implicit).
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count of bucket i (i == bounds().size(): the +Inf bucket).
  uint64_t bucket(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Bucket bounds: `start`, start*factor, ... (`n` of them).
std::vector<double> ExponentialBuckets(double start, double factor, int n);

class MetricsRegistry {
 public:
  // Each returns the metric of that name and labels, creating it (and its family, with `help`)
  // on first use. A name keeps the type it was first registered with; asking for it as
  // another type is a programming error (aborts).
  Counter* GetCounter(const std::string& name, const std::string& help,
                      const MetricLabels& labels = {});
  Gauge* GetGauge(const std::string& name, const std::string& help,
                  const MetricLabels& labels = {});
  Histogram* GetHistogram(const std::string& name, const std::string& help,
                          const std::vector<double>& bounds, const MetricLabels& labels = {});
  // A gauge read at render time (e.g. from the scheduler's stats).
  void AddGaugeCallback(const std::string& name, const std::string& help,
                        const MetricLabels& labels, std::function<double()> read);

  // The text exposition format: # HELP, # TYPE, then the samples of every family, in
  // registration order.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Child {
    MetricLabels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> read;
  };
  struct Family {
    std::string name, help;
    Type type;
    std::vector<std::unique_ptr<Child>> children;
  };
  Child* FindOrAdd(const std::string& name, const std::string& help, Type type,
                   const MetricLabels& labels, bool* created);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
};

// Formats a sample value as Prometheus expects ("+Inf", "NaN", shortest round-trip otherwise).
std::string FormatMetricValue(double v);

// GET /metrics (and /) on its own cpp-httplib server, answering with render().
class MetricsHttpServer {
 public:
  // port 0 = pick a free one (see port()).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::function<std::string()> render);
  ~MetricsHttpServer();
  int port() const;
  void Shutdown();

  struct Impl;

 private:
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hipserve::coordinator
