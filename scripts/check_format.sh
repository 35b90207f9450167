#!/usr/bin/env bash
# Fails, listing the files, when a tracked C++/CUDA source or header is not formatted as
# .clang-format says (Google style, 100 columns). CI runs it from scripts/test.sh.
#
# Usage: scripts/check_format.sh [--fix]   (--fix rewrites the files in place)
# Env:   CLANG_FORMAT  the binary (default: clang-format; Debian 12's is version 14, the one CI
#                      uses; other versions may disagree on a few lines)
set -euo pipefail
cd "$(dirname "$0")/.."

fix=0
case "${1:-}" in
  --fix) fix=1 ;;
  "") ;;
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "check_format.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
if ! command -v "$CLANG_FORMAT" >/dev/null; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "check_format: installing clang-format" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-format >/dev/null
fi

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- '*.cc' '*.h' '*.cu' '*.cuh' '*.inc')
else  # a source tarball
  mapfile -t files < <(find . -path ./build -prune -o -type f \( -name '*.cc' -o -name '*.h' \
    -o -name '*.cu' -o -name '*.cuh' -o -name '*.inc' \) -print | sed 's|^\./||' | sort)
fi
if ((fix)); then
  printf '%s\0' "${files[@]}" | xargs -0 -n 32 "$CLANG_FORMAT" -i
  exit 0
fi
# One clang-format per file (in parallel) so that the failure lists file names.
bad=$(printf '%s\0' "${files[@]}" | xargs -0 -P "$(nproc)" -I{} sh -c \
  '"$0" --dry-run --Werror "$1" >/dev/null 2>&1 || echo "$1"' "$CLANG_FORMAT" {} | sort)
if [[ -n "$bad" ]]; then
  echo "check_format: not formatted ($("$CLANG_FORMAT" --version | head -1)):" >&2
  sed 's/^/  /' <<<"$bad" >&2
  echo "check_format: run scripts/check_format.sh --fix (or clang-format -i FILE) and commit" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files formatted" >&2
