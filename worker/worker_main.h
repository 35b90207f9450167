// RunWorker: the body of `hipserve worker`: serve the Worker control service, register with
// the coordinator, and run until Shutdown, a signal, or the stop flag.
#pragma once

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tls/tls.h"

namespace hipserve::worker {

struct WorkerMainOptions {
  std::string coordinator;            // host:port of the coordinator's control service
  int rank = 0;                       // -1: take the trailing number of the hostname
  std::string listen = "0.0.0.0:0";   // where this worker's Worker service binds (port 0 = any)
  std::string advertise;              // host:port the coordinator dials; "" = derived
  std::string backend = "auto";       // "cpu", "cuda", or "auto" (cuda when a device is visible)
  int64_t gpu_kv_bytes = 0;           // 0 = the coordinator's value
  int64_t gpu_memory_bytes = 0;       // CUDA backend budget; 0 = 90% of free device memory
  int64_t host_kv_bytes = 0;          // 0 = the coordinator's value
  std::string cpu_weights = "fp32";   // --cpu_weights: "fp32" or "bf16" (ModelOptions)
  double register_timeout_s = 300.0;  // keep retrying Register this long
  // Tensor parallelism: the address the Gloo TCP device binds to and peers connect to; "" =
  // the host of the advertised address.
  std::string comm_host;
  double collective_timeout_s = 300;  // one collective (a dead or stalled peer -> error)
  double rendezvous_timeout_s = 300;  // all ranks joining the communicator at Configure
  bool force_nccl = false;            // NCCL at world size 1 too (or HIPSERVE_FORCE_NCCL=1)
  int device = -1;                    // CUDA device; -1 = rank % visible devices
  std::string kv_offload = "auto";    // CUDA backend: "auto", "on", "off" (ModelOptions)
  std::string kv_dtype = "bf16";      // CUDA backend, GPU KV pool without offload: "bf16", "fp8"
  // Refuse to join a coordinator whose world size / model differs (0 / "" = accept any).
  int expected_world_size = 0;
  std::string expected_model;
  // Mutual TLS with the coordinator (--worker_tls_*: all three files or none): this worker's
  // server requires and verifies a client certificate signed by tls.ca_file, and registers
  // with the coordinator presenting tls.cert_file. Empty = plaintext.
  tls::TlsFiles tls;
};

// `stop` is polled; set it from a signal handler to end the worker. Returns when stopped.
absl::Status RunWorker(const WorkerMainOptions& options, const std::atomic<bool>* stop);

// "auto" -> "cuda" when a CUDA device is visible, else "cpu"; "cpu" / "cuda" unchanged;
// anything else InvalidArgument.
absl::StatusOr<std::string> ResolveBackend(const std::string& backend);

// "host:port" / "[v6]:port" -> "host" / "v6".
std::string HostOfAddress(const std::string& address);

// "name-3" -> 3 (StatefulSet ordinal). InvalidArgument when there is no trailing number.
absl::StatusOr<int> RankFromHostname(const std::string& hostname);

}  // namespace hipserve::worker
