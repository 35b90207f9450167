// bench_kvstore_fill: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_flags.h"
#include "bench/kernels/bench_check.h"
#include "common/flags/flags.h"
#include "kvstore/cache_ops.h"
#include "kvstore/kv_types.h"

// Flags: see also kUsage at the end of the file. '-' and '_' are interchangeable in names.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(int64_t, tokens, 262144,
          "Cold tokens filled per call, >= 1 and at most what --cold_mib holds.");
ABSL_FLAG(int, head_dim, 128, "Head dimension (bytes per fp8 row), a positive multiple of 16.");
ABSL_FLAG(int, reps, 20, "Timed calls per figure (the median is reported), >= 10.");
ABSL_FLAG(int64_t, cold_mib, 1024,
          "MiB of pinned, mapped host memory holding the cold fp8 pages, in [1, 4096].");
ABSL_FLAG(bool, keys_only, false, "Fill K rows only (default: K and V).");
ABSL_FLAG(int, device, 0, "CUDA device index, >= 0.");

namespace hipserve::kvstore {
namespace {

struct Args {
  std::string json;
  int64_t tokens = 0;
  int head_dim = 0;
  int reps = 0;
  int64_t cold_mib = 0;
  bool keys_only = false;
  int device = 0;
};

// The flags, range-checked (exits 2 naming the flag on a bad value).
Args ArgsFromFlags() {
  Args a;
  a.json = absl::GetFlag(FLAGS_json);
  a.tokens = absl::GetFlag(FLAGS_tokens);
  a.head_dim = absl::GetFlag(FLAGS_head_dim);
  a.reps = absl::GetFlag(FLAGS_reps);
  a.cold_mib = absl::GetFlag(FLAGS_cold_mib);
  a.keys_only = absl::GetFlag(FLAGS_keys_only);
  a.device = absl::GetFlag(FLAGS_device);
  using flags::CheckFlag;
  bench::ExitOnBadFlags(
      "bench_kvstore_fill",
      {CheckFlag(a.head_dim > 0 && a.head_dim % 16 == 0, "head_dim", "a positive multiple of 16",
                 a.head_dim),
       CheckFlag(a.cold_mib >= 1 && a.cold_mib <= 4096, "cold_mib", "in [1, 4096]",
                 static_cast<double>(a.cold_mib)),
       CheckFlag(a.reps >= 10, "reps", ">= 10 (the median needs enough samples)", a.reps),
       CheckFlag(a.device >= 0, "device", ">= 0", a.device)});
  // The cold pages must hold every token.
  const int64_t cold_tokens = (a.cold_mib << 20) / PageBytes(a.head_dim, 1) * kPageTokens;
  bench::ExitOnBadFlags(
      "bench_kvstore_fill",
      {a.tokens >= 1 && a.tokens <= cold_tokens
           ? absl::OkStatus()
           : absl::InvalidArgumentError(absl::StrCat(
                 "--tokens must be in [1, ", cold_tokens, "] (the rows --cold_mib ", a.cold_mib,
                 " holds at --head_dim ", a.head_dim, "), got ", a.tokens))});
  return a;
}

template <typename F>
double MedianMs(int reps, F&& launch) {
  cudaEvent_t start, stop;
  BENCH_CUDA(cudaEventCreate(&start));
  BENCH_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) launch();  // warm-up
  BENCH_CUDA(cudaDeviceSynchronize());
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    BENCH_CUDA(cudaEventRecord(start));
    launch();
    BENCH_CUDA(cudaEventRecord(stop));
    BENCH_CUDA(cudaEventSynchronize(stop));
    float t = 0;
    BENCH_CUDA(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  BENCH_CUDA(cudaEventDestroy(start));
  BENCH_CUDA(cudaEventDestroy(stop));
  return ms[ms.size() / 2];
}

int Main(const Args& a) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= a.device) {
    std::fprintf(stderr, "bench_kvstore_fill: no CUDA device %d\n", a.device);
    return 1;
  }
  BENCH_CUDA(cudaSetDevice(a.device));
  cudaDeviceProp prop;
  BENCH_CUDA(cudaGetDeviceProperties(&prop, a.device));
  const int hd = a.head_dim;
  const int parts = a.keys_only ? 1 : 2;
  const int64_t page_bytes = PageBytes(hd, 1);
  const int64_t cold_bytes = a.cold_mib << 20;
  const int64_t pages = cold_bytes / page_bytes;
  // ArgsFromFlags checked: hd % 16 == 0, cold_bytes <= 4 GiB, pages * kPageTokens >= a.tokens.

  // Cold tier: one pinned, mapped chunk of fp8 pages with finite random values.
  uint8_t* cold = nullptr;
  BENCH_CUDA(cudaHostAlloc(reinterpret_cast<void**>(&cold), cold_bytes,
                           cudaHostAllocMapped | cudaHostAllocPortable));
  std::mt19937_64 rng(1234);
  for (int64_t i = 0; i < cold_bytes; i += 8) {
    uint64_t r = rng() & 0x7B7B7B7B7B7B7B7Bull;  // clear exponent-all-ones patterns
    std::memcpy(cold + i, &r, 8);
  }
  uint8_t* cold_dev = nullptr;
  BENCH_CUDA(cudaHostGetDevicePointer(reinterpret_cast<void**>(&cold_dev), cold, 0));

  // A scattered set of distinct tokens, each to a distinct bank row, in random order.
  std::vector<int64_t> all(pages * kPageTokens);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(a.tokens);
  std::vector<uint64_t> src(a.tokens), src_host(a.tokens);
  std::vector<int32_t> rows(a.tokens);
  for (int64_t i = 0; i < a.tokens; ++i) {
    const int64_t off = (all[i] / kPageTokens) * page_bytes + (all[i] % kPageTokens) * hd;
    src[i] = reinterpret_cast<uint64_t>(cold_dev + off);
    src_host[i] = reinterpret_cast<uint64_t>(cold + off);
    rows[i] = static_cast<int32_t>(i);
  }
  std::shuffle(rows.begin(), rows.end(), rng);
  // TokenCache::Fill's order (sorted by source address) and the raw random order.
  std::vector<int32_t> rows_sorted = rows, rows_sorted_h = rows;
  std::vector<uint64_t> src_sorted = src, src_sorted_h = src_host;
  SortFillBySource(&rows_sorted, &src_sorted);
  SortFillBySource(&rows_sorted_h, &src_sorted_h);
  int32_t* d_rows = nullptr;
  uint64_t* d_src = nullptr;
  BENCH_CUDA(cudaMalloc(&d_rows, a.tokens * 4));
  BENCH_CUDA(cudaMalloc(&d_src, a.tokens * 8));

  const int64_t host_bytes = a.tokens * hd * parts;  // bytes read from host per fill
  // Baseline: one plain pinned host-to-device copy of the same bytes.
  void* d_copy = nullptr;
  BENCH_CUDA(cudaMalloc(&d_copy, host_bytes));
  const double memcpy_ms = MedianMs(a.reps, [&] {
    BENCH_CUDA(cudaMemcpyAsync(d_copy, cold, host_bytes, cudaMemcpyHostToDevice));
  });
  const double memcpy_gbs = host_bytes / (memcpy_ms * 1e6);

  std::string json = "{\n  \"bench\": \"kvstore_fill\",\n";
  json += "  \"device\": \"" + std::string(prop.name) + "\",\n";
  json += "  \"tokens\": " + std::to_string(a.tokens) + ",\n  \"head_dim\": " + std::to_string(hd) +
          ",\n  \"parts\": " + std::to_string(parts) +
          ",\n  \"bytes_from_host\": " + std::to_string(host_bytes) +
          ",\n  \"reps\": " + std::to_string(a.reps) +
          ",\n  \"memcpy_ms\": " + std::to_string(memcpy_ms) +
          ",\n  \"memcpy_gbs\": " + std::to_string(memcpy_gbs) + ",\n  \"fills\": [\n";
  std::printf(
      "device %s; %lld scattered tokens x %d bytes x %d (K%s) = %.1f MiB from host; "
      "median of %d reps\n",
      prop.name, static_cast<long long>(a.tokens), hd, parts, parts == 2 ? "+V" : "",
      host_bytes / 1048576.0, a.reps);
  std::printf("  plain pinned cudaMemcpy: %8.3f ms  %7.2f GB/s\n", memcpy_ms, memcpy_gbs);

  bool all_ok = true;
  bool goal_met = true;
  const KvDtype dtypes[] = {KvDtype::kBf16, KvDtype::kFp8E5m2};
  for (int vi = 0; vi < 4; ++vi) {
    const KvDtype dtype = dtypes[vi % 2];
    const bool sorted = vi < 2;  // sorted = what TokenCache::Fill does
    const std::vector<int32_t>& v_rows = sorted ? rows_sorted : rows;
    const std::vector<uint64_t>& v_src = sorted ? src_sorted : src;
    BENCH_CUDA(cudaMemcpy(d_rows, v_rows.data(), a.tokens * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(d_src, v_src.data(), a.tokens * 8, cudaMemcpyHostToDevice));
    const int64_t bank_bytes = a.tokens * hd * DtypeBytes(dtype);
    void* bank_k = nullptr;
    void* bank_v = nullptr;
    BENCH_CUDA(cudaMalloc(&bank_k, bank_bytes));
    if (parts == 2) BENCH_CUDA(cudaMalloc(&bank_v, bank_bytes));
    CacheFillParams p;
    p.bank_k = bank_k;
    p.bank_v = bank_v;
    p.bank_dtype = dtype;
    p.rows = d_rows;
    p.src = d_src;
    p.v_offset_bytes = int64_t{kPageTokens} * hd;
    p.n = a.tokens;
    p.head_dim = hd;
    const double fill_ms = MedianMs(a.reps, [&] {
      absl::Status s = CacheFillCuda(p, nullptr);
      if (!s.ok()) {
        std::fprintf(stderr, "fill: %s\n", std::string(s.message()).c_str());
        std::exit(1);
      }
    });
    BENCH_CUDA(cudaDeviceSynchronize());
    // Correctness: the bank equals the host implementation's result.
    std::vector<uint8_t> want_k(bank_bytes), want_v(parts == 2 ? bank_bytes : 0);
    std::vector<uint8_t> got(bank_bytes);
    CacheFillParams hp = p;
    hp.bank_k = want_k.data();
    hp.bank_v = parts == 2 ? want_v.data() : nullptr;
    hp.rows = sorted ? rows_sorted_h.data() : rows.data();
    hp.src = sorted ? src_sorted_h.data() : src_host.data();
    bool ok = CacheFillHost(hp).ok();
    BENCH_CUDA(cudaMemcpy(got.data(), bank_k, bank_bytes, cudaMemcpyDeviceToHost));
    ok = ok && got == want_k;
    if (parts == 2) {
      BENCH_CUDA(cudaMemcpy(got.data(), bank_v, bank_bytes, cudaMemcpyDeviceToHost));
      ok = ok && got == want_v;
    }
    all_ok = all_ok && ok;
    const double gbs = host_bytes / (fill_ms * 1e6);
    const double ratio = gbs / memcpy_gbs;
    if (sorted) goal_met = goal_met && ratio >= 0.6;
    std::printf("  fill (%s order) -> %-8s bank: %8.3f ms  %7.2f GB/s  ratio %.2f%s%s\n",
                sorted ? "address" : "random ", DtypeName(dtype), fill_ms, gbs, ratio,
                sorted ? (ratio >= 0.6 ? "  (goal >= 0.60 met)" : "  (goal >= 0.60 NOT met)") : "",
                ok ? "" : "  WRONG BYTES");
    json += std::string("    {\"order\": \"") + (sorted ? "address" : "random") +
            "\", \"bank_dtype\": \"" + DtypeName(dtype) + "\", \"ms\": " + std::to_string(fill_ms) +
            ", \"gbs\": " + std::to_string(gbs) +
            ", \"ratio_vs_memcpy\": " + std::to_string(ratio) +
            ", \"bytes_match_host\": " + (ok ? "true" : "false") + "}" + (vi < 3 ? ",\n" : "\n");
    BENCH_CUDA(cudaFree(bank_k));
    if (bank_v != nullptr) BENCH_CUDA(cudaFree(bank_v));
  }
  json += std::string("  ],\n  \"goal_ratio\": 0.6,\n  \"goal_met\": ") +
          (goal_met ? "true" : "false") + "\n}\n";
  if (!a.json.empty() && !bench::WriteTextFile(a.json, json)) return 1;
  BENCH_CUDA(cudaFree(d_copy));
  BENCH_CUDA(cudaFree(d_rows));
  BENCH_CUDA(cudaFree(d_src));
  BENCH_CUDA(cudaFreeHost(cold));
  return all_ok ? 0 : 3;
}

}  // namespace
}  // namespace hipserve::kvstore

namespace {

constexpr char kUsage[] =
    R"(bench_kvstore_fill: how fast the batched cache fill moves a scattered set of cold tokens
(fp8 e5m2 rows in pinned, device-mapped host memory) into a device cache bank, compared with
a plain pinned host-to-device cudaMemcpy of the same number of bytes in the same run.
Median of --reps CUDA-event timings each. Goal: fill >= 60% of the memcpy bandwidth, in
the order TokenCache::Fill uses (sorted by source address); random order is reported too.

  bench_kvstore_fill [--json out.json] [--tokens 262144] [--head_dim 128] [--reps 20]
                     [--cold_mib 1024] [--keys_only] [--device 0]
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::kvstore::Main(hipserve::kvstore::ArgsFromFlags());
}
