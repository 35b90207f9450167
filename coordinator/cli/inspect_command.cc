// `hipserve inspect`: a running server's model and load.
#include <iostream>

#include "absl/flags/flag.h"
#include "common/flags/flags.h"
#include "coordinator/cli/client.h"
#include "coordinator/cli/client_flags.h"
#include "coordinator/cli/commands.h"

ABSL_FLAG(std::string, inspect_server, "localhost:50051", "Server address (host:port).");

namespace hipserve::cli {

int InspectCommand(const std::vector<std::string>& args) {
  static const flags::CommandSpec kSpec{"hipserve inspect",
                                        "Prints a running server's model and load information.",
                                        {"inspect_", kClientFlagPrefix}};
  if (int rc = flags::ParseCommandFlagsOrExitCode(kSpec, args); rc >= 0) return rc;
  if (absl::Status tls = ApplyClientTlsFlags(); !tls.ok()) {
    std::cerr << "hipserve inspect: " << tls.message() << "\n";
    return 2;
  }
  absl::Status s = RunInspect(absl::GetFlag(FLAGS_inspect_server), std::cout);
  if (!s.ok()) {
    std::cerr << "hipserve inspect: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace hipserve::cli
