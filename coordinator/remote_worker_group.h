// RemoteWorkerGroup: workers reached over gRPC (Configure, then one Step stream each).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/worker_group.h"
#include "hipserve/v1/worker.grpc.pb.h"

namespace hipserve::coordinator {

class RemoteWorkerGroup final : public WorkerGroup {
 public:
  // Connects to `addresses[r]` for rank r, sends Configure (rank and world size filled in)
  // to all ranks in parallel and opens the Step streams.
  static absl::StatusOr<std::unique_ptr<RemoteWorkerGroup>> Connect(
      const std::vector<std::string>& addresses, const v1::control::ConfigureRequest& base,
      double timeout_s);
  ~RemoteWorkerGroup() override;

  int world_size() const override { return static_cast<int>(workers_.size()); }
  const GroupModelInfo& model_info() const override { return info_; }
  absl::StatusOr<std::vector<StepToken>> Step(const StepPlan& plan) override;
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

  std::vector<Remote> workers_;
  GroupModelInfo info_;
  uint64_t next_step_id_ = 1;
  std::atomic<bool> healthy_{true};
};

}  // namespace hipserve::coordinator
