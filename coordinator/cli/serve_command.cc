// `hipserve serve`: coordinator in this process, workers as child processes (one per rank).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/flags/flags.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "coordinator/cli/client.h"
#include "coordinator/cli/commands.h"
#include "coordinator/cli/coordinator_flags.h"
#include "kernels/device.h"
#include "worker/model_options.h"

ABSL_FLAG(int, serve_tp, 1,
          "Tensor-parallel degree: worker processes to start (one per GPU), >= 1.");
ABSL_FLAG(std::string, serve_backend, "auto",
          "Worker backend: 'cpu' (fp32 reference), 'cuda' (bf16 on the GPU, dense or HiP "
          "attention) or 'auto' (cuda when a CUDA device is visible, else cpu). The choice is "
          "printed at startup.");
ABSL_FLAG(hipserve::flags::ByteSize, serve_gpu_memory_bytes, hipserve::flags::ByteSize{},
          "CUDA backend: GPU memory per worker for weights, workspaces and KV (e.g. 60GiB); "
          "0 = 90% of the device's free memory.");
ABSL_FLAG(std::string, serve_cpu_weights, "fp32",
          "CPU backend: linear weights kept in 'fp32' (as loaded) or rounded once to 'bf16' "
          "(half the memory traffic per decode token, fp32 accumulation; logits move by "
          "<~1%).");
ABSL_FLAG(std::string, serve_port_file, "",
          "Write the bound public port to this file once listening.");
ABSL_FLAG(std::string, serve_prompt, "", "Answer this prompt through the gRPC API, print, exit.");
ABSL_FLAG(bool, serve_chat, false, "With --prompt: send it as a chat message (model's template).");
ABSL_FLAG(int, serve_max_tokens, 64, "With --prompt: tokens to generate, >= 1.");
ABSL_FLAG(double, serve_temperature, 0.0, "With --prompt: sampling temperature (0 = greedy).");
ABSL_FLAG(hipserve::flags::IntList, serve_gpus, hipserve::flags::IntList{},
          "CUDA backend: device ordinals for the workers, e.g. 0,1,2,3 (worker r uses entry "
          "r); empty = all visible, worker r on device r. Needs at least --tp entries.");
ABSL_FLAG(std::string, serve_kv_offload, "auto",
          "CUDA backend: 'on' keeps every KV token in pinned host memory as fp8 (the host tier, "
          "--host_kv_bytes per worker) with a GPU pool of hot pages read first; 'off' keeps bf16 "
          "KV in GPU memory only; 'auto' = on with --attention=hip when the host tier holds more "
          "tokens than the GPU pool would, else off.");
ABSL_FLAG(std::string, serve_kv_dtype, "bf16",
          "CUDA backend: element type of the KV kept in GPU memory without offload: 'bf16' or "
          "'fp8' (e5m2: half the bytes per token, so the same budget holds twice the tokens; "
          "logits move by a few % of their range). Offloaded KV is fp8 whatever this says; the "
          "CPU backend keeps fp32 KV and logs that it ignores 'fp8'.");
ABSL_FLAG(double, serve_ready_timeout_s, 600,
          "How long to wait for the workers to be ready, in seconds, > 0.");
ABSL_FLAG(std::string, serve_tls_ca_file, "",
          "With --prompt and --tls_cert_file: the CA (PEM) that signed --tls_cert_file, to "
          "verify the server when the prompt is sent to localhost:<port> over TLS; empty = "
          "--tls_cert_file itself (a self-signed certificate).");
ABSL_FLAG(int, serve_worker_restart_limit, 10,
          "How often each worker rank is restarted after it dies, >= 0 (the public port stays "
          "up, readiness NOT_SERVING until the group is whole again; running requests wait "
          "--recovery_timeout_s). Past the limit, or 0, a dead worker stops the server.");
ABSL_FLAG(double, serve_worker_restart_backoff_s, 0.5,
          "Delay before restarting a dead worker, in seconds, >= 0; doubles with each "
          "consecutive death of that rank (at most 30 s) and resets once it has run 60 s.");

namespace hipserve::cli {

namespace {

pid_t SpawnWorker(const std::string& self, const std::vector<std::string>& args) {
  pid_t pid = fork();
  if (pid != 0) return pid;          // parent (or -1)
  prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive `serve`
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(self.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(self.c_str(), argv.data());
  std::perror("exec hipserve worker");
  _exit(127);
}

void StopChildren(std::vector<pid_t>& children) {
  for (pid_t p : children)
    if (p > 0) kill(p, SIGTERM);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (pid_t& p : children) {
    while (p > 0) {
      int status = 0;
      pid_t r = waitpid(p, &status, WNOHANG);
      if (r == p || r < 0) {
        p = -1;
        break;
      }
      if (std::chrono::steady_clock::now() > end) {
        kill(p, SIGKILL);
        waitpid(p, &status, 0);
        p = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

// Returns the rank of a child that exited, or -1.
int ReapExited(std::vector<pid_t>& children, int* exit_status) {
  for (size_t r = 0; r < children.size(); ++r) {
    if (children[r] <= 0) continue;
    int status = 0;
    if (waitpid(children[r], &status, WNOHANG) == children[r]) {
      children[r] = -1;
      *exit_status = status;
      return static_cast<int>(r);
    }
  }
  return -1;
}

// Range checks of serve's own flags (the shared ones: CoordinatorOptionsFromFlags).
absl::Status CheckServeFlags() {
  const int tp = absl::GetFlag(FLAGS_serve_tp);
  RETURN_IF_ERROR(flags::CheckFlag(tp > 0, "tp", "> 0", tp));
  const std::string backend = absl::GetFlag(FLAGS_serve_backend);
  if (backend != "cpu" && backend != "cuda" && backend != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend must be 'cpu', 'cuda' or 'auto', got '", backend, "'"));
  }
  const std::string cpu_weights = absl::GetFlag(FLAGS_serve_cpu_weights);
  if (cpu_weights != "fp32" && cpu_weights != "bf16") {
    return absl::InvalidArgumentError(
        absl::StrCat("--cpu_weights must be 'fp32' or 'bf16', got '", cpu_weights, "'"));
  }
  const std::string kv_offload = absl::GetFlag(FLAGS_serve_kv_offload);
  RETURN_IF_ERROR(worker::CheckKvOffload(kv_offload));
  RETURN_IF_ERROR(worker::ParseKvDtype(absl::GetFlag(FLAGS_serve_kv_dtype)).status());
  const std::vector<int> gpus = absl::GetFlag(FLAGS_serve_gpus).values;
  if (!gpus.empty() && static_cast<int>(gpus.size()) < tp) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpus lists ", gpus.size(), " devices for --tp=", tp, " workers"));
  }
  for (int g : gpus) RETURN_IF_ERROR(flags::CheckFlag(g >= 0, "gpus", "entries >= 0", g));
  const int max_tokens = absl::GetFlag(FLAGS_serve_max_tokens);
  RETURN_IF_ERROR(flags::CheckFlag(max_tokens >= 1, "max_tokens", ">= 1", max_tokens));
  const double ready_timeout_s = absl::GetFlag(FLAGS_serve_ready_timeout_s);
  RETURN_IF_ERROR(flags::CheckFlag(ready_timeout_s > 0, "ready_timeout_s", "> 0", ready_timeout_s));
  const int restart_limit = absl::GetFlag(FLAGS_serve_worker_restart_limit);
  RETURN_IF_ERROR(
      flags::CheckFlag(restart_limit >= 0, "worker_restart_limit", ">= 0", restart_limit));
  const double backoff_s = absl::GetFlag(FLAGS_serve_worker_restart_backoff_s);
  return flags::CheckFlag(backoff_s >= 0, "worker_restart_backoff_s", ">= 0", backoff_s);
}

std::string ExitDescription(int status) {
  return WIFEXITED(status) ? absl::StrCat("code ", WEXITSTATUS(status))
                           : absl::StrCat("signal ", WTERMSIG(status));
}

// Restarts of dead workers: per rank, a count against --worker_restart_limit and a backoff
// that doubles with each consecutive death.
class WorkerRestarts {
 public:
  using Clock = std::chrono::steady_clock;
  WorkerRestarts(int ranks, int limit, double backoff_s)
      : limit_(limit), backoff_s_(backoff_s), ranks_(ranks) {}

  void Started(int rank) {
    ranks_[rank].started = Clock::now();
    ranks_[rank].pending = false;
  }
  // Rank `rank` died with `status`: false when it must not be restarted (limit reached).
  bool Died(int rank, int status) {
    Rank& r = ranks_[rank];
    const Clock::time_point now = Clock::now();
    if (r.restarts >= limit_) {
      LOG(ERROR) << "worker rank " << rank << " exited (" << ExitDescription(status) << "); "
                 << (limit_ == 0 ? std::string("stopping")
                                 : absl::StrCat("restart limit (", limit_, ") reached; stopping"));
      return false;
    }
    if (now - r.started > std::chrono::seconds(60)) r.streak = 0;
    const double delay = std::min(30.0, backoff_s_ * std::pow(2.0, r.streak));
    ++r.streak;
    ++r.restarts;
    r.pending = true;
    r.restart_at = now + std::chrono::milliseconds(static_cast<int64_t>(delay * 1000));
    LOG(WARNING) << "worker rank " << rank << " exited (" << ExitDescription(status)
                 << "); restarting it in " << delay << " s (restart " << r.restarts << " of "
                 << limit_ << "); NOT_SERVING until the worker group is whole again";
    return true;
  }
  // Whether `rank` waits for a restart that is due now.
  bool Due(int rank) const {
    return ranks_[rank].pending && Clock::now() >= ranks_[rank].restart_at;
  }

 private:
  struct Rank {
    int restarts = 0;
    int streak = 0;  // consecutive deaths (reset after 60 s of life)
    bool pending = false;
    Clock::time_point started, restart_at;
  };
  int limit_;
  double backoff_s_;
  std::vector<Rank> ranks_;
};

}  // namespace

int ServeCommand(const std::string& self, const std::vector<std::string>& args) {
  static const flags::CommandSpec kSpec{
      "hipserve serve",
      "Runs the whole server on this machine: the coordinator (public gRPC API on --port)\n"
      "and --tp worker processes. With --prompt it answers that one prompt through the\n"
      "gRPC API, prints the answer and exits (a smoke test of the full path). A worker that\n"
      "dies is restarted (--worker_restart_limit) and running requests continue on the\n"
      "rebuilt group (--recovery_timeout_s). On SIGTERM it drains: NOT_SERVING at once,\n"
      "running requests finish (--drain_timeout_s), exit 0.",
      {"serve_", kServerFlagPrefix}};
  if (int rc = flags::ParseCommandFlagsOrExitCode(kSpec, args); rc >= 0) return rc;
  absl::StatusOr<coordinator::CoordinatorOptions> options = CoordinatorOptionsFromFlags();
  absl::Status valid = options.ok() ? CheckServeFlags() : options.status();
  if (!valid.ok()) {
    std::cerr << "hipserve serve: " << valid.message() << "\n";
    return 2;
  }
  coordinator::CoordinatorOptions& o = *options;
  const int tp = absl::GetFlag(FLAGS_serve_tp);
  std::string backend = absl::GetFlag(FLAGS_serve_backend);
  const std::string cpu_weights = absl::GetFlag(FLAGS_serve_cpu_weights);
  const double ready_timeout_s = absl::GetFlag(FLAGS_serve_ready_timeout_s);
  const std::string port_file = absl::GetFlag(FLAGS_serve_port_file);
  const int64_t gpu_memory_bytes = absl::GetFlag(FLAGS_serve_gpu_memory_bytes).bytes;
  GenerateClientOptions client;
  client.prompt = absl::GetFlag(FLAGS_serve_prompt);
  client.chat = absl::GetFlag(FLAGS_serve_chat);
  if (backend == "auto") {
    const int devices = kernels::CudaDeviceCount();
    backend = devices > 0 ? "cuda" : "cpu";
    std::cerr << "hipserve serve: backend " << backend << " (--backend=auto, " << devices
              << " CUDA devices visible)\n";
  }
  o.world_size = tp;
  o.control_host = "127.0.0.1";
  o.control_port = 0;
  InstallStopSignals();
  InstallReloadSignal();
  absl::StatusOr<std::unique_ptr<coordinator::Coordinator>> c = coordinator::Coordinator::Start(o);
  if (!c.ok()) {
    std::cerr << "hipserve serve: " << c.status().message() << "\n";
    return 1;
  }
  if (backend == "cpu" && tp > 1 && std::getenv("HIPSERVE_CPU_THREADS") == nullptr) {
    // CPU workers of one machine share its cores: each gets its share, not all of them (every
    // worker's spin pool would otherwise oversubscribe the machine tp times).
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    setenv("HIPSERVE_CPU_THREADS", std::to_string(std::max(1, cores / tp)).c_str(), 1);
  }
  const std::vector<int> gpus = absl::GetFlag(FLAGS_serve_gpus).values;
  std::vector<pid_t> children;
  std::vector<std::vector<std::string>> worker_args;
  WorkerRestarts restarts(tp, absl::GetFlag(FLAGS_serve_worker_restart_limit),
                          absl::GetFlag(FLAGS_serve_worker_restart_backoff_s));
  for (int r = 0; r < tp; ++r) {
    std::vector<std::string> args = {"worker",
                                     absl::StrCat("--coordinator=127.0.0.1:", (*c)->control_port()),
                                     absl::StrCat("--rank=", r),
                                     "--listen=127.0.0.1:0",
                                     "--backend=" + backend,
                                     "--cpu_weights=" + cpu_weights,
                                     absl::StrCat("--gpu_memory_bytes=", gpu_memory_bytes),
                                     "--kv_offload=" + absl::GetFlag(FLAGS_serve_kv_offload),
                                     "--kv_dtype=" + absl::GetFlag(FLAGS_serve_kv_dtype)};
    if (backend == "cuda") {
      args.push_back(absl::StrCat("--device=", gpus.empty() ? r : gpus[r]));
    }
    for (std::string& a : WorkerTlsArgs(o)) args.push_back(std::move(a));
    worker_args.push_back(args);
    children.push_back(SpawnWorker(self, args));
    restarts.Started(r);
    if (children.back() < 0) {
      std::cerr << "hipserve serve: cannot start worker " << r << "\n";
      StopChildren(children);
      return 1;
    }
  }
  if (!port_file.empty() && !WritePortFile(port_file, (*c)->port())) {
    std::cerr << "hipserve serve: cannot write --port_file " << port_file << "\n";
    StopChildren(children);
    return 1;
  }
  if (!WriteHttpPortFile(**c)) {
    std::cerr << "hipserve serve: cannot write --http_port_file\n";
    StopChildren(children);
    return 1;
  }
  if (!WriteMetricsPortFile(**c)) {
    std::cerr << "hipserve serve: cannot write --metrics_port_file\n";
    StopChildren(children);
    return 1;
  }

  int exit_code = 0;
  const auto start = std::chrono::steady_clock::now();
  bool prompt_done = client.prompt.empty();
  bool ever_ready = false;  // after the first configuration, failures wait for restarts
  while (!StopRequested()) {
    ReloadTokensIfRequested(**c);
    int status = 0;
    int dead = ReapExited(children, &status);
    if (dead >= 0 && !restarts.Died(dead, status)) {
      exit_code = 1;
      break;
    }
    bool spawn_failed = false;
    for (int r = 0; r < tp; ++r) {
      if (children[r] > 0 || !restarts.Due(r)) continue;
      children[r] = SpawnWorker(self, worker_args[r]);
      restarts.Started(r);
      if (children[r] < 0) {
        LOG(ERROR) << "cannot restart worker rank " << r << "; stopping";
        spawn_failed = true;
        break;
      }
      LOG(INFO) << "restarted worker rank " << r << " (pid " << children[r] << ")";
    }
    if (spawn_failed) {
      exit_code = 1;
      break;
    }
    absl::Status cs = (*c)->configure_status();
    if (!cs.ok() && !ever_ready) {
      std::cerr << "hipserve serve: workers could not be configured: " << cs.message() << "\n";
      exit_code = 1;
      break;
    }
    if ((*c)->ready()) ever_ready = true;
    if (!(*c)->ready()) {
      if (!ever_ready &&
          std::chrono::steady_clock::now() - start >
              std::chrono::milliseconds(static_cast<int64_t>(ready_timeout_s * 1000))) {
        std::cerr << "hipserve serve: workers not ready after " << ready_timeout_s << " s\n";
        exit_code = 1;
        break;
      }
    } else if (!prompt_done) {
      client.server = absl::StrCat("127.0.0.1:", (*c)->port());
      if (!o.tls_cert_file.empty()) {
        // Over TLS the name dialled must be one the certificate names.
        client.server = absl::StrCat("localhost:", (*c)->port());
        const std::string ca = absl::GetFlag(FLAGS_serve_tls_ca_file);
        absl::Status tls = SetClientTls({"", "", ca.empty() ? o.tls_cert_file : ca});
        if (!tls.ok()) {
          std::cerr << "hipserve serve: " << tls.message() << "\n";
          exit_code = 1;
          break;
        }
      }
      client.max_tokens = absl::GetFlag(FLAGS_serve_max_tokens);
      client.temperature = static_cast<float>(absl::GetFlag(FLAGS_serve_temperature));
      client.wait_ready_s = 30;
      absl::Status gs = RunGenerate(client, std::cout, std::cerr);
      if (!gs.ok()) {
        std::cerr << "hipserve serve: generate failed: " << gs << "\n";
        exit_code = 1;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // SIGTERM/SIGINT: drain with the workers still up, then stop them.
  if (StopRequested() && exit_code == 0) exit_code = DrainAndShutdown(**c);
  (*c)->Shutdown();
  StopChildren(children);
  return exit_code;
}

}  // namespace hipserve::cli
