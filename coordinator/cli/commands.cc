#include "coordinator/cli/commands.h"

#include <signal.h>

#include <iostream>
#include <thread>

#include "coordinator/cli/client.h"
#include "coordinator/cli/coordinator_flags.h"
#include "worker/worker_main.h"

namespace hipserve::cli {

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

// Parses flags; returns -1 to continue, or the exit code (help printed / error).
int ParseOrExit(FlagSet& f, const std::vector<std::string>& args, const std::string& cmd) {
  absl::Status s = f.Parse(args);
  if (absl::IsNotFound(s)) {
    std::cout << f.Usage();
    return 0;
  }
  if (!s.ok()) {
    std::cerr << cmd << ": " << s.message() << "\n";
    return 2;
  }
  return -1;
}
}  // namespace

void InstallStopSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}
bool StopRequested() { return g_stop.load(); }
const std::atomic<bool>* StopFlag() { return &g_stop; }

int CoordinatorCommand(const std::vector<std::string>& args) {
  coordinator::CoordinatorOptions o;
  std::string port_file;
  FlagSet f("hipserve coordinator",
            "Runs only the coordinator: the public gRPC API on --port and the control plane on\n"
            "--control_port, where `hipserve worker` processes (possibly on other machines)\n"
            "register. Becomes ready once --world_size workers are configured.");
  AddCoordinatorFlags(f, &o);
  f.String("control_host", &o.control_host, "Address the control plane binds to (pod network).");
  f.Int("control_port", &o.control_port, "Control-plane port workers register with.");
  f.Int("world_size", &o.world_size, "Workers (tensor-parallel ranks) to wait for.");
  f.String("port_file", &port_file, "Write the bound public port to this file once listening.");
  std::string control_port_file;
  f.String("control_port_file", &control_port_file,
           "Write the bound control-plane port to this file once listening (--control_port=0).");
  if (int rc = ParseOrExit(f, args, "hipserve coordinator"); rc >= 0) return rc;
  InstallStopSignals();
  auto c = coordinator::Coordinator::Start(o);
  if (!c.ok()) {
    std::cerr << "hipserve coordinator: " << c.status().message() << "\n";
    return 1;
  }
  if (!control_port_file.empty()) WritePortFile(control_port_file, (*c)->control_port());
  if (!port_file.empty()) WritePortFile(port_file, (*c)->port());
  while (!StopRequested()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*c)->Shutdown();
  return 0;
}

int WorkerCommand(const std::vector<std::string>& args) {
  worker::WorkerMainOptions o;
  FlagSet f("hipserve worker",
            "Runs one tensor-parallel worker: registers with the coordinator, loads its shard of\n"
            "the model when configured, and executes steps until shut down.");
  f.String("coordinator", &o.coordinator, "Coordinator control-plane address (host:port).");
  f.Int("rank", &o.rank, "This worker's rank; -1 = the hostname's trailing number "
                         "(StatefulSet ordinal).");
  f.String("listen", &o.listen, "Address this worker's control service binds to (port 0 = any).");
  f.String("advertise", &o.advertise,
           "Address the coordinator dials to reach this worker; empty = hostname:bound port.");
  f.String("backend", &o.backend,
           "Compute backend: 'cpu' (fp32 reference), 'cuda' (bf16 on the GPU, dense or HiP "
           "attention) or 'auto' (cuda when a CUDA device is visible, else cpu).");
  f.Bytes("gpu_memory_bytes", &o.gpu_memory_bytes,
          "CUDA backend: GPU memory for weights, workspaces and KV (e.g. 60GiB); 0 = 90% of "
          "the device's free memory. The plan is logged at startup.");
  f.Bytes("gpu_kv_bytes", &o.gpu_kv_bytes,
          "This worker's GPU KV budget (e.g. 40GiB); 0 = the coordinator's --gpu_kv_bytes.");
  f.Bytes("host_kv_bytes", &o.host_kv_bytes,
          "This worker's host KV budget (its pod's memory share); 0 = the coordinator's.");
  f.String("cpu_weights", &o.cpu_weights,
           "CPU backend: linear weights kept in 'fp32' (as loaded) or rounded once to 'bf16' "
           "(half the memory traffic per decode token, fp32 accumulation; logits move by "
           "<~1%).");
  f.Double("register_timeout_s", &o.register_timeout_s,
           "Keep retrying registration this long before giving up.");
  f.String("comm_host", &o.comm_host,
           "Tensor parallelism (--world_size > 1 on the coordinator): address the Gloo TCP "
           "transport binds to and peers connect to; empty = the host of --advertise (or of "
           "--listen / the hostname).");
  f.Double("collective_timeout_s", &o.collective_timeout_s,
           "Longest wait for one collective (all-reduce, all-gather) with the other ranks: a "
           "dead or stalled peer fails the step after this, never hangs it.");
  f.Double("rendezvous_timeout_s", &o.rendezvous_timeout_s,
           "Longest wait at Configure for every rank to join the communicator.");
  f.Bool("force_nccl", &o.force_nccl,
         "CUDA backend: use the NCCL communicator at world size 1 too (also "
         "HIPSERVE_FORCE_NCCL=1); exercises the NCCL path on one GPU.");
  f.Int("world_size", &o.expected_world_size,
        "Refuse to join a coordinator whose --world_size differs (0 = accept any).");
  f.String("model", &o.expected_model,
           "Refuse to join a coordinator serving a different --model (empty = accept any).");
  if (int rc = ParseOrExit(f, args, "hipserve worker"); rc >= 0) return rc;
  InstallStopSignals();
  absl::Status s = worker::RunWorker(o, StopFlag());
  if (!s.ok()) {
    std::cerr << "hipserve worker: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

int GenerateCommand(const std::vector<std::string>& args) {
  GenerateClientOptions o;
  int max_tokens = 0, top_k = -1;
  double temperature = -1, top_p = -1;
  uint64_t seed = 0;
  bool has_seed_flag = false;
  FlagSet f("hipserve generate",
            "Sends one Generate request to a running server and streams the answer to stdout;\n"
            "a summary (finish reason, token counts, timing) goes to stderr.");
  f.String("server", &o.server, "Server address (host:port).");
  f.String("prompt", &o.prompt, "Prompt text.");
  f.Bool("chat", &o.chat, "Send the prompt as a user chat message (model's chat template).");
  f.String("system", &o.system, "System message (with --chat).");
  f.Int("max_tokens", &max_tokens, "Tokens to generate; 0 = the server's default.");
  f.Double("temperature", &temperature, "Sampling temperature, 0 = greedy; -1 = server default.");
  f.Double("top_p", &top_p, "Nucleus sampling mass in (0, 1]; -1 = off.");
  f.Int("top_k", &top_k, "Keep the k most likely tokens; -1 = off.");
  f.Uint64("seed", &seed, "Sampling seed (reproducible output); 0 = random.");
  f.Bool("seeded", &has_seed_flag, "Send --seed even when it is 0.");
  f.StringList("stop", &o.stop, "Stop string (repeatable).");
  f.Bool("ignore_eos", &o.ignore_eos, "Keep generating past end-of-sequence.");
  f.Double("timeout_s", &o.timeout_s, "Deadline of the whole call.");
  f.Double("wait_ready_s", &o.wait_ready_s, "Wait this long for the server to become ready.");
  if (int rc = ParseOrExit(f, args, "hipserve generate"); rc >= 0) return rc;
  if (max_tokens != 0) o.max_tokens = max_tokens;
  if (temperature >= 0) o.temperature = static_cast<float>(temperature);
  if (top_p >= 0) o.top_p = static_cast<float>(top_p);
  if (top_k >= 0) o.top_k = top_k;
  if (seed != 0 || has_seed_flag) o.seed = seed;
  absl::Status s = RunGenerate(o, std::cout, std::cerr);
  if (!s.ok()) {
    std::cerr << "hipserve generate: " << absl::StatusCodeToString(s.code()) << ": "
              << s.message() << "\n";
    return 1;
  }
  return 0;
}

int InspectCommand(const std::vector<std::string>& args) {
  std::string server = "localhost:50051";
  FlagSet f("hipserve inspect", "Prints a running server's model and load information.");
  f.String("server", &server, "Server address (host:port).");
  if (int rc = ParseOrExit(f, args, "hipserve inspect"); rc >= 0) return rc;
  absl::Status s = RunInspect(server, std::cout);
  if (!s.ok()) {
    std::cerr << "hipserve inspect: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace hipserve::cli
