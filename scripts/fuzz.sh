#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz: GGUF, safetensors, HF JSON, tokenizer, chat
# template, request validation) with clang, ASan and UBSan into build/fuzz, then runs each one
# for a bounded time from its seed corpus (tests/fuzz/corpus/<target>). Fails on a crash, a
# sanitizer report, a hang (-timeout) or an out-of-memory; the input that did it is kept in
# build/fuzz/artifacts and the command that replays it is printed.
#
# Usage: scripts/fuzz.sh [--build-only] [target ...]     (targets: default all)
# Env:   HIPSERVE_FUZZ_SECONDS  seconds per target (default 20)
#        HIPSERVE_FUZZ_TIMEOUT  seconds one input may take before it counts as a hang (default 10)
#        HIPSERVE_FUZZ_DIR      build directory (default build/fuzz)
#        HIPSERVE_FUZZ_ARGS     extra libFuzzer flags (e.g. -use_value_profile=1)
#        HIPSERVE_FUZZ_KEEP_CORPUS=1  start from the inputs earlier runs found (build/fuzz/corpus)
#                               as well as the seeds (default: the seeds only)
# Replay one input: build/fuzz/<target>_fuzzer <file>. A crashing input that was fixed belongs
# in tests/fuzz/corpus/<target>/ as crash-<name>, so that every later run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(gguf safetensors hf_json tokenizer chat_template request_validation)
build_only=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    *) targets+=("$arg") ;;
  esac
done
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")

dir="${HIPSERVE_FUZZ_DIR:-build/fuzz}"
seconds="${HIPSERVE_FUZZ_SECONDS:-20}"
timeout="${HIPSERVE_FUZZ_TIMEOUT:-10}"
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (scripts/setup.sh)" >&2; exit 1; }

mkdir -p "$dir"
log="$dir/build.log"
if [[ ! -f "$dir/build.ninja" ]]; then
  cmake -S tests/fuzz -B "$dir" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    >"$log" 2>&1 || { cat "$log" >&2; echo "fuzz.sh: configure failed" >&2; exit 1; }
fi
start=$SECONDS
if ! cmake --build "$dir" --target "${targets[@]/%/_fuzzer}" -- -j"$(nproc)" >"$log" 2>&1; then
  grep -E -A5 "error|FAILED" "$log" | head -n 80 >&2
  echo "fuzz.sh: build failed; full log: $log" >&2
  exit 1
fi
echo "fuzz.sh: built ${#targets[@]} targets in $((SECONDS - start)) s" >&2
((build_only)) && exit 0

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
artifacts="$dir/artifacts"
mkdir -p "$artifacts"
failed=()
for t in "${targets[@]}"; do
  seeds="tests/fuzz/corpus/$t"
  [[ -d "$seeds" ]] || { echo "fuzz.sh: no seed corpus $seeds" >&2; exit 1; }
  # New inputs go to a scratch corpus (first directory), never into the seeds.
  work="$dir/corpus/$t"
  [[ "${HIPSERVE_FUZZ_KEEP_CORPUS:-0}" == 1 ]] || rm -rf "$work"
  mkdir -p "$work"
  out="$dir/$t.log"
  # shellcheck disable=SC2086
  if "$dir/${t}_fuzzer" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 \
       -artifact_prefix="$artifacts/$t-" -print_final_stats=1 ${HIPSERVE_FUZZ_ARGS:-} \
       "$work" "$seeds" >"$out" 2>&1; then
    echo "fuzz.sh: $t ok ($(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$out" |
      grep -Eo '[0-9]+$' || echo '?') runs in ${seconds} s)" >&2
  else
    tail -n 60 "$out" >&2
    echo "fuzz.sh: $t FAILED (log: $out; input: $(ls -t "$artifacts/$t-"* 2>/dev/null |
      head -n1); replay: $dir/${t}_fuzzer <input>)" >&2
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: failed: ${failed[*]}" >&2
  exit 1
fi
