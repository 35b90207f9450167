#include "coordinator/http/openai_protocol.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace hipserve::coordinator::http {

namespace {

using nlohmann::json;

ApiError BadParam(const std::string& param, const std::string& message) {
  ApiError e;
  e.param = param;
  e.message = message;
  return e;
}

const char* TypeName(const json& v) { return v.type_name(); }

// Chat content: a string, null, or an array of {"type": "text", "text": ...} parts.
std::optional<ApiError> ContentText(const json& content, const std::string& field,
                                    std::string* out) {
  if (content.is_null()) return std::nullopt;
  if (content.is_string()) {
    *out = content.get<std::string>();
    return std::nullopt;
  }
  if (content.is_array()) {
    for (size_t i = 0; i < content.size(); ++i) {
      const json& part = content[i];
      const std::string pf = absl::StrCat(field, "[", i, "]");
      if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
          !part.contains("text") || !part["text"].is_string()) {
        return BadParam(pf, absl::StrCat(pf,
                                         " must be a text part {\"type\": \"text\", \"text\": "
                                         "\"...\"}; other content types are not supported"));
      }
      out->append(part["text"].get<std::string>());
    }
    return std::nullopt;
  }
  return BadParam(field, absl::StrCat(field, " must be a string or an array of text parts, got ",
                                      TypeName(content)));
}

std::optional<ApiError> ParseMessages(const json& body, v1::GenerateRequest* req) {
  if (!body.contains("messages")) return BadParam("messages", "messages is required");
  const json& msgs = body["messages"];
  if (!msgs.is_array()) {
    return BadParam("messages", absl::StrCat("messages must be an array, got ", TypeName(msgs)));
  }
  if (msgs.empty()) return BadParam("messages", "messages must not be empty");
  v1::ChatInput* chat = req->mutable_chat();
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string field = absl::StrCat("messages[", i, "]");
    const json& m = msgs[i];
    if (!m.is_object()) {
      return BadParam(field, absl::StrCat(field, " must be an object, got ", TypeName(m)));
    }
    if (!m.contains("role") || !m["role"].is_string()) {
      return BadParam(field + ".role", absl::StrCat(field, ".role is required (a string)"));
    }
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for system
    if (role != "system" && role != "user" && role != "assistant") {
      return BadParam(field + ".role", absl::StrCat(field, ".role '", role,
                                                    "' must be system, developer, user or "
                                                    "assistant (tools are not supported)"));
    }
    std::string text;
    if (m.contains("content")) {
      if (auto e = ContentText(m["content"], field + ".content", &text)) return e;
    }
    v1::ChatMessage* out = chat->add_messages();
    out->set_role(role);
    out->set_content(std::move(text));
  }
  return std::nullopt;
}

std::optional<ApiError> TokenList(const json& v, const std::string& field,
                                  v1::GenerateRequest* req) {
  v1::TokenIds* ids = req->mutable_token_ids();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer()) {
      return BadParam(field, absl::StrCat(field, "[", i, "] must be an integer token id, got ",
                                          TypeName(v[i])));
    }
    ids->add_ids(v[i].get<int32_t>());
  }
  return std::nullopt;
}

// prompt: a string, an array of one string, an array of token ids or an array of one array.
std::optional<ApiError> ParsePrompt(const json& body, v1::GenerateRequest* req) {
  if (!body.contains("prompt") || body["prompt"].is_null()) {
    return BadParam("prompt", "prompt is required");
  }
  const json& p = body["prompt"];
  if (p.is_string()) {
    req->set_text(p.get<std::string>());
    return std::nullopt;
  }
  if (p.is_array() && !p.empty() && p[0].is_number()) return TokenList(p, "prompt", req);
  if (p.is_array() && p.size() == 1) {
    if (p[0].is_string()) {
      req->set_text(p[0].get<std::string>());
      return std::nullopt;
    }
    if (p[0].is_array()) return TokenList(p[0], "prompt[0]", req);
  }
  if (p.is_array() && p.size() > 1 && !p[0].is_number()) {
    return BadParam("prompt", absl::StrCat("prompt has ", p.size(),
                                           " entries; this server takes one prompt per request"));
  }
  return BadParam("prompt", absl::StrCat("prompt must be a string, an array of token ids or an "
                                         "array of one of those, got ",
                                         p.is_array() ? "an empty array" : TypeName(p)));
}

// Reads an optional number field; false (with *err set) on a wrong type. null = unset.
bool OptNumber(const json& body, const char* name, std::optional<double>* out,
               std::optional<ApiError>* err) {
  if (!body.contains(name) || body[name].is_null()) return true;
  if (!body[name].is_number()) {
    *err = BadParam(name, absl::StrCat(name, " must be a number, got ", TypeName(body[name])));
    return false;
  }
  *out = body[name].get<double>();
  return true;
}

bool OptInt(const json& body, const char* name, std::optional<int64_t>* out,
            std::optional<ApiError>* err) {
  if (!body.contains(name) || body[name].is_null()) return true;
  const json& v = body[name];
  if (!v.is_number_integer()) {
    *err = BadParam(name, absl::StrCat(name, " must be an integer, got ", TypeName(v)));
    return false;
  }
  *out = v.get<int64_t>();
  return true;
}

bool OptBool(const json& body, const char* name, bool* out, std::optional<ApiError>* err) {
  if (!body.contains(name) || body[name].is_null()) return true;
  if (!body[name].is_boolean()) {
    *err = BadParam(name, absl::StrCat(name, " must be a boolean, got ", TypeName(body[name])));
    return false;
  }
  *out = body[name].get<bool>();
  return true;
}

// A value that does not change the output (unset, null, false, 0, empty) is accepted for an
// unsupported parameter; anything else is refused rather than silently ignored.
bool IsNeutral(const json& v) {
  if (v.is_null()) return true;
  if (v.is_boolean()) return !v.get<bool>();
  if (v.is_number()) return v.get<double>() == 0;
  if (v.is_array() || v.is_object() || v.is_string()) return v.empty();
  return false;
}

// Clamps an int64 into int32 range so that the shared validation reports the real problem.
int32_t ClampInt32(int64_t v) {
  if (v > INT32_MAX) return INT32_MAX;
  if (v < INT32_MIN) return INT32_MIN;
  return static_cast<int32_t>(v);
}

}  // namespace

std::optional<ApiError> ParseRequest(Endpoint endpoint, const std::string& body_text,
                                     OpenAiRequest* out) {
  out->endpoint = endpoint;
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return BadParam("", "the request body is not valid JSON");
  }
  if (!body.is_object()) {
    return BadParam("",
                    absl::StrCat("the request body must be a JSON object, got ", TypeName(body)));
  }
  if (!body.contains("model") || !body["model"].is_string()) {
    return BadParam("model", "model is required (a string; GET /v1/models lists them)");
  }
  out->model = body["model"].get<std::string>();

  std::optional<ApiError> err;
  v1::GenerateRequest& req = out->request;
  if (endpoint == Endpoint::kChatCompletions) {
    if (auto e = ParseMessages(body, &req)) return e;
  } else {
    if (auto e = ParsePrompt(body, &req)) return e;
  }

  for (const char* name :
       {"tools", "tool_choice", "functions", "function_call", "logprobs", "top_logprobs",
        "logit_bias", "echo", "suffix", "presence_penalty", "frequency_penalty", "response_format",
        "audio", "modalities", "prediction"}) {
    if (body.contains(name) && !IsNeutral(body[name])) {
      return BadParam(name, absl::StrCat(name, " is not supported by this server"));
    }
  }
  if (body.contains("best_of") && !body["best_of"].is_null() && body["best_of"] != 1) {
    return BadParam("best_of", "best_of must be 1 (this server returns one choice)");
  }
  std::optional<int64_t> n;
  if (!OptInt(body, "n", &n, &err)) return err;
  if (n && *n != 1) {
    return BadParam("n", absl::StrCat("n must be 1 (this server returns one choice), got ", *n));
  }

  v1::SamplingParams* sp = req.mutable_sampling();
  std::optional<int64_t> max_tokens, max_completion_tokens, top_k, seed;
  if (!OptInt(body, "max_tokens", &max_tokens, &err)) return err;
  if (!OptInt(body, "max_completion_tokens", &max_completion_tokens, &err)) return err;
  if (max_completion_tokens) {
    out->max_tokens_field = "max_completion_tokens";
    sp->set_max_tokens(ClampInt32(*max_completion_tokens));
  } else if (max_tokens) {
    sp->set_max_tokens(ClampInt32(*max_tokens));
  }
  std::optional<double> temperature, top_p;
  if (!OptNumber(body, "temperature", &temperature, &err)) return err;
  if (temperature) sp->set_temperature(static_cast<float>(*temperature));
  if (!OptNumber(body, "top_p", &top_p, &err)) return err;
  if (top_p) sp->set_top_p(static_cast<float>(*top_p));
  if (!OptInt(body, "top_k", &top_k, &err)) return err;
  // top_k = -1 means "off" in vLLM's extension; 0 is off here.
  if (top_k) sp->set_top_k(*top_k == -1 ? 0 : ClampInt32(*top_k));
  if (!OptInt(body, "seed", &seed, &err)) return err;
  if (seed) sp->set_seed(static_cast<uint64_t>(*seed));
  bool ignore_eos = false;
  if (!OptBool(body, "ignore_eos", &ignore_eos, &err)) return err;
  sp->set_ignore_eos(ignore_eos);

  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      sp->add_stop(stop.get<std::string>());
    } else if (stop.is_array()) {
      for (size_t i = 0; i < stop.size(); ++i) {
        if (!stop[i].is_string()) {
          return BadParam("stop",
                          absl::StrCat("stop[", i, "] must be a string, got ", TypeName(stop[i])));
        }
        sp->add_stop(stop[i].get<std::string>());
      }
    } else {
      return BadParam("stop", absl::StrCat("stop must be a string or an array of strings, got ",
                                           TypeName(stop)));
    }
  }
  if (body.contains("stop_token_ids") && !body["stop_token_ids"].is_null()) {
    const json& ids = body["stop_token_ids"];
    if (!ids.is_array()) return BadParam("stop_token_ids", "stop_token_ids must be an array");
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!ids[i].is_number_integer()) {
        return BadParam("stop_token_ids",
                        absl::StrCat("stop_token_ids[", i, "] must be an integer"));
      }
      sp->add_stop_token_ids(ids[i].get<int32_t>());
    }
  }

  if (!OptBool(body, "stream", &out->stream, &err)) return err;
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    const json& so = body["stream_options"];
    if (!so.is_object()) {
      return BadParam("stream_options", "stream_options must be an object");
    }
    if (!OptBool(so, "include_usage", &out->include_usage, &err)) {
      err->param = "stream_options.include_usage";
      return err;
    }
  }
  if (body.contains("user") && !body["user"].is_null() && !body["user"].is_string()) {
    return BadParam("user", "user must be a string");
  }
  return std::nullopt;
}

ApiError ErrorFromStatus(const absl::Status& status, const OpenAiRequest* request) {
  ApiError e;
  e.message = std::string(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      e.http_status = 400;
      break;
    case absl::StatusCode::kNotFound:
      e.http_status = 404;
      break;
    case absl::StatusCode::kUnauthenticated:
      e.http_status = 401;
      e.type = "authentication_error";
      e.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      e.http_status = 403;
      e.type = "permission_error";
      break;
    case absl::StatusCode::kAlreadyExists:
      e.http_status = 409;
      break;
    case absl::StatusCode::kResourceExhausted:
      e.http_status = 429;
      e.type = "rate_limit_error";
      e.code = "server_busy";
      break;
    case absl::StatusCode::kUnavailable:
      e.http_status = 503;
      e.type = "service_unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.http_status = 504;
      e.type = "timeout";
      break;
    case absl::StatusCode::kOk:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    default:
      e.http_status = 500;
      e.type = "server_error";
      break;
  }
  if (e.http_status != 400) return e;
  // The shared validation names the public API's fields (request_validation.cc); say them as
  // the OpenAI client wrote them. Longest prefixes first.
  const bool chat = request != nullptr && request->endpoint == Endpoint::kChatCompletions;
  const std::string max_tokens = request ? request->max_tokens_field : "max_tokens";
  const std::string input = chat ? "messages" : "prompt";
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"sampling.max_tokens", max_tokens},
      {"sampling.temperature", "temperature"},
      {"sampling.top_p", "top_p"},
      {"sampling.top_k", "top_k"},
      {"sampling.stop_token_ids", "stop_token_ids"},
      {"sampling.stop", "stop"},
      {"input.chat.messages", "messages"},
      {"input.token_ids", "prompt"},
      {"input.text", "prompt"},
      {"input", input},
      {"prompt has", input},
  };
  for (const auto& [proto_field, openai_field] : fields) {
    if (absl::StartsWith(e.message, proto_field)) {
      e.param = openai_field;
      if (!absl::StartsWith(proto_field, "prompt") && proto_field != "input") {
        e.message = openai_field + e.message.substr(proto_field.size());
      }
      break;
    }
  }
  return e;
}

std::string Dump(const json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

std::string ErrorJson(const ApiError& error) {
  json e = {{"message", error.message}, {"type", error.type}};
  e["param"] = error.param.empty() ? json(nullptr) : json(error.param);
  e["code"] = error.code.empty() ? json(nullptr) : json(error.code);
  return Dump(json{{"error", e}});
}

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
    case FinishReason::kEos:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "stop";
}

json Usage(int prompt_tokens, int completion_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

namespace {

json Header(Endpoint endpoint, const ResponseHeader& h, bool chunk) {
  const char* object = endpoint == Endpoint::kChatCompletions
                           ? (chunk ? "chat.completion.chunk" : "chat.completion")
                           : "text_completion";
  return json{{"id", h.id},
              {"object", object},
              {"created", h.created},
              {"model", h.model},
              {"system_fingerprint", nullptr}};
}

}  // namespace

json CompletionResponse(Endpoint endpoint, const ResponseHeader& h, const std::string& text,
                        const FinishInfo& finish, int prompt_tokens) {
  json r = Header(endpoint, h, /*chunk=*/false);
  json choice = {
      {"index", 0}, {"finish_reason", FinishReasonName(finish.reason)}, {"logprobs", nullptr}};
  if (endpoint == Endpoint::kChatCompletions) {
    choice["message"] = json{{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  r["choices"] = json::array({choice});
  r["usage"] = Usage(prompt_tokens, finish.completion_tokens);
  return r;
}

json StreamChunk(Endpoint endpoint, const ResponseHeader& h, const std::string& text,
                 const char* finish_reason, bool role, bool include_usage) {
  json r = Header(endpoint, h, /*chunk=*/true);
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
  if (endpoint == Endpoint::kChatCompletions) {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    if (!text.empty() || role) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  r["choices"] = json::array({choice});
  if (include_usage) r["usage"] = nullptr;
  return r;
}

json UsageChunk(Endpoint endpoint, const ResponseHeader& h, int prompt_tokens,
                int completion_tokens) {
  json r = Header(endpoint, h, /*chunk=*/true);
  r["choices"] = json::array();
  r["usage"] = Usage(prompt_tokens, completion_tokens);
  return r;
}

}  // namespace hipserve::coordinator::http
