#include "coordinator/http/openai_server.h"

#include <httplib.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "coordinator/http/openai_protocol.h"

namespace hipserve::coordinator::http {

namespace {

using nlohmann::json;

// How long a stream waits for tokens before it writes an SSE comment; the write is how a
// closed connection is noticed while a long prompt is still being prefilled.
constexpr auto kKeepAlive = std::chrono::seconds(1);

// One request's events, handed from the scheduler's thread to the connection's thread.
// Thread-safe.
class HttpSink final : public SequenceSink {
 public:
  void OnTokens(const std::vector<int32_t>& ids, const std::string& text,
                int completion_tokens) override {
    std::lock_guard<std::mutex> lock(mu_);
    text_ += text;
    cv_.notify_all();
  }
  void OnFinish(const FinishInfo& info) override {
    std::lock_guard<std::mutex> lock(mu_);
    finish_ = info;
    cv_.notify_all();
  }
  // Waits up to `timeout` for text or the finish; moves out what arrived.
  void Wait(std::chrono::milliseconds timeout, std::string* text,
            std::optional<FinishInfo>* finish) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !text_.empty() || finish_.has_value(); });
    text->swap(text_);
    text_.clear();
    if (finish_) *finish = finish_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  std::optional<FinishInfo> finish_;
};

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  res.set_content(ErrorJson(e), "application/json");
}

void SendJson(httplib::Response& res, const json& j) {
  res.status = 200;
  res.set_content(Dump(j), "application/json");
}

std::string Sse(const std::string& data) { return absl::StrCat("data: ", data, "\n\n"); }

// State of one streaming response, shared by the content provider and its releaser.
struct StreamState {
  Endpoint endpoint;
  ResponseHeader header;
  bool include_usage = false;
  int prompt_tokens = 0;
  std::string request_id;
  std::shared_ptr<HttpSink> sink;
  bool started = false;
  bool finished = false;  // [DONE] written or the request ended
};

}  // namespace

// A certificate chain and key parsed from checked PEM (tls::LoadPem), for SSL_use_cert_and_key.
struct ParsedIdentity {
  X509* leaf = nullptr;
  STACK_OF(X509) * chain = nullptr;  // the certificates after the leaf
  EVP_PKEY* key = nullptr;
  ParsedIdentity() = default;
  ParsedIdentity(const ParsedIdentity&) = delete;
  ParsedIdentity& operator=(const ParsedIdentity&) = delete;
  ~ParsedIdentity() {
    X509_free(leaf);
    if (chain != nullptr) sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
  }
  static std::shared_ptr<const ParsedIdentity> Parse(const tls::TlsPem& pem) {
    auto id = std::make_shared<ParsedIdentity>();
    BIO* cb = BIO_new_mem_buf(pem.cert.data(), static_cast<int>(pem.cert.size()));
    BIO* kb = BIO_new_mem_buf(pem.key.data(), static_cast<int>(pem.key.size()));
    if (cb != nullptr && kb != nullptr) {
      id->leaf = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
      id->chain = sk_X509_new_null();
      while (X509* x = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr)) {
        sk_X509_push(id->chain, x);
      }
      id->key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
    }
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();  // the chain loop ends on "no start line"
    if (id->leaf == nullptr || id->key == nullptr || id->chain == nullptr) return nullptr;
    return id;
  }
};

struct OpenAiHttpServer::Impl {
  HttpServerOptions options;
  GenerationService* service;
  std::unique_ptr<httplib::Server> owned_server;  // an httplib::SSLServer with TLS
  httplib::Server& server;
  std::thread thread;
  int port = 0;
  int64_t started_at = std::time(nullptr);
  std::mutex mu;
  bool stopped = false;
  // options.tls_identity's latest PEM and its parsed form (guarded by identity_mu).
  std::mutex identity_mu;
  std::shared_ptr<const tls::TlsPem> identity_pem;
  std::shared_ptr<const ParsedIdentity> identity;

  // The certificate for a handshake now (null: keep the context's).
  std::shared_ptr<const ParsedIdentity> CurrentIdentity() {
    std::shared_ptr<const tls::TlsPem> pem = options.tls_identity();
    std::lock_guard<std::mutex> lock(identity_mu);
    if (pem != nullptr && pem != identity_pem) {
      std::shared_ptr<const ParsedIdentity> parsed = ParsedIdentity::Parse(*pem);
      if (parsed == nullptr) {
        LOG(ERROR) << "HTTPS: the reloaded certificate does not parse; keeping the previous one";
      } else {
        identity = std::move(parsed);
      }
      identity_pem = std::move(pem);
    }
    return identity;
  }
  // SSL_CTX_set_cert_cb: puts the current certificate on each connection before its handshake.
  static int CertCallback(SSL* ssl, void* arg) {
    std::shared_ptr<const ParsedIdentity> id = static_cast<Impl*>(arg)->CurrentIdentity();
    if (id == nullptr) return 1;
    return SSL_use_cert_and_key(ssl, id->leaf, id->key, id->chain, /*override=*/1) == 1 ? 1 : 0;
  }

  Impl(const HttpServerOptions& o, GenerationService* s)
      : options(o),
        service(s),
        owned_server(o.tls_cert_file.empty()
                         ? std::make_unique<httplib::Server>()
                         : std::make_unique<httplib::SSLServer>(o.tls_cert_file.c_str(),
                                                                o.tls_key_file.c_str())),
        server(*owned_server) {
    if (!o.tls_cert_file.empty() && o.tls_identity) {
      SSL_CTX* ctx = static_cast<httplib::SSLServer&>(*owned_server).ssl_context();
      if (ctx != nullptr) SSL_CTX_set_cert_cb(ctx, &Impl::CertCallback, this);
    }
  }

  // The served model's name and its aliases; empty while not ready.
  std::vector<std::string> ModelIds() const {
    std::shared_ptr<const ServingModel> m = service->model();
    if (m == nullptr) return {};
    std::vector<std::string> ids = {m->info.name};
    for (const std::string& a : options.model_aliases) {
      if (a != m->info.name && !a.empty()) ids.push_back(a);
    }
    return ids;
  }

  std::optional<ApiError> CheckModel(const std::string& model) const {
    std::vector<std::string> ids = ModelIds();
    if (ids.empty()) return ErrorFromStatus(service->NotReadyStatus(), nullptr);
    for (const std::string& id : ids) {
      if (id == model) return std::nullopt;
    }
    ApiError e;
    e.http_status = 404;
    e.param = "model";
    e.code = "model_not_found";
    std::string names;
    for (const std::string& id : ids)
      absl::StrAppend(&names, names.empty() ? "" : ", ", "'", id, "'");
    e.message = absl::StrCat("The model '", model, "' does not exist on this server; it serves ",
                             names, " (GET /v1/models)");
    return e;
  }

  json ModelObject(const std::string& id) const {
    std::shared_ptr<const ServingModel> m = service->model();
    return json{{"id", id},
                {"object", "model"},
                {"created", started_at},
                {"owned_by", "hipserve"},
                {"max_model_len", m ? m->info.max_context : 0}};
  }

  void Models(const httplib::Request&, httplib::Response& res) {
    std::vector<std::string> ids = ModelIds();
    if (ids.empty()) return SendError(res, ErrorFromStatus(service->NotReadyStatus(), nullptr));
    json data = json::array();
    for (const std::string& id : ids) data.push_back(ModelObject(id));
    SendJson(res, json{{"object", "list"}, {"data", data}});
  }

  void Model(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    if (auto e = CheckModel(id)) return SendError(res, *e);
    SendJson(res, ModelObject(id));
  }

  void Ready(const httplib::Request&, httplib::Response& res) {
    if (service->model() == nullptr || service->draining()) {
      return SendError(res, ErrorFromStatus(service->NotReadyStatus(), nullptr));
    }
    SendJson(res, json{{"status", "ready"}, {"workers_ready", service->workers_ready()}});
  }

  void ServerInfo(const httplib::Request&, httplib::Response& res) {
    SchedulerStats st = service->scheduler()->Stats();
    std::shared_ptr<const ServingModel> m = service->model();
    SendJson(res, json{{"active_requests", st.active},
                       {"queued_requests", st.queued},
                       {"workers_ready", service->workers_ready()},
                       {"world_size", m ? m->world_size : 0},
                       {"kv_tokens_in_use", st.kv_tokens_reserved},
                       {"kv_capacity_tokens", m ? m->info.kv_capacity_tokens : 0},
                       {"steps", st.steps},
                       {"generated_tokens", st.generated_tokens}});
  }

  void Generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    OpenAiRequest r;
    if (auto e = ParseRequest(endpoint, req.body, &r)) return SendError(res, *e);
    if (auto e = CheckModel(r.model)) return SendError(res, *e);
    auto sink = std::make_shared<HttpSink>();
    // The pre-routing handler already checked the token; this names its client.
    absl::StatusOr<std::string> client =
        options.authorize ? options.authorize(req.get_header_value("Authorization"))
                          : absl::StatusOr<std::string>(req.remote_addr);
    if (!client.ok()) return SendError(res, ErrorFromStatus(client.status(), &r));
    absl::StatusOr<StartedRequest> started = service->StartRequest(
        r.request, [&](const std::string&, int) { return sink; }, *client);
    if (!started.ok()) return SendError(res, ErrorFromStatus(started.status(), &r));
    ResponseHeader header;
    header.id = absl::StrCat(endpoint == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-",
                             started->request_id);
    header.model = r.model;
    header.created = std::time(nullptr);
    if (r.stream) {
      auto st = std::make_shared<StreamState>();
      st->endpoint = endpoint;
      st->header = header;
      st->include_usage = r.include_usage;
      st->prompt_tokens = started->prompt_tokens;
      st->request_id = started->request_id;
      st->sink = sink;
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Accel-Buffering", "no");
      res.set_chunked_content_provider(
          "text/event-stream",
          [st](size_t, httplib::DataSink& out) { return WriteStream(*st, out); },
          [this, st](bool) {
            // Whether it ended well or not: a request still running has lost its client.
            if (!st->finished) service->scheduler()->Abort({st->request_id});
          });
      return;
    }
    // Non-streaming: wait for the whole completion on this connection's thread.
    std::string text, piece;
    std::optional<FinishInfo> finish;
    while (!finish) {
      sink->Wait(kKeepAlive, &piece, &finish);
      text += piece;
    }
    if (!finish->status.ok() && finish->reason == FinishReason::kError) {
      return SendError(res, ErrorFromStatus(finish->status, &r));
    }
    SendJson(res, CompletionResponse(endpoint, header, text, *finish, started->prompt_tokens));
  }

  // One call of the chunked content provider: writes what arrived (or a keep-alive comment);
  // false ends the connection (a failed write: the client went away).
  static bool WriteStream(StreamState& st, httplib::DataSink& out) {
    auto write = [&](const std::string& s) { return out.write(s.data(), s.size()); };
    if (!st.started) {
      st.started = true;
      if (st.endpoint == Endpoint::kChatCompletions &&
          !write(Sse(Dump(StreamChunk(st.endpoint, st.header, "", nullptr, /*role=*/true,
                                      st.include_usage))))) {
        return false;
      }
    }
    std::string text;
    std::optional<FinishInfo> finish;
    st.sink->Wait(kKeepAlive, &text, &finish);
    if (!text.empty() && !write(Sse(Dump(StreamChunk(st.endpoint, st.header, text, nullptr,
                                                     /*role=*/false, st.include_usage))))) {
      return false;
    }
    if (!finish) return text.empty() ? write(": keep-alive\n\n") : true;
    st.finished = true;
    std::string tail;
    if (!finish->status.ok() && finish->reason == FinishReason::kError) {
      tail = Sse(ErrorJson(ErrorFromStatus(finish->status, nullptr)));
    } else {
      tail = Sse(Dump(StreamChunk(st.endpoint, st.header, "", FinishReasonName(finish->reason),
                                  /*role=*/false, st.include_usage)));
      if (st.include_usage) {
        tail += Sse(
            Dump(UsageChunk(st.endpoint, st.header, st.prompt_tokens, finish->completion_tokens)));
      }
    }
    tail += Sse("[DONE]");
    if (!write(tail)) return false;
    out.done();
    return true;
  }

  void Route() {
    const size_t threads = static_cast<size_t>(std::max(1, options.threads));
    server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server.set_payload_max_length(options.max_body_bytes);
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const bool covered = req.path.rfind("/v1/", 0) == 0 ||
                           (options.authorize_health && req.path.rfind("/health", 0) == 0);
      if (!options.authorize || !covered) return httplib::Server::HandlerResponse::Unhandled;
      absl::Status s = options.authorize(req.get_header_value("Authorization")).status();
      if (s.ok()) return httplib::Server::HandlerResponse::Unhandled;
      SendError(res, ErrorFromStatus(s, nullptr));
      return httplib::Server::HandlerResponse::Handled;
    });
    server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      Generate(Endpoint::kCompletions, req, res);
    });
    server.Post("/v1/chat/completions",
                [this](const httplib::Request& req, httplib::Response& res) {
                  Generate(Endpoint::kChatCompletions, req, res);
                });
    server.Get("/v1/models",
               [this](const httplib::Request& req, httplib::Response& res) { Models(req, res); });
    server.Get(R"(/v1/models/(.+))",
               [this](const httplib::Request& req, httplib::Response& res) { Model(req, res); });
    server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      SendJson(res, json{{"status", "ok"}});
    });
    server.Get("/health/ready",
               [this](const httplib::Request& req, httplib::Response& res) { Ready(req, res); });
    server.Get(
        "/hipserve/v1/server_info",
        [this](const httplib::Request& req, httplib::Response& res) { ServerInfo(req, res); });
    // Unknown routes and uncaught problems still answer in OpenAI's error shape.
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      ApiError e;
      e.http_status = res.status;
      e.type = res.status >= 500 ? "server_error" : "invalid_request_error";
      e.message = res.status == 404
                      ? absl::StrCat("no route ", req.method, " ", req.path,
                                     " (see docs/API.md for the endpoints)")
                      : absl::StrCat("HTTP ", res.status, " for ", req.method, " ", req.path);
      res.set_content(ErrorJson(e), "application/json");
    });
    server.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          ApiError e;
          e.http_status = 500;
          e.type = "server_error";
          e.message = "internal error";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& ex) {
            e.message = absl::StrCat("internal error: ", ex.what());
          } catch (...) {
          }
          SendError(res, e);
        });
  }
};

OpenAiHttpServer::OpenAiHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(
    const HttpServerOptions& options, GenerationService* service) {
  // A write to a connection the client closed must fail with EPIPE, not kill the process.
  signal(SIGPIPE, SIG_IGN);
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both a certificate and a key file");
  }
  auto impl = std::make_unique<Impl>(options, service);
  if (!impl->server.is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot start HTTPS with certificate ",
                                                   options.tls_cert_file, " and key ",
                                                   options.tls_key_file));
  }
  impl->Route();
  if (options.port == 0) {
    impl->port = impl->server.bind_to_any_port(options.host);
  } else if (impl->server.bind_to_port(options.host, options.port)) {
    impl->port = options.port;
  }
  if (impl->port <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for HTTP on ", options.host, ":",
                                               options.port, " (port in use?)"));
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  // stop() only reaches a server that runs: wait for it so that Shutdown cannot hang.
  while (!impl->server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  LOG(INFO) << "OpenAI-compatible HTTP API listening on " << options.host << ":" << impl->port
            << (options.tls_cert_file.empty() ? " (plain HTTP)" : " (HTTPS)");
  return std::unique_ptr<OpenAiHttpServer>(new OpenAiHttpServer(std::move(impl)));
}

OpenAiHttpServer::~OpenAiHttpServer() { Shutdown(); }

int OpenAiHttpServer::port() const { return impl_->port; }

void OpenAiHttpServer::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace hipserve::coordinator::http
