#!/usr/bin/env bash
# One device-machine call for the decode kernels over stored KV layouts (fp8 e5m2, in-kernel
# RoPE, tiered reads): GPU tests, compute-sanitizer memcheck on small cases, bench_decode_kv
# (fp8 / tiered / K5) and bench_attention (bf16 regression check), all in one call on one card.
# Binaries are built on the dev machine for sm_90a and carried (bench/BENCHMARKS.md says how):
#   CARRY=.carry/dec  (bin/ with the stripped executables, lib/ with their non-system libs)
# Usage there: COMMIT=<sha> bash bench/kernels/run_decode_on_gpu.sh
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../gpu_env.sh"
gpu_env "${CARRY:-.carry/dec}" /tmp/dec_out

if [ -z "${SKIP_TESTS:-}" ]; then
  echo "== tests"
  for t in attention_cuda_gpu_test hip_cuda_gpu_test; do
    timeout ${TEST_TIMEOUT:-150} "$C/bin/$t" ${TEST_ARGS:-} > "$OUT/$t.log" 2>&1
    echo "$t rc=$?"
    grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|error|differs" "$OUT/$t.log" | head -40
    grep -E "^\[       OK \]" "$OUT/$t.log" | sed 's/^\[       OK \] //' | sort -t'(' -k2 -n -r | head -5
  done
fi

if [ -z "${SKIP_SANITIZER:-}" ]; then
  echo "== memcheck (small cases)"
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/bin/attention_cuda_gpu_test" \
    --gtest_filter='*small*:*t1:*t100*:*hd64_g3*:*g8_no_sink*:*sink_gt_t*:*Fp8GpuTest*:*fp8_dense_t100*' \
    2>&1 | tail -4 | tee "$OUT/memcheck.log"
  echo "memcheck rc=${PIPESTATUS[0]}"
fi

if [ -z "${SKIP_BENCH:-}" ]; then
  echo "== bench_decode_kv"
  timeout ${BENCH_TIMEOUT:-200} "$C/bin/bench_decode_kv" --json "$OUT/decode_kv-$gpu-$day.json" \
    --commit "$commit" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
  echo "bench rc=${PIPESTATUS[0]}"
  echo "== bench_attention (bf16 regression check)"
  timeout 90 "$C/bin/bench_attention" --json "$OUT/attention_decode-$gpu-$day.json" \
    --commit "$commit" --bsa_splits 26 2>&1 | tail -14 | tee "$OUT/bench_attention.log"
  echo "bench_attention rc=${PIPESTATUS[0]}"
fi
