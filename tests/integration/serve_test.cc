// End-to-end: `hipserve serve` as a real process, driven over gRPC.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "coordinator/cli/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hipserve/v1/generate.grpc.pb.h"
#include "tests/integration/server_process.h"

namespace hipserve {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::ServerProcess(
        {"--model=builtin:tiny", "--max_batch=8", "--default_max_tokens=16"});
    ASSERT_TRUE(server_->WaitForPort(60)) << server_->log();
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    // Wait for readiness through the standard health service.
    auto health = grpc::health::v1::Health::NewStub(channel_);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool serving = false;
    while (std::chrono::steady_clock::now() < end && !serving) {
      grpc::ClientContext ctx;
      HealthCheckRequest req;
      req.set_service("hipserve.v1.Generation");
      HealthCheckResponse resp;
      serving =
          health->Check(&ctx, req, &resp).ok() && resp.status() == HealthCheckResponse::SERVING;
      if (!serving) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(serving) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "server log:\n" << server_->log();
  }

  std::unique_ptr<v1::Generation::Stub> Stub() { return v1::Generation::NewStub(channel_); }

  struct Result {
    grpc::Status status;
    std::vector<int32_t> ids;
    std::string text;
    int chunks = 0;
    bool has_final = false;
    v1::GenerateResponse last;
  };

  Result Generate(const v1::GenerateRequest& req) {
    auto stub = Stub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = stub->Generate(&ctx, req);
    Result r;
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      ++r.chunks;
      EXPECT_FALSE(r.has_final) << "message after the final one";
      r.ids.insert(r.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
      r.text += msg.text();
      if (msg.has_final()) r.has_final = true;
      r.last = msg;
    }
    r.status = reader->Finish();
    return r;
  }

  static v1::GenerateRequest TextRequest(const std::string& text, int max_tokens, float temperature,
                                         uint64_t seed) {
    v1::GenerateRequest req;
    req.set_text(text);
    req.mutable_sampling()->set_max_tokens(max_tokens);
    req.mutable_sampling()->set_temperature(temperature);
    req.mutable_sampling()->set_seed(seed);
    req.mutable_sampling()->set_ignore_eos(true);
    return req;
  }

  static testing::ServerProcess* server_;
  static std::shared_ptr<grpc::Channel> channel_;
};

testing::ServerProcess* ServeTest::server_ = nullptr;
std::shared_ptr<grpc::Channel> ServeTest::channel_;

TEST_F(ServeTest, LivenessAndReadinessAreServing) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const char* service : {"", "hipserve.v1.Generation"}) {
    grpc::ClientContext ctx;
    HealthCheckRequest req;
    req.set_service(service);
    HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok()) << service;
    EXPECT_EQ(resp.status(), HealthCheckResponse::SERVING) << service;
  }
}

TEST_F(ServeTest, StreamedTokensAreDeterministicForASeed) {
  const v1::GenerateRequest req = TextRequest("Once upon a time", 12, 1.0f, 4242);
  Result a = Generate(req);
  Result b = Generate(req);
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  ASSERT_EQ(a.ids.size(), 12u);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_GT(a.chunks, 1) << "tokens should stream, not arrive in one message";
  ASSERT_TRUE(a.has_final);
  EXPECT_EQ(a.last.final().finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(a.last.completion_tokens(), 12);
  EXPECT_EQ(a.last.prompt_tokens(), 16);  // byte tokenizer: one token per byte
  EXPECT_GT(a.last.final().timing().total_seconds(), 0.0);
  EXPECT_GE(a.last.final().timing().total_seconds(), a.last.final().timing().ttft_seconds());

  // A different seed gives a different sample (12 tokens from a 259-way distribution).
  Result c = Generate(TextRequest("Once upon a time", 12, 1.0f, 4243));
  ASSERT_TRUE(c.status.ok());
  EXPECT_NE(a.ids, c.ids);
}

TEST_F(ServeTest, GenerateOnceMatchesStreamingGreedy) {
  const v1::GenerateRequest req = TextRequest("The capital of France is", 10, 0.0f, 1);
  Result streamed = Generate(req);
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  auto stub = Stub();
  grpc::ClientContext ctx;
  v1::GenerateOnceResponse once;
  ASSERT_TRUE(stub->GenerateOnce(&ctx, req, &once).ok());
  EXPECT_EQ(std::vector<int32_t>(once.token_ids().begin(), once.token_ids().end()), streamed.ids);
  EXPECT_EQ(once.text(), streamed.text);
  EXPECT_EQ(once.final().finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(once.completion_tokens(), 10);
}

TEST_F(ServeTest, StopTokenIdEndsWithStop) {
  Result free_run = Generate(TextRequest("abc", 8, 0.0f, 1));
  ASSERT_TRUE(free_run.status.ok());
  ASSERT_EQ(free_run.ids.size(), 8u);
  v1::GenerateRequest req = TextRequest("abc", 8, 0.0f, 1);
  req.mutable_sampling()->add_stop_token_ids(free_run.ids[2]);
  Result stopped = Generate(req);
  ASSERT_TRUE(stopped.status.ok());
  // Stops at the first occurrence of that id, which is included.
  size_t first =
      std::find(free_run.ids.begin(), free_run.ids.end(), free_run.ids[2]) - free_run.ids.begin();
  EXPECT_EQ(stopped.ids,
            std::vector<int32_t>(free_run.ids.begin(), free_run.ids.begin() + first + 1));
  EXPECT_EQ(stopped.last.final().finish_reason(), v1::FINISH_REASON_STOP);
}

struct BadCase {
  std::string name;
  std::function<void(v1::GenerateRequest*)> mutate;
  std::string field;  // must appear in the error message
};

TEST_F(ServeTest, BadInputIsInvalidArgumentNamingTheFieldAndServerKeepsServing) {
  const std::vector<BadCase> cases = {
      {"empty prompt", [](v1::GenerateRequest* r) { r->set_text(""); }, "input.text"},
      {"no input", [](v1::GenerateRequest* r) { r->clear_input(); }, "input"},
      {"token id outside vocab",
       [](v1::GenerateRequest* r) {
         r->mutable_token_ids()->add_ids(5);
         r->mutable_token_ids()->add_ids(99999);
       },
       "input.token_ids[1]"},
      {"negative token id", [](v1::GenerateRequest* r) { r->mutable_token_ids()->add_ids(-1); },
       "input.token_ids[0]"},
      {"max_tokens zero", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(0); },
       "sampling.max_tokens"},
      {"max_tokens negative",
       [](v1::GenerateRequest* r) { r->mutable_sampling()->set_max_tokens(-3); },
       "sampling.max_tokens"},
      {"temperature negative",
       [](v1::GenerateRequest* r) { r->mutable_sampling()->set_temperature(-1); },
       "sampling.temperature"},
      {"top_p zero", [](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_p(0); },
       "sampling.top_p"},
      {"prompt over max context",
       [](v1::GenerateRequest* r) { r->set_text(std::string(5000, 'x')); }, "maximum context"},
      {"hip attention on a dense server",
       [](v1::GenerateRequest* r) { r->mutable_hip()->set_attention(v1::ATTENTION_MODE_HIP); },
       "hip.attention"},
      {"hip k not a multiple of 8", [](v1::GenerateRequest* r) { r->mutable_hip()->set_k(100); },
       "hip.k"},
      {"hip refresh intervals on a dense server",
       [](v1::GenerateRequest* r) {
         for (int v : {1, 1, 1}) r->mutable_hip()->add_mask_refresh_interval(v);
       },
       "hip.mask_refresh_interval applies to HiP attention"},
      {"bad chat role",
       [](v1::GenerateRequest* r) {
         auto* m = r->mutable_chat()->add_messages();
         m->set_role("robot");
         m->set_content("hi");
       },
       "input.chat.messages[0].role"},
  };
  for (const BadCase& c : cases) {
    v1::GenerateRequest req;
    req.set_text("hello");
    c.mutate(&req);
    Result r = Generate(req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_NE(r.status.error_message().find(c.field), std::string::npos)
        << c.name << ": '" << r.status.error_message() << "' should name " << c.field;
    EXPECT_TRUE(r.ids.empty()) << c.name;
    // Unary path validates the same way.
    auto stub = Stub();
    grpc::ClientContext ctx;
    v1::GenerateOnceResponse once;
    EXPECT_EQ(stub->GenerateOnce(&ctx, req, &once).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name;
  }
  Result ok = Generate(TextRequest("still alive?", 4, 0.0f, 1));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.ids.size(), 4u);
  EXPECT_EQ(ok.last.final().hip().attention(), "dense");  // what the request ran with
  EXPECT_TRUE(server_->running());
}

int ActiveRequests(v1::Generation::Stub* stub) {
  grpc::ClientContext ctx;
  v1::ServerInfo info;
  if (!stub->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok()) return -1;
  return info.active_requests() + info.queued_requests();
}

// GetServerInfo reports the worker's memory plan and the KV capacity admission uses.
TEST_F(ServeTest, ServerInfoReportsTheMemoryPlan) {
  auto stub = Stub();
  grpc::ClientContext ctx;
  v1::ServerInfo info;
  ASSERT_TRUE(stub->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.backend(), "cpu");
  EXPECT_EQ(info.memory_plan().device(), "cpu");
  EXPECT_EQ(info.memory_plan().kv_dtype(), "fp32");  // the CPU backend's own KV store
  EXPECT_GT(info.memory_plan().weights_bytes(), 0);
  EXPECT_GT(info.memory_plan().kv_tokens(), 0);
  EXPECT_GT(info.memory_plan().kv_bytes(), 0);
  EXPECT_GE(info.memory_plan().budget_bytes(),
            info.memory_plan().weights_bytes() + info.memory_plan().kv_bytes());
  EXPECT_EQ(info.kv_capacity_tokens(), info.memory_plan().kv_tokens());
}

TEST_F(ServeTest, ClientCancellationStopsTheSequence) {
  auto stub = Stub();
  grpc::ClientContext ctx;
  v1::GenerateRequest req = TextRequest("long story", 3000, 1.0f, 7);
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_EQ(ActiveRequests(stub.get()), 1);
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ActiveRequests(stub.get()) != 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ActiveRequests(stub.get()), 0);
}

TEST_F(ServeTest, AbortByRequestIdEndsWithAbort) {
  auto stub = Stub();
  grpc::ClientContext ctx;
  v1::GenerateRequest req = TextRequest("abort me", 3000, 1.0f, 7);
  req.set_request_id("abort-me-1");
  auto reader = stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  grpc::ClientContext actx;
  v1::AbortRequest areq;
  areq.add_request_ids("abort-me-1");
  areq.add_request_ids("no-such-request");
  v1::AbortResponse aresp;
  ASSERT_TRUE(stub->Abort(&actx, areq, &aresp).ok());
  EXPECT_EQ(aresp.aborted(), 1);
  v1::GenerateResponse last;
  while (reader->Read(&msg)) last = msg;
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(last.has_final());
  EXPECT_EQ(last.final().finish_reason(), v1::FINISH_REASON_ABORT);
  EXPECT_LT(last.completion_tokens(), 3000);
}

TEST_F(ServeTest, ConcurrentStreamsAllComplete) {
  std::vector<std::thread> threads;
  std::vector<Result> results(6);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(TextRequest("concurrent " + std::to_string(i), 20, 0.0f, 1));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].ids.size(), 20u) << i;
  }
  // Batching must not change greedy results.
  Result alone = Generate(TextRequest("concurrent 3", 20, 0.0f, 1));
  EXPECT_EQ(alone.ids, results[3].ids);
}

TEST_F(ServeTest, ModelInfoAndTokenize) {
  auto stub = Stub();
  grpc::ClientContext ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.vocab_size(), 259);
  EXPECT_EQ(info.max_context(), 4096);
  EXPECT_EQ(info.tensor_parallel(), 1);
  EXPECT_EQ(info.backend(), "cpu");
  grpc::ClientContext tctx;
  v1::TokenizeRequest treq;
  treq.set_text("hé");
  v1::TokenizeResponse tresp;
  ASSERT_TRUE(stub->Tokenize(&tctx, treq, &tresp).ok());
  EXPECT_EQ(std::vector<int32_t>(tresp.token_ids().begin(), tresp.token_ids().end()),
            (std::vector<int32_t>{'h', 0xC3, 0xA9}));
}

}  // namespace
}  // namespace hipserve

namespace hipserve {
namespace {

// KV budgets are hard limits: a worker started with a small --host_kv_bytes reports its
// capacity, and the coordinator refuses what can never fit while still serving what can.
TEST(ServeBudgetTest, RequestLargerThanTheKvBudgetIsResourceExhausted) {
  // builtin tiny: 2 layers x 2 KV heads x 16 dims x (K+V) x 4 bytes = 512 bytes a token.
  testing::ServerProcess server({"--model=builtin:tiny", "--host_kv_bytes=51200"});
  ASSERT_TRUE(server.WaitForPort(60)) << server.log();
  ASSERT_TRUE(cli::WaitForReady(server.address(), 60).ok()) << server.log();
  auto stub = v1::Generation::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  v1::GenerateRequest big;
  big.set_text(std::string(50, 'a'));
  big.mutable_sampling()->set_max_tokens(60);
  grpc::ClientContext c1;
  v1::GenerateOnceResponse r1;
  grpc::Status s = stub->GenerateOnce(&c1, big, &r1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("110"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("100"), std::string::npos) << s.error_message();

  v1::GenerateRequest fits;
  fits.set_text(std::string(30, 'b'));
  fits.mutable_sampling()->set_max_tokens(20);
  fits.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext c2;
  v1::GenerateOnceResponse r2;
  ASSERT_TRUE(stub->GenerateOnce(&c2, fits, &r2).ok());
  EXPECT_EQ(r2.completion_tokens(), 20);
}

TEST(ServeBudgetTest, WorkerRejectsABudgetThatHoldsNothing) {
  testing::ServerProcess server({"--model=builtin:tiny", "--host_kv_bytes=100"});
  ASSERT_TRUE(server.WaitForPort(60)) << server.log();
  // serve exits non-zero once the worker refuses the configuration, and says why.
  for (int i = 0; i < 300 && server.running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(server.running());
  EXPECT_NE(server.log().find("holds no token"), std::string::npos) << server.log();
}

// --auth_tokens_file: every public RPC needs a known bearer token; health stays open.
TEST(ServeAuthTest, BearerTokensGuardThePublicApi) {
  char path[] = "/tmp/hipserve-tokens-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string tokens = "# test tokens\nsecret-one\nsecret-two\n";
  ASSERT_EQ(write(fd, tokens.data(), tokens.size()), static_cast<ssize_t>(tokens.size()));
  close(fd);
  testing::ServerProcess server({"--model=builtin:tiny", "--default_max_tokens=4",
                                 std::string("--auth_tokens_file=") + path});
  ASSERT_TRUE(server.WaitForPort(60)) << server.log();
  auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  auto stub = v1::Generation::NewStub(channel);
  // Health needs no token; wait for readiness through it.
  bool serving = false;
  for (int i = 0; i < 1200 && !serving; ++i) {
    grpc::ClientContext ctx;
    HealthCheckRequest req;
    req.set_service("hipserve.v1.Generation");
    HealthCheckResponse resp;
    serving = health->Check(&ctx, req, &resp).ok() && resp.status() == HealthCheckResponse::SERVING;
    if (!serving) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(serving) << server.log();
  auto once = [&](const std::string& authorization) {
    grpc::ClientContext ctx;
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    v1::GenerateRequest req;
    req.set_text("hello");
    v1::GenerateOnceResponse resp;
    return stub->GenerateOnce(&ctx, req, &resp);
  };
  EXPECT_EQ(once("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(once("Bearer wrong").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status ok = once("Bearer secret-two");
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  {
    grpc::ClientContext ctx;
    v1::ServerInfo info;
    EXPECT_EQ(stub->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer secret-one");
    v1::ServerInfo info;
    EXPECT_TRUE(stub->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info).ok());
  }
  {  // the streaming RPC too
    grpc::ClientContext ctx;
    v1::GenerateRequest req;
    req.set_text("hello");
    auto reader = stub->Generate(&ctx, req);
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  unlink(path);
}

}  // namespace
}  // namespace hipserve
