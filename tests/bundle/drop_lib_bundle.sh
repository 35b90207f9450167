#!/usr/bin/env bash
# Test helper: a deliberately broken scripts/bundle.sh. It bundles as usual, then removes one
# library from the bundle (and the tarball), so that bundle_test.sh must report a library that
# resolves outside the bundle. Used by the bundle_test_rejects_broken_bundle ctest.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tgz=$("$here/../../scripts/bundle.sh" "$@")
dir=$(dirname "$tgz"); name=$(basename "$tgz" .tar.gz)
victim=$(find "$dir/$name/lib" -type f | sort | sed -n 1p)
[[ -n $victim ]] || { echo "drop_lib_bundle.sh: bundle has no libraries to drop" >&2; exit 1; }
rm -f "$victim"
tar -C "$dir" -czf "$tgz" "$name"
echo "$tgz"
