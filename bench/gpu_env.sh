# shellcheck shell=bash disable=SC2034
# Shared prelude of the device-machine scripts (bench/*/run_*_on_gpu.sh, scripts/gpu_run_all.sh);
# source it, do not run it:  gpu_env <carry dir> <default OUT>
# - NVLink multicast off (NCCL, torch symmetric memory, NVSHMEM), unbuffered Python;
# - the carried libs (<carry>/lib) first on LD_LIBRARY_PATH, and <carry>/fallback (a libcudart)
#   last, only where the machine has no libcudart.so.13;
# - OUT (kept if set; else the default) made, the card's name/driver/clocks in $OUT/gpu.txt;
# - sets C (the carry dir), gpu (h100 / h200 / gpu), day (yyyymmdd, UTC), commit ($COMMIT or
#   "unknown") and gtest_summary (a grep -E pattern for the gtest result lines worth showing).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
gtest_summary='^\[  (FAILED|PASSED|SKIPPED) |OK \]|Failure|error|Expected|Which is'

gpu_env() {
  C=$1
  local abs=$C
  [[ $abs == /* ]] || abs=$PWD/$C
  export LD_LIBRARY_PATH=$abs/lib:${LD_LIBRARY_PATH:-}
  if [[ -d $abs/fallback ]] && ! ldconfig -p 2>/dev/null | grep -q libcudart.so.13; then
    export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$abs/fallback
  fi
  OUT=${OUT:-$2}
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv | tee "$OUT/gpu.txt"
  local name
  name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  case "$name" in *H200*) gpu=h200 ;; *H100*) gpu=h100 ;; *) gpu=gpu ;; esac
  day=$(date -u +%Y%m%d)
  commit=${COMMIT:-unknown}
}
