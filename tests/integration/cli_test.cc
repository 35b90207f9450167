// The `hipserve` binary's flags (absl::flags, common/flags): each subcommand's --help lists its
// own flags and not the others', bad values and foreign flags are refused naming the flag, byte
// sizes parse. Runs the real binary; no server is started.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/server_process.h"

namespace hipserve {
namespace {

using testing::CliRun;

CliRun Hipserve(const std::vector<std::string>& args) { return testing::RunHipserve(args); }

class CliTest : public ::testing::Test {};

// The coordinator flags `serve` and `coordinator` share (coordinator/cli/coordinator_flags.cc).
std::vector<std::string> ServerFlags(std::vector<std::string> own) {
  std::vector<std::string> flags = {"model",
                                    "host",
                                    "port",
                                    "http_port",
                                    "http_host",
                                    "http_threads",
                                    "http_port_file",
                                    "metrics_port",
                                    "metrics_port_file",
                                    "drain_timeout_s",
                                    "auth_tokens_file",
                                    "auth_health_and_reflection",
                                    "tls_cert_file",
                                    "tls_key_file",
                                    "worker_tls_cert_file",
                                    "worker_tls_key_file",
                                    "worker_tls_ca_file",
                                    "max_concurrent_requests_per_client",
                                    "max_queued_tokens_per_client",
                                    "attention",
                                    "hip_config",
                                    "max_context",
                                    "seed",
                                    "gpu_kv_bytes",
                                    "host_kv_bytes",
                                    "default_max_tokens",
                                    "max_tokens_limit",
                                    "max_prompt_tokens",
                                    "max_batch",
                                    "chunk",
                                    "max_queue",
                                    "configure_timeout_s",
                                    "step_timeout_s",
                                    "recovery_timeout_s",
                                    "port_file"};
  flags.insert(flags.end(), own.begin(), own.end());
  return flags;
}

// Every flag of every subcommand, as documented in README.md / docs.
const std::map<std::string, std::vector<std::string>>& CommandFlags() {
  static const auto* m = new std::map<std::string, std::vector<std::string>>{
      {"serve",
       ServerFlags({"tp", "backend", "gpu_memory_bytes", "cpu_weights", "prompt", "chat",
                    "max_tokens", "temperature", "ready_timeout_s", "gpus", "tls_ca_file",
                    "kv_offload", "kv_dtype", "worker_restart_limit", "worker_restart_backoff_s"})},
      {"coordinator",
       ServerFlags({"control_host", "control_port", "world_size", "control_port_file"})},
      {"worker",
       {"coordinator",
        "rank",
        "listen",
        "advertise",
        "backend",
        "gpu_memory_bytes",
        "gpu_kv_bytes",
        "host_kv_bytes",
        "cpu_weights",
        "register_timeout_s",
        "comm_host",
        "collective_timeout_s",
        "rendezvous_timeout_s",
        "force_nccl",
        "world_size",
        "model",
        "device",
        "worker_tls_cert_file",
        "worker_tls_key_file",
        "worker_tls_ca_file",
        "kv_offload",
        "kv_dtype"}},
      {"generate",
       {"server", "prompt", "chat", "system", "max_tokens", "temperature", "top_p", "top_k", "seed",
        "seeded", "stop", "ignore_eos", "timeout_s", "wait_ready_s", "tls_ca_file", "tls_cert_file",
        "tls_key_file", "progress"}},
      {"inspect", {"server", "tls_ca_file", "tls_cert_file", "tls_key_file"}},
      {"bench",
       {"server", "concurrency", "prompt_tokens", "prompt_file", "max_tokens", "num_requests",
        "duration_s", "warmup_requests", "seed", "temperature", "timeout_s", "wait_ready_s",
        "json_out", "progress", "progress_interval_s", "tls_ca_file", "tls_cert_file",
        "tls_key_file"}},
  };
  return *m;
}

// The flags listed by a usage text: lines "  --name (type)...".
std::vector<std::string> ListedFlags(const std::string& usage) {
  std::vector<std::string> out;
  std::istringstream in(usage);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  --", 0) != 0) continue;
    const size_t end = line.find(' ', 4);
    if (end == std::string::npos) continue;  // "--help"
    out.push_back(line.substr(4, end - 4));
  }
  return out;
}

TEST_F(CliTest, HelpOfEachCommandListsItsFlagsAndNoOthers) {
  for (const auto& [cmd, expected] : CommandFlags()) {
    CliRun r = Hipserve({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find("usage: hipserve " + cmd + " [flags]"), std::string::npos) << r.out;
    std::vector<std::string> listed = ListedFlags(r.out);
    std::vector<std::string> want = expected;
    std::sort(listed.begin(), listed.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(listed, want) << "hipserve " << cmd << " --help:\n" << r.out;
    // Each flag is explained: the line after it is indented help text.
    for (const std::string& f : expected) {
      const size_t at = r.out.find("  --" + f + " (");
      ASSERT_NE(at, std::string::npos) << cmd << " --" << f;
      const size_t nl = r.out.find('\n', at);
      EXPECT_EQ(r.out.compare(nl + 1, 6, "      "), 0) << cmd << " --" << f << ":\n" << r.out;
      EXPECT_GT(r.out.find('\n', nl + 1) - nl, 12u) << cmd << " --" << f << " has no help";
    }
  }
}

TEST_F(CliTest, HelpShowsTypesAndDefaults) {
  CliRun r = Hipserve({"serve", "--help"});
  EXPECT_NE(r.out.find("--tp (int)  default: 1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--host_kv_bytes (bytes)  default: 4294967296\n"), std::string::npos);
  EXPECT_NE(r.out.find("--max_batch (int)  default: 32\n"), std::string::npos);
  r = Hipserve({"generate", "--help"});
  EXPECT_NE(r.out.find("--stop (string, repeatable)"), std::string::npos) << r.out;
  // The top-level usage names every command.
  r = Hipserve({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const auto& [cmd, flags] : CommandFlags()) {
    EXPECT_NE(r.out.find("  " + cmd + " "), std::string::npos) << cmd << " missing:\n" << r.out;
  }
}

TEST_F(CliTest, BadValuesAndForeignFlagsAreRefusedNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string must_contain;
  };
  const std::vector<Case> cases = {
      {{"serve", "--port=abc"}, "--port: 'abc' is not a valid int"},
      {{"serve", "--port=70000"}, "--port must be in [0, 65535], got 70000"},
      {{"serve", "--tp=0"}, "--tp must be > 0"},
      {{"serve", "--kv_offload=maybe"}, "--kv_offload must be 'auto', 'on' or 'off'"},
      {{"serve", "--kv_dtype=fp16"}, "--kv_dtype must be 'bf16' or 'fp8', got 'fp16'"},
      {{"worker", "--kv_dtype=e5m2"}, "--kv_dtype must be 'bf16' or 'fp8', got 'e5m2'"},
      {{"serve", "--max_batch=0"}, "--max_batch must be >= 1"},
      {{"serve", "--host_kv_bytes=lots"}, "--host_kv_bytes: 'lots' is not a valid bytes"},
      {{"serve", "--gpu_memory_bytes=-1G"}, "--gpu_memory_bytes:"},
      {{"serve", "--backend=tpu"}, "--backend must be 'cpu', 'cuda' or 'auto'"},
      {{"serve", "--chat=maybe"}, "--chat: 'maybe' is not a valid bool"},
      {{"serve", "--step_timeout_s=0"}, "--step_timeout_s must be > 0"},
      {{"serve", "--server=x:1"}, "unknown flag --server for 'hipserve serve'"},
      {{"serve", "--json_out=x"}, "unknown flag --json_out for 'hipserve serve'"},
      {{"coordinator", "--control_port=-1"}, "--control_port must be in [0, 65535]"},
      {{"coordinator", "--tp=2"}, "unknown flag --tp for 'hipserve coordinator'"},
      {{"worker", "--rank=-2"}, "--rank must be >= 0 (or -1)"},
      {{"worker", "--device=-3"}, "--device must be >= 0 (or -1)"},
      {{"serve", "--tp=2", "--gpus=0"}, "--gpus lists 1 devices for --tp=2 workers"},
      {{"serve", "--gpus=0,x"}, "--gpus:"},
      {{"worker", "--max_batch=2"}, "unknown flag --max_batch for 'hipserve worker'"},
      {{"generate", "--top_p=2"}, "--top_p must be in (0, 1] or -1"},
      {{"generate", "--seed=-1"}, "--seed: '-1' is not a valid uint64"},
      {{"generate", "--max_tokens"}, "--max_tokens needs a value"},
      {{"generate", "--tp=2"}, "unknown flag --tp for 'hipserve generate'"},
      {{"inspect", "--prompt=hi"}, "unknown flag --prompt for 'hipserve inspect'"},
      {{"bench", "--concurrency=abc"}, "--concurrency: 'abc' is not a valid int"},
      {{"bench", "--model=x"}, "unknown flag --model for 'hipserve bench'"},
      {{"bench", "stray"}, "unexpected argument 'stray'"},
  };
  for (const Case& c : cases) {
    CliRun r = Hipserve(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << " " << c.args[1] << ": " << r.err;
    EXPECT_NE(r.err.find(c.must_contain), std::string::npos)
        << c.args[0] << " " << c.args[1] << ": '" << r.err << "' should contain '" << c.must_contain
        << "'";
  }
}

TEST_F(CliTest, ByteSizesParse) {
  // The byte sizes parse; the command then stops at the (deliberately) bad --rank, so nothing
  // starts. A byte size that did not parse would be the error instead.
  for (const char* size : {"40GiB", "512M", "1.5K", "1000", "8gib", "2TB"}) {
    CliRun r =
        Hipserve({"worker", std::string("--gpu_kv_bytes=") + size,
                  std::string("--host_kv_bytes=") + size, "--gpu_memory_bytes", size, "--rank=-2"});
    EXPECT_EQ(r.exit_code, 2) << size;
    EXPECT_NE(r.err.find("--rank must be"), std::string::npos) << size << ": " << r.err;
  }
}

TEST_F(CliTest, UnknownCommand) {
  CliRun r = Hipserve({"serv"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'serv'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hipserve
