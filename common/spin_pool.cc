#include "common/spin_pool.h"

#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HIPSERVE_CPU_RELAX() _mm_pause()
#else
#define HIPSERVE_CPU_RELAX() std::this_thread::yield()
#endif

namespace hipserve::common {
namespace {

// Spins before a worker blocks: ~0.5 ms of pause instructions, longer than the gap between
// two parallel regions of a decode step (norms, RoPE, residual adds), far shorter than a human
// notices as idle CPU.
constexpr int kSpinIterations = 1 << 14;

thread_local bool t_in_pool_task = false;
constexpr uint64_t kClosed = 0x7fffffffu;  // index of a finished job (> any n)

int ThreadsFromEnv() {
  if (const char* e = std::getenv("HIPSERVE_CPU_THREADS")) {
    const int v = std::atoi(e);
    if (v > 0) return v;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

}  // namespace

SpinPool& SpinPool::Shared() {
  static SpinPool* pool = new SpinPool(ThreadsFromEnv());
  return *pool;
}

SpinPool::SpinPool(int threads) {
  // Workers start from generation 0 however late their thread begins: a job (or the stop)
  // published before a worker first looks is then still seen as new.
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

SpinPool::~SpinPool() {
  {
    std::lock_guard<std::mutex> l(sleep_mu_);
    stop_.store(true);
    state_.fetch_add(uint64_t{1} << 32);
  }
  sleep_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void SpinPool::Drain(uint32_t gen) {
  const Thunk thunk = thunk_.load(std::memory_order_acquire);
  const void* ctx = ctx_.load(std::memory_order_acquire);
  const int n = n_.load(std::memory_order_acquire);
  uint64_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(s >> 32) != gen) return;
    const int i = static_cast<int>(s & 0xffffffffu);
    if (i >= n) return;
    if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
    thunk(ctx, i);
    done_.fetch_add(1, std::memory_order_release);
    s = state_.load(std::memory_order_acquire);
  }
}

void SpinPool::WorkerLoop() {
  t_in_pool_task = true;
  uint32_t seen = 0;
  for (;;) {
    int spins = 0;
    uint32_t gen;
    while ((gen = static_cast<uint32_t>(state_.load(std::memory_order_acquire) >> 32)) == seen) {
      if (++spins < kSpinIterations) {
        HIPSERVE_CPU_RELAX();
        continue;
      }
      std::unique_lock<std::mutex> l(sleep_mu_);
      sleepers_.fetch_add(1);
      sleep_cv_.wait(l, [&] { return static_cast<uint32_t>(state_.load() >> 32) != seen; });
      sleepers_.fetch_sub(1);
      spins = 0;
    }
    if (stop_.load()) return;
    seen = gen;
    Drain(gen);
  }
}

void SpinPool::RunImpl(int n, Thunk thunk, const void* ctx) {
  if (n <= 0) return;
  std::unique_lock<std::mutex> lock(run_mu_, std::try_to_lock);
  if (n == 1 || workers_.empty() || t_in_pool_task || !lock.owns_lock()) {
    for (int i = 0; i < n; ++i) thunk(ctx, i);
    return;
  }
  // Release stores: a worker that reads any of these also sees the previous job's closing
  // state (index kClosed), so it cannot pair this job's n with the previous job's generation.
  thunk_.store(thunk, std::memory_order_release);
  ctx_.store(ctx, std::memory_order_release);
  n_.store(n, std::memory_order_release);
  done_.store(0, std::memory_order_release);
  // New generation, index 0; the release publishes the job fields above.
  const uint64_t old = state_.load(std::memory_order_relaxed);
  const uint32_t gen = static_cast<uint32_t>(old >> 32) + 1;
  state_.store(uint64_t{gen} << 32, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> l(sleep_mu_); }
    sleep_cv_.notify_all();
  }
  t_in_pool_task = true;
  Drain(gen);
  t_in_pool_task = false;
  while (done_.load(std::memory_order_acquire) < n) HIPSERVE_CPU_RELAX();
  // Close the job: no index of this generation is claimable any more, whatever n a late
  // worker read.
  state_.store((uint64_t{gen} << 32) | kClosed, std::memory_order_seq_cst);
}

}  // namespace hipserve::common
