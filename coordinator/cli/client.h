// Client side of the public API, shared by `hipserve generate`, `hipserve serve --prompt`
// and `hipserve inspect`.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/tls/tls.h"
#include "hipserve/v1/generate.pb.h"

namespace hipserve::cli {

// "stop", "length", "eos", "abort", "error", "unspecified" (for summaries and JSON).
const char* ReasonName(v1::FinishReason r);
// now + `seconds`, for grpc::ClientContext::set_deadline.
std::chrono::system_clock::time_point Deadline(double seconds);
// TLS of every channel this process opens to the public API (generate, inspect, bench, serve
// --prompt): the files are read and checked now (InvalidArgument naming the --tls_* flag);
// plaintext until this is called, or when `files` is empty.
absl::Status SetClientTls(const tls::TlsFiles& files);
// The channel credentials SetClientTls chose (insecure by default).
std::shared_ptr<grpc::ChannelCredentials> ClientCredentials();

// A client context with the deadline set and, when $HIPSERVE_API_TOKEN is set, the metadata
// "authorization: Bearer $HIPSERVE_API_TOKEN" (servers run with --auth_tokens_file).
std::unique_ptr<grpc::ClientContext> NewClientContext(double deadline_s);

struct GenerateClientOptions {
  std::string server = "localhost:50051";
  std::string prompt;
  bool chat = false;   // send the prompt as one user chat message
  std::string system;  // optional system message (with --chat)
  std::optional<int> max_tokens;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  double timeout_s = 600;
  double wait_ready_s = 0;  // wait this long for readiness before sending
  bool stats = true;        // print finish reason and timing to `err`
  // Ask for prefill-progress events and show them on `err` as one line redrawn in place
  // ("\rprefill 1024/4096 tokens (25%)"), cleared when the first token arrives; for a terminal.
  bool prefill_progress = false;
};

// Waits until grpc.health.v1 reports "hipserve.v1.Generation" SERVING.
absl::Status WaitForReady(const std::string& server, double timeout_s);

// Streams a Generate call: text to `out` as it arrives, a summary line to `err`.
absl::Status RunGenerate(const GenerateClientOptions& options, std::ostream& out,
                         std::ostream& err);

// Prints GetModelInfo and GetServerInfo.
absl::Status RunInspect(const std::string& server, std::ostream& out);

}  // namespace hipserve::cli
