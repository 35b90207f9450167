#!/usr/bin/env bash
# The GPU worker end to end on a device machine, from a relocatable bundle (scripts/bundle.sh):
# the worker's GPU tests, `hipserve serve --backend=cuda` answering through gRPC, and
# `hipserve bench` against the Llama-3.1-8B preset (random weights) in dense mode.
#
# Usage (on the device machine, from the repo root):
#   BUNDLE=.carry/hb.txz PHASE=tests bash scripts/gpu_worker_run.sh   # GPU tests + serve smoke
#   BUNDLE=.carry/hb.txz PHASE=bench bash scripts/gpu_worker_run.sh   # 8B preset through gRPC
#   PHASE=a5 bash scripts/gpu_worker_run.sh    # SmolLM2 A5 + README question (model in cache)
#   PHASE=e3e4 bash scripts/gpu_worker_run.sh  # 8B preset: TTFT at 128K and 32 streams, HiP vs
#                                              # dense, each mode its own server, one call
#   PHASE=offload bash scripts/gpu_worker_run.sh  # 8B preset, HiP, KV offloaded: E1/E2 (BENCH_CASES,
#                                                 # HOST_KV, CHUNK, MAX_CONTEXT, OFFLOAD_FLAGS)
#   OLD=dir PHASE=kernels bash scripts/gpu_worker_run.sh   # prefill kernels, old vs new build
# Env: OUT (results folder, default /tmp/out), COMMIT (recorded in the JSON names),
#      BENCH_CASES (space-separated "name:prompt_tokens:max_tokens:concurrency:requests").
# Every process gets NCCL_NVLS_ENABLE=0.
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
COMMIT=${COMMIT:-unknown}
echo "$COMMIT" >"$OUT/commit.txt"  # scripts/gpu_status_update.py stamps the docs with it
PHASE=${PHASE:-tests}
ROOT=/tmp/hipserve-bundle
if [[ -n "${BUNDLE:-}" ]]; then
  rm -rf "$ROOT" && mkdir -p "$ROOT" && tar xJf "$BUNDLE" -C "$ROOT" || exit 1
fi
B=$(ls -d "$ROOT"/hipserve-*/ 2>/dev/null | head -1)
[[ -n "$B" ]] || { echo "no bundle unpacked under $ROOT"; exit 1; }
H="$B/bin/hipserve"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

# serve_wait PORT LOG ARGS...: starts `hipserve serve` in the background; waits for readiness.
serve_wait() {
  local port=$1 log=$2
  shift 2
  (cd / && exec "$H" serve --port="$port" "$@") >"$log" 2>&1 &
  SERVER_PID=$!
  "$H" generate --server=localhost:"$port" --wait_ready_s=600 --prompt=hi --max_tokens=1 \
    >/dev/null 2>&1 || { echo "server on $port did not become ready:"; tail -20 "$log"; return 1; }
}
stop_server() { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; }

case "$PHASE" in
tests)
  for t in "$B"/bin/*_gpu_test; do
    (cd / && timeout "${TEST_TIMEOUT:-240}" "$t") >"$OUT/$(basename "$t").txt" 2>&1
    echo "== $(basename "$t") rc=$?"
    grep -E "^\[  (PASSED|FAILED) |^\[ +(logits|greedy|hip)|Failure|case " "$OUT/$(basename "$t").txt" | head -40
  done
  # serve --backend=cuda on a preset with GPU-supported shapes, through the gRPC API.
  serve_wait 50051 "$OUT/serve_2l.log" --model=random:llama-3.1-8b-2l --backend=cuda &&
    "$H" generate --server=localhost:50051 --prompt="Tell me a story" --max_tokens=16 \
      --temperature=0 2>&1 | tee "$OUT/generate_2l.txt"
  stop_server
  grep -E "backend|memory plan" "$OUT/serve_2l.log" | head -5
  ;;
bench)
  CASES=${BENCH_CASES:-"b1-4k:4096:128:1:2 b1-32k:32768:64:1:1 c32-4k:4096:64:32:64 b1-128k:131072:32:1:1"}
  t0=$(date +%s)
  serve_wait 50061 "$OUT/serve_8b.log" --model=random:llama-3.1-8b --backend=cuda \
    --chunk=4096 --max_context=200000 || { tail -30 "$OUT/serve_8b.log"; exit 1; }
  echo "8B preset ready after $(( $(date +%s) - t0 )) s"
  grep -E "memory plan|backend" "$OUT/serve_8b.log" | head -5
  for c in $CASES; do
    IFS=: read -r name p m conc n <<<"$c"
    "$H" bench --server=localhost:50061 --prompt_tokens="$p" --max_tokens="$m" \
      --concurrency="$conc" --num_requests="$n" --warmup_requests=0 --timeout_s=540 \
      --noprogress --json_out="$OUT/bench-8b-dense-$name-$COMMIT.json" 2>&1 | tail -25
  done
  stop_server
  ;;
a5)
  export HIPSERVE_A5_REQUIRE_MODEL=1
  (cd / && "$B/bin/worker_cuda_backend_gpu_test") 2>&1 | tee "$OUT/a5_smollm2.txt"
  serve_wait 50071 "$OUT/serve_default.log" --backend=cuda &&
    "$H" generate --server=localhost:50071 --chat --prompt="What is the capital of France?" \
      --max_tokens=32 --temperature=0 2>&1 | tee "$OUT/readme_question.txt"
  stop_server
  grep -E "backend|memory plan" "$OUT/serve_default.log" | head -5
  ;;
e3e4)
  # E3: TTFT of a 128K prompt; E4 (reduced to what fits without offload): 32 streams.
  CASES=${BENCH_CASES:-"e3-128k:131072:16:1:1 e4-c32-8k:8192:64:32:32"}
  for mode in ${E3E4_MODES:-dense hip}; do
    t0=$(date +%s)
    export HIPSERVE_PROFILE=1
    serve_wait 50081 "$OUT/serve_8b_$mode.log" --model=random:llama-3.1-8b \
      --backend=cuda --attention=$mode --chunk="${CHUNK:-4096}" --max_context=200000 ${HIP_FLAGS:-} ||
      { tail -30 "$OUT/serve_8b_$mode.log"; continue; }
    echo "$mode: 8B preset ready after $(( $(date +%s) - t0 )) s"
    for c in $CASES; do
      IFS=: read -r name p m conc n <<<"$c"
      "$H" bench --server=localhost:50081 --prompt_tokens="$p" --max_tokens="$m" \
        --concurrency="$conc" --num_requests="$n" --warmup_requests=0 --timeout_s=400 \
        --noprogress --json_out="$OUT/bench-8b-$mode-$name-$COMMIT.json" 2>&1 | tail -12
    done
    stop_server
    grep -E "profile" "$OUT/serve_8b_$mode.log" | tail -4
  done
  ;;
offload)
  # E1/E2: the 8B preset in HiP mode with the KV offloaded (fp8 host tier + GPU hot pages): real
  # prefills through gRPC (TTFT = prefill time), then decode tokens/s, per context length. The
  # host tier and the hot pool are logged in the memory plan; GPU and pinned memory after each.
  CASES=${BENCH_CASES:-"e1-128k:131072:64:1:1"}
  export HIPSERVE_PROFILE=1
  t0=$(date +%s)
  serve_wait 50091 "$OUT/serve_8b_offload.log" --model=random:llama-3.1-8b --backend=cuda \
    --attention=hip --kv_offload=on --host_kv_bytes="${HOST_KV:-40GiB}" \
    --chunk="${CHUNK:-4096}" --max_context="${MAX_CONTEXT:-1100000}" ${OFFLOAD_FLAGS:-} ||
    { tail -30 "$OUT/serve_8b_offload.log"; exit 1; }
  echo "offload: 8B preset ready after $(( $(date +%s) - t0 )) s"
  grep -E "memory plan|kv_offload" "$OUT/serve_8b_offload.log" | head -4
  for c in $CASES; do
    IFS=: read -r name p m conc n <<<"$c"
    "$H" bench --server=localhost:50091 --prompt_tokens="$p" --max_tokens="$m" \
      --concurrency="$conc" --num_requests="$n" --warmup_requests=0 --timeout_s=580 \
      --noprogress --json_out="$OUT/bench-8b-offload-$name-$COMMIT.json" 2>&1 | tail -12
    nvidia-smi --query-gpu=memory.used --format=csv,noheader
    grep -E "VmRSS|VmPin|VmLck" /proc/$(pgrep -f "hipserve worker" | head -1)/status 2>/dev/null
    grep -E "profile" "$OUT/serve_8b_offload.log" | tail -2
  done
  "$H" inspect --server=localhost:50091 2>&1 | grep -iE "kv|memory" | head -12
  stop_server
  ;;
kernels)
  # The prefill kernels of this build against an older one (OLD: a bundle dir with bin/), in
  # one call on one card, alternating old/new.
  for t in attention_prefill_gpu_test bsa_prefill_gpu_test; do
    (cd / && "$B/bin/$t") 2>&1 | grep -E "^\[  (PASSED|FAILED)|tests ran" | tee "$OUT/$t.txt"
  done
  for round in $(seq 1 "${ROUNDS:-2}"); do
    for which in old new; do
      dir=$B; [[ $which == old ]] && dir=$OLD
      "$dir/bin/bench_prefill" --lens 32768,131072 --reps 10 --kv bf16 \
        --json "$OUT/prefill-$which-$round.json" --commit "$which" 2>&1 | tail -6
      "$dir/bin/bench_hip_prefill" --dense_1m none --exact 0 --reps 5 --reps_long 1 \
        --t1m 131072 --bsa_fp8 1 --json "$OUT/hip_prefill-$which-$round.json" --commit "$which" \
        2>&1 | tail -14
    done
  done
  ;;
*)
  echo "PHASE must be tests, bench, a5, e3e4, offload or kernels"; exit 2 ;;
esac
