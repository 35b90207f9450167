#!/usr/bin/env bash
# One device-machine call for fp8 e5m2 K/V in the PREFILL kernels: bench_prefill (dense, bf16 vs
# fp8 rows, T = 8K/32K/128K) and bench_hip_prefill (BSA-only bf16 vs fp8 at 128K; the 1M part cut
# to 64K, dense 1M off) first, on an otherwise idle card; then attention_prefill_gpu_test and
# bsa_prefill_gpu_test (gtest shards in parallel: the CPU references dominate) and
# compute-sanitizer memcheck on small fp8 cases. Binaries are built on the dev machine for sm_90a
# and carried: CARRY=.carry/pf8 (bin/ executables, lib/ non-system shared libs, fallback/ a
# libcudart used only where the machine has none).
# Usage there: COMMIT=<sha> bash bench/kernels/run_prefill_fp8_on_gpu.sh
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../gpu_env.sh"
gpu_env "${CARRY:-.carry/pf8}" /tmp/prefill_fp8_out

{
  echo "== bench_prefill"
  timeout 150 "$C/bin/bench_prefill" --lens 8192,32768,131072 --reps 10 --commit "$commit" \
    --json "$OUT/prefill_fp8-$gpu-$day.json"
  echo "rc=$?"
  echo "== bench_hip_prefill (128K + BSA bf16/fp8; 1M part cut to 64K, no dense 1M)"
  timeout 150 "$C/bin/bench_hip_prefill" --reps 10 --t1m 65536 --chunk 32768 --reps_long 1 \
    --dense_1m none --commit "$commit" --json "$OUT/hip_prefill_fp8-$gpu-$day.json"
  echo "rc=$?"
} 2>&1 | tee "$OUT/bench.log"

run_shards() {  # binary, shards, log
  local b=$1 n=$2 log=$3 pids=() i
  for ((i = 0; i < n; ++i)); do
    GTEST_TOTAL_SHARDS=$n GTEST_SHARD_INDEX=$i timeout 240 "$C/bin/$b" > "$log.$i" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; echo "$b shard rc=$?"; done
  cat "$log".* > "$log"
  rm -f "$log".*
}
t0=$(date +%s)
run_shards attention_prefill_gpu_test 6 "$OUT/tests.dense" &
run_shards bsa_prefill_gpu_test 4 "$OUT/tests.bsa" &
( timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/bin/attention_prefill_gpu_test" \
    --gtest_filter='*fp8_t17_g4*:*fp8_chunk300_off700_g4_hd64*:*fp8_t1_mha_hd128*:*Args*:*t17_g4_hd128*'
  echo "memcheck dense rc=$?"
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$C/bin/bsa_prefill_gpu_test" \
    --gtest_filter='*fp8_small_g4_extend_hd64*:*fp8_small_chunk_off633_real*:*fp8_small_shift3*extend*:*Args*'
  echo "memcheck bsa rc=$?" ) > "$OUT/memcheck.log" 2>&1 &
wait
echo "tests + memcheck: $(( $(date +%s) - t0 )) s"
cat "$OUT/tests.dense" "$OUT/tests.bsa" > "$OUT/tests.log"
rm -f "$OUT/tests.dense" "$OUT/tests.bsa"
grep -E '^\[  (FAILED|PASSED) |FAILED TEST|shard rc' "$OUT/tests.log" | sort | uniq -c | head -40
grep -cE '^\[       OK \]' "$OUT/tests.log"
grep -E 'ERROR SUMMARY|rc=|PASSED|FAILED' "$OUT/memcheck.log"
echo "== bench summary"
grep -vE '^(wrote|mask workspace)' "$OUT/bench.log" | tail -40
