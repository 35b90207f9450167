#include "coordinator/generation_service.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "proto/grpc_status.h"

namespace hipserve::coordinator {

namespace {

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case FinishReason::kAbort:
      return v1::FINISH_REASON_ABORT;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// Server-streaming Generate. Messages are queued and written one at a time (the callback API
// allows one outstanding write). The sink below feeds it from the scheduler thread.
class GenerateStream final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateStream(GenerationService* service) : service_(service) {}

  // Called once the request is submitted.
  void SetRequestId(std::string id) {
    std::lock_guard<std::mutex> lock(mu_);
    request_id_ = std::move(id);
  }

  // Queues a message; `last` ends the RPC with OK after it is written.
  void Push(v1::GenerateResponse msg, bool last) {
    std::unique_lock<std::mutex> lock(mu_);
    if (done_ || last_queued_) return;
    queue_.push_back(std::move(msg));
    last_queued_ = last;
    MaybeWriteLocked(lock);
  }

  // Ends the RPC with an error status (no final message).
  void FinishWithError(const grpc::Status& status) {
    std::unique_lock<std::mutex> lock(mu_);
    if (done_ || last_queued_) return;
    last_queued_ = true;
    error_ = status;
    has_error_ = true;
    MaybeWriteLocked(lock);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      finished_ = true;
      lock.unlock();
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    MaybeWriteLocked(lock);
  }

  void OnCancel() override {
    std::string id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = request_id_;
    }
    if (!id.empty()) service_->scheduler()->Abort({id});
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    // The sink may still hold a pointer; it checks alive() under its own lock.
    Release();
  }

  // Shared ownership between gRPC (until OnDone) and the sink.
  void AddRef() { refs_.fetch_add(1); }
  void Release() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

 private:
  void MaybeWriteLocked(std::unique_lock<std::mutex>& lock) {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      lock.unlock();
      StartWrite(&current_);
      return;
    }
    if (last_queued_) {
      finished_ = true;
      grpc::Status status = has_error_ ? error_ : grpc::Status::OK;
      lock.unlock();
      Finish(status);
    }
  }

  GenerationService* service_;
  std::mutex mu_;
  std::string request_id_;
  std::deque<v1::GenerateResponse> queue_;
  v1::GenerateResponse current_;
  bool writing_ = false;
  bool last_queued_ = false;
  bool finished_ = false;
  bool done_ = false;
  bool has_error_ = false;
  grpc::Status error_;
  std::atomic<int> refs_{1};
};

class StreamSink final : public SequenceSink {
 public:
  StreamSink(GenerateStream* stream, std::string request_id, int prompt_tokens)
      : stream_(stream), request_id_(std::move(request_id)), prompt_tokens_(prompt_tokens) {
    stream_->AddRef();
  }
  ~StreamSink() override { stream_->Release(); }

  void OnPrefillProgress(int processed, int total) override {
    v1::GenerateResponse msg = Base();
    msg.mutable_prefill()->set_processed_tokens(processed);
    msg.mutable_prefill()->set_total_tokens(total);
    stream_->Push(std::move(msg), false);
  }
  void OnTokens(const std::vector<int32_t>& ids, const std::string& text,
                int completion_tokens) override {
    v1::GenerateResponse msg = Base();
    msg.mutable_token_ids()->Add(ids.begin(), ids.end());
    msg.set_text(text);
    msg.set_completion_tokens(completion_tokens);
    stream_->Push(std::move(msg), false);
  }
  void OnFinish(const FinishInfo& info) override {
    if (!info.status.ok() && info.reason == FinishReason::kError) {
      stream_->FinishWithError(proto::ToGrpcStatus(info.status));
      return;
    }
    v1::GenerateResponse msg = Base();
    msg.set_completion_tokens(info.completion_tokens);
    coordinator::ToProto(info, msg.mutable_final());
    stream_->Push(std::move(msg), true);
  }

 private:
  v1::GenerateResponse Base() const {
    v1::GenerateResponse msg;
    msg.set_request_id(request_id_);
    msg.set_prompt_tokens(prompt_tokens_);
    return msg;
  }
  GenerateStream* stream_;
  std::string request_id_;
  int prompt_tokens_;
};

// Unary GenerateOnce: accumulates the whole completion.
class OnceReactor final : public grpc::ServerUnaryReactor {
 public:
  OnceReactor(GenerationService* service, v1::GenerateOnceResponse* response)
      : service_(service), response_(response) {}
  void SetRequestId(std::string id) {
    std::lock_guard<std::mutex> lock(mu_);
    request_id_ = std::move(id);
  }
  void OnCancel() override {
    std::string id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = request_id_;
    }
    if (!id.empty()) service_->scheduler()->Abort({id});
  }
  void OnDone() override { Release(); }
  void AddRef() { refs_.fetch_add(1); }
  void Release() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }
  v1::GenerateOnceResponse* response() { return response_; }

 private:
  GenerationService* service_;
  v1::GenerateOnceResponse* response_;
  std::mutex mu_;
  std::string request_id_;
  std::atomic<int> refs_{1};
};

class OnceSink final : public SequenceSink {
 public:
  OnceSink(OnceReactor* reactor, std::string request_id, int prompt_tokens) : reactor_(reactor) {
    reactor_->AddRef();
    response_.set_request_id(std::move(request_id));
    response_.set_prompt_tokens(prompt_tokens);
  }
  ~OnceSink() override { reactor_->Release(); }
  void OnTokens(const std::vector<int32_t>& ids, const std::string& text,
                int completion_tokens) override {
    response_.mutable_token_ids()->Add(ids.begin(), ids.end());
    response_.mutable_text()->append(text);
  }
  void OnFinish(const FinishInfo& info) override {
    if (!info.status.ok() && info.reason == FinishReason::kError) {
      reactor_->Finish(proto::ToGrpcStatus(info.status));
      return;
    }
    response_.set_completion_tokens(info.completion_tokens);
    coordinator::ToProto(info, response_.mutable_final());
    *reactor_->response() = std::move(response_);
    reactor_->Finish(grpc::Status::OK);
  }

 private:
  OnceReactor* reactor_;
  v1::GenerateOnceResponse response_;
};

}  // namespace

void ToProto(const FinishInfo& info, v1::FinalInfo* out) {
  out->set_finish_reason(ToProto(info.reason));
  v1::Timing* t = out->mutable_timing();
  t->set_queue_seconds(info.timing.queue_s);
  t->set_ttft_seconds(info.timing.ttft_s);
  t->set_total_seconds(info.timing.total_s);
  t->set_decode_tokens_per_second(info.timing.decode_tokens_per_s);
  if (!info.status.ok()) out->set_error_message(std::string(info.status.message()));
  if (!info.hip.attention.empty()) {
    v1::AppliedHip* h = out->mutable_hip();
    h->set_attention(info.hip.attention);
    h->mutable_mask_refresh_interval()->Add(info.hip.mask_refresh_interval.begin(),
                                            info.hip.mask_refresh_interval.end());
    h->set_k(info.hip.k);
    h->set_overridden(info.hip.overridden);
  }
}

GenerationService::GenerationService(Scheduler* scheduler, const GenerationServiceOptions& options,
                                     std::function<int()> workers_ready)
    : scheduler_(scheduler), options_(options), workers_ready_(std::move(workers_ready)) {}

void GenerationService::SetModel(std::shared_ptr<const ServingModel> model) {
  std::lock_guard<std::mutex> lock(mu_);
  model_ = std::move(model);
}

std::shared_ptr<const ServingModel> GenerationService::model() const {
  std::lock_guard<std::mutex> lock(mu_);
  return model_;
}

absl::Status GenerationService::NotReadyStatus() const {
  if (draining()) {
    return absl::UnavailableError(
        "server is draining (shutting down); retry the request on another replica");
  }
  return absl::UnavailableError(absl::StrCat("server is not ready: ", workers_ready_(),
                                             " workers registered and configured"));
}

absl::Status GenerationService::Authorize(grpc::CallbackServerContext* ctx) const {
  return Identify(ctx).status();
}

absl::StatusOr<std::string> GenerationService::Identify(grpc::CallbackServerContext* ctx) const {
  if (!options_.authorize) return PeerHost(ctx->peer());
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  const absl::string_view value = it == md.end()
                                      ? absl::string_view()
                                      : absl::string_view(it->second.data(), it->second.size());
  return options_.authorize(value);
}

absl::StatusOr<StartedRequest> GenerationService::StartRequest(const v1::GenerateRequest& request,
                                                               const SinkFactory& make_sink,
                                                               const std::string& client) {
  absl::StatusOr<StartedRequest> started = StartRequestUnobserved(request, make_sink, client);
  if (!started.ok() && options_.on_rejected) options_.on_rejected(started.status());
  return started;
}

absl::StatusOr<StartedRequest> GenerationService::StartRequestUnobserved(
    const v1::GenerateRequest& request, const SinkFactory& make_sink, const std::string& client) {
  if (draining()) return NotReadyStatus();
  std::shared_ptr<const ServingModel> m = model();
  if (m == nullptr) return NotReadyStatus();
  RequestLimits limits = options_.limits;
  limits.max_context = m->info.max_context;
  ASSIGN_OR_RETURN(SequenceRequest sr, ToSequenceRequest(request, *m->tokenizer, limits));
  if (sr.request_id.empty()) sr.request_id = absl::StrCat("req-", next_request_++);
  StartedRequest started{sr.request_id, static_cast<int>(sr.prompt.size())};
  std::unique_ptr<ClientLimits::Lease> lease;  // held until the request ends
  if (options_.client_limits != nullptr && options_.client_limits->enabled()) {
    ASSIGN_OR_RETURN(lease, options_.client_limits->Acquire(
                                client, static_cast<int64_t>(sr.prompt.size()) + sr.max_tokens));
  }
  sr.sink = make_sink(started.request_id, started.prompt_tokens);
  if (lease != nullptr) sr.sink = WithLease(std::move(sr.sink), std::move(lease));
  RETURN_IF_ERROR(scheduler_->Submit(std::move(sr)));
  return started;
}

absl::Status GenerationService::StartCall(grpc::CallbackServerContext* ctx,
                                          const v1::GenerateRequest& request,
                                          const SinkFactory& make_sink) {
  ASSIGN_OR_RETURN(std::string client, Identify(ctx));
  return StartRequest(request, make_sink, client).status();
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerationService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  auto* stream = new GenerateStream(this);
  const absl::Status status =
      StartCall(ctx, *request, [stream](const std::string& id, int prompt_tokens) {
        stream->SetRequestId(id);
        return std::make_shared<StreamSink>(stream, id, prompt_tokens);
      });
  if (!status.ok()) stream->FinishWithError(proto::ToGrpcStatus(status));
  return stream;
}

grpc::ServerUnaryReactor* GenerationService::GenerateOnce(grpc::CallbackServerContext* ctx,
                                                          const v1::GenerateRequest* request,
                                                          v1::GenerateOnceResponse* response) {
  auto* reactor = new OnceReactor(this, response);
  const absl::Status status =
      StartCall(ctx, *request, [reactor](const std::string& id, int prompt_tokens) {
        reactor->SetRequestId(id);
        return std::make_shared<OnceSink>(reactor, id, prompt_tokens);
      });
  if (!status.ok()) reactor->Finish(proto::ToGrpcStatus(status));
  return reactor;
}

template <typename Body>
grpc::ServerUnaryReactor* GenerationService::AuthorizedUnary(grpc::CallbackServerContext* ctx,
                                                             Body body) {
  absl::Status status = Authorize(ctx);
  if (status.ok()) status = body();
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(proto::ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::Abort(grpc::CallbackServerContext* ctx,
                                                   const v1::AbortRequest* request,
                                                   v1::AbortResponse* response) {
  return AuthorizedUnary(ctx, [&] {
    std::vector<std::string> ids(request->request_ids().begin(), request->request_ids().end());
    response->set_aborted(scheduler_->Abort(ids));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* ctx,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  return AuthorizedUnary(ctx, [&]() -> absl::Status {
    std::shared_ptr<const ServingModel> m = model();
    if (m == nullptr) return NotReadyStatus();
    v1::GenerateRequest as_generate;
    if (request->has_chat()) {
      *as_generate.mutable_chat() = request->chat();
    } else {
      as_generate.set_text(request->text());
    }
    ASSIGN_OR_RETURN(std::vector<int32_t> ids, PromptTokens(as_generate, *m->tokenizer));
    for (int32_t id : ids) {
      response->add_token_ids(id);
      // Pieces of multi-byte characters are not valid UTF-8 on their own.
      IncrementalDecoder check(*m->tokenizer);
      response->add_pieces(check.Add(id) + check.Flush());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                          const v1::GetModelInfoRequest* request,
                                                          v1::ModelInfo* response) {
  return AuthorizedUnary(ctx, [&]() -> absl::Status {
    std::shared_ptr<const ServingModel> m = model();
    if (m == nullptr) return NotReadyStatus();
    const GroupModelInfo& i = m->info;
    response->set_name(i.name);
    response->set_vocab_size(i.vocab_size);
    response->set_max_context(i.max_context);
    response->set_num_layers(i.num_layers);
    response->set_hidden_size(i.hidden_size);
    response->set_num_heads(i.num_heads);
    response->set_num_kv_heads(i.num_kv_heads);
    response->set_head_dim(i.head_dim);
    response->set_tensor_parallel(m->world_size);
    response->set_dtype(i.dtype);
    response->set_backend(i.backend);
    response->set_attention(options_.limits.attention);
    response->set_hip_config_json(options_.hip_config_json);
    for (int32_t id : i.tokenizer.eos_token_ids) response->add_eos_token_ids(id);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* GenerationService::GetServerInfo(grpc::CallbackServerContext* ctx,
                                                           const v1::GetServerInfoRequest* request,
                                                           v1::ServerInfo* response) {
  return AuthorizedUnary(ctx, [&] {
    SchedulerStats st = scheduler_->Stats();
    std::shared_ptr<const ServingModel> m = model();
    response->set_active_requests(st.active);
    response->set_queued_requests(st.queued);
    response->set_workers_ready(workers_ready_());
    response->set_world_size(m ? m->world_size : 0);
    response->set_kv_tokens_in_use(st.kv_tokens_reserved);
    response->set_steps(st.steps);
    response->set_generated_tokens(st.generated_tokens);
    if (m) {
      const GroupModelInfo::MemoryPlan& mp = m->info.memory;
      v1::MemoryPlan* out = response->mutable_memory_plan();
      out->set_device(mp.device);
      out->set_budget_bytes(mp.budget_bytes);
      out->set_weights_bytes(mp.weights_bytes);
      out->set_workspace_bytes(mp.workspace_bytes);
      out->set_kv_bytes(mp.kv_bytes);
      out->set_kv_tokens(mp.kv_tokens);
      out->set_host_kv_bytes(mp.host_kv_bytes);
      out->set_gpu_kv_tokens(mp.gpu_kv_tokens);
      out->set_kv_dtype(mp.kv_dtype);
      response->set_kv_capacity_tokens(m->info.kv_capacity_tokens);
      response->set_backend(m->info.backend);
    }
    return absl::OkStatus();
  });
}

}  // namespace hipserve::coordinator
