#include "coordinator/client_limits.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace hipserve::coordinator {
namespace {

TEST(ClientLimitsTest, ConcurrentRequestsPerClient) {
  ClientLimits limits({/*max_concurrent_requests=*/2, /*max_queued_tokens=*/0});
  ASSERT_TRUE(limits.enabled());
  auto a = limits.Acquire("alice", 10);
  auto b = limits.Acquire("alice", 10);
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = limits.Acquire("alice", 10);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("client 'alice' has 2 requests in flight"), std::string::npos)
      << c.status();
  EXPECT_NE(c.status().message().find("--max_concurrent_requests_per_client=2"), std::string::npos);
  // Another client is not affected.
  EXPECT_TRUE(limits.Acquire("bob", 10).ok());
  EXPECT_EQ(limits.usage("alice").requests, 2);
  a->reset();  // the request ended
  EXPECT_EQ(limits.usage("alice").requests, 1);
  EXPECT_TRUE(limits.Acquire("alice", 10).ok());
}

TEST(ClientLimitsTest, QueuedTokensPerClient) {
  ClientLimits limits({0, /*max_queued_tokens=*/100});
  auto a = limits.Acquire("alice", 60);
  ASSERT_TRUE(a.ok());
  auto b = limits.Acquire("alice", 50);
  ASSERT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(b.status().message().find("would hold 110 tokens in flight"), std::string::npos)
      << b.status();
  EXPECT_NE(b.status().message().find("60 held by 1 requests + 50 asked"), std::string::npos);
  EXPECT_NE(b.status().message().find("--max_queued_tokens_per_client=100"), std::string::npos);
  EXPECT_TRUE(limits.Acquire("alice", 40).ok());  // exactly at the limit (then released)
  auto huge = limits.Acquire("carol", 101);
  EXPECT_NE(huge.status().message().find("this request alone exceeds it"), std::string::npos);
  EXPECT_EQ(limits.usage("carol").requests, 0);
  (*a)->Release();
  (*a)->Release();  // idempotent
  EXPECT_EQ(limits.usage("alice").tokens, 0);
  EXPECT_EQ(limits.active_clients(), 0u);
}

TEST(ClientLimitsTest, UnlimitedIsDisabled) { EXPECT_FALSE(ClientLimits({0, 0}).enabled()); }

TEST(ClientLimitsTest, PeerHost) {
  EXPECT_EQ(PeerHost("ipv4:10.0.0.5:4711"), "10.0.0.5");
  EXPECT_EQ(PeerHost("ipv6:[::1]:4711"), "::1");
  EXPECT_EQ(PeerHost("unix:/tmp/sock"), "unix:/tmp/sock");
}

// Records what it receives.
class RecordingSink final : public SequenceSink {
 public:
  void OnTokens(const std::vector<int32_t>& ids, const std::string&, int) override {
    tokens += static_cast<int>(ids.size());
  }
  void OnFinish(const FinishInfo& info) override {
    finished = true;
    reason = info.reason;
  }
  int tokens = 0;
  std::atomic<bool> finished{false};
  FinishReason reason = FinishReason::kStop;
};

TEST(ClientLimitsTest, LeasedSinkForwardsAndReleasesAtFinish) {
  ClientLimits limits({1, 0});
  auto inner = std::make_shared<RecordingSink>();
  std::shared_ptr<SequenceSink> sink = WithLease(inner, *limits.Acquire("alice", 5));
  EXPECT_FALSE(limits.Acquire("alice", 5).ok());
  sink->OnTokens({1, 2}, "ab", 2);
  EXPECT_EQ(inner->tokens, 2);
  EXPECT_EQ(limits.usage("alice").requests, 1);
  sink->OnFinish(FinishInfo{});
  EXPECT_TRUE(inner->finished);
  EXPECT_EQ(limits.usage("alice").requests, 0);  // released before the sink is dropped
  // Dropped without a finish (the request never got queued): released too.
  sink = WithLease(std::make_shared<RecordingSink>(), *limits.Acquire("alice", 5));
  EXPECT_EQ(limits.usage("alice").requests, 1);
  sink.reset();
  EXPECT_EQ(limits.usage("alice").requests, 0);
}

// Every way a request ends in the real Scheduler gives its lease back: abort (client cancel,
// Abort RPC), FailAll (drain timeout), Stop (shutdown), and a refused Submit.
TEST(ClientLimitsTest, SchedulerEndingsReleaseTheLease) {
  ClientLimits limits({3, 0});
  SchedulerOptions o;
  o.max_queue = 4;
  Scheduler scheduler(o);  // no worker group: requests wait in the queue
  auto submit = [&](const std::string& id, int prompt_len = 4) {
    SequenceRequest r;
    r.request_id = id;
    r.prompt.assign(prompt_len, 1);
    r.max_tokens = 4;
    auto lease = limits.Acquire("alice", prompt_len + r.max_tokens);
    EXPECT_TRUE(lease.ok()) << lease.status();
    r.sink = WithLease(std::make_shared<RecordingSink>(), *std::move(lease));
    return scheduler.Submit(std::move(r));
  };
  auto wait_for = [&](int requests) {
    for (int i = 0; i < 500 && limits.usage("alice").requests != requests; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return limits.usage("alice").requests;
  };
  ASSERT_TRUE(submit("a").ok());
  ASSERT_TRUE(submit("b").ok());
  ASSERT_TRUE(submit("c").ok());
  EXPECT_EQ(limits.usage("alice").requests, 3);
  EXPECT_EQ(scheduler.Abort({"a"}), 1);
  EXPECT_EQ(wait_for(2), 2);
  scheduler.FailAll(absl::UnavailableError("drain timeout"));
  EXPECT_EQ(wait_for(0), 0);
  ASSERT_TRUE(submit("d").ok());
  // A request the scheduler refuses (duplicate id) never holds a lease.
  EXPECT_EQ(submit("d").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(wait_for(1), 1);
  scheduler.Stop();
  EXPECT_EQ(wait_for(0), 0);
  EXPECT_EQ(limits.active_clients(), 0u);
}

}  // namespace
}  // namespace hipserve::coordinator
