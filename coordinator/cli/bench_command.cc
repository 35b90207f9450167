#include "coordinator/cli/bench_command.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/flags/flags.h"
#include "coordinator/cli/bench_stats.h"
#include "coordinator/cli/client.h"
#include "coordinator/cli/client_flags.h"
#include "coordinator/cli/commands.h"
#include "hipserve/v1/generate.grpc.pb.h"
#include "proto/grpc_status.h"

#ifndef HIPSERVE_VERSION
#define HIPSERVE_VERSION "0.0.0"
#endif

using hipserve::cli::BenchOptions;

ABSL_FLAG(std::string, bench_server, BenchOptions().server, "Server address (host:port).");
ABSL_FLAG(int, bench_concurrency, BenchOptions().concurrency,
          "Requests in flight at once (client streams), >= 1.");
ABSL_FLAG(int, bench_prompt_tokens, BenchOptions().prompt_tokens,
          "Prompt length in tokens, >= 0. Without --prompt_file: random token ids, uniform over "
          "the server's vocabulary (GetModelInfo) minus its EOS ids, different for each request "
          "and reproducible with --seed; 0 = 128. With --prompt_file: the file's tokens cut or "
          "repeated to this length; 0 = the whole file.");
ABSL_FLAG(std::string, bench_prompt_file, BenchOptions().prompt_file,
          "Text file used as the prompt of every request instead of random ids (tokenized once "
          "by the server's Tokenize call).");
ABSL_FLAG(int, bench_max_tokens, BenchOptions().max_tokens,
          "Output tokens per request, >= 1 (exact: requests set ignore_eos).");
ABSL_FLAG(int, bench_num_requests, BenchOptions().num_requests,
          "Measured requests to send, >= 0; 0 = 100, or no limit when --duration_s is set. With "
          "both, whichever ends first.");
ABSL_FLAG(double, bench_duration_s, BenchOptions().duration_s,
          "Send measured requests for this many seconds (requests in flight then finish and "
          "count); 0 = no time limit.");
ABSL_FLAG(int, bench_warmup_requests, BenchOptions().warmup_requests,
          "Unmeasured requests sent first (same concurrency, prompts and lengths); -1 = as many "
          "as --concurrency, 0 = none.");
ABSL_FLAG(uint64_t, bench_seed, BenchOptions().seed,
          "Seed of the random prompt ids; request i also samples with seed + i.");
ABSL_FLAG(double, bench_temperature, BenchOptions().temperature,
          "Sampling temperature in [0, 100]; 0 = greedy.");
ABSL_FLAG(double, bench_timeout_s, BenchOptions().timeout_s,
          "Deadline of each request in seconds, > 0.");
ABSL_FLAG(double, bench_wait_ready_s, BenchOptions().wait_ready_s,
          "Wait up to this many seconds for the server to report ready (grpc.health.v1) before "
          "starting; 0 = do not wait.");
ABSL_FLAG(std::string, bench_json_out, BenchOptions().json_out,
          "Write config, model information, per-request records and summary as JSON to this "
          "file (times in seconds); empty = no file.");
ABSL_FLAG(bool, bench_progress, BenchOptions().progress,
          "Show progress on stderr: a bar when stderr is a terminal, otherwise one line every "
          "--progress_interval_s. --noprogress turns it off.");
ABSL_FLAG(double, bench_progress_interval_s, BenchOptions().progress_interval_s,
          "Seconds between progress lines when stderr is not a terminal, > 0.");

namespace hipserve::cli {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kDefaultPromptTokens = 128;
constexpr int kDefaultRequests = 100;

// One request as sent and received.
struct Result {
  int index = 0;
  bool ok = false;
  bool interrupted = false;  // cancelled by Ctrl-C: reported, not summarized
  std::string error;
  std::string finish_reason;
  int prompt_tokens = 0;
  int completion_tokens = 0;  // as the server counted them
  double start_s = 0, end_s = 0;
  std::vector<bench::TokenChunk> chunks;
  double server_queue_s = 0, server_ttft_s = 0, server_total_s = 0;
};

// The prompts: synthetic ids per request, or one tokenized text.
struct PromptSource {
  bool synthetic = true;
  int length = 0;
  int vocab_size = 0;
  uint64_t seed = 0;
  std::vector<int32_t> exclude;
  std::vector<int32_t> fixed;  // from --prompt_file

  std::vector<int32_t> For(uint64_t index) const {
    if (!synthetic) return fixed;
    return bench::SyntheticPrompt(seed, index, length, vocab_size, exclude);
  }
};

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", s);
  return buf;
}

// Runs one phase (warm-up or measured) with up to `concurrency` streams.
class Phase {
 public:
  Phase(const BenchOptions& o, v1::Generation::Stub* stub, const PromptSource& prompts,
        Clock::time_point t0, std::string name, uint64_t first_index, int limit, double duration_s)
      : o_(o),
        stub_(stub),
        prompts_(prompts),
        t0_(t0),
        name_(std::move(name)),
        first_index_(first_index),
        limit_(limit),
        duration_s_(duration_s) {}

  std::vector<Result> Run() {
    phase_start_ = Clock::now();
    int streams = o_.concurrency;
    if (limit_ > 0) streams = std::min(streams, limit_);
    contexts_.assign(streams, nullptr);
    std::vector<std::thread> threads;
    for (int s = 0; s < streams; ++s) threads.emplace_back([this, s] { Worker(s); });
    std::thread progress([this] { Progress(); });
    for (std::thread& t : threads) t.join();
    {
      std::lock_guard<std::mutex> lock(progress_mu_);
      finished_ = true;
    }
    progress_cv_.notify_all();
    progress.join();
    std::sort(results_.begin(), results_.end(),
              [](const Result& a, const Result& b) { return a.index < b.index; });
    return std::move(results_);
  }

 private:
  double Now() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }
  double Elapsed() const {
    return std::chrono::duration<double>(Clock::now() - phase_start_).count();
  }

  void Worker(int slot) {
    for (;;) {
      if (StopRequested()) return;
      if (duration_s_ > 0 && Elapsed() >= duration_s_) return;
      const int i = next_.fetch_add(1);
      if (limit_ > 0 && i >= limit_) return;
      Result r = One(slot, i);
      done_.fetch_add(1);
      if (!r.ok && !r.interrupted) failed_.fetch_add(1);
      std::lock_guard<std::mutex> lock(mu_);
      results_.push_back(std::move(r));
    }
  }

  Result One(int slot, int i) {
    Result r;
    r.index = i;
    const uint64_t global_index = first_index_ + static_cast<uint64_t>(i);
    v1::GenerateRequest req;
    const std::vector<int32_t> ids = prompts_.For(global_index);
    req.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
    v1::SamplingParams* sp = req.mutable_sampling();
    sp->set_max_tokens(o_.max_tokens);
    sp->set_temperature(static_cast<float>(o_.temperature));
    sp->set_seed(o_.seed + global_index);
    sp->set_ignore_eos(true);

    std::unique_ptr<grpc::ClientContext> ctx_owner = NewClientContext(o_.timeout_s);
    grpc::ClientContext& ctx = *ctx_owner;
    {
      std::lock_guard<std::mutex> lock(mu_);
      contexts_[slot] = &ctx;
    }
    r.start_s = Now();
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub_->Generate(&ctx, req);
    v1::GenerateResponse msg;
    bool got_final = false;
    v1::FinalInfo final_info;
    while (reader->Read(&msg)) {
      const double t = Now();
      if (msg.token_ids_size() > 0) {
        r.chunks.push_back({t, msg.token_ids_size()});
        tokens_.fetch_add(msg.token_ids_size());
      }
      r.prompt_tokens = msg.prompt_tokens();
      r.completion_tokens = msg.completion_tokens();
      if (msg.has_final()) {
        got_final = true;
        final_info = msg.final();
      }
    }
    grpc::Status st = reader->Finish();
    r.end_s = Now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      contexts_[slot] = nullptr;
    }
    if (!st.ok()) {
      r.interrupted = StopRequested() && st.error_code() == grpc::StatusCode::CANCELLED;
      r.error = absl::StrCat(absl::StatusCodeToString(proto::FromGrpcStatus(st).code()), ": ",
                             st.error_message());
      return r;
    }
    if (!got_final) {
      r.error = "stream ended without a final message";
      return r;
    }
    r.finish_reason = ReasonName(final_info.finish_reason());
    r.server_queue_s = final_info.timing().queue_seconds();
    r.server_ttft_s = final_info.timing().ttft_seconds();
    r.server_total_s = final_info.timing().total_seconds();
    if (final_info.finish_reason() == v1::FINISH_REASON_ERROR ||
        final_info.finish_reason() == v1::FINISH_REASON_ABORT) {
      r.error =
          absl::StrCat("finished with ", r.finish_reason,
                       final_info.error_message().empty() ? "" : ": ", final_info.error_message());
      return r;
    }
    r.ok = true;
    return r;
  }

  // A bar on a terminal (redrawn every 100 ms), else a line every progress_interval_s.
  // Also cancels in-flight requests once SIGINT/SIGTERM arrived.
  void Progress() {
    const bool tty = o_.progress && isatty(fileno(stderr));
    auto last_line = Clock::now();
    bool cancelled = false;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(progress_mu_);
        if (progress_cv_.wait_for(lock, std::chrono::milliseconds(100),
                                  [this] { return finished_; })) {
          break;
        }
      }
      if (StopRequested() && !cancelled) {
        std::lock_guard<std::mutex> lock(mu_);
        for (grpc::ClientContext* c : contexts_) {
          if (c) c->TryCancel();
        }
        cancelled = true;
      }
      if (tty) {
        std::cerr << "\r" << Line(true) << "\033[K" << std::flush;
      } else if (o_.progress && std::chrono::duration<double>(Clock::now() - last_line).count() >=
                                    o_.progress_interval_s) {
        std::cerr << "hipserve bench: " << Line(false) << "\n" << std::flush;
        last_line = Clock::now();
      }
    }
    if (tty) std::cerr << "\r" << Line(true) << "\033[K\n" << std::flush;
  }

  std::string Line(bool bar) const {
    const double elapsed = Elapsed();
    const int done = done_.load();
    double frac = 0;
    std::string count;
    if (limit_ > 0) {
      frac = static_cast<double>(done) / limit_;
      count = absl::StrCat(done, "/", limit_, " requests");
    } else {
      count = absl::StrCat(done, " requests");
    }
    if (duration_s_ > 0) {
      frac = std::max(frac, std::min(1.0, elapsed / duration_s_));
      count = absl::StrCat(count, ", ", FormatSeconds(elapsed), "/", FormatSeconds(duration_s_));
    } else {
      count = absl::StrCat(count, ", ", FormatSeconds(elapsed));
    }
    char rate[64];
    std::snprintf(rate, sizeof(rate), "%.1f tok/s", elapsed > 0 ? tokens_.load() / elapsed : 0.0);
    std::string line = absl::StrCat(name_, " ");
    if (bar) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(std::lround(std::min(1.0, frac) * kWidth));
      absl::StrAppend(&line, "[", std::string(filled, '#'), std::string(kWidth - filled, '.'),
                      "] ");
    }
    absl::StrAppend(&line, count, ", ", rate);
    if (failed_.load() > 0) absl::StrAppend(&line, ", ", failed_.load(), " failed");
    return line;
  }

  const BenchOptions& o_;
  v1::Generation::Stub* stub_;
  const PromptSource& prompts_;
  const Clock::time_point t0_;
  const std::string name_;
  const uint64_t first_index_;
  const int limit_;
  const double duration_s_;
  Clock::time_point phase_start_;
  std::atomic<int> next_{0}, done_{0}, failed_{0};
  std::atomic<int64_t> tokens_{0};
  std::mutex progress_mu_;
  std::condition_variable progress_cv_;
  bool finished_ = false;  // guarded by progress_mu_
  std::mutex mu_;
  std::vector<grpc::ClientContext*> contexts_;
  std::vector<Result> results_;
};

json Dist(const bench::Distribution& d) {
  // NaN (no samples) is written as null by nlohmann::json.
  return json{{"count", d.count}, {"mean", d.mean}, {"min", d.min}, {"max", d.max},
              {"p50", d.p50},     {"p90", d.p90},   {"p99", d.p99}};
}

json ModelJson(const v1::ModelInfo& m) {
  json hip = nullptr;
  if (!m.hip_config_json().empty()) {
    hip = json::parse(m.hip_config_json(), nullptr, /*allow_exceptions=*/false);
    if (hip.is_discarded()) hip = m.hip_config_json();
  }
  return json{
      {"name", m.name()},
      {"vocab_size", m.vocab_size()},
      {"max_context", m.max_context()},
      {"num_layers", m.num_layers()},
      {"hidden_size", m.hidden_size()},
      {"num_heads", m.num_heads()},
      {"num_kv_heads", m.num_kv_heads()},
      {"head_dim", m.head_dim()},
      {"tensor_parallel", m.tensor_parallel()},
      {"dtype", m.dtype()},
      {"backend", m.backend()},
      {"attention", m.attention()},
      {"hip_config", hip},
      {"eos_token_ids", std::vector<int32_t>(m.eos_token_ids().begin(), m.eos_token_ids().end())}};
}

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Num(double v, int precision) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", precision, v);
  return buf;
}

void PrintRow(std::ostream& out, const std::string& name, const bench::Distribution& d,
              double scale, int precision) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%-18s %10s %10s %10s %10s %10s %10s %7zu\n", name.c_str(),
                Num(d.mean * scale, precision).c_str(), Num(d.p50 * scale, precision).c_str(),
                Num(d.p90 * scale, precision).c_str(), Num(d.p99 * scale, precision).c_str(),
                Num(d.min * scale, precision).c_str(), Num(d.max * scale, precision).c_str(),
                d.count);
  out << buf;
}

}  // namespace

absl::Status ValidateBenchOptions(const BenchOptions& o) {
  auto bad = [](const std::string& flag, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", why));
  };
  if (o.server.empty()) return bad("server", "must be host:port, got ''");
  if (o.concurrency < 1)
    return bad("concurrency", absl::StrCat("must be >= 1, got ", o.concurrency));
  if (o.prompt_tokens < 0) {
    return bad("prompt_tokens", absl::StrCat("must be >= 0 (0 = default), got ", o.prompt_tokens));
  }
  if (o.max_tokens < 1) return bad("max_tokens", absl::StrCat("must be >= 1, got ", o.max_tokens));
  if (o.num_requests < 0) {
    return bad("num_requests", absl::StrCat("must be >= 0 (0 = default), got ", o.num_requests));
  }
  if (!(o.duration_s >= 0) || std::isinf(o.duration_s)) {
    return bad("duration_s", absl::StrCat("must be a finite number >= 0, got ", o.duration_s));
  }
  if (o.warmup_requests < -1) {
    return bad("warmup_requests",
               absl::StrCat("must be >= 0 (or -1 = --concurrency), got ", o.warmup_requests));
  }
  if (!(o.temperature >= 0 && o.temperature <= 100)) {
    return bad("temperature", absl::StrCat("must be in [0, 100], got ", o.temperature));
  }
  if (!(o.timeout_s > 0)) return bad("timeout_s", absl::StrCat("must be > 0, got ", o.timeout_s));
  if (!(o.wait_ready_s >= 0)) {
    return bad("wait_ready_s", absl::StrCat("must be >= 0, got ", o.wait_ready_s));
  }
  if (!(o.progress_interval_s > 0)) {
    return bad("progress_interval_s", absl::StrCat("must be > 0, got ", o.progress_interval_s));
  }
  if (!o.prompt_file.empty()) {
    std::ifstream f(o.prompt_file);
    if (!f) return bad("prompt_file", absl::StrCat("'", o.prompt_file, "' cannot be read"));
  }
  return absl::OkStatus();
}

absl::Status RunBench(const BenchOptions& o, std::ostream& out) {
  if (absl::Status s = ValidateBenchOptions(o); !s.ok()) return s;
  const int num_requests =
      o.num_requests > 0 ? o.num_requests : (o.duration_s > 0 ? 0 : kDefaultRequests);
  const int warmup = o.warmup_requests >= 0 ? o.warmup_requests : o.concurrency;

  if (o.wait_ready_s > 0) {
    if (absl::Status s = WaitForReady(o.server, o.wait_ready_s); !s.ok()) return s;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(o.server, ClientCredentials(), args);
  auto stub = v1::Generation::NewStub(channel);

  v1::ModelInfo info;
  {
    std::unique_ptr<grpc::ClientContext> ctx = NewClientContext(10);
    grpc::Status s = stub->GetModelInfo(ctx.get(), v1::GetModelInfoRequest(), &info);
    if (!s.ok()) {
      absl::Status a = proto::FromGrpcStatus(s);
      return absl::Status(a.code(), absl::StrCat("GetModelInfo on ", o.server, ": ", a.message()));
    }
  }
  if (info.vocab_size() <= 0) {
    return absl::FailedPreconditionError("the server reports no vocabulary size");
  }

  PromptSource prompts;
  prompts.vocab_size = info.vocab_size();
  prompts.seed = o.seed;
  prompts.exclude.assign(info.eos_token_ids().begin(), info.eos_token_ids().end());
  if (!o.prompt_file.empty()) {
    std::ifstream f(o.prompt_file);
    std::stringstream ss;
    ss << f.rdbuf();
    if (ss.str().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt_file '", o.prompt_file, "' is empty"));
    }
    std::unique_ptr<grpc::ClientContext> ctx = NewClientContext(60);
    v1::TokenizeRequest treq;
    treq.set_text(ss.str());
    v1::TokenizeResponse tresp;
    grpc::Status s = stub->Tokenize(ctx.get(), treq, &tresp);
    if (!s.ok()) {
      return absl::Status(proto::FromGrpcStatus(s).code(),
                          absl::StrCat("Tokenize --prompt_file: ", s.error_message()));
    }
    std::vector<int32_t> ids(tresp.token_ids().begin(), tresp.token_ids().end());
    if (ids.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt_file '", o.prompt_file, "' tokenizes to no tokens"));
    }
    prompts.synthetic = false;
    prompts.fixed = o.prompt_tokens > 0 ? bench::FitToLength(ids, o.prompt_tokens) : ids;
    prompts.length = static_cast<int>(prompts.fixed.size());
  } else {
    prompts.length = o.prompt_tokens > 0 ? o.prompt_tokens : kDefaultPromptTokens;
    if (static_cast<size_t>(prompts.vocab_size) <= prompts.exclude.size()) {
      return absl::FailedPreconditionError("the vocabulary holds only end-of-sequence ids");
    }
  }
  if (info.max_context() > 0 &&
      static_cast<int64_t>(prompts.length) + o.max_tokens > info.max_context()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", prompts.length, " tokens, --prompt_tokens/--prompt_file) + --max_tokens (",
        o.max_tokens, ") = ", static_cast<int64_t>(prompts.length) + o.max_tokens,
        " exceeds the model's maximum context of ", info.max_context(), " tokens"));
  }

  InstallStopSignals();
  const Clock::time_point t0 = Clock::now();
  std::cerr << "hipserve bench: " << info.name() << " at " << o.server << ": concurrency "
            << o.concurrency << ", prompt " << prompts.length << " tokens ("
            << (prompts.synthetic ? "synthetic" : o.prompt_file) << "), output " << o.max_tokens
            << " tokens, "
            << (num_requests > 0 ? absl::StrCat(num_requests, " requests") : std::string())
            << (num_requests > 0 && o.duration_s > 0 ? " or " : "")
            << (o.duration_s > 0 ? absl::StrCat(o.duration_s, " s") : std::string()) << ", warm-up "
            << warmup << "\n";

  int warmup_failed = 0;
  if (warmup > 0) {
    Phase phase(o, stub.get(), prompts, t0, "warm-up ", /*first_index=*/0, warmup, 0);
    for (const Result& r : phase.Run()) {
      if (!r.ok && !r.interrupted) {
        if (warmup_failed == 0)
          std::cerr << "hipserve bench: warm-up request failed: " << r.error << "\n";
        ++warmup_failed;
      }
    }
  }
  std::vector<Result> results;
  if (!StopRequested()) {
    Phase phase(o, stub.get(), prompts, t0, "measured", /*first_index=*/warmup, num_requests,
                o.duration_s);
    results = phase.Run();
  }
  const bool interrupted = StopRequested();

  // Summary over measured requests (interrupted ones are listed, not counted).
  std::vector<bench::RequestRecord> records;
  json requests = json::array();
  int short_outputs = 0;
  std::string first_error;
  for (const Result& r : results) {
    bench::RequestMetrics m = bench::ComputeRequestMetrics(r.start_s, r.end_s, r.chunks);
    if (!r.interrupted) {
      bench::RequestRecord rec;
      rec.ok = r.ok;
      rec.prompt_tokens = r.prompt_tokens;
      rec.start_s = r.start_s;
      rec.end_s = r.end_s;
      rec.m = m;
      records.push_back(std::move(rec));
      if (!r.ok && first_error.empty()) first_error = r.error;
    }
    if (r.ok && m.output_tokens != o.max_tokens) ++short_outputs;
    json j{{"index", r.index},
           {"ok", r.ok},
           {"prompt_tokens", r.prompt_tokens},
           {"output_tokens", m.output_tokens},
           {"start_s", r.start_s},
           {"end_s", r.end_s},
           {"latency_s", m.latency_s},
           {"ttft_s", m.output_tokens > 0 ? json(m.ttft_s) : json(nullptr)},
           {"itl_s", m.itl_s},
           {"stream_tok_s", m.stream_tok_s > 0 ? json(m.stream_tok_s) : json(nullptr)},
           {"e2e_tok_s", m.e2e_tok_s},
           {"messages", r.chunks.size()}};
    if (r.ok) {
      j["finish_reason"] = r.finish_reason;
      j["server_queue_s"] = r.server_queue_s;
      j["server_ttft_s"] = r.server_ttft_s;
      j["server_total_s"] = r.server_total_s;
    } else {
      j["error"] = r.error;
      if (r.interrupted) j["interrupted"] = true;
    }
    requests.push_back(std::move(j));
  }
  const bench::RunSummary sum = bench::SummarizeRun(records);

  // Table.
  char line[512];
  out << "\nhipserve bench: " << info.name() << " (" << info.backend() << ", " << info.attention()
      << " attention, tp " << info.tensor_parallel() << ") at " << o.server << "\n";
  std::snprintf(line, sizeof(line),
                "requests: %d ok, %d failed%s   concurrency %d   prompt %d tokens   output %d "
                "tokens   warm-up %d\n",
                sum.requests_ok, sum.requests_failed, interrupted ? " (interrupted)" : "",
                o.concurrency, prompts.length, o.max_tokens, warmup);
  out << line;
  std::snprintf(line, sizeof(line),
                "wall %.3f s   %.2f req/s   output %.1f tok/s aggregate   prompt+output %.1f "
                "tok/s\n\n",
                sum.wall_s, sum.requests_per_s, sum.output_tok_s, sum.total_tok_s);
  out << line;
  if (sum.all_decoding_s > 0) {
    std::snprintf(line, sizeof(line),
                  "all %d streams decoding for %.3f s: %.1f output tok/s aggregate\n\n",
                  sum.requests_ok, sum.all_decoding_s, sum.all_decoding_tok_s);
    out << line;
  }
  std::snprintf(line, sizeof(line), "%-18s %10s %10s %10s %10s %10s %10s %7s\n", "", "mean", "p50",
                "p90", "p99", "min", "max", "n");
  out << line;
  PrintRow(out, "TTFT (ms)", sum.ttft_s, 1e3, 3);
  PrintRow(out, "ITL (ms)", sum.itl_s, 1e3, 3);
  PrintRow(out, "latency (ms)", sum.latency_s, 1e3, 1);
  PrintRow(out, "stream tok/s", sum.stream_tok_s, 1, 1);
  out << std::flush;

  if (short_outputs > 0) {
    std::cerr << "hipserve bench: " << short_outputs << " request(s) returned fewer or more than "
              << o.max_tokens << " tokens\n";
  }

  if (!o.json_out.empty()) {
    json doc{{"tool", "hipserve bench"},
             {"version", HIPSERVE_VERSION},
             {"started_at", UtcNow()},
             {"interrupted", interrupted},
             {"config",
              {{"server", o.server},
               {"concurrency", o.concurrency},
               {"prompt_tokens", prompts.length},
               {"prompt_source", prompts.synthetic ? "synthetic" : "file"},
               {"prompt_file", o.prompt_file.empty() ? json(nullptr) : json(o.prompt_file)},
               {"max_tokens", o.max_tokens},
               {"num_requests", num_requests},
               {"duration_s", o.duration_s},
               {"warmup_requests", warmup},
               {"seed", o.seed},
               {"temperature", o.temperature},
               {"timeout_s", o.timeout_s},
               {"ignore_eos", true}}},
             {"model", ModelJson(info)},
             {"summary",
              {{"requests_ok", sum.requests_ok},
               {"requests_failed", sum.requests_failed},
               {"warmup_failed", warmup_failed},
               {"wall_s", sum.wall_s},
               {"output_tokens", sum.output_tokens},
               {"prompt_tokens", sum.prompt_tokens},
               {"output_tok_s", sum.output_tok_s},
               {"total_tok_s", sum.total_tok_s},
               {"requests_per_s", sum.requests_per_s},
               {"all_decoding_s", sum.all_decoding_s},
               {"all_decoding_tok_s", sum.all_decoding_tok_s},
               {"ttft_s", Dist(sum.ttft_s)},
               {"itl_s", Dist(sum.itl_s)},
               {"latency_s", Dist(sum.latency_s)},
               {"stream_tok_s", Dist(sum.stream_tok_s)}}},
             {"requests", requests}};
    std::ofstream f(o.json_out);
    f << doc.dump(1) << "\n";
    f.close();
    if (!f) return absl::InternalError(absl::StrCat("cannot write --json_out '", o.json_out, "'"));
    std::cerr << "hipserve bench: wrote " << o.json_out << "\n";
  }

  if (interrupted) return absl::CancelledError("interrupted");
  if (sum.requests_failed > 0) {
    return absl::UnavailableError(absl::StrCat(sum.requests_failed, " of ",
                                               sum.requests_failed + sum.requests_ok,
                                               " requests failed; first: ", first_error));
  }
  if (sum.requests_ok == 0) return absl::FailedPreconditionError("no request completed");
  return absl::OkStatus();
}

int BenchCommand(const std::vector<std::string>& args) {
  static const flags::CommandSpec kSpec{
      "hipserve bench",
      "Load generator for a running server: sends streaming Generate requests from\n"
      "--concurrency client streams (each starts its next request when one finishes) and\n"
      "measures time to first token (TTFT), inter-token latency (ITL), request latency,\n"
      "tokens/s per stream (after the first token) and in aggregate (output tokens over\n"
      "the wall time of the measured requests; warm-up excluded). Prints a table to\n"
      "stdout, progress to stderr; --json_out writes config, model, per-request records\n"
      "and summary (scripts/plot_bench.py draws a PNG from it). Requests set ignore_eos,\n"
      "so every request generates exactly --max_tokens tokens. Exit status: 0 ok, 1 the\n"
      "server failed or any measured request failed, 2 bad flags.",
      {"bench_", kClientFlagPrefix}};
  if (int rc = flags::ParseCommandFlagsOrExitCode(kSpec, args); rc >= 0) return rc;
  BenchOptions o;
  o.server = absl::GetFlag(FLAGS_bench_server);
  o.concurrency = absl::GetFlag(FLAGS_bench_concurrency);
  o.prompt_tokens = absl::GetFlag(FLAGS_bench_prompt_tokens);
  o.prompt_file = absl::GetFlag(FLAGS_bench_prompt_file);
  o.max_tokens = absl::GetFlag(FLAGS_bench_max_tokens);
  o.num_requests = absl::GetFlag(FLAGS_bench_num_requests);
  o.duration_s = absl::GetFlag(FLAGS_bench_duration_s);
  o.warmup_requests = absl::GetFlag(FLAGS_bench_warmup_requests);
  o.seed = absl::GetFlag(FLAGS_bench_seed);
  o.temperature = absl::GetFlag(FLAGS_bench_temperature);
  o.timeout_s = absl::GetFlag(FLAGS_bench_timeout_s);
  o.wait_ready_s = absl::GetFlag(FLAGS_bench_wait_ready_s);
  o.json_out = absl::GetFlag(FLAGS_bench_json_out);
  o.progress = absl::GetFlag(FLAGS_bench_progress);
  o.progress_interval_s = absl::GetFlag(FLAGS_bench_progress_interval_s);
  if (absl::Status s = ValidateBenchOptions(o); !s.ok()) {
    std::cerr << "hipserve bench: " << s.message() << "\n";
    return 2;
  }
  if (absl::Status s = ApplyClientTlsFlags(); !s.ok()) {
    std::cerr << "hipserve bench: " << s.message() << "\n";
    return 2;
  }
  absl::Status s = RunBench(o, std::cout);
  if (!s.ok()) {
    std::cerr << "hipserve bench: " << absl::StatusCodeToString(s.code()) << ": " << s.message()
              << "\n";
    return 1;
  }
  return 0;
}

}  // namespace hipserve::cli
