#include "coordinator/cli/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hipserve/v1/generate.grpc.pb.h"
#include "proto/grpc_status.h"

namespace hipserve::cli {

const char* ReasonName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_EOS:
      return "eos";
    case v1::FINISH_REASON_ABORT:
      return "abort";
    case v1::FINISH_REASON_ERROR:
      return "error";
    case v1::FINISH_REASON_UNSPECIFIED:
      return "unspecified";
    default:
      return "unknown";
  }
}

namespace {
std::mutex g_tls_mu;
std::shared_ptr<grpc::ChannelCredentials>* g_tls_credentials = nullptr;  // null: plaintext
}  // namespace

absl::Status SetClientTls(const tls::TlsFiles& files) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      tls::ChannelCredentials(files, "--tls_");
  if (!creds.ok()) return creds.status();
  std::lock_guard<std::mutex> lock(g_tls_mu);
  if (g_tls_credentials == nullptr) {
    g_tls_credentials = new std::shared_ptr<grpc::ChannelCredentials>;
  }
  *g_tls_credentials = *std::move(creds);
  return absl::OkStatus();
}

std::shared_ptr<grpc::ChannelCredentials> ClientCredentials() {
  std::lock_guard<std::mutex> lock(g_tls_mu);
  if (g_tls_credentials == nullptr) return grpc::InsecureChannelCredentials();
  return *g_tls_credentials;
}

std::unique_ptr<grpc::ClientContext> NewClientContext(double deadline_s) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(Deadline(deadline_s));
  if (const char* token = std::getenv("HIPSERVE_API_TOKEN"); token != nullptr && *token != 0) {
    ctx->AddMetadata("authorization", std::string("Bearer ") + token);
  }
  return ctx;
}

std::chrono::system_clock::time_point Deadline(double seconds) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

absl::Status WaitForReady(const std::string& server, double timeout_s) {
  auto channel = grpc::CreateChannel(server, ClientCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  std::string last = "no answer";
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(2));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("hipserve.v1.Generation");
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = stub->Check(&ctx, req, &resp);
    if (s.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = s.ok() ? "NOT_SERVING" : s.error_message();
    if (std::chrono::steady_clock::now() > end) {
      return absl::DeadlineExceededError(
          absl::StrCat("server ", server, " not ready after ", timeout_s, " s (", last, ")"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

absl::Status RunGenerate(const GenerateClientOptions& o, std::ostream& out, std::ostream& err) {
  if (o.prompt.empty()) return absl::InvalidArgumentError("--prompt is required");
  if (o.wait_ready_s > 0) {
    absl::Status ready = WaitForReady(o.server, o.wait_ready_s);
    if (!ready.ok()) return ready;
  }
  auto channel = grpc::CreateChannel(o.server, ClientCredentials());
  auto stub = v1::Generation::NewStub(channel);
  v1::GenerateRequest req;
  if (o.chat) {
    if (!o.system.empty()) {
      v1::ChatMessage* m = req.mutable_chat()->add_messages();
      m->set_role("system");
      m->set_content(o.system);
    }
    v1::ChatMessage* m = req.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content(o.prompt);
  } else {
    req.set_text(o.prompt);
  }
  v1::SamplingParams* sp = req.mutable_sampling();
  if (o.max_tokens) sp->set_max_tokens(*o.max_tokens);
  if (o.temperature) sp->set_temperature(*o.temperature);
  if (o.top_p) sp->set_top_p(*o.top_p);
  if (o.top_k) sp->set_top_k(*o.top_k);
  if (o.seed) sp->set_seed(*o.seed);
  for (const std::string& s : o.stop) sp->add_stop(s);
  sp->set_ignore_eos(o.ignore_eos);
  req.set_report_prefill_progress(o.prefill_progress);

  std::unique_ptr<grpc::ClientContext> ctx = NewClientContext(o.timeout_s);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub->Generate(ctx.get(), req);
  v1::GenerateResponse msg;
  v1::FinalInfo final_info;
  int prompt_tokens = 0, completion_tokens = 0;
  bool got_final = false;
  bool progress_shown = false;  // a progress line is on `err` and must be cleared
  while (reader->Read(&msg)) {
    if (msg.has_prefill()) {
      const v1::PrefillProgress& p = msg.prefill();
      const int64_t total = std::max(1, p.total_tokens());
      err << "\rprefill " << p.processed_tokens() << "/" << p.total_tokens() << " tokens ("
          << int64_t{p.processed_tokens()} * 100 / total << "%)" << std::flush;
      progress_shown = true;
    }
    if (progress_shown && (!msg.text().empty() || msg.has_final())) {
      err << "\r\033[K" << std::flush;  // the answer replaces the progress line
      progress_shown = false;
    }
    out << msg.text() << std::flush;
    prompt_tokens = msg.prompt_tokens();
    completion_tokens = msg.completion_tokens();
    if (msg.has_final()) {
      final_info = msg.final();
      got_final = true;
    }
  }
  grpc::Status st = reader->Finish();
  if (progress_shown) err << "\n";
  out << "\n";
  if (!st.ok()) return proto::FromGrpcStatus(st);
  if (!got_final) return absl::InternalError("stream ended without a final message");
  if (o.stats) {
    const v1::Timing& t = final_info.timing();
    err << "[finish=" << ReasonName(final_info.finish_reason())
        << " prompt_tokens=" << prompt_tokens << " completion_tokens=" << completion_tokens
        << " ttft=" << t.ttft_seconds() << "s total=" << t.total_seconds()
        << "s decode=" << t.decode_tokens_per_second() << " tok/s]\n";
  }
  return absl::OkStatus();
}

absl::Status RunInspect(const std::string& server, std::ostream& out) {
  auto channel = grpc::CreateChannel(server, ClientCredentials());
  auto stub = v1::Generation::NewStub(channel);
  std::unique_ptr<grpc::ClientContext> c1 = NewClientContext(10);
  v1::ModelInfo info;
  grpc::Status s = stub->GetModelInfo(c1.get(), v1::GetModelInfoRequest(), &info);
  if (!s.ok()) return proto::FromGrpcStatus(s);
  std::unique_ptr<grpc::ClientContext> c2 = NewClientContext(10);
  v1::ServerInfo server_info;
  s = stub->GetServerInfo(c2.get(), v1::GetServerInfoRequest(), &server_info);
  if (!s.ok()) return proto::FromGrpcStatus(s);
  out << "model:        " << info.name() << "\n"
      << "backend:      " << info.backend() << " (" << info.dtype() << ", tp "
      << info.tensor_parallel() << ")\n"
      << "attention:    " << info.attention() << "\n"
      << "layers:       " << info.num_layers() << "  hidden " << info.hidden_size() << "  heads "
      << info.num_heads() << "/" << info.num_kv_heads() << " x " << info.head_dim() << "\n"
      << "vocab:        " << info.vocab_size() << "\n"
      << "max context:  " << info.max_context() << "\n"
      << "requests:     " << server_info.active_requests() << " active, "
      << server_info.queued_requests() << " queued\n"
      << "steps:        " << server_info.steps() << " (" << server_info.generated_tokens()
      << " tokens generated)\n";
  const v1::MemoryPlan& mp = server_info.memory_plan();
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  out << "memory:       " << mp.device() << ": weights " << mp.weights_bytes() / kGiB
      << " GiB, workspaces " << mp.workspace_bytes() / kGiB << " GiB, KV " << mp.kv_bytes() / kGiB
      << " GiB of budget " << mp.budget_bytes() / kGiB << " GiB\n"
      << "kv:           " << server_info.kv_capacity_tokens() << " tokens capacity"
      << (mp.kv_dtype().empty() ? "" : " (" + mp.kv_dtype() + ")");
  if (mp.host_kv_bytes() > 0) {
    out << " (offloaded: host tier " << mp.host_kv_bytes() / kGiB << " GiB fp8, GPU hot pages "
        << mp.gpu_kv_tokens() << " tokens)";
  }
  out << "\n";
  return absl::OkStatus();
}

}  // namespace hipserve::cli
