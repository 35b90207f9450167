// OpenAiHttpServer: the OpenAI-compatible HTTP front of the coordinator (cpp-httplib).
//
//   POST /v1/completions, POST /v1/chat/completions   (JSON, or server-sent events with stream)
//   GET  /v1/models, GET /v1/models/{id}
//   GET  /health (liveness), GET /health/ready (readiness: 503 until the workers are ready,
//                                                       and again once draining)
//   GET  /hipserve/v1/server_info                     (GetServerInfo's load and KV counters)
//
// Requests take the gRPC service's own path (GenerationService::StartRequest: validation,
// tokenization, chat template, scheduler). A client that closes a streaming connection aborts
// its sequence, which frees its KV.
//
// Owns its listening socket and a pool of `threads` connection threads; a streaming or
// waiting request holds one thread until it ends. Borrows the GenerationService, which must
// outlive it. Start/Shutdown from one thread; the handlers run on the pool.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tls/tls.h"
#include "coordinator/generation_service.h"

namespace hipserve::coordinator::http {

struct HttpServerOptions {
  std::string host = "0.0.0.0";  // bind address
  int port = 8000;               // 0 = pick a free one (see OpenAiHttpServer::port())
  int threads = 128;             // connections served at once (each stream holds one)
  // Model names accepted besides the served model's own name (e.g. the --model value
  // "default"); /v1/models lists them too.
  std::vector<std::string> model_aliases;
  // Authentication seam: called with the Authorization header ("" when absent) of every /v1
  // request (and /health* with authorize_health); a non-OK status (UNAUTHENTICATED) is returned
  // to the client as 401, OK carries the client's name (per-client limits). Unset = no
  // authentication; the client is then the peer's address.
  std::function<absl::StatusOr<std::string>(const std::string& authorization)> authorize;
  bool authorize_health = false;  // also require a token on /health and /health/ready
  // HTTPS (httplib::SSLServer over OpenSSL) with this certificate and key (PEM), the same files
  // as the gRPC port's; both "" = plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Certificate rotation: when set, every TLS handshake asks it for the current certificate and
  // key (checked PEM; parsed again only when the pointer changes) instead of using the files as
  // read at start; null = keep the current one. Called on connection threads.
  std::function<std::shared_ptr<const tls::TlsPem>()> tls_identity;
  size_t max_body_bytes = 64 << 20;  // like the gRPC port's receive limit
};

class OpenAiHttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(const HttpServerOptions& options,
                                                                 GenerationService* service);
  ~OpenAiHttpServer();  // Shutdown()

  int port() const;
  // Stops listening, ends open streams and joins the connection threads. Requests still
  // running are aborted (streams) or finish when the scheduler ends them.
  void Shutdown();

  struct Impl;

 private:
  explicit OpenAiHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hipserve::coordinator::http
