// WorkerGroup: the coordinator's view of its tensor-parallel workers (a seam: tests plug in
// in-process or fault-injecting groups). Plain structs only; no protobuf in this header.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/strong_id.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/incremental_decoder.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace hipserve::coordinator {

using common::SequenceId;

struct SamplingSpec {
  float temperature = 1.f;  // 0 = greedy
  float top_p = 1.f;
  int top_k = 0;
  uint64_t seed = 0;
};

// One sequence's share of a step: a prefill chunk or one decode token.
struct WorkItem {
  SequenceId seq_id;
  std::vector<int32_t> tokens;
  int32_t start_pos = 0;
  bool sample = false;
  SamplingSpec sampling;
  uint64_t sample_index = 0;  // tokens this sequence sampled before (RNG stream position)
  // HiP: the request's own decode refresh intervals (hip.mask_refresh_interval), empty = the
  // server's. Carried by every item of the sequence.
  std::vector<int> mask_refresh_interval;
  // HiP: the request's own final keep (hip.k), 0 = the server's. Carried by every item.
  int hip_k = 0;
  // KV tokens the sequence may grow to (its admission reservation: prompt + max_tokens), so a
  // worker with contiguous per-sequence KV can reserve them at the first step. Every item.
  int64_t reserve_tokens = 0;
};

struct StepPlan {
  std::vector<SequenceId> release;  // sequences whose KV is freed before the work
  std::vector<WorkItem> work;
};

struct StepToken {
  SequenceId seq_id;
  int32_t token = 0;
  float logprob = 0.f;
};

// What one step produced.
// Lookups of rank 0's caches during one step (proto CacheCounts says what each counts).
struct CacheCounts {
  int64_t hip_mask_hits = 0, hip_mask_misses = 0;
  int64_t kv_hot_page_hits = 0, kv_hot_page_misses = 0;
};

struct StepOutcome {
  // OK: the step ran and `tokens` holds the sampled tokens (one per work item with sample).
  // UNAVAILABLE: the group is broken. Any other error: the step was rejected and no
  // sequence's KV changed (the plan's releases did happen).
  absl::Status status;
  // With a rejection: the sequence the error belongs to (e.g. its positions or tokens were
  // invalid); unset when the error concerns the whole step. The scheduler then fails only
  // this sequence and retries the others.
  std::optional<SequenceId> failed_seq;
  std::vector<StepToken> tokens;
  CacheCounts cache;  // rank 0's, when it answered (also for a rejected step)
};

// What rank 0 reported after Configure.
struct GroupModelInfo {
  std::string name;
  int vocab_size = 0;
  int max_context = 0;
  int num_layers = 0;
  int hidden_size = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  std::string dtype;
  std::string backend;
  int64_t kv_capacity_tokens = 0;  // smallest over the ranks; 0 = unknown
  TokenizerSpec tokenizer;
  // Rank 0's memory plan (ConfigureResponse.memory_plan), reported by GetServerInfo.
  struct MemoryPlan {
    std::string device;
    int64_t budget_bytes = 0, weights_bytes = 0, workspace_bytes = 0, kv_bytes = 0, kv_tokens = 0;
    int64_t host_kv_bytes = 0, gpu_kv_tokens = 0;  // KV offload only
    std::string kv_dtype;                          // "fp32", "bf16", "fp8_e5m2"
  } memory;
};

// Thread-safety: Step is called by one thread (the scheduler); healthy() from any thread.
class WorkerGroup {
 public:
  virtual ~WorkerGroup() = default;
  virtual int world_size() const = 0;
  virtual const GroupModelInfo& model_info() const = 0;
  // Runs the step on every worker; see StepOutcome for what its status means.
  virtual StepOutcome Step(const StepPlan& plan) = 0;
  virtual bool healthy() const = 0;
};

}  // namespace hipserve::coordinator
