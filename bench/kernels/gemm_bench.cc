// bench_gemm: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "bench/bench_flags.h"
#include "bench/kernels/bench_check.h"
#include "bench/kernels/bench_timing.h"
#include "bench/kernels/fill_random.h"
#include "common/flags/flags.h"
#include "kernels/gemm/gemm.h"

ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(hipserve::flags::IntList, rows, (hipserve::flags::IntList{{1, 2, 4, 8}}),
          "Activation rows m to time (decode batch sizes), each in 1..8.");
ABSL_FLAG(int, reps, 50, "Timed calls per configuration and round, >= 5.");
ABSL_FLAG(int, rounds, 5, "Rounds (the median round is reported), >= 1.");
ABSL_FLAG(std::string, commit, "unknown", "Commit recorded in the JSON.");

namespace hipserve::bench {
namespace {

struct Shape {
  const char* name;
  int n, k;
  bool fp32_out;
};
// Llama-3.1-8B's linear layers (TP 1) and the fused ones the CUDA backend runs.
constexpr Shape kShapes[] = {
    {"q", 4096, 4096, false},           {"k_or_v", 1024, 4096, false},
    {"qkv", 6144, 4096, false},         {"o", 4096, 4096, false},
    {"gate_or_up", 14336, 4096, false}, {"gate_up", 28672, 4096, false},
    {"down", 4096, 14336, false},       {"lm_head", 128256, 4096, true},
};

// Median over rounds of the mean time per call (us), weights rotated over `copies` buffers so
// that L2 (50 MB) never holds the next call's weights.
double TimeUs(kernels::GemmGpuParams p, const std::vector<void*>& weights, int reps, int rounds,
              cudaStream_t s) {
  std::vector<double> us;
  for (int r = 0; r < rounds + 1; ++r) {  // round 0 warms up (plans, clocks)
    const double ms = TimeMs(s, [&] {
      for (int i = 0; i < reps; ++i) {
        p.b = weights[i % weights.size()];
        BENCH_OK(kernels::GemmGpu(p, s));
      }
    });
    if (r > 0) us.push_back(ms * 1e3 / reps);
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

int Main(const std::vector<int>& rows, int reps, int rounds, const std::string& json,
         const std::string& commit) {
  cudaStream_t s;
  BENCH_CUDA(cudaStreamCreate(&s));
  auto ctx = kernels::GemmGpuContext::Create();
  BENCH_OK(ctx.status());
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::string out = "{\n  \"bench\": \"gemm\",\n  \"gpu\": \"" + std::string(prop.name) +
                    "\",\n  \"commit\": \"" + commit + "\",\n" +
                    JsonMethod(reps, rounds, "median round of mean us per call") +
                    "  \"rows\": [\n";
  std::printf("%-10s %6s %6s %3s %11s %11s %9s %9s %7s\n", "shape", "n", "k", "m", "cublasLt_us",
              "skinny_us", "lt_GB/s", "sk_GB/s", "lt/sk");
  bool first = true;
  for (const Shape& sh : kShapes) {
    const int64_t wbytes = int64_t{sh.n} * sh.k * 2;
    const int copies = static_cast<int>(std::max<int64_t>(1, (int64_t{256} << 20) / wbytes + 1));
    std::vector<void*> weights(copies);
    for (int c = 0; c < copies; ++c) {
      BENCH_CUDA(cudaMalloc(&weights[c], wbytes));
      BENCH_CUDA(FillRandomBf16(weights[c], wbytes / 2, 100 + c, 0.05f, s));
    }
    void *a, *c;
    BENCH_CUDA(cudaMalloc(&a, int64_t{8} * sh.k * 2));
    BENCH_CUDA(cudaMalloc(&c, int64_t{8} * sh.n * 4));
    BENCH_CUDA(FillRandomBf16(a, int64_t{8} * sh.k, 7, 1.f, s));
    for (int m : rows) {
      kernels::GemmGpuParams p;
      p.context = ctx->get();
      p.a = a;
      p.c = c;
      p.m = m;
      p.n = sh.n;
      p.k = sh.k;
      p.c_type = sh.fp32_out ? kernels::GemmGpuOutType::kFloat32 : kernels::GemmGpuOutType::kBf16;
      p.algo = kernels::GemmGpuAlgo::kCublasLt;
      const double lt = TimeUs(p, weights, reps, rounds, s);
      p.algo = kernels::GemmGpuAlgo::kSkinny;
      const double sk = TimeUs(p, weights, reps, rounds, s);
      const double bytes = static_cast<double>(wbytes) + int64_t{m} * sh.k * 2 +
                           int64_t{m} * sh.n * (sh.fp32_out ? 4 : 2);
      std::printf("%-10s %6d %6d %3d %11.2f %11.2f %9.0f %9.0f %7.2f\n", sh.name, sh.n, sh.k, m, lt,
                  sk, bytes / (lt * 1e3), bytes / (sk * 1e3), lt / sk);
      char buf[512];
      std::snprintf(buf, sizeof(buf),
                    "%s    {\"shape\": \"%s\", \"n\": %d, \"k\": %d, \"m\": %d, \"cublaslt_us\": "
                    "%.3f, \"skinny_us\": %.3f, \"cublaslt_gbps\": %.1f, \"skinny_gbps\": %.1f}",
                    first ? "" : ",\n", sh.name, sh.n, sh.k, m, lt, sk, bytes / (lt * 1e3),
                    bytes / (sk * 1e3));
      out += buf;
      first = false;
    }
    for (void* w : weights) BENCH_CUDA(cudaFree(w));
    BENCH_CUDA(cudaFree(a));
    BENCH_CUDA(cudaFree(c));
  }
  out += "\n  ]\n}\n";
  if (!json.empty()) {
    FILE* f = std::fopen(json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "bench_gemm: cannot write %s\n", json.c_str());
      return 1;
    }
    std::fputs(out.c_str(), f);
    std::fclose(f);
  }
  return 0;
}

constexpr char kUsage[] = R"(bench_gemm: decode-sized GEMMs (m = 1..8 rows) on Llama-3.1-8B's
linear shapes, cuBLASLt against the skinny kernel (kernels/gemm/skinny_gemm.h), in one process.
Each configuration: --reps back-to-back calls on one stream timed with CUDA events (launch
overhead included, as the serving step launches them), weights rotated over enough copies
(>= 256 MiB) that L2 never holds the next call's; --rounds rounds after a warm-up round, the
median round's mean reported. GB/s counts the weights plus A and C once per call.

  bench_gemm [--json out.json] [--rows 1,2,4,8] [--reps 50] [--rounds 5] [--commit SHA]
)";

}  // namespace
}  // namespace hipserve::bench

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, hipserve::bench::kUsage, __FILE__);
  const std::vector<int> rows = absl::GetFlag(FLAGS_rows).values;
  const int reps = absl::GetFlag(FLAGS_reps), rounds = absl::GetFlag(FLAGS_rounds);
  using hipserve::flags::CheckFlag;
  hipserve::bench::ExitOnBadFlags(
      "bench_gemm", {hipserve::bench::CheckEach(
                         rows, [](int m) { return m >= 1 && m <= 8; }, "rows", "in 1..8"),
                     CheckFlag(reps >= 5, "reps", ">= 5", reps),
                     CheckFlag(rounds >= 1, "rounds", ">= 1", rounds)});
  return hipserve::bench::Main(rows, reps, rounds, absl::GetFlag(FLAGS_json),
                               absl::GetFlag(FLAGS_commit));
}
