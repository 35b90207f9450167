// bench_attention: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "bench/bench_flags.h"
#include "bench/kernels/bench_check.h"
#include "bench/kernels/bench_timing.h"
#include "bench/kernels/fill_random.h"
#include "common/flags/flags.h"
#include "kernels/attention_cuda/decode_attention.h"

// Flags: see also kUsage at the end of the file. '-' and '_' are interchangeable in names.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(hipserve::flags::IntList, lens, (hipserve::flags::IntList{{32768, 131072, 1048576}}),
          "KV lengths T to time, each > 0; the --bsa_splits sweep runs at the largest.");
ABSL_FLAG(int, batch, 1, "Sequences per call, >= 1 (each of length T).");
ABSL_FLAG(int, reps, 20, "Timed repeats of each cycle (the median is reported), >= 10.");
ABSL_FLAG(int, rotations, 8,
          "Input sets per timed cycle (q, KV rows, block lists), >= 1; several keep the BSA "
          "working set beyond L2.");
ABSL_FLAG(hipserve::flags::IntList, bsa_splits, (hipserve::flags::IntList{{8, 13, 26, 52, 104}}),
          "Forced BSA split counts (each > 0) also timed at the largest T, besides the "
          "automatic choice; 'none' for no sweep.");
ABSL_FLAG(std::string, commit, "unknown", "Commit recorded in the JSON.");
ABSL_FLAG(int, device, 0, "CUDA device index, >= 0.");

namespace hipserve::bench {
namespace {

using kernels::BsaDecodeGpuParams;
using kernels::DecodeAttentionGpuParams;

struct Args {
  std::string json;
  std::vector<int> lens;
  int batch = 0;
  int reps = 0;
  int rotations = 0;
  int heads = 32, kv_heads = 8, head_dim = 128;
  int k_keys = 2048, n_sink = 256, n_window = 1024;
  std::vector<int> bsa_splits;  // forced-partition sweep at the largest T
  std::string commit;
  int device = 0;
};

// The flags, range-checked (exits 2 naming the flag on a bad value).
Args ArgsFromFlags() {
  Args a;
  a.json = absl::GetFlag(FLAGS_json);
  a.lens = absl::GetFlag(FLAGS_lens).values;
  a.batch = absl::GetFlag(FLAGS_batch);
  a.reps = absl::GetFlag(FLAGS_reps);
  a.rotations = absl::GetFlag(FLAGS_rotations);
  a.bsa_splits = absl::GetFlag(FLAGS_bsa_splits).values;
  a.commit = absl::GetFlag(FLAGS_commit);
  a.device = absl::GetFlag(FLAGS_device);
  using flags::CheckFlag;
  ExitOnBadFlags(
      "bench_attention",
      {CheckEach(
           a.lens, [](int t) { return t > 0; }, "lens", "> 0"),
       CheckFlag(a.batch >= 1, "batch", ">= 1", a.batch),
       CheckFlag(a.reps >= 10, "reps", ">= 10 (the median needs enough samples)", a.reps),
       CheckFlag(a.rotations >= 1, "rotations", ">= 1", a.rotations),
       CheckEach(
           a.bsa_splits, [](int s) { return s > 0; }, "bsa_splits", "> 0",
           /*allow_empty=*/true),
       CheckFlag(a.device >= 0, "device", ">= 0", a.device)});
  return a;
}

struct Row {
  int T;
  std::string kind;
  int64_t keys_per_head;  // per (sequence, KV head)
  double bytes;
  int num_splits_ws;  // workspace bytes / 1 KiB, informative
  Timing t;
  int64_t bad;
};

int Main(const Args& a) {
  BENCH_CUDA(cudaSetDevice(a.device));
  const auto [prop, driver] = QueryDevice(a.device);
  cudaStream_t stream = NonBlockingStream();

  const int R = a.rotations;
  const int H = a.heads, KVH = a.kv_heads, D = a.head_dim, B = a.batch;
  const int max_t = *std::max_element(a.lens.begin(), a.lens.end());
  const int64_t pad = 2048;  // rows between rotations (> n_sink + n_window)
  const int64_t rows = int64_t{B} * max_t + (R - 1) * pad;
  const int64_t row_elems = int64_t{KVH} * D;
  const size_t kv_bytes = static_cast<size_t>(rows * row_elems * 2);
  std::printf("device %s, %d SMs, L2 %.0f MB, driver %d; K and V %.2f GiB each\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize / 1e6, driver, kv_bytes / 1073741824.0);

  void *k, *v, *q, *out;
  BENCH_CUDA(cudaMalloc(&k, kv_bytes));
  BENCH_CUDA(cudaMalloc(&v, kv_bytes));
  const int64_t q_elems = int64_t{B} * H * D;
  BENCH_CUDA(cudaMalloc(&q, R * q_elems * 2));
  BENCH_CUDA(cudaMalloc(&out, q_elems * 2));
  BENCH_CUDA(FillRandomBf16(k, rows * row_elems, 11, 1.f, stream));
  BENCH_CUDA(FillRandomBf16(v, rows * row_elems, 22, 1.f, stream));
  BENCH_CUDA(FillRandomBf16(q, R * q_elems, 33, 1.f, stream));

  std::vector<int64_t> starts(int64_t{R} * B);
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < B; ++b) starts[r * B + b] = int64_t{b} * max_t + r * pad;
  }
  int64_t* d_starts;
  int32_t* d_lens;
  BENCH_CUDA(cudaMalloc(&d_starts, starts.size() * sizeof(int64_t)));
  BENCH_CUDA(cudaMalloc(&d_lens, B * sizeof(int32_t)));
  BENCH_CUDA(
      cudaMemcpy(d_starts, starts.data(), starts.size() * sizeof(int64_t), cudaMemcpyHostToDevice));

  const int nblk = a.k_keys / kernels::kBsaBlockSize;
  int32_t *d_blocks, *d_counts;
  BENCH_CUDA(cudaMalloc(&d_blocks, int64_t{R} * B * KVH * nblk * sizeof(int32_t)));
  BENCH_CUDA(cudaMalloc(&d_counts, int64_t{B} * KVH * sizeof(int32_t)));

  std::vector<Row> rows_out;
  std::mt19937_64 rng(1234);
  for (int T : a.lens) {
    const std::vector<int32_t> lens(B, T);
    BENCH_CUDA(cudaMemcpy(d_lens, lens.data(), B * sizeof(int32_t), cudaMemcpyHostToDevice));
    const float scale = 1.f / std::sqrt(static_cast<float>(D));

    DecodeAttentionGpuParams p;
    p.k = k;
    p.v = v;
    p.out = out;
    p.kv_len = d_lens;
    p.batch = B;
    p.num_heads = H;
    p.num_kv_heads = KVH;
    p.head_dim = D;
    p.max_kv_len = T;
    p.scale = scale;

    // Dense.
    {
      absl::StatusOr<size_t> ws = kernels::DenseDecodeAttentionWorkspaceBytes(p);
      BENCH_OK(ws.status());
      void* d_ws = nullptr;
      if (*ws > 0) BENCH_CUDA(cudaMalloc(&d_ws, *ws));
      p.workspace = d_ws;
      p.workspace_bytes = *ws;
      auto run = [&](int r, cudaStream_t s) {
        DecodeAttentionGpuParams pr = p;
        pr.q = static_cast<uint16_t*>(q) + r * q_elems;
        pr.kv_start = d_starts + r * B;
        BENCH_OK(kernels::DenseDecodeAttentionGpu(pr, s));
      };
      Row row{T, "dense", T, 0, static_cast<int>(*ws / 1024), {}, 0};
      row.bytes = double(B) * T * KVH * D * 2 * 2 + 2.0 * q_elems * 2;
      row.t = TimeCycle(a.reps, a.rotations, stream, run);
      row.bad = CheckOutputs(out, q_elems, stream, run);
      rows_out.push_back(row);
      if (d_ws) BENCH_CUDA(cudaFree(d_ws));
    }

    // BSA: random distinct blocks among the candidates [n_sink, T - n_window), sorted.
    {
      const int cand_lo = (a.n_sink + 7) / 8;
      const int cand_hi = std::max(cand_lo, (T - a.n_window) / 8);
      const int cnt = std::min(nblk, cand_hi - cand_lo);
      std::vector<int32_t> blocks(int64_t{R} * B * KVH * nblk, -1);
      std::vector<int> cand(cand_hi - cand_lo);
      for (int64_t list = 0; list < int64_t{R} * B * KVH; ++list) {
        for (int i = 0; i < static_cast<int>(cand.size()); ++i) cand[i] = cand_lo + i;
        for (int i = 0; i < cnt; ++i) {
          std::swap(cand[i], cand[i + rng() % (cand.size() - i)]);
        }
        std::sort(cand.begin(), cand.begin() + cnt);
        for (int i = 0; i < cnt; ++i) blocks[list * nblk + i] = cand[i] * 8;
      }
      const std::vector<int32_t> counts(int64_t{B} * KVH, cnt);
      BENCH_CUDA(cudaMemcpy(d_blocks, blocks.data(), blocks.size() * sizeof(int32_t),
                            cudaMemcpyHostToDevice));
      BENCH_CUDA(cudaMemcpy(d_counts, counts.data(), counts.size() * sizeof(int32_t),
                            cudaMemcpyHostToDevice));
      std::vector<int> forced = {0};
      if (T == max_t) forced.insert(forced.end(), a.bsa_splits.begin(), a.bsa_splits.end());
      for (int fs : forced) {
        BsaDecodeGpuParams bp;
        bp.attn = p;
        bp.attn.workspace = nullptr;
        bp.attn.workspace_bytes = 0;
        bp.attn.num_splits = fs;
        bp.block_count = d_counts;
        bp.max_blocks = nblk;
        bp.n_sink = a.n_sink;
        bp.n_window = a.n_window;
        absl::StatusOr<size_t> ws = kernels::BsaDecodeAttentionWorkspaceBytes(bp);
        BENCH_OK(ws.status());
        void* d_ws = nullptr;
        if (*ws > 0) BENCH_CUDA(cudaMalloc(&d_ws, *ws));
        bp.attn.workspace = d_ws;
        bp.attn.workspace_bytes = *ws;
        auto run = [&](int r, cudaStream_t s) {
          BsaDecodeGpuParams pr = bp;
          pr.attn.q = static_cast<uint16_t*>(q) + r * q_elems;
          pr.attn.kv_start = d_starts + r * B;
          pr.block_starts = d_blocks + int64_t{r} * B * KVH * nblk;
          BENCH_OK(kernels::BsaDecodeAttentionGpu(pr, s));
        };
        const int64_t sink = std::min(a.n_sink, T);
        const int64_t window = std::min<int64_t>(int64_t{a.n_window} + 1, T - sink);
        const int64_t keys = sink + int64_t{cnt} * 8 + window;
        Row row{T,
                fs == 0 ? "bsa" : "bsa_s" + std::to_string(fs),
                keys,
                0,
                static_cast<int>(*ws / 1024),
                {},
                0};
        row.bytes = double(B) * keys * KVH * D * 2 * 2 + 2.0 * q_elems * 2;
        row.t = TimeCycle(a.reps, a.rotations, stream, run);
        row.bad = CheckOutputs(out, q_elems, stream, run);
        rows_out.push_back(row);
        if (d_ws) BENCH_CUDA(cudaFree(d_ws));
      }
    }
  }

  // Table.
  std::printf("\n%-8s %-6s %10s %12s %12s %10s %10s %8s\n", "T", "kind", "keys/head", "stream_us",
              "graph_us", "GB/s", "ws_KiB", "bad_out");
  for (const Row& r : rows_out) {
    std::printf("%-8d %-6s %10lld %12.2f %12.2f %10.0f %10d %8lld\n", r.T, r.kind.c_str(),
                static_cast<long long>(r.keys_per_head), r.t.stream_us, r.t.graph_us,
                r.bytes / (r.t.graph_us * 1e3), r.num_splits_ws, static_cast<long long>(r.bad));
  }
  std::printf("\n%-8s %14s %14s\n", "T", "dense/bsa", "(graph times)");
  for (const Row& d : rows_out) {
    if (d.kind != "dense") continue;
    for (const Row& b : rows_out) {
      if (b.T == d.T && b.kind == "bsa")
        std::printf("%-8d %14.1fx\n", d.T, d.t.graph_us / b.t.graph_us);
    }
  }

  if (!a.json.empty()) {
    std::string j = JsonDeviceHead("attention_decode", prop, driver, /*with_l2=*/true);
    j += JsonCommitDate(a.commit);
    j += "  \"shape\": {\"batch\": " + std::to_string(B) + ", \"heads\": " + std::to_string(H) +
         ", \"kv_heads\": " + std::to_string(KVH) + ", \"head_dim\": " + std::to_string(D) +
         ", \"dtype\": \"bf16\", \"k_keys\": " + std::to_string(a.k_keys) +
         ", \"n_sink\": " + std::to_string(a.n_sink) +
         ", \"n_window\": " + std::to_string(a.n_window) + "},\n";
    j += JsonMethod(a.reps, R, "median per call") + "  \"rows\": [\n";
    for (size_t i = 0; i < rows_out.size(); ++i) {
      const Row& r = rows_out[i];
      char buf[512];
      std::snprintf(
          buf, sizeof(buf),
          "    {\"T\": %d, \"kind\": \"%s\", \"keys_per_head\": %lld, \"bytes\": %.0f, %s, "
          "\"workspace_kib\": %d, \"bad_outputs\": %lld}%s\n",
          r.T, r.kind.c_str(), static_cast<long long>(r.keys_per_head), r.bytes,
          TimingJson(r.t, r.bytes).c_str(), r.num_splits_ws, static_cast<long long>(r.bad),
          i + 1 < rows_out.size() ? "," : "");
      j += buf;
    }
    j += "  ]\n}\n";
    if (!WriteTextFile(a.json, j)) return 1;
  }
  int64_t bad = 0;
  for (const Row& r : rows_out) bad += r.bad;
  return bad == 0 ? 0 : 3;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_attention: decode attention for the "8B layer" shape (32 query heads, 8 KV heads, head
dim 128, bf16, batch 1 by default): dense flash-decode (split-K) against HiP BSA decode
(k = 2048 selected keys in 8-key blocks + 256 sink + 1024 window, mask reused) at several T.
Method (bench/BENCHMARKS.md): CUDA events, warm-up, median of --reps; each timed repeat is
one cycle over --rotations input sets (different q, different KV rows via shifted kv_start,
different random block lists), so the BSA working set (~13.6 MB a call) is several times L2.
Each figure is timed twice: back-to-back stream launches, and replays of a CUDA graph of the
same cycle (what a decode loop would run). Outputs are poisoned (NaN) and checked after.

  bench_attention [--json out.json] [--lens 32768,131072,1048576] [--batch 1] [--reps 20]
                  [--rotations 8] [--bsa_splits 8,13,26,52,104] [--commit SHA] [--device 0]
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main(hipserve::bench::ArgsFromFlags());
}
