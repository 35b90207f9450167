// SpinPool: a persistent thread pool for short, frequent parallel regions on the CPU backend's
// decode path (a GEMV or one layer's attention: tens to hundreds of microseconds each, ~250 per
// decode step). common::ParallelFor starts threads per call, which costs more than such a
// region; SpinPool keeps its workers and wakes them through a generation counter they spin on
// for a short while (then they block on a condition variable, so an idle process uses no CPU).
//
// Run(n, fn) calls fn(i) for every i in [0, n) on the pool's workers and the calling thread,
// and returns when all calls have finished. Items are claimed one at a time (uneven items
// balance). Calls from a pool task, or while another thread is inside Run, execute inline on
// the caller (serially), so nesting and concurrent users are safe, only not parallel.
//
// Threads: HIPSERVE_CPU_THREADS if set (> 0), else std::thread::hardware_concurrency(); the
// caller counts as one, so Shared() starts threads - 1 workers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace hipserve::common {

class SpinPool {
 public:
  // The process-wide pool (created on first use, never destroyed before exit).
  static SpinPool& Shared();

  explicit SpinPool(int threads);  // threads >= 1, the caller included
  ~SpinPool();
  SpinPool(const SpinPool&) = delete;
  SpinPool& operator=(const SpinPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // fn: any callable taking int. Runs fn(0..n-1); returns when every call has returned.
  template <typename F>
  void Run(int n, const F& fn) {
    RunImpl(
        n, [](const void* ctx, int i) { (*static_cast<const F*>(ctx))(i); }, &fn);
  }

 private:
  using Thunk = void (*)(const void*, int);
  void RunImpl(int n, Thunk thunk, const void* ctx);
  void WorkerLoop();
  // Claims and runs items of job `gen` until none are left (or a newer job started).
  void Drain(uint32_t gen);

  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one Run at a time uses the workers
  // state_: (generation << 32) | next item index. Claims are CAS on the whole word, so a
  // worker that is late for job g can never claim an item of job g + 1 with g's function.
  std::atomic<uint64_t> state_{0};
  std::atomic<Thunk> thunk_{nullptr};
  std::atomic<const void*> ctx_{nullptr};
  std::atomic<int> n_{0};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
};

}  // namespace hipserve::common
