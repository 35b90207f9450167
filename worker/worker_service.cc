#include "worker/worker_service.h"

#include "common/logging.h"
#include "proto/grpc_status.h"

namespace hipserve::worker {

namespace control = v1::control;

namespace {

// One Step stream: read a request, run it on the model thread, write the result, repeat.
class StepReactor final
    : public grpc::ServerBidiReactor<control::StepRequest, control::StepResult> {
 public:
  explicit StepReactor(WorkerService* service) : service_(service) {
    service_->open_streams()++;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The coordinator closed the stream or went away: free everything it had.
      service_->Post([this] {
        if (--service_->open_streams() == 0) service_->state().Reset();
        Finish(grpc::Status::OK);
      });
      return;
    }
    service_->Post([this] {
      result_ = service_->state().Step(request_);
      StartWrite(&result_);
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      service_->Post([this] {
        if (--service_->open_streams() == 0) service_->state().Reset();
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "step stream broken"));
      });
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  WorkerService* service_;
  control::StepRequest request_;
  control::StepResult result_;
};

}  // namespace

WorkerService::WorkerService(WorkerOptions options)
    : state_(std::move(options)), executor_(std::make_unique<common::SerialExecutor>()) {}

WorkerService::~WorkerService() { executor_.reset(); }

grpc::ServerUnaryReactor* WorkerService::Configure(grpc::CallbackServerContext* ctx,
                                                   const control::ConfigureRequest* request,
                                                   control::ConfigureResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  executor_->Post([this, reactor, request, response] {
    absl::StatusOr<control::ConfigureResponse> r = state_.Configure(*request);
    if (!r.ok()) {
      LOG(ERROR) << "configure failed: " << r.status();
      reactor->Finish(proto::ToGrpcStatus(r.status()));
      return;
    }
    *response = std::move(*r);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerBidiReactor<control::StepRequest, control::StepResult>* WorkerService::Step(
    grpc::CallbackServerContext* ctx) {
  return new StepReactor(this);
}

grpc::ServerUnaryReactor* WorkerService::Release(grpc::CallbackServerContext* ctx,
                                                 const control::ReleaseRequest* request,
                                                 control::ReleaseResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  executor_->Post(
      [this, reactor, request] { reactor->Finish(proto::ToGrpcStatus(state_.Release(*request))); });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Stats(grpc::CallbackServerContext* ctx,
                                               const control::StatsRequest* request,
                                               control::StatsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  executor_->Post([this, reactor, response] {
    *response = state_.Stats();
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Shutdown(grpc::CallbackServerContext* ctx,
                                                  const control::ShutdownRequest* request,
                                                  control::ShutdownResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!shutdown_.HasBeenNotified()) shutdown_.Notify();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace hipserve::worker
