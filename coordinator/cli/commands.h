// Subcommands of the `hipserve` binary. Each parses its own flags and returns an exit code.
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

}  // namespace hipserve::cli
