#!/usr/bin/env bash
# One device-machine call for HiP PREFILL: the prefill mask and BSA prefill GPU tests
# (+ compute-sanitizer memcheck on small cases) and bench_hip_prefill (K4), in the same call on
# the same card. Binaries are built on the dev machine for sm_90a and carried (bench/BENCHMARKS.md,
# "K4", says how):
#   CARRY=.carry/pf  (bin/ with the executables, lib/ with their non-system shared libs)
# Usage there: COMMIT=<sha> bash bench/hip/run_prefill_on_gpu.sh
# Knobs: SKIP_TESTS, SKIP_SANITIZER, SKIP_BENCH, TEST_ARGS, BENCH_ARGS, BENCH_TIMEOUT.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../gpu_env.sh"
gpu_env "${CARRY:-.carry/pf}" /tmp/hip_prefill_out
filter="$gtest_summary|bound|differ"

if [ -z "${SKIP_TESTS:-}" ]; then
  for t in hip_prefill_mask_gpu_test bsa_prefill_gpu_test hip_cuda_gpu_test; do
    echo "== $t"
    timeout ${TEST_TIMEOUT:-400} "$C/bin/$t" ${TEST_ARGS:-} 2>&1 | tee "$OUT/$t.log" | \
      grep -E "$filter" | head -60
    echo "$t rc=${PIPESTATUS[0]}"
  done
fi

if [ -z "${SKIP_SANITIZER:-}" ]; then
  echo "== memcheck (small cases)"
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$C/bin/hip_prefill_mask_gpu_test" \
    --gtest_filter='*t4k_small_chunk_off2005*:*t4k_small_g8_hd64_real*:*one_query*' 2>&1 | \
    tail -3 | tee "$OUT/memcheck_mask.log"
  echo "memcheck mask rc=${PIPESTATUS[0]}"
  # The resident-rows kernel (forced on every stage in each case's variants) has no block
  # barrier after its fill: per-warp shared regions and __syncwarp only.
  timeout 300 compute-sanitizer --tool racecheck --error-exitcode 9 \
    "$C/bin/hip_prefill_mask_gpu_test" --gtest_filter='*t4k_small_chunk_off2005*' 2>&1 | \
    tail -3 | tee "$OUT/racecheck_mask.log"
  echo "racecheck mask rc=${PIPESTATUS[0]}"
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/bin/bsa_prefill_gpu_test" \
    --gtest_filter='*small_chunk_off633_extend*:*small_shift3_overlaps_real*:*noblocks_extend*:*small_g1_extend_hd64*' \
    2>&1 | tail -3 | tee "$OUT/memcheck_bsa.log"
  echo "memcheck bsa rc=${PIPESTATUS[0]}"
  timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 "$C/bin/bsa_prefill_gpu_test" \
    --gtest_filter='*small_chunk_off633_extend*' 2>&1 | tail -3 | tee "$OUT/racecheck_bsa.log"
  echo "racecheck bsa rc=${PIPESTATUS[0]}"
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== bench"
  timeout ${BENCH_TIMEOUT:-240} "$C/bin/bench_hip_prefill" \
    --json "$OUT/hip_prefill-$gpu-$day.json" --commit "$commit" ${BENCH_ARGS:-} 2>&1 | \
    tee "$OUT/bench.log"
  echo "bench rc=${PIPESTATUS[0]}"
fi
