// Shared helpers of the benchmark programs (not library code). Fail-fast checks: a failed CUDA
// call or Status prints file:line and exits, since a benchmark has nothing sensible to continue
// with.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"

#define BENCH_CUDA(expr)                                                                          \
  do {                                                                                            \
    cudaError_t _e = (expr);                                                                      \
    if (_e != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(_e)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

#define BENCH_OK(expr)                                                                \
  do {                                                                                \
    absl::Status _s = (expr);                                                         \
    if (!_s.ok()) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, _s.ToString().c_str()); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

#include <algorithm>
#include <ctime>
#include <string>
#include <vector>

namespace hipserve::bench {

// Median of a sample (mean of the two middle values for an even count); v must not be empty.
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// "[a, b, c]" with 3 decimals, for the JSON the benches write.
inline std::string JsonNumbers(const std::vector<double>& v) {
  std::string out = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof(buf), "%s%.3f", i ? ", " : "", v[i]);
    out += buf;
  }
  return out + "]";
}

// Writes `text` to `path` and says so; false (with a message) when the file can't be written.
inline bool WriteTextFile(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  std::fputs(text.c_str(), f);
  std::fclose(f);
  std::printf("wrote %s\n", path.c_str());
  return true;
}

// The device's properties and the driver version, for the printed header and the JSON.
struct DeviceInfo {
  cudaDeviceProp prop{};
  int driver = 0;
};
inline DeviceInfo QueryDevice(int device) {
  DeviceInfo d;
  BENCH_CUDA(cudaGetDeviceProperties(&d.prop, device));
  BENCH_CUDA(cudaDriverGetVersion(&d.driver));
  return d;
}

inline cudaStream_t NonBlockingStream() {
  cudaStream_t s;
  BENCH_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

// The opening lines of a bench's JSON: "bench", "device", "sms", "l2_bytes" (if with_l2) and
// "driver", each on its own line.
inline std::string JsonDeviceHead(const std::string& bench, const cudaDeviceProp& prop, int driver,
                                  bool with_l2) {
  std::string j = "{\n  \"bench\": \"" + bench + "\",\n";
  j += "  \"device\": \"" + std::string(prop.name) + "\",\n";
  j += "  \"sms\": " + std::to_string(prop.multiProcessorCount) + ",\n";
  if (with_l2) j += "  \"l2_bytes\": " + std::to_string(prop.l2CacheSize) + ",\n";
  return j + "  \"driver\": " + std::to_string(driver) + ",\n";
}

// The "commit" and "date" (now, UTC, ISO 8601) lines of a bench's JSON.
inline std::string JsonCommitDate(const std::string& commit) {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return "  \"commit\": \"" + commit + "\",\n  \"date\": \"" + date + "\",\n";
}

}  // namespace hipserve::bench
