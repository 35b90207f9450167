// Cycle timing shared by the decode benchmarks (CUDA events; not library code).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "bench/kernels/bench_check.h"

namespace hipserve::bench {

struct Timing {
  double stream_us = 0, graph_us = 0, graph_min_us = 0, graph_max_us = 0;
};

// A row's timing in the benches' JSON: "stream_us", "graph_us", "graph_min_us", "graph_max_us"
// and "gbps" (GB/s of `bytes` per call at the graph replay time), comma-separated.
inline std::string TimingJson(const Timing& t, double bytes) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "\"stream_us\": %.3f, \"graph_us\": %.3f, \"graph_min_us\": %.3f, "
                "\"graph_max_us\": %.3f, \"gbps\": %.1f",
                t.stream_us, t.graph_us, t.graph_min_us, t.graph_max_us,
                bytes / (t.graph_us * 1e3));
  return buf;
}

// The "method" line of a bench's JSON: reps, rotations and the statistic reported.
inline std::string JsonMethod(int reps, int rotations, const std::string& statistic) {
  return "  \"method\": {\"reps\": " + std::to_string(reps) +
         ", \"rotations\": " + std::to_string(rotations) + ", \"statistic\": \"" + statistic +
         "\"},\n";
}

// Milliseconds of fn() on stream s, between two events.
template <typename Fn>
double TimeMs(cudaStream_t s, Fn fn) {
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  BENCH_CUDA(cudaEventRecord(e0, s));
  fn();
  BENCH_CUDA(cudaEventRecord(e1, s));
  BENCH_CUDA(cudaEventSynchronize(e1));
  float ms = 0;
  BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
  BENCH_CUDA(cudaEventDestroy(e0));
  BENCH_CUDA(cudaEventDestroy(e1));
  return ms;
}

// Copies n bf16 outputs at device pointer out to the host (synchronizing s) and counts the
// non-finite ones (exponent all ones: Inf or NaN); leaves the copy in *bits if given.
inline int64_t CountNonFiniteBf16(const void* out, int64_t n, cudaStream_t s,
                                  std::vector<uint16_t>* bits = nullptr) {
  std::vector<uint16_t> h(n);
  BENCH_CUDA(cudaMemcpyAsync(h.data(), out, n * 2, cudaMemcpyDeviceToHost, s));
  BENCH_CUDA(cudaStreamSynchronize(s));
  int64_t bad = 0;
  for (uint16_t b : h) bad += (b & 0x7f80) == 0x7f80;
  if (bits != nullptr) *bits = std::move(h);
  return bad;
}

// Poisons out (0xffff is a bf16 NaN), runs run(0, s) once and counts non-finite bf16 outputs;
// copies the output to *bits if given.
template <typename Fn>
int64_t CheckOutputs(void* out, int64_t n, cudaStream_t s, Fn run,
                     std::vector<uint16_t>* bits = nullptr) {
  BENCH_CUDA(cudaMemsetAsync(out, 0xff, n * 2, s));
  run(0, s);
  return CountNonFiniteBf16(out, n, s, bits);
}

// Times `calls` invocations of run(i, stream) as one cycle, back-to-back and as a CUDA graph;
// median over `reps`, per call.
template <typename Fn>
Timing TimeCycle(int reps, int calls, cudaStream_t stream, Fn run) {
  cudaEvent_t e0, e1;
  BENCH_CUDA(cudaEventCreate(&e0));
  BENCH_CUDA(cudaEventCreate(&e1));
  auto measure = [&](auto&& body) {
    std::vector<double> v;
    for (int rep = 0; rep < reps; ++rep) {
      BENCH_CUDA(cudaEventRecord(e0, stream));
      body();
      BENCH_CUDA(cudaEventRecord(e1, stream));
      BENCH_CUDA(cudaEventSynchronize(e1));
      float ms = 0;
      BENCH_CUDA(cudaEventElapsedTime(&ms, e0, e1));
      v.push_back(1e3 * ms / calls);
    }
    return v;
  };
  auto cycle = [&]() {
    for (int i = 0; i < calls; ++i) run(i, stream);
  };
  for (int w = 0; w < 2; ++w) cycle();
  BENCH_CUDA(cudaStreamSynchronize(stream));
  const std::vector<double> plain = measure(cycle);
  cudaGraph_t g;
  cudaGraphExec_t ge;
  BENCH_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  cycle();
  BENCH_CUDA(cudaStreamEndCapture(stream, &g));
  BENCH_CUDA(cudaGraphInstantiate(&ge, g, 0));
  for (int w = 0; w < 2; ++w) BENCH_CUDA(cudaGraphLaunch(ge, stream));
  BENCH_CUDA(cudaStreamSynchronize(stream));
  const std::vector<double> graph = measure([&]() { BENCH_CUDA(cudaGraphLaunch(ge, stream)); });
  BENCH_CUDA(cudaGraphExecDestroy(ge));
  BENCH_CUDA(cudaGraphDestroy(g));
  BENCH_CUDA(cudaEventDestroy(e0));
  BENCH_CUDA(cudaEventDestroy(e1));
  Timing t;
  t.stream_us = Median(plain);
  t.graph_us = Median(graph);
  t.graph_min_us = *std::min_element(graph.begin(), graph.end());
  t.graph_max_us = *std::max_element(graph.begin(), graph.end());
  return t;
}

}  // namespace hipserve::bench
