#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

namespace hipserve::coordinator {
namespace {

SequenceId Seq(uint64_t id) { return SequenceId(id); }

// Scripted group: sequence s emits script[s][i] as its i-th sampled token. Records plans.
// Thread-safe, so the threaded Scheduler tests can use it too.
class FakeGroup final : public WorkerGroup {
 public:
  explicit FakeGroup(std::vector<std::vector<int32_t>> scripts) : scripts_(std::move(scripts)) {
    info_.max_context = 64;
    info_.vocab_size = 259;
    info_.tokenizer = MakeByteTokenizerSpec();
  }
  int world_size() const override { return 1; }
  const GroupModelInfo& model_info() const override { return info_; }
  void set_max_context(int n) { info_.max_context = n; }
  bool healthy() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return !broken_;
  }
  StepOutcome Step(const StepPlan& plan) override {
    std::unique_lock<std::mutex> lock(mu_);
    // While held, every step waits: a test can act on a sequence that cannot finish meanwhile.
    gate_cv_.wait(lock, [&] { return !held_; });
    plans_.push_back(plan);
    for (SequenceId id : plan.release) {
      released_.push_back(id.value());
      kv_.erase(id.value());
    }
    StepOutcome out;
    if (break_next_) {
      broken_ = true;
      out.status = absl::UnavailableError("worker died");
      return out;
    }
    for (const WorkItem& w : plan.work) {
      const uint64_t id = w.seq_id.value();
      EXPECT_EQ(w.start_pos, kv_[id]) << "positions must be contiguous";
      kv_[id] += static_cast<int>(w.tokens.size());
      if (!w.sample) continue;
      int& emitted = emitted_[id];
      EXPECT_EQ(w.sample_index, static_cast<uint64_t>(emitted));
      const auto& script = scripts_[(id - 1) % scripts_.size()];
      out.tokens.push_back(StepToken{w.seq_id, script[emitted % script.size()], 0.f});
      ++emitted;
    }
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
    break_next_ = true;
  }
  void Hold(bool held) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      held_ = held;
    }
    gate_cv_.notify_all();
  }
  void set_kv_capacity(int64_t tokens) { info_.kv_capacity_tokens = tokens; }

 private:
  mutable std::mutex mu_;
  std::vector<std::vector<int32_t>> scripts_;
  GroupModelInfo info_;
  std::map<uint64_t, int> emitted_, kv_;
  std::vector<uint64_t> released_;
  std::vector<StepPlan> plans_;
  bool break_next_ = false;
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
    if (on_tokens) on_tokens();
    std::lock_guard<std::mutex> lock(mu_);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    text += t;
  }
  void OnFinish(const FinishInfo& info) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++finishes;
    finish = info;
    done = true;
    cv_.notify_all();
  }
  // For the threaded tests: waits for OnFinish (no sleeping).
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return done; });
  }
  std::function<void()> on_tokens;  // called without the sink's lock
  std::vector<int> progress;
  std::vector<int32_t> tokens;
  std::string text;
  FinishInfo finish;
  int finishes = 0;
  bool done = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

std::vector<int32_t> Bytes(const std::string& s) {
  return std::vector<int32_t>(s.begin(), s.end());
}

std::shared_ptr<const Tokenizer> ByteTokenizer() {
  auto tok = Tokenizer::Create(MakeByteTokenizerSpec());
  EXPECT_TRUE(tok.ok());
  return std::shared_ptr<const Tokenizer>(std::move(*tok));
}

SequenceRequest Request(const std::string& id, std::vector<int32_t> prompt, int max_tokens,
                        std::vector<std::string> stop, std::shared_ptr<RecordingSink> sink) {
  SequenceRequest r;
  r.request_id = id;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.stop = std::move(stop);
  r.report_prefill_progress = true;
  r.sink = std::move(sink);
  return r;
}

// Drives a SchedulerCore step by step on the calling thread: plan, run on the fake group,
// apply, deliver. No threads, no sleeps.
struct CoreHarness {
  explicit CoreHarness(std::vector<std::vector<int32_t>> scripts, SchedulerOptions o = {})
      : core(o), group(std::make_shared<FakeGroup>(std::move(scripts))) {
    SinkEvents events;
    core.SetWorkerGroup(group, ByteTokenizer(), &events);
    EXPECT_TRUE(events.empty());
  }
  std::shared_ptr<RecordingSink> Submit(const std::string& id, std::vector<int32_t> prompt,
                                        int max_tokens, std::vector<std::string> stop = {}) {
    auto sink = std::make_shared<RecordingSink>();
    EXPECT_TRUE(
        core.Submit(Request(id, std::move(prompt), max_tokens, std::move(stop), sink)).ok());
    return sink;
  }
  // Plans a step; false when there is nothing to run.
  bool Plan() {
    events.clear();
    step = core.PlanStep(&events);
    return step.group != nullptr && !step.idle();
  }
  // Runs the planned step on the fake group (or applies `outcome` instead) and delivers.
  void Apply(std::optional<StepOutcome> outcome = std::nullopt) {
    if (!outcome) outcome = group->Step(step.plan);
    core.ApplyResult(step, *outcome, &events);
    Deliver(events);
  }
  bool StepOnce() {
    if (!Plan()) {
      Deliver(events);
      return false;
    }
    Apply();
    return true;
  }
  int RunUntilIdle(int max_steps = 1000) {
    int n = 0;
    while (n < max_steps && StepOnce()) ++n;
    return n;
  }
  SchedulerCore core;
  std::shared_ptr<FakeGroup> group;
  PlannedStep step;
  SinkEvents events;
};

std::vector<uint64_t> WorkIds(const StepPlan& plan) {
  std::vector<uint64_t> ids;
  for (const WorkItem& w : plan.work) ids.push_back(w.seq_id.value());
  return ids;
}

std::vector<uint64_t> ReleaseIds(const StepPlan& plan) {
  std::vector<uint64_t> ids;
  for (SequenceId id : plan.release) ids.push_back(id.value());
  std::sort(ids.begin(), ids.end());
  return ids;
}

// ----------------------------------------------------------------------------------------------
// Planning and result application, driven directly.

TEST(SchedulerCoreTest, StopStringIsCutAndNeverPartiallyEmitted) {
  CoreHarness h({Bytes("Hello, world! The END is here")});
  auto sink = h.Submit("a", Bytes("prompt"), 100, {"END"});
  h.RunUntilIdle();
  ASSERT_TRUE(sink->done);
  EXPECT_EQ(sink->finish.reason, FinishReason::kStop);
  EXPECT_EQ(sink->text, "Hello, world! The ");
}

TEST(SchedulerCoreTest, MaxTokensGivesLengthAndExactCount) {
  CoreHarness h({Bytes("abcdefghij")});
  auto sink = h.Submit("a", Bytes("p"), 7);
  EXPECT_EQ(h.RunUntilIdle(), 8);  // 7 tokens, then the release of the KV
  ASSERT_TRUE(sink->done);
  EXPECT_EQ(sink->finish.reason, FinishReason::kLength);
  EXPECT_EQ(sink->text, "abcdefg");
  EXPECT_EQ(sink->finish.completion_tokens, 7);
  EXPECT_EQ(sink->finish.prompt_tokens, 1);
  EXPECT_EQ(sink->finishes, 1);
}

TEST(SchedulerCoreTest, EosEndsWithoutEmittingIt) {
  CoreHarness h({{'o', 'k', 256, 'x'}});
  auto sink = h.Submit("a", Bytes("p"), 10);
  h.RunUntilIdle();
  ASSERT_TRUE(sink->done);
  EXPECT_EQ(sink->finish.reason, FinishReason::kEos);
  EXPECT_EQ(sink->text, "ok");
  EXPECT_EQ(sink->tokens, (std::vector<int32_t>{'o', 'k'}));
}

TEST(SchedulerCoreTest, MultiByteCharactersAreEmittedWhole) {
  CoreHarness h({{0xE2, 0x82, 0xAC, 'x'}});  // "€x"
  auto sink = h.Submit("a", Bytes("p"), 4);
  // After the first two bytes nothing may be emitted yet.
  ASSERT_TRUE(h.StepOnce());
  ASSERT_TRUE(h.StepOnce());
  EXPECT_EQ(sink->text, "");
  h.RunUntilIdle();
  EXPECT_EQ(sink->text,
            "\xE2\x82\xAC"
            "x");
}

TEST(SchedulerCoreTest, ChunkedPrefillReportsProgressAndKeepsPositions) {
  SchedulerOptions o;
  o.chunk_tokens = 4;
  CoreHarness h({Bytes("z")}, o);
  auto sink = h.Submit("a", std::vector<int32_t>(10, 'q'), 2);
  h.RunUntilIdle();
  ASSERT_TRUE(sink->done);
  EXPECT_EQ(sink->progress, (std::vector<int>{4, 8, 10}));
  EXPECT_EQ(sink->text, "zz");
  std::vector<int> starts, sizes;
  for (const StepPlan& p : h.group->plans()) {
    if (p.work.empty()) continue;
    starts.push_back(p.work[0].start_pos);
    sizes.push_back(static_cast<int>(p.work[0].tokens.size()));
  }
  EXPECT_EQ(starts, (std::vector<int>{0, 4, 8, 10}));
  EXPECT_EQ(sizes, (std::vector<int>{4, 4, 2, 1}));
}

// Prefill cuts that do not end a prompt fall on multiples of 64 and leave at least 64 tokens to
// the last chunk, so HiP's query blocks and tail queries see what a one-step prefill sees
// (worker/hip_attention.h HipStepInfo::tail) whatever shares the budget.
TEST(SchedulerCoreTest, PrefillCutsAreAlignedAndLeaveATail) {
  SchedulerOptions o;
  o.chunk_tokens = 200;
  CoreHarness h({Bytes("z"), Bytes("z")}, o);
  h.group->set_max_context(4096);
  h.Submit("a", std::vector<int32_t>(300, 'q'), 1);
  h.Submit("b", std::vector<int32_t>(100, 'q'), 1);
  h.RunUntilIdle();
  std::map<uint64_t, std::vector<std::pair<int, int>>> chunks;  // seq -> (start, tokens)
  for (const StepPlan& p : h.group->plans()) {
    for (const WorkItem& w : p.work) {
      chunks[w.seq_id.value()].push_back({w.start_pos, static_cast<int>(w.tokens.size())});
    }
  }
  ASSERT_EQ(chunks.size(), 2u);
  // a: 200 of budget would cut at 200; the cut falls back to 192. b waits rather than take the
  // 8 (then 92) tokens left, which allow no aligned cut leaving 64 tokens; then runs whole.
  EXPECT_EQ(chunks.begin()->second, (std::vector<std::pair<int, int>>{{0, 192}, {192, 108}}));
  EXPECT_EQ(std::next(chunks.begin())->second, (std::vector<std::pair<int, int>>{{0, 100}}));
}

TEST(SchedulerCoreTest, PrefillBudgetIsSharedAndDecodeIsNotHeldBack) {
  SchedulerOptions o;
  o.chunk_tokens = 4;
  CoreHarness h({Bytes("xyz")}, o);
  h.Submit("a", Bytes("pp"), 3);
  ASSERT_TRUE(h.StepOnce());  // a prefills (2 tokens) and samples
  h.Submit("b", std::vector<int32_t>(6, 'q'), 3);
  h.Submit("c", std::vector<int32_t>(6, 'q'), 3);
  ASSERT_TRUE(h.Plan());
  // a decodes one token; b takes the whole prefill budget; c waits.
  ASSERT_EQ(WorkIds(h.step.plan), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(h.step.plan.work[0].tokens.size(), 1u);
  EXPECT_TRUE(h.step.plan.work[0].sample);
  EXPECT_EQ(h.step.plan.work[1].tokens.size(), 4u);
  EXPECT_FALSE(h.step.plan.work[1].sample);
  // Every item carries its sequence's admission reservation (prompt + max_tokens), which the
  // CUDA pool reserves up front.
  EXPECT_EQ(h.step.plan.work[0].reserve_tokens, 2 + 3);
  EXPECT_EQ(h.step.plan.work[1].reserve_tokens, 6 + 3);
  h.Apply();
}

TEST(SchedulerCoreTest, ContextLimitGivesLength) {
  CoreHarness h({Bytes("y")});  // fake max_context = 64
  auto sink = h.Submit("a", std::vector<int32_t>(60, 'q'), 100);
  h.RunUntilIdle();
  ASSERT_TRUE(sink->done);
  EXPECT_EQ(sink->finish.reason, FinishReason::kLength);
  EXPECT_EQ(sink->finish.completion_tokens, 4);
}

TEST(SchedulerCoreTest, FinishedSequencesAreReleased) {
  CoreHarness h({Bytes("ab")});
  auto s1 = h.Submit("a", Bytes("p"), 2);
  auto s2 = h.Submit("b", Bytes("q"), 3);
  h.RunUntilIdle();
  ASSERT_TRUE(s1->done);
  ASSERT_TRUE(s2->done);
  auto released = h.group->released();
  std::sort(released.begin(), released.end());
  EXPECT_EQ(released, (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(h.core.HasWork());
  EXPECT_EQ(h.core.Stats().active, 0);
  EXPECT_EQ(h.core.Stats().kv_tokens_reserved, 0);
  EXPECT_EQ(h.core.Stats().generated_tokens, 5u);
}

TEST(SchedulerCoreTest, MaxBatchAndKvBudgetLimitAdmission) {
  SchedulerOptions o;
  o.max_batch = 2;
  o.kv_budget_tokens = 100;
  CoreHarness h({Bytes("abc")}, o);
  h.Submit("a", Bytes("p"), 3);
  h.Submit("b", Bytes("p"), 3);
  h.Submit("c", Bytes("p"), 3);
  ASSERT_TRUE(h.Plan());
  EXPECT_EQ(WorkIds(h.step.plan), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(h.core.Stats().queued, 1);
  EXPECT_EQ(h.core.Stats().kv_tokens_reserved, 8);
  h.Apply();

  SchedulerOptions tight;
  tight.kv_budget_tokens = 6;  // one request of 4 at a time
  CoreHarness t({Bytes("abc")}, tight);
  t.Submit("a", Bytes("p"), 3);
  t.Submit("b", Bytes("p"), 3);
  ASSERT_TRUE(t.Plan());
  EXPECT_EQ(WorkIds(t.step.plan), (std::vector<uint64_t>{1}));
  t.Apply();
}

TEST(SchedulerCoreTest, QueueLimitIsResourceExhausted) {
  SchedulerOptions o;
  o.max_queue = 2;
  SchedulerCore core(o);  // no group: requests stay queued
  EXPECT_TRUE(core.Submit(Request("a", {1}, 1, {}, nullptr)).ok());
  EXPECT_TRUE(core.Submit(Request("b", {1}, 1, {}, nullptr)).ok());
  absl::Status full = core.Submit(Request("c", {1}, 1, {}, nullptr));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find("queue is full"), std::string::npos) << full;
  EXPECT_EQ(core.Stats().queued, 2);
  // Without a group nothing is planned.
  SinkEvents events;
  PlannedStep step = core.PlanStep(&events);
  EXPECT_EQ(step.group, nullptr);
  EXPECT_TRUE(events.empty());
  EXPECT_FALSE(core.HasWork());
  // Room again once a queued request is aborted.
  EXPECT_EQ(core.Abort({"a"}, &events), 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, SinkEvent::Kind::kFinish);
  EXPECT_EQ(events[0].finish.reason, FinishReason::kAbort);
  EXPECT_TRUE(core.Submit(Request("c", {1}, 1, {}, nullptr)).ok());
}

TEST(SchedulerCoreTest, BudgetAndDuplicateIds) {
  SchedulerOptions o;
  o.kv_budget_tokens = 10;
  SchedulerCore core(o);
  absl::Status st = core.Submit(Request("big", std::vector<int32_t>(8, 1), 5, {}, nullptr));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("13"), std::string::npos) << st;
  EXPECT_TRUE(core.Submit(Request("dup", {1}, 1, {}, nullptr)).ok());
  EXPECT_EQ(core.Submit(Request("dup", {1}, 1, {}, nullptr)).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(SchedulerCoreTest, QueuedRequestBeyondTheGroupsCapacityFails) {
  SchedulerCore core(SchedulerOptions{});
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(core.Submit(Request("a", std::vector<int32_t>(20, 'q'), 10, {}, sink)).ok());
  auto group = std::make_shared<FakeGroup>(std::vector<std::vector<int32_t>>{Bytes("x")});
  group->set_kv_capacity(16);  // smaller than the 30 tokens the request needs
  SinkEvents events;
  core.SetWorkerGroup(group, ByteTokenizer(), &events);
  PlannedStep step = core.PlanStep(&events);
  EXPECT_TRUE(step.idle());
  Deliver(events);
  ASSERT_TRUE(sink->done);
  EXPECT_EQ(sink->finish.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(core.HasWork());
}

// The rejected-step branch: the error names one sequence in a field; only it fails.
TEST(SchedulerCoreTest, RejectedStepFailsOnlyTheNamedSequence) {
  CoreHarness h({Bytes("abcdef")});
  auto a = h.Submit("a", Bytes("pa"), 4);
  auto b = h.Submit("b", Bytes("pb"), 4);
  auto c = h.Submit("c", Bytes("pc"), 4);
  ASSERT_TRUE(h.StepOnce());  // prefill all three; each sampled 'a'
  ASSERT_TRUE(h.Plan());
  ASSERT_EQ(WorkIds(h.step.plan), (std::vector<uint64_t>{1, 2, 3}));
  const StepPlan rejected = h.step.plan;
  StepOutcome outcome;
  // The message names another sequence on purpose: only the field counts.
  outcome.status = absl::InvalidArgumentError("sequence 1: token id 999 outside the vocabulary");
  outcome.failed_seq = Seq(2);
  h.Apply(outcome);
  ASSERT_TRUE(b->done);
  EXPECT_EQ(b->finish.reason, FinishReason::kError);
  EXPECT_EQ(b->finish.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(b->text, "a");
  EXPECT_FALSE(a->done);
  EXPECT_FALSE(c->done);
  EXPECT_EQ(h.core.Stats().active, 2);
  EXPECT_EQ(h.core.Stats().steps, 1u);  // the rejected step does not count

  // Next step: b's KV is released; a and c retry the same work at the same positions.
  ASSERT_TRUE(h.Plan());
  EXPECT_EQ(ReleaseIds(h.step.plan), (std::vector<uint64_t>{2}));
  ASSERT_EQ(WorkIds(h.step.plan), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(h.step.plan.work[0].start_pos, rejected.work[0].start_pos);
  EXPECT_EQ(h.step.plan.work[0].tokens, rejected.work[0].tokens);
  EXPECT_EQ(h.step.plan.work[0].sample_index, rejected.work[0].sample_index);
  EXPECT_EQ(h.step.plan.work[1].start_pos, rejected.work[2].start_pos);
  h.Apply();
  h.RunUntilIdle();
  ASSERT_TRUE(a->done);
  ASSERT_TRUE(c->done);
  EXPECT_EQ(a->finish.reason, FinishReason::kLength);
  EXPECT_EQ(a->text, "abcd");
  EXPECT_EQ(c->text, "abcd");
  EXPECT_EQ(b->finishes, 1);
}

TEST(SchedulerCoreTest, RejectedFirstStepOfASequenceReleasesNothing) {
  CoreHarness h({Bytes("abc")});
  auto a = h.Submit("a", Bytes("pa"), 2);
  auto b = h.Submit("b", Bytes("pb"), 2);
  ASSERT_TRUE(h.Plan());
  StepOutcome outcome;
  outcome.status = absl::FailedPreconditionError("bad positions");
  outcome.failed_seq = Seq(1);
  h.Apply(outcome);
  ASSERT_TRUE(a->done);
  EXPECT_EQ(a->finish.status.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(h.Plan());
  EXPECT_TRUE(h.step.plan.release.empty());  // a never reached the workers' KV
  EXPECT_EQ(WorkIds(h.step.plan), (std::vector<uint64_t>{2}));
  h.Apply();
  h.RunUntilIdle();
  EXPECT_EQ(b->text, "ab");
}

// An error naming no sequence fails every sequence in the step, even when its text looks like
// it names one; requests not in the step go on.
TEST(SchedulerCoreTest, RejectedStepNamingNoSequenceFailsTheWholeStep) {
  SchedulerOptions o;
  o.max_batch = 2;
  CoreHarness h({Bytes("xyz")}, o);
  auto a = h.Submit("a", Bytes("p"), 2);
  auto b = h.Submit("b", Bytes("p"), 2);
  auto c = h.Submit("c", Bytes("p"), 2);
  ASSERT_TRUE(h.Plan());
  ASSERT_EQ(WorkIds(h.step.plan), (std::vector<uint64_t>{1, 2}));
  StepOutcome outcome;
  outcome.status = absl::InternalError("sequence 2: backend failed");
  h.Apply(outcome);
  ASSERT_TRUE(a->done);
  ASSERT_TRUE(b->done);
  EXPECT_EQ(a->finish.reason, FinishReason::kError);
  EXPECT_EQ(a->finish.status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(b->finish.status.code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(c->done);
  h.RunUntilIdle();
  ASSERT_TRUE(c->done);
  EXPECT_EQ(c->finish.reason, FinishReason::kLength);
  EXPECT_EQ(c->text, "xy");
  EXPECT_TRUE(h.group->healthy());
}

TEST(SchedulerCoreTest, RejectedStepNamingASequenceNotInTheStepFailsTheWholeStep) {
  CoreHarness h({Bytes("xyz")});
  auto a = h.Submit("a", Bytes("p"), 2);
  auto b = h.Submit("b", Bytes("p"), 2);
  ASSERT_TRUE(h.Plan());
  StepOutcome outcome;
  outcome.status = absl::InvalidArgumentError("unknown");
  outcome.failed_seq = Seq(77);
  h.Apply(outcome);
  EXPECT_TRUE(a->done);
  EXPECT_TRUE(b->done);
  EXPECT_FALSE(h.core.HasWork());
}

TEST(SchedulerCoreTest, UnavailableFailsEveryRequestAndDropsTheGroup) {
  SchedulerOptions o;
  o.max_batch = 1;
  o.recovery_timeout_s = 0;  // recovery off
  CoreHarness h({Bytes("abcdefghijklmnop")}, o);
  auto a = h.Submit("a", Bytes("p"), 50);
  auto queued = h.Submit("b", Bytes("p"), 50);
  ASSERT_TRUE(h.StepOnce());
  h.group->BreakNext();
  ASSERT_TRUE(h.Plan());
  h.Apply();
  ASSERT_TRUE(a->done);
  ASSERT_TRUE(queued->done);
  EXPECT_EQ(a->finish.reason, FinishReason::kError);
  EXPECT_EQ(a->finish.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(queued->finish.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(h.core.HasWork());
  SinkEvents events;
  EXPECT_EQ(h.core.PlanStep(&events).group, nullptr);
}

TEST(SchedulerCoreTest, AbortFinishesWithAbortAndReleasesKv) {
  CoreHarness h({Bytes("abcdefghijklmnop")});
  auto a = h.Submit("a", Bytes("p"), 100000);
  ASSERT_TRUE(h.StepOnce());
  ASSERT_TRUE(h.StepOnce());
  SinkEvents events;
  EXPECT_EQ(h.core.Abort({"a", "zzz"}, &events), 1);
  EXPECT_TRUE(events.empty());                 // active: ends at the next plan
  EXPECT_EQ(h.core.Abort({"a"}, &events), 1);  // still live until the next plan
  ASSERT_TRUE(h.Plan());                       // only the release
  EXPECT_TRUE(h.step.plan.work.empty());
  EXPECT_EQ(ReleaseIds(h.step.plan), (std::vector<uint64_t>{1}));
  ASSERT_EQ(h.events.size(), 1u);
  Deliver(h.events);
  ASSERT_TRUE(a->done);
  EXPECT_EQ(a->finish.reason, FinishReason::kAbort);
  EXPECT_EQ(a->finish.completion_tokens, 2);
  EXPECT_EQ(a->text, "ab");
}

TEST(SchedulerCoreTest, ReconfigurationFailsActiveRequestsAndIgnoresTheOldStep) {
  SchedulerOptions o;
  o.recovery_timeout_s = 0;  // recovery off
  CoreHarness h({Bytes("abcdef")}, o);
  auto a = h.Submit("a", Bytes("p"), 5);
  ASSERT_TRUE(h.Plan());
  StepOutcome outcome = h.group->Step(h.step.plan);
  SinkEvents events;
  auto fresh = std::make_shared<FakeGroup>(std::vector<std::vector<int32_t>>{Bytes("z")});
  h.core.SetWorkerGroup(fresh, ByteTokenizer(), &events);
  Deliver(events);
  ASSERT_TRUE(a->done);
  EXPECT_EQ(a->finish.status.code(), absl::StatusCode::kUnavailable);
  events.clear();
  h.core.ApplyResult(h.step, outcome, &events);  // planned for the old group
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(a->finishes, 1);
  EXPECT_EQ(h.core.Stats().steps, 0u);
}

TEST(SchedulerCoreTest, MissingTokenFailsThatSequence) {
  CoreHarness h({Bytes("abc")});
  auto a = h.Submit("a", Bytes("p"), 3);
  auto b = h.Submit("b", Bytes("p"), 3);
  ASSERT_TRUE(h.Plan());
  StepOutcome outcome = h.group->Step(h.step.plan);
  ASSERT_EQ(outcome.tokens.size(), 2u);
  outcome.tokens.erase(outcome.tokens.begin());  // nothing for a
  h.Apply(outcome);
  ASSERT_TRUE(a->done);
  EXPECT_EQ(a->finish.status.code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(b->done);
  EXPECT_EQ(b->text, "a");
}

// ----------------------------------------------------------------------------------------------
// The threaded Scheduler around the core. These wait on the sinks' condition variables.

struct Harness {
  explicit Harness(std::vector<std::vector<int32_t>> scripts, SchedulerOptions o = {})
      : scheduler(o), group(std::make_shared<FakeGroup>(std::move(scripts))) {
    scheduler.SetWorkerGroup(group, ByteTokenizer());
  }
  std::shared_ptr<RecordingSink> Submit(const std::string& id, std::vector<int32_t> prompt,
                                        int max_tokens, std::vector<std::string> stop = {}) {
    auto sink = std::make_shared<RecordingSink>();
    EXPECT_TRUE(
        scheduler.Submit(Request(id, std::move(prompt), max_tokens, std::move(stop), sink)).ok());
    return sink;
  }
  Scheduler scheduler;
  std::shared_ptr<FakeGroup> group;
};

TEST(SchedulerTest, GeneratesOnItsLoopThread) {
  Harness h({Bytes("Hello, world! The END is here")});
  auto sink = h.Submit("a", Bytes("prompt"), 100, {"END"});
  ASSERT_TRUE(sink->Wait());
  EXPECT_EQ(sink->finish.reason, FinishReason::kStop);
  EXPECT_EQ(sink->text, "Hello, world! The ");
}

TEST(SchedulerTest, SinksRunOutsideTheLock) {
  Harness h({Bytes("abcdef")});
  auto sink = std::make_shared<RecordingSink>();
  int seen_active = -1;
  // Would deadlock if the scheduler's lock were held while the sink runs.
  sink->on_tokens = [&] { seen_active = h.scheduler.Stats().active; };
  ASSERT_TRUE(h.scheduler.Submit(Request("a", Bytes("p"), 3, {}, sink)).ok());
  ASSERT_TRUE(sink->Wait());
  EXPECT_GE(seen_active, 0);
  EXPECT_EQ(sink->text, "abc");
}

TEST(SchedulerTest, QueueLimitAndBudgetAreResourceExhausted) {
  SchedulerOptions o;
  o.kv_budget_tokens = 10;
  o.max_queue = 1;
  Scheduler s(o);  // no group: requests stay queued
  absl::Status st = s.Submit(Request("big", std::vector<int32_t>(8, 1), 5, {}, nullptr));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("13"), std::string::npos) << st;
  EXPECT_TRUE(s.Submit(Request("dup", {1}, 1, {}, nullptr)).ok());
  st = s.Submit(Request("other", {1}, 1, {}, nullptr));
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_EQ(s.Stats().queued, 1);
}

TEST(SchedulerTest, BrokenGroupFailsRequestsWithUnavailable) {
  SchedulerOptions o;
  o.recovery_timeout_s = 0;  // recovery off
  Harness h({Bytes("abcdefghijklmnop")}, o);
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

TEST(SchedulerTest, StopFailsPendingRequests) {
  auto sink = std::make_shared<RecordingSink>();
  {
    Scheduler s(SchedulerOptions{});  // no group: stays queued
    ASSERT_TRUE(s.Submit(Request("a", {1}, 1, {}, sink)).ok());
    s.Stop();
    ASSERT_TRUE(sink->done);
    EXPECT_EQ(sink->finish.status.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(s.Submit(Request("b", {1}, 1, {}, nullptr)).code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(sink->finishes, 1);
}

// ----------------------------------------------------------------------------------------------
// Recovery from a lost worker group (SchedulerOptions::recovery_timeout_s).

// A group whose sampled token depends on the whole history in its KV and on the sample index,
// like a real model with counter-based sampling: a resumed sequence gets an undisturbed run's
// tokens only if its history is re-prefilled exactly and sample_index continues. Checks that
// positions are contiguous per sequence.
class HistoryGroup final : public WorkerGroup {
 public:
  HistoryGroup() {
    info_.name = "history";
    info_.max_context = 4096;
    info_.vocab_size = 259;
    info_.tokenizer = MakeByteTokenizerSpec();
  }
  int world_size() const override { return 1; }
  const GroupModelInfo& model_info() const override { return info_; }
  bool healthy() const override { return !broken_; }
  StepOutcome Step(const StepPlan& plan) override {
    plans.push_back(plan);
    for (SequenceId id : plan.release) kv_.erase(id.value());
    StepOutcome out;
    if (break_after_ >= 0 && static_cast<int>(plans.size()) > break_after_) {
      broken_ = true;
      out.status = absl::UnavailableError("worker rank 1 died");
      return out;
    }
    for (const WorkItem& w : plan.work) {
      std::vector<int32_t>& kv = kv_[w.seq_id.value()];
      EXPECT_EQ(w.start_pos, static_cast<int32_t>(kv.size())) << "positions must be contiguous";
      kv.insert(kv.end(), w.tokens.begin(), w.tokens.end());
      if (!w.sample) continue;
      uint64_t h = 1469598103934665603ull ^ (w.sampling.seed * 31 + w.sample_index);
      for (int32_t t : kv) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
      out.tokens.push_back(StepToken{w.seq_id, static_cast<int32_t>('a' + h % 26), 0.f});
    }
    return out;
  }
  void BreakAfter(int steps) { break_after_ = steps; }
  std::vector<StepPlan> plans;

 private:
  GroupModelInfo info_;
  std::map<uint64_t, std::vector<int32_t>> kv_;
  int break_after_ = -1;
  bool broken_ = false;
};

struct RecoveryRun {
  std::shared_ptr<RecordingSink> a, b;
};

// Two sequences (a: a 10-token prompt in chunks of 4, b: 2 tokens), 12 tokens each; the first
// group breaks after `break_after` steps (-1 = never) and a new one is installed.
RecoveryRun RunWithBreak(int break_after, SchedulerCore* core,
                         std::vector<std::shared_ptr<HistoryGroup>>* groups) {
  SinkEvents events;
  groups->push_back(std::make_shared<HistoryGroup>());
  groups->back()->BreakAfter(break_after);
  core->SetWorkerGroup(groups->back(), ByteTokenizer(), &events);
  RecoveryRun r{std::make_shared<RecordingSink>(), std::make_shared<RecordingSink>()};
  SequenceRequest ra = Request("a", Bytes("0123456789"), 12, {}, r.a);
  ra.sampling.seed = 7;
  SequenceRequest rb = Request("b", Bytes("xy"), 12, {}, r.b);
  rb.sampling.seed = 8;
  EXPECT_TRUE(core->Submit(std::move(ra)).ok());
  EXPECT_TRUE(core->Submit(std::move(rb)).ok());
  for (int i = 0; i < 100 && core->HasWork(); ++i) {
    events.clear();
    PlannedStep step = core->PlanStep(&events);
    StepOutcome outcome = step.group->Step(step.plan);
    core->ApplyResult(step, outcome, &events);
    Deliver(events);
    if (!outcome.status.ok()) {
      // Lost: nothing runs, nobody finished, the wait is bounded.
      EXPECT_FALSE(core->HasWork());
      EXPECT_FALSE(r.a->done);
      EXPECT_FALSE(r.b->done);
      EXPECT_TRUE(core->recovery_deadline().has_value());
      events.clear();
      EXPECT_EQ(core->PlanStep(&events).group, nullptr);
      groups->push_back(std::make_shared<HistoryGroup>());
      core->SetWorkerGroup(groups->back(), ByteTokenizer(), &events);
      Deliver(events);
      EXPECT_FALSE(core->recovery_deadline().has_value());
    }
  }
  return r;
}

TEST(SchedulerRecoveryTest, LostGroupResumesWithTheUndisturbedTokens) {
  SchedulerOptions o;
  o.chunk_tokens = 4;
  std::vector<std::shared_ptr<HistoryGroup>> ref_groups;
  SchedulerCore ref_core(o);
  RecoveryRun ref = RunWithBreak(-1, &ref_core, &ref_groups);
  ASSERT_TRUE(ref.a->done && ref.b->done);
  ASSERT_EQ(ref.a->tokens.size(), 12u);
  ASSERT_EQ(ref.b->tokens.size(), 12u);
  EXPECT_EQ(ref.a->progress, (std::vector<int>{4, 8, 10}));
  // Break during a's prefill (step 1), right after its first token (3), and mid-decode (7).
  for (int break_after : {1, 3, 7}) {
    SCOPED_TRACE(testing::Message() << "break after " << break_after << " steps");
    SchedulerCore core(o);
    std::vector<std::shared_ptr<HistoryGroup>> groups;
    RecoveryRun run = RunWithBreak(break_after, &core, &groups);
    ASSERT_EQ(groups.size(), 2u);
    ASSERT_TRUE(run.a->done && run.b->done);
    EXPECT_TRUE(run.a->finish.status.ok()) << run.a->finish.status;
    EXPECT_EQ(run.a->finish.reason, FinishReason::kLength);
    EXPECT_EQ(run.a->tokens, ref.a->tokens);
    EXPECT_EQ(run.b->tokens, ref.b->tokens);
    EXPECT_EQ(run.a->text, ref.a->text);
    // Progress never goes back nor repeats.
    EXPECT_EQ(run.a->progress, (std::vector<int>{4, 8, 10}));
    // The new group's first work for b is its history from position 0, sampling on.
    const StepPlan& first = groups[1]->plans.at(0);
    EXPECT_TRUE(first.release.empty());
    for (const WorkItem& w : first.work) EXPECT_EQ(w.start_pos, 0);
    const int b_done = static_cast<int>(
        std::count_if(groups[0]->plans.begin(), groups[0]->plans.end() - 1, [](const StepPlan& p) {
          for (const WorkItem& w : p.work) {
            if (w.seq_id == Seq(2) && w.sample) return true;
          }
          return false;
        }));
    for (const WorkItem& w : first.work) {
      if (w.seq_id != Seq(2)) continue;
      std::vector<int32_t> history = Bytes("xy");
      history.insert(history.end(), ref.b->tokens.begin(), ref.b->tokens.begin() + b_done);
      EXPECT_EQ(w.tokens, history);
      EXPECT_EQ(w.sample_index, static_cast<uint64_t>(b_done));
      EXPECT_TRUE(w.sample);
    }
    EXPECT_EQ(core.Stats().kv_tokens_reserved, 0);
  }
}

TEST(SchedulerRecoveryTest, PastTheTimeoutEveryRequestFailsUnavailable) {
  SchedulerOptions o;
  o.max_batch = 1;
  o.recovery_timeout_s = 30;
  CoreHarness h({Bytes("abcdefghijklmnop")}, o);
  auto a = h.Submit("a", Bytes("p"), 50);
  auto queued = h.Submit("b", Bytes("p"), 50);
  ASSERT_TRUE(h.StepOnce());
  h.group->BreakNext();
  ASSERT_TRUE(h.Plan());
  h.Apply();
  EXPECT_FALSE(a->done);
  EXPECT_FALSE(queued->done);
  ASSERT_TRUE(h.core.recovery_deadline().has_value());
  const Clock::time_point deadline = *h.core.recovery_deadline();
  EXPECT_GT(deadline, Clock::now() + std::chrono::seconds(29));
  SinkEvents events;
  h.core.ExpireRecovery(deadline - std::chrono::milliseconds(1), &events);
  EXPECT_TRUE(events.empty());
  h.core.ExpireRecovery(deadline, &events);
  Deliver(events);
  ASSERT_TRUE(a->done);
  ASSERT_TRUE(queued->done);
  EXPECT_EQ(a->finish.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(a->finish.status.message().find("recovery timeout (30 s)"), std::string::npos)
      << a->finish.status;
  EXPECT_EQ(queued->finish.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(h.core.Stats().kv_tokens_reserved, 0);
  EXPECT_FALSE(h.core.recovery_deadline().has_value());
}

TEST(SchedulerRecoveryTest, AbortWhileWaitingEndsAtOnceAndResumesTheOthers) {
  CoreHarness h({Bytes("abcdefghijklmnop")});
  auto a = h.Submit("a", Bytes("p"), 6);
  auto b = h.Submit("b", Bytes("q"), 6);
  ASSERT_TRUE(h.StepOnce());
  ASSERT_TRUE(h.StepOnce());
  SinkEvents events;
  h.core.SetWorkerGroup(nullptr, nullptr, &events);  // the group was dropped
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(h.core.Abort({"a"}, &events), 1);
  Deliver(events);
  ASSERT_TRUE(a->done);
  EXPECT_EQ(a->finish.reason, FinishReason::kAbort);
  EXPECT_EQ(a->text, "ab");
  EXPECT_FALSE(b->done);
  h.group = std::make_shared<FakeGroup>(std::vector<std::vector<int32_t>>{Bytes("zzcdef")});
  events.clear();
  h.core.SetWorkerGroup(h.group, ByteTokenizer(), &events);
  EXPECT_TRUE(events.empty());
  ASSERT_TRUE(h.Plan());
  // Only b resumes; nothing is released on the new group (a's KV went with the old one).
  EXPECT_TRUE(h.step.plan.release.empty());
  ASSERT_EQ(h.step.plan.work.size(), 1u);
  EXPECT_EQ(h.step.plan.work[0].tokens, Bytes("qab"));
  EXPECT_EQ(h.step.plan.work[0].start_pos, 0);
  EXPECT_EQ(h.step.plan.work[0].sample_index, 2u);
}

TEST(SchedulerRecoveryTest, AnotherModelFailsTheWaitingRequests) {
  CoreHarness h({Bytes("abcdefghijklmnop")});
  auto a = h.Submit("a", Bytes("p"), 6);
  ASSERT_TRUE(h.StepOnce());
  SinkEvents events;
  h.core.SetWorkerGroup(nullptr, nullptr, &events);
  EXPECT_TRUE(events.empty());
  auto other = std::make_shared<HistoryGroup>();  // model "history", not the fake's
  h.core.SetWorkerGroup(other, ByteTokenizer(), &events);
  Deliver(events);
  ASSERT_TRUE(a->done);
  EXPECT_EQ(a->finish.status.code(), absl::StatusCode::kUnavailable);
}

TEST(SchedulerRecoveryTest, ThreadedLoopResumesOnANewGroupOrFailsAtTheDeadline) {
  SchedulerOptions o;
  o.recovery_timeout_s = 0.3;
  Harness h({Bytes("abcdefghijklmnop")}, o);
  h.group->Hold(true);
  auto sink = h.Submit("a", Bytes("p"), 8);
  h.group->BreakNext();
  h.group->Hold(false);
  // No new group: the loop wakes at the deadline and fails the request.
  const Clock::time_point start = Clock::now();
  ASSERT_TRUE(sink->Wait());
  const double waited = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(sink->finish.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_GE(waited, 0.25);
  EXPECT_LT(waited, 3.0);

  // A new group within the bound: the request completes.
  auto fresh = std::make_shared<FakeGroup>(std::vector<std::vector<int32_t>>{Bytes("abcdefgh")});
  h.scheduler.SetWorkerGroup(fresh, ByteTokenizer());
  auto second = h.Submit("b", Bytes("p"), 8);
  ASSERT_TRUE(second->Wait());
  EXPECT_TRUE(second->finish.status.ok()) << second->finish.status;
  EXPECT_EQ(second->text, "abcdefgh");
}

}  // namespace
}  // namespace hipserve::coordinator
