// Subcommands of the `hipserve` binary, one .cc each (serve_command.cc, coordinator_command.cc,
// worker_command.cc, generate_command.cc, inspect_command.cc, bench_command.cc): each defines
// its flags there as absl flags named <command>_<flag>, parses them and returns an exit code.
#pragma once

#include <atomic>
#include <string>
#include <vector>

namespace hipserve::cli {

int ServeCommand(const std::string& self, const std::vector<std::string>& args);
int CoordinatorCommand(const std::vector<std::string>& args);
int WorkerCommand(const std::vector<std::string>& args);
int GenerateCommand(const std::vector<std::string>& args);
int InspectCommand(const std::vector<std::string>& args);
int BenchCommand(const std::vector<std::string>& args);  // bench_command.cc

// Shared: SIGINT/SIGTERM set this flag.
void InstallStopSignals();
bool StopRequested();
const std::atomic<bool>* StopFlag();
// SIGHUP (serve, coordinator): a request to reload the bearer tokens; true once per signal(s).
void InstallReloadSignal();
bool TakeReloadRequest();

}  // namespace hipserve::cli
