#!/usr/bin/env bash
# Sets up (scripts/setup.sh), checks the formatting (scripts/check_format.sh) and runs every CPU
# test. GPU tests (label gpu) are not run here; see docs/GPU.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Every C++/CUDA file formatted (.clang-format); fails listing the ones that are not.
scripts/check_format.sh
export HIPSERVE_DEFAULT_MODEL
HIPSERVE_DEFAULT_MODEL="$(scripts/fetch-model.sh | tail -n1)"
# ThreadSanitizer over the concurrent KV store (small: only kvstore and common are built).
if [[ "${HIPSERVE_SKIP_TSAN:-0}" != 1 ]]; then
  tsan_log="${TMPDIR:-/tmp}/hipserve-tsan-build.log"
  if ! { cmake --preset tsan && cmake --build build/tsan --target kvstore_concurrency_test \
           kvstore_paged_store_test kvstore_token_cache_test; } >"$tsan_log" 2>&1; then
    tail -n 60 "$tsan_log" >&2
    echo "test.sh: the TSan build failed (log: $tsan_log)" >&2
    exit 1
  fi
  TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build/tsan \
    -R '^kvstore_(concurrency|paged_store|token_cache)_test$' --output-on-failure
fi
# libFuzzer over the parsers, tokenizer, chat templates and request validation (tests/fuzz;
# clang + ASan/UBSan into build/fuzz): HIPSERVE_FUZZ_SECONDS per target (default 20); a crash,
# a sanitizer report or a hang fails.
if [[ "${HIPSERVE_SKIP_FUZZ:-0}" != 1 ]]; then
  scripts/fuzz.sh
fi
ctest --test-dir "${HIPSERVE_BUILD_DIR:-build}" -L cpu --output-on-failure -j"$(nproc)"
