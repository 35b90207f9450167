#!/usr/bin/env bash
# One device-machine call: GPU tests (+ compute-sanitizer memcheck on small cases), the decode
# attention bench and the PyTorch SDPA baseline, all in the same call on the same card.
# Binaries are built on the dev machine for sm_90a and carried (bench/BENCHMARKS.md says how):
#   CARRY=.carry/attn  (bin/ with the executables, lib/ with their non-system shared libs)
# Usage there: COMMIT=<sha> bash bench/kernels/run_on_gpu.sh
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../gpu_env.sh"
gpu_env "${CARRY:-.carry/attn}" /tmp/attn_out

echo "== tests"
timeout 240 "$C/bin/attention_cuda_gpu_test" 2>&1 | tee "$OUT/test.log" | grep -E "$gtest_summary" | head -60
echo "test rc=${PIPESTATUS[0]}"

echo "== memcheck (small cases)"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/bin/attention_cuda_gpu_test" \
  --gtest_filter='*t100*:*hd64*:*forced7*:*no_blocks*:*t4097_b2*' 2>&1 | tail -4 | tee "$OUT/memcheck.log"
echo "memcheck rc=${PIPESTATUS[0]}"

echo "== bench"
timeout 240 "$C/bin/bench_attention" --json "$OUT/bench_raw.json" --commit "$commit" \
  ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
echo "bench rc=${PIPESTATUS[0]}"

echo "== sdpa baseline"
timeout 200 python3 bench/kernels/sdpa_baseline.py --ours "$OUT/bench_raw.json" \
  --out "$OUT/attention_decode-$gpu-$day.json" 2>&1 | tee "$OUT/sdpa.log"
echo "sdpa rc=${PIPESTATUS[0]}"
