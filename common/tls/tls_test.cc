// TLS credentials against a real in-process gRPC server on loopback (the health service),
// with a throwaway PKI made at test time by tests/tls/make_test_certs.sh (openssl CLI).
#include "common/tls/tls.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/tls/reloadable_credentials.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace hipserve::tls {
namespace {

// Answers every Check with SERVING.
class HealthOk final : public grpc::health::v1::Health::CallbackService {
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest*,
                                  grpc::health::v1::HealthCheckResponse* resp) override {
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(absl::StrCat(::testing::TempDir(), "/tls_test_", getpid()));
    const std::string cmd =
        absl::StrCat(HIPSERVE_SOURCE_DIR, "/tests/tls/make_test_certs.sh ", *dir_);
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static std::string F(const std::string& name) { return absl::StrCat(*dir_, "/", name); }
  static std::string* dir_;

  // Starts a server with `creds` serving grpc.health.v1 on 127.0.0.1:<port>.
  void StartServer(std::shared_ptr<grpc::ServerCredentials> creds) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", creds, &port_);
    b.RegisterService(&health_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }
  // A health Check over `creds`, dialling `host`.
  grpc::Status Check(std::shared_ptr<grpc::ChannelCredentials> creds,
                     const std::string& host = "localhost") {
    auto stub = grpc::health::v1::Health::NewStub(
        grpc::CreateChannel(absl::StrCat(host, ":", port_), creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    return stub->Check(&ctx, req, &resp);
  }
  std::shared_ptr<grpc::ChannelCredentials> Client(const TlsFiles& f) {
    auto c = ChannelCredentials(f, "--tls_");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  HealthOk health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};
std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, LoadsMatchingFiles) {
  auto pem = LoadPem({F("server.pem"), F("server.key"), F("ca.pem")}, "--tls_");
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_NE(pem->cert.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_FALSE(pem->key.empty());
  EXPECT_FALSE(pem->ca.empty());
}

TEST_F(TlsTest, ErrorsNameTheFlag) {
  auto mismatch = LoadPem({F("server.pem"), F("client.key"), ""}, "--tls_");
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mismatch.status().message().find("--tls_key_file"), std::string::npos)
      << mismatch.status();
  EXPECT_NE(mismatch.status().message().find("is not the private key"), std::string::npos);

  auto missing = LoadPem({F("nope.pem"), F("server.key"), ""}, "--worker_tls_");
  EXPECT_NE(missing.status().message().find("--worker_tls_cert_file"), std::string::npos)
      << missing.status();

  auto half = LoadPem({F("server.pem"), "", ""}, "--tls_");
  EXPECT_NE(half.status().message().find("go together"), std::string::npos) << half.status();

  // A key file given as the certificate: not a certificate.
  auto not_cert = LoadPem({"", "", F("ca.key")}, "--tls_");
  EXPECT_NE(not_cert.status().message().find("--tls_ca_file"), std::string::npos);
  EXPECT_NE(not_cert.status().message().find("not a PEM X.509 certificate"), std::string::npos);

  auto no_ca = ServerCredentials({F("server.pem"), F("server.key"), ""},
                                 ClientCertPolicy::kRequireAndVerify, "--worker_tls_");
  EXPECT_NE(no_ca.status().message().find("--worker_tls_ca_file"), std::string::npos);
}

TEST_F(TlsTest, MutualTlsNeedsAllThreeFiles) {
  EXPECT_TRUE(CheckMutualTlsFiles({}, "--worker_tls_").ok());
  EXPECT_TRUE(CheckMutualTlsFiles({"a", "b", "c"}, "--worker_tls_").ok());
  absl::Status s = CheckMutualTlsFiles({"a", "b", ""}, "--worker_tls_");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("missing: --worker_tls_ca_file"), std::string::npos) << s;
}

TEST_F(TlsTest, NoFilesIsPlaintext) {
  EXPECT_FALSE(ServerTlsEnabled({}));
  EXPECT_FALSE(ClientTlsEnabled({}));
  EXPECT_TRUE(ClientTlsEnabled({"", "", "system"}));
  // No files: plaintext, whatever the policy (mutual TLS is optional).
  EXPECT_TRUE(ServerCredentials({}, ClientCertPolicy::kRequireAndVerify, "--worker_tls_").ok());
  EXPECT_FALSE(ServerCredentials({"", "", F("ca.pem")}, ClientCertPolicy::kNone, "--tls_").ok());
  auto creds = ServerCredentials({}, ClientCertPolicy::kNone, "--tls_");
  ASSERT_TRUE(creds.ok());
  StartServer(*creds);
  EXPECT_TRUE(Check(grpc::InsecureChannelCredentials()).ok());
  // A TLS client cannot talk to a plaintext server.
  EXPECT_FALSE(Check(Client({"", "", F("ca.pem")})).ok());
}

TEST_F(TlsTest, ServerTls) {
  auto creds =
      ServerCredentials({F("server.pem"), F("server.key"), ""}, ClientCertPolicy::kNone, "--tls_");
  ASSERT_TRUE(creds.ok()) << creds.status();
  StartServer(*creds);
  EXPECT_TRUE(Check(Client({"", "", F("ca.pem")})).ok());
  EXPECT_TRUE(Check(Client({"", "", F("ca.pem")}), "127.0.0.1").ok());  // IP SAN
  // Plaintext client: the handshake never completes.
  grpc::Status plain = Check(grpc::InsecureChannelCredentials());
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  // A client trusting another CA refuses the server's certificate.
  EXPECT_EQ(Check(Client({"", "", F("other_ca.pem")})).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTls) {
  auto creds = ServerCredentials({F("server.pem"), F("server.key"), F("ca.pem")},
                                 ClientCertPolicy::kRequireAndVerify, "--worker_tls_");
  ASSERT_TRUE(creds.ok()) << creds.status();
  StartServer(*creds);
  EXPECT_TRUE(Check(Client({F("client.pem"), F("client.key"), F("ca.pem")})).ok());
  // No client certificate, a certificate from another CA, or plaintext: refused.
  EXPECT_EQ(Check(Client({"", "", F("ca.pem")})).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(Client({F("other.pem"), F("other.key"), F("ca.pem")})).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Check(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// Certificate rotation: a server started with `server` (signed by ca) serves `other` (signed by
// other_ca) once its files are replaced and Reload ran; a bad file keeps the current one.
TEST_F(TlsTest, ReloadableServerCertificateRotates) {
  namespace fs = std::filesystem;
  const std::string cert = F("rotating.pem"), key = F("rotating.key");
  fs::copy_file(F("server.pem"), cert, fs::copy_options::overwrite_existing);
  fs::copy_file(F("server.key"), key, fs::copy_options::overwrite_existing);
  auto r = ReloadableServerCredentials::Create({cert, key, ""}, ClientCertPolicy::kNone, "--tls_");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*r)->tls());
  StartServer((*r)->credentials());
  auto trust_a = Client({"", "", F("ca.pem")});
  auto trust_b = Client({"", "", F("other_ca.pem")});
  EXPECT_TRUE(Check(trust_a).ok());
  EXPECT_FALSE(Check(trust_b).ok());

  // Replaced files change nothing until Reload.
  fs::copy_file(F("other.pem"), cert, fs::copy_options::overwrite_existing);
  fs::copy_file(F("other.key"), key, fs::copy_options::overwrite_existing);
  std::this_thread::sleep_for(std::chrono::seconds(kReloadLatencySeconds + 1));
  EXPECT_TRUE(Check(trust_a).ok());
  ASSERT_TRUE((*r)->Reload().ok());
  // New channels (new connections) get the new certificate within the watcher's interval.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < end &&
         !Check(Client({"", "", F("other_ca.pem")})).ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(Check(Client({"", "", F("other_ca.pem")})).ok());
  EXPECT_FALSE(Check(Client({"", "", F("ca.pem")})).ok());

  // A key that does not match the certificate: Reload fails naming the flag, `other` stays.
  fs::copy_file(F("server.pem"), cert, fs::copy_options::overwrite_existing);
  auto bad = (*r)->Reload();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
  EXPECT_NE(bad.message().find("--tls_"), std::string::npos) << bad;
  std::this_thread::sleep_for(std::chrono::seconds(kReloadLatencySeconds + 1));
  EXPECT_TRUE(Check(Client({"", "", F("other_ca.pem")})).ok());
}

// Mutual TLS through the reloadable credentials: the same policy as ServerCredentials.
TEST_F(TlsTest, ReloadableMutualTls) {
  auto r =
      ReloadableServerCredentials::Create({F("server.pem"), F("server.key"), F("ca.pem")},
                                          ClientCertPolicy::kRequireAndVerify, "--worker_tls_");
  ASSERT_TRUE(r.ok()) << r.status();
  StartServer((*r)->credentials());
  EXPECT_TRUE(Check(Client({F("client.pem"), F("client.key"), F("ca.pem")})).ok());
  EXPECT_FALSE(Check(Client({"", "", F("ca.pem")})).ok());
  EXPECT_FALSE(Check(Client({F("other.pem"), F("other.key"), F("ca.pem")})).ok());
  EXPECT_FALSE(Check(grpc::InsecureChannelCredentials()).ok());
  EXPECT_TRUE((*r)->Reload().ok());
  // Plaintext: nothing to reload.
  auto plain = ReloadableServerCredentials::Create({}, ClientCertPolicy::kNone, "--tls_");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->tls());
  EXPECT_TRUE((*plain)->Reload().ok());
  // The same errors as ServerCredentials.
  EXPECT_EQ(ReloadableServerCredentials::Create({F("server.pem"), "", ""}, ClientCertPolicy::kNone,
                                                "--tls_")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hipserve::tls
