#!/usr/bin/env bash
# The GPU worker end to end on a device machine, from a relocatable bundle (scripts/bundle.sh):
# the worker's GPU tests, `hipserve serve --backend=cuda` answering through gRPC, and
# `hipserve bench` against the Llama-3.1-8B preset (random weights) in dense mode.
#
# Usage (on the device machine, from the repo root):
#   BUNDLE=.carry/hb.txz PHASE=tests bash scripts/gpu_worker_run.sh   # GPU tests + serve smoke
#   BUNDLE=.carry/hb.txz PHASE=bench bash scripts/gpu_worker_run.sh   # 8B preset through gRPC
#   PHASE=a5 bash scripts/gpu_worker_run.sh    # SmolLM2 A5 + README question (model in cache)
# Env: OUT (results folder, default /tmp/out), COMMIT (recorded in the JSON names),
#      BENCH_CASES (space-separated "name:prompt_tokens:max_tokens:concurrency:requests").
# Every process gets NCCL_NVLS_ENABLE=0.
set -uo pipefail
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
COMMIT=${COMMIT:-unknown}
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
  (cd / && "$B/bin/worker_cuda_backend_gpu_test") 2>&1 | tee "$OUT/worker_cuda_backend_gpu_test.txt"
  for t in "$B"/bin/*_gpu_test; do
    [[ "$t" == *worker_cuda_backend_gpu_test ]] && continue
    (cd / && "$t") 2>&1 | tail -30 | tee "$OUT/$(basename "$t").txt"
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
*)
  echo "PHASE must be tests, bench or a5"; exit 2 ;;
esac
