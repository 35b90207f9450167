// Production hardening with real processes on loopback (issue 14): TLS on the public gRPC and
// HTTP ports, bearer tokens (missing, wrong, reloaded on SIGHUP, also on health with
// --auth_health_and_reflection), mutual TLS between coordinator and workers, and per-client
// limits. The certificates come from tests/tls/make_test_certs.sh (openssl CLI) at test time.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/tls/tls.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hipserve/v1/generate.grpc.pb.h"
#include "hipserve/v1/worker.grpc.pb.h"

namespace hipserve {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// `hipserve <args>` as a child process, output in a log file; SIGKILLed if still running when
// destroyed.
class Proc {
 public:
  explicit Proc(const std::vector<std::string>& args, const std::string& log) : log_(log) {
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
    if (Wait(10) == -1) {
      Signal(SIGKILL);
      Wait(5);
    }
  }
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
  std::string log_;
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

// A port nothing listens on right now (bound to 0, read, closed).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::shared_ptr<grpc::ChannelCredentials> Creds(const tls::TlsFiles& f) {
  auto c = tls::ChannelCredentials(f, "--tls_");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : grpc::InsecureChannelCredentials();
}

grpc::Status Health(const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds,
                    const std::string& authorization, HealthCheckResponse* resp) {
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(address, creds));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  HealthCheckRequest req;
  req.set_service("hipserve.v1.Generation");
  return stub->Check(&ctx, req, resp);
}

bool WaitServing(const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds,
                 const std::string& authorization, double timeout_s) {
  const auto end = Clock::now() + std::chrono::milliseconds(int64_t(timeout_s * 1000));
  while (Clock::now() < end) {
    HealthCheckResponse resp;
    if (Health(address, creds, authorization, &resp).ok() &&
        resp.status() == HealthCheckResponse::SERVING) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

grpc::Status Once(const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds,
                  const std::string& authorization, int max_tokens = 4, double deadline_s = 30) {
  auto stub = v1::Generation::NewStub(grpc::CreateChannel(address, creds));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(int64_t(deadline_s * 1000)));
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  v1::GenerateRequest req;
  req.set_text("hello");
  req.mutable_sampling()->set_max_tokens(max_tokens);
  req.mutable_sampling()->set_ignore_eos(true);
  v1::GenerateOnceResponse resp;
  return stub->GenerateOnce(&ctx, req, &resp);
}

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hipserve_tls_XXXXXX";
    dir_ = mkdtemp(tmpl);
    const std::string cmd =
        std::string(HIPSERVE_SOURCE_DIR) + "/tests/tls/make_test_certs.sh " + dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override {
    if (HasFailure()) {
      for (auto& [name, p] : procs_) std::cerr << name << " log:\n" << p->log() << "\n";
    }
    procs_.clear();
    std::filesystem::remove_all(dir_);
  }
  std::string F(const std::string& name) const { return dir_ + "/" + name; }
  void WriteTokens(const std::string& text) {
    const std::string tmp = F("tokens.tmp");
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, F("tokens"));
  }
  Proc* Start(const std::string& name, const std::vector<std::string>& args) {
    procs_.emplace_back(name, std::make_unique<Proc>(args, F(name + ".log")));
    return procs_.back().second.get();
  }
  // `hipserve serve` with the tiny model on 127.0.0.1; returns its public port (0 on failure).
  int Serve(std::vector<std::string> extra, Proc** proc = nullptr) {
    std::vector<std::string> args = {"serve", "--model=builtin:tiny", "--host=127.0.0.1",
                                     "--port=0", "--port_file=" + F("port")};
    args.insert(args.end(), extra.begin(), extra.end());
    Proc* p = Start("serve", args);
    if (proc != nullptr) *proc = p;
    return ReadPortFile(F("port"), 60);
  }

  std::string dir_;
  std::vector<std::pair<std::string, std::unique_ptr<Proc>>> procs_;
};

TEST_F(HardeningTest, TlsPortsTokensHealthAuthAndSighupReload) {
  WriteTokens("# test tokens\nsecret-a alice\nsecret-b\n");
  Proc* serve = nullptr;
  const int port =
      Serve({"--tls_cert_file=" + F("server.pem"), "--tls_key_file=" + F("server.key"),
             "--auth_tokens_file=" + F("tokens"), "--auth_health_and_reflection", "--http_port=0",
             "--http_host=127.0.0.1", "--http_port_file=" + F("http_port")},
            &serve);
  ASSERT_GT(port, 0);
  // The certificate names localhost and 127.0.0.1.
  const std::string address = "localhost:" + std::to_string(port);
  auto tls = Creds({"", "", F("ca.pem")});
  ASSERT_TRUE(WaitServing(address, tls, "Bearer secret-a", 60));
  EXPECT_NE(serve->log().find("public gRPC API: TLS"), std::string::npos);

  // A TLS client with a token succeeds; a plaintext client never gets through the handshake.
  grpc::Status ok = Once(address, tls, "Bearer secret-b");
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(Once(address, grpc::InsecureChannelCredentials(), "Bearer secret-a", 4, 5).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A client that trusts another CA refuses the server.
  EXPECT_EQ(Once(address, Creds({"", "", F("other_ca.pem")}), "Bearer secret-a", 4, 5).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Once(address, tls, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Once(address, tls, "Bearer wrong").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // --auth_health_and_reflection: health needs a token too.
  HealthCheckResponse resp;
  EXPECT_EQ(Health(address, tls, "", &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Health(address, tls, "Bearer wrong", &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Health(address, tls, "Bearer secret-b", &resp).ok());

  // HTTPS on the HTTP port, with the same certificate.
  const int http_port = ReadPortFile(F("http_port"), 10);
  ASSERT_GT(http_port, 0);
  {
    httplib::SSLClient https("localhost", http_port);
    https.set_ca_cert_path(F("ca.pem").c_str());
    https.enable_server_certificate_verification(true);
    auto health = https.Get("/health");
    ASSERT_TRUE(health) << httplib::to_string(health.error());
    EXPECT_EQ(health->status, 401);  // health closed too
    auto models = https.Get("/v1/models", {{"Authorization", "Bearer secret-a"}});
    ASSERT_TRUE(models);
    EXPECT_EQ(models->status, 200) << models->body;
    EXPECT_NE(models->body.find("builtin"), std::string::npos);
    httplib::Client plain("127.0.0.1", http_port);
    plain.set_read_timeout(5, 0);
    auto refused = plain.Get("/health");
    EXPECT_TRUE(!refused || refused->status != 200);
  }

  // SIGHUP reloads the tokens at once; a bad file keeps the previous ones.
  WriteTokens("secret-c carol\n");
  serve->Signal(SIGHUP);
  const auto end = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < end && !Once(address, tls, "Bearer secret-c").ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(Once(address, tls, "Bearer secret-c").ok());
  EXPECT_EQ(Once(address, tls, "Bearer secret-a").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  WriteTokens("# nothing left\n");
  serve->Signal(SIGHUP);
  const auto logged = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < logged && serve->log().find("token reload failed") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(serve->log().find("token reload failed, the previous tokens stay"), std::string::npos);
  EXPECT_TRUE(Once(address, tls, "Bearer secret-c").ok());
  // SIGTERM still drains and exits 0 (SIGHUP did not end the process).
  serve->Signal(SIGTERM);
  const int status = serve->Wait(30);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Certificate rotation without a restart: the public port starts with cert A (signed by ca),
// the files are replaced by cert B (signed by other_ca), SIGHUP: a client that trusts only B's
// CA connects, one that trusts only A's no longer does, on the gRPC and the HTTPS port; a bad
// file keeps B (logged).
TEST_F(HardeningTest, TlsCertificateRotatesOnSighup) {
  namespace fs = std::filesystem;
  const std::string cert = F("public.pem"), key = F("public.key");
  fs::copy_file(F("server.pem"), cert);
  fs::copy_file(F("server.key"), key);
  Proc* serve = nullptr;
  const int port = Serve({"--tls_cert_file=" + cert, "--tls_key_file=" + key, "--http_port=0",
                          "--http_host=127.0.0.1", "--http_port_file=" + F("http_port")},
                         &serve);
  ASSERT_GT(port, 0);
  const int http_port = ReadPortFile(F("http_port"), 10);
  ASSERT_GT(http_port, 0);
  // An HTTPS GET /health trusting only `ca_file`: true when the handshake verifies.
  auto https_ok = [&](const std::string& ca_file) {
    httplib::SSLClient https("localhost", http_port);
    https.set_ca_cert_path(ca_file.c_str());
    https.enable_server_certificate_verification(true);
    https.set_connection_timeout(5, 0);
    auto r = https.Get("/health");
    return r && r->status == 200;
  };
  EXPECT_TRUE(https_ok(F("ca.pem")));
  EXPECT_FALSE(https_ok(F("other_ca.pem")));
  const std::string address = "localhost:" + std::to_string(port);
  ASSERT_TRUE(WaitServing(address, Creds({"", "", F("ca.pem")}), "", 60));
  EXPECT_TRUE(Once(address, Creds({"", "", F("ca.pem")}), "").ok());
  EXPECT_EQ(Once(address, Creds({"", "", F("other_ca.pem")}), "", 4, 5).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // Replace both files (each by a rename, as a rotation tool would), then SIGHUP.
  fs::copy_file(F("other.pem"), cert + ".new");
  fs::copy_file(F("other.key"), key + ".new");
  fs::rename(key + ".new", key);
  fs::rename(cert + ".new", cert);
  serve->Signal(SIGHUP);
  const auto end = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < end && !Once(address, Creds({"", "", F("other_ca.pem")}), "", 4, 5).ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  grpc::Status b = Once(address, Creds({"", "", F("other_ca.pem")}), "");
  EXPECT_TRUE(b.ok()) << b.error_message();
  EXPECT_EQ(Once(address, Creds({"", "", F("ca.pem")}), "", 4, 5).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(serve->log().find("TLS certificates reloaded"), std::string::npos) << serve->log();
  EXPECT_TRUE(https_ok(F("other_ca.pem")));
  EXPECT_FALSE(https_ok(F("ca.pem")));

  // A key that does not match the certificate: B stays.
  fs::copy_file(F("server.key"), key + ".new");
  fs::rename(key + ".new", key);
  serve->Signal(SIGHUP);
  const auto logged = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < logged &&
         serve->log().find("TLS certificate reload failed") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(serve->log().find("TLS certificate reload failed, the previous certificate stays"),
            std::string::npos)
      << serve->log();
  std::this_thread::sleep_for(std::chrono::seconds(2));  // the watcher's interval
  EXPECT_TRUE(Once(address, Creds({"", "", F("other_ca.pem")}), "").ok());
  EXPECT_TRUE(https_ok(F("other_ca.pem")));
  serve->Signal(SIGTERM);
  const int status = serve->Wait(30);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(HardeningTest, TlsWithoutAuthProcessorNeedsTokensAndTls) {
  // --auth_health_and_reflection without TLS would silently leave health open: refused.
  WriteTokens("secret\n");
  Proc* serve =
      Start("serve", {"serve", "--model=builtin:tiny", "--port=0",
                      "--auth_tokens_file=" + F("tokens"), "--auth_health_and_reflection"});
  const int status = serve->Wait(30);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status;
  EXPECT_NE(serve->log().find("--auth_health_and_reflection needs"), std::string::npos)
      << serve->log();
  // A key that does not belong to the certificate names the flag.
  Proc* bad =
      Start("bad", {"serve", "--model=builtin:tiny", "--port=0",
                    "--tls_cert_file=" + F("server.pem"), "--tls_key_file=" + F("client.key")});
  EXPECT_NE(bad->Wait(30), -1);
  EXPECT_NE(bad->log().find("--tls_key_file="), std::string::npos) << bad->log();
}

TEST_F(HardeningTest, MutualTlsBetweenCoordinatorAndWorkers) {
  Start("coordinator",
        {"coordinator", "--model=builtin:tiny", "--host=127.0.0.1", "--port=0",
         "--port_file=" + F("port"), "--control_host=127.0.0.1", "--control_port=0",
         "--control_port_file=" + F("control_port"), "--world_size=1",
         "--worker_tls_cert_file=" + F("server.pem"), "--worker_tls_key_file=" + F("server.key"),
         "--worker_tls_ca_file=" + F("ca.pem")});
  const int port = ReadPortFile(F("port"), 30);
  const int control = ReadPortFile(F("control_port"), 30);
  ASSERT_GT(port, 0);
  ASSERT_GT(control, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  const std::string coordinator = "127.0.0.1:" + std::to_string(control);
  auto worker = [&](const std::string& name, std::vector<std::string> tls, int listen_port) {
    std::vector<std::string> args = {
        "worker",        "--coordinator=" + coordinator,
        "--rank=0",      "--listen=127.0.0.1:" + std::to_string(listen_port),
        "--backend=cpu", "--register_timeout_s=3"};
    args.insert(args.end(), tls.begin(), tls.end());
    return Start(name, args);
  };
  // Strangers first: a worker with a certificate from another CA, and a plaintext worker, are
  // refused at the handshake and give up registering.
  Proc* stranger =
      worker("stranger",
             {"--worker_tls_cert_file=" + F("other.pem"), "--worker_tls_key_file=" + F("other.key"),
              "--worker_tls_ca_file=" + F("ca.pem")},
             0);
  Proc* plaintext = worker("plaintext", {}, 0);
  for (Proc* p : {stranger, plaintext}) {
    const int status = p->Wait(30);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status << "\n" << p->log();
    EXPECT_NE(p->log().find("could not register with coordinator"), std::string::npos) << p->log();
  }
  HealthCheckResponse resp;
  EXPECT_TRUE(Health(address, grpc::InsecureChannelCredentials(), "", &resp).ok());
  EXPECT_EQ(resp.status(), HealthCheckResponse::NOT_SERVING);

  // The right certificate: registers, is configured over mutual TLS and serves.
  const int worker_port = FreePort();
  worker("worker",
         {"--worker_tls_cert_file=" + F("client.pem"), "--worker_tls_key_file=" + F("client.key"),
          "--worker_tls_ca_file=" + F("ca.pem")},
         worker_port);
  ASSERT_TRUE(WaitServing(address, grpc::InsecureChannelCredentials(), "", 60));
  grpc::Status ok = Once(address, grpc::InsecureChannelCredentials(), "");
  EXPECT_TRUE(ok.ok()) << ok.error_message();

  // The worker's own server admits only clients with a certificate from the CA.
  auto stats = [&](std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = v1::control::Worker::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(worker_port), creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::control::StatsResponse out;
    return stub->Stats(&ctx, v1::control::StatsRequest(), &out);
  };
  EXPECT_TRUE(stats(Creds({F("server.pem"), F("server.key"), F("ca.pem")})).ok());
  EXPECT_EQ(stats(Creds({"", "", F("ca.pem")})).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(stats(Creds({F("other.pem"), F("other.key"), F("ca.pem")})).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(stats(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// --max_concurrent_requests_per_client / --max_queued_tokens_per_client, keyed by the token's
// client name; a lease comes back however the request ends (finish, cancel, deadline, error).
TEST_F(HardeningTest, PerClientLimits) {
  WriteTokens("a1 alice\na2 alice\nb1 bob\n");
  const int port =
      Serve({"--auth_tokens_file=" + F("tokens"), "--max_concurrent_requests_per_client=1",
             "--max_queued_tokens_per_client=3000"});
  ASSERT_GT(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto plain = grpc::InsecureChannelCredentials();
  ASSERT_TRUE(WaitServing(address, plain, "", 60));
  auto stub = v1::Generation::NewStub(grpc::CreateChannel(address, plain));

  // A long stream of alice's, in flight.
  auto long_stream = [&](grpc::ClientContext* ctx, const std::string& token) {
    ctx->AddMetadata("authorization", "Bearer " + token);
    v1::GenerateRequest req;
    req.set_text("hello");
    req.mutable_sampling()->set_max_tokens(2900);
    req.mutable_sampling()->set_ignore_eos(true);
    auto reader = stub->Generate(ctx, req);
    v1::GenerateResponse msg;
    EXPECT_TRUE(reader->Read(&msg));  // it runs
    return reader;
  };
  {
    grpc::ClientContext ctx;
    auto reader = long_stream(&ctx, "a1");
    // alice again (another of her tokens): over her limit of 1, naming the numbers.
    grpc::Status busy = Once(address, plain, "Bearer a2");
    EXPECT_EQ(busy.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(busy.error_message().find("client 'alice' has 1 requests in flight"),
              std::string::npos)
        << busy.error_message();
    EXPECT_NE(busy.error_message().find("--max_concurrent_requests_per_client=1"),
              std::string::npos);
    // bob is another client.
    grpc::Status bob = Once(address, plain, "Bearer b1");
    EXPECT_TRUE(bob.ok()) << bob.error_message();
    ctx.TryCancel();  // the client cancels: the lease comes back
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  auto ok_soon = [&](const std::string& token) {
    grpc::Status s;
    for (int i = 0; i < 100; ++i) {
      s = Once(address, plain, "Bearer " + token);
      if (s.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return s;
  };
  grpc::Status after_cancel = ok_soon("a1");
  EXPECT_TRUE(after_cancel.ok()) << after_cancel.error_message();
  // A deadline that expires mid-stream releases too.
  EXPECT_EQ(Once(address, plain, "Bearer a1", 2900, 0.2).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  grpc::Status after_deadline = ok_soon("a2");
  EXPECT_TRUE(after_deadline.ok()) << after_deadline.error_message();
  // A request refused by validation holds nothing.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer a1");
    v1::GenerateRequest req;
    req.mutable_token_ids()->add_ids(99999);
    v1::GenerateOnceResponse resp;
    EXPECT_EQ(stub->GenerateOnce(&ctx, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_TRUE(Once(address, plain, "Bearer a1").ok());
  // The token limit: prompt + max_tokens past 3000 for one request alone.
  grpc::Status big = Once(address, plain, "Bearer b1", 3500);
  EXPECT_EQ(big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(big.error_message().find("--max_queued_tokens_per_client=3000"), std::string::npos)
      << big.error_message();
  EXPECT_NE(big.error_message().find("this request alone exceeds it"), std::string::npos);
}

}  // namespace
}  // namespace hipserve
