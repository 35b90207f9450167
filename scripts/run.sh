#!/usr/bin/env bash
# Sets up, then starts `hipserve serve` with the default model and asks it one question through
# the gRPC API as a chat message (the answer streams to stdout). Extra arguments go to
# `hipserve serve`; HIPSERVE_PROMPT replaces the question.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${HIPSERVE_BUILD_DIR:-build}/bin/hipserve" serve \
  --chat --prompt="${HIPSERVE_PROMPT:-What is the capital of France?}" "$@"
