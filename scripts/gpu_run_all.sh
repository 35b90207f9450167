#!/usr/bin/env bash
# Every GPU test and every kernel bench (K1-K6, A1, fp8/tiered, graphs) in one device call, on
# one card, so that the BENCHMARKS.md rows compare within one run.
#
# On the dev machine (no GPU needed), pack the executables with their non-system libraries:
#   scripts/gpu_run_all.sh pack [BUILD_DIR]      # -> .carry/all.tgz (git-ignored)
# On the device machine (the `run` tool, carrying .carry/all.tgz):
#   PHASE=tests  bash scripts/gpu_run_all.sh     # all GPU tests + memcheck on small cases
#   PHASE=bench1 COMMIT=<sha> bash scripts/gpu_run_all.sh  # K1-K3, A1, K6 (+ PyTorch SDPA)
#   PHASE=bench2 COMMIT=<sha> bash scripts/gpu_run_all.sh  # K4, K5 / fp8 / tiered, graphs
#   PHASE=all    ...                              # all three (over 10 minutes on an H100)
# (each phase fits one 10-minute device call; run them back to back on the same warm machine)
# Results go to $OUT (default /tmp/gpu_out): <bench>-<gpu>-<yyyymmdd>.json and logs.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tests=(kernels_gpu_test kernels_ops_gpu_test attention_cuda_gpu_test attention_prefill_gpu_test
       hip_cuda_gpu_test hip_prefill_mask_gpu_test hip_decode_graph_gpu_test bsa_prefill_gpu_test
       kvstore_cache_gpu_test)
benches=(bench_hip_decode bench_decode_kv bench_decode_graph bench_hip_prefill bench_attention
         bench_prefill)

if [[ "${1:-}" == "pack" ]]; then
  build=${2:-build/cuda}
  dst=$repo/.carry/all
  rm -rf "$dst" && mkdir -p "$dst/bin" "$dst/lib"
  for t in "${tests[@]}" "${benches[@]}"; do
    f=$(find "$build" -type f -name "$t" -perm -u+x | head -1)
    [[ -n "$f" ]] || { echo "gpu_run_all: $t not built in $build" >&2; exit 1; }
    cp "$f" "$dst/bin/" && strip "$dst/bin/$t"
  done
  ldd "$dst"/bin/* | awk '/=>/ {print $3}' | sort -u |
    grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|libmvec|ld-linux[^/]*)\.so|libcuda|libcudart|libcublas|libnccl' |
    while read -r l; do cp -L "$l" "$dst/lib/"; done
  tar czf "$repo/.carry/all.tgz" -C "$repo/.carry" all
  echo "packed $(ls "$dst/bin" | wc -l) executables, $(ls "$dst/lib" | wc -l) libs: $(du -h "$repo/.carry/all.tgz" | cut -f1)"
  exit 0
fi

unpack=/tmp/hipserve_carry
if [[ ! -x $unpack/all/bin/bench_hip_decode ]]; then
  mkdir -p $unpack && tar xzf "$repo/.carry/all.tgz" -C $unpack || { echo "no .carry/all.tgz"; exit 1; }
fi
. "$repo/bench/gpu_env.sh"
gpu_env $unpack/all /tmp/gpu_out
B=$C/bin
echo "$commit" >"$OUT/commit.txt"  # scripts/gpu_status_update.py stamps the docs with it
phase=${PHASE:-all}

if [[ $phase == tests || $phase == all ]]; then
  fails=0
  for t in "${tests[@]}"; do
    timeout 240 "$B/$t" > "$OUT/$t.log" 2>&1
    rc=$?
    echo "$t rc=$rc $(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]+ test' "$OUT/$t.log" | tr '\n' ' ')"
    [[ $rc == 0 ]] || { fails=$((fails + 1)); grep -E "Failure|FAILED|Expected|Which is" "$OUT/$t.log" | head -20; }
  done
  echo "== memcheck (small cases)"
  timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$B/attention_cuda_gpu_test" \
    --gtest_filter='*t100*:*hd64*:*no_blocks*' 2>&1 | tail -2
  echo "memcheck attention rc=${PIPESTATUS[0]}"
  echo "GPU test binaries failed: $fails"
fi

run() { local name=$1; shift; echo "== $name"; timeout "${T:-200}" "$@" 2>&1 | tee "$OUT/$name.log" | tail -${TAILN:-30}; echo "$name rc=${PIPESTATUS[0]}"; }
if [[ $phase == bench1 || $phase == all ]]; then
  T=150 run bench_hip_decode "$B/bench_hip_decode" --json "$OUT/hip_decode-$gpu-$day.json" --commit "$commit"
  T=150 run bench_attention "$B/bench_attention" --json "$OUT/attention_raw.json" --commit "$commit"
  T=120 run sdpa_decode python3 "$repo/bench/kernels/sdpa_baseline.py" --ours "$OUT/attention_raw.json" \
    --out "$OUT/attention_decode-$gpu-$day.json"
  T=150 run bench_prefill "$B/bench_prefill" --json "$OUT/prefill_raw.json" --commit "$commit"
  T=120 run sdpa_prefill python3 "$repo/bench/kernels/prefill_sdpa.py" --ours "$OUT/prefill_raw.json" \
    --out "$OUT/prefill-$gpu-$day.json"
fi
if [[ $phase == bench2 || $phase == all ]]; then
  T=200 run bench_hip_prefill "$B/bench_hip_prefill" --json "$OUT/hip_prefill-$gpu-$day.json" \
    --commit "$commit" ${PREFILL_ARGS:-}
  T=200 run bench_decode_kv "$B/bench_decode_kv" --json "$OUT/decode_kv-$gpu-$day.json" --commit "$commit"
  T=150 run bench_decode_graph "$B/bench_decode_graph" --json "$OUT/decode_graph-$gpu-$day.json" \
    --commit "$commit"
fi
