// GenerationService: the public hipserve.v1.Generation gRPC service (callback API).
// Handlers stay thin: proto -> SequenceRequest -> Scheduler -> proto.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "coordinator/request_validation.h"
#include "coordinator/scheduler.h"
#include "hipserve/v1/generate.grpc.pb.h"

namespace hipserve::coordinator {

// What the service needs from its owner; swapped atomically on (re)configuration.
struct ServingModel {
  std::shared_ptr<const Tokenizer> tokenizer;
  GroupModelInfo info;
  int world_size = 0;
};

struct GenerationServiceOptions {
  RequestLimits limits;
  std::string hip_config_json;
};

class GenerationService final : public v1::Generation::CallbackService {
 public:
  GenerationService(Scheduler* scheduler, const GenerationServiceOptions& options,
                    std::function<int()> workers_ready);

  // nullptr = not ready (requests get UNAVAILABLE).
  void SetModel(std::shared_ptr<const ServingModel> model);

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* GenerateOnce(grpc::CallbackServerContext* ctx,
                                         const v1::GenerateRequest* request,
                                         v1::GenerateOnceResponse* response) override;
  grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const v1::AbortRequest* request,
                                  v1::AbortResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* ctx,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;

  Scheduler* scheduler() { return scheduler_; }

 private:
  std::shared_ptr<const ServingModel> model() const;

  Scheduler* scheduler_;
  GenerationServiceOptions options_;
  std::function<int()> workers_ready_;
  mutable std::mutex mu_;
  std::shared_ptr<const ServingModel> model_;
  std::atomic<uint64_t> next_request_{1};
};

// Fills the proto's final info from a FinishInfo.
void ToProto(const FinishInfo& info, v1::FinalInfo* out);

}  // namespace hipserve::coordinator
