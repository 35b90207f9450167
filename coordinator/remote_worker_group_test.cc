#include "coordinator/remote_worker_group.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

namespace hipserve::coordinator {
namespace {

namespace control = v1::control;

// A worker that configures fine, then reads steps and never answers (hung, not dead).
class HungWorker final : public control::Worker::CallbackService {
 public:
  grpc::ServerUnaryReactor* Configure(grpc::CallbackServerContext* ctx,
                                      const control::ConfigureRequest*,
                                      control::ConfigureResponse* resp) override {
    resp->set_model_name("hung");
    resp->set_vocab_size(259);
    resp->set_max_context(64);
    resp->mutable_tokenizer()->set_model("byte");
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerBidiReactor<control::StepRequest, control::StepResult>* Step(
      grpc::CallbackServerContext*) override {
    class Silent final : public grpc::ServerBidiReactor<control::StepRequest, control::StepResult> {
     public:
      Silent() { StartRead(&req_); }
      // Never writes a result; ends only when the client goes away.
      void OnReadDone(bool ok) override {
        if (!ok) FinishOnce(grpc::Status::OK);
      }
      void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }
      void OnDone() override { delete this; }

     private:
      void FinishOnce(const grpc::Status& s) {
        if (!finished_.exchange(true)) Finish(s);
      }
      std::atomic<bool> finished_{false};
      control::StepRequest req_;
    };
    return new Silent();
  }
};

TEST(RemoteWorkerGroupTest, HungWorkerFailsTheStepWithUnavailable) {
  HungWorker service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto group = RemoteWorkerGroup::Connect({"127.0.0.1:" + std::to_string(port)},
                                          control::ConfigureRequest(), 10, /*step_timeout_s=*/0.5);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ((*group)->model_info().name, "hung");
  EXPECT_TRUE((*group)->healthy());
  StepPlan plan;
  WorkItem item;
  item.seq_id = 1;
  item.tokens = {1, 2, 3};
  item.sample = true;
  plan.work.push_back(item);
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<StepToken>> r = (*group)->Step(plan);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_FALSE((*group)->healthy());
  EXPECT_GE(waited, 0.4);
  EXPECT_LT(waited, 10.0);
  group->reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace
}  // namespace hipserve::coordinator
