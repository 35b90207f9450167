#include "coordinator/coordinator.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls/reloadable_credentials.h"
#include "coordinator/auth.h"
#include "coordinator/generation_service.h"
#include "coordinator/http/openai_server.h"
#include "coordinator/metrics.h"
#include "coordinator/remote_worker_group.h"
#include "hipserve/v1/worker.grpc.pb.h"
#include "proto/grpc_status.h"

namespace hipserve::coordinator {

namespace control = v1::control;

inline constexpr char kReadinessService[] = "hipserve.v1.Generation";

// Worker registrations, shared by the Control service and the configuration thread.
class Registry {
 public:
  struct Entry {
    std::string address;   // empty = not registered
    std::string instance;  // RegisterRequest.instance_id ("" from older workers)
    std::string hostname;
  };

  explicit Registry(int world_size) : entries_(world_size) {}

  int world_size() const { return static_cast<int>(entries_.size()); }

  // The current holder of `rank` (empty address when none). Caller checked the range.
  Entry Holder(int rank) const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_[rank];
  }

  // Records `e` for `rank`. A new address or instance (a restarted worker) changes the group;
  // so does any registration after MarkStale (the running group broke and must be rebuilt).
  void Register(int rank, const Entry& e) {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& cur = entries_[rank];
    if (cur.address != e.address || cur.instance != e.instance) {
      if (!cur.address.empty()) {
        LOG(WARNING) << "rank " << rank << " re-registered from " << e.address << " (was "
                     << cur.address << "); reconfiguring the group";
      } else {
        LOG(INFO) << "worker rank " << rank << " registered from " << e.address << " (host "
                  << e.hostname << ")";
      }
      cur = e;
      Bump();
    } else if (stale_) {
      Bump();
    }
  }

  // The running group broke: the next registration (a restarted worker, or a surviving one
  // announcing itself again) rebuilds it.
  void MarkStale() {
    std::lock_guard<std::mutex> lock(mu_);
    stale_ = true;
  }

  // Waits until every rank is registered and the set differs from `seen_generation`, or
  // until stop/timeout. Returns the addresses and updates seen_generation.
  bool WaitForChange(uint64_t* seen_generation, std::vector<std::string>* out,
                     const std::atomic<bool>* stop, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout,
                 [&] { return *stop || (Complete() && generation_ != *seen_generation); });
    if (*stop || !Complete() || generation_ == *seen_generation) return false;
    *seen_generation = generation_;
    out->clear();
    for (const Entry& e : entries_) out->push_back(e.address);
    return true;
  }

  void Wake() { cv_.notify_all(); }
  std::mutex& mu() { return mu_; }

 private:
  void Bump() {
    stale_ = false;
    ++generation_;
    cv_.notify_all();
  }
  bool Complete() const {
    for (const auto& e : entries_) {
      if (e.address.empty()) return false;
    }
    return true;
  }
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> entries_;
  uint64_t generation_ = 0;
  bool stale_ = false;
};

// The workers' rendezvous store (Control.StoreSet / StoreGet): keys of the configuration in
// progress only. Begin() starts a configuration under a fresh prefix; Abandon() makes every
// rank still waiting on the old one fail at once (ABORTED) instead of at its timeout.
class RendezvousTable {
 public:
  void Begin(const std::string& prefix) {
    std::lock_guard<std::mutex> lock(mu_);
    values_.clear();
    prefix_ = prefix;
  }
  void Abandon() {
    std::lock_guard<std::mutex> lock(mu_);
    values_.clear();
    prefix_.clear();
  }
  absl::Status Set(const std::string& key, const std::string& value) {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckLocked(key));
    values_[key] = value;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Get(const std::string& key) const {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckLocked(key));
    auto it = values_.find(key);
    if (it == values_.end()) return absl::NotFoundError(absl::StrCat("'", key, "' not set yet"));
    return it->second;
  }

 private:
  absl::Status CheckLocked(const std::string& key) const {
    if (prefix_.empty() || !absl::StartsWith(key, prefix_)) {
      return absl::AbortedError(
          absl::StrCat("rendezvous key '", key,
                       "' belongs to a configuration that was abandoned or "
                       "superseded",
                       prefix_.empty() ? "" : absl::StrCat(" (current: '", prefix_, "')")));
    }
    return absl::OkStatus();
  }
  mutable std::mutex mu_;
  std::string prefix_;
  std::map<std::string, std::string> values_;
};

class ControlService final : public control::Control::CallbackService {
 public:
  ControlService(Registry* registry, RendezvousTable* table, const CoordinatorOptions* options)
      : registry_(registry), table_(table), options_(options) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const control::RegisterRequest* req,
                                     control::RegisterResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    resp->set_world_size(registry_->world_size());
    absl::Status s = Check(*req);
    if (!s.ok()) {
      LOG(WARNING) << "refused worker " << req->address() << ": " << s.message();
      reactor->Finish(proto::ToGrpcStatus(s));
      return reactor;
    }
    Registry::Entry entry{req->address(), req->instance_id(), req->hostname()};
    Registry::Entry holder = registry_->Holder(req->rank());
    if (holder.address.empty() || holder.instance == req->instance_id() ||
        holder.instance.empty()) {
      Accept(reactor, *req, entry);
      return reactor;
    }
    // Another worker process held this rank. A restart replaces it; a second live worker
    // with the same --rank is refused. Ask the holder's address who answers there.
    ProbeThenRegister(reactor, *req, entry, holder);
    return reactor;
  }

  grpc::ServerUnaryReactor* StoreSet(grpc::CallbackServerContext* ctx,
                                     const control::StoreSetRequest* req,
                                     control::StoreSetResponse*) override {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(proto::ToGrpcStatus(table_->Set(req->key(), req->value())));
    return reactor;
  }

  grpc::ServerUnaryReactor* StoreGet(grpc::CallbackServerContext* ctx,
                                     const control::StoreGetRequest* req,
                                     control::StoreGetResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    absl::StatusOr<std::string> v = table_->Get(req->key());
    if (v.ok()) resp->set_value(*std::move(v));
    reactor->Finish(proto::ToGrpcStatus(v.status()));
    return reactor;
  }

 private:
  absl::Status Check(const control::RegisterRequest& req) const {
    const int world = registry_->world_size();
    if (req.rank() < 0 || req.rank() >= world) {
      return absl::InvalidArgumentError(absl::StrCat("worker rank ", req.rank(),
                                                     " is outside this coordinator's world of ",
                                                     world, " (ranks 0..", world - 1, ")"));
    }
    if (req.address().empty()) return absl::InvalidArgumentError("worker address is empty");
    if (req.expected_world_size() > 0 && req.expected_world_size() != world) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker rank ", req.rank(), " expects world size ",
                       req.expected_world_size(), " but this coordinator runs world size ", world));
    }
    if (!req.expected_model().empty() && req.expected_model() != options_->model) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker rank ", req.rank(), " expects model '", req.expected_model(),
                       "' but this coordinator serves '", options_->model, "'"));
    }
    return absl::OkStatus();
  }

  void Accept(grpc::ServerUnaryReactor* reactor, const control::RegisterRequest& req,
              const Registry::Entry& entry) {
    registry_->Register(req.rank(), entry);
    reactor->Finish(grpc::Status::OK);
  }

  void ProbeThenRegister(grpc::ServerUnaryReactor* reactor, const control::RegisterRequest& req,
                         const Registry::Entry& entry, const Registry::Entry& holder) {
    struct Probe {
      std::unique_ptr<control::Worker::Stub> stub;
      grpc::ClientContext ctx;
      control::StatsRequest req;
      control::StatsResponse resp;
      control::RegisterRequest reg;
      Registry::Entry entry, holder;
    };
    auto* p = new Probe;
    // The files were checked at Start; a failure now (a file removed since) probes plaintext,
    // which a mutual-TLS worker refuses: the holder then counts as gone.
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        tls::ChannelCredentials(options_->worker_tls, "--worker_tls_");
    p->stub = control::Worker::NewStub(grpc::CreateChannel(
        holder.address, creds.ok() ? *creds : grpc::InsecureChannelCredentials()));
    p->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    p->reg = req;
    p->entry = entry;
    p->holder = holder;
    p->stub->async()->Stats(&p->ctx, &p->req, &p->resp, [this, p, reactor](grpc::Status s) {
      // Alive: it answers as itself, or it is reachable but busy (its model thread answers
      // Stats after the step in progress).
      const bool alive = s.ok() ? p->resp.instance_id() == p->holder.instance
                                : s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      if (alive) {
        const std::string msg =
            absl::StrCat("duplicate rank ", p->reg.rank(), ": a live worker at ", p->holder.address,
                         " (host ", p->holder.hostname, ") already holds rank ", p->reg.rank(),
                         " of ", registry_->world_size(), "; refusing the second worker at ",
                         p->reg.address(), " (host ", p->reg.hostname(), ")");
        LOG(WARNING) << msg;
        reactor->Finish(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, msg));
      } else {
        // The holder is gone (or another process answers at its address): a restart.
        Accept(reactor, p->reg, p->entry);
      }
      delete p;
    });
  }

  Registry* registry_;
  RendezvousTable* table_;
  const CoordinatorOptions* options_;
};

// The server's Prometheus metrics (docs/API.md lists them): request outcomes, tokens and
// latencies from the scheduler's events, steps from its loop, load and KV read at scrape time.
class CoordinatorMetrics final : public SchedulerObserver {
 public:
  CoordinatorMetrics() {
    const std::vector<double> latency = ExponentialBuckets(0.001, 2, 18);  // 1 ms .. ~131 s
    prompt_tokens_ =
        registry_.GetCounter("hipserve_prompt_tokens_total", "Prompt tokens of finished requests.");
    generation_tokens_ = registry_.GetCounter("hipserve_generation_tokens_total",
                                              "Tokens generated (sampled) for finished requests.");
    ttft_ = registry_.GetHistogram("hipserve_time_to_first_token_seconds",
                                   "Arrival to first generated token.", latency);
    itl_ = registry_.GetHistogram("hipserve_inter_token_latency_seconds",
                                  "Time between two deliveries of tokens to one request.",
                                  ExponentialBuckets(0.0005, 2, 18));
    queue_ = registry_.GetHistogram("hipserve_queue_time_seconds",
                                    "Arrival to admission into the running batch.", latency);
    e2e_ = registry_.GetHistogram("hipserve_request_duration_seconds",
                                  "Arrival to finish of scheduled requests.", latency);
    steps_ = registry_.GetCounter("hipserve_steps_total", "Steps the workers ran.");
    failed_steps_ = registry_.GetCounter("hipserve_failed_steps_total",
                                         "Steps the workers rejected or failed.");
    step_time_ = registry_.GetHistogram("hipserve_step_duration_seconds",
                                        "Wall time of one step on the worker group.",
                                        ExponentialBuckets(0.0005, 2, 18));
    // Hit ratio of a cache = hits / (hits + misses) over an interval (docs/API.md).
    const char* lookups_help =
        "Cache lookups on worker rank 0 by cache and result: hip_mask = HiP decode mask reuse "
        "per (step, sequence, layer); kv_gpu_hot = pages of a step's sequences with a GPU hot "
        "copy (KV offload only).";
    auto lookups = [&](const char* cache, const char* result) {
      return registry_.GetCounter("hipserve_kv_cache_lookups_total", lookups_help,
                                  {{"cache", cache}, {"result", result}});
    };
    hip_mask_hits_ = lookups("hip_mask", "hit");
    hip_mask_misses_ = lookups("hip_mask", "miss");
    kv_hot_hits_ = lookups("kv_gpu_hot", "hit");
    kv_hot_misses_ = lookups("kv_gpu_hot", "miss");
  }

  MetricsRegistry& registry() { return registry_; }

  // A request that ended (scheduled or refused at admission).
  void CountRequest(const char* outcome, const absl::Status& status) {
    registry_
        .GetCounter("hipserve_requests_total",
                    "Requests by outcome (finish reason, or 'rejected' when refused before "
                    "scheduling) and gRPC status code.",
                    {{"outcome", outcome}, {"code", absl::StatusCodeToString(status.code())}})
        ->Inc();
  }

  void OnStep(double seconds, bool ok, const CacheCounts& cache) override {
    (ok ? steps_ : failed_steps_)->Inc();
    step_time_->Observe(seconds);
    hip_mask_hits_->Inc(static_cast<double>(cache.hip_mask_hits));
    hip_mask_misses_->Inc(static_cast<double>(cache.hip_mask_misses));
    kv_hot_hits_->Inc(static_cast<double>(cache.kv_hot_page_hits));
    kv_hot_misses_->Inc(static_cast<double>(cache.kv_hot_page_misses));
  }

  void OnEvents(const SinkEvents& events) override {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    for (const SinkEvent& e : events) {
      if (e.kind == SinkEvent::Kind::kTokens) {
        auto [it, fresh] = last_tokens_.try_emplace(e.request_id, now);
        if (!fresh) {
          itl_->Observe(std::chrono::duration<double>(now - it->second).count());
          it->second = now;
        }
      } else if (e.kind == SinkEvent::Kind::kFinish) {
        last_tokens_.erase(e.request_id);
        const FinishInfo& f = e.finish;
        CountRequest(ReasonName(f.reason), f.status);
        prompt_tokens_->Inc(f.prompt_tokens);
        generation_tokens_->Inc(f.completion_tokens);
        if (f.completion_tokens > 0) ttft_->Observe(f.timing.ttft_s);
        if (f.timing.queue_s > 0 || f.completion_tokens > 0) queue_->Observe(f.timing.queue_s);
        e2e_->Observe(f.timing.total_s);
      }
    }
  }

  static const char* ReasonName(FinishReason r) {
    switch (r) {
      case FinishReason::kStop:
        return "stop";
      case FinishReason::kLength:
        return "length";
      case FinishReason::kEos:
        return "eos";
      case FinishReason::kAbort:
        return "abort";
      case FinishReason::kError:
        return "error";
    }
    return "unknown";
  }

 private:
  MetricsRegistry registry_;
  Counter *prompt_tokens_, *generation_tokens_, *steps_, *failed_steps_;
  Counter *hip_mask_hits_, *hip_mask_misses_, *kv_hot_hits_, *kv_hot_misses_;
  Histogram *ttft_, *itl_, *queue_, *e2e_, *step_time_;
  std::mutex mu_;
  absl::flat_hash_map<std::string, Clock::time_point> last_tokens_;  // by request id
};

struct Coordinator::Impl {
  CoordinatorOptions options;
  std::shared_ptr<BearerTokens> auth;  // null: the public API is open
  std::shared_ptr<ClientLimits> client_limits;
  std::shared_ptr<grpc::ChannelCredentials> worker_credentials;  // dialling the workers
  // The servers' credentials (certificate rotation on SIGHUP); declared before the servers so
  // that they outlive them.
  std::unique_ptr<tls::ReloadableServerCredentials> public_tls;
  std::unique_ptr<tls::ReloadableServerCredentials> control_tls;
  Registry registry;
  RendezvousTable rendezvous;
  uint64_t attempts = 0;       // configuration attempts (rendezvous prefixes)
  CoordinatorMetrics metrics;  // before the scheduler and the service, which report to it
  Scheduler scheduler;
  GenerationService generation;
  ControlService control;
  std::unique_ptr<grpc::Server> public_server;
  std::unique_ptr<grpc::Server> control_server;
  std::unique_ptr<http::OpenAiHttpServer> http_server;
  std::unique_ptr<MetricsHttpServer> metrics_server;
  int port = 0, control_port = 0;
  mutable std::mutex mu;
  std::atomic<bool> stop{false};
  std::atomic<bool> draining{false};
  bool ready = false;
  absl::Status configure_status;
  std::shared_ptr<WorkerGroup> group;
  std::thread config_thread;

  Impl(const CoordinatorOptions& o, std::shared_ptr<BearerTokens> tokens)
      : options(o),
        auth(std::move(tokens)),
        client_limits(std::make_shared<ClientLimits>(o.client_limits)),
        registry(o.world_size),
        scheduler(o.scheduler),
        generation(&scheduler, MakeServiceOptions(o, auth, client_limits, &metrics),
                   [this] { return WorkersReady(); }),
        control(&registry, &rendezvous, &options) {
    scheduler.SetObserver(&metrics);
    RegisterGauges();
  }

  ~Impl() { scheduler.SetObserver(nullptr); }

  static GenerationServiceOptions MakeServiceOptions(
      const CoordinatorOptions& o, const std::shared_ptr<BearerTokens>& auth,
      const std::shared_ptr<ClientLimits>& client_limits, CoordinatorMetrics* metrics) {
    GenerationServiceOptions g;
    g.on_rejected = [metrics](const absl::Status& s) { metrics->CountRequest("rejected", s); };
    if (auth != nullptr) {
      g.authorize = [auth](absl::string_view authorization) {
        return auth->Identify(authorization);
      };
    }
    if (client_limits->enabled()) g.client_limits = client_limits;
    g.limits.default_max_tokens = o.default_max_tokens;
    g.limits.max_tokens_limit = o.max_tokens_limit;
    g.limits.max_prompt_tokens = o.max_prompt_tokens;
    g.limits.attention = o.attention;
    SetHipLimitsFromJson(o.hip_config_json, &g.limits);
    g.hip_config_json = o.hip_config_json;
    return g;
  }

  // Load, KV and readiness, read at scrape time.
  void RegisterGauges() {
    MetricsRegistry& r = metrics.registry();
    r.AddGaugeCallback("hipserve_requests_running", "Requests in the running batch.", {},
                       [this] { return scheduler.Stats().active; });
    r.AddGaugeCallback("hipserve_requests_queued", "Requests waiting for admission.", {},
                       [this] { return scheduler.Stats().queued; });
    r.AddGaugeCallback("hipserve_kv_tokens_in_use",
                       "KV tokens reserved by running requests (prompt + max_tokens).", {}, [this] {
                         return static_cast<double>(scheduler.Stats().kv_tokens_reserved);
                       });
    auto model_value = [this](auto read) {
      return [this, read]() -> double {
        std::shared_ptr<const ServingModel> m = generation.model();
        return m ? static_cast<double>(read(*m)) : 0.0;
      };
    };
    r.AddGaugeCallback(
        "hipserve_kv_capacity_tokens", "KV tokens the workers can hold (0 while not ready).", {},
        model_value([](const ServingModel& m) { return m.info.kv_capacity_tokens; }));
    const char* plan_help =
        "Per-worker memory plan (GetServerInfo.memory_plan) by part, in bytes; 0 while not "
        "ready.";
    r.AddGaugeCallback(
        "hipserve_memory_plan_bytes", plan_help, {{"part", "budget"}},
        model_value([](const ServingModel& m) { return m.info.memory.budget_bytes; }));
    r.AddGaugeCallback(
        "hipserve_memory_plan_bytes", plan_help, {{"part", "weights"}},
        model_value([](const ServingModel& m) { return m.info.memory.weights_bytes; }));
    r.AddGaugeCallback(
        "hipserve_memory_plan_bytes", plan_help, {{"part", "workspace"}},
        model_value([](const ServingModel& m) { return m.info.memory.workspace_bytes; }));
    r.AddGaugeCallback("hipserve_memory_plan_bytes", plan_help, {{"part", "kv"}},
                       model_value([](const ServingModel& m) { return m.info.memory.kv_bytes; }));
    r.AddGaugeCallback(
        "hipserve_memory_plan_bytes", plan_help, {{"part", "host_kv"}},
        model_value([](const ServingModel& m) { return m.info.memory.host_kv_bytes; }));
    r.AddGaugeCallback(
        "hipserve_kv_gpu_hot_tokens",
        "KV offload: tokens whose pages fit the GPU's hot pool per worker (the rest is read from "
        "the host tier); 0 without offload.",
        {}, model_value([](const ServingModel& m) { return m.info.memory.gpu_kv_tokens; }));
    r.AddGaugeCallback("hipserve_workers_ready", "Workers registered and configured.", {},
                       [this] { return WorkersReady(); });
    r.AddGaugeCallback("hipserve_ready", "1 while the server admits requests (readiness).", {},
                       [this] { return WorkersReady() > 0 && !draining ? 1.0 : 0.0; });
    r.AddGaugeCallback("hipserve_draining", "1 once a drain (SIGTERM) has begun.", {},
                       [this] { return draining ? 1.0 : 0.0; });
  }

  int WorkersReady() {
    std::lock_guard<std::mutex> lock(mu);
    return ready ? options.world_size : 0;
  }

  void SetServing(bool serving) {
    public_server->GetHealthCheckService()->SetServingStatus(kReadinessService, serving);
  }

  void ConfigLoop() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<WorkerGroup> broken;
      std::vector<std::string> addresses;
      bool changed =
          registry.WaitForChange(&seen, &addresses, &stop, std::chrono::milliseconds(500));
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stop) return;
        // A broken group (lost worker) turns readiness off until workers re-register.
        if (ready && group && !group->healthy()) {
          LOG(ERROR) << "worker group is unhealthy; NOT_SERVING until workers re-register";
          ready = false;
          SetServing(false);
          generation.SetModel(nullptr);
          broken = group;
          group.reset();
        }
      }
      if (broken != nullptr) {
        // Drop the broken group (its streams are cancelled, the workers free their KV and
        // announce themselves again); the next registration rebuilds the group.
        scheduler.SetWorkerGroup(nullptr, nullptr);
        broken.reset();
        registry.MarkStale();
      }
      if (!changed) continue;
      {
        std::lock_guard<std::mutex> lock(mu);
        ready = false;
      }
      SetServing(false);
      generation.SetModel(nullptr);
      LOG(INFO) << "all " << addresses.size() << " workers registered; configuring "
                << options.model;
      control::ConfigureRequest req;
      req.set_model(options.model);
      req.set_attention(options.attention);
      req.set_hip_config_json(options.hip_config_json);
      req.set_max_context(options.max_context);
      req.set_gpu_kv_bytes(options.gpu_kv_bytes);
      req.set_host_kv_bytes(options.host_kv_bytes);
      req.set_seed(options.seed);
      req.set_max_step_tokens(options.scheduler.chunk_tokens + options.scheduler.max_batch);
      // A fresh rendezvous prefix per attempt: ranks of an abandoned attempt never meet ranks
      // of this one.
      const std::string prefix = absl::StrCat("cfg", ++attempts, "/");
      rendezvous.Begin(prefix);
      req.set_comm_bootstrap(prefix);
      absl::StatusOr<std::unique_ptr<RemoteWorkerGroup>> g = RemoteWorkerGroup::Connect(
          addresses, req, options.configure_timeout_s, options.step_timeout_s,
          [this] { rendezvous.Abandon(); }, worker_credentials);
      if (!g.ok()) {
        rendezvous.Abandon();
        LOG(ERROR) << "configuration failed: " << g.status();
        // Retry at the next registration, a worker announcing itself again included (e.g. a
        // restarted worker raced a stale address of its rank).
        registry.MarkStale();
        std::lock_guard<std::mutex> lock(mu);
        configure_status = g.status();
        continue;
      }
      std::shared_ptr<WorkerGroup> shared = std::move(*g);
      absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
          Tokenizer::Create(shared->model_info().tokenizer);
      if (!tok.ok()) {
        LOG(ERROR) << "tokenizer from rank 0 is unusable: " << tok.status();
        std::lock_guard<std::mutex> lock(mu);
        configure_status = tok.status();
        continue;
      }
      std::shared_ptr<const Tokenizer> shared_tok = std::move(*tok);
      auto serving = std::make_shared<ServingModel>();
      serving->tokenizer = shared_tok;
      serving->info = shared->model_info();
      serving->world_size = shared->world_size();
      scheduler.SetWorkerGroup(shared, shared_tok);
      generation.SetModel(serving);
      {
        std::lock_guard<std::mutex> lock(mu);
        group = shared;
        ready = true;
        configure_status = absl::OkStatus();
      }
      if (!draining) SetServing(true);
      LOG(INFO) << "serving " << serving->info.name << " (tp " << serving->world_size
                << ", max context " << serving->info.max_context << ")";
    }
  }
};

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Start(const CoordinatorOptions& o) {
  if (o.world_size <= 0) return absl::InvalidArgumentError("--world_size must be > 0");
  std::shared_ptr<BearerTokens> tokens;
  if (!o.auth_tokens_file.empty()) {
    ASSIGN_OR_RETURN(tokens, BearerTokens::Load(o.auth_tokens_file));
    LOG(INFO) << "public API requires one of " << tokens->size() << " bearer tokens ("
              << o.auth_tokens_file << ")";
  }
  // TLS: every file is read and checked before anything listens.
  // The server certificates are reloadable (SIGHUP, ReloadTls).
  const tls::TlsFiles public_tls{o.tls_cert_file, o.tls_key_file, ""};
  ASSIGN_OR_RETURN(
      std::unique_ptr<tls::ReloadableServerCredentials> public_reloadable,
      tls::ReloadableServerCredentials::Create(public_tls, tls::ClientCertPolicy::kNone, "--tls_"));
  std::shared_ptr<grpc::ServerCredentials> public_creds = public_reloadable->credentials();
  const bool public_tls_on = tls::ServerTlsEnabled(public_tls);
  if (o.auth_health_and_reflection) {
    if (tokens == nullptr || !public_tls_on) {
      return absl::InvalidArgumentError(
          "--auth_health_and_reflection needs --auth_tokens_file and TLS (--tls_cert_file, "
          "--tls_key_file): gRPC checks those tokens in its TLS auth processor");
    }
    public_creds->SetAuthMetadataProcessor(MakeTokenAuthProcessor(
        tokens, {"/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/"}));
  }
  RETURN_IF_ERROR(tls::CheckMutualTlsFiles(o.worker_tls, "--worker_tls_"));
  ASSIGN_OR_RETURN(std::unique_ptr<tls::ReloadableServerCredentials> control_reloadable,
                   tls::ReloadableServerCredentials::Create(
                       o.worker_tls, tls::ClientCertPolicy::kRequireAndVerify, "--worker_tls_"));
  std::shared_ptr<grpc::ServerCredentials> control_creds = control_reloadable->credentials();
  LOG(INFO) << "public gRPC API: "
            << (public_tls_on ? "TLS (" + o.tls_cert_file + ")" : "plaintext")
            << "; workers: " << (tls::ServerTlsEnabled(o.worker_tls) ? "mutual TLS" : "plaintext");
  auto impl = std::make_unique<Impl>(o, tokens);
  impl->public_tls = std::move(public_reloadable);
  impl->control_tls = std::move(control_reloadable);
  ASSIGN_OR_RETURN(impl->worker_credentials,
                   tls::ChannelCredentials(o.worker_tls, "--worker_tls_"));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  {
    grpc::ServerBuilder b;
    b.AddListeningPort(absl::StrCat(o.host, ":", o.port), public_creds, &impl->port);
    b.RegisterService(&impl->generation);
    b.SetMaxReceiveMessageSize(64 << 20);
    impl->public_server = b.BuildAndStart();
    if (!impl->public_server || impl->port == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", o.host, ":", o.port, " (port in use?)"));
    }
  }
  {
    grpc::ServerBuilder b;
    b.AddListeningPort(absl::StrCat(o.control_host, ":", o.control_port), control_creds,
                       &impl->control_port);
    b.RegisterService(&impl->control);
    impl->control_server = b.BuildAndStart();
    if (!impl->control_server || impl->control_port == 0) {
      impl->public_server->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot listen on ", o.control_host, ":",
                                                 o.control_port, " (port in use?)"));
    }
  }
  if (o.http_port >= 0) {
    http::HttpServerOptions h;
    h.host = o.http_host;
    h.port = o.http_port;
    h.threads = o.http_threads;
    h.model_aliases = {o.model};
    h.tls_cert_file = o.tls_cert_file;
    h.tls_key_file = o.tls_key_file;
    // The HTTPS port rotates with the gRPC port (ReloadTls).
    h.tls_identity = [creds = impl->public_tls.get()] { return creds->pem(); };
    h.authorize_health = o.auth_health_and_reflection;
    if (tokens != nullptr) {
      // OpenAI clients expect 401 for a missing or a wrong key alike.
      h.authorize = [tokens](const std::string& authorization) -> absl::StatusOr<std::string> {
        absl::StatusOr<std::string> client = tokens->Identify(authorization);
        if (absl::IsPermissionDenied(client.status())) {
          return absl::UnauthenticatedError(client.status().message());
        }
        return client;
      };
    }
    absl::StatusOr<std::unique_ptr<http::OpenAiHttpServer>> server =
        http::OpenAiHttpServer::Start(h, &impl->generation);
    if (!server.ok()) {
      impl->public_server->Shutdown();
      impl->control_server->Shutdown();
      return server.status();
    }
    impl->http_server = *std::move(server);
  }
  if (o.metrics_port >= 0) {
    Impl* metrics_owner = impl.get();
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server = MetricsHttpServer::Start(
        o.host, o.metrics_port,
        [metrics_owner] { return metrics_owner->metrics.registry().Render(); });
    if (!server.ok()) {
      impl->public_server->Shutdown();
      impl->control_server->Shutdown();
      if (impl->http_server) impl->http_server->Shutdown();
      return server.status();
    }
    impl->metrics_server = *std::move(server);
  }
  impl->SetServing(false);
  Impl* raw = impl.get();
  impl->config_thread = std::thread([raw] { raw->ConfigLoop(); });
  LOG(INFO) << "coordinator listening on " << o.host << ":" << impl->port << " (control "
            << o.control_host << ":" << impl->control_port << "), waiting for " << o.world_size
            << " worker(s)";
  return std::unique_ptr<Coordinator>(new Coordinator(std::move(impl)));
}

Coordinator::~Coordinator() { Shutdown(); }

absl::Status Coordinator::ReloadAuthTokens() {
  if (impl_->auth == nullptr) {
    return absl::FailedPreconditionError("no --auth_tokens_file: there are no tokens to reload");
  }
  return impl_->auth->Reload();
}

absl::Status Coordinator::ReloadTls() {
  if (!impl_->public_tls->tls() && !impl_->control_tls->tls()) {
    return absl::FailedPreconditionError(
        "no TLS certificate to reload (--tls_cert_file, "
        "--worker_tls_cert_file)");
  }
  absl::Status s = impl_->public_tls->Reload();
  absl::Status c = impl_->control_tls->Reload();
  if (!s.ok()) return s;
  return c;
}

int Coordinator::port() const { return impl_->port; }
int Coordinator::control_port() const { return impl_->control_port; }
int Coordinator::http_port() const { return impl_->http_server ? impl_->http_server->port() : -1; }
int Coordinator::metrics_port() const {
  return impl_->metrics_server ? impl_->metrics_server->port() : -1;
}

int Coordinator::Drain(double timeout_s) {
  impl_->draining = true;
  impl_->generation.SetDraining();
  impl_->SetServing(false);
  SchedulerStats st = impl_->scheduler.Stats();
  LOG(INFO) << "draining: NOT_SERVING; waiting up to " << timeout_s << " s for "
            << st.active + st.queued << " request(s) in flight";
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (st.active + st.queued > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    st = impl_->scheduler.Stats();
  }
  const int left = st.active + st.queued;
  if (left > 0) {
    LOG(WARNING) << "drain timeout (" << timeout_s << " s): ending " << left
                 << " request(s) with UNAVAILABLE";
    impl_->scheduler.FailAll(absl::UnavailableError(absl::StrCat(
        "server is shutting down: the request did not finish within the drain timeout (", timeout_s,
        " s); retry it on another replica")));
  } else {
    LOG(INFO) << "drained: no request in flight";
  }
  return left;
}
bool Coordinator::ready() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->ready;
}
absl::Status Coordinator::configure_status() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->configure_status;
}

void Coordinator::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stop) return;
    impl_->stop = true;
  }
  {
    // Take the registry lock so the wake-up cannot slip between its predicate check and wait.
    std::lock_guard<std::mutex> lock(impl_->registry.mu());
  }
  impl_->registry.Wake();
  impl_->config_thread.join();
  impl_->SetServing(false);
  impl_->scheduler.Stop();  // running requests end with UNAVAILABLE
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
  impl_->public_server->Shutdown(deadline);
  impl_->control_server->Shutdown(deadline);
  if (impl_->http_server) impl_->http_server->Shutdown();
  if (impl_->metrics_server) impl_->metrics_server->Shutdown();
  impl_->scheduler.SetWorkerGroup(nullptr, nullptr);
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->group.reset();
}

}  // namespace hipserve::coordinator
