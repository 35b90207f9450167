// `hipserve worker`: one tensor-parallel worker that registers with a coordinator.
#include <iostream>

#include "absl/flags/flag.h"
#include "common/flags/flags.h"
#include "common/status_macros.h"
#include "common/tls/tls.h"
#include "coordinator/cli/commands.h"
#include "worker/model_options.h"
#include "worker/worker_main.h"

using hipserve::flags::ByteSize;
using hipserve::worker::WorkerMainOptions;

ABSL_FLAG(std::string, worker_coordinator, WorkerMainOptions().coordinator,
          "Coordinator control-plane address (host:port).");
ABSL_FLAG(int, worker_rank, WorkerMainOptions().rank,
          "This worker's rank, >= 0; -1 = the hostname's trailing number (StatefulSet "
          "ordinal).");
ABSL_FLAG(std::string, worker_listen, WorkerMainOptions().listen,
          "Address this worker's control service binds to (port 0 = any).");
ABSL_FLAG(std::string, worker_advertise, WorkerMainOptions().advertise,
          "Address the coordinator dials to reach this worker; empty = hostname:bound port.");
ABSL_FLAG(std::string, worker_backend, WorkerMainOptions().backend,
          "Compute backend: 'cpu' (fp32 reference), 'cuda' (bf16 on the GPU, dense or HiP "
          "attention) or 'auto' (cuda when a CUDA device is visible, else cpu).");
ABSL_FLAG(ByteSize, worker_gpu_memory_bytes, ByteSize{WorkerMainOptions().gpu_memory_bytes},
          "CUDA backend: GPU memory for weights, workspaces and KV (e.g. 60GiB); 0 = 90% of the "
          "device's free memory. The plan is logged at startup.");
ABSL_FLAG(ByteSize, worker_gpu_kv_bytes, ByteSize{WorkerMainOptions().gpu_kv_bytes},
          "This worker's GPU KV budget (e.g. 40GiB); 0 = the coordinator's --gpu_kv_bytes.");
ABSL_FLAG(ByteSize, worker_host_kv_bytes, ByteSize{WorkerMainOptions().host_kv_bytes},
          "This worker's host KV budget (its pod's memory share); 0 = the coordinator's.");
ABSL_FLAG(std::string, worker_cpu_weights, WorkerMainOptions().cpu_weights,
          "CPU backend: linear weights kept in 'fp32' (as loaded) or rounded once to 'bf16' "
          "(half the memory traffic per decode token, fp32 accumulation; logits move by "
          "<~1%).");
ABSL_FLAG(double, worker_register_timeout_s, WorkerMainOptions().register_timeout_s,
          "Keep retrying registration this long (seconds, > 0) before giving up.");
ABSL_FLAG(std::string, worker_comm_host, WorkerMainOptions().comm_host,
          "Tensor parallelism (--world_size > 1 on the coordinator): address the Gloo TCP "
          "transport binds to and peers connect to; empty = the host of --advertise (or of "
          "--listen / the hostname).");
ABSL_FLAG(double, worker_collective_timeout_s, WorkerMainOptions().collective_timeout_s,
          "Longest wait (seconds, > 0) for one collective (all-reduce, all-gather) with the "
          "other ranks: a dead or stalled peer fails the step after this, never hangs it.");
ABSL_FLAG(double, worker_rendezvous_timeout_s, WorkerMainOptions().rendezvous_timeout_s,
          "Longest wait (seconds, > 0) at Configure for every rank to join the communicator.");
ABSL_FLAG(bool, worker_force_nccl, WorkerMainOptions().force_nccl,
          "CUDA backend: use the NCCL communicator at world size 1 too (also "
          "HIPSERVE_FORCE_NCCL=1); exercises the NCCL path on one GPU.");
ABSL_FLAG(int, worker_world_size, WorkerMainOptions().expected_world_size,
          "Refuse to join a coordinator whose --world_size differs (0 = accept any).");
ABSL_FLAG(std::string, worker_model, WorkerMainOptions().expected_model,
          "Refuse to join a coordinator serving a different --model (empty = accept any).");
ABSL_FLAG(int, worker_device, WorkerMainOptions().device,
          "CUDA backend: the device ordinal this worker uses; -1 = rank modulo the visible "
          "devices (one GPU per rank on one host).");
ABSL_FLAG(std::string, worker_worker_tls_cert_file, WorkerMainOptions().tls.cert_file,
          "Mutual TLS with the coordinator (with --worker_tls_key_file and --worker_tls_ca_file; "
          "all three or none, matching the coordinator's): this worker's certificate (PEM). It "
          "serves the control service with it (it must name the --advertise address) and "
          "presents it when registering.");
ABSL_FLAG(std::string, worker_worker_tls_key_file, WorkerMainOptions().tls.key_file,
          "Private key (PEM) of --worker_tls_cert_file.");
ABSL_FLAG(std::string, worker_worker_tls_ca_file, WorkerMainOptions().tls.ca_file,
          "CA certificates (PEM) that sign the coordinator's certificate: a coordinator "
          "without one is refused at the TLS handshake.");

ABSL_FLAG(std::string, worker_kv_offload, WorkerMainOptions().kv_offload,
          "CUDA backend: 'on' keeps every KV token in pinned host memory as fp8 (the host tier, "
          "--host_kv_bytes) with a GPU pool of hot pages read first; 'off' keeps bf16 KV in GPU "
          "memory only; 'auto' = on with HiP attention when the host tier holds more tokens than "
          "the GPU pool would, else off.");
ABSL_FLAG(std::string, worker_kv_dtype, WorkerMainOptions().kv_dtype,
          "CUDA backend: element type of the KV kept in GPU memory without offload: 'bf16' or "
          "'fp8' (e5m2: half the bytes per token, so the same budget holds twice the tokens; "
          "logits move by a few % of their range). Offloaded KV is fp8 whatever this says; the "
          "CPU backend keeps fp32 KV and logs that it ignores 'fp8'.");

namespace hipserve::cli {

namespace {

absl::StatusOr<WorkerMainOptions> WorkerOptionsFromFlags() {
  using flags::CheckFlag;
  WorkerMainOptions o;
  o.coordinator = absl::GetFlag(FLAGS_worker_coordinator);
  o.rank = absl::GetFlag(FLAGS_worker_rank);
  o.listen = absl::GetFlag(FLAGS_worker_listen);
  o.advertise = absl::GetFlag(FLAGS_worker_advertise);
  o.backend = absl::GetFlag(FLAGS_worker_backend);
  o.gpu_memory_bytes = absl::GetFlag(FLAGS_worker_gpu_memory_bytes).bytes;
  o.gpu_kv_bytes = absl::GetFlag(FLAGS_worker_gpu_kv_bytes).bytes;
  o.host_kv_bytes = absl::GetFlag(FLAGS_worker_host_kv_bytes).bytes;
  o.cpu_weights = absl::GetFlag(FLAGS_worker_cpu_weights);
  o.register_timeout_s = absl::GetFlag(FLAGS_worker_register_timeout_s);
  o.comm_host = absl::GetFlag(FLAGS_worker_comm_host);
  o.collective_timeout_s = absl::GetFlag(FLAGS_worker_collective_timeout_s);
  o.rendezvous_timeout_s = absl::GetFlag(FLAGS_worker_rendezvous_timeout_s);
  o.force_nccl = absl::GetFlag(FLAGS_worker_force_nccl);
  o.expected_world_size = absl::GetFlag(FLAGS_worker_world_size);
  o.expected_model = absl::GetFlag(FLAGS_worker_model);
  o.device = absl::GetFlag(FLAGS_worker_device);
  o.tls.cert_file = absl::GetFlag(FLAGS_worker_worker_tls_cert_file);
  o.tls.key_file = absl::GetFlag(FLAGS_worker_worker_tls_key_file);
  o.tls.ca_file = absl::GetFlag(FLAGS_worker_worker_tls_ca_file);
  RETURN_IF_ERROR(tls::CheckMutualTlsFiles(o.tls, "--worker_tls_"));
  o.kv_offload = absl::GetFlag(FLAGS_worker_kv_offload);
  o.kv_dtype = absl::GetFlag(FLAGS_worker_kv_dtype);
  RETURN_IF_ERROR(worker::ParseKvDtype(o.kv_dtype).status());
  RETURN_IF_ERROR(CheckFlag(o.rank >= -1, "rank", ">= 0 (or -1)", o.rank));
  RETURN_IF_ERROR(
      CheckFlag(o.register_timeout_s > 0, "register_timeout_s", "> 0", o.register_timeout_s));
  RETURN_IF_ERROR(
      CheckFlag(o.collective_timeout_s > 0, "collective_timeout_s", "> 0", o.collective_timeout_s));
  RETURN_IF_ERROR(
      CheckFlag(o.rendezvous_timeout_s > 0, "rendezvous_timeout_s", "> 0", o.rendezvous_timeout_s));
  RETURN_IF_ERROR(
      CheckFlag(o.expected_world_size >= 0, "world_size", ">= 0", o.expected_world_size));
  RETURN_IF_ERROR(CheckFlag(o.device >= -1, "device", ">= 0 (or -1)", o.device));
  return o;
}

}  // namespace

int WorkerCommand(const std::vector<std::string>& args) {
  static const flags::CommandSpec kSpec{
      "hipserve worker",
      "Runs one tensor-parallel worker: registers with the coordinator, loads its shard of\n"
      "the model when configured, and executes steps until shut down.",
      {"worker_"}};
  if (int rc = flags::ParseCommandFlagsOrExitCode(kSpec, args); rc >= 0) return rc;
  absl::StatusOr<WorkerMainOptions> o = WorkerOptionsFromFlags();
  if (!o.ok()) {
    std::cerr << "hipserve worker: " << o.status().message() << "\n";
    return 2;
  }
  InstallStopSignals();
  absl::Status s = worker::RunWorker(*o, StopFlag());
  if (!s.ok()) {
    std::cerr << "hipserve worker: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace hipserve::cli
