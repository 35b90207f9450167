// ParallelFor: runs fn(i) for every i in [0, n) and waits for all of them. threads <= 1 (or
// n <= 1) runs inline on the caller; otherwise the calls fan out over the process-wide CPU pool
// (common::SpinPool::Shared(): HIPSERVE_CPU_THREADS or the hardware threads, the caller
// included), whose workers persist between calls, so a region per layer and step costs no
// thread start-up. Items are claimed one at a time, so uneven items balance.
//
// fn must be safe to call concurrently for distinct i. The result is the error of the lowest
// failing index (indices after a failure still run), or OK.
#pragma once

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/spin_pool.h"

namespace hipserve::common {

inline absl::Status ParallelFor(int n, int threads, const std::function<absl::Status(int)>& fn) {
  if (n <= 0) return absl::OkStatus();
  std::vector<absl::Status> status(n);
  if (threads <= 1 || n <= 1) {
    for (int i = 0; i < n; ++i) status[i] = fn(i);
  } else {
    SpinPool::Shared().Run(n, [&](int i) { status[i] = fn(i); });
  }
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
