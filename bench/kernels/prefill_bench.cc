// bench_prefill: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "bench/bench_flags.h"
#include "bench/kernels/bench_check.h"
#include "bench/kernels/fill_random.h"
#include "common/flags/flags.h"
#include "kernels/attention_cuda/prefill_attention.h"

// Flags: see also kUsage at the end of the file. '-' and '_' are interchangeable in names.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(hipserve::flags::IntList, lens, (hipserve::flags::IntList{{8192, 32768, 131072}}),
          "Prompt lengths T to time, each > 0.");
ABSL_FLAG(int, reps, 10, "Timed calls per configuration (the median is reported), >= 1.");
ABSL_FLAG(int, heads, 32, "Query heads, a positive multiple of --kv_heads.");
ABSL_FLAG(int, kv_heads, 8, "KV heads, >= 1.");
ABSL_FLAG(int, head_dim, 128, "Head dimension: 64 or 128 (what the kernel supports).");
ABSL_FLAG(std::vector<std::string>, kv, (std::vector<std::string>{"bf16", "fp8"}),
          "K/V dtypes timed at each length, in order: bf16 and/or fp8 (e5m2).");
ABSL_FLAG(std::string, commit, "unknown", "Commit recorded in the JSON.");

namespace hipserve::bench {
namespace {

struct Args {
  std::string json;
  std::vector<int> lens;
  int reps = 0;
  int heads = 0, kv_heads = 0, head_dim = 0;
  std::vector<std::string> kv;
  std::string commit;
};

// The flags, range-checked (exits 2 naming the flag on a bad value).
Args ArgsFromFlags() {
  Args a;
  a.json = absl::GetFlag(FLAGS_json);
  a.lens = absl::GetFlag(FLAGS_lens).values;
  a.reps = absl::GetFlag(FLAGS_reps);
  a.heads = absl::GetFlag(FLAGS_heads);
  a.kv_heads = absl::GetFlag(FLAGS_kv_heads);
  a.head_dim = absl::GetFlag(FLAGS_head_dim);
  a.kv = absl::GetFlag(FLAGS_kv);
  a.commit = absl::GetFlag(FLAGS_commit);
  using flags::CheckFlag;
  ExitOnBadFlags(
      "bench_prefill",
      {CheckEach(
           a.lens, [](int t) { return t > 0; }, "lens", "> 0"),
       CheckFlag(a.reps >= 1, "reps", ">= 1", a.reps),
       CheckFlag(a.kv_heads >= 1, "kv_heads", ">= 1", a.kv_heads),
       CheckFlag(a.heads >= 1 && a.kv_heads >= 1 && a.heads % a.kv_heads == 0, "heads",
                 "a positive multiple of --kv_heads", a.heads),
       CheckFlag(a.head_dim == 64 || a.head_dim == 128, "head_dim", "64 or 128", a.head_dim),
       CheckEach(
           a.kv, [](const std::string& k) { return k == "bf16" || k == "fp8"; }, "kv",
           "bf16 or fp8")});
  return a;
}

struct Row {
  int T = 0;
  std::string kv;
  double ms = 0, min_ms = 0, max_ms = 0, tflops = 0;
  double over_bf16 = 0;  // this row's time / the bf16 row's of the same T (0: no bf16 row)
  int64_t nan_outputs = 0;
};

// Times one (T, K/V dtype) configuration: fresh random inputs, poisoned output, 2 warm-up calls,
// median of a.reps; the output is scanned for NaN afterwards.
Row TimeOne(const Args& a, int T, bool fp8, cudaStream_t stream, cudaEvent_t e0, cudaEvent_t e1) {
  const int64_t qn = int64_t{T} * a.heads * a.head_dim;
  const int64_t kvn = int64_t{T} * a.kv_heads * a.head_dim;
  const int64_t kv_bytes = kvn * (fp8 ? 1 : 2);
  void *q, *k, *v, *out;
  BENCH_CUDA(cudaMalloc(&q, qn * 2));
  BENCH_CUDA(cudaMalloc(&k, kv_bytes));
  BENCH_CUDA(cudaMalloc(&v, kv_bytes));
  BENCH_CUDA(cudaMalloc(&out, qn * 2));
  BENCH_CUDA(FillRandomBf16(q, qn, 11 + T, 2.f, stream));
  if (fp8) {
    BENCH_CUDA(FillRandomFp8E5m2(k, kvn, 12 + T, 2.f, stream));
    BENCH_CUDA(FillRandomFp8E5m2(v, kvn, 13 + T, 1.f, stream));
  } else {
    BENCH_CUDA(FillRandomBf16(k, kvn, 12 + T, 2.f, stream));
    BENCH_CUDA(FillRandomBf16(v, kvn, 13 + T, 1.f, stream));
  }
  BENCH_CUDA(cudaMemsetAsync(out, 0xff, qn * 2, stream));  // NaN poison
  kernels::DensePrefillAttentionGpuParams p;
  p.q = q, p.k = k, p.v = v, p.out = out;
  p.kv_dtype = fp8 ? kernels::KvDtype::kFp8E5m2 : kernels::KvDtype::kBf16;
  p.num_q = T, p.q_offset = 0;
  p.num_heads = a.heads, p.num_kv_heads = a.kv_heads, p.head_dim = a.head_dim;
  p.scale = 1.f / std::sqrt(static_cast<float>(a.head_dim));
  for (int w = 0; w < 2; ++w) BENCH_OK(kernels::DensePrefillAttentionGpu(p, stream));
  BENCH_CUDA(cudaStreamSynchronize(stream));
  std::vector<double> ms;
  for (int r = 0; r < a.reps; ++r) {
    BENCH_CUDA(cudaEventRecord(e0, stream));
    BENCH_OK(kernels::DensePrefillAttentionGpu(p, stream));
    BENCH_CUDA(cudaEventRecord(e1, stream));
    BENCH_CUDA(cudaEventSynchronize(e1));
    float t = 0;
    BENCH_CUDA(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  Row row;
  row.T = T;
  row.ms = ms[ms.size() / 2];
  row.min_ms = ms.front();
  row.max_ms = ms.back();
  const double flops = 2.0 * 2.0 * (static_cast<double>(T) * T / 2) * a.head_dim * a.heads;
  row.tflops = flops / (row.ms * 1e-3) / 1e12;
  std::vector<uint16_t> host(qn);
  BENCH_CUDA(cudaMemcpy(host.data(), out, qn * 2, cudaMemcpyDeviceToHost));
  for (const uint16_t x : host) row.nan_outputs += ((x & 0x7f80) == 0x7f80 && (x & 0x7f)) ? 1 : 0;
  BENCH_CUDA(cudaFree(q));
  BENCH_CUDA(cudaFree(k));
  BENCH_CUDA(cudaFree(v));
  BENCH_CUDA(cudaFree(out));
  return row;
}

int Main(const Args& a) {
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreate(&stream));
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  std::vector<Row> rows;
  std::printf("%8s %5s %10s %10s %10s %9s %9s\n", "T", "kv", "ms", "min_ms", "max_ms", "TFLOP/s",
              "/bf16");
  for (const int T : a.lens) {
    double bf16_ms = 0;
    for (const std::string& kv : a.kv) {
      Row row = TimeOne(a, T, kv == "fp8", stream, e0, e1);
      row.kv = kv;
      if (kv == "bf16") bf16_ms = row.ms;
      row.over_bf16 = bf16_ms > 0 ? row.ms / bf16_ms : 0;
      std::printf("%8d %5s %10.3f %10.3f %10.3f %9.1f %9.3f%s\n", T, kv.c_str(), row.ms, row.min_ms,
                  row.max_ms, row.tflops, row.over_bf16, row.nan_outputs ? "  NaN OUTPUTS!" : "");
      rows.push_back(row);
    }
  }
  if (!a.json.empty()) {
    FILE* f = std::fopen(a.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", a.json.c_str());
      return 1;
    }
    std::fprintf(
        f,
        "{\n  \"bench\": \"bench_prefill\",\n  \"device\": \"%s\",\n  \"commit\": \"%s\",\n"
        "  \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, \"reps\": %d,\n"
        "  \"rows\": [\n",
        prop.name, a.commit.c_str(), a.heads, a.kv_heads, a.head_dim, a.reps);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "    {\"T\": %d, \"kv_dtype\": \"%s\", \"ms\": %.4f, \"min_ms\": %.4f, "
                   "\"max_ms\": %.4f, \"tflops\": %.2f, \"time_over_bf16\": %.4f, "
                   "\"nan_outputs\": %lld}%s\n",
                   r.T, r.kv.c_str(), r.ms, r.min_ms, r.max_ms, r.tflops, r.over_bf16,
                   static_cast<long long>(r.nan_outputs), i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("wrote %s\n", a.json.c_str());
  }
  for (const Row& r : rows) {
    if (r.nan_outputs) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_prefill: dense causal prefill attention for the "8B layer" shape (32 query heads, 8 KV
heads, head dim 128, bf16, batch 1) at several prompt lengths T (q_offset 0). Method
(bench/BENCHMARKS.md): CUDA events on one stream, 2 warm-up calls, median of --reps timed
calls (each call alone: one call at T = 8K is already ~0.1 ms of tensor-core work on 4096
blocks, launch overhead is negligible). TFLOP/s counts the causal half only:
2 (QK^T and PV) * 2 (mul+add) * T^2/2 * head_dim * heads. The output is poisoned (NaN) before
the first call and scanned after. prefill_sdpa.py adds PyTorch SDPA figures from the same call.
--kv bf16,fp8 (default) times each length with bf16 K/V and then fp8 e5m2 K/V (random codes
from kvstore's encoder; same q, same kernel otherwise) and prints fp8's time over bf16's.

  bench_prefill [--json out.json] [--lens 8192,32768,131072] [--reps 10] [--commit SHA]
                [--heads 32] [--kv_heads 8] [--head_dim 128] [--kv bf16,fp8]
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main(hipserve::bench::ArgsFromFlags());
}
