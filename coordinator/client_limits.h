// ClientLimits: per-client admission limits of the public API, for a server shared by several
// clients (--max_concurrent_requests_per_client, --max_queued_tokens_per_client).
//
// A client is the name its bearer token has in --auth_tokens_file (coordinator/auth.h), or the
// peer's host (its IP, without the port) when authentication is off. A request holds a Lease
// from admission (GenerationService::StartRequest) until it ends in any way: finished, aborted,
// cancelled by the client, failed, or refused by the scheduler. Tokens are what the request
// may occupy: prompt + max_tokens (the scheduler's KV reservation). A request that would take
// its client past a limit is refused with RESOURCE_EXHAUSTED naming the numbers.
// Thread-safe. Leases keep the shared state alive, so they may outlive the ClientLimits.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "coordinator/scheduler.h"

namespace hipserve::coordinator {

struct ClientLimitOptions {
  int max_concurrent_requests = 0;  // unfinished requests per client; 0 = unlimited
  int64_t max_queued_tokens = 0;    // prompt + max_tokens over them; 0 = unlimited
};

class ClientLimits {
 public:
  struct Usage {
    int requests = 0;
    int64_t tokens = 0;
  };
  struct State;

  // What one admitted request holds; released by its destructor or Release() (idempotent).
  class Lease {
   public:
    Lease(std::shared_ptr<State> state, std::string client, int64_t tokens);
    ~Lease() { Release(); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    void Release();

   private:
    std::shared_ptr<State> state_;
    std::string client_;
    int64_t tokens_;
    bool released_ = false;
  };

  explicit ClientLimits(const ClientLimitOptions& options);
  // False when both limits are 0 (Acquire is then never needed).
  bool enabled() const;
  // Admits one request of `client` occupying `tokens`, or RESOURCE_EXHAUSTED naming the
  // client, what it holds, what it asked for and the limit.
  absl::StatusOr<std::unique_ptr<Lease>> Acquire(const std::string& client, int64_t tokens);
  Usage usage(const std::string& client) const;
  // Clients holding at least one lease.
  size_t active_clients() const;

 private:
  ClientLimitOptions options_;
  std::shared_ptr<State> state_;
};

// A sink that forwards every event to `sink` and releases `lease` as soon as OnFinish was
// delivered (the request is over), or when the scheduler drops it.
std::shared_ptr<SequenceSink> WithLease(std::shared_ptr<SequenceSink> sink,
                                        std::unique_ptr<ClientLimits::Lease> lease);

// gRPC's peer string -> the client host: "ipv4:10.0.0.5:4711" -> "10.0.0.5",
// "ipv6:[::1]:4711" -> "::1"; anything else unchanged.
std::string PeerHost(absl::string_view peer);

}  // namespace hipserve::coordinator
