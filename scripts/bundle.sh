#!/usr/bin/env bash
# Make a relocatable hipserve bundle:
#
#   OUT_DIR/hipserve-<version>-linux-<arch>/
#     bin/hipserve              the one binary
#     bin/<extra>               executables given with --extra
#     tests/<test binaries>     with --with-tests (the test executables ctest runs)
#     lib/                      every non-system shared library the executables need (transitively)
#     BUNDLE_INFO               version, arch, minimum glibc/libstdc++ symbol versions, file list
#   OUT_DIR/hipserve-<version>-linux-<arch>.tar.gz
#
# Usage: scripts/bundle.sh [options] [BUILD_DIR] [OUT_DIR]
#   BUILD_DIR  CMake build tree (default: build/cuda-release, else build/cpu-release)
#   OUT_DIR    where the bundle directory and the tarball go (default: <repo>/dist)
# Options:
#   --binary PATH     the hipserve executable (default: found in BUILD_DIR)
#   --extra PATH      another executable to put in bin/ (repeatable)
#   --with-tests      also bundle the test executables registered with ctest in BUILD_DIR
#   --version V       version string (default: `hipserve --version`, then CMakeCache, then
#                     project(... VERSION ...) in CMakeLists.txt)
#   --strip           strip debug info from the bundled copies (RPATH is untouched)
#   --no-tarball      only make the directory
#   -v, --verbose     say what is copied
#   -h, --help
#
# Libraries are resolved with ldd and copied (dereferenced) into lib/ under their DT_NEEDED names.
# Not bundled, on purpose:
#   - the C/C++ runtime the target system must provide: glibc (libc, libm, libmvec, libpthread,
#     libdl, librt, libresolv, libutil, ld-linux, ...), libstdc++, libgcc_s;
#   - the NVIDIA driver and CUDA/NCCL libraries, which come from the host driver or the CUDA base
#     image: libcuda*, libnvidia*, libnccl*, libcublas*, libcublasLt*, libcudart* (CMake links
#     cudart statically by default, so the binary normally has no libcudart dependency at all).
# The executables must already carry DT_RPATH $ORIGIN/../lib (CMake links them with
# -Wl,--disable-new-dtags -Wl,-rpath,$ORIGIN/../lib); this script checks it and patches nothing.
# DT_RPATH (not DT_RUNPATH) matters: it also applies to the dependencies of bundled libraries.
set -Eeuo pipefail

prog=bundle.sh
trap 'echo "$prog: error: unexpected failure at line $LINENO" >&2' ERR
die() { echo "$prog: error: $*" >&2; exit 1; }
warn() { echo "$prog: warning: $*" >&2; }
say() { if [[ $verbose == 1 ]]; then echo "$prog: $*"; fi; }

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

binary=""
extras=()
with_tests=0
version=""
strip_debug=0
tarball=1
verbose=0
positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) [[ $# -ge 2 ]] || die "--binary needs a path"; binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --extra) [[ $# -ge 2 ]] || die "--extra needs a path"; extras+=("$2"); shift 2 ;;
    --extra=*) extras+=("${1#*=}"); shift ;;
    --with-tests) with_tests=1; shift ;;
    --version) [[ $# -ge 2 ]] || die "--version needs a value"; version=$2; shift 2 ;;
    --version=*) version=${1#*=}; shift ;;
    --strip) strip_debug=1; shift ;;
    --no-tarball) tarball=0; shift ;;
    -v|--verbose) verbose=1; shift ;;
    -h|--help) sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; positional+=("$@"); break ;;
    -*) die "unknown option: $1 (see --help)" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -le 2 ]] || die "too many arguments: ${positional[*]} (see --help)"

for tool in ldd readelf tar gzip; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required but not on PATH"
done

# ---- Inputs ----------------------------------------------------------------------------------
build_dir=${positional[0]:-}
if [[ -z $build_dir ]]; then
  for d in "$repo_root/build/cuda-release" "$repo_root/build/cpu-release"; do
    if [[ -d $d ]]; then build_dir=$d; break; fi
  done
  [[ -n $build_dir || -n $binary ]] ||
    die "no BUILD_DIR given and neither build/cuda-release nor build/cpu-release exists"
fi
if [[ -n $build_dir ]]; then
  [[ -d $build_dir ]] || die "BUILD_DIR '$build_dir' is not a directory"
  build_dir=$(cd "$build_dir" && pwd)
fi
out_dir=${positional[1]:-$repo_root/dist}
mkdir -p "$out_dir" || die "cannot create OUT_DIR '$out_dir'"
out_dir=$(cd "$out_dir" && pwd)

is_elf_exe() {  # an ELF executable (EXEC or PIE DYN with an interpreter)
  [[ -f $1 && -x $1 ]] || return 1
  local hdr
  hdr=$(LC_ALL=C readelf -h "$1" 2>/dev/null) || return 1
  grep -Eq 'Type:[[:space:]]+(EXEC|DYN)' <<<"$hdr" || return 1
  local phdrs
  phdrs=$(LC_ALL=C readelf -l "$1" 2>/dev/null) || return 1
  grep -q 'Requesting program interpreter' <<<"$phdrs"
}

if [[ -z $binary ]]; then
  [[ -n $build_dir ]] || die "give BUILD_DIR or --binary"
  mapfile -t found < <(find "$build_dir" -type f -name hipserve -perm -u+x \
                         -not -path '*/CMakeFiles/*' 2>/dev/null | sort)
  [[ ${#found[@]} -gt 0 ]] || die "no 'hipserve' executable under $build_dir (build it first, or pass --binary)"
  [[ ${#found[@]} -eq 1 ]] || die "several 'hipserve' executables under $build_dir: ${found[*]} (pass --binary)"
  binary=${found[0]}
fi
[[ -e $binary ]] || die "binary '$binary' does not exist"
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
is_elf_exe "$binary" || die "'$binary' is not a dynamically linked ELF executable"

for i in "${!extras[@]}"; do
  e=${extras[$i]}
  [[ -e $e ]] || die "extra executable '$e' does not exist"
  e=$(cd "$(dirname "$e")" && pwd)/$(basename "$e")
  is_elf_exe "$e" || die "extra '$e' is not a dynamically linked ELF executable"
  extras[$i]=$e
done

tests=()
if [[ $with_tests == 1 ]]; then
  [[ -n $build_dir ]] || die "--with-tests needs BUILD_DIR"
  command -v ctest >/dev/null 2>&1 || die "--with-tests needs ctest on PATH"
  command -v python3 >/dev/null 2>&1 || die "--with-tests needs python3 (to read ctest's JSON)"
  # The first word of every registered test command that is an ELF executable in the build tree.
  mapfile -t cands < <(cd "$build_dir" && ctest --show-only=json-v1 2>/dev/null | python3 -c '
import json, os, sys
seen = set()
for t in json.load(sys.stdin).get("tests", []):
    cmd = t.get("command") or []
    if cmd and cmd[0] not in seen:
        seen.add(cmd[0]); print(cmd[0])
') || die "could not list tests with 'ctest --show-only=json-v1' in $build_dir"
  for c in "${cands[@]}"; do
    case "$c" in "$build_dir"/*) ;; *) continue ;; esac  # skip /bin/bash, python3, ...
    if is_elf_exe "$c" && [[ $c != "$binary" ]]; then tests+=("$c"); fi
  done
  [[ ${#tests[@]} -gt 0 ]] || warn "--with-tests: no test executables registered in $build_dir"
fi

# ---- Version and arch ------------------------------------------------------------------------
semver_re='[0-9]+\.[0-9]+\.[0-9]+([-+.][0-9A-Za-z.+-]*)?'
if [[ -z $version ]]; then
  if out=$(cd / && timeout 20 "$binary" --version 2>/dev/null); then
    version=$(grep -Eo "$semver_re" <<<"$out" | head -n1 || true)
  fi
fi
if [[ -z $version && -n $build_dir && -f $build_dir/CMakeCache.txt ]]; then
  version=$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//{p;q}' "$build_dir/CMakeCache.txt")
fi
if [[ -z $version && -f $repo_root/CMakeLists.txt ]]; then
  version=$(tr '\n' ' ' <"$repo_root/CMakeLists.txt" |
            grep -Eo 'project\([[:space:]]*hipserve[^)]*VERSION[[:space:]]+[0-9][0-9.]*' |
            grep -Eo '[0-9][0-9.]*$' | head -n1 || true)
fi
[[ -n $version ]] || die "cannot tell the version (hipserve --version, CMakeCache.txt, CMakeLists.txt); pass --version"
[[ $version =~ ^[0-9A-Za-z.+_-]+$ ]] || die "version '$version' has characters unfit for a file name"

machine=$(LC_ALL=C readelf -h "$binary" | sed -n 's/^ *Machine: *//p')
case "$machine" in
  *X86-64*) arch=x86_64 ;;
  *AArch64*) arch=aarch64 ;;
  *) die "unsupported ELF machine '$machine'" ;;
esac
name=hipserve-$version-linux-$arch

# ---- RPATH check (patch nothing) ---------------------------------------------------------------
check_rpath() {
  local f=$1 dyn rpath
  dyn=$(LC_ALL=C readelf -d "$f") || die "readelf -d failed on $f"
  rpath=$(sed -n 's/.*(RPATH).*Library rpath: \[\(.*\)\]/\1/p' <<<"$dyn")
  if [[ -z $rpath ]]; then
    if grep -q '(RUNPATH)' <<<"$dyn"; then
      die "$f has DT_RUNPATH, not DT_RPATH: link with -Wl,--disable-new-dtags -Wl,-rpath,\$ORIGIN/../lib"
    fi
    die "$f has no DT_RPATH: link with -Wl,--disable-new-dtags -Wl,-rpath,\$ORIGIN/../lib"
  fi
  local IFS=: p ok=0
  for p in $rpath; do
    [[ $p == '$ORIGIN/../lib' || $p == '${ORIGIN}/../lib' ]] && ok=1
    if [[ $p == /* ]]; then say "note: $(basename "$f") RPATH also has build path '$p' (harmless once relocated)"; fi
  done
  [[ $ok == 1 ]] || die "$f: DT_RPATH '$rpath' lacks \$ORIGIN/../lib"
}
check_rpath "$binary"
for e in "${extras[@]}" "${tests[@]}"; do check_rpath "$e"; done

# ---- Library resolution ------------------------------------------------------------------------
is_excluded() {  # $1 = soname
  case "$1" in
    linux-vdso.so*|linux-gate.so*|ld-linux*.so*|ld64.so*) return 0 ;;
    libc.so*|libm.so*|libmvec.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*) return 0 ;;
    libutil.so*|libanl.so*|libnsl.so*|libBrokenLocale.so*|libthread_db.so*|libc_malloc_debug.so*) return 0 ;;
    libstdc++.so*|libgcc_s.so*) return 0 ;;
    libcuda.so*|libcudart.so*|libnvidia*|libnccl.so*|libcublas.so*|libcublasLt.so*) return 0 ;;
  esac
  return 1
}

declare -A libs=()   # soname -> resolved path
resolve_libs() {
  local f=$1 out line soname path
  out=$(LC_ALL=C ldd "$f" 2>&1) || die "ldd failed on $f: $out"
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*([^[:space:]]+)[[:space:]]+=\>[[:space:]]+not\ found ]]; then
      soname=${BASH_REMATCH[1]}
      is_excluded "$soname" && { warn "$(basename "$f") needs $soname, not found here (excluded: the target provides it)"; continue; }
      die "$(basename "$f") needs $soname, which ldd cannot find (set LD_LIBRARY_PATH or install it)"
    elif [[ $line =~ ^[[:space:]]*([^[:space:]]+)[[:space:]]+=\>[[:space:]]+(/[^[:space:]]+)[[:space:]]+\( ]]; then
      soname=${BASH_REMATCH[1]}; path=${BASH_REMATCH[2]}
      is_excluded "$soname" && continue
      if [[ -n ${libs[$soname]:-} && $(readlink -f "${libs[$soname]}") != $(readlink -f "$path") ]]; then
        die "$soname resolves to both ${libs[$soname]} and $path"
      fi
      libs[$soname]=$path
    fi
  done <<<"$out"
}
for f in "$binary" "${extras[@]}" "${tests[@]}"; do resolve_libs "$f"; done

# ---- Stage (in a temp dir, then swap in: re-running gives the same result) ----------------------
stage=$(mktemp -d "$out_dir/.$name.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/$name
mkdir -p "$root/bin" "$root/lib"

install_file() {  # src dst-dir [mode]
  local src=$1 dst
  dst=$2/$(basename "$1")
  cp -L "$src" "$dst" || die "cannot copy $src"
  chmod "${3:-0755}" "$dst"
  if [[ $strip_debug == 1 ]]; then
    command -v strip >/dev/null 2>&1 || die "--strip needs 'strip' (binutils)"
    strip --strip-debug "$dst" || die "strip failed on $dst"
  fi
  say "bundled $src"
}
install_file "$binary" "$root/bin"
[[ $(basename "$binary") == hipserve ]] || mv "$root/bin/$(basename "$binary")" "$root/bin/hipserve"
for e in "${extras[@]}"; do install_file "$e" "$root/bin"; done
if [[ ${#tests[@]} -gt 0 ]]; then
  mkdir -p "$root/tests"  # $ORIGIN/../lib from tests/ is the same lib/
  for t in "${tests[@]}"; do install_file "$t" "$root/tests"; done
fi
for soname in "${!libs[@]}"; do
  src=${libs[$soname]}
  cp -L "$src" "$root/lib/$soname" || die "cannot copy $src"
  chmod 0644 "$root/lib/$soname"
  [[ $strip_debug == 1 ]] && strip --strip-debug "$root/lib/$soname"
  runpath=$(LC_ALL=C readelf -d "$root/lib/$soname" | sed -n 's/.*(RUNPATH).*Library runpath: \[\(.*\)\]/\1/p')
  if [[ -n $runpath && $runpath != '$ORIGIN' && $runpath != '${ORIGIN}' ]]; then
    # Its own dependencies are looked up in its RUNPATH, not in the executable's RPATH.
    warn "$soname has DT_RUNPATH '$runpath': its dependencies may resolve outside the bundle"
  fi
  say "bundled $src as lib/$soname"
done

# Minimum runtime the target must provide (highest symbol versions referenced).
max_ver() {  # prefix
  local p=$1
  find "$root" -type f \( -path "$root/bin/*" -o -path "$root/tests/*" -o -path "$root/lib/*" \) \
    -exec sh -c 'LC_ALL=C readelf -V --wide "$1" 2>/dev/null' _ {} \; |
    { grep -Eo "Name: ${p}_[0-9.]+" || true; } | sed "s/Name: ${p}_//" |
    sort -t. -k1,1n -k2,2n -k3,3n -u | tail -n1
}
{
  echo "name: $name"
  echo "version: $version"
  echo "arch: $arch"
  v=$(max_ver GLIBC); echo "min_glibc: ${v:-none}"
  v=$(max_ver GLIBCXX); echo "min_glibcxx: ${v:-none}"
  echo "excluded: glibc, libstdc++, libgcc_s, libcuda*, libnvidia*, libnccl*, libcublas*, libcublasLt*, libcudart*"
  echo "files:"
  (cd "$root" && find . -type f -not -name BUNDLE_INFO | sed 's|^\./||' | LC_ALL=C sort | sed 's/^/  /')
} >"$root/BUNDLE_INFO"

# Smoke check: the staged binary runs from elsewhere and its libraries resolve inside the bundle.
missing=$(LC_ALL=C ldd "$root/bin/hipserve" | grep 'not found' | grep -v -E 'lib(cuda|nvidia|nccl|cublas|cudart)' || true)
[[ -z $missing ]] || die "bundled binary has unresolved libraries: $missing"

rm -rf "${out_dir:?}/$name"
mv "$root" "$out_dir/$name"

if [[ $tarball == 1 ]]; then
  tgz=$out_dir/$name.tar.gz
  epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$binary")}
  tar -C "$out_dir" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
      -cf - "$name" | gzip -n >"$stage/$name.tar.gz" || die "tar failed"
  mv "$stage/$name.tar.gz" "$tgz"
  echo "$tgz"
else
  echo "$out_dir/$name"
fi
