// Requests that survive a worker loss, and prefill progress, end to end with real processes on
// loopback (CPU backend, builtin:tiny, TP = 2 over Gloo):
//  * `hipserve serve --tp=2`: kill -9 of a worker mid-stream. serve restarts it (readiness
//    NOT_SERVING meanwhile, SERVING again once the group is whole) and every stream that was in
//    flight completes with the tokens of an undisturbed run (seeded sampling, temperature > 0);
//    with --recovery_timeout_s=0 the streams end UNAVAILABLE within 5 s.
//  * A soak (SoakTest): 64 concurrent streams of mixed prompt and output lengths for
//    HIPSERVE_SOAK_SECONDS (default 60), with client cancellations and deadlines mixed in and a
//    kill -9 of a worker halfway: every completed output equals the same request run alone, a
//    cancelled or timed-out one got a prefix of it, none is lost, KV in GetServerInfo returns to
//    zero and the RSS of every process stays under kRssBoundBytes.
//  * Prefill progress: a prompt of several chunks streams processed/total events before its
//    first token; `hipserve generate`'s client shows them as one line redrawn in place.
// Every worker runs with HIPSERVE_CPU_THREADS=1 (several processes share 2 cores in CI).
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "coordinator/cli/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hipserve/v1/generate.grpc.pb.h"
#include "tests/integration/server_process.h"

namespace hipserve {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::health::v1::HealthCheckResponse;

// Resident memory each process (coordinator, each worker) must stay under during the soak, and
// how much the coordinator (the one process that lives through the whole soak) may grow after
// its first 5 s. Measured: ~180 MiB each (CPU thread pools, gRPC, the tiny model), flat; a leak
// of KV, sequences or streams over the thousands of requests would cross them.
constexpr int64_t kRssBoundBytes = int64_t{512} << 20;
constexpr int64_t kServeRssGrowthBytes = int64_t{128} << 20;

class ThreadsEnv : public ::testing::Environment {
 public:
  void SetUp() override { setenv("HIPSERVE_CPU_THREADS", "1", 1); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ThreadsEnv);

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The pid of `serve`'s child running `hipserve worker --rank=<rank>`, or -1.
pid_t WorkerPid(pid_t serve, int rank) {
  DIR* d = opendir("/proc");
  if (d == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream in(stat.substr(paren + 2));
    char state = 0;
    pid_t ppid = 0;
    in >> state >> ppid;
    if (ppid != serve || state == 'Z') continue;
    std::string cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (cmdline.find(" worker ") != std::string::npos &&
        cmdline.find(" --rank=" + std::to_string(rank) + " ") != std::string::npos) {
      found = pid;
      break;
    }
  }
  closedir(d);
  return found;
}

// VmRSS of `pid` in bytes (0 when gone).
int64_t RssBytes(pid_t pid) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return 0;
}

HealthCheckResponse::ServingStatus Readiness(const std::string& address) {
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("hipserve.v1.Generation");
  HealthCheckResponse resp;
  if (!health->Check(&ctx, req, &resp).ok()) return HealthCheckResponse::UNKNOWN;
  return resp.status();
}

v1::ServerInfo ServerInfo(const std::string& address) {
  auto stub =
      v1::Generation::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ServerInfo info;
  EXPECT_TRUE(stub->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok());
  return info;
}

// One request of the tests: a text prompt, seeded sampling, a fixed number of tokens.
struct Spec {
  std::string prompt;
  int max_tokens = 32;
  float temperature = 0.8f;
  uint64_t seed = 1;
  bool progress = false;
};

std::string Key(const Spec& s) {
  return std::to_string(s.prompt.size()) + "/" + std::to_string(s.max_tokens) + "/" +
         std::to_string(s.temperature) + "/" + std::to_string(s.seed);
}

struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::vector<std::pair<int, int>> progress;  // (processed, total) in order
  int tokens_before_progress_ended = 0;       // tokens seen before the last progress event
  bool final_seen = false;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  int prompt_tokens = 0;
  Clock::time_point end;
};

// Streams `spec`. `on_tokens(n)` runs after each message with n tokens received so far;
// `cancel_after` > 0 cancels the call once that many tokens arrived; `deadline_s` bounds it.
StreamResult Stream(v1::Generation::Stub* stub, const Spec& spec,
                    const std::function<void(size_t)>& on_tokens = nullptr, int cancel_after = 0,
                    double deadline_s = 120) {
  v1::GenerateRequest req;
  req.set_text(spec.prompt);
  req.mutable_sampling()->set_max_tokens(spec.max_tokens);
  req.mutable_sampling()->set_temperature(spec.temperature);
  req.mutable_sampling()->set_seed(spec.seed);
  req.mutable_sampling()->set_ignore_eos(true);
  req.set_report_prefill_progress(spec.progress);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000)));
  auto reader = stub->Generate(&ctx, req);
  StreamResult r;
  v1::GenerateResponse msg;
  bool cancelled = false;
  while (reader->Read(&msg)) {
    r.prompt_tokens = msg.prompt_tokens();
    if (msg.has_prefill()) {
      r.progress.emplace_back(msg.prefill().processed_tokens(), msg.prefill().total_tokens());
      r.tokens_before_progress_ended = static_cast<int>(r.ids.size());
    }
    r.ids.insert(r.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    if (msg.has_final()) {
      r.final_seen = true;
      r.finish = msg.final().finish_reason();
    }
    if (on_tokens) on_tokens(r.ids.size());
    if (cancel_after > 0 && !cancelled && static_cast<int>(r.ids.size()) >= cancel_after) {
      cancelled = true;
      ctx.TryCancel();
    }
  }
  r.status = reader->Finish();
  r.end = Clock::now();
  return r;
}

std::unique_ptr<v1::Generation::Stub> Stub(const std::string& address) {
  return v1::Generation::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

std::string Prompt(int chars, uint64_t seed) {
  static const char kWords[][8] = {"the ", "model ",  "keeps ", "every ", "token ", "when ",
                                   "a ",   "worker ", "dies ",  "and ",   "comes ", "back "};
  std::mt19937_64 rng(seed);
  std::string s;
  while (static_cast<int>(s.size()) < chars) s += kWords[rng() % 12];
  s.resize(chars);
  return s;
}

// `hipserve serve --tp=2` on builtin:tiny with `extra` flags, ready.
std::unique_ptr<testing::ServerProcess> StartServe(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"--backend=cpu", "--tp=2", "--model=builtin:tiny",
                                   "--worker_restart_backoff_s=0.2"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto server = std::make_unique<testing::ServerProcess>(args);
  if (!server->WaitForPort(60)) {
    ADD_FAILURE() << "serve did not start:\n" << server->log();
    return nullptr;
  }
  absl::Status ready = cli::WaitForReady(server->address(), 120);
  EXPECT_TRUE(ready.ok()) << ready << "\n" << server->log();
  if (!ready.ok()) return nullptr;
  return server;
}

// Polls readiness in the background and records whether it went NOT_SERVING.
class ReadinessWatch {
 public:
  explicit ReadinessWatch(std::string address) : address_(std::move(address)) {
    thread_ = std::thread([this] {
      // One channel, polled every 5 ms: the window can be a few hundred ms with the tiny model.
      auto health = grpc::health::v1::Health::NewStub(
          grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
      while (!stop_) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
        grpc::health::v1::HealthCheckRequest req;
        req.set_service("hipserve.v1.Generation");
        HealthCheckResponse resp;
        if (health->Check(&ctx, req, &resp).ok() &&
            resp.status() == HealthCheckResponse::NOT_SERVING) {
          not_serving_seen_ = true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  ~ReadinessWatch() {
    stop_ = true;
    thread_.join();
  }
  bool not_serving_seen() const { return not_serving_seen_; }

 private:
  std::string address_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> not_serving_seen_{false};
  std::thread thread_;
};

// Four concurrent seeded streams; kill -9 of `rank` once the first has 20 tokens.
struct KillRun {
  std::vector<Spec> specs;
  std::vector<StreamResult> results;
  Clock::time_point killed;
  bool did_kill = false;
};

std::vector<Spec> KillSpecs() {
  std::vector<Spec> specs;
  for (int i = 0; i < 4; ++i) {
    Spec s;
    s.prompt = Prompt(40 + 70 * i, 100 + i);
    s.max_tokens = 160 + 20 * i;
    s.temperature = i == 3 ? 0.f : 0.9f;
    s.seed = 1000 + i;
    specs.push_back(s);
  }
  return specs;
}

KillRun StreamsWithAKill(testing::ServerProcess& server, int rank) {
  KillRun run;
  run.specs = KillSpecs();
  run.results.resize(run.specs.size());
  std::vector<std::thread> threads;
  std::once_flag kill_once;
  for (size_t i = 0; i < run.specs.size(); ++i) {
    threads.emplace_back([&, i] {
      auto stub = Stub(server.address());
      run.results[i] = Stream(stub.get(), run.specs[i], [&](size_t n) {
        if (i != 0 || n < 20) return;
        std::call_once(kill_once, [&] {
          const pid_t w = WorkerPid(server.pid(), rank);
          EXPECT_GT(w, 0) << "no worker rank " << rank;
          if (w > 0) {
            kill(w, SIGKILL);
            run.killed = Clock::now();
            run.did_kill = true;
          }
        });
      });
    });
  }
  for (auto& t : threads) t.join();
  return run;
}

TEST(ServeRecoveryTest, KilledWorkerIsRestartedAndEveryStreamEndsWithTheUndisturbedTokens) {
  auto server = StartServe({"--recovery_timeout_s=30"});
  ASSERT_NE(server, nullptr);
  // Undisturbed: each request alone.
  std::vector<std::vector<int32_t>> alone;
  {
    auto stub = Stub(server->address());
    for (const Spec& s : KillSpecs()) {
      StreamResult r = Stream(stub.get(), s);
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      ASSERT_EQ(static_cast<int>(r.ids.size()), s.max_tokens);
      alone.push_back(r.ids);
    }
  }
  for (int rank : {1, 0}) {
    SCOPED_TRACE(::testing::Message() << "kill -9 of worker rank " << rank);
    const pid_t before = WorkerPid(server->pid(), rank);
    ReadinessWatch watch(server->address());
    KillRun run = StreamsWithAKill(*server, rank);
    ASSERT_TRUE(run.did_kill);
    for (size_t i = 0; i < run.specs.size(); ++i) {
      const StreamResult& r = run.results[i];
      EXPECT_TRUE(r.status.ok()) << "stream " << i << ": " << r.status.error_message() << "\n"
                                 << server->log();
      EXPECT_TRUE(r.final_seen);
      EXPECT_EQ(r.finish, v1::FINISH_REASON_LENGTH);
      EXPECT_EQ(r.ids, alone[i]) << "stream " << i << " differs from the undisturbed run";
    }
    std::cout << "rank " << rank << " killed; streams done "
              << std::chrono::duration<double>(run.results[0].end - run.killed).count()
              << " s after the kill\n";
    EXPECT_TRUE(watch.not_serving_seen()) << "readiness never went NOT_SERVING";
    EXPECT_TRUE(server->running()) << server->log();
    EXPECT_EQ(Readiness(server->address()), HealthCheckResponse::SERVING);
    const pid_t after = WorkerPid(server->pid(), rank);
    EXPECT_GT(after, 0);
    EXPECT_NE(after, before) << "the worker was not restarted";
  }
  const std::string log = server->log();
  EXPECT_NE(log.find("worker rank 1 exited (signal 9); restarting it in 0.2 s (restart 1 of 10)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("restarted worker rank 0"), std::string::npos) << log;
  EXPECT_NE(log.find("re-prefilling their history"), std::string::npos) << log;
  const v1::ServerInfo info = ServerInfo(server->address());
  EXPECT_EQ(info.kv_tokens_in_use(), 0);
  EXPECT_EQ(info.active_requests(), 0);
}

TEST(ServeRecoveryTest, RecoveryOffEndsTheStreamsUnavailableWithinFiveSeconds) {
  auto server = StartServe({"--recovery_timeout_s=0"});
  ASSERT_NE(server, nullptr);
  KillRun run = StreamsWithAKill(*server, /*rank=*/1);
  ASSERT_TRUE(run.did_kill);
  for (size_t i = 0; i < run.results.size(); ++i) {
    const StreamResult& r = run.results[i];
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << "stream " << i << ": " << r.status.error_message();
    EXPECT_LT(static_cast<int>(r.ids.size()), run.specs[i].max_tokens);
    const double took = std::chrono::duration<double>(r.end - run.killed).count();
    EXPECT_LT(took, 5.0) << "stream " << i << " ended " << took << " s after the kill";
  }
  // serve restarts the worker all the same: serving again, with the same tokens.
  absl::Status ready = cli::WaitForReady(server->address(), 60);
  ASSERT_TRUE(ready.ok()) << ready << "\n" << server->log();
  auto stub = Stub(server->address());
  StreamResult again = Stream(stub.get(), run.specs[3]);
  EXPECT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(static_cast<int>(again.ids.size()), run.specs[3].max_tokens);
}

TEST(ServeRecoveryTest, RestartLimitZeroStopsTheServerAsBefore) {
  auto server = StartServe({"--worker_restart_limit=0"});
  ASSERT_NE(server, nullptr);
  const pid_t w = WorkerPid(server->pid(), 0);
  ASSERT_GT(w, 0);
  kill(w, SIGKILL);
  const auto end = Clock::now() + std::chrono::seconds(20);
  while (server->running() && Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(server->running());
  EXPECT_NE(server->log().find("worker rank 0 exited (signal 9); stopping"), std::string::npos)
      << server->log();
}

// --- Prefill progress ------------------------------------------------------------------------

TEST(PrefillProgressTest, LongPromptStreamsProgressBeforeItsFirstToken) {
  testing::ServerProcess server({"--backend=cpu", "--model=builtin:tiny", "--chunk=64"});
  ASSERT_TRUE(server.WaitForPort(60)) << server.log();
  absl::Status ready = cli::WaitForReady(server.address(), 60);
  ASSERT_TRUE(ready.ok()) << ready;
  auto stub = Stub(server.address());
  Spec spec;
  spec.prompt = Prompt(300, 5);
  spec.max_tokens = 4;
  spec.progress = true;
  StreamResult r = Stream(stub.get(), spec);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_GT(r.prompt_tokens, 256);
  // One event per chunk, in order, processed up to the whole prompt, all before any token.
  std::vector<std::pair<int, int>> want;
  for (int done = 64; done < r.prompt_tokens; done += 64) want.emplace_back(done, r.prompt_tokens);
  want.emplace_back(r.prompt_tokens, r.prompt_tokens);
  EXPECT_EQ(r.progress, want);
  EXPECT_EQ(r.tokens_before_progress_ended, 0);
  EXPECT_EQ(r.ids.size(), 4u);
  // Not asked for: none.
  spec.progress = false;
  StreamResult quiet = Stream(stub.get(), spec);
  ASSERT_TRUE(quiet.status.ok());
  EXPECT_TRUE(quiet.progress.empty());
  EXPECT_EQ(quiet.ids, r.ids);

  // `hipserve generate`'s client: one line redrawn in place, cleared before the answer.
  cli::GenerateClientOptions o;
  o.server = server.address();
  o.prompt = spec.prompt;
  o.max_tokens = 4;
  o.temperature = 0.f;
  o.prefill_progress = true;
  std::ostringstream out, err;
  absl::Status s = cli::RunGenerate(o, out, err);
  ASSERT_TRUE(s.ok()) << s;
  const std::string total = std::to_string(r.prompt_tokens);
  EXPECT_NE(err.str().find("\rprefill 64/" + total + " tokens ("), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("\rprefill " + total + "/" + total + " tokens (100%)\r\033[K"),
            std::string::npos)
      << err.str();
  o.prefill_progress = false;
  std::ostringstream out2, err2;
  ASSERT_TRUE(cli::RunGenerate(o, out2, err2).ok());
  EXPECT_EQ(err2.str().find("prefill"), std::string::npos) << err2.str();
  EXPECT_EQ(out2.str(), out.str());
}

// --- Soak ------------------------------------------------------------------------------------

double SoakSeconds() {
  const char* v = std::getenv("HIPSERVE_SOAK_SECONDS");
  return v != nullptr && std::atof(v) > 0 ? std::atof(v) : 60.0;
}

// What one soak client does with a request.
enum class Mode { kComplete, kCancel, kDeadline };

TEST(SoakTest, SixtyFourStreamsWithCancellationsDeadlinesAndAKilledWorker) {
  const double duration_s = SoakSeconds();
  auto server = StartServe({"--recovery_timeout_s=60", "--chunk=128"});
  ASSERT_NE(server, nullptr);
  // A fixed pool of requests of mixed lengths (prompts 1-400 bytes, 1-48 tokens out).
  std::vector<Spec> pool;
  std::mt19937_64 rng(42);
  for (int i = 0; i < 32; ++i) {
    Spec s;
    s.prompt = Prompt(1 + static_cast<int>(rng() % 400), 500 + i);
    s.max_tokens = 1 + static_cast<int>(rng() % 48);
    s.temperature = i % 4 == 0 ? 0.f : 0.7f + 0.1f * (i % 3);
    s.seed = 9000 + i;
    pool.push_back(s);
  }
  struct Outcome {
    size_t spec;
    Mode mode;
    StreamResult r;
  };
  std::mutex mu;
  std::vector<Outcome> outcomes;
  std::atomic<int> not_ready_retries{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> max_rss[3] = {{0}, {0}, {0}};  // serve, rank 0, rank 1
  int64_t serve_rss_early = 0, serve_rss_late = 0;
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < 64; ++c) {
    clients.emplace_back([&, c] {
      auto stub = Stub(server->address());
      std::mt19937_64 r(c * 7919 + 1);
      while (!stop) {
        const size_t i = r() % pool.size();
        const int roll = static_cast<int>(r() % 10);
        const Mode mode = roll < 7 ? Mode::kComplete : roll < 9 ? Mode::kCancel : Mode::kDeadline;
        const int cancel_after =
            mode == Mode::kCancel ? 1 + static_cast<int>(r() % pool[i].max_tokens) : 0;
        const double deadline = mode == Mode::kDeadline ? 0.05 + 0.05 * (r() % 20) : 300;
        StreamResult res = Stream(stub.get(), pool[i], nullptr, cancel_after, deadline);
        // Refused at admission while the group is rebuilt: a client retries elsewhere.
        if (res.status.error_code() == grpc::StatusCode::UNAVAILABLE && res.ids.empty() &&
            res.status.error_message().find("server is not ready") != std::string::npos) {
          ++not_ready_retries;
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        outcomes.push_back({i, mode, std::move(res)});
      }
    });
  }
  // Halfway: kill -9 of rank 1. Meanwhile sample the RSS of every process.
  bool killed = false;
  while (SecondsSince(start) < duration_s) {
    const pid_t pids[3] = {server->pid(), WorkerPid(server->pid(), 0), WorkerPid(server->pid(), 1)};
    for (int p = 0; p < 3; ++p) {
      if (pids[p] > 0) max_rss[p] = std::max<int64_t>(max_rss[p], RssBytes(pids[p]));
    }
    serve_rss_late = RssBytes(pids[0]);
    if (serve_rss_early == 0 && SecondsSince(start) > 5) serve_rss_early = serve_rss_late;
    if (!killed && SecondsSince(start) > duration_s / 2 && pids[1] > 0 && pids[2] > 0) {
      kill(pids[2], SIGKILL);
      killed = true;
      std::cout << "killed worker rank 1 at " << SecondsSince(start) << " s\n";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(killed);

  // Each request of the pool alone, now that the server is idle.
  std::map<size_t, std::vector<int32_t>> alone;
  {
    auto stub = Stub(server->address());
    for (size_t i = 0; i < pool.size(); ++i) {
      StreamResult r = Stream(stub.get(), pool[i]);
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      alone[i] = r.ids;
    }
  }
  int completed = 0, cancelled = 0, timed_out = 0;
  for (const Outcome& o : outcomes) {
    const std::vector<int32_t>& want = alone[o.spec];
    const grpc::StatusCode code = o.r.status.error_code();
    if (code == grpc::StatusCode::OK) {
      ++completed;
      EXPECT_TRUE(o.r.final_seen);
      EXPECT_EQ(o.r.ids, want) << "request " << Key(pool[o.spec]) << " differs from its run alone";
      continue;
    }
    // Ended by this client (cancel, deadline): a prefix of the run alone. Nothing else.
    const bool ours = (o.mode == Mode::kCancel && code == grpc::StatusCode::CANCELLED) ||
                      (o.mode == Mode::kDeadline && code == grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_TRUE(ours) << "request " << Key(pool[o.spec]) << " lost: " << code << " "
                      << o.r.status.error_message();
    code == grpc::StatusCode::CANCELLED ? ++cancelled : ++timed_out;
    ASSERT_LE(o.r.ids.size(), want.size());
    EXPECT_TRUE(std::equal(o.r.ids.begin(), o.r.ids.end(), want.begin()))
        << "request " << Key(pool[o.spec]) << " sent tokens that are not its run's";
  }
  std::cout << outcomes.size() << " requests in " << duration_s << " s: " << completed
            << " completed, " << cancelled << " cancelled, " << timed_out
            << " past their deadline, " << not_ready_retries
            << " refused while not ready (retried); max RSS serve " << (max_rss[0] >> 20)
            << " MiB, rank 0 " << (max_rss[1] >> 20) << " MiB, rank 1 " << (max_rss[2] >> 20)
            << " MiB; serve " << (serve_rss_early >> 20) << " MiB at 5 s, "
            << (serve_rss_late >> 20) << " MiB at the end\n";
  EXPECT_GT(completed, 64);
  EXPECT_GT(cancelled, 0);
  // KV returns to zero; nothing left running or queued.
  v1::ServerInfo info = ServerInfo(server->address());
  for (int i = 0; i < 50 && (info.kv_tokens_in_use() != 0 || info.active_requests() != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    info = ServerInfo(server->address());
  }
  EXPECT_EQ(info.kv_tokens_in_use(), 0);
  EXPECT_EQ(info.active_requests(), 0);
  EXPECT_EQ(info.queued_requests(), 0);
  for (int p = 0; p < 3; ++p) {
    EXPECT_GT(max_rss[p], 0);
    EXPECT_LT(max_rss[p], kRssBoundBytes) << "process " << p << " RSS " << max_rss[p];
  }
  EXPECT_GT(serve_rss_early, 0);
  EXPECT_LT(serve_rss_late - serve_rss_early, kServeRssGrowthBytes)
      << "serve grew from " << serve_rss_early << " to " << serve_rss_late << " bytes";
  EXPECT_TRUE(server->running()) << server->log();
  EXPECT_NE(server->log().find("restarted worker rank 1"), std::string::npos);
}

}  // namespace
}  // namespace hipserve
