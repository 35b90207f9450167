// Per-request HiP overrides end to end: `hipserve serve --attention=hip` as real processes on the
// builtin tiny model. A request's hip.mask_refresh_interval or hip.k applies to its sequence only
// and gives exactly the tokens of a server configured with those values; the final message
// reports the settings the request ran with.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "hipserve/v1/generate.grpc.pb.h"
#include "tests/integration/server_process.h"

namespace hipserve {
namespace {

// Small enough that HiP prunes at these lengths (worker/hip_model_test.cc's PruningConfig);
// only mask_refresh_interval and k differ between the servers. Block size 2; hip.k at most 16.
std::string HipConfig(const std::string& intervals, int k = 8) {
  return R"({"n_sink": 4, "n_window": 8, "block_q": 4, "chunk_sizes": [16, 4, 2],)"
         R"( "extend_min_tokens": 0, "stage_keep": [64, 16], "k": )" +
         std::to_string(k) +
         R"(, "stride_q": [2, 2, 1],)"
         R"( "mask_refresh_interval": )" +
         intervals +
         R"(, "layer_overrides": [{"layers": [0], "k": 12, "pruning_positions": "chunk_indexed"}]})";
}

std::shared_ptr<grpc::Channel> StartAndConnect(testing::ServerProcess* server) {
  EXPECT_TRUE(server->WaitForPort(60)) << server->log();
  auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < end) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("hipserve.v1.Generation");
    grpc::health::v1::HealthCheckResponse resp;
    if (health->Check(&ctx, req, &resp).ok() &&
        resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return channel;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "server never became ready:\n" << server->log();
  return channel;
}

class HipOverridesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A: the server's intervals are [6, 3, 2]; B: [1, 1, 1] (refresh every stage every step).
    // A chunk budget above every batch's prompts: each prompt is prefilled in one step whatever
    // else is batched (HiP's tail-query selection depends on where a prefill step ends).
    server_a_ = new testing::ServerProcess({"--model=builtin:tiny", "--backend=cpu",
                                            "--attention=hip", "--max_batch=8", "--chunk=8192",
                                            "--hip_config=" + HipConfig("[6, 3, 2]")});
    server_b_ = new testing::ServerProcess({"--model=builtin:tiny", "--backend=cpu",
                                            "--attention=hip", "--max_batch=8", "--chunk=8192",
                                            "--hip_config=" + HipConfig("[1, 1, 1]")});
    // C: A's intervals with k = 16.
    server_c_ = new testing::ServerProcess({"--model=builtin:tiny", "--backend=cpu",
                                            "--attention=hip", "--max_batch=8", "--chunk=8192",
                                            "--hip_config=" + HipConfig("[6, 3, 2]", 16)});
    channel_a_ = new std::shared_ptr<grpc::Channel>(StartAndConnect(server_a_));
    channel_b_ = new std::shared_ptr<grpc::Channel>(StartAndConnect(server_b_));
    channel_c_ = new std::shared_ptr<grpc::Channel>(StartAndConnect(server_c_));
  }
  static void TearDownTestSuite() {
    delete channel_a_;
    delete channel_b_;
    delete channel_c_;
    delete server_a_;
    delete server_b_;
    delete server_c_;
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "server A log:\n"
                << server_a_->log() << "\nserver B log:\n"
                << server_b_->log() << "\nserver C log:\n"
                << server_c_->log();
    }
  }

  struct Result {
    grpc::Status status;
    std::vector<int32_t> ids;
    v1::FinalInfo final;
  };

  static Result Generate(const std::shared_ptr<grpc::Channel>& channel,
                         const v1::GenerateRequest& req) {
    auto stub = v1::Generation::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub->Generate(&ctx, req);
    Result r;
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      r.ids.insert(r.ids.end(), msg.token_ids().begin(), msg.token_ids().end());
      if (msg.has_final()) r.final = msg.final();
    }
    r.status = reader->Finish();
    return r;
  }

  static v1::GenerateRequest Request(int salt) {
    v1::GenerateRequest req;
    std::string text;
    for (int i = 0; i < 12; ++i) {
      text += "Sparse attention keeps a few blocks per query; sentence " +
              std::to_string(i * 7 + salt) + ". ";
    }
    req.set_text(text);
    req.mutable_sampling()->set_max_tokens(32);
    req.mutable_sampling()->set_temperature(0);
    req.mutable_sampling()->set_ignore_eos(true);
    return req;
  }
  static void SetIntervals(v1::GenerateRequest* req, std::vector<int> v) {
    for (int x : v) req->mutable_hip()->add_mask_refresh_interval(x);
  }

  static testing::ServerProcess* server_a_;
  static testing::ServerProcess* server_b_;
  static testing::ServerProcess* server_c_;
  static std::shared_ptr<grpc::Channel>* channel_a_;
  static std::shared_ptr<grpc::Channel>* channel_b_;
  static std::shared_ptr<grpc::Channel>* channel_c_;
};
testing::ServerProcess* HipOverridesTest::server_a_ = nullptr;
testing::ServerProcess* HipOverridesTest::server_b_ = nullptr;
testing::ServerProcess* HipOverridesTest::server_c_ = nullptr;
std::shared_ptr<grpc::Channel>* HipOverridesTest::channel_a_ = nullptr;
std::shared_ptr<grpc::Channel>* HipOverridesTest::channel_b_ = nullptr;
std::shared_ptr<grpc::Channel>* HipOverridesTest::channel_c_ = nullptr;

std::vector<int> Intervals(const v1::FinalInfo& f) {
  return {f.hip().mask_refresh_interval().begin(), f.hip().mask_refresh_interval().end()};
}

TEST_F(HipOverridesTest, RefreshIntervalOverrideEqualsServerWideSetting) {
  const v1::GenerateRequest plain = Request(1);
  v1::GenerateRequest over = plain;
  SetIntervals(&over, {1, 1, 1});

  const Result a_plain = Generate(*channel_a_, plain);
  const Result b_plain = Generate(*channel_b_, plain);
  ASSERT_TRUE(a_plain.status.ok()) << a_plain.status.error_message();
  ASSERT_TRUE(b_plain.status.ok()) << b_plain.status.error_message();
  ASSERT_EQ(a_plain.ids.size(), 32u);
  // The two schedules give different tokens for this prompt, so the test below can fail.
  ASSERT_NE(a_plain.ids, b_plain.ids) << "pick a prompt where [6,3,2] and [1,1,1] differ";
  EXPECT_EQ(a_plain.final.hip().attention(), "hip");
  EXPECT_EQ(Intervals(a_plain.final), (std::vector<int>{6, 3, 2}));
  EXPECT_EQ(a_plain.final.hip().k(), 8);
  EXPECT_FALSE(a_plain.final.hip().overridden());

  const Result a_over = Generate(*channel_a_, over);
  ASSERT_TRUE(a_over.status.ok()) << a_over.status.error_message();
  EXPECT_EQ(a_over.ids, b_plain.ids);
  EXPECT_EQ(a_over.final.hip().attention(), "hip");
  EXPECT_EQ(Intervals(a_over.final), (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(a_over.final.hip().k(), 8);
  EXPECT_TRUE(a_over.final.hip().overridden());

  // The unary call applies and reports it the same way.
  auto stub = v1::Generation::NewStub(*channel_a_);
  grpc::ClientContext ctx;
  v1::GenerateOnceResponse once;
  ASSERT_TRUE(stub->GenerateOnce(&ctx, over, &once).ok());
  EXPECT_EQ(std::vector<int32_t>(once.token_ids().begin(), once.token_ids().end()), b_plain.ids);
  EXPECT_EQ(Intervals(once.final()), (std::vector<int>{1, 1, 1}));
  EXPECT_TRUE(once.final().hip().overridden());
}

// hip.k = 16 on A (k = 8) gives exactly the tokens of C (k = 16 in --hip_config), in the
// streaming and the unary call, and batched with requests that keep A's k.
TEST_F(HipOverridesTest, KOverrideEqualsServerWideSetting) {
  const v1::GenerateRequest plain = Request(5);
  v1::GenerateRequest over = plain;
  over.mutable_hip()->set_k(16);

  const Result a_plain = Generate(*channel_a_, plain);
  const Result c_plain = Generate(*channel_c_, plain);
  ASSERT_TRUE(a_plain.status.ok()) << a_plain.status.error_message();
  ASSERT_TRUE(c_plain.status.ok()) << c_plain.status.error_message();
  ASSERT_EQ(a_plain.ids.size(), 32u);
  // k = 8 and k = 16 give different tokens for this prompt, so the test below can fail.
  ASSERT_NE(a_plain.ids, c_plain.ids) << "pick a prompt where k = 8 and k = 16 differ";
  EXPECT_EQ(c_plain.final.hip().k(), 16);
  EXPECT_FALSE(c_plain.final.hip().overridden());

  const Result a_over = Generate(*channel_a_, over);
  ASSERT_TRUE(a_over.status.ok()) << a_over.status.error_message();
  EXPECT_EQ(a_over.ids, c_plain.ids);
  EXPECT_EQ(a_over.final.hip().k(), 16);
  EXPECT_EQ(Intervals(a_over.final), (std::vector<int>{6, 3, 2}));
  EXPECT_TRUE(a_over.final.hip().overridden());

  auto stub = v1::Generation::NewStub(*channel_a_);
  grpc::ClientContext ctx;
  v1::GenerateOnceResponse once;
  ASSERT_TRUE(stub->GenerateOnce(&ctx, over, &once).ok());
  EXPECT_EQ(std::vector<int32_t>(once.token_ids().begin(), once.token_ids().end()), c_plain.ids);
  EXPECT_EQ(once.final().hip().k(), 16);

  // Batched: k = 16, the server's k, and k = 16 with intervals [1, 1, 1] (both overrides).
  v1::GenerateRequest both = over;
  SetIntervals(&both, {1, 1, 1});
  const std::vector<const v1::GenerateRequest*> reqs = {&over, &plain, &both, &over, &plain};
  std::vector<Result> got(reqs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < reqs.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = Generate(*channel_a_, *reqs[i]); });
  }
  for (auto& t : threads) t.join();
  const Result both_alone = Generate(*channel_a_, both);
  ASSERT_TRUE(both_alone.status.ok()) << both_alone.status.error_message();
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message();
    const std::vector<int32_t>& want =
        reqs[i] == &plain ? a_plain.ids : (reqs[i] == &over ? c_plain.ids : both_alone.ids);
    EXPECT_EQ(got[i].ids, want) << i;
    EXPECT_EQ(got[i].final.hip().k(), reqs[i] == &plain ? 8 : 16) << i;
  }
}

// Batched together on one server, each sequence keeps its own schedule.
TEST_F(HipOverridesTest, OverrideAppliesToItsSequenceOnlyWhenBatched) {
  const v1::GenerateRequest plain = Request(2);
  v1::GenerateRequest over = Request(3);
  SetIntervals(&over, {1, 1, 1});
  v1::GenerateRequest over_as_plain = Request(3);
  const Result want_plain = Generate(*channel_a_, plain);
  const Result want_over = Generate(*channel_b_, over_as_plain);
  ASSERT_TRUE(want_plain.status.ok() && want_over.status.ok());

  for (int round = 0; round < 2; ++round) {
    std::vector<Result> got(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] { got[i] = Generate(*channel_a_, i % 2 ? over : plain); });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message();
      EXPECT_EQ(got[i].ids, i % 2 ? want_over.ids : want_plain.ids)
          << "round " << round << " " << i;
      const std::vector<int> want_intervals =
          i % 2 ? std::vector<int>{1, 1, 1} : std::vector<int>{6, 3, 2};
      EXPECT_EQ(Intervals(got[i].final), want_intervals);
    }
  }
}

TEST_F(HipOverridesTest, BadOverridesAreInvalidArgument) {
  struct Case {
    std::string name;
    std::function<void(v1::GenerateRequest*)> mutate;
    std::string want;  // must appear in the message
  };
  const std::vector<Case> cases = {
      {"two intervals",
       [](v1::GenerateRequest* r) {
         SetIntervals(r, {1, 1});
       },
       "hip.mask_refresh_interval needs exactly 3 values"},
      {"zero interval",
       [](v1::GenerateRequest* r) {
         SetIntervals(r, {4, 0, 1});
       },
       "hip.mask_refresh_interval values must be > 0"},
      {"k not a multiple of the block size",
       [](v1::GenerateRequest* r) { r->mutable_hip()->set_k(7); },
       "hip.k must be a positive multiple of 2"},
      {"k zero", [](v1::GenerateRequest* r) { r->mutable_hip()->set_k(0); },
       "hip.k must be a positive multiple of 2"},
      {"k negative", [](v1::GenerateRequest* r) { r->mutable_hip()->set_k(-8); },
       "hip.k must be a positive multiple of 2"},
      {"k above the last stage_keep", [](v1::GenerateRequest* r) { r->mutable_hip()->set_k(18); },
       "hip.k = 18 exceeds this server's limit 16"},
      {"dense on a hip server",
       [](v1::GenerateRequest* r) { r->mutable_hip()->set_attention(v1::ATTENTION_MODE_DENSE); },
       "hip.attention = dense, but this server runs 'hip'"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest req = Request(4);
    c.mutate(&req);
    const Result r = Generate(*channel_a_, req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_NE(r.status.error_message().find(c.want), std::string::npos)
        << c.name << ": '" << r.status.error_message() << "'";
    EXPECT_TRUE(r.ids.empty()) << c.name;
  }
  // hip.attention equal to the server's is accepted.
  v1::GenerateRequest same = Request(4);
  same.mutable_hip()->set_attention(v1::ATTENTION_MODE_HIP);
  same.mutable_sampling()->set_max_tokens(2);
  EXPECT_TRUE(Generate(*channel_a_, same).status.ok());
}

}  // namespace
}  // namespace hipserve
