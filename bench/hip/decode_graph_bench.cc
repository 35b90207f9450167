// bench_decode_graph: what it measures, how, and every flag are in kUsage at the end of this file
// (printed by --help).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_flags.h"
#include "bench/kernels/bench_check.h"
#include "bench/kernels/bench_timing.h"
#include "bench/kernels/fill_random.h"
#include "common/flags/flags.h"
#include "kernels/hip/hip_params.h"
#include "kernels/hip/rope_table.h"
#include "kernels/hip_cuda/decode_graph.h"
#include "kernels/hip_cuda/mask_estimation.h"
#include "kernels/testing/attention_cases.h"

// Flags: see also kUsage at the end of the file. '-' and '_' are interchangeable in names.
ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file.");
ABSL_FLAG(hipserve::flags::IntList, lens,
          (hipserve::flags::IntList{
              std::vector<int>(hipserve::kernels::testing::kDecodeBenchLens.begin(),
                               hipserve::kernels::testing::kDecodeBenchLens.end())}),
          "KV lengths T (the graphs' max_kv_len), each > 0.");
ABSL_FLAG(hipserve::flags::IntList, batches,
          (hipserve::flags::IntList{
              std::vector<int>(hipserve::kernels::testing::kDecodeBenchBatches.begin(),
                               hipserve::kernels::testing::kDecodeBenchBatches.end())}),
          "Batch sizes, each in [1, 32] (the largest graph batch bucket).");
ABSL_FLAG(int, reps, 20, "Timed repeats of each cycle (the median is reported), >= 10.");
ABSL_FLAG(int, rotations, 8, "q sets the timed steps rotate over, >= 1.");
ABSL_FLAG(int64_t, kv_rows, int64_t{4} << 20,
          "Rows of the shared K and V buffers (batch > 1 spreads its sequences over them), >= "
          "the largest --lens.");
ABSL_FLAG(std::string, commit, "unknown", "Commit recorded in the JSON.");

namespace hipserve::bench {
namespace {

namespace kt = kernels::testing;

struct Args {
  std::string json;
  std::vector<int> lens;
  std::vector<int> batches;
  int reps = 0;
  int rotations = 0;
  int64_t kv_rows = 0;
  std::string commit;
};

// The flags, range-checked (exits 2 naming the flag on a bad value).
Args ArgsFromFlags() {
  Args a;
  a.json = absl::GetFlag(FLAGS_json);
  a.lens = absl::GetFlag(FLAGS_lens).values;
  a.batches = absl::GetFlag(FLAGS_batches).values;
  a.reps = absl::GetFlag(FLAGS_reps);
  a.rotations = absl::GetFlag(FLAGS_rotations);
  a.kv_rows = absl::GetFlag(FLAGS_kv_rows);
  a.commit = absl::GetFlag(FLAGS_commit);
  using flags::CheckFlag;
  constexpr int kMaxBatch = kt::kDecodeBatchBuckets.back();
  const int max_t = a.lens.empty() ? 0 : *std::max_element(a.lens.begin(), a.lens.end());
  ExitOnBadFlags(
      "bench_decode_graph",
      {CheckEach(
           a.lens, [](int t) { return t > 0; }, "lens", "> 0"),
       CheckEach(
           a.batches, [](int b) { return b >= 1 && b <= kMaxBatch; }, "batches",
           absl::StrCat("in [1, ", kMaxBatch, "] (the largest batch bucket)")),
       CheckFlag(a.reps >= 10, "reps", ">= 10 (the median needs enough samples)", a.reps),
       CheckFlag(a.rotations >= 1, "rotations", ">= 1", a.rotations),
       a.kv_rows >= max_t
           ? absl::OkStatus()
           : absl::InvalidArgumentError(absl::StrCat("--kv_rows must be >= the largest --lens (",
                                                     max_t, "), got ", a.kv_rows))});
  return a;
}

struct Row {
  int T = 0, batch = 0, steps = 0;
  std::string schedule;
  double eager_us = 0, graph_us = 0;            // device time per step (median over reps)
  double eager_host_us = 0, graph_host_us = 0;  // host enqueue time per step (median)
  int refresh_steps = 0;                        // steps that ran some mask stage
  int64_t bad = 0;                              // NaN outputs + graph/eager mismatches
};

// Host arrays of every step of a schedule.
struct Schedule {
  std::string name;
  std::vector<std::vector<int32_t>> len, ss;  // [step][batch]
};

Schedule MakeCycle(const std::string& name, const kernels::HipConfig& cfg, int T, int batch,
                   int stagger) {
  Schedule s;
  s.name = name;
  for (int i = 0; i < 96; ++i) {
    std::vector<int32_t> len(batch, T - 95 + i), ss(batch);
    for (int b = 0; b < batch; ++b) {
      ss[b] = kernels::DecodeRefreshStage(cfg, 96 + i + stagger * b);  // a later cycle
    }
    s.len.push_back(len);
    s.ss.push_back(ss);
  }
  return s;
}

Schedule MakeMode(const std::string& name, int T, int batch, int stage) {
  Schedule s;
  s.name = name;
  for (int i = 0; i < 16; ++i) {
    s.len.push_back(std::vector<int32_t>(batch, T - 15 + i));
    s.ss.push_back(std::vector<int32_t>(batch, stage));
  }
  return s;
}

int Main(const Args& a) {
  const kt::AttentionShape shape = kt::k8BLayer;
  const auto [prop, driver] = QueryDevice(0);
  cudaStream_t stream = NonBlockingStream();

  int max_t = 0, max_b = 0;
  for (int T : a.lens) max_t = std::max(max_t, T);
  for (int b : a.batches) max_b = std::max(max_b, b);
  const int64_t kv_rows = a.kv_rows;  // >= max_t (ArgsFromFlags)
  const int64_t row_elems = int64_t{shape.num_kv_heads} * shape.head_dim;
  const int64_t q_row = int64_t{shape.num_heads} * shape.head_dim;
  std::printf("device %s, %d SMs, L2 %.0f MB, driver %d; K and V %.2f GiB each\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize / 1e6, driver,
              kv_rows * row_elems * 2 / 1073741824.0);
  void *k = nullptr, *v = nullptr, *qpool = nullptr, *out = nullptr, *out_eager = nullptr;
  BENCH_CUDA(cudaMalloc(&k, kv_rows * row_elems * 2));
  BENCH_CUDA(cudaMalloc(&v, kv_rows * row_elems * 2));
  BENCH_CUDA(cudaMalloc(&qpool, int64_t{a.rotations} * max_b * q_row * 2));
  BENCH_CUDA(cudaMalloc(&out, int64_t{max_b} * q_row * 2));
  BENCH_CUDA(cudaMalloc(&out_eager, int64_t{max_b} * q_row * 2));
  BENCH_CUDA(FillRandomBf16(k, kv_rows * row_elems, 11, 1.f, stream));
  BENCH_CUDA(FillRandomBf16(v, kv_rows * row_elems, 22, 1.f, stream));
  BENCH_CUDA(FillRandomBf16(qpool, int64_t{a.rotations} * max_b * q_row, 33, 1.f, stream));

  kernels::HipConfig cfg;  // "3K" preset, (96, 24, 8), relative pruning positions
  const int layer = 8;     // a layer without the first-layers override
  // The mask (relative positions) needs n_window + 2 RoPE rows; BSA uses K as stored
  // (bsa_rope = false), as bench_hip_decode's K1 rows do.
  const int rope_positions = 4096;
  float* rope = nullptr;
  {
    kernels::RopeConfig rc;
    rc.theta = 500000.f;
    rc.scaling = kernels::RopeScaling::kLlama3;
    rc.factor = 8.f;
    absl::StatusOr<kernels::RopeTable> table =
        kernels::RopeTable::Create(rc, shape.head_dim, rope_positions);
    BENCH_OK(table.status());
    const std::vector<float> rows = kernels::HipRopeRows(*table, rope_positions);
    BENCH_CUDA(cudaMalloc(&rope, rows.size() * sizeof(float)));
    BENCH_CUDA(cudaMemcpy(rope, rows.data(), rows.size() * 4, cudaMemcpyHostToDevice));
  }
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));

  std::vector<Row> rows;
  for (int T : a.lens) {
    kernels::HipDecodeGraphOptions opt;
    opt.num_heads = shape.num_heads;
    opt.num_kv_heads = shape.num_kv_heads;
    opt.head_dim = shape.head_dim;
    opt.config = cfg;
    opt.layer = layer;
    opt.max_kv_len = T;
    opt.kv_rows = kv_rows;
    opt.batch_buckets.assign(kt::kDecodeBatchBuckets.begin(), kt::kDecodeBatchBuckets.end());
    opt.bsa_rope = false;
    opt.staging_depth = 128;  // > the 96 steps enqueued between two waits
    const auto t_setup = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<kernels::HipDecodeGraphs>> made = kernels::CreateHipDecodeGraphs(
        opt, kernels::HipDecodeGraphTensors{k, v, rope, rope_positions});
    BENCH_OK(made.status());
    kernels::HipDecodeGraphs& g = **made;
    std::printf(
        "T=%d: %d graphs captured in %.1f ms\n", T, g.num_graphs(),
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_setup)
            .count());
    for (int B : a.batches) {
      const int64_t stride = B > 1 ? std::min<int64_t>(T, (kv_rows - T) / (B - 1)) : 0;
      std::vector<int64_t> starts(B);
      for (int b = 0; b < B; ++b) starts[b] = b * stride;
      // dst == nullptr: device-resident I/O (q already in q_buffer(), out read from
      // out_buffer()), as a caller whose projections write / read those buffers would do.
      auto step = [&](const std::vector<int32_t>& len, const std::vector<int32_t>& ss, int i,
                      bool graph, void* dst) {
        kernels::HipDecodeStep st;
        st.batch = B;
        st.kv_len = len.data();
        st.kv_start = starts.data();
        st.start_stage = ss.data();
        if (dst != nullptr) {
          st.q = static_cast<const uint16_t*>(qpool) + int64_t{i % a.rotations} * max_b * q_row;
        }
        st.out = dst;
        BENCH_OK(graph ? g.Run(st, stream) : g.RunEager(st, stream));
      };
      // Every slot starts with a full mask (its decode step 0).
      const std::vector<int32_t> full(B, 0), reuse(B, -1), len_t(B, T);
      step(len_t, full, 0, true, out);

      std::vector<Schedule> scheds;
      scheds.push_back(MakeCycle("cycle_aligned", cfg, T, B, 0));
      if (B > 1) scheds.push_back(MakeCycle("cycle_staggered", cfg, T, B, 3));
      scheds.push_back(MakeMode("bsa_only", T, B, -1));
      scheds.push_back(MakeMode("all_stages", T, B, 0));
      scheds.push_back(scheds[0]);
      scheds.back().name += "+devio";
      scheds.push_back(MakeMode("bsa_only+devio", T, B, -1));
      for (const Schedule& s : scheds) {
        const int n = static_cast<int>(s.ss.size());
        const bool devio = s.name.find("+devio") != std::string::npos;
        void* dst = devio ? nullptr : out;
        Row row;
        row.T = T;
        row.batch = B;
        row.steps = n;
        row.schedule = s.name;
        for (const auto& ss : s.ss) {
          row.refresh_steps += *std::max_element(ss.begin(), ss.end()) >= 0;
        }
        std::vector<double> dev[2], host[2];
        for (int rep = -1; rep < a.reps; ++rep) {  // rep -1: warm-up
          for (int graph = 0; graph < 2; ++graph) {
            const auto h0 = std::chrono::steady_clock::now();
            BENCH_CUDA(cudaEventRecord(e0, stream));
            for (int i = 0; i < n; ++i) step(s.len[i], s.ss[i], i, graph == 1, dst);
            BENCH_CUDA(cudaEventRecord(e1, stream));
            const double host_us =
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - h0)
                    .count();
            BENCH_CUDA(cudaEventSynchronize(e1));
            float ms = 0;
            BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
            if (rep >= 0) {
              dev[graph].push_back(1e3 * ms / n);
              host[graph].push_back(host_us / n);
            }
          }
        }
        row.eager_us = Median(dev[0]);
        row.graph_us = Median(dev[1]);
        row.eager_host_us = Median(host[0]);
        row.graph_host_us = Median(host[1]);
        // Checks: a BSA-only step leaves the lists alone, so eager and graph must agree bit for
        // bit; nothing may be NaN (outputs poisoned first).
        BENCH_CUDA(cudaMemsetAsync(out, 0xff, int64_t{B} * q_row * 2, stream));
        BENCH_CUDA(cudaMemsetAsync(out_eager, 0xff, int64_t{B} * q_row * 2, stream));
        step(len_t, reuse, 1, false, out_eager);
        step(len_t, reuse, 1, true, out);
        std::vector<uint16_t> ho(int64_t{B} * q_row), he(int64_t{B} * q_row);
        BENCH_CUDA(cudaMemcpyAsync(ho.data(), out, ho.size() * 2, cudaMemcpyDeviceToHost, stream));
        BENCH_CUDA(
            cudaMemcpyAsync(he.data(), out_eager, he.size() * 2, cudaMemcpyDeviceToHost, stream));
        BENCH_CUDA(cudaStreamSynchronize(stream));
        for (size_t i = 0; i < ho.size(); ++i) row.bad += ho[i] != he[i];
        row.bad += CountNonFiniteBf16(out, int64_t{B} * q_row, stream);
        rows.push_back(row);
        std::printf(
            "T=%-8d B=%-3d %-20s eager %9.2f us  graph %9.2f us  (%.2fx)  host "
            "%.1f / %.1f us  bad %lld\n",
            T, B, s.name.c_str(), row.eager_us, row.graph_us, row.eager_us / row.graph_us,
            row.eager_host_us, row.graph_host_us, static_cast<long long>(row.bad));
        std::fflush(stdout);
      }
    }
  }

  std::printf("\n%-8s %-6s %-20s %6s %12s %12s %9s %14s %14s %5s\n", "T", "batch", "schedule",
              "steps", "eager_us", "graph_us", "eager/gr", "host_eager_us", "host_graph_us", "bad");
  for (const Row& r : rows) {
    std::printf("%-8d %-6d %-20s %6d %12.2f %12.2f %9.2f %14.2f %14.2f %5lld\n", r.T, r.batch,
                r.schedule.c_str(), r.steps, r.eager_us, r.graph_us, r.eager_us / r.graph_us,
                r.eager_host_us, r.graph_host_us, static_cast<long long>(r.bad));
  }

  if (!a.json.empty()) {
    std::string j = JsonDeviceHead("decode_graph", prop, driver, /*with_l2=*/false);
    j += JsonCommitDate(a.commit);
    j += "  \"shape\": {\"name\": \"" + std::string(shape.name) +
         "\", \"heads\": " + std::to_string(shape.num_heads) +
         ", \"kv_heads\": " + std::to_string(shape.num_kv_heads) +
         ", \"head_dim\": " + std::to_string(shape.head_dim) +
         ", \"dtype\": \"bf16\", \"chunk_sizes\": [256, 32, 8], \"keep\": [32768, 8192, 2048], "
         "\"refresh\": [96, 24, 8], \"pruning_positions\": \"relative\", \"bsa_rope\": false, "
         "\"batch_buckets\": [1, 2, 4, 8, 16, 32], \"kv_rows\": " +
         std::to_string(kv_rows) + "},\n";
    j += JsonMethod(a.reps, a.rotations,
                    "median over reps of (cycle time / steps); eager and graph reps interleaved; "
                    "each step includes input upload, q copy, kernels, out copy");
    j += "  \"rows\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      char buf[512];
      std::snprintf(buf, sizeof(buf),
                    "    {\"T\": %d, \"batch\": %d, \"schedule\": \"%s\", \"steps\": %d, "
                    "\"refresh_steps\": %d, \"eager_us\": %.3f, \"graph_us\": %.3f, "
                    "\"eager_over_graph\": %.4f, \"eager_host_us\": %.3f, "
                    "\"graph_host_us\": %.3f, \"bad_outputs\": %lld}%s\n",
                    r.T, r.batch, r.schedule.c_str(), r.steps, r.refresh_steps, r.eager_us,
                    r.graph_us, r.eager_us / r.graph_us, r.eager_host_us, r.graph_host_us,
                    static_cast<long long>(r.bad), i + 1 < rows.size() ? "," : "");
      j += buf;
    }
    j += "  ]\n}\n";
    if (!WriteTextFile(a.json, j)) return 1;
  }
  int64_t bad = 0;
  for (const Row& r : rows) bad += r.bad;
  return bad == 0 ? 0 : 3;
}

}  // namespace
}  // namespace hipserve::bench

namespace {

constexpr char kUsage[] =
    R"(bench_decode_graph: one HiP decode step of the "8B layer" (kernels/testing/attention_cases.h)
through HipDecodeGraphs (kernels/hip_cuda/decode_graph.h), graph replay (Run) vs the same
launches one by one (RunEager), in the same run on the same buffers.
  cycle rows: time per step averaged over one (96, 24, 8) refresh cycle (lengths grow by one
    token a step); "aligned": every sequence on the same counter (K1's schedule); "staggered"
    (batch > 1): sequence b's counter is offset by 3 b steps, so most steps refresh some
    sequence from some stage.
  mode rows: 16 steps of one refresh mode (BSA only / all stages).
Every step includes the upload of lengths and start stages, the q copy in, the kernels (or
the graph launch) and the out copy; "+devio" rows skip the two copies (q written into
q_buffer() and out read from out_buffer() by the caller).
Batch > 1 shares one KV buffer: sequence b starts at row b * stride, stride = min(T,
(kv_rows - T) / (batch - 1)) (32 x 1M tokens would not fit a GPU).
Method (shared/BENCHMARKS.md): CUDA events around each cycle, warm-up, eager and graph reps
interleaved, median of --reps; q rotates over --rotations sets; outputs poisoned and checked
for NaN, and graph == eager bit for bit on a BSA-only step.

  bench_decode_graph [--json out.json] [--lens 131072,1048576] [--batches 1,32] [--reps 20]
                     [--rotations 8] [--kv_rows 4194304] [--commit SHA]
)";

}  // namespace

int main(int argc, char** argv) {
  hipserve::flags::ParseProgramFlagsOrExit(argc, argv, kUsage, __FILE__);
  return hipserve::bench::Main(hipserve::bench::ArgsFromFlags());
}
