// End-to-end: Prometheus metrics (--metrics_port) and the graceful drain on SIGTERM, against
// `hipserve serve --model=builtin:tiny` as a real process on loopback.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "hipserve/v1/generate.grpc.pb.h"

namespace hipserve {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// `hipserve serve` with port files for gRPC, HTTP and metrics; the test sends the signals.
class Server {
 public:
  explicit Server(std::vector<std::string> extra) {
    char tmpl[] = "/tmp/hipserve_drain_test_XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::vector<std::string> args = {HIPSERVE_BINARY,
                                     "serve",
                                     "--model=builtin:tiny",
                                     "--host=127.0.0.1",
                                     "--port=0",
                                     "--port_file=" + dir_ + "/port",
                                     "--http_host=127.0.0.1",
                                     "--http_port=0",
                                     "--http_port_file=" + dir_ + "/http_port",
                                     "--metrics_port=0",
                                     "--metrics_port_file=" + dir_ + "/metrics_port"};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string log = dir_ + "/server.log";
    pid_ = fork();
    if (pid_ == 0) {
      if (freopen(log.c_str(), "w", stderr) == nullptr) _exit(126);
      dup2(fileno(stderr), fileno(stdout));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::string cmd = "rm -rf '" + dir_ + "'";
    if (system(cmd.c_str()) != 0) {
    }
  }

  // Waits for the three port files and for readiness; false on timeout.
  bool Start(double timeout_s) {
    const auto end = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
    while (Clock::now() < end) {
      port_ = ReadPort("port");
      http_port_ = ReadPort("http_port");
      metrics_port_ = ReadPort("metrics_port");
      if (port_ > 0 && http_port_ > 0 && metrics_port_ > 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (metrics_port_ <= 0) return false;
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    while (Clock::now() < end) {
      if (Health() == HealthCheckResponse::SERVING) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  HealthCheckResponse::ServingStatus Health() {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    HealthCheckRequest req;
    req.set_service("hipserve.v1.Generation");
    HealthCheckResponse resp;
    if (!health->Check(&ctx, req, &resp).ok()) return HealthCheckResponse::UNKNOWN;
    return resp.status();
  }

  std::unique_ptr<v1::Generation::Stub> Stub() { return v1::Generation::NewStub(channel_); }

  // Sends SIGTERM; WaitExit returns the waitpid status (or -1 after timeout_s).
  void Terminate() { kill(pid_, SIGTERM); }
  int WaitExit(double timeout_s) {
    const auto end = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
    int status = 0;
    while (Clock::now() < end) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

  std::string log() const {
    std::ifstream f(dir_ + "/server.log");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  int http_port() const { return http_port_; }
  int metrics_port() const { return metrics_port_; }

 private:
  int ReadPort(const std::string& name) {
    std::ifstream f(dir_ + "/" + name);
    int p = 0;
    return f >> p ? p : 0;
  }

  pid_t pid_ = -1;
  std::string dir_;
  int port_ = 0, http_port_ = 0, metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

// A minimal HTTP/1.1 GET on 127.0.0.1 (Connection: close).
HttpResponse HttpGet(int port, const std::string& path) {
  HttpResponse r;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return r;
  }
  const std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return r;
  }
  std::string all;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) all.append(buf, n);
  close(fd);
  if (all.rfind("HTTP/1.1 ", 0) != 0) return r;
  r.status = std::atoi(all.c_str() + 9);
  const size_t body = all.find("\r\n\r\n");
  if (body != std::string::npos) r.body = all.substr(body + 4);
  return r;
}

// The Prometheus text exposition format: every line is a comment (# HELP / # TYPE) or a
// sample `name{label="value",...} number`; every sample belongs to a family with a TYPE.
// Returns "name{labels}" -> value; records format errors as test failures.
std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream l(line);
      std::string hash, kind, name, type;
      l >> hash >> kind >> name >> type;
      EXPECT_TRUE(kind == "HELP" || kind == "TYPE") << line;
      if (kind == "TYPE") {
        EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
        EXPECT_FALSE(types.count(name)) << "second TYPE for " << name;
        types[name] = type;
      }
      continue;
    }
    size_t i = 0;
    while (i < line.size() && (std::isalnum(static_cast<unsigned char>(line[i])) ||
                               line[i] == '_' || line[i] == ':')) {
      ++i;
    }
    const std::string name = line.substr(0, i);
    EXPECT_FALSE(name.empty()) << line;
    if (i < line.size() && line[i] == '{') {
      // label="value" pairs, values with \" \\ \n escapes.
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          ADD_FAILURE() << "bad label in: " << line;
          return samples;
        }
        i = eq + 2;
        while (i < line.size() && line[i] != '"') i += line[i] == '\\' ? 2 : 1;
        if (i >= line.size()) {
          ADD_FAILURE() << "unterminated label value in: " << line;
          return samples;
        }
        ++i;
        if (line[i] == ',') ++i;
      }
      EXPECT_EQ(line[i], '}') << line;
      ++i;
    }
    const std::string key = line.substr(0, i);
    EXPECT_EQ(line[i], ' ') << line;
    const std::string value = line.substr(i + 1);
    char* end = nullptr;
    double v = value == "+Inf" ? INFINITY : std::strtod(value.c_str(), &end);
    if (value != "+Inf") {
      EXPECT_TRUE(end != nullptr && *end == '\0' && !value.empty()) << line;
    }
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s = suffix;
      if (!types.count(family) && family.size() > s.size() &&
          family.compare(family.size() - s.size(), s.size(), s) == 0) {
        family = family.substr(0, family.size() - s.size());
      }
    }
    EXPECT_TRUE(types.count(family)) << "sample without a TYPE: " << line;
    samples[key] = v;
  }
  return samples;
}

std::map<std::string, double> Scrape(Server& s) {
  HttpResponse r = HttpGet(s.metrics_port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  return ParseExposition(r.body);
}

v1::GenerateRequest Request(const std::string& text, int max_tokens, bool ignore_eos) {
  v1::GenerateRequest req;
  req.set_text(text);
  req.mutable_sampling()->set_max_tokens(max_tokens);
  req.mutable_sampling()->set_temperature(0);
  req.mutable_sampling()->set_ignore_eos(ignore_eos);
  return req;
}

TEST(MetricsEndpointTest, CountersMoveAndTheFormatParses) {
  Server server({});
  ASSERT_TRUE(server.Start(60)) << server.log();
  auto before = Scrape(server);
  EXPECT_EQ(before["hipserve_ready"], 1);
  EXPECT_EQ(before["hipserve_requests_running"], 0);
  EXPECT_GT(before["hipserve_kv_capacity_tokens"], 0);
  EXPECT_GT(before["hipserve_memory_plan_bytes{part=\"kv\"}"], 0);
  // The CPU backend keeps no offloaded tiers: both are exported, both 0.
  EXPECT_EQ(before.count("hipserve_memory_plan_bytes{part=\"host_kv\"}"), 1u);
  EXPECT_EQ(before["hipserve_memory_plan_bytes{part=\"host_kv\"}"], 0);
  EXPECT_EQ(before.count("hipserve_kv_gpu_hot_tokens"), 1u);
  auto stub = server.Stub();

  // A long stream: scraped while it runs.
  grpc::ClientContext long_ctx;
  auto reader = stub->Generate(&long_ctx, Request("a long one", 3000, true));
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  auto during = Scrape(server);
  EXPECT_EQ(during["hipserve_requests_running"], 1);
  EXPECT_GT(during["hipserve_kv_tokens_in_use"], 3000);
  long_ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  reader->Finish();

  int generated = 0;
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    v1::GenerateOnceResponse resp;
    ASSERT_TRUE(
        stub->GenerateOnce(&ctx, Request("hello " + std::to_string(i), 8, true), &resp).ok());
    generated += resp.completion_tokens();
  }
  {
    grpc::ClientContext ctx;
    v1::GenerateOnceResponse resp;
    v1::GenerateRequest bad = Request("x", 8, true);
    bad.mutable_sampling()->set_temperature(-1);
    EXPECT_EQ(stub->GenerateOnce(&ctx, bad, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // The cancelled stream's finish is counted as the loop delivers it.
  std::map<std::string, double> after;
  const auto end = Clock::now() + std::chrono::seconds(10);
  do {
    after = Scrape(server);
  } while (after["hipserve_requests_running"] != 0 && Clock::now() < end);
  EXPECT_EQ(after["hipserve_requests_total{code=\"OK\",outcome=\"length\"}"], 3);
  EXPECT_EQ(after["hipserve_requests_total{code=\"OK\",outcome=\"abort\"}"], 1);
  EXPECT_EQ(after["hipserve_requests_total{code=\"INVALID_ARGUMENT\",outcome=\"rejected\"}"], 1);
  EXPECT_EQ(generated, 24);
  EXPECT_GE(after["hipserve_generation_tokens_total"], generated + 1);
  EXPECT_GT(after["hipserve_prompt_tokens_total"], 0);
  EXPECT_EQ(after["hipserve_time_to_first_token_seconds_count"], 4);
  EXPECT_EQ(after["hipserve_time_to_first_token_seconds_bucket{le=\"+Inf\"}"], 4);
  EXPECT_EQ(after["hipserve_queue_time_seconds_count"], 4);
  EXPECT_GE(after["hipserve_inter_token_latency_seconds_count"], 3 * 7);
  EXPECT_GT(after["hipserve_steps_total"], before["hipserve_steps_total"] + 24);
  EXPECT_EQ(after["hipserve_step_duration_seconds_count"],
            after["hipserve_steps_total"] + after["hipserve_failed_steps_total"]);
  EXPECT_EQ(after["hipserve_kv_tokens_in_use"], 0);
  // Dense attention on the CPU: no HiP mask cache, one KV tier; the series exist at 0.
  for (const char* cache : {"hip_mask", "kv_gpu_hot"}) {
    for (const char* result : {"hit", "miss"}) {
      const std::string key = std::string("hipserve_kv_cache_lookups_total{cache=\"") + cache +
                              "\",result=\"" + result + "\"}";
      EXPECT_EQ(after.count(key), 1u) << key;
      EXPECT_EQ(after[key], 0) << key;
    }
  }
  // Histogram buckets are cumulative: none holds more than the +Inf one.
  for (const auto& [key, v] : after) {
    if (key.rfind("hipserve_step_duration_seconds_bucket", 0) != 0) continue;
    EXPECT_LE(v, after["hipserve_step_duration_seconds_count"]) << key;
  }
  server.Terminate();
  const int status = server.WaitExit(20);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << server.log();
}

// HiP's decode mask cache through the worker's step results: with the default refresh
// intervals [96, 24, 8], decode step i re-estimates the mask when i % 8 == 0 and reuses the
// cached block lists otherwise, per layer (builtin:tiny has 2). One request of 17 tokens: a
// prefill (no lookup) and 16 decode steps, i = 0..15: 2 misses and 14 hits per layer.
TEST(MetricsEndpointTest, HipMaskCacheHitRatio) {
  Server server({"--attention=hip"});
  ASSERT_TRUE(server.Start(60)) << server.log();
  const std::string hit = "hipserve_kv_cache_lookups_total{cache=\"hip_mask\",result=\"hit\"}";
  const std::string miss = "hipserve_kv_cache_lookups_total{cache=\"hip_mask\",result=\"miss\"}";
  auto before = Scrape(server);
  EXPECT_EQ(before[hit], 0);
  EXPECT_EQ(before[miss], 0);
  auto stub = server.Stub();
  grpc::ClientContext ctx;
  v1::GenerateOnceResponse resp;
  ASSERT_TRUE(stub->GenerateOnce(&ctx, Request("mask cache", 17, true), &resp).ok());
  ASSERT_EQ(resp.completion_tokens(), 17);
  auto after = Scrape(server);
  EXPECT_EQ(after[hit], 28);
  EXPECT_EQ(after[miss], 4);
  EXPECT_NEAR(after[hit] / (after[hit] + after[miss]), 0.875, 1e-9);
  // The CPU backend has one KV tier: no tier lookups.
  EXPECT_EQ(after["hipserve_kv_cache_lookups_total{cache=\"kv_gpu_hot\",result=\"hit\"}"], 0);
  EXPECT_EQ(after["hipserve_kv_cache_lookups_total{cache=\"kv_gpu_hot\",result=\"miss\"}"], 0);
}

// Runs the drain scenario: a long stream, SIGTERM while it runs; readiness and admission are
// checked at once. Returns the long stream's status and its tokens.
struct LongStream {
  grpc::Status status;
  int tokens = 0;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  double seconds_after_sigterm = 0;
};

LongStream DrainDuringALongStream(Server& server, int max_tokens) {
  auto stub = server.Stub();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub->Generate(&ctx, Request("drain me", max_tokens, true));
  v1::GenerateResponse msg;
  LongStream r;
  EXPECT_TRUE(reader->Read(&msg));
  r.tokens += msg.token_ids_size();
  const auto sigterm = Clock::now();
  server.Terminate();
  // Readiness goes NOT_SERVING at once.
  while (server.Health() == HealthCheckResponse::SERVING && SecondsSince(sigterm) < 5) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_LT(SecondsSince(sigterm), 1.0) << "readiness still SERVING";
  EXPECT_EQ(server.Health(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(HttpGet(server.http_port(), "/health/ready").status, 503);
  EXPECT_EQ(HttpGet(server.http_port(), "/health").status, 200);  // still alive
  // No new request is admitted.
  {
    grpc::ClientContext c2;
    v1::GenerateOnceResponse resp;
    grpc::Status s = stub->GenerateOnce(&c2, Request("too late", 4, true), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(s.error_message().find("retry"), std::string::npos) << s.error_message();
  }
  while (reader->Read(&msg)) {
    r.tokens += msg.token_ids_size();
    if (msg.has_final()) r.reason = msg.final().finish_reason();
  }
  r.status = reader->Finish();
  r.seconds_after_sigterm = SecondsSince(sigterm);
  return r;
}

TEST(DrainTest, InFlightRequestFinishesThenExitZero) {
  Server server({"--drain_timeout_s=30"});
  ASSERT_TRUE(server.Start(60)) << server.log();
  LongStream r = DrainDuringALongStream(server, 3000);
  EXPECT_TRUE(r.status.ok()) << r.status.error_message() << "\n" << server.log();
  EXPECT_EQ(r.reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.tokens, 3000);
  const int status = server.WaitExit(20);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << server.log();
}

TEST(DrainTest, RequestsPastTheTimeoutEndUnavailableThenExitZero) {
  Server server({"--drain_timeout_s=0.5"});
  ASSERT_TRUE(server.Start(60)) << server.log();
  LongStream r = DrainDuringALongStream(server, 4000);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_NE(r.status.error_message().find("drain timeout"), std::string::npos)
      << r.status.error_message();
  EXPECT_LT(r.tokens, 4000);
  EXPECT_LT(r.seconds_after_sigterm, 5.0);
  const int status = server.WaitExit(20);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << server.log();
}

}  // namespace
}  // namespace hipserve
