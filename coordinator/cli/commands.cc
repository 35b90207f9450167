#include "coordinator/cli/commands.h"

#include <signal.h>

namespace hipserve::cli {

namespace {
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
void OnSignal(int) { g_stop.store(true); }
void OnReload(int) { g_reload.store(true); }
}  // namespace

void InstallStopSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}
bool StopRequested() { return g_stop.load(); }
const std::atomic<bool>* StopFlag() { return &g_stop; }

void InstallReloadSignal() {
  struct sigaction sa = {};
  sa.sa_handler = OnReload;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGHUP, &sa, nullptr);
}
bool TakeReloadRequest() { return g_reload.exchange(false); }

}  // namespace hipserve::cli
