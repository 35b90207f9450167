#include "coordinator/metrics.h"

#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace hipserve::coordinator {

namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} with `extra` (e.g. le) last; "" when there are no labels.
std::string LabelText(const MetricLabels& labels, const std::string& extra_name = "",
                      const std::string& extra_value = "") {
  std::string s;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&s, s.empty() ? "" : ",", k, "=\"", EscapeLabelValue(v), "\"");
  }
  if (!extra_name.empty()) {
    absl::StrAppend(&s, s.empty() ? "" : ",", extra_name, "=\"", extra_value, "\"");
  }
  return s.empty() ? s : absl::StrCat("{", s, "}");
}

}  // namespace

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // Shortest representation that round-trips.
  for (int p = 6; p <= 17; ++p) {
    char t[64];
    std::snprintf(t, sizeof(t), "%.*g", p, v);
    if (std::strtod(t, nullptr) == v) return t;
  }
  return buf;
}

void Counter::Inc(double v) { AtomicAdd(value_, v); }
void Gauge::Add(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<double> ExponentialBuckets(double start, double factor, int n) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < n; ++i, v *= factor) b.push_back(v);
  return b;
}

MetricsRegistry::Child* MetricsRegistry::FindOrAdd(const std::string& name, const std::string& help,
                                                   Type type, const MetricLabels& labels,
                                                   bool* created) {
  Family* family = nullptr;
  for (auto& f : families_) {
    if (f->name == name) family = f.get();
  }
  if (family == nullptr) {
    families_.push_back(std::make_unique<Family>());
    family = families_.back().get();
    family->name = name;
    family->help = help;
    family->type = type;
  }
  if (family->type != type) {
    LOG(FATAL) << "metric " << name << " registered with two types";
  }
  for (auto& c : family->children) {
    if (c->labels == labels) {
      *created = false;
      return c.get();
    }
  }
  family->children.push_back(std::make_unique<Child>());
  family->children.back()->labels = labels;
  *created = true;
  return family->children.back().get();
}

Counter* MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created = false;
  Child* c = FindOrAdd(name, help, Type::kCounter, labels, &created);
  if (created) c->counter = std::make_unique<Counter>();
  return c->counter.get();
}

Gauge* MetricsRegistry::GetGauge(const std::string& name, const std::string& help,
                                 const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created = false;
  Child* c = FindOrAdd(name, help, Type::kGauge, labels, &created);
  if (created) c->gauge = std::make_unique<Gauge>();
  return c->gauge.get();
}

Histogram* MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         const std::vector<double>& bounds,
                                         const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created = false;
  Child* c = FindOrAdd(name, help, Type::kHistogram, labels, &created);
  if (created) c->histogram = std::make_unique<Histogram>(bounds);
  return c->histogram.get();
}

void MetricsRegistry::AddGaugeCallback(const std::string& name, const std::string& help,
                                       const MetricLabels& labels, std::function<double()> read) {
  std::lock_guard<std::mutex> lock(mu_);
  bool created = false;
  Child* c = FindOrAdd(name, help, Type::kGauge, labels, &created);
  c->read = std::move(read);
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& f : families_) {
    const char* type = f->type == Type::kCounter ? "counter"
                       : f->type == Type::kGauge ? "gauge"
                                                 : "histogram";
    absl::StrAppend(&out, "# HELP ", f->name, " ", EscapeHelp(f->help), "\n");
    absl::StrAppend(&out, "# TYPE ", f->name, " ", type, "\n");
    for (const auto& c : f->children) {
      if (c->histogram) {
        const Histogram& h = *c->histogram;
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= h.bounds().size(); ++i) {
          cumulative += h.bucket(i);
          const std::string le =
              i < h.bounds().size() ? FormatMetricValue(h.bounds()[i]) : std::string("+Inf");
          absl::StrAppend(&out, f->name, "_bucket", LabelText(c->labels, "le", le), " ", cumulative,
                          "\n");
        }
        absl::StrAppend(&out, f->name, "_sum", LabelText(c->labels), " ",
                        FormatMetricValue(h.sum()), "\n");
        absl::StrAppend(&out, f->name, "_count", LabelText(c->labels), " ", cumulative, "\n");
        continue;
      }
      double v = c->read ? c->read() : c->counter ? c->counter->value() : c->gauge->value();
      absl::StrAppend(&out, f->name, LabelText(c->labels), " ", FormatMetricValue(v), "\n");
    }
  }
  return out;
}

struct MetricsHttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  bool stopped = false;
};

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::function<std::string()> render) {
  signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  impl->server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  auto handler = [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  };
  impl->server.Get("/metrics", handler);
  impl->server.Get("/", handler);
  if (port == 0) {
    impl->port = impl->server.bind_to_any_port(host);
  } else if (impl->server.bind_to_port(host, port)) {
    impl->port = port;
  }
  if (impl->port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for metrics on ", host, ":", port, " (port in use?)"));
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  while (!impl->server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  LOG(INFO) << "Prometheus metrics on http://" << host << ":" << impl->port << "/metrics";
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

MetricsHttpServer::~MetricsHttpServer() { Shutdown(); }

int MetricsHttpServer::port() const { return impl_->port; }

void MetricsHttpServer::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace hipserve::coordinator
