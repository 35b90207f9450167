// ParallelFor: runs fn(i) for every i in [0, n) on up to `threads` threads (the calling thread
// included) and waits for all of them. Work is handed out one index at a time from a shared
// counter, so uneven items balance. For CPU compute inside one call (e.g. the HiP reference
// attention over KV heads and query blocks); it owns no threads between calls.
//
// fn must be safe to call concurrently for distinct i. The result is the error of the lowest
// failing index (indices after a failure may still run), or OK. threads <= 1 or n <= 1 runs
// inline on the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace hipserve::common {

inline absl::Status ParallelFor(int n, int threads, const std::function<absl::Status(int)>& fn) {
  if (n <= 0) return absl::OkStatus();
  std::vector<absl::Status> status(n);
  std::atomic<int> next{0};
  auto worker = [&] {
    for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) status[i] = fn(i);
  };
  const int extra = std::max(0, std::min(threads, n) - 1);
  std::vector<std::thread> pool;
  pool.reserve(extra);
  for (int t = 0; t < extra; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Threads to use when a caller asks for `requested` (0 = the machine's hardware threads).
inline int ResolveThreads(int requested) {
  if (requested > 0) return requested;
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace hipserve::common
