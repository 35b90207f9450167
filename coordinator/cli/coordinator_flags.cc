#include "coordinator/cli/coordinator_flags.h"

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "common/flags/flags.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/tls/tls.h"
#include "coordinator/cli/commands.h"

using hipserve::coordinator::CoordinatorOptions;
using hipserve::flags::ByteSize;

ABSL_FLAG(std::string, server_model, CoordinatorOptions().model,
          "Model to serve: 'default' (SmolLM2-135M-Instruct, fetched by scripts/fetch-model.sh), "
          "'builtin:tiny' (seeded random tiny Llama), 'random:llama-3.1-8b' (Llama-3.1-8B's shape "
          "and RoPE, seeded random weights, byte-level tokenizer; ~32 GB RAM; also "
          "random:llama-3.1-8b-2l, random:tiny-llama3), a .gguf file or a Hugging Face "
          "directory.");
ABSL_FLAG(std::string, server_host, CoordinatorOptions().host,
          "Address the public gRPC API binds to.");
ABSL_FLAG(int, server_port, CoordinatorOptions().port,
          "Public gRPC port in [0, 65535] (0 = pick a free one; see --port_file).");
ABSL_FLAG(int, server_http_port, CoordinatorOptions().http_port,
          "OpenAI-compatible HTTP API port (/v1/completions, /v1/chat/completions, /v1/models, "
          "/health, /health/ready; docs/API.md) in [-1, 65535]: -1 = off, 0 = pick a free one "
          "(see --http_port_file).");
ABSL_FLAG(std::string, server_http_host, CoordinatorOptions().http_host,
          "Address the HTTP API binds to.");
ABSL_FLAG(int, server_http_threads, CoordinatorOptions().http_threads,
          "HTTP connections served at once (each streaming request holds one), >= 1.");
ABSL_FLAG(std::string, server_http_port_file, "",
          "Write the bound HTTP port to this file once listening.");
ABSL_FLAG(int, server_metrics_port, CoordinatorOptions().metrics_port,
          "Prometheus metrics port (GET /metrics, text format; docs/API.md lists the metrics), "
          "bound on --host, in [-1, 65535]: -1 = off, 0 = pick a free one (see "
          "--metrics_port_file).");
ABSL_FLAG(std::string, server_metrics_port_file, "",
          "Write the bound metrics port to this file once listening.");
ABSL_FLAG(double, server_drain_timeout_s, 30,
          "On SIGTERM/SIGINT: readiness goes NOT_SERVING and new requests get UNAVAILABLE at "
          "once; requests in flight may finish for this long, in seconds, >= 0; the rest then "
          "end with UNAVAILABLE and the process exits 0.");
ABSL_FLAG(std::string, server_auth_tokens_file, CoordinatorOptions().auth_tokens_file,
          "File of bearer tokens, one per line as '<token> [<client name>]' ('#' comments): the "
          "gRPC API (metadata 'authorization: Bearer <token>') and HTTP /v1/* then require one "
          "(missing: UNAUTHENTICATED / 401; unknown: PERMISSION_DENIED / 401). The name keys "
          "the per-client limits. Re-read when the file changes and on SIGHUP; a bad file "
          "keeps the previous tokens. Empty = no authentication.");
ABSL_FLAG(bool, server_auth_health_and_reflection, CoordinatorOptions().auth_health_and_reflection,
          "With --auth_tokens_file: also require a token on grpc.health.v1, server reflection "
          "and HTTP /health, /health/ready (default: those stay open for load balancers and "
          "probes). Needs TLS, i.e. --tls_cert_file: gRPC checks it in its TLS auth processor.");
ABSL_FLAG(std::string, server_tls_cert_file, CoordinatorOptions().tls_cert_file,
          "TLS certificate (PEM, chain) of the public gRPC port and the HTTP port (HTTPS); with "
          "--tls_key_file. Clients then need TLS ('hipserve generate --tls_ca_file=...'). "
          "Empty = plaintext (logged at startup). The metrics port stays plain HTTP.");
ABSL_FLAG(std::string, server_tls_key_file, CoordinatorOptions().tls_key_file,
          "Private key (PEM, unencrypted) of --tls_cert_file.");
ABSL_FLAG(std::string, server_worker_tls_cert_file, CoordinatorOptions().worker_tls.cert_file,
          "Mutual TLS with the workers (with --worker_tls_key_file and --worker_tls_ca_file; all "
          "three or none): the certificate (PEM) the coordinator presents to workers and serves "
          "its control plane with. It must name the control address the workers dial.");
ABSL_FLAG(std::string, server_worker_tls_key_file, CoordinatorOptions().worker_tls.key_file,
          "Private key (PEM) of --worker_tls_cert_file.");
ABSL_FLAG(std::string, server_worker_tls_ca_file, CoordinatorOptions().worker_tls.ca_file,
          "CA certificates (PEM) that sign the workers' certificates: workers without one are "
          "refused at the TLS handshake, and the coordinator verifies the workers it dials "
          "(their certificates must name the address they advertise).");
ABSL_FLAG(int, server_max_concurrent_requests_per_client,
          CoordinatorOptions().client_limits.max_concurrent_requests,
          "Unfinished requests (queued or running) one client may have, >= 0; more get "
          "RESOURCE_EXHAUSTED. A client is its token's name in --auth_tokens_file, or its IP "
          "address without authentication. 0 = unlimited.");
ABSL_FLAG(int64_t, server_max_queued_tokens_per_client,
          CoordinatorOptions().client_limits.max_queued_tokens,
          "Tokens one client's unfinished requests may claim, prompt + max_tokens summed (the "
          "KV the scheduler reserves), >= 0; a request past it gets RESOURCE_EXHAUSTED. 0 = "
          "unlimited.");
ABSL_FLAG(std::string, server_attention, CoordinatorOptions().attention,
          "Default attention: 'dense' or 'hip'.");
ABSL_FLAG(std::string, server_hip_config, CoordinatorOptions().hip_config_json,
          "HiP parameters as JSON (HIP.md's defaults for keys not given), e.g. "
          "'{\"mask_refresh_interval\":[96,24,8],\"stage_representatives\":\"exact\"}'; "
          "docs/HIP_NOTES.md explains the keys.");
ABSL_FLAG(int, server_max_context, CoordinatorOptions().max_context,
          "Longest sequence (prompt + output), >= 0; 0 = the model's.");
ABSL_FLAG(uint64_t, server_seed, CoordinatorOptions().seed,
          "Seed of the builtin model's weights (0 = default).");
ABSL_FLAG(ByteSize, server_gpu_kv_bytes, ByteSize{CoordinatorOptions().gpu_kv_bytes},
          "GPU KV budget per worker (e.g. 40GiB); 0 = default.");
ABSL_FLAG(ByteSize, server_host_kv_bytes, ByteSize{CoordinatorOptions().host_kv_bytes},
          "Host KV budget per worker (the CPU backend keeps all KV there; with KV offload the CUDA "
          "backend pins all of it at startup): a hard limit, never guessed from free memory; "
          "divide a pod's memory by its ranks.");
ABSL_FLAG(int, server_default_max_tokens, CoordinatorOptions().default_max_tokens,
          "max_tokens used when a request does not set it, >= 1.");
ABSL_FLAG(int, server_max_tokens_limit, CoordinatorOptions().max_tokens_limit,
          "Largest max_tokens a request may ask for, >= 1.");
ABSL_FLAG(int, server_max_prompt_tokens, CoordinatorOptions().max_prompt_tokens,
          "Longest prompt accepted, in tokens, >= 1.");
ABSL_FLAG(int, server_max_batch, CoordinatorOptions().scheduler.max_batch,
          "Sequences batched into one step, >= 1.");
ABSL_FLAG(int, server_chunk, CoordinatorOptions().scheduler.chunk_tokens,
          "Prefill tokens per step (chunked prefill), >= 1.");
ABSL_FLAG(int, server_max_queue, CoordinatorOptions().scheduler.max_queue,
          "Requests allowed to wait, >= 0; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, server_configure_timeout_s, CoordinatorOptions().configure_timeout_s,
          "How long a worker may take to load the model and connect, in seconds, > 0.");
ABSL_FLAG(double, server_step_timeout_s, CoordinatorOptions().step_timeout_s,
          "Longest a step may take before its workers count as lost (readiness then goes "
          "NOT_SERVING and running requests fail with UNAVAILABLE), in seconds, > 0.");

ABSL_FLAG(double, server_recovery_timeout_s, CoordinatorOptions().scheduler.recovery_timeout_s,
          "When a worker is lost mid-stream, running requests keep their tokens and wait this "
          "long, in seconds, >= 0, for the worker group to be whole again (the worker restarted "
          "and re-registered); they then continue, re-prefilled, on one unbroken stream. Past "
          "it they end with UNAVAILABLE. 0 = off: they end with UNAVAILABLE at once.");

namespace hipserve::cli {

absl::StatusOr<coordinator::CoordinatorOptions> CoordinatorOptionsFromFlags() {
  using flags::CheckFlag;
  CoordinatorOptions o;
  o.model = absl::GetFlag(FLAGS_server_model);
  o.host = absl::GetFlag(FLAGS_server_host);
  o.port = absl::GetFlag(FLAGS_server_port);
  o.http_port = absl::GetFlag(FLAGS_server_http_port);
  o.http_host = absl::GetFlag(FLAGS_server_http_host);
  o.http_threads = absl::GetFlag(FLAGS_server_http_threads);
  o.metrics_port = absl::GetFlag(FLAGS_server_metrics_port);
  o.auth_tokens_file = absl::GetFlag(FLAGS_server_auth_tokens_file);
  o.auth_health_and_reflection = absl::GetFlag(FLAGS_server_auth_health_and_reflection);
  o.tls_cert_file = absl::GetFlag(FLAGS_server_tls_cert_file);
  o.tls_key_file = absl::GetFlag(FLAGS_server_tls_key_file);
  o.worker_tls.cert_file = absl::GetFlag(FLAGS_server_worker_tls_cert_file);
  o.worker_tls.key_file = absl::GetFlag(FLAGS_server_worker_tls_key_file);
  o.worker_tls.ca_file = absl::GetFlag(FLAGS_server_worker_tls_ca_file);
  o.client_limits.max_concurrent_requests =
      absl::GetFlag(FLAGS_server_max_concurrent_requests_per_client);
  o.client_limits.max_queued_tokens = absl::GetFlag(FLAGS_server_max_queued_tokens_per_client);
  RETURN_IF_ERROR(CheckFlag(o.client_limits.max_concurrent_requests >= 0,
                            "max_concurrent_requests_per_client", ">= 0",
                            o.client_limits.max_concurrent_requests));
  RETURN_IF_ERROR(CheckFlag(o.client_limits.max_queued_tokens >= 0, "max_queued_tokens_per_client",
                            ">= 0", static_cast<double>(o.client_limits.max_queued_tokens)));
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file and --tls_key_file go together");
  }
  RETURN_IF_ERROR(tls::CheckMutualTlsFiles(o.worker_tls, "--worker_tls_"));
  o.attention = absl::GetFlag(FLAGS_server_attention);
  o.hip_config_json = absl::GetFlag(FLAGS_server_hip_config);
  o.max_context = absl::GetFlag(FLAGS_server_max_context);
  o.seed = absl::GetFlag(FLAGS_server_seed);
  o.gpu_kv_bytes = absl::GetFlag(FLAGS_server_gpu_kv_bytes).bytes;
  o.host_kv_bytes = absl::GetFlag(FLAGS_server_host_kv_bytes).bytes;
  o.default_max_tokens = absl::GetFlag(FLAGS_server_default_max_tokens);
  o.max_tokens_limit = absl::GetFlag(FLAGS_server_max_tokens_limit);
  o.max_prompt_tokens = absl::GetFlag(FLAGS_server_max_prompt_tokens);
  o.scheduler.max_batch = absl::GetFlag(FLAGS_server_max_batch);
  o.scheduler.chunk_tokens = absl::GetFlag(FLAGS_server_chunk);
  o.scheduler.max_queue = absl::GetFlag(FLAGS_server_max_queue);
  o.configure_timeout_s = absl::GetFlag(FLAGS_server_configure_timeout_s);
  o.step_timeout_s = absl::GetFlag(FLAGS_server_step_timeout_s);
  o.scheduler.recovery_timeout_s = absl::GetFlag(FLAGS_server_recovery_timeout_s);
  RETURN_IF_ERROR(CheckFlag(o.port >= 0 && o.port <= 65535, "port", "in [0, 65535]", o.port));
  RETURN_IF_ERROR(CheckFlag(o.http_port >= -1 && o.http_port <= 65535, "http_port",
                            "in [-1, 65535]", o.http_port));
  RETURN_IF_ERROR(CheckFlag(o.metrics_port >= -1 && o.metrics_port <= 65535, "metrics_port",
                            "in [-1, 65535]", o.metrics_port));
  const double drain_timeout_s = DrainTimeoutSeconds();
  RETURN_IF_ERROR(CheckFlag(drain_timeout_s >= 0, "drain_timeout_s", ">= 0", drain_timeout_s));
  RETURN_IF_ERROR(CheckFlag(o.http_threads >= 1, "http_threads", ">= 1", o.http_threads));
  RETURN_IF_ERROR(CheckFlag(o.max_context >= 0, "max_context", ">= 0", o.max_context));
  RETURN_IF_ERROR(
      CheckFlag(o.default_max_tokens >= 1, "default_max_tokens", ">= 1", o.default_max_tokens));
  RETURN_IF_ERROR(
      CheckFlag(o.max_tokens_limit >= 1, "max_tokens_limit", ">= 1", o.max_tokens_limit));
  RETURN_IF_ERROR(
      CheckFlag(o.max_prompt_tokens >= 1, "max_prompt_tokens", ">= 1", o.max_prompt_tokens));
  RETURN_IF_ERROR(
      CheckFlag(o.scheduler.max_batch >= 1, "max_batch", ">= 1", o.scheduler.max_batch));
  RETURN_IF_ERROR(
      CheckFlag(o.scheduler.chunk_tokens >= 1, "chunk", ">= 1", o.scheduler.chunk_tokens));
  RETURN_IF_ERROR(
      CheckFlag(o.scheduler.max_queue >= 0, "max_queue", ">= 0", o.scheduler.max_queue));
  RETURN_IF_ERROR(
      CheckFlag(o.configure_timeout_s > 0, "configure_timeout_s", "> 0", o.configure_timeout_s));
  RETURN_IF_ERROR(CheckFlag(o.step_timeout_s > 0, "step_timeout_s", "> 0", o.step_timeout_s));
  RETURN_IF_ERROR(CheckFlag(o.scheduler.recovery_timeout_s >= 0, "recovery_timeout_s", ">= 0",
                            o.scheduler.recovery_timeout_s));
  return o;
}

bool WriteHttpPortFile(const coordinator::Coordinator& c) {
  const std::string path = absl::GetFlag(FLAGS_server_http_port_file);
  return path.empty() || c.http_port() < 0 || WritePortFile(path, c.http_port());
}

bool WriteMetricsPortFile(const coordinator::Coordinator& c) {
  const std::string path = absl::GetFlag(FLAGS_server_metrics_port_file);
  return path.empty() || c.metrics_port() < 0 || WritePortFile(path, c.metrics_port());
}

double DrainTimeoutSeconds() { return absl::GetFlag(FLAGS_server_drain_timeout_s); }

void ReloadTokensIfRequested(coordinator::Coordinator& c) {
  if (!TakeReloadRequest()) return;
  LOG(INFO) << "SIGHUP: reloading the bearer tokens and the TLS certificates";
  absl::Status s = c.ReloadAuthTokens();
  if (!s.ok() && !absl::IsFailedPrecondition(s)) {
    LOG(ERROR) << "token reload failed, the previous tokens stay: " << s;
  }
  s = c.ReloadTls();
  if (s.ok()) {
    LOG(INFO) << "TLS certificates reloaded; new connections use them";
  } else if (!absl::IsFailedPrecondition(s)) {
    LOG(ERROR) << "TLS certificate reload failed, the previous certificate stays: " << s;
  }
}

std::vector<std::string> WorkerTlsArgs(const coordinator::CoordinatorOptions& o) {
  if (o.worker_tls.cert_file.empty()) return {};
  return {"--worker_tls_cert_file=" + o.worker_tls.cert_file,
          "--worker_tls_key_file=" + o.worker_tls.key_file,
          "--worker_tls_ca_file=" + o.worker_tls.ca_file};
}

int DrainAndShutdown(coordinator::Coordinator& c) {
  c.Drain(DrainTimeoutSeconds());
  c.Shutdown();
  return 0;
}

bool WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) return false;
    f << port << "\n";
    if (!f) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace hipserve::cli
