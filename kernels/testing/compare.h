// Test-only helpers shared by the kernel tests: seeded inputs, poisoning, and the CONVENTIONS
// pass rule (FlashAttention-3 / CUTLASS): against a high-precision reference, the tested output's
// max error <= 2x the max error of a naive same-precision implementation + atol, its mean error
// <= 2x the naive mean error + atol, and no NaN anywhere.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace hipserve::kernels::testing {

// Small deterministic generator (splitmix64), identical on every platform and stdlib.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t x = (state_ += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  }
  // Uniform in [lo, hi).
  float Uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(static_cast<double>(Next() >> 11) * 0x1.0p-53);
  }
  // Uniform in [lo, hi) with magnitude at least `min_abs` (inputs that are never zero).
  float UniformNonZero(float lo, float hi, float min_abs = 1e-3f) {
    float v;
    do {
      v = Uniform(lo, hi);
    } while (std::fabs(v) < min_abs);
    return v;
  }

 private:
  uint64_t state_;
};

inline std::vector<float> RandomVector(int64_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = rng.UniformNonZero(lo, hi);
  return v;
}

inline std::vector<float> Poisoned(int64_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

struct ErrorStats {
  double max_abs = 0;
  double mean_abs = 0;
  int64_t nan_count = 0;
  int64_t worst_index = -1;
};

template <typename T>
ErrorStats Errors(const std::vector<T>& actual, const std::vector<double>& ref) {
  ErrorStats s;
  double sum = 0;
  for (size_t i = 0; i < actual.size() && i < ref.size(); ++i) {
    const double a = static_cast<double>(actual[i]);
    if (std::isnan(a)) {
      ++s.nan_count;
      continue;
    }
    const double e = std::fabs(a - ref[i]);
    sum += e;
    if (e > s.max_abs || s.worst_index < 0) {
      s.max_abs = e;
      s.worst_index = static_cast<int64_t>(i);
    }
  }
  s.mean_abs = actual.empty() ? 0 : sum / static_cast<double>(actual.size());
  return s;
}

// The pass rule. `naive` is the same computation done naively in the tested precision.
template <typename T, typename U>
::testing::AssertionResult MatchesReference(const std::vector<T>& actual,
                                            const std::vector<U>& naive,
                                            const std::vector<double>& ref, double atol) {
  if (actual.size() != ref.size() || naive.size() != ref.size()) {
    return ::testing::AssertionFailure() << "size mismatch: actual " << actual.size() << ", naive "
                                         << naive.size() << ", ref " << ref.size();
  }
  const ErrorStats a = Errors(actual, ref);
  const ErrorStats n = Errors(naive, ref);
  if (a.nan_count > 0) return ::testing::AssertionFailure() << a.nan_count << " NaN outputs";
  if (n.nan_count > 0) return ::testing::AssertionFailure() << "naive reference has NaN";
  const double max_bound = 2 * n.max_abs + atol;
  const double mean_bound = 2 * n.mean_abs + atol;
  if (a.max_abs > max_bound || a.mean_abs > mean_bound) {
    return ::testing::AssertionFailure()
           << "max error " << a.max_abs << " at [" << a.worst_index << "] (actual "
           << static_cast<double>(actual[a.worst_index]) << ", ref " << ref[a.worst_index]
           << ") bound " << max_bound << "; mean error " << a.mean_abs << " bound " << mean_bound
           << "; naive max " << n.max_abs << " mean " << n.mean_abs;
  }
  return ::testing::AssertionSuccess();
}

template <typename T>
std::vector<double> ToDouble(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace hipserve::kernels::testing
