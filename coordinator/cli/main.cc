// The `hipserve` binary: one tool, several subcommands.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "coordinator/cli/commands.h"

#ifndef HIPSERVE_VERSION
#define HIPSERVE_VERSION "0.0.0"
#endif

namespace {

constexpr char kUsage[] =
    "usage: hipserve <command> [flags]\n"
    "\n"
    "Serves Llama-family LLMs with HiP sparse attention over gRPC.\n"
    "\n"
    "commands:\n"
    "  serve        coordinator + workers on this machine (the one-command path)\n"
    "  coordinator  public gRPC API and control plane only (multi-node deployments)\n"
    "  worker       one tensor-parallel worker that registers with a coordinator\n"
    "  generate     send a prompt to a running server and stream the answer\n"
    "  inspect      print a running server's model and load information\n"
    "  bench        load-test a running server (TTFT, inter-token latency, tokens/s)\n"
    "  version      print the version\n"
    "\n"
    "Run 'hipserve <command> --help' for the flags of each command.\n";

std::string SelfPath(const char* argv0) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) return std::string(buf, n);
  return argv0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  namespace cli = hipserve::cli;
  if (cmd == "serve") return cli::ServeCommand(SelfPath(argv[0]), args);
  if (cmd == "coordinator") return cli::CoordinatorCommand(args);
  if (cmd == "worker") return cli::WorkerCommand(args);
  if (cmd == "generate") return cli::GenerateCommand(args);
  if (cmd == "inspect") return cli::InspectCommand(args);
  if (cmd == "bench") return cli::BenchCommand(args);
  if (cmd == "version" || cmd == "--version") {
    std::cout << "hipserve " << HIPSERVE_VERSION << "\n";
    return 0;
  }
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    std::cout << kUsage;
    return 0;
  }
  std::cerr << "hipserve: unknown command '" << cmd << "'\n\n" << kUsage;
  return 2;
}
