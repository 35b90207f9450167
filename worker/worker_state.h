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
  // Tensor parallelism (world size > 1): the coordinator's control address, whose key-value
  // store the communicators rendezvous through (ConfigureRequest.comm_bootstrap is the key
  // prefix); the address this worker's Gloo TCP device binds to and peers connect to; the
  // longest wait for one collective or for the peers to join.
  std::string coordinator;
  std::string comm_host = "127.0.0.1";
  double collective_timeout_s = 300;
  double rendezvous_timeout_s = 300;
  // Use NCCL even at world size 1 (the CUDA backend; to exercise the NCCL path on one GPU).
  // Also set by HIPSERVE_FORCE_NCCL=1 in the worker's environment.
  bool force_nccl = false;
  int device = 0;  // CUDA backend: the device this worker uses (CudaBackendOptions::device)
  std::string kv_offload = "auto";  // CUDA backend: CudaBackendOptions::kv_offload
  std::string kv_dtype = "bf16";    // CUDA backend: CudaBackendOptions::kv_dtype ("bf16", "fp8")
  // Random per process; reported in Stats so the coordinator tells a restarted worker on the
  // same address from the one it replaced.
  std::string instance_id;
};

class WorkerState {
 public:
  explicit WorkerState(WorkerOptions options) : options_(std::move(options)) {}

  // Loads the model shard and builds the communicator (world size 1: local, unless
  // force_nccl; "cpu" backend: Gloo; "cuda": NCCL). Re-configuring replaces both and frees
  // every sequence. Blocks until every rank joined the communicator (or the rendezvous
  // timed out / the coordinator abandoned this configuration).
  absl::StatusOr<v1::control::ConfigureResponse> Configure(
      const v1::control::ConfigureRequest& request);
  // Runs one step; errors are reported inside the result (error, error_code).
  v1::control::StepResult Step(const v1::control::StepRequest& request);
  absl::Status Release(const v1::control::ReleaseRequest& request);
  v1::control::StatsResponse Stats() const;
  // Frees every sequence (the coordinator's stream ended).
  void Reset();
  // Set once before the worker registers (the bound port decides the advertised host).
  void set_comm_host(std::string host) { options_.comm_host = std::move(host); }
  // Which communicator Configure built: "local", "gloo" or "nccl" ("" before).
  const std::string& communicator_kind() const { return comm_kind_; }

 private:
  WorkerOptions options_;
  std::unique_ptr<Communicator> comm_;
  absl::StatusOr<std::unique_ptr<Communicator>> MakeCommunicator(
      const v1::control::ConfigureRequest& request);

  std::unique_ptr<Model> model_;
  CacheCounters reported_cache_;  // model_'s counters as of the last StepResult
  std::string comm_kind_;
  uint64_t steps_ = 0;
};

}  // namespace hipserve::worker
