// RendezvousStore: the small key-value exchange communicators bootstrap through (Gloo pair
// addresses, the NCCL unique id). Debian's Gloo has no TCP store, so workers use the
// coordinator's control plane (Control.StoreSet / StoreGet); tests of the communicators use
// the in-memory store shared by threads.
// Thread-safe. Keys are written once per configuration; Get waits for a key to appear.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hipserve::worker {

class RendezvousStore {
 public:
  virtual ~RendezvousStore() = default;
  virtual absl::Status Set(const std::string& key, const std::string& value) = 0;
  // Waits until `key` is set. DeadlineExceeded after `timeout`; Aborted when the store gave up
  // on this key's configuration (the coordinator started another).
  virtual absl::StatusOr<std::string> Get(const std::string& key, absl::Duration timeout) = 0;
};

// Process-local store (threads of one test share it).
std::shared_ptr<RendezvousStore> MakeMemoryStore();

// The coordinator's store at `coordinator` (host:port of its control service); every key is
// prefixed with `prefix` (ConfigureRequest.comm_bootstrap).
std::shared_ptr<RendezvousStore> MakeCoordinatorStore(const std::string& coordinator,
                                                      const std::string& prefix);

}  // namespace hipserve::worker
