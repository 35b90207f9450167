// `hipserve serve`: coordinator in this process, workers as child processes (one per rank).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "coordinator/cli/client.h"
#include "coordinator/cli/commands.h"
#include "coordinator/cli/coordinator_flags.h"
#include "kernels/device.h"

namespace hipserve::cli {

namespace {

pid_t SpawnWorker(const std::string& self, const std::vector<std::string>& args) {
  pid_t pid = fork();
  if (pid != 0) return pid;  // parent (or -1)
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
  for (pid_t p : children) if (p > 0) kill(p, SIGTERM);
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

}  // namespace

int ServeCommand(const std::string& self, const std::vector<std::string>& args) {
  coordinator::CoordinatorOptions o;
  int tp = 1;
  std::string backend = "auto", port_file, cpu_weights = "fp32";
  int64_t gpu_memory_bytes = 0;
  GenerateClientOptions client;
  int max_tokens = 64;
  double temperature = 0.0;
  double ready_timeout_s = 600;
  FlagSet f("hipserve serve",
            "Runs the whole server on this machine: the coordinator (public gRPC API on --port)\n"
            "and --tp worker processes. With --prompt it answers that one prompt through the\n"
            "gRPC API, prints the answer and exits (a smoke test of the full path).");
  AddCoordinatorFlags(f, &o);
  f.Int("tp", &tp, "Tensor-parallel degree: worker processes to start (one per GPU).");
  f.String("backend", &backend,
           "Worker backend: 'cpu' (fp32 reference), 'cuda' (bf16 on the GPU, dense or HiP "
           "attention) or 'auto' (cuda when a CUDA device is visible, else cpu). The choice is "
           "printed at startup.");
  f.Bytes("gpu_memory_bytes", &gpu_memory_bytes,
          "CUDA backend: GPU memory per worker for weights, workspaces and KV (e.g. 60GiB); "
          "0 = 90% of the device's free memory.");
  f.String("cpu_weights", &cpu_weights,
           "CPU backend: linear weights kept in 'fp32' (as loaded) or rounded once to 'bf16' "
           "(half the memory traffic per decode token, fp32 accumulation; logits move by "
           "<~1%).");
  f.String("port_file", &port_file, "Write the bound public port to this file once listening.");
  f.String("prompt", &client.prompt, "Answer this prompt through the gRPC API, print, exit.");
  f.Bool("chat", &client.chat, "With --prompt: send it as a chat message (model's template).");
  f.Int("max_tokens", &max_tokens, "With --prompt: tokens to generate.");
  f.Double("temperature", &temperature, "With --prompt: sampling temperature (0 = greedy).");
  f.Double("ready_timeout_s", &ready_timeout_s, "How long to wait for the workers to be ready.");
  absl::Status ps = f.Parse(args);
  if (absl::IsNotFound(ps)) {
    std::cout << f.Usage();
    return 0;
  }
  if (!ps.ok()) {
    std::cerr << "hipserve serve: " << ps.message() << "\n";
    return 2;
  }
  if (tp <= 0) {
    std::cerr << "hipserve serve: --tp must be > 0\n";
    return 2;
  }
  if (cpu_weights != "fp32" && cpu_weights != "bf16") {
    std::cerr << "hipserve serve: --cpu_weights must be 'fp32' or 'bf16'\n";
    return 2;
  }
  if (backend == "auto") {
    const int devices = kernels::CudaDeviceCount();
    backend = devices > 0 ? "cuda" : "cpu";
    std::cerr << "hipserve serve: backend " << backend << " (--backend=auto, " << devices
              << " CUDA devices visible)\n";
  } else if (backend != "cpu" && backend != "cuda") {
    std::cerr << "hipserve serve: --backend must be 'cpu', 'cuda' or 'auto'\n";
    return 2;
  }
  o.world_size = tp;
  o.control_host = "127.0.0.1";
  o.control_port = 0;
  InstallStopSignals();
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
  std::vector<pid_t> children;
  for (int r = 0; r < tp; ++r) {
    children.push_back(SpawnWorker(
        self, {"worker", absl::StrCat("--coordinator=127.0.0.1:", (*c)->control_port()),
               absl::StrCat("--rank=", r), "--listen=127.0.0.1:0", "--backend=" + backend,
               "--cpu_weights=" + cpu_weights,
               absl::StrCat("--gpu_memory_bytes=", gpu_memory_bytes)}));
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

  int exit_code = 0;
  const auto start = std::chrono::steady_clock::now();
  bool prompt_done = client.prompt.empty();
  while (!StopRequested()) {
    int status = 0;
    int dead = ReapExited(children, &status);
    if (dead >= 0) {
      LOG(ERROR) << "worker rank " << dead << " exited ("
                 << (WIFEXITED(status) ? absl::StrCat("code ", WEXITSTATUS(status))
                                       : absl::StrCat("signal ", WTERMSIG(status)))
                 << "); stopping";
      exit_code = 1;
      break;
    }
    absl::Status cs = (*c)->configure_status();
    if (!cs.ok()) {
      std::cerr << "hipserve serve: workers could not be configured: " << cs.message() << "\n";
      exit_code = 1;
      break;
    }
    if (!(*c)->ready()) {
      if (std::chrono::steady_clock::now() - start >
          std::chrono::milliseconds(static_cast<int64_t>(ready_timeout_s * 1000))) {
        std::cerr << "hipserve serve: workers not ready after " << ready_timeout_s << " s\n";
        exit_code = 1;
        break;
      }
    } else if (!prompt_done) {
      client.server = absl::StrCat("127.0.0.1:", (*c)->port());
      client.max_tokens = max_tokens;
      client.temperature = static_cast<float>(temperature);
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
  (*c)->Shutdown();
  StopChildren(children);
  return exit_code;
}

}  // namespace hipserve::cli
