// GenerationService: the public hipserve.v1.Generation gRPC service (callback API), and the
// request path every front shares (StartRequest: the gRPC handlers and the OpenAI-compatible
// HTTP front in coordinator/http call it). Handlers stay thin: proto -> SequenceRequest ->
// Scheduler -> proto.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "coordinator/client_limits.h"
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

// A request StartRequest queued.
struct StartedRequest {
  std::string request_id;
  int prompt_tokens = 0;
};

// Makes the sink of a request once its id and prompt length are known (before it is queued,
// so that the front can abort it by id from then on).
using SinkFactory =
    std::function<std::shared_ptr<SequenceSink>(const std::string& request_id, int prompt_tokens)>;

struct GenerationServiceOptions {
  RequestLimits limits;
  std::string hip_config_json;
  // Checks a call's "authorization" metadata (coordinator/auth.h) and returns the client it
  // belongs to (its token's name); null = open (the client is then the peer's host).
  std::function<absl::StatusOr<std::string>(absl::string_view authorization)> authorize;
  // Per-client limits on Generate / GenerateOnce (and the HTTP front); null = none.
  std::shared_ptr<ClientLimits> client_limits;
  // Called with the status of every request StartRequest refuses (metrics); may be null.
  std::function<void(const absl::Status&)> on_rejected;
};

class GenerationService final : public v1::Generation::CallbackService {
 public:
  GenerationService(Scheduler* scheduler, const GenerationServiceOptions& options,
                    std::function<int()> workers_ready);

  // The call's bearer token against options.authorize (OK when none is configured).
  absl::Status Authorize(grpc::CallbackServerContext* ctx) const;
  // Authorize, then the caller's client identity: its token's name, or the peer's host when
  // authentication is off.
  absl::StatusOr<std::string> Identify(grpc::CallbackServerContext* ctx) const;

  // nullptr = not ready (requests get UNAVAILABLE).
  void SetModel(std::shared_ptr<const ServingModel> model);
  // Draining (SIGTERM): new requests get UNAVAILABLE with a retry hint; running ones go on.
  void SetDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

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

  // The one request path of every front: readiness (UNAVAILABLE while no model is
  // configured), validation and tokenization (ToSequenceRequest, INVALID_ARGUMENT naming the
  // field), an id when the request has none, then Scheduler::Submit (RESOURCE_EXHAUSTED when
  // the queue is full). On success the sink receives the request's events; on error nothing
  // was queued and the sink (if made) gets no event. With options.client_limits, `client`'s
  // limits apply (RESOURCE_EXHAUSTED past them) until the request ends. Thread-safe.
  absl::StatusOr<StartedRequest> StartRequest(const v1::GenerateRequest& request,
                                              const SinkFactory& make_sink,
                                              const std::string& client = "");

  // The model being served; nullptr while not ready.
  std::shared_ptr<const ServingModel> model() const;
  // UNAVAILABLE saying how many workers are ready (or that the server is draining).
  absl::Status NotReadyStatus() const;
  int workers_ready() const { return workers_ready_(); }
  const GenerationServiceOptions& options() const { return options_; }

  Scheduler* scheduler() { return scheduler_; }

 private:
  absl::StatusOr<StartedRequest> StartRequestUnobserved(const v1::GenerateRequest& request,
                                                        const SinkFactory& make_sink,
                                                        const std::string& client);
  // Generate / GenerateOnce: Identify the caller, then StartRequest as that client.
  absl::Status StartCall(grpc::CallbackServerContext* ctx, const v1::GenerateRequest& request,
                         const SinkFactory& make_sink);
  // The unary handlers: Authorize, then `body` (returns absl::Status, fills the response); the
  // call's default reactor finishes with the first error, or OK.
  template <typename Body>
  grpc::ServerUnaryReactor* AuthorizedUnary(grpc::CallbackServerContext* ctx, Body body);

  Scheduler* scheduler_;
  GenerationServiceOptions options_;
  std::function<int()> workers_ready_;
  mutable std::mutex mu_;
  std::shared_ptr<const ServingModel> model_;
  std::atomic<uint64_t> next_request_{1};
  std::atomic<bool> draining_{false};
};

// Fills the proto's final info from a FinishInfo.
void ToProto(const FinishInfo& info, v1::FinalInfo* out);

}  // namespace hipserve::coordinator
