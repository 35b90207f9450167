#include "tests/integration/server_process.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace hipserve::testing {

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

CliRun RunHipserve(const std::vector<std::string>& args) {
  char tmpl[] = "/tmp/hipserve_cli_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::string cmd = std::string("'") + HIPSERVE_BINARY + "'";
  for (const std::string& a : args) cmd += " '" + a + "'";
  cmd += " >'" + dir + "/out' 2>'" + dir + "/err' </dev/null";
  CliRun r;
  const int status = system(cmd.c_str());
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadAll(dir + "/out");
  r.err = ReadAll(dir + "/err");
  const std::string rm = "rm -rf '" + dir + "'";
  if (system(rm.c_str()) != 0) {
  }
  return r;
}

ServerProcess::ServerProcess(std::vector<std::string> extra_args) {
  char tmpl[] = "/tmp/hipserve_test_XXXXXX";
  dir_ = mkdtemp(tmpl);
  port_file_ = dir_ + "/port";
  log_file_ = dir_ + "/server.log";
  std::vector<std::string> args = {HIPSERVE_BINARY, "serve", "--host=127.0.0.1", "--port=0",
                                   "--port_file=" + port_file_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = fork();
  if (pid_ == 0) {
    FILE* log = freopen(log_file_.c_str(), "w", stderr);
    (void)log;
    dup2(fileno(stderr), fileno(stdout));
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
}

ServerProcess::~ServerProcess() {
  Stop();
  std::string cmd = "rm -rf '" + dir_ + "'";
  if (system(cmd.c_str()) != 0) {
  }
}

bool ServerProcess::WaitForPort(double timeout_s) {
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (std::chrono::steady_clock::now() < end) {
    std::ifstream f(port_file_);
    if (f >> port_ && port_ > 0) return true;
    if (!running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string ServerProcess::address() const { return "127.0.0.1:" + std::to_string(port_); }

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int ServerProcess::Stop() {
  if (pid_ <= 0) return 0;
  kill(pid_, SIGTERM);
  int status = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (waitpid(pid_, &status, WNOHANG) != pid_) {
    if (std::chrono::steady_clock::now() > end) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  return status;
}

std::string ServerProcess::log() const {
  std::ifstream f(log_file_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace hipserve::testing
