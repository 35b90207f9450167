// The OpenAI-compatible wire format: JSON requests of /v1/completions and /v1/chat/completions
// -> the public GenerateRequest that GenerationService::StartRequest takes, statuses -> OpenAI
// error objects, and the response / stream-chunk JSON. Pure functions, no sockets: the HTTP
// server (openai_server.h) and tests call them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "coordinator/scheduler.h"
#include "hipserve/v1/generate.pb.h"
#include "nlohmann/json.hpp"

namespace hipserve::coordinator::http {

enum class Endpoint { kCompletions, kChatCompletions };

// An OpenAI request, translated.
struct OpenAiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  bool stream = false;
  bool include_usage = false;                   // stream_options.include_usage
  std::string max_tokens_field = "max_tokens";  // or "max_completion_tokens": errors name it
  v1::GenerateRequest request;                  // input + sampling for StartRequest
};

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty = null
  std::string code;   // empty = null
};

// Parses and checks the body's JSON types and the OpenAI-only rules (n = 1, unsupported
// parameters). Value ranges are checked later by the shared validation (ToSequenceRequest,
// through StartRequest); ErrorFromStatus names the OpenAI field of those errors.
std::optional<ApiError> ParseRequest(Endpoint endpoint, const std::string& body,
                                     OpenAiRequest* out);

// Maps a status of the shared request path to an HTTP status and error object:
// INVALID_ARGUMENT 400 (param = the OpenAI field the message is about), NOT_FOUND 404,
// UNAUTHENTICATED 401, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, others 500. `request` (may be
// null) tells which names the client used.
ApiError ErrorFromStatus(const absl::Status& status, const OpenAiRequest* request);

// {"error": {...}} as JSON text.
std::string ErrorJson(const ApiError& error);

// "stop" (stop string, stop token or end of sequence), "length", "abort", "error".
const char* FinishReasonName(FinishReason reason);

// Serializes without throwing on invalid UTF-8 (replaced by U+FFFD).
std::string Dump(const nlohmann::json& j);

// Pieces of responses.
struct ResponseHeader {
  std::string id;  // "chatcmpl-<request id>" / "cmpl-<request id>"
  std::string model;
  int64_t created = 0;  // Unix seconds
};
nlohmann::json Usage(int prompt_tokens, int completion_tokens);
// A whole non-streaming response.
nlohmann::json CompletionResponse(Endpoint endpoint, const ResponseHeader& h,
                                  const std::string& text, const FinishInfo& finish,
                                  int prompt_tokens);
// One streaming chunk: `text` new text; `finish_reason` null until the last choice chunk.
// Chat: `role` adds delta.role (first chunk).
nlohmann::json StreamChunk(Endpoint endpoint, const ResponseHeader& h, const std::string& text,
                           const char* finish_reason, bool role, bool include_usage);
// The usage-only chunk (choices empty) sent before [DONE] with stream_options.include_usage.
nlohmann::json UsageChunk(Endpoint endpoint, const ResponseHeader& h, int prompt_tokens,
                          int completion_tokens);

}  // namespace hipserve::coordinator::http
