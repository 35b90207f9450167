// GlooCommunicator: the CPU Communicator, Gloo's collectives over its TCP transport.
//
// Bootstrap: every rank creates a TCP device bound to `hostname`, publishes its pair addresses
// in a RendezvousStore (in a worker: the coordinator's control plane under the configuration's
// prefix) and connects to every peer (full mesh). Collectives take host buffers; the stream
// argument is ignored. Supported dtypes: fp32 and int32 (summed exactly as the ring adds
// them), bf16 (summed in fp32, rounded to bf16 once at the end); fp8 is refused with
// InvalidArgument. Every collective times out after `timeout`; a dead peer or a timeout turns
// into Unavailable / DeadlineExceeded naming this rank (and the peer where Gloo says which),
// and the communicator stays broken (every later call fails at once): Gloo's transport is in
// an unknown state after an IO error, so the worker builds a new one on reconfiguration.
// Thread-safety: one caller thread (Communicator's rule). Owns the Gloo context and device.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/communicator.h"
#include "worker/rendezvous.h"

namespace hipserve::worker {

struct GlooOptions {
  int rank = 0;
  int world_size = 1;
  // Address the TCP device binds to and advertises to peers (an IP or a resolvable name; a
  // worker uses the host of its advertised control address).
  std::string hostname = "127.0.0.1";
  // Longest wait for one collective (the slowest rank's work between two collectives
  // included).
  absl::Duration timeout = absl::Seconds(300);
  // Longest wait for every peer to join at setup.
  absl::Duration rendezvous_timeout = absl::Seconds(300);
};

// Blocks until all `world_size` ranks joined through `store` (or rendezvous_timeout).
absl::StatusOr<std::unique_ptr<Communicator>> MakeGlooCommunicator(
    const GlooOptions& options, std::shared_ptr<RendezvousStore> store);

}  // namespace hipserve::worker
