#include "coordinator/remote_worker_group.h"

#include <grpcpp/grpcpp.h>

#include <future>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "proto/grpc_status.h"

namespace hipserve::coordinator {

namespace control = v1::control;

TokenizerSpec TokenizerSpecFromProto(const control::TokenizerSpec& p) {
  TokenizerSpec s;
  if (p.model() == "byte") {
    s = MakeByteTokenizerSpec();
  } else {
    s.model = p.model();
    s.tokens.assign(p.tokens().begin(), p.tokens().end());
    s.merges.assign(p.merges().begin(), p.merges().end());
    s.token_types.assign(p.token_types().begin(), p.token_types().end());
    s.bos_token_id = p.bos_token_id();
    s.chat_template = p.chat_template();
    s.add_bos = p.add_bos();
    s.pre = p.pre();
  }
  if (p.eos_token_ids_size() > 0) {
    s.eos_token_ids.assign(p.eos_token_ids().begin(), p.eos_token_ids().end());
  }
  return s;
}

namespace {

grpc::ChannelArguments ChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  return args;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RemoteWorkerGroup>> RemoteWorkerGroup::Connect(
    const std::vector<std::string>& addresses, const control::ConfigureRequest& base,
    double timeout_s, double step_timeout_s, std::function<void()> on_rank_failure,
    std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (addresses.empty()) return absl::InvalidArgumentError("no workers");
  if (credentials == nullptr) credentials = grpc::InsecureChannelCredentials();
  std::unique_ptr<RemoteWorkerGroup> group(new RemoteWorkerGroup());
  const int world = static_cast<int>(addresses.size());
  group->workers_.resize(world);
  for (int r = 0; r < world; ++r) {
    Remote& w = group->workers_[r];
    w.address = addresses[r];
    w.stub = control::Worker::NewStub(
        grpc::CreateCustomChannel(addresses[r], credentials, ChannelArgs()));
  }
  // Configure all ranks concurrently: they build the communicator together.
  std::vector<std::future<absl::StatusOr<control::ConfigureResponse>>> futures;
  for (int r = 0; r < world; ++r) {
    futures.push_back(
        std::async(std::launch::async, [&, r]() -> absl::StatusOr<control::ConfigureResponse> {
          control::ConfigureRequest req = base;
          req.set_rank(r);
          req.set_world_size(world);
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
          control::ConfigureResponse resp;
          grpc::Status s = group->workers_[r].stub->Configure(&ctx, req, &resp);
          if (!s.ok()) {
            if (on_rank_failure) on_rank_failure();
            absl::Status st = proto::FromGrpcStatus(s);
            return absl::Status(st.code(), absl::StrCat("worker rank ", r, " (", addresses[r],
                                                        ") failed to configure: ", st.message()));
          }
          return resp;
        }));
  }
  absl::Status first_error;
  control::ConfigureResponse rank0;
  std::vector<control::ConfigureResponse> responses(world);
  int64_t capacity = 0;
  for (int r = 0; r < world; ++r) {
    absl::StatusOr<control::ConfigureResponse> resp = futures[r].get();
    if (!resp.ok()) {
      if (first_error.ok()) first_error = resp.status();
      continue;
    }
    if (r == 0) rank0 = *resp;
    responses[r] = *resp;
    const int64_t c = resp->kv_capacity_tokens();
    if (c > 0 && (capacity == 0 || c < capacity)) capacity = c;
  }
  if (!first_error.ok()) return first_error;
  // Every rank must hold a shard of the same model.
  for (int r = 1; r < world; ++r) {
    const control::ConfigureResponse& a = rank0;
    const control::ConfigureResponse& b = responses[r];
    const auto shape = [](const control::ConfigureResponse& c) {
      return absl::StrCat("'", c.model_name(), "' (vocab ", c.vocab_size(), ", ", c.num_layers(),
                          " layers, hidden ", c.hidden_size(), ", ", c.num_heads(), " heads, ",
                          c.num_kv_heads(), " KV heads, head_dim ", c.head_dim(), ", ", c.backend(),
                          ")");
    };
    if (shape(a) != shape(b)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker rank ", r, " (", addresses[r], ") loaded model ", shape(b), " but rank 0 (",
          addresses[0], ") loaded ", shape(a), "; every rank must serve the same model"));
    }
  }
  GroupModelInfo& info = group->info_;
  info.name = rank0.model_name();
  info.vocab_size = rank0.vocab_size();
  info.max_context = rank0.max_context();
  info.num_layers = rank0.num_layers();
  info.hidden_size = rank0.hidden_size();
  info.num_heads = rank0.num_heads();
  info.num_kv_heads = rank0.num_kv_heads();
  info.head_dim = rank0.head_dim();
  info.dtype = rank0.dtype();
  info.backend = rank0.backend();
  info.kv_capacity_tokens = capacity;
  const control::WorkerMemoryPlan& mp = rank0.memory_plan();
  info.memory.device = mp.device();
  info.memory.budget_bytes = mp.budget_bytes();
  info.memory.weights_bytes = mp.weights_bytes();
  info.memory.workspace_bytes = mp.workspace_bytes();
  info.memory.kv_bytes = mp.kv_bytes();
  info.memory.kv_tokens = mp.kv_tokens();
  info.memory.host_kv_bytes = mp.host_kv_bytes();
  info.memory.gpu_kv_tokens = mp.gpu_kv_tokens();
  info.memory.kv_dtype = mp.kv_dtype();
  info.tokenizer = TokenizerSpecFromProto(rank0.tokenizer());
  for (Remote& w : group->workers_) {
    w.stream_ctx = std::make_unique<grpc::ClientContext>();
    w.stream = w.stub->Step(w.stream_ctx.get());
    if (w.stream == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot open step stream to ", w.address));
    }
  }
  group->step_timeout_s_ = step_timeout_s;
  RemoteWorkerGroup* raw = group.get();
  group->watchdog_ = std::thread([raw] { raw->Watchdog(); });
  return group;
}

void RemoteWorkerGroup::Watchdog() {
  std::unique_lock<std::mutex> lock(wd_mu_);
  while (!wd_stop_) {
    wd_cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (in_step_ && std::chrono::steady_clock::now() > step_deadline_) {
      LOG(ERROR) << "step exceeded " << step_timeout_s_ << " s; cancelling the worker streams";
      healthy_.store(false);
      for (Remote& w : workers_) w.stream_ctx->TryCancel();
      in_step_ = false;
    }
  }
}

RemoteWorkerGroup::~RemoteWorkerGroup() {
  if (watchdog_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(wd_mu_);
      wd_stop_ = true;
    }
    wd_cv_.notify_all();
    watchdog_.join();
  }
  for (Remote& w : workers_) {
    if (w.stream == nullptr) continue;
    if (healthy_.load()) {
      w.stream->WritesDone();
      w.stream->Finish().IgnoreError();
    } else {
      w.stream_ctx->TryCancel();
    }
  }
}

StepOutcome RemoteWorkerGroup::Step(const StepPlan& plan) {
  StepOutcome outcome;
  if (!healthy_.load()) {
    outcome.status = absl::UnavailableError("worker group is broken");
    return outcome;
  }
  control::StepRequest req;
  req.set_step_id(next_step_id_++);
  req.set_heartbeat(plan.work.empty() && plan.release.empty());
  for (SequenceId id : plan.release) req.add_release_seq_ids(id.value());
  for (const WorkItem& item : plan.work) {
    control::SeqWork* w = req.add_work();
    w->set_seq_id(item.seq_id.value());
    w->mutable_tokens()->Add(item.tokens.begin(), item.tokens.end());
    w->set_start_pos(item.start_pos);
    w->set_sample(item.sample);
    w->set_sample_index(item.sample_index);
    control::SamplingSpec* s = w->mutable_sampling();
    s->set_temperature(item.sampling.temperature);
    s->set_top_p(item.sampling.top_p);
    s->set_top_k(item.sampling.top_k);
    s->set_seed(item.sampling.seed);
    w->mutable_mask_refresh_interval()->Add(item.mask_refresh_interval.begin(),
                                            item.mask_refresh_interval.end());
    w->set_hip_k(item.hip_k);
    w->set_reserve_tokens(item.reserve_tokens);
  }
  {
    std::lock_guard<std::mutex> lock(wd_mu_);
    in_step_ = true;
    step_deadline_ = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(step_timeout_s_ * 1000));
  }
  struct StepDone {
    RemoteWorkerGroup* g;
    ~StepDone() {
      std::lock_guard<std::mutex> lock(g->wd_mu_);
      g->in_step_ = false;
    }
  } step_done{this};
  for (size_t r = 0; r < workers_.size(); ++r) {
    if (!workers_[r].stream->Write(req)) {
      healthy_.store(false);
      outcome.status = absl::UnavailableError(
          absl::StrCat("lost worker rank ", r, " (", workers_[r].address, ")"));
      return outcome;
    }
  }
  absl::Status error;
  for (size_t r = 0; r < workers_.size(); ++r) {
    control::StepResult result;
    if (!workers_[r].stream->Read(&result) || result.step_id() != req.step_id()) {
      healthy_.store(false);
      outcome = StepOutcome();
      outcome.status = absl::UnavailableError(
          absl::StrCat("lost worker rank ", r, " (", workers_[r].address, ")"));
      return outcome;
    }
    if (r == 0) {
      const control::CacheCounts& c = result.cache();
      outcome.cache = CacheCounts{c.hip_mask_hits(), c.hip_mask_misses(), c.kv_hot_page_hits(),
                                  c.kv_hot_page_misses()};
    }
    if (!result.error().empty() && result.group_broken()) {
      // This rank's communicator failed: the others are stuck in (or failed) the same
      // collective. Cancel every stream so that no read waits for a dead or stalled rank.
      healthy_.store(false);
      for (Remote& w : workers_) w.stream_ctx->TryCancel();
      outcome = StepOutcome();
      outcome.status = absl::UnavailableError(absl::StrCat(
          "worker rank ", r, " (", workers_[r].address, ") lost its peers: ", result.error()));
      return outcome;
    }
    if (!result.error().empty()) {
      if (error.ok()) {
        error = absl::Status(static_cast<absl::StatusCode>(result.error_code()), result.error());
        // A rejection with an OK code would read as success.
        if (error.ok()) error = absl::UnknownError(result.error());
        if (result.has_failed_seq_id()) outcome.failed_seq = SequenceId(result.failed_seq_id());
      }
      continue;
    }
    if (r == 0) {
      for (const control::SeqOutput& o : result.outputs()) {
        outcome.tokens.push_back(StepToken{SequenceId(o.seq_id()), o.token(), o.logprob()});
      }
    }
  }
  if (!error.ok()) {
    // A rejected step must not come back as UNAVAILABLE (that means "group broken").
    if (absl::IsUnavailable(error)) error = absl::InternalError(error.message());
    outcome.status = std::move(error);
    outcome.tokens.clear();
  }
  return outcome;
}

}  // namespace hipserve::coordinator
