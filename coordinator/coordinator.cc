#include "coordinator/coordinator.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <condition_variable>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "coordinator/generation_service.h"
#include "coordinator/remote_worker_group.h"
#include "hipserve/v1/worker.grpc.pb.h"

namespace hipserve::coordinator {

namespace control = v1::control;

inline constexpr char kReadinessService[] = "hipserve.v1.Generation";

// Worker registrations, shared by the Control service and the configuration thread.
class Registry {
 public:
  explicit Registry(int world_size) : addresses_(world_size) {}

  absl::Status Register(int rank, const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    if (rank < 0 || rank >= static_cast<int>(addresses_.size())) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " outside world of ",
                                                     addresses_.size()));
    }
    if (address.empty()) return absl::InvalidArgumentError("worker address is empty");
    if (addresses_[rank] != address) {
      if (!addresses_[rank].empty()) {
        LOG(WARNING) << "rank " << rank << " re-registered from " << address << " (was "
                     << addresses_[rank] << "); reconfiguring the group";
      }
      addresses_[rank] = address;
      ++generation_;
      cv_.notify_all();
    }
    return absl::OkStatus();
  }

  int Registered() const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& a : addresses_) n += a.empty() ? 0 : 1;
    return n;
  }

  // Waits until every rank is registered and the set differs from `seen_generation`, or
  // until stop/timeout. Returns the addresses and updates seen_generation.
  bool WaitForChange(uint64_t* seen_generation, std::vector<std::string>* out,
                     const std::atomic<bool>* stop, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return *stop || (Complete() && generation_ != *seen_generation); });
    if (*stop || !Complete() || generation_ == *seen_generation) return false;
    *seen_generation = generation_;
    *out = addresses_;
    return true;
  }

  void Wake() { cv_.notify_all(); }
  std::mutex& mu() { return mu_; }

 private:
  bool Complete() const {
    for (const auto& a : addresses_) if (a.empty()) return false;
    return true;
  }
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> addresses_;
  uint64_t generation_ = 0;
};

class ControlService final : public control::Control::CallbackService {
 public:
  ControlService(Registry* registry, int world_size)
      : registry_(registry), world_size_(world_size) {}
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const control::RegisterRequest* req,
                                     control::RegisterResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    absl::Status s = registry_->Register(req->rank(), req->address());
    if (s.ok()) {
      LOG(INFO) << "worker rank " << req->rank() << " registered from " << req->address()
                << " (" << req->backend() << ", host " << req->hostname() << ")";
      resp->set_world_size(world_size_);
      reactor->Finish(grpc::Status::OK);
    } else {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   std::string(s.message())));
    }
    return reactor;
  }

 private:
  Registry* registry_;
  int world_size_;
};

struct Coordinator::Impl {
  CoordinatorOptions options;
  Registry registry;
  Scheduler scheduler;
  GenerationService generation;
  ControlService control;
  std::unique_ptr<grpc::Server> public_server;
  std::unique_ptr<grpc::Server> control_server;
  int port = 0, control_port = 0;
  mutable std::mutex mu;
  std::atomic<bool> stop{false};
  bool ready = false;
  absl::Status configure_status;
  std::shared_ptr<WorkerGroup> group;
  std::thread config_thread;

  explicit Impl(const CoordinatorOptions& o)
      : options(o),
        registry(o.world_size),
        scheduler(o.scheduler),
        generation(&scheduler, MakeServiceOptions(o), [this] { return WorkersReady(); }),
        control(&registry, o.world_size) {}

  static GenerationServiceOptions MakeServiceOptions(const CoordinatorOptions& o) {
    GenerationServiceOptions g;
    g.limits.default_max_tokens = o.default_max_tokens;
    g.limits.max_tokens_limit = o.max_tokens_limit;
    g.limits.max_prompt_tokens = o.max_prompt_tokens;
    g.limits.attention = o.attention;
    g.hip_config_json = o.hip_config_json;
    return g;
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
      std::vector<std::string> addresses;
      bool changed = registry.WaitForChange(&seen, &addresses, &stop,
                                            std::chrono::milliseconds(500));
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stop) return;
        // A broken group (lost worker) turns readiness off until workers re-register.
        if (ready && group && !group->healthy()) {
          LOG(ERROR) << "worker group is unhealthy; NOT_SERVING until workers re-register";
          ready = false;
          SetServing(false);
          generation.SetModel(nullptr);
        }
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
      absl::StatusOr<std::unique_ptr<RemoteWorkerGroup>> g =
          RemoteWorkerGroup::Connect(addresses, req, options.configure_timeout_s,
                                     options.step_timeout_s);
      if (!g.ok()) {
        LOG(ERROR) << "configuration failed: " << g.status();
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
      SetServing(true);
      LOG(INFO) << "serving " << serving->info.name << " (tp " << serving->world_size
                << ", max context " << serving->info.max_context << ")";
    }
  }
};

Coordinator::Coordinator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Start(const CoordinatorOptions& o) {
  if (o.world_size <= 0) return absl::InvalidArgumentError("--world_size must be > 0");
  auto impl = std::make_unique<Impl>(o);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  {
    grpc::ServerBuilder b;
    b.AddListeningPort(absl::StrCat(o.host, ":", o.port), grpc::InsecureServerCredentials(),
                       &impl->port);
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
    b.AddListeningPort(absl::StrCat(o.control_host, ":", o.control_port),
                       grpc::InsecureServerCredentials(), &impl->control_port);
    b.RegisterService(&impl->control);
    impl->control_server = b.BuildAndStart();
    if (!impl->control_server || impl->control_port == 0) {
      impl->public_server->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot listen on ", o.control_host, ":",
                                                 o.control_port, " (port in use?)"));
    }
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

int Coordinator::port() const { return impl_->port; }
int Coordinator::control_port() const { return impl_->control_port; }
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
  impl_->scheduler.SetWorkerGroup(nullptr, nullptr);
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->group.reset();
}

}  // namespace hipserve::coordinator
