#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace hipserve::coordinator {
namespace {

// Scripted group: sequence s emits script[s][i] as its i-th sampled token. Records plans.
class FakeGroup final : public WorkerGroup {
 public:
  explicit FakeGroup(std::vector<std::vector<int32_t>> scripts) : scripts_(std::move(scripts)) {
    info_.max_context = 64;
    info_.vocab_size = 259;
    info_.tokenizer = MakeByteTokenizerSpec();
  }
  int world_size() const override { return 1; }
  const GroupModelInfo& model_info() const override { return info_; }
  bool healthy() const override { return !broken_; }
  absl::StatusOr<std::vector<StepToken>> Step(const StepPlan& plan) override {
    std::unique_lock<std::mutex> lock(mu_);
    // While held, every step waits: a test can act on a sequence that cannot finish meanwhile.
    gate_cv_.wait(lock, [&] { return !held_; });
    plans_.push_back(plan);
    if (fail_next_ == 1) {
      broken_ = true;
      return absl::UnavailableError("worker died");
    }
    std::vector<StepToken> out;
    for (const WorkItem& w : plan.work) {
      int& emitted = emitted_[w.seq_id];
      EXPECT_EQ(w.start_pos, kv_[w.seq_id]) << "positions must be contiguous";
      kv_[w.seq_id] += static_cast<int>(w.tokens.size());
      if (!w.sample) continue;
      EXPECT_EQ(w.sample_index, static_cast<uint64_t>(emitted));
      const auto& script = scripts_[(w.seq_id - 1) % scripts_.size()];
      out.push_back(StepToken{w.seq_id, script[emitted % script.size()], 0.f});
      ++emitted;
    }
    for (uint64_t id : plan.release) released_.push_back(id);
    return out;
  }
  std::vector<uint64_t> released() {
    std::lock_guard<std::mutex> lock(mu_);
    return released_;
  }
  std::vector<StepPlan> plans() {
    std::lock_guard<std::mutex> lock(mu_);
    return plans_;
  }
  void BreakNext() {
    std::lock_guard<std::mutex> lock(mu_);
    fail_next_ = 1;
  }
  void Hold(bool held) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = held;
    }
    gate_cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::vector<std::vector<int32_t>> scripts_;
  GroupModelInfo info_;
  std::map<uint64_t, int> emitted_, kv_;
  std::vector<uint64_t> released_;
  std::vector<StepPlan> plans_;
  int fail_next_ = 0;
  bool broken_ = false;
  bool held_ = false;
  std::condition_variable gate_cv_;
};

class RecordingSink final : public SequenceSink {
 public:
  void OnPrefillProgress(int processed, int total) override {
    std::lock_guard<std::mutex> lock(mu_);
    progress.push_back(processed);
  }
  void OnTokens(const std::vector<int32_t>& ids, const std::string& t, int) override {
    std::lock_guard<std::mutex> lock(mu_);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    text += t;
  }
  void OnFinish(const FinishInfo& info) override {
    std::lock_guard<std::mutex> lock(mu_);
    finish = info;
    done = true;
    cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return done; });
  }
  std::vector<int> progress;
  std::vector<int32_t> tokens;
  std::string text;
  FinishInfo finish;
  bool done = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

std::vector<int32_t> Bytes(const std::string& s) { return std::vector<int32_t>(s.begin(), s.end()); }

struct Harness {
  explicit Harness(std::vector<std::vector<int32_t>> scripts, SchedulerOptions o = {})
      : scheduler(o), group(std::make_shared<FakeGroup>(std::move(scripts))) {
    auto tok = Tokenizer::Create(MakeByteTokenizerSpec());
    EXPECT_TRUE(tok.ok());
    scheduler.SetWorkerGroup(group, std::shared_ptr<const Tokenizer>(std::move(*tok)));
  }
  std::shared_ptr<RecordingSink> Submit(const std::string& id, std::vector<int32_t> prompt,
                                        int max_tokens, std::vector<std::string> stop = {}) {
    SequenceRequest r;
    r.request_id = id;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.stop = std::move(stop);
    r.report_prefill_progress = true;
    auto sink = std::make_shared<RecordingSink>();
    r.sink = sink;
    EXPECT_TRUE(scheduler.Submit(std::move(r)).ok());
    return sink;
  }
  Scheduler scheduler;
  std::shared_ptr<FakeGroup> group;
};

TEST(SchedulerTest, StopStringIsCutAndNeverPartiallyEmitted) {
  Harness h({Bytes("Hello, world! The END is here")});
  auto sink = h.Submit("a", Bytes("prompt"), 100, {"END"});
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->finish.reason, FinishReason::kStop);
  EXPECT_EQ(sink->text, "Hello, world! The ");
}

TEST(SchedulerTest, MaxTokensGivesLengthAndExactCount) {
  Harness h({Bytes("abcdefghij")});
  auto sink = h.Submit("a", Bytes("p"), 7);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->finish.reason, FinishReason::kLength);
  EXPECT_EQ(sink->text, "abcdefg");
  EXPECT_EQ(sink->finish.completion_tokens, 7);
  EXPECT_EQ(sink->finish.prompt_tokens, 1);
}

TEST(SchedulerTest, EosEndsWithoutEmittingIt) {
  Harness h({{'o', 'k', 256, 'x'}});
  auto sink = h.Submit("a", Bytes("p"), 10);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->finish.reason, FinishReason::kEos);
  EXPECT_EQ(sink->text, "ok");
  EXPECT_EQ(sink->tokens, (std::vector<int32_t>{'o', 'k'}));
}

TEST(SchedulerTest, MultiByteCharactersAreEmittedWhole) {
  Harness h({{0xE2, 0x82, 0xAC, 'x'}});  // "€x"
  auto sink = h.Submit("a", Bytes("p"), 4);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->text, "\xE2\x82\xAC" "x");
}

TEST(SchedulerTest, ChunkedPrefillReportsProgressAndKeepsPositions) {
  SchedulerOptions o;
  o.chunk_tokens = 4;
  Harness h({Bytes("z")}, o);
  auto sink = h.Submit("a", std::vector<int32_t>(10, 'q'), 2);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->progress, (std::vector<int>{4, 8, 10}));
  EXPECT_EQ(sink->text, "zz");
}

TEST(SchedulerTest, ContextLimitGivesLength) {
  Harness h({Bytes("y")});  // fake max_context = 64
  auto sink = h.Submit("a", std::vector<int32_t>(60, 'q'), 100);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->finish.reason, FinishReason::kLength);
  EXPECT_EQ(sink->finish.completion_tokens, 4);
}

TEST(SchedulerTest, FinishedSequencesAreReleased) {
  Harness h({Bytes("ab")});
  auto s1 = h.Submit("a", Bytes("p"), 2);
  auto s2 = h.Submit("b", Bytes("q"), 3);
  ASSERT_TRUE(s1->Wait());
  ASSERT_TRUE(s2->Wait());
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (h.group->released().size() < 2 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto released = h.group->released();
  std::sort(released.begin(), released.end());
  EXPECT_EQ(released, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(h.scheduler.Stats().active, 0);
  EXPECT_EQ(h.scheduler.Stats().kv_tokens_reserved, 0);
}

TEST(SchedulerTest, QueueLimitAndBudgetAreResourceExhausted) {
  SchedulerOptions o;
  o.kv_budget_tokens = 10;
  Scheduler s(o);  // no group: requests stay queued
  SequenceRequest big;
  big.request_id = "big";
  big.prompt = std::vector<int32_t>(8, 1);
  big.max_tokens = 5;
  absl::Status st = s.Submit(big);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("13"), std::string::npos) << st;
  SequenceRequest a;
  a.request_id = "dup";
  a.prompt = {1};
  a.max_tokens = 1;
  EXPECT_TRUE(s.Submit(a).ok());
  EXPECT_EQ(s.Submit(a).code(), absl::StatusCode::kAlreadyExists);
}

TEST(SchedulerTest, BrokenGroupFailsRequestsWithUnavailable) {
  Harness h({Bytes("abcdefghijklmnop")});
  h.group->BreakNext();
  auto sink = h.Submit("a", Bytes("p"), 50);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->finish.reason, FinishReason::kError);
  EXPECT_EQ(sink->finish.status.code(), absl::StatusCode::kUnavailable);
}

TEST(SchedulerTest, AbortFinishesWithAbort) {
  Harness h({Bytes("abcdefghijklmnop")});
  // Without the hold the sequence may reach the 64-token context limit before Abort runs.
  h.group->Hold(true);
  auto sink = h.Submit("a", Bytes("p"), 100000);
  EXPECT_EQ(h.scheduler.Abort({"a", "zzz"}), 1);
  h.group->Hold(false);
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->finish.reason, FinishReason::kAbort);
}

}  // namespace
}  // namespace hipserve::coordinator
