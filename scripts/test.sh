#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every CPU test. GPU tests (label gpu) are not run here;
# see docs/GPU.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HIPSERVE_DEFAULT_MODEL
HIPSERVE_DEFAULT_MODEL="$(scripts/fetch-model.sh | tail -n1)"
ctest --test-dir "${HIPSERVE_BUILD_DIR:-build}" -L cpu --output-on-failure -j"$(nproc)"
