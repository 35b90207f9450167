// Tensor parallelism end to end, real processes on loopback (CPU backend, Gloo):
//  * `hipserve serve --tp N`: greedy tokens identical for TP = 1, 2, 3 on builtin:tiny6 (6 KV
//    heads), dense and HiP, 32 steps; TP = 1 and 3 on SmolLM2-135M (3 KV heads) when its file
//    is present (HIPSERVE_DEFAULT_MODEL or the fetch-model cache).
//  * `hipserve coordinator` + two `hipserve worker` processes with their own listen addresses:
//    the same tokens; refusals naming the numbers (duplicate rank, other world size, other
//    model, rank outside the world, --tp not dividing the KV heads); kill -9 of a worker
//    mid-stream -> UNAVAILABLE within 5 s (--recovery_timeout_s=0), NOT_SERVING, the
//    restarted worker rejoins and the next request gives the same tokens; with recovery on, the
//    test restarts the killed worker and the stream in flight completes with the tokens of an
//    undisturbed run (seeded sampling).
// Every worker runs with HIPSERVE_CPU_THREADS=1 (several processes share 2 cores in CI).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

// Small enough that HiP prunes at these lengths (worker/hip_model_test.cc's config).
constexpr char kHipConfig[] =
    R"({"n_sink": 4, "n_window": 8, "block_q": 4, "chunk_sizes": [16, 4, 2],)"
    R"( "extend_min_tokens": 0, "stage_keep": [64, 16], "k": 8, "stride_q": [2, 2, 1],)"
    R"( "mask_refresh_interval": [6, 3, 2],)"
    R"( "layer_overrides": [{"layers": [0], "k": 12, "pruning_positions": "chunk_indexed"}]})";

constexpr char kPrompt[] =
    "Tensor parallel ranks must agree on every token they produce, step after step, "
    "whatever their number.";

class ThreadsEnv : public ::testing::Environment {
 public:
  void SetUp() override { setenv("HIPSERVE_CPU_THREADS", "1", 1); }
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ThreadsEnv);

// A child process (`hipserve <args>`) with its output in a log file; SIGKILLed if still
// running when destroyed.
class Proc {
 public:
  explicit Proc(const std::vector<std::string>& args) {
    char tmpl[] = "/tmp/hipserve_tp_XXXXXX";
    dir_ = mkdtemp(tmpl);
    log_ = dir_ + "/log";
    std::vector<std::string> argv_s = {HIPSERVE_BINARY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      FILE* f = freopen(log_.c_str(), "w", stderr);
      (void)f;
      dup2(fileno(stderr), fileno(stdout));
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~Proc() {
    Signal(SIGTERM);
    Wait(10);
    Signal(SIGKILL);
    Wait(5);
    std::filesystem::remove_all(dir_);
  }
  const std::string& dir() const { return dir_; }
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  // Exit status as from waitpid, or -1 while still running after timeout_s.
  int Wait(double timeout_s) {
    if (pid_ <= 0) return status_;
    const auto end = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
    do {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        status_ = st;
        return st;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (Clock::now() < end);
    return -1;
  }
  std::string log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  std::string dir_, log_;
};

int ReadPortFile(const std::string& path, double timeout_s) {
  const auto end = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
  while (Clock::now() < end) {
    std::ifstream f(path);
    int port = 0;
    if (f >> port && port > 0) return port;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
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

struct Generated {
  grpc::Status status;
  std::vector<int32_t> ids;
  Clock::time_point first_token, end;
};

// Greedy generation of `max_tokens` (EOS ignored). `on_first` runs once the first tokens
// arrived (the stream is then mid-flight).
Generated Greedy(const std::string& address, const std::string& prompt, int max_tokens,
                 const std::function<void()>& on_first = nullptr) {
  auto stub =
      v1::Generation::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  v1::GenerateRequest req;
  req.set_text(prompt);
  req.mutable_sampling()->set_max_tokens(max_tokens);
  req.mutable_sampling()->set_temperature(0);
  req.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  auto reader = stub->Generate(&ctx, req);
  Generated g;
  v1::GenerateResponse msg;
  bool first = true;
  while (reader->Read(&msg)) {
    g.ids.insert(g.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    if (first && !g.ids.empty()) {
      first = false;
      g.first_token = Clock::now();
      if (on_first) on_first();
    }
  }
  g.status = reader->Finish();
  g.end = Clock::now();
  return g;
}

// `hipserve serve --tp=tp` with `extra` flags: the greedy tokens of kPrompt.
std::vector<int32_t> ServeTokens(int tp, const std::vector<std::string>& extra, int steps = 32) {
  std::vector<std::string> args = {"--backend=cpu", "--tp=" + std::to_string(tp)};
  args.insert(args.end(), extra.begin(), extra.end());
  testing::ServerProcess server(args);
  EXPECT_TRUE(server.WaitForPort(60)) << server.log();
  absl::Status ready = cli::WaitForReady(server.address(), 120);
  EXPECT_TRUE(ready.ok()) << ready << "\n" << server.log();
  if (!ready.ok()) return {};
  Generated g = Greedy(server.address(), kPrompt, steps);
  EXPECT_TRUE(g.status.ok()) << g.status.error_message() << "\n" << server.log();
  EXPECT_EQ(static_cast<int>(g.ids.size()), steps) << server.log();
  return g.ids;
}

class TpServeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TpServeTest, BuiltinSixKvHeadsSameTokensAtTp1Tp2Tp3) {
  std::vector<std::string> flags = {"--model=builtin:tiny6", "--attention=" + GetParam()};
  if (GetParam() == "hip") flags.push_back(std::string("--hip_config=") + kHipConfig);
  const std::vector<int32_t> tp1 = ServeTokens(1, flags);
  ASSERT_EQ(tp1.size(), 32u);
  EXPECT_EQ(ServeTokens(2, flags), tp1);
  EXPECT_EQ(ServeTokens(3, flags), tp1);
}

std::string SmolLmPath() {
  if (const char* p = std::getenv("HIPSERVE_DEFAULT_MODEL")) return p;
  const char* cache = std::getenv("HIPSERVE_MODEL_CACHE");
  const char* home = std::getenv("HOME");
  return std::string(cache ? cache : std::string(home ? home : "") + "/.cache/hipserve/models") +
         "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

TEST_P(TpServeTest, SmolLm2SameTokensAtTp1Tp3) {
  const std::string path = SmolLmPath();
  if (!std::filesystem::exists(path)) {
    GTEST_SKIP() << "no SmolLM2 at " << path << " (scripts/fetch-model.sh)";
  }
  std::vector<std::string> flags = {"--model=" + path, "--attention=" + GetParam()};
  if (GetParam() == "hip") flags.push_back(std::string("--hip_config=") + kHipConfig);
  const std::vector<int32_t> tp1 = ServeTokens(1, flags);
  ASSERT_EQ(tp1.size(), 32u);
  EXPECT_EQ(ServeTokens(3, flags), tp1);
}

INSTANTIATE_TEST_SUITE_P(Attention, TpServeTest, ::testing::Values("dense", "hip"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(TpServeRefusalTest, TpNotDividingTheKvHeadsNamesBoth) {
  testing::ServerProcess server({"--backend=cpu", "--tp=4", "--model=builtin:tiny6"});
  ASSERT_TRUE(server.WaitForPort(60)) << server.log();
  // serve exits by itself once the configuration failed.
  const auto end = Clock::now() + std::chrono::seconds(60);
  while (server.running() && Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(server.running());
  EXPECT_NE(server.log().find("tensor-parallel degree 4 does not divide the 6 KV heads"),
            std::string::npos)
      << server.log();
}

// --- Coordinator and workers as separate processes ----------------------------------------

class MultiProcessTest : public ::testing::Test {
 protected:
  // Starts the coordinator (port files in `dir`). recovery_timeout_s = 0: a lost worker ends
  // the streams in flight with UNAVAILABLE.
  void StartCoordinator(double recovery_timeout_s = 0) {
    char tmpl[] = "/tmp/hipserve_tpc_XXXXXX";
    dir_ = mkdtemp(tmpl);
    coordinator_ = std::make_unique<Proc>(std::vector<std::string>{
        "coordinator", "--host=127.0.0.1", "--port=0", "--port_file=" + dir_ + "/port",
        "--control_host=127.0.0.1", "--control_port=0",
        "--control_port_file=" + dir_ + "/control_port", "--world_size=2", "--model=builtin:tiny6",
        "--step_timeout_s=30", "--recovery_timeout_s=" + std::to_string(recovery_timeout_s)});
    const int port = ReadPortFile(dir_ + "/port", 30);
    const int control = ReadPortFile(dir_ + "/control_port", 30);
    ASSERT_GT(port, 0) << coordinator_->log();
    ASSERT_GT(control, 0) << coordinator_->log();
    address_ = "127.0.0.1:" + std::to_string(port);
    control_ = "127.0.0.1:" + std::to_string(control);
  }
  std::unique_ptr<Proc> StartWorker(int rank, std::vector<std::string> extra = {},
                                    int collective_timeout_s = 20) {
    std::vector<std::string> args = {
        "worker",
        "--coordinator=" + control_,
        "--rank=" + std::to_string(rank),
        "--listen=127.0.0.1:0",
        "--backend=cpu",
        "--collective_timeout_s=" + std::to_string(collective_timeout_s),
        "--register_timeout_s=30"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Proc>(args);
  }
  void TearDown() override {
    if (HasFailure()) {
      if (coordinator_) std::cerr << "coordinator log:\n" << coordinator_->log();
      for (size_t r = 0; r < workers_.size(); ++r) {
        if (workers_[r]) std::cerr << "worker " << r << " log:\n" << workers_[r]->log();
      }
    }
    workers_.clear();
    coordinator_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string dir_, address_, control_;
  std::unique_ptr<Proc> coordinator_;
  std::vector<std::unique_ptr<Proc>> workers_;
};

TEST_F(MultiProcessTest, SameTokensRefusalsAndRecoveryFromAKilledWorker) {
  StartCoordinator();
  workers_.push_back(StartWorker(0, {"--world_size=2", "--model=builtin:tiny6"}));
  workers_.push_back(StartWorker(1));
  absl::Status ready = cli::WaitForReady(address_, 60);
  ASSERT_TRUE(ready.ok()) << ready;

  // Same tokens as one process with one rank.
  const std::vector<int32_t> tp1 = ServeTokens(1, {"--model=builtin:tiny6"});
  ASSERT_EQ(tp1.size(), 32u);
  Generated before = Greedy(address_, kPrompt, 32);
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();
  EXPECT_EQ(before.ids, tp1);

  // Refusals, each naming the numbers; the serving group is untouched.
  struct Refusal {
    int rank;
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<Refusal> refusals = {
      {1, {}, "duplicate rank 1: a live worker at"},
      {0, {"--world_size=3"}, "expects world size 3 but this coordinator runs world size 2"},
      {0,
       {"--model=builtin:tiny"},
       "expects model 'builtin:tiny' but this coordinator serves 'builtin:tiny6'"},
      {2, {}, "worker rank 2 is outside this coordinator's world of 2"},
  };
  for (const Refusal& r : refusals) {
    auto p = StartWorker(r.rank, r.flags);
    const int st = p->Wait(30);
    ASSERT_NE(st, -1) << "refused worker still running:\n" << p->log();
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << p->log();
    EXPECT_NE(p->log().find(r.message), std::string::npos) << p->log();
  }
  EXPECT_EQ(Readiness(address_), HealthCheckResponse::SERVING);

  // kill -9 of rank 1 while a long stream runs.
  Clock::time_point killed;
  Generated cut = Greedy(address_, kPrompt, 3500, [&] {
    workers_[1]->Signal(SIGKILL);
    killed = Clock::now();
  });
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.status.error_message();
  EXPECT_LT(cut.ids.size(), 3500u);
  const double took = std::chrono::duration<double>(cut.end - killed).count();
  EXPECT_LT(took, 5.0) << "stream ended " << took << " s after the kill";
  std::cout << "stream ended (" << cut.status.error_message() << ") after " << cut.ids.size()
            << " tokens, " << took << " s after the kill\n";
  workers_[1]->Wait(5);
  // Readiness goes NOT_SERVING (the configuration thread checks twice a second).
  HealthCheckResponse::ServingStatus st = HealthCheckResponse::SERVING;
  for (int i = 0; i < 50 && st == HealthCheckResponse::SERVING; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    st = Readiness(address_);
  }
  EXPECT_EQ(st, HealthCheckResponse::NOT_SERVING);

  // The restarted worker rejoins; the next request gives the same tokens as before.
  workers_[1] = StartWorker(1);
  const auto restarted = Clock::now();
  ready = cli::WaitForReady(address_, 60);
  ASSERT_TRUE(ready.ok()) << ready;
  std::cout << "serving again " << std::chrono::duration<double>(Clock::now() - restarted).count()
            << " s after the restart\n";
  Generated after = Greedy(address_, kPrompt, 32);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.ids, before.ids);
}

// Recovery on: kill -9 of a worker mid-stream, the test restarts it; the stream in flight waits,
// is re-prefilled on the rebuilt group and ends with the tokens of an undisturbed run.
TEST_F(MultiProcessTest, KilledWorkerRestartedByTheTestAndTheStreamContinues) {
  StartCoordinator(/*recovery_timeout_s=*/60);
  workers_.push_back(StartWorker(0));
  workers_.push_back(StartWorker(1));
  absl::Status ready = cli::WaitForReady(address_, 60);
  ASSERT_TRUE(ready.ok()) << ready;
  auto stub =
      v1::Generation::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  v1::GenerateRequest req;
  req.set_text(kPrompt);
  req.mutable_sampling()->set_max_tokens(400);
  req.mutable_sampling()->set_temperature(0.9f);
  req.mutable_sampling()->set_seed(77);
  req.mutable_sampling()->set_ignore_eos(true);
  // `on_tokens(n)` runs with the tokens received so far.
  auto run = [&](const std::function<void(size_t)>& on_tokens) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(180));
    auto reader = stub->Generate(&ctx, req);
    Generated g;
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      g.ids.insert(g.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
      if (on_tokens) on_tokens(g.ids.size());
    }
    g.status = reader->Finish();
    g.end = Clock::now();
    return g;
  };
  Generated undisturbed = run(nullptr);
  ASSERT_TRUE(undisturbed.status.ok()) << undisturbed.status.error_message();
  ASSERT_EQ(undisturbed.ids.size(), 400u);

  Clock::time_point killed;
  bool restarted = false;
  Generated survived = run([&](size_t n) {
    if (restarted || n < 30) return;
    workers_[1]->Signal(SIGKILL);
    killed = Clock::now();
    workers_[1]->Wait(5);
    workers_[1] = StartWorker(1);  // the restart (a pod controller's job)
    restarted = true;
  });
  ASSERT_TRUE(restarted);
  EXPECT_TRUE(survived.status.ok()) << survived.status.error_message();
  EXPECT_EQ(survived.ids, undisturbed.ids);
  std::cout << "stream completed " << std::chrono::duration<double>(survived.end - killed).count()
            << " s after the kill\n";
  EXPECT_NE(coordinator_->log().find("re-prefilling their history"), std::string::npos);
  EXPECT_EQ(Readiness(address_), HealthCheckResponse::SERVING);
}

// A stalled worker (SIGSTOP): its peer's collective times out (2 s here), the stream ends
// UNAVAILABLE without waiting for the step watchdog, and once the worker resumes the group is
// rebuilt and gives the same tokens.
TEST_F(MultiProcessTest, StalledWorkerFailsTheStreamAfterTheCollectiveTimeout) {
  StartCoordinator();
  workers_.push_back(StartWorker(0, {}, /*collective_timeout_s=*/2));
  workers_.push_back(StartWorker(1, {}, /*collective_timeout_s=*/2));
  absl::Status ready = cli::WaitForReady(address_, 60);
  ASSERT_TRUE(ready.ok()) << ready;
  Generated before = Greedy(address_, kPrompt, 32);
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();

  Clock::time_point stopped;
  Generated cut = Greedy(address_, kPrompt, 3500, [&] {
    workers_[1]->Signal(SIGSTOP);
    stopped = Clock::now();
  });
  const double took = std::chrono::duration<double>(cut.end - stopped).count();
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::UNAVAILABLE) << cut.status.error_message();
  EXPECT_NE(cut.status.error_message().find("no answer within 2s"), std::string::npos)
      << cut.status.error_message();
  EXPECT_LT(took, 10.0) << "stream ended " << took << " s after the stall";
  std::cout << "stream ended (" << cut.status.error_message() << ") " << took
            << " s after the stall\n";
  workers_[1]->Signal(SIGCONT);
  ready = cli::WaitForReady(address_, 60);
  ASSERT_TRUE(ready.ok()) << ready;
  Generated after = Greedy(address_, kPrompt, 32);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.ids, before.ids);
}

}  // namespace
}  // namespace hipserve
