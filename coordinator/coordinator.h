// Coordinator: the public gRPC server (Generation + health + reflection), the OpenAI-compatible
// HTTP server (when http_port >= 0), the control-plane server workers register with, the
// scheduler, and the worker group's lifecycle.
//
// Owns both gRPC servers, the scheduler and a configuration thread. Start() binds the ports;
// once `world_size` workers have registered, the configuration thread connects to them,
// sends Configure and flips health to SERVING. A lost worker turns health NOT_SERVING; one
// that re-registers (restarted pod) triggers reconfiguration, and running requests then resume
// on the rebuilt group (re-prefilled; scheduler.recovery_timeout_s bounds the wait) or, with
// recovery off, fail with UNAVAILABLE.
// Drain() (SIGTERM) stops admitting requests and lets running ones finish before Shutdown().
// Metrics (coordinator/metrics.h) are served on metrics_port when >= 0.
// Thread-safe; Shutdown() may be called from any thread, once.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls/tls.h"
#include "coordinator/client_limits.h"
#include "coordinator/scheduler.h"

namespace hipserve::coordinator {

struct CoordinatorOptions {
  std::string host = "0.0.0.0";       // public API bind address
  int port = 50051;                   // 0 = pick a free port (see Coordinator::port())
  std::string http_host = "0.0.0.0";  // OpenAI-compatible HTTP API bind address
  int http_port = -1;                 // -1 = no HTTP API; 0 = pick a free port (http_port())
  int http_threads = 128;             // HTTP connections served at once
  // Bearer tokens required on the public API (gRPC Generation service and HTTP /v1/*), one per
  // line (coordinator/auth.h); empty = no authentication. Health and reflection stay open
  // unless auth_health_and_reflection.
  std::string auth_tokens_file;
  // With auth_tokens_file: grpc.health.v1, server reflection and HTTP /health* need a token
  // too. gRPC checks it in a TLS auth processor, so this needs tls_cert_file.
  bool auth_health_and_reflection = false;
  // TLS (PEM files) on the public gRPC port and the HTTP port; both "" = plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Mutual TLS with the workers (all three files or none): the control plane verifies the
  // workers' client certificates against worker_tls.ca_file and the coordinator presents
  // worker_tls.cert_file when it dials them.
  tls::TlsFiles worker_tls;
  // Per-client limits of the public API (coordinator/client_limits.h); 0 = unlimited.
  ClientLimitOptions client_limits;
  // Prometheus metrics (GET /metrics, text format) on `host`: -1 = off; 0 = pick a free port
  // (metrics_port()).
  int metrics_port = -1;
  std::string control_host = "0.0.0.0";
  int control_port = 50052;       // 0 = pick a free port
  int world_size = 1;             // workers (tensor-parallel ranks) to wait for
  std::string model = "default";  // SmolLM2-135M-Instruct (scripts/fetch-model.sh)
  std::string attention = "dense";
  std::string hip_config_json;
  int max_context = 0;  // 0 = the model's own
  uint64_t seed = 0;    // builtin model seed (0 = default)
  int64_t gpu_kv_bytes = 0;
  int64_t host_kv_bytes = int64_t{4} << 30;  // per worker; a hard limit, never guessed
  int default_max_tokens = 256;
  int max_tokens_limit = 1 << 20;
  int max_prompt_tokens = 1 << 30;
  double configure_timeout_s = 600;  // model load + communicator setup per worker
  double step_timeout_s = 600;       // one step (a long prefill chunk on CPU included); a
                                     // worker slower than this is treated as lost
  SchedulerOptions scheduler;
};

class Coordinator {
 public:
  static absl::StatusOr<std::unique_ptr<Coordinator>> Start(const CoordinatorOptions& options);
  ~Coordinator();

  int port() const;
  int http_port() const;     // -1 without the HTTP API
  int metrics_port() const;  // -1 without metrics
  int control_port() const;
  bool ready() const;
  // Last configuration error, if any (e.g. a worker could not load the model).
  absl::Status configure_status() const;
  // Graceful drain (SIGTERM): readiness goes NOT_SERVING at once (gRPC health and HTTP
  // /health/ready), new requests get UNAVAILABLE with a retry hint, and this waits up to
  // `timeout_s` for the requests in flight to finish; those still running then end with
  // UNAVAILABLE. Returns how many were ended that way. Call Shutdown() after it.
  int Drain(double timeout_s);
  void Shutdown();
  // Re-reads auth_tokens_file now (SIGHUP). On error the previous tokens stay (logged, and
  // returned); FailedPrecondition when the server runs without tokens.
  absl::Status ReloadAuthTokens();
  // Re-reads the public port's certificate and key (--tls_cert_file, --tls_key_file) and the
  // control port's (--worker_tls_*, CA included) now (SIGHUP): connections made from about
  // tls::kReloadLatencySeconds later get the new certificate; open ones keep theirs. A file
  // that does not load (or a key that does not match) keeps the previous certificate of that
  // port (logged, and returned). FailedPrecondition when the server runs without TLS. The
  // HTTPS port (--http_port) follows the public port's certificate from its next handshake.
  absl::Status ReloadTls();

 private:
  struct Impl;
  explicit Coordinator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hipserve::coordinator
