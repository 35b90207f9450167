// RemoteWorkerGroup: workers reached over gRPC (Configure, then one Step stream each).
#pragma once

#include <grpcpp/security/credentials.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/worker_group.h"
#include "hipserve/v1/worker.grpc.pb.h"

namespace hipserve::coordinator {

// The tokenizer a worker reports at Configure ("byte" = MakeByteTokenizerSpec, with the
// reported EOS ids when there are any).
TokenizerSpec TokenizerSpecFromProto(const v1::control::TokenizerSpec& p);

class RemoteWorkerGroup final : public WorkerGroup {
 public:
  // Connects to `addresses[r]` for rank r, sends Configure (rank and world size filled in)
  // to all ranks in parallel and opens the Step streams. A step that takes longer than
  // `step_timeout_s` (a hung worker) cancels the streams: the group turns unhealthy and the
  // step fails with UNAVAILABLE instead of blocking the scheduler forever. A rejected step
  // reports the first failing rank's error and the sequence it names (failed_seq_id).
  // `on_rank_failure` (optional) runs as soon as one rank's Configure fails, while the others
  // may still wait for it in the communicator rendezvous (the coordinator abandons that
  // rendezvous so they fail at once). Ranks that loaded a different model (name or shape
  // differing from rank 0's) are refused with FailedPrecondition naming both. `credentials`
  // dial the workers (mutual TLS: common/tls); null = plaintext.
  static absl::StatusOr<std::unique_ptr<RemoteWorkerGroup>> Connect(
      const std::vector<std::string>& addresses, const v1::control::ConfigureRequest& base,
      double timeout_s, double step_timeout_s = 600,
      std::function<void()> on_rank_failure = nullptr,
      std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);
  ~RemoteWorkerGroup() override;

  int world_size() const override { return static_cast<int>(workers_.size()); }
  const GroupModelInfo& model_info() const override { return info_; }
  StepOutcome Step(const StepPlan& plan) override;
  bool healthy() const override { return healthy_.load(); }

 private:
  struct Remote {
    std::string address;
    std::unique_ptr<v1::control::Worker::Stub> stub;
    std::unique_ptr<grpc::ClientContext> stream_ctx;
    std::unique_ptr<grpc::ClientReaderWriter<v1::control::StepRequest, v1::control::StepResult>>
        stream;
  };
  RemoteWorkerGroup() = default;
  void Watchdog();

  std::vector<Remote> workers_;
  double step_timeout_s_ = 600;
  std::mutex wd_mu_;
  std::condition_variable wd_cv_;
  bool in_step_ = false;
  bool wd_stop_ = false;
  std::chrono::steady_clock::time_point step_deadline_;
  std::thread watchdog_;
  GroupModelInfo info_;
  uint64_t next_step_id_ = 1;
  std::atomic<bool> healthy_{true};
};

}  // namespace hipserve::coordinator
