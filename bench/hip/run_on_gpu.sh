#!/usr/bin/env bash
# One device-machine call: HiP mask GPU tests (+ compute-sanitizer memcheck / racecheck on small
# cases) and bench_hip_decode, in the same call on the same card. Binaries are built on the dev
# machine for sm_90a and carried (bench/BENCHMARKS.md, "HiP decode", says how):
#   CARRY=.carry/hip  (bin/ with the executables, lib/ with their non-system shared libs)
# Usage there: COMMIT=<sha> bash bench/hip/run_on_gpu.sh
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../gpu_env.sh"
gpu_env "${CARRY:-.carry/hip}" /tmp/hip_out

echo "== tests"
timeout ${TEST_TIMEOUT:-200} "$C/bin/hip_cuda_gpu_test" ${TEST_ARGS:-} 2>&1 | tee "$OUT/test.log" | \
  grep -E "$gtest_summary|first diff" | head -80
echo "test rc=${PIPESTATUS[0]}"

if [ -z "${SKIP_SANITIZER:-}" ]; then
  echo "== memcheck / racecheck (small cases)"
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/bin/hip_cuda_gpu_test" \
    --gtest_filter='*small_short*:*small_t4k_g3*:*hd64_g8*:*Seq*' 2>&1 | tail -3 | tee "$OUT/memcheck.log"
  echo "memcheck rc=${PIPESTATUS[0]}"
  timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 "$C/bin/hip_cuda_gpu_test" \
    --gtest_filter='*AllStages*small_short*:*AllStages*t4k_b2*' 2>&1 | tail -3 | tee "$OUT/racecheck.log"
  echo "racecheck rc=${PIPESTATUS[0]}"
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== bench"
  timeout ${BENCH_TIMEOUT:-240} "$C/bin/bench_hip_decode" --json "$OUT/hip_decode-$gpu-$day.json" \
    --commit "$commit" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
  echo "bench rc=${PIPESTATUS[0]}"
fi

if [ -n "${NCU:-}" ]; then
  echo "== ncu: per-kernel times of one full mask estimation at T = 1M"
  timeout 120 ncu --clock-control none -k regex:'ScoreKernel|SelectKernel' --launch-count 6 \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,smsp__warps_active.avg.pct_of_peak_sustained_active \
    "$C/bin/bench_hip_decode" --lens 1048576 --a1_lens none --reps 10 --rotations 1 2>&1 | \
    grep -E "ScoreKernel|SelectKernel|gpu__time|dram__bytes|sm__throughput|warps_active" | \
    sed 's/_ZN8hipserve7kernels17hip_mask_internal//' | tee "$OUT/ncu.log"
fi
