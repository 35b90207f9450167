// `hipserve coordinator`: the public API and the control plane; workers run elsewhere.
#include <chrono>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "common/flags/flags.h"
#include "coordinator/cli/commands.h"
#include "coordinator/cli/coordinator_flags.h"

ABSL_FLAG(std::string, coordinator_control_host,
          hipserve::coordinator::CoordinatorOptions().control_host,
          "Address the control plane binds to (pod network).");
ABSL_FLAG(int, coordinator_control_port, hipserve::coordinator::CoordinatorOptions().control_port,
          "Control-plane port workers register with, in [0, 65535] (0 = pick a free one; see "
          "--control_port_file).");
ABSL_FLAG(int, coordinator_world_size, hipserve::coordinator::CoordinatorOptions().world_size,
          "Workers (tensor-parallel ranks) to wait for, >= 1.");
ABSL_FLAG(std::string, coordinator_port_file, "",
          "Write the bound public port to this file once listening.");
ABSL_FLAG(std::string, coordinator_control_port_file, "",
          "Write the bound control-plane port to this file once listening (--control_port=0).");

namespace hipserve::cli {

int CoordinatorCommand(const std::vector<std::string>& args) {
  static const flags::CommandSpec kSpec{
      "hipserve coordinator",
      "Runs only the coordinator: the public gRPC API on --port and the control plane on\n"
      "--control_port, where `hipserve worker` processes (possibly on other machines)\n"
      "register. Becomes ready once --world_size workers are configured. On SIGTERM it\n"
      "drains: NOT_SERVING at once, running requests finish (--drain_timeout_s), exit 0.\n"
      "SIGHUP re-reads --auth_tokens_file. TLS: --tls_* (public port), --worker_tls_*\n"
      "(mutual TLS with the workers; docs/DEPLOY.md).",
      {"coordinator_", kServerFlagPrefix}};
  if (int rc = flags::ParseCommandFlagsOrExitCode(kSpec, args); rc >= 0) return rc;
  absl::StatusOr<coordinator::CoordinatorOptions> o = CoordinatorOptionsFromFlags();
  absl::Status valid = o.status();
  if (valid.ok()) {
    o->control_host = absl::GetFlag(FLAGS_coordinator_control_host);
    o->control_port = absl::GetFlag(FLAGS_coordinator_control_port);
    o->world_size = absl::GetFlag(FLAGS_coordinator_world_size);
    valid = flags::CheckFlag(o->control_port >= 0 && o->control_port <= 65535, "control_port",
                             "in [0, 65535]", o->control_port);
  }
  if (valid.ok()) valid = flags::CheckFlag(o->world_size >= 1, "world_size", ">= 1", o->world_size);
  if (!valid.ok()) {
    std::cerr << "hipserve coordinator: " << valid.message() << "\n";
    return 2;
  }
  InstallStopSignals();
  InstallReloadSignal();
  auto c = coordinator::Coordinator::Start(*o);
  if (!c.ok()) {
    std::cerr << "hipserve coordinator: " << c.status().message() << "\n";
    return 1;
  }
  const std::string control_port_file = absl::GetFlag(FLAGS_coordinator_control_port_file);
  const std::string port_file = absl::GetFlag(FLAGS_coordinator_port_file);
  if (!control_port_file.empty()) WritePortFile(control_port_file, (*c)->control_port());
  if (!port_file.empty()) WritePortFile(port_file, (*c)->port());
  WriteHttpPortFile(**c);
  WriteMetricsPortFile(**c);
  while (!StopRequested()) {
    ReloadTokensIfRequested(**c);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return DrainAndShutdown(**c);
}

}  // namespace hipserve::cli
