// WorkerGroup: the coordinator's view of its tensor-parallel workers (a seam: tests plug in
// in-process or fault-injecting groups). Plain structs only; no protobuf in this header.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/tokenizer/chat_template.h"
#include "coordinator/tokenizer/incremental_decoder.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace hipserve::coordinator {

struct SamplingSpec {
  float temperature = 1.f;  // 0 = greedy
  float top_p = 1.f;
  int top_k = 0;
  uint64_t seed = 0;
};

// One sequence's share of a step: a prefill chunk or one decode token.
struct WorkItem {
  uint64_t seq_id = 0;
  std::vector<int32_t> tokens;
  int32_t start_pos = 0;
  bool sample = false;
  SamplingSpec sampling;
  uint64_t sample_index = 0;  // tokens this sequence sampled before (RNG stream position)
};

struct StepPlan {
  std::vector<uint64_t> release;  // sequences whose KV is freed before the work
  std::vector<WorkItem> work;
};

struct StepToken {
  uint64_t seq_id = 0;
  int32_t token = 0;
  float logprob = 0.f;
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
};

// Thread-safety: Step is called by one thread (the scheduler); healthy() from any thread.
class WorkerGroup {
 public:
  virtual ~WorkerGroup() = default;
  virtual int world_size() const = 0;
  virtual const GroupModelInfo& model_info() const = 0;
  // Runs the step on every worker. An error status that is not UNAVAILABLE means the step
  // was rejected and no sequence changed; UNAVAILABLE means the group is broken.
  virtual absl::StatusOr<std::vector<StepToken>> Step(const StepPlan& plan) = 0;
  virtual bool healthy() const = 0;
};

}  // namespace hipserve::coordinator
