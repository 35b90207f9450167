// `hipserve generate`: one Generate call to a running server, streamed to stdout.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "common/flags/flags.h"
#include "common/status_macros.h"
#include "coordinator/cli/client.h"
#include "coordinator/cli/client_flags.h"
#include "coordinator/cli/commands.h"

ABSL_FLAG(std::string, generate_server, hipserve::cli::GenerateClientOptions().server,
          "Server address (host:port).");
ABSL_FLAG(std::string, generate_prompt, "", "Prompt text.");
ABSL_FLAG(bool, generate_chat, false,
          "Send the prompt as a user chat message (model's chat template).");
ABSL_FLAG(std::string, generate_system, "", "System message (with --chat).");
ABSL_FLAG(int, generate_max_tokens, 0, "Tokens to generate, >= 0; 0 = the server's default.");
ABSL_FLAG(double, generate_temperature, -1,
          "Sampling temperature in [0, 100], 0 = greedy; -1 = server default.");
ABSL_FLAG(double, generate_top_p, -1, "Nucleus sampling mass in (0, 1]; -1 = off.");
ABSL_FLAG(int, generate_top_k, -1, "Keep the k most likely tokens, >= 1; -1 = off.");
ABSL_FLAG(uint64_t, generate_seed, 0, "Sampling seed (reproducible output); 0 = random.");
ABSL_FLAG(bool, generate_seeded, false, "Send --seed even when it is 0.");
ABSL_FLAG(hipserve::flags::StringList, generate_stop, {},
          "Stop string; repeat the flag for several (each occurrence is one string, commas "
          "included).");
ABSL_FLAG(bool, generate_ignore_eos, false, "Keep generating past end-of-sequence.");
ABSL_FLAG(double, generate_timeout_s, hipserve::cli::GenerateClientOptions().timeout_s,
          "Deadline of the whole call, in seconds, > 0.");
ABSL_FLAG(bool, generate_progress, true,
          "When stderr is a terminal, show a long prompt's prefill progress (tokens done / "
          "total) as one line redrawn in place; --noprogress turns it off.");
ABSL_FLAG(double, generate_wait_ready_s, hipserve::cli::GenerateClientOptions().wait_ready_s,
          "Wait this long (seconds, >= 0) for the server to become ready.");

namespace hipserve::cli {

namespace {

absl::StatusOr<GenerateClientOptions> GenerateOptionsFromFlags() {
  using flags::CheckFlag;
  GenerateClientOptions o;
  o.server = absl::GetFlag(FLAGS_generate_server);
  o.prompt = absl::GetFlag(FLAGS_generate_prompt);
  o.chat = absl::GetFlag(FLAGS_generate_chat);
  o.system = absl::GetFlag(FLAGS_generate_system);
  o.stop = absl::GetFlag(FLAGS_generate_stop).values;
  o.ignore_eos = absl::GetFlag(FLAGS_generate_ignore_eos);
  o.timeout_s = absl::GetFlag(FLAGS_generate_timeout_s);
  o.wait_ready_s = absl::GetFlag(FLAGS_generate_wait_ready_s);
  o.prefill_progress = absl::GetFlag(FLAGS_generate_progress) && isatty(fileno(stderr));
  const int max_tokens = absl::GetFlag(FLAGS_generate_max_tokens);
  const double temperature = absl::GetFlag(FLAGS_generate_temperature);
  const double top_p = absl::GetFlag(FLAGS_generate_top_p);
  const int top_k = absl::GetFlag(FLAGS_generate_top_k);
  const uint64_t seed = absl::GetFlag(FLAGS_generate_seed);
  RETURN_IF_ERROR(CheckFlag(max_tokens >= 0, "max_tokens", ">= 0", max_tokens));
  RETURN_IF_ERROR(CheckFlag(temperature == -1 || (temperature >= 0 && temperature <= 100),
                            "temperature", "in [0, 100] or -1", temperature));
  RETURN_IF_ERROR(
      CheckFlag(top_p == -1 || (top_p > 0 && top_p <= 1), "top_p", "in (0, 1] or -1", top_p));
  RETURN_IF_ERROR(CheckFlag(top_k == -1 || top_k >= 1, "top_k", ">= 1 or -1", top_k));
  RETURN_IF_ERROR(CheckFlag(o.timeout_s > 0, "timeout_s", "> 0", o.timeout_s));
  RETURN_IF_ERROR(CheckFlag(o.wait_ready_s >= 0, "wait_ready_s", ">= 0", o.wait_ready_s));
  if (max_tokens != 0) o.max_tokens = max_tokens;
  if (temperature >= 0) o.temperature = static_cast<float>(temperature);
  if (top_p >= 0) o.top_p = static_cast<float>(top_p);
  if (top_k >= 0) o.top_k = top_k;
  if (seed != 0 || absl::GetFlag(FLAGS_generate_seeded)) o.seed = seed;
  return o;
}

}  // namespace

int GenerateCommand(const std::vector<std::string>& args) {
  static const flags::CommandSpec kSpec{
      "hipserve generate",
      "Sends one Generate request to a running server and streams the answer to stdout;\n"
      "a summary (finish reason, token counts, timing) goes to stderr.",
      {"generate_", kClientFlagPrefix}};
  if (int rc = flags::ParseCommandFlagsOrExitCode(kSpec, args); rc >= 0) return rc;
  absl::StatusOr<GenerateClientOptions> o = GenerateOptionsFromFlags();
  if (absl::Status tls = ApplyClientTlsFlags(); o.ok() && !tls.ok()) o = tls;
  if (!o.ok()) {
    std::cerr << "hipserve generate: " << o.status().message() << "\n";
    return 2;
  }
  absl::Status s = RunGenerate(*o, std::cout, std::cerr);
  if (!s.ok()) {
    std::cerr << "hipserve generate: " << absl::StatusCodeToString(s.code()) << ": " << s.message()
              << "\n";
    return 1;
  }
  return 0;
}

}  // namespace hipserve::cli
