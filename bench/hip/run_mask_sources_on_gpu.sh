#!/bin/bash
# Device run of the HiP mask key-source work: gpu tests, memcheck on small cases (tiered host
# reads included), bench_hip_decode S1 rows. Expects stripped binaries in <dir>/bin and their
# absl libs in <dir>/lib, where <dir> holds this script (copy it to .carry/mk/). Logs under $OUT.
# Usage: bash .carry/mk/run.sh <commit>
export NCCL_NVLS_ENABLE=0
cd "$(dirname "$0")/bin"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/gpu.txt
rc=0
t() { local name=$1 lim=$2; shift 2; timeout $lim "$@" > $OUT/$name.log 2>&1; local r=$?; echo "$name rc=$r $(grep -E '^\[  (PASSED|FAILED)' $OUT/$name.log | tr '\n' ' ')"; [ $r -ne 0 ] && rc=1; }
t test_hip_cuda 170 ./hip_cuda_gpu_test
grep -E 'FAILED|Failure|expected|Which is' $OUT/test_hip_cuda.log | head -20
t test_prefill 60 ./hip_prefill_mask_gpu_test
t test_graph 60 ./hip_decode_graph_gpu_test
t bench 150 ./bench_hip_decode --lens 1048576 --a1_lens none --reps 20 --src_lens 1048576 --src_hits 99,90,50 --commit $1 --json $OUT/bench_s1.json
sed -n '/^T  *kind/,$p' $OUT/bench.log | head -40
cs="compute-sanitizer --tool memcheck --error-exitcode 9"
t memcheck_keysrc 110 $cs ./hip_cuda_gpu_test --gtest_filter='Decode/MaskKeySourceGpuTest.*t4k*:Prefill/MaskKeySourceGpuTest.*pre_fp8bank_t4k_g3*:Prefill/MaskKeySourceGpuTest.*pre_bf16bank_t4k_g4_hit50*:MaskKeySourceGpuArgs.*:Cases/HipMaskGpuTest.AllStagesEqualCpuReference/small_t4k_g8'
tail -3 $OUT/memcheck_keysrc.log
exit $rc
