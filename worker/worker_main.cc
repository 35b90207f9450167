#include "worker/worker_main.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "hipserve/v1/worker.grpc.pb.h"
#include "kernels/device.h"
#include "proto/grpc_status.h"
#include "worker/model.h"
#include "worker/nccl_communicator.h"
#include "worker/worker_service.h"

namespace hipserve::worker {

namespace control = v1::control;

absl::StatusOr<std::string> ResolveBackend(const std::string& backend) {
  if (backend == "cpu" || backend == "cuda") return backend;
  if (backend == "auto") return kernels::CudaDeviceCount() > 0 ? "cuda" : "cpu";
  return absl::InvalidArgumentError(
      absl::StrCat("--backend='", backend, "' is unknown; use 'cpu', 'cuda' or 'auto'"));
}

std::string HostOfAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

absl::StatusOr<int> RankFromHostname(const std::string& hostname) {
  size_t dash = hostname.rfind('-');
  int rank = -1;
  if (dash == std::string::npos || !absl::SimpleAtoi(hostname.substr(dash + 1), &rank) ||
      rank < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot derive --rank from hostname '", hostname,
                     "' (expected a StatefulSet name like 'hipserve-worker-3'); pass --rank"));
  }
  return rank;
}

namespace {

std::string Hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

std::string NewInstanceId() {
  std::random_device rd;
  return absl::StrCat(absl::Hex(rd(), absl::kZeroPad8), absl::Hex(rd(), absl::kZeroPad8), "-",
                      getpid());
}

absl::Status Register(const WorkerMainOptions& o, int rank, const std::string& advertise,
                      const std::string& instance_id, const std::atomic<bool>* stop,
                      bool log_success = true) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                   tls::ChannelCredentials(o.tls, "--worker_tls_"));
  auto channel = grpc::CreateChannel(o.coordinator, creds);
  auto stub = control::Control::NewStub(channel);
  control::RegisterRequest req;
  req.set_rank(rank);
  req.set_address(advertise);
  req.set_backend(o.backend);
  req.set_hostname(Hostname());
  req.set_instance_id(instance_id);
  req.set_expected_world_size(o.expected_world_size);
  req.set_expected_model(o.expected_model);
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(o.register_timeout_s * 1000));
  int attempt = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    control::RegisterResponse resp;
    grpc::Status s = stub->Register(&ctx, req, &resp);
    if (s.ok()) {
      if (log_success)
        LOG(INFO) << "registered with coordinator " << o.coordinator << " as rank " << rank
                  << " of " << resp.world_size() << " (" << advertise << ")";
      return absl::OkStatus();
    }
    // A coordinator that answers with a definite refusal will not change its mind.
    if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
        s.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
      return proto::FromGrpcStatus(s);
    }
    if (std::chrono::steady_clock::now() > deadline || (stop && stop->load())) {
      return absl::UnavailableError(absl::StrCat("could not register with coordinator ",
                                                 o.coordinator, ": ", s.error_message()));
    }
    if (++attempt % 10 == 1) {
      LOG(INFO) << "waiting for coordinator " << o.coordinator << ": " << s.error_message();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(200 * attempt, 2000)));
  }
}

}  // namespace

absl::Status RunWorker(const WorkerMainOptions& o, const std::atomic<bool>* stop) {
  if (o.coordinator.empty()) return absl::InvalidArgumentError("--coordinator is required");
  int rank = o.rank;
  if (rank < 0) {
    ASSIGN_OR_RETURN(rank, RankFromHostname(Hostname()));
  }
  common::SetLogPrefix(absl::StrCat("worker[", rank, "]"));
  SetNcclEnvironmentDefaults();  // before any NCCL communicator exists
  WorkerOptions wo;
  ASSIGN_OR_RETURN(wo.backend, ResolveBackend(o.backend));
  LOG(INFO) << "backend " << wo.backend << " (--backend=" << o.backend << ", "
            << kernels::CudaDeviceCount() << " CUDA devices visible)";
  wo.gpu_memory_bytes = o.gpu_memory_bytes;
  if (wo.backend == "cuda") {
    const int devices = kernels::CudaDeviceCount();
    wo.device = o.device >= 0 ? o.device : (devices > 0 ? rank % devices : 0);
    if (wo.device >= devices) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device=", wo.device, " but ", devices, " CUDA devices are visible"));
    }
    LOG(INFO) << "CUDA device " << wo.device << " of " << devices;
  }
  wo.rank = rank;
  wo.gpu_kv_bytes = o.gpu_kv_bytes;
  wo.host_kv_bytes = o.host_kv_bytes;
  wo.cpu_weights = o.cpu_weights;
  RETURN_IF_ERROR(CheckKvOffload(o.kv_offload));  // fail before registering
  wo.kv_offload = o.kv_offload;
  RETURN_IF_ERROR(ParseKvDtype(o.kv_dtype).status());  // fail before registering
  wo.kv_dtype = o.kv_dtype;
  RETURN_IF_ERROR(ParseCpuWeights(o.cpu_weights).status());  // fail before registering
  wo.coordinator = o.coordinator;
  wo.collective_timeout_s = o.collective_timeout_s;
  wo.rendezvous_timeout_s = o.rendezvous_timeout_s;
  wo.force_nccl = o.force_nccl;
  wo.instance_id = NewInstanceId();
  const std::string instance_id = wo.instance_id;
  // comm_host is known only once the port is bound (below); WorkerState reads it at Configure.
  WorkerService service(wo);
  RETURN_IF_ERROR(tls::CheckMutualTlsFiles(o.tls, "--worker_tls_"));
  ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> server_creds,
      tls::ServerCredentials(o.tls, tls::ClientCertPolicy::kRequireAndVerify, "--worker_tls_"));
  LOG(INFO) << "control service: "
            << (tls::ServerTlsEnabled(o.tls) ? "mutual TLS (" + o.tls.cert_file + ")"
                                             : "plaintext");
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(o.listen, server_creds, &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(256 << 20);
  builder.SetMaxSendMessageSize(256 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("worker cannot listen on ", o.listen));
  }
  std::string advertise = o.advertise;
  if (advertise.empty()) {
    std::string host = std::string(o.listen.substr(0, o.listen.rfind(':')));
    if (host == "0.0.0.0" || host == "[::]" || host.empty()) host = Hostname();
    advertise = absl::StrCat(host, ":", port);
  } else if (absl::EndsWith(advertise, ":0")) {
    advertise = absl::StrCat(advertise.substr(0, advertise.size() - 1), port);
  }
  service.set_comm_host(o.comm_host.empty() ? HostOfAddress(advertise) : o.comm_host);
  WorkerMainOptions resolved = o;  // Register reports the backend this worker runs
  resolved.backend = wo.backend;
  absl::Status reg = Register(resolved, rank, advertise, instance_id, stop);
  if (!reg.ok()) {
    server->Shutdown();
    return reg;
  }
  // While no coordinator holds a Step stream (it restarted, or was replaced), keep announcing
  // this worker so that a new coordinator can configure it. Register is idempotent.
  auto last_announce = std::chrono::steady_clock::now();
  while (!(stop && stop->load()) &&
         !service.shutdown_requested().WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    if (service.open_streams().load() == 0 &&
        std::chrono::steady_clock::now() - last_announce > std::chrono::seconds(5)) {
      last_announce = std::chrono::steady_clock::now();
      WorkerMainOptions once = resolved;
      once.register_timeout_s = 0;
      absl::Status s = Register(once, rank, advertise, instance_id, stop, /*log_success=*/false);
      if (!s.ok()) LOG(DEBUG) << "re-announce: " << s;
    }
  }
  LOG(INFO) << "worker shutting down";
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return absl::OkStatus();
}

}  // namespace hipserve::worker
