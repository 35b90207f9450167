// Scheduler: admits requests, builds steps (prefill chunks + decode tokens) and turns sampled
// tokens into text, stop decisions and events for each request's sink.
//
// Two layers:
//  - SchedulerCore holds the queued and active sequences and makes every decision: PlanStep
//    (queue and active state -> the next step) and ApplyResult (a step's outcome -> state
//    changes and the sink events they cause). No threads, locks or clocks to wait on; tests
//    drive it step by step.
//  - Scheduler runs a SchedulerCore on one loop thread: plans under its lock, runs the step on
//    the WorkerGroup and delivers sink events with the lock released.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "coordinator/worker_group.h"

namespace hipserve::coordinator {

using Clock = std::chrono::steady_clock;

enum class FinishReason { kStop, kLength, kEos, kAbort, kError };

struct RequestTiming {
  double queue_s = 0, ttft_s = 0, total_s = 0, decode_tokens_per_s = 0;
};

// The HiP settings a request runs with: the server's configuration with the request's
// overrides applied (reported in its final message).
struct AppliedHip {
  std::string attention;                   // "dense" or "hip"; empty = not reported
  std::vector<int> mask_refresh_interval;  // hip only
  int k = 0;                               // hip only: final keep of layers without an override
  bool overridden = false;                 // the request changed a HiP setting
};

struct FinishInfo {
  FinishReason reason = FinishReason::kStop;
  RequestTiming timing;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Not OK: the request failed (the RPC ends with this status, e.g. UNAVAILABLE).
  absl::Status status;
  AppliedHip hip;  // SequenceRequest::applied_hip
};

// Receives one request's events, in order, OnFinish last. Called without the scheduler's lock
// held (a sink may call Submit, Abort or Stats), from the loop thread, or after the loop has
// ended from the thread calling Stop, SetWorkerGroup or Abort.
class SequenceSink {
 public:
  virtual ~SequenceSink() = default;
  virtual void OnPrefillProgress(int processed, int total) {}
  // New tokens and the text that became final with them (may be empty while a multi-byte
  // character or a possible stop string is pending).
  virtual void OnTokens(const std::vector<int32_t>& ids, const std::string& text,
                        int completion_tokens) = 0;
  virtual void OnFinish(const FinishInfo& info) = 0;
};

struct SequenceRequest {
  std::string request_id;
  std::vector<int32_t> prompt;
  SamplingSpec sampling;
  int max_tokens = 16;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool report_prefill_progress = false;
  // Per-request HiP decode refresh intervals (validated), empty = the server's.
  std::vector<int> hip_mask_refresh_interval;
  // Per-request HiP final keep (validated), 0 = the server's.
  int hip_k = 0;
  AppliedHip applied_hip;  // reported in FinishInfo::hip
  Clock::time_point arrival = Clock::now();
  std::shared_ptr<SequenceSink> sink;
};

struct SchedulerOptions {
  int max_batch = 32;                  // sequences per step
  int chunk_tokens = 512;              // prefill tokens per step over all sequences
  int max_queue = 256;                 // waiting requests; more -> RESOURCE_EXHAUSTED
  int64_t kv_budget_tokens = 1 << 20;  // admitted prompt+max_tokens over active sequences
  double heartbeat_s = 5.0;            // idle heartbeat on the step stream
  // When the worker group is lost (a worker died, a step failed with UNAVAILABLE, or the group
  // was replaced), running requests keep their token history (prompt + tokens generated so
  // far) and wait up to this long, in seconds, for a new group; on it they are re-prefilled
  // and continue where they stopped (sampling is keyed by (seed, token index), so a seeded
  // request gives the tokens of an undisturbed run). Past the bound they fail with UNAVAILABLE.
  // 0 = off: they fail with UNAVAILABLE at once.
  double recovery_timeout_s = 30;
};

struct SchedulerStats {
  int active = 0;
  int queued = 0;
  int64_t kv_tokens_reserved = 0;
  uint64_t steps = 0;
  uint64_t generated_tokens = 0;
};

// One call to make on a request's sink. Produced by SchedulerCore under the scheduler's lock,
// delivered (Deliver) after it is released. Holds the sink alive until then.
struct SinkEvent {
  enum class Kind { kPrefillProgress, kTokens, kFinish };
  Kind kind = Kind::kTokens;
  std::shared_ptr<SequenceSink> sink;
  std::string request_id;
  int processed = 0, total = 0;  // kPrefillProgress
  std::vector<int32_t> ids;      // kTokens
  std::string text;              // kTokens
  int completion_tokens = 0;     // kTokens
  FinishInfo finish;             // kFinish
};
using SinkEvents = std::vector<SinkEvent>;

// Calls the sinks, in order. Events without a sink are skipped.
void Deliver(const SinkEvents& events);

// A step chosen by SchedulerCore::PlanStep, to run on `group` and hand back to ApplyResult.
struct PlannedStep {
  std::shared_ptr<WorkerGroup> group;  // null: no group installed, nothing to run
  uint64_t epoch = 0;                  // the group installation it was planned for
  StepPlan plan;
  bool idle() const { return plan.work.empty() && plan.release.empty(); }
};

// The scheduler's state and decisions. Owns the queued and active sequences. Not thread-safe:
// Scheduler calls it under its lock; tests call it directly. Sinks are never called from here;
// every method that ends or advances a request appends SinkEvents to `events` instead.
// At most one planned step may be outstanding: PlanStep, then ApplyResult, then PlanStep.
class SchedulerCore {
 public:
  explicit SchedulerCore(const SchedulerOptions& options);
  ~SchedulerCore();
  SchedulerCore(const SchedulerCore&) = delete;
  SchedulerCore& operator=(const SchedulerCore&) = delete;

  // See Scheduler::SetWorkerGroup.
  void SetWorkerGroup(std::shared_ptr<WorkerGroup> group, std::shared_ptr<const Tokenizer> tok,
                      SinkEvents* events);
  // See Scheduler::Submit.
  absl::Status Submit(SequenceRequest request);
  // Queued requests finish with kAbort at once; active ones at the next PlanStep (their KV is
  // released by the step after). Returns how many of `request_ids` were found.
  int Abort(const std::vector<std::string>& request_ids, SinkEvents* events);
  // Whether PlanStep has something to do: a group is installed and a sequence is queued or
  // active, or KV waits to be released.
  bool HasWork() const;

  // Admits queued requests (max_batch, KV budget), finishes aborted ones and plans the next
  // step: KV to release, one decode token per decoding sequence and prefill chunks within
  // chunk_tokens, in admission order. A queued request that no longer fits the KV budget (it
  // follows the group's capacity) fails with RESOURCE_EXHAUSTED. Without a group it plans
  // nothing (group is null).
  PlannedStep PlanStep(SinkEvents* events);
  // Applies what the group reported for `step`: new tokens, stop decisions and finishes.
  // A rejected step fails the sequence it names (or every sequence in it when it names none)
  // and leaves the others to run again; UNAVAILABLE drops the group (LoseGroup: the requests
  // wait for a new one with recovery on, else fail).
  // A step planned for a group that was replaced since is ignored.
  void ApplyResult(const PlannedStep& step, const StepOutcome& outcome, SinkEvents* events);
  // Finishes every queued and active request with `status`.
  void FailAll(const absl::Status& status, SinkEvents* events);
  // While requests wait for a lost group to be rebuilt (recovery_timeout_s): the time they
  // give up. Unset otherwise.
  std::optional<Clock::time_point> recovery_deadline() const;
  // Past the recovery deadline with no group: every queued and active request fails with
  // UNAVAILABLE (the old behaviour, later).
  void ExpireRecovery(Clock::time_point now, SinkEvents* events);

  SchedulerStats Stats() const;

 private:
  struct Sequence;
  // The group is gone: with recovery on, active sequences keep their history and wait (the
  // deadline starts now unless already running); without, every request fails with `cause`.
  void LoseGroup(const absl::Status& cause, SinkEvents* events);
  // Drops a sequence's KV state so that its whole history is prefilled again.
  void Suspend(Sequence& s);
  void FinishSequence(Sequence& s, FinishReason reason, absl::Status status, SinkEvents* events);
  void OnToken(Sequence& s, int32_t token, SinkEvents* events);
  void RemoveFinished();

  SchedulerOptions options_;
  std::deque<std::unique_ptr<Sequence>> queue_;
  std::vector<std::unique_ptr<Sequence>> active_;  // admission order
  absl::flat_hash_map<std::string, Sequence*> by_id_;
  std::vector<SequenceId> pending_release_;
  std::shared_ptr<WorkerGroup> group_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  uint64_t group_epoch_ = 0;
  std::string model_identity_;  // name/vocab of the last group's model: what resumes need
  bool recovering_ = false;     // the group was lost; requests wait until recovery_deadline_
  Clock::time_point recovery_deadline_;
  uint64_t next_seq_id_ = 1;
  int64_t kv_reserved_ = 0;
  uint64_t steps_ = 0;
  uint64_t generated_ = 0;
};

// Watches the threaded Scheduler (metrics). Called without the scheduler's lock, from the
// thread that delivers the events (see SequenceSink); implementations must be thread-safe.
class SchedulerObserver {
 public:
  virtual ~SchedulerObserver() = default;
  // A step ran on the workers for `seconds`; `ok` = it was applied (not rejected or failed);
  // `cache`: rank 0's cache lookups during it.
  virtual void OnStep(double seconds, bool ok, const CacheCounts& cache) {}
  // Sink events, just before they are delivered.
  virtual void OnEvents(const SinkEvents& events) {}
};

// Thread-safe front of SchedulerCore with one loop thread that plans, runs steps and delivers
// sink events outside the lock (see SequenceSink). Submit/Abort/Stats/SetWorkerGroup may be
// called from any thread. The WorkerGroup is swapped in with SetWorkerGroup (on
// (re)configuration); while there is none, submitted requests wait in the queue.
class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options);
  ~Scheduler();  // stops the loop; pending requests finish with UNAVAILABLE

  // Installs the group and tokenizer of a (re)configured worker group (null: none). Sequences
  // that were running on the previous group are re-prefilled on the new one (recovery on, see
  // SchedulerOptions::recovery_timeout_s) or fail with UNAVAILABLE (recovery off).
  void SetWorkerGroup(std::shared_ptr<WorkerGroup> group, std::shared_ptr<const Tokenizer> tok);
  // Queues a request. RESOURCE_EXHAUSTED when the queue is full or the request can never fit
  // the KV budget; ALREADY_EXISTS for a duplicate live request_id.
  absl::Status Submit(SequenceRequest request);
  // Aborts queued or active requests by id; returns how many were found.
  int Abort(const std::vector<std::string>& request_ids);
  SchedulerStats Stats() const;
  // Finishes every queued and active request with `status` (e.g. at the end of a drain).
  void FailAll(const absl::Status& status);
  // Installs the observer (borrowed; must outlive the scheduler or be reset to null first).
  void SetObserver(SchedulerObserver* observer) { observer_.store(observer); }
  void Stop();

 private:
  void Loop();
  void DeliverObserved(const SinkEvents& events);
  // Hands the outbox to the loop thread, or delivers it here once the loop has ended.
  void FlushLocked(std::unique_lock<std::mutex>& lock);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool loop_ended_ = false;  // set by Stop after the join: the caller thread delivers
  SchedulerCore core_;       // guarded by mu_
  SinkEvents outbox_;        // guarded by mu_; delivered in order by one thread at a time
  double heartbeat_s_;
  std::atomic<SchedulerObserver*> observer_{nullptr};
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace hipserve::coordinator
