// Scheduler: admits requests, builds steps (prefill chunks + decode tokens) and turns sampled
// tokens into text, stop decisions and events for each request's sink.
//
// Owns one loop thread and the active/queued sequences. Submit/Abort/Stats are thread-safe.
// The WorkerGroup is swapped in with SetWorkerGroup (on (re)configuration); while there is
// none, submitted requests wait in the queue. Sinks are called from the loop thread only.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
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

struct FinishInfo {
  FinishReason reason = FinishReason::kStop;
  RequestTiming timing;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  // Not OK: the request failed (the RPC ends with this status, e.g. UNAVAILABLE).
  absl::Status status;
};

// Receives one request's events, in order, from the scheduler thread. OnFinish is last.
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
  Clock::time_point arrival = Clock::now();
  std::shared_ptr<SequenceSink> sink;
};

struct SchedulerOptions {
  int max_batch = 32;              // sequences per step
  int chunk_tokens = 512;          // prefill tokens per step over all sequences
  int max_queue = 256;             // waiting requests; more -> RESOURCE_EXHAUSTED
  int64_t kv_budget_tokens = 1 << 20;  // admitted prompt+max_tokens over active sequences
  double heartbeat_s = 5.0;        // idle heartbeat on the step stream
};

struct SchedulerStats {
  int active = 0;
  int queued = 0;
  int64_t kv_tokens_reserved = 0;
  uint64_t steps = 0;
  uint64_t generated_tokens = 0;
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerOptions& options);
  ~Scheduler();  // stops the loop; pending requests finish with UNAVAILABLE

  // Installs the group and tokenizer of a (re)configured worker group; sequences that were
  // running on the previous group fail with UNAVAILABLE.
  void SetWorkerGroup(std::shared_ptr<WorkerGroup> group, std::shared_ptr<const Tokenizer> tok);
  // Queues a request. RESOURCE_EXHAUSTED when the queue is full or the request can never fit
  // the KV budget; ALREADY_EXISTS for a duplicate live request_id.
  absl::Status Submit(SequenceRequest request);
  // Aborts queued or active requests by id; returns how many were found.
  int Abort(const std::vector<std::string>& request_ids);
  SchedulerStats Stats() const;
  void Stop();

 private:
  struct Sequence;
  void Loop();
  void AdmitLocked();
  void FinishSequence(Sequence& s, FinishReason reason, absl::Status status);
  void OnToken(Sequence& s, int32_t token);
  void FailAll(const absl::Status& status);

  SchedulerOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::unique_ptr<Sequence>> queue_;
  std::vector<std::unique_ptr<Sequence>> active_;
  absl::flat_hash_map<std::string, Sequence*> by_id_;
  std::vector<uint64_t> pending_release_;
  std::shared_ptr<WorkerGroup> group_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  uint64_t group_epoch_ = 0;
  uint64_t next_seq_id_ = 1;
  int64_t kv_reserved_ = 0;
  uint64_t steps_ = 0;
  uint64_t generated_ = 0;
  std::thread thread_;
};

}  // namespace hipserve::coordinator
