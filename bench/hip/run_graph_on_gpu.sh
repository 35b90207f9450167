#!/usr/bin/env bash
# One device-machine call for the HiP decode CUDA graphs (kernels/hip_cuda/decode_graph.h):
# plan test (cpu) + GPU tests, bench_decode_graph (eager vs graph, "8B layer"), compute-sanitizer
# memcheck on the small cases, and a short bench_hip_decode sanity run, all on the same card.
# Binaries are built on the dev machine for sm_90a and carried stripped, with their non-system
# shared libs (bench/BENCHMARKS.md, "HiP decode as CUDA graphs", says how):
#   CARRY=.carry/graph  (bin/ executables, lib/ libs)
# Usage there: COMMIT=<sha> bash bench/hip/run_graph_on_gpu.sh
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../gpu_env.sh"
gpu_env "${CARRY:-.carry/graph}" /tmp/graph_out
summary() { grep -E "$gtest_summary|Value of|step " | head -60; }

echo "== tests"
{ timeout 30 "$C/bin/hip_decode_graph_plan_test"; echo "plan rc=$?";
  timeout ${TEST_TIMEOUT:-100} "$C/bin/hip_decode_graph_gpu_test"; echo "gpu test rc=$?"; } \
  > "$OUT/test.log" 2>&1
summary < "$OUT/test.log"; grep -E "rc=" "$OUT/test.log"

if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== bench"
  timeout ${BENCH_TIMEOUT:-170} "$C/bin/bench_decode_graph" \
    --json "$OUT/decode_graph-$gpu-$day.json" --commit "$commit" ${BENCH_ARGS:-} \
    > "$OUT/bench.log" 2>&1
  echo "bench rc=$?"
fi

if [ -z "${SKIP_SANITIZER:-}" ]; then
  echo "== memcheck (small cases)"
  timeout ${SAN_TIMEOUT:-90} compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$C/bin/hip_decode_graph_gpu_test" --gtest_filter='*small_g4*:DecodeGraphArgsTest.*' \
    > "$OUT/memcheck.log" 2>&1
  echo "memcheck rc=$?"; tail -4 "$OUT/memcheck.log"
fi

if [ -z "${SKIP_HIP_DECODE:-}" ]; then
  echo "== bench_hip_decode sanity (shapes from the case table)"
  timeout 75 "$C/bin/bench_hip_decode" --lens 131072,1048576 --a1_lens none --reps 10 --rotations 4 \
    > "$OUT/hip_decode.log" 2>&1
  echo "hip_decode rc=$?"; grep -A4 "K2_us" "$OUT/hip_decode.log"
fi
echo "== bench table"
sed -n '/^T  *batch/,$p' "$OUT/bench.log" 2>/dev/null
