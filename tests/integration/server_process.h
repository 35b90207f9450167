// ServerProcess: starts `hipserve serve` as a real child process on an ephemeral port and
// stops it (SIGTERM, then SIGKILL) when destroyed. For integration tests.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace hipserve::testing {

// The whole text of a file ("" when it cannot be read).
std::string ReadAll(const std::string& path);

// `hipserve ARGS` run to completion with stdin from /dev/null and stdout / stderr captured
// (not a terminal). exit_code is -1 when the process did not exit normally.
struct CliRun {
  int exit_code = -1;
  std::string out, err;
};
CliRun RunHipserve(const std::vector<std::string>& args);

class ServerProcess {
 public:
  // `extra_args` are appended to `hipserve serve --port=0 --port_file=...`.
  explicit ServerProcess(std::vector<std::string> extra_args = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Waits for the port file; returns false on timeout or early exit (see log()).
  bool WaitForPort(double timeout_s);
  std::string address() const;
  pid_t pid() const { return pid_; }  // -1 once stopped
  bool running();
  // Sends SIGTERM and waits; returns the exit status as from waitpid.
  int Stop();
  std::string log() const;

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_, port_file_, log_file_;
};

}  // namespace hipserve::testing
