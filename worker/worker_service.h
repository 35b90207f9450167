// WorkerService: the control-plane gRPC service a worker serves to its coordinator
// (callback API). Every model operation is posted to one SerialExecutor, so the model is
// driven by a single thread; gRPC threads never block on the forward pass.
#pragma once

#include <atomic>
#include <memory>

#include "absl/synchronization/notification.h"
#include "common/serial_executor.h"
#include "hipserve/v1/worker.grpc.pb.h"
#include "worker/worker_state.h"

namespace hipserve::worker {

class WorkerService final : public v1::control::Worker::CallbackService {
 public:
  explicit WorkerService(WorkerOptions options);
  ~WorkerService() override;

  grpc::ServerUnaryReactor* Configure(grpc::CallbackServerContext* ctx,
                                      const v1::control::ConfigureRequest* request,
                                      v1::control::ConfigureResponse* response) override;
  grpc::ServerBidiReactor<v1::control::StepRequest, v1::control::StepResult>* Step(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx,
                                    const v1::control::ReleaseRequest* request,
                                    v1::control::ReleaseResponse* response) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx,
                                  const v1::control::StatsRequest* request,
                                  v1::control::StatsResponse* response) override;
  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* ctx,
                                     const v1::control::ShutdownRequest* request,
                                     v1::control::ShutdownResponse* response) override;

  // Notified when a Shutdown RPC arrives.
  absl::Notification& shutdown_requested() { return shutdown_; }
  // Runs `fn` on the model thread (used by the Step reactor).
  void Post(std::function<void()> fn) { executor_->Post(std::move(fn)); }
  WorkerState& state() { return state_; }
  // Before registering only (no Configure can run yet).
  void set_comm_host(std::string host) { state_.set_comm_host(std::move(host)); }
  std::atomic<int>& open_streams() { return open_streams_; }

 private:
  WorkerState state_;
  absl::Notification shutdown_;
  std::atomic<int> open_streams_{0};
  // Declared last: destroyed first, draining tasks that still use state_.
  std::unique_ptr<common::SerialExecutor> executor_;
};

}  // namespace hipserve::worker
