#include "coordinator/remote_worker_group.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>

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

// A worker that configures fine and rejects every step with `code`, naming `failed_seq` in
// the result's field when set.
class RejectingWorker final : public control::Worker::CallbackService {
 public:
  RejectingWorker(absl::StatusCode code, std::optional<uint64_t> failed_seq,
                  bool group_broken = false)
      : code_(code), failed_seq_(failed_seq), group_broken_(group_broken) {}
  grpc::ServerUnaryReactor* Configure(grpc::CallbackServerContext* ctx,
                                      const control::ConfigureRequest*,
                                      control::ConfigureResponse* resp) override {
    resp->set_model_name("rejecting");
    resp->set_max_context(64);
    resp->mutable_tokenizer()->set_model("byte");
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerBidiReactor<control::StepRequest, control::StepResult>* Step(
      grpc::CallbackServerContext*) override {
    class Rejecter final
        : public grpc::ServerBidiReactor<control::StepRequest, control::StepResult> {
     public:
      Rejecter(absl::StatusCode code, std::optional<uint64_t> failed_seq, bool group_broken)
          : code_(code), failed_seq_(failed_seq), group_broken_(group_broken) {
        StartRead(&req_);
      }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        result_.Clear();
        result_.set_step_id(req_.step_id());
        // The text names sequence 1 on purpose: only the field may count.
        result_.set_error("sequence 1: not the one");
        result_.set_error_code(static_cast<int>(code_));
        if (failed_seq_) result_.set_failed_seq_id(*failed_seq_);
        result_.set_group_broken(group_broken_);
        StartWrite(&result_);
      }
      void OnWriteDone(bool ok) override {
        if (ok) StartRead(&req_);
      }
      void OnDone() override { delete this; }

     private:
      absl::StatusCode code_;
      std::optional<uint64_t> failed_seq_;
      bool group_broken_;
      control::StepRequest req_;
      control::StepResult result_;
    };
    return new Rejecter(code_, failed_seq_, group_broken_);
  }

 private:
  absl::StatusCode code_;
  std::optional<uint64_t> failed_seq_;
  bool group_broken_;
};

StepOutcome StepOnRejectingWorker(absl::StatusCode code, std::optional<uint64_t> failed_seq,
                                  bool* healthy, bool group_broken = false) {
  RejectingWorker service(code, failed_seq, group_broken);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  EXPECT_NE(server, nullptr);
  auto group = RemoteWorkerGroup::Connect({"127.0.0.1:" + std::to_string(port)},
                                          control::ConfigureRequest(), 10);
  EXPECT_TRUE(group.ok()) << group.status();
  if (!group.ok()) return StepOutcome();
  StepPlan plan;
  for (uint64_t id : {1, 2}) {
    WorkItem item;
    item.seq_id = SequenceId(id);
    item.tokens = {1, 2, 3};
    item.sample = true;
    plan.work.push_back(item);
  }
  StepOutcome outcome = (*group)->Step(plan);
  *healthy = (*group)->healthy();
  group->reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return outcome;
}

TEST(RemoteWorkerGroupTest, RejectedStepNamesTheFailedSequenceFromTheField) {
  bool healthy = false;
  StepOutcome o = StepOnRejectingWorker(absl::StatusCode::kInvalidArgument, 2, &healthy);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kInvalidArgument) << o.status;
  EXPECT_EQ(o.status.message(), "sequence 1: not the one");
  ASSERT_TRUE(o.failed_seq.has_value());
  EXPECT_EQ(*o.failed_seq, SequenceId(2));
  EXPECT_TRUE(o.tokens.empty());
  EXPECT_TRUE(healthy);
}

TEST(RemoteWorkerGroupTest, RejectedStepWithoutTheFieldNamesNoSequence) {
  bool healthy = false;
  StepOutcome o = StepOnRejectingWorker(absl::StatusCode::kUnavailable, std::nullopt, &healthy);
  // A rejection never reads as a broken group.
  EXPECT_EQ(o.status.code(), absl::StatusCode::kInternal) << o.status;
  EXPECT_FALSE(o.failed_seq.has_value());
  EXPECT_TRUE(healthy);
}

TEST(RemoteWorkerGroupTest, BrokenCommunicatorBreaksTheGroup) {
  bool healthy = true;
  StepOutcome o = StepOnRejectingWorker(absl::StatusCode::kDeadlineExceeded, std::nullopt, &healthy,
                                        /*group_broken=*/true);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kUnavailable) << o.status;
  EXPECT_NE(o.status.message().find("worker rank 0"), std::string::npos) << o.status;
  EXPECT_FALSE(healthy);
}

// Configure answers with a model of `vocab` entries named `name`, or fails with `error`.
class ConfigWorker final : public control::Worker::CallbackService {
 public:
  ConfigWorker(std::string name, int vocab, absl::Status error = absl::OkStatus())
      : name_(std::move(name)), vocab_(vocab), error_(std::move(error)) {}
  grpc::ServerUnaryReactor* Configure(grpc::CallbackServerContext* ctx,
                                      const control::ConfigureRequest*,
                                      control::ConfigureResponse* resp) override {
    resp->set_model_name(name_);
    resp->set_vocab_size(vocab_);
    resp->mutable_tokenizer()->set_model("byte");
    auto* r = ctx->DefaultReactor();
    r->Finish(error_.ok()
                  ? grpc::Status::OK
                  : grpc::Status(grpc::StatusCode::NOT_FOUND, std::string(error_.message())));
    return r;
  }

 private:
  std::string name_;
  int vocab_;
  absl::Status error_;
};

// Connect's status for a group over `services` (rank r = services[r]); `failures` counts the
// calls of the failure hook.
absl::Status ConnectTo(const std::vector<ConfigWorker*>& services, int* failures) {
  std::vector<std::unique_ptr<grpc::Server>> servers;
  std::vector<std::string> addresses;
  for (ConfigWorker* s : services) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(s);
    servers.push_back(builder.BuildAndStart());
    addresses.push_back("127.0.0.1:" + std::to_string(port));
  }
  std::atomic<int> called{0};
  absl::Status status =
      RemoteWorkerGroup::Connect(addresses, control::ConfigureRequest(), 10, 600, [&] {
        ++called;
      }).status();
  *failures = called.load();
  for (auto& server : servers) {
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  return status;
}

TEST(RemoteWorkerGroupTest, RanksWithDifferentModelsAreRefusedNamingBoth) {
  ConfigWorker a("tiny", 259), b("tiny", 512);
  int failures = 0;
  absl::Status s = ConnectTo({&a, &b}, &failures);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("worker rank 1"), std::string::npos) << s;
  EXPECT_NE(s.message().find("vocab 512"), std::string::npos) << s;
  EXPECT_NE(s.message().find("vocab 259"), std::string::npos) << s;
  EXPECT_EQ(failures, 0);
}

TEST(RemoteWorkerGroupTest, AFailingRankCallsTheFailureHookAtOnce) {
  ConfigWorker ok("tiny", 259), bad("tiny", 259, absl::NotFoundError("no model here"));
  int failures = 0;
  absl::Status s = ConnectTo({&ok, &bad}, &failures);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("worker rank 1"), std::string::npos) << s;
  EXPECT_EQ(failures, 1);
}

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
  item.seq_id = SequenceId(1);
  item.tokens = {1, 2, 3};
  item.sample = true;
  plan.work.push_back(item);
  const auto start = std::chrono::steady_clock::now();
  StepOutcome r = (*group)->Step(plan);
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_FALSE((*group)->healthy());
  EXPECT_GE(waited, 0.4);
  EXPECT_LT(waited, 10.0);
  group->reset();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace
}  // namespace hipserve::coordinator
