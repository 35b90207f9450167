// The CoordinatorOptions flags shared by `hipserve serve` and `hipserve coordinator`: absl flags
// named server_<flag> (see common/flags/flags.h for how a command owns them).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/coordinator.h"

namespace hipserve::cli {

// The prefix of the shared flags' absl names; list it in CommandSpec::prefixes.
inline constexpr char kServerFlagPrefix[] = "server_";

// CoordinatorOptions from the parsed flags. InvalidArgument naming the flag when a value is out
// of range.
absl::StatusOr<coordinator::CoordinatorOptions> CoordinatorOptionsFromFlags();

// Writes the port to `path` atomically (tests read it to find an ephemeral port).
bool WritePortFile(const std::string& path, int port);

// Writes --http_port_file (when set and the HTTP API runs); false when it cannot.
bool WriteHttpPortFile(const coordinator::Coordinator& c);
// Writes --metrics_port_file (when set and metrics are served); false when it cannot.
bool WriteMetricsPortFile(const coordinator::Coordinator& c);

// --drain_timeout_s.
double DrainTimeoutSeconds();
// After SIGHUP (InstallReloadSignal): re-reads --auth_tokens_file and logs the outcome (a bad
// file keeps the previous tokens). Call from the command's main loop.
void ReloadTokensIfRequested(coordinator::Coordinator& c);
// The mutual-TLS flags (--worker_tls_*) as worker flags, for the workers `serve` starts.
std::vector<std::string> WorkerTlsArgs(const coordinator::CoordinatorOptions& o);
// The graceful stop on SIGTERM/SIGINT: Coordinator::Drain(--drain_timeout_s), then Shutdown.
// Returns the exit code (0).
int DrainAndShutdown(coordinator::Coordinator& c);

}  // namespace hipserve::cli
