// WorkerState: what one worker process holds once configured: its model shard and
// communicator. All methods run on the worker's SerialExecutor thread (not thread-safe).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "hipserve/v1/worker.pb.h"
#include "worker/communicator.h"
#include "worker/model.h"

namespace hipserve::worker {

struct WorkerOptions {
  std::string backend = "cpu";  // "cpu" or "cuda" (ModelOptions::backend)
  int rank = 0;
  // This worker's KV budgets; 0 = use the values the coordinator sends in Configure. The CPU
  // backend keeps all KV in host memory, so host_kv_bytes bounds it there; the CUDA backend
  // keeps it in GPU memory (bf16), bounded by gpu_kv_bytes and by what gpu_memory_bytes leaves
  // after the weights.
  int64_t gpu_kv_bytes = 0;
  int64_t host_kv_bytes = 0;
  // CPU backend: storage of the linear weights, "fp32" or "bf16" (ModelOptions::cpu_weights).
  std::string cpu_weights = "fp32";
  // CUDA backend: GPU memory for weights + workspaces + KV (CudaBackendOptions); 0 = 90% of
  // the device's free memory at Configure.
  int64_t gpu_memory_bytes = 0;
};

class WorkerState {
 public:
  explicit WorkerState(WorkerOptions options) : options_(std::move(options)) {}

  // Loads the model shard and builds the communicator. Re-configuring replaces both and
  // frees every sequence.
  absl::StatusOr<v1::control::ConfigureResponse> Configure(
      const v1::control::ConfigureRequest& request);
  // Runs one step; errors are reported inside the result (error, error_code).
  v1::control::StepResult Step(const v1::control::StepRequest& request);
  absl::Status Release(const v1::control::ReleaseRequest& request);
  v1::control::StatsResponse Stats() const;
  // Frees every sequence (the coordinator's stream ended).
  void Reset();

 private:
  WorkerOptions options_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Model> model_;
  uint64_t steps_ = 0;
};

}  // namespace hipserve::worker
