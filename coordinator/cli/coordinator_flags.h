// Registers the CoordinatorOptions flags shared by `serve` and `coordinator`.
#pragma once

#include "coordinator/cli/flags.h"
#include "coordinator/coordinator.h"

namespace hipserve::cli {

void AddCoordinatorFlags(FlagSet& flags, coordinator::CoordinatorOptions* o);
// Writes the port to `path` atomically (tests read it to find an ephemeral port).
bool WritePortFile(const std::string& path, int port);

}  // namespace hipserve::cli
