// End-to-end: `hipserve bench` as a real process against `hipserve serve --model=builtin:tiny`.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "coordinator/cli/client.h"
#include "tests/integration/server_process.h"

namespace hipserve {
namespace {

using nlohmann::json;

using testing::ReadAll;
using BenchRun = testing::CliRun;

class BenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hipserve_bench_test_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    if (system(cmd.c_str()) != 0) {
    }
  }

  // Runs `hipserve bench ARGS` with stdout/stderr captured (not a terminal).
  BenchRun Bench(std::vector<std::string> args) {
    args.insert(args.begin(), "bench");
    return testing::RunHipserve(args);
  }

  std::string dir_;
};

TEST_F(BenchTest, HelpExplainsEveryFlag) {
  BenchRun r = Bench({"--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* flag :
       {"--server", "--concurrency", "--prompt_tokens", "--prompt_file", "--max_tokens",
        "--num_requests", "--duration_s", "--warmup_requests", "--seed", "--json_out",
        "--wait_ready_s", "--temperature", "--timeout_s", "--progress"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag << " missing from:\n" << r.out;
  }
  EXPECT_NE(r.out.find("ignore_eos"), std::string::npos);
  // `hipserve --help` lists the subcommand.
  std::string cmd = std::string("'") + HIPSERVE_BINARY + "' --help >'" + dir_ + "/top'";
  ASSERT_EQ(system(cmd.c_str()), 0);
  EXPECT_NE(ReadAll(dir_ + "/top").find("bench"), std::string::npos);
}

TEST_F(BenchTest, BadFlagsAreRejectedNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string must_name;
  };
  const std::vector<Case> cases = {
      {{"--concurrency=0"}, "--concurrency"},
      {{"--concurrency=abc"}, "--concurrency"},
      {{"--max_tokens=0"}, "--max_tokens"},
      {{"--num_requests=-2"}, "--num_requests"},
      {{"--duration_s=-1"}, "--duration_s"},
      {{"--prompt_tokens=-5"}, "--prompt_tokens"},
      {{"--warmup_requests=-3"}, "--warmup_requests"},
      {{"--temperature=101"}, "--temperature"},
      {{"--timeout_s=0"}, "--timeout_s"},
      {{"--seed=-1"}, "--seed"},
      {{"--prompt_file=/nonexistent/prompt.txt"}, "--prompt_file"},
      {{"--no_such_flag=1"}, "--no_such_flag"},
  };
  for (const Case& c : cases) {
    BenchRun r = Bench(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << ": " << r.err;
    EXPECT_NE(r.err.find(c.must_name), std::string::npos)
        << c.args[0] << ": '" << r.err << "' should name " << c.must_name;
  }
}

TEST_F(BenchTest, UnreachableServerFailsClearly) {
  BenchRun r = Bench({"--server=127.0.0.1:1", "--wait_ready_s=0.5", "--num_requests=1"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("not ready"), std::string::npos) << r.err;
}

class BenchServerTest : public BenchTest {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::ServerProcess({"--model=builtin:tiny", "--max_batch=8"});
    ASSERT_TRUE(server_->WaitForPort(60)) << server_->log();
    ASSERT_TRUE(cli::WaitForReady(server_->address(), 60).ok()) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static testing::ServerProcess* server_;
};
testing::ServerProcess* BenchServerTest::server_ = nullptr;

void ExpectOrdered(const json& d, const std::string& name) {
  ASSERT_TRUE(d["p50"].is_number()) << name << ": " << d.dump();
  EXPECT_LE(d["min"].get<double>(), d["p50"].get<double>()) << name;
  EXPECT_LE(d["p50"].get<double>(), d["p90"].get<double>()) << name;
  EXPECT_LE(d["p90"].get<double>(), d["p99"].get<double>()) << name;
  EXPECT_LE(d["p99"].get<double>(), d["max"].get<double>()) << name;
}

TEST_F(BenchServerTest, SyntheticPromptsJsonAndTable) {
  const std::string json_path = dir_ + "/bench.json";
  BenchRun r = Bench({"--server=" + server_->address(), "--num_requests=6", "--concurrency=3",
                      "--prompt_tokens=32", "--max_tokens=8", "--warmup_requests=2", "--seed=7",
                      "--wait_ready_s=30", "--json_out=" + json_path});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << r.out << "\nserver log:\n" << server_->log();
  // The table.
  for (const char* s : {"TTFT (ms)", "ITL (ms)", "stream tok/s", "p50", "p90", "p99",
                        "6 ok, 0 failed", "tok/s aggregate"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " missing from:\n" << r.out;
  }
  // stderr is not a terminal: no bar redraws.
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;

  json doc = json::parse(ReadAll(json_path), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(doc.is_discarded()) << ReadAll(json_path);
  EXPECT_EQ(doc["config"]["concurrency"], 3);
  EXPECT_EQ(doc["config"]["prompt_tokens"], 32);
  EXPECT_EQ(doc["config"]["max_tokens"], 8);
  EXPECT_EQ(doc["config"]["num_requests"], 6);
  EXPECT_EQ(doc["config"]["warmup_requests"], 2);
  EXPECT_EQ(doc["model"]["vocab_size"], 259);
  EXPECT_EQ(doc["model"]["backend"], "cpu");
  EXPECT_TRUE(doc["model"]["name"].is_string());
  EXPECT_TRUE(doc["model"]["attention"].is_string());

  const json& reqs = doc["requests"];
  ASSERT_EQ(reqs.size(), 6u);  // warm-up excluded
  for (const json& q : reqs) {
    EXPECT_TRUE(q["ok"].get<bool>()) << q.dump();
    EXPECT_EQ(q["output_tokens"], 8) << q.dump();
    EXPECT_EQ(q["prompt_tokens"], 32) << q.dump();
    EXPECT_EQ(q["finish_reason"], "length") << q.dump();
    EXPECT_GT(q["ttft_s"].get<double>(), 0) << q.dump();
    EXPECT_GE(q["latency_s"].get<double>(), q["ttft_s"].get<double>()) << q.dump();
    EXPECT_LE(q["itl_s"].size(), 7u) << q.dump();
    EXPECT_GE(q["itl_s"].size(), 1u) << q.dump();
    for (const json& x : q["itl_s"]) EXPECT_GE(x.get<double>(), 0);
    EXPECT_GT(q["e2e_tok_s"].get<double>(), 0) << q.dump();
  }
  const json& s = doc["summary"];
  EXPECT_EQ(s["requests_ok"], 6);
  EXPECT_EQ(s["requests_failed"], 0);
  EXPECT_EQ(s["output_tokens"], 48);
  EXPECT_EQ(s["prompt_tokens"], 6 * 32);
  EXPECT_GT(s["wall_s"].get<double>(), 0);
  EXPECT_GT(s["output_tok_s"].get<double>(), 0);
  EXPECT_NEAR(s["output_tok_s"].get<double>(), 48 / s["wall_s"].get<double>(), 1e-6);
  EXPECT_EQ(s["ttft_s"]["count"], 6);
  EXPECT_GT(s["ttft_s"]["min"].get<double>(), 0);
  ExpectOrdered(s["ttft_s"], "ttft");
  ExpectOrdered(s["itl_s"], "itl");
  ExpectOrdered(s["latency_s"], "latency");
  ExpectOrdered(s["stream_tok_s"], "stream_tok_s");
}

TEST_F(BenchServerTest, PromptFileAndDurationMode) {
  const std::string prompt = dir_ + "/prompt.txt";
  {
    std::ofstream f(prompt);
    f << "Once upon a time";  // byte tokenizer: 16 tokens
  }
  const std::string json_path = dir_ + "/file.json";
  BenchRun r = Bench({"--server=" + server_->address(), "--prompt_file=" + prompt,
                      "--prompt_tokens=40", "--max_tokens=4", "--concurrency=2", "--duration_s=1",
                      "--warmup_requests=0", "--json_out=" + json_path});
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << r.out;
  json doc = json::parse(ReadAll(json_path), nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(doc.is_discarded());
  EXPECT_EQ(doc["config"]["prompt_source"], "file");
  ASSERT_GE(doc["requests"].size(), 2u);
  for (const json& q : doc["requests"]) {
    EXPECT_EQ(q["prompt_tokens"], 40) << q.dump();
    EXPECT_EQ(q["output_tokens"], 4) << q.dump();
  }
  EXPECT_GE(doc["summary"]["wall_s"].get<double>(), 0.9);
}

TEST_F(BenchServerTest, PromptPlusOutputOverTheContextIsRejectedBeforeSending) {
  BenchRun r = Bench({"--server=" + server_->address(), "--prompt_tokens=4000", "--max_tokens=200",
                      "--num_requests=1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("maximum context"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--max_tokens"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hipserve
