// Cycle timing shared by the decode benchmarks (CUDA events; not library code).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "bench/kernels/bench_check.h"

namespace hipserve::bench {

struct Timing {
  double stream_us = 0, graph_us = 0, graph_min_us = 0, graph_max_us = 0;
};

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
