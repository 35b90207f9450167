#!/usr/bin/env python3
"""Render kustomizations with `kubectl kustomize` and check what comes out.

For each kustomization directory given:
  1. schema: every object is validated (strict: unknown fields are errors) against the Kubernetes
     OpenAPI schemas shipped in the `kubernetes-validate` package, for each --k8s-version.
     LeaderWorkerSet is a CRD with no schema there: its spec is checked against a small schema
     written from the LWS v1 CRD below, and its pod templates are validated as core/v1 PodTemplates.
     Any other kind without a schema is an error.
  2. hipserve rules: world_size equals the worker count; KV budgets fit the memory limit; GPU
     limits, NCCL env and /dev/shm for the CUDA backend; gRPC probes on the coordinator;
     non-root security contexts; every referenced ConfigMap, claim and ServiceAccount exists.
Exit status 1 when anything is wrong; messages name the directory and object.
"""
import argparse
import re
import subprocess
import sys

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"check_manifests.py: missing Python package ({e}); pip install kubernetes-validate")

# LeaderWorkerSet v1 spec (leaderworkerset.x-k8s.io/v1, LWS >= 0.5): the fields we may use.
# Pod templates are validated separately against the core schema.
LWS_SPEC_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["leaderWorkerTemplate"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 0},
        "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
        "rolloutStrategy": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "type": {"enum": ["RollingUpdate"]},
                "rollingUpdateConfiguration": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"maxUnavailable": {"type": ["integer", "string"]},
                                   "maxSurge": {"type": ["integer", "string"]},
                                   "partition": {"type": "integer"}}}}},
        "networkConfig": {
            "type": "object", "additionalProperties": False,
            "properties": {"subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}}},
        "leaderWorkerTemplate": {
            "type": "object", "additionalProperties": False,
            "required": ["workerTemplate"],
            "properties": {
                "size": {"type": "integer", "minimum": 1},
                "restartPolicy": {"enum": ["RecreateGroupOnPodRestart", "None", "Default"]},
                "leaderTemplate": {"type": "object"},
                "workerTemplate": {"type": "object"},
                "subGroupPolicy": {"type": "object"},
                "volumeClaimTemplates": {"type": "array"}}},
    },
}

UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
         "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "": 1}


def quantity(q):
    m = re.fullmatch(r"([0-9.]+)([KMGTP]i|[kMGTP])?", str(q))
    if not m:
        raise ValueError(f"bad quantity {q!r}")
    return int(float(m.group(1)) * UNITS[m.group(2) or ""])


def render(kubectl, path):
    p = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{p.stderr.strip()}")
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def kn(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_spec(obj):
    k = obj["kind"]
    if k in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [obj["spec"]["template"]]
    if k == "LeaderWorkerSet":
        lwt = obj["spec"]["leaderWorkerTemplate"]
        return [t for t in (lwt.get("leaderTemplate"), lwt.get("workerTemplate")) if t]
    return []


class Checker:
    def __init__(self, versions):
        self.versions = versions
        self.errors = []

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    # ---- 1. schemas --------------------------------------------------------------------------
    def schema(self, where, objs):
        for obj in objs:
            if obj.get("kind") == "LeaderWorkerSet":
                self.lws_schema(where, obj)
                continue
            for v in self.versions:
                try:
                    kubernetes_validate.validate(obj, v, strict=True)
                except kubernetes_validate.utils.SchemaNotFoundError:
                    self.err(where, f"{kn(obj)}: no schema for {obj.get('apiVersion')} {obj.get('kind')} in Kubernetes {v}")
                except kubernetes_validate.utils.ValidationError as e:
                    path = "/".join(str(p) for p in e.path)
                    self.err(where, f"{kn(obj)} (Kubernetes {v}): {path}: {e.message}")

    def lws_schema(self, where, obj):
        if obj.get("apiVersion") != "leaderworkerset.x-k8s.io/v1":
            self.err(where, f"{kn(obj)}: apiVersion must be leaderworkerset.x-k8s.io/v1")
        for e in jsonschema.Draft7Validator(LWS_SPEC_SCHEMA).iter_errors(obj.get("spec", {})):
            self.err(where, f"{kn(obj)}: spec/{'/'.join(str(p) for p in e.path)}: {e.message}")
        lwt = obj.get("spec", {}).get("leaderWorkerTemplate", {})
        for key in ("leaderTemplate", "workerTemplate"):
            if key not in lwt:
                continue
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate",
                       "metadata": {"name": f"{obj['metadata']['name']}-{key}"}, "template": lwt[key]}
            for v in self.versions:
                try:
                    kubernetes_validate.validate(wrapped, v, strict=True)
                except kubernetes_validate.utils.ValidationError as e:
                    path = "/".join(str(p) for p in e.path)
                    self.err(where, f"{kn(obj)} {key} (Kubernetes {v}): {path}: {e.message}")

    # ---- 2. hipserve rules -------------------------------------------------------------------
    def rules(self, where, objs, base_worker_args=None):
        by_kind = {}
        for o in objs:
            by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        cms = by_kind.get("ConfigMap", {})
        pvcs = by_kind.get("PersistentVolumeClaim", {})
        sas = by_kind.get("ServiceAccount", {})

        # References resolve (catches a hash-suffixed ConfigMap name not followed into a CRD).
        for o in objs:
            for tmpl in pod_spec(o):
                spec = tmpl.get("spec", {})
                sa = spec.get("serviceAccountName")
                if sa and sa not in sas:
                    self.err(where, f"{kn(o)}: ServiceAccount {sa} is not in the render")
                for vol in spec.get("volumes", []):
                    if "configMap" in vol and vol["configMap"]["name"] not in cms:
                        self.err(where, f"{kn(o)}: volume {vol['name']}: ConfigMap {vol['configMap']['name']} is not in the render")
                    if "persistentVolumeClaim" in vol and vol["persistentVolumeClaim"]["claimName"] not in pvcs:
                        self.err(where, f"{kn(o)}: volume {vol['name']}: claim {vol['persistentVolumeClaim']['claimName']} is not in the render")
                for c in spec.get("containers", []):
                    for e in c.get("env", []):
                        ref = e.get("valueFrom", {}).get("configMapKeyRef")
                        if ref and (ref["name"] not in cms or ref["key"] not in cms[ref["name"]].get("data", {})):
                            self.err(where, f"{kn(o)}: env {e['name']}: ConfigMap key {ref['name']}/{ref['key']} is not in the render")
                    sc = c.get("securityContext", {})
                    if sc.get("allowPrivilegeEscalation") is not False:
                        self.err(where, f"{kn(o)}: container {c['name']}: allowPrivilegeEscalation must be false")
                if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
                    self.err(where, f"{kn(o)}: pod securityContext.runAsNonRoot must be true")

        config = [cm for name, cm in cms.items() if name.startswith("hipserve-config")]
        if len(config) != 1:
            self.err(where, f"expected one hipserve-config ConfigMap, found {len(config)}")
            return
        data = config[0].get("data", {})
        backend = data.get("backend")
        if backend not in ("cuda", "cpu"):
            self.err(where, f"hipserve-config backend={backend!r}: must be cuda or cpu")

        # Worker group: a StatefulSet or a LeaderWorkerSet, sized world_size.
        sts = by_kind.get("StatefulSet", {}).get("hipserve-worker")
        lws = by_kind.get("LeaderWorkerSet", {}).get("hipserve-worker")
        if bool(sts) == bool(lws):
            self.err(where, "need exactly one worker group: StatefulSet or LeaderWorkerSet hipserve-worker")
            return
        group = sts or lws
        if sts:
            workers = sts["spec"].get("replicas", 1)
        else:
            workers = lws["spec"]["leaderWorkerTemplate"].get("size", 1)
            if lws["spec"].get("replicas", 1) != 1:
                self.err(where, f"{kn(lws)}: replicas must be 1 (one group per coordinator)")
        try:
            world = int(data.get("world_size", ""))
        except ValueError:
            world = None
        if world != workers:
            self.err(where, f"hipserve-config world_size={data.get('world_size')!r} but {kn(group)} has {workers} worker pods")

        for tmpl in pod_spec(group):
            self.worker_pod(where, kn(group), tmpl["spec"], backend, cms, base_worker_args)

        coord = by_kind.get("Deployment", {}).get("hipserve-coordinator")
        if not coord:
            self.err(where, "Deployment hipserve-coordinator missing")
        else:
            self.coordinator_pod(where, kn(coord), coord["spec"]["template"]["spec"])

    def env_values(self, container, cms):
        vals = {}
        for e in container.get("env", []):
            if "value" in e:
                vals[e["name"]] = e["value"]
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref["name"] in cms:
                vals[e["name"]] = cms[ref["name"]].get("data", {}).get(ref["key"])
        return vals

    def flag(self, args, name, env):
        for a in args:
            if a.startswith(f"--{name}="):
                v = a.split("=", 1)[1]
                return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: str(env.get(m.group(1), m.group(0))), v)
        return None

    def worker_pod(self, where, what, spec, backend, cms, base_worker_args):
        cs = [c for c in spec.get("containers", []) if c["name"] == "worker"]
        if len(cs) != 1:
            self.err(where, f"{what}: needs one container named worker")
            return
        c = cs[0]
        args = c.get("args", [])
        env = self.env_values(c, cms)
        if not args or args[0] != "worker":
            self.err(where, f"{what}: args must start with the 'worker' subcommand")
        if self.flag(args, "rank", env) is None:
            self.err(where, f"{what}: --rank missing")
        if base_worker_args is not None:
            strip = lambda a: [x for x in a if not x.startswith("--rank=")]
            if strip(args) != strip(base_worker_args):
                self.err(where, f"{what}: worker args drifted from base/worker.yaml: {strip(args)} vs {strip(base_worker_args)}")
        sizes = {}
        for name in ("gpu_kv_bytes", "host_kv_bytes"):
            v = self.flag(args, name, env)
            if v is None or not re.fullmatch(r"[0-9]+", v or ""):
                self.err(where, f"{what}: --{name} must be an explicit byte count (got {v!r})")
            else:
                sizes[name] = int(v)
        limits = c.get("resources", {}).get("limits", {})
        if "memory" not in limits:
            self.err(where, f"{what}: worker needs a memory limit (the KV budgets are sized from it)")
            return
        mem = quantity(limits["memory"])
        shm = 0
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        dshm = vols.get(mounts.get("/dev/shm", ""), {}).get("emptyDir")
        if dshm is None or dshm.get("medium") != "Memory" or "sizeLimit" not in dshm:
            self.err(where, f"{what}: /dev/shm must be an emptyDir with medium Memory and a sizeLimit")
        else:
            shm = quantity(dshm["sizeLimit"])
        if len(sizes) == 2:
            need = sizes["host_kv_bytes"] + shm + (sizes["gpu_kv_bytes"] if backend == "cpu" else 0)
            if need > mem:
                self.err(where, f"{what}: host KV {sizes['host_kv_bytes']} + /dev/shm {shm}"
                         + (f" + CPU-backend hot KV {sizes['gpu_kv_bytes']}" if backend == "cpu" else "")
                         + f" = {need} bytes exceeds the memory limit {limits['memory']} ({mem})")
        gpus = limits.get("nvidia.com/gpu")
        if backend == "cuda":
            if str(gpus) != "1":
                self.err(where, f"{what}: CUDA workers need limits nvidia.com/gpu: 1 (one rank per GPU), got {gpus!r}")
            if env.get("NCCL_NVLS_ENABLE") != "0":
                self.err(where, f"{what}: set NCCL_NVLS_ENABLE=0 for CUDA workers")
        elif gpus is not None:
            self.err(where, f"{what}: CPU backend but nvidia.com/gpu is requested")

    def coordinator_pod(self, where, what, spec):
        c = spec["containers"][0]
        ports = {p["containerPort"] for p in c.get("ports", [])}
        probes = {k: c.get(k, {}).get("grpc") for k in ("livenessProbe", "readinessProbe")}
        for k, g in probes.items():
            if not g:
                self.err(where, f"{what}: {k} must be a native gRPC probe")
            elif g.get("port") not in ports:
                self.err(where, f"{what}: {k} port {g.get('port')} is not a container port")
        if probes["livenessProbe"] and probes["livenessProbe"].get("service", "") != "":
            self.err(where, f"{what}: liveness must probe service \"\" (process up)")
        if probes["readinessProbe"] and probes["readinessProbe"].get("service") != "hipserve.v1.Generation":
            self.err(where, f"{what}: readiness must probe service hipserve.v1.Generation")
        if not c.get("args") or c["args"][0] != "coordinator":
            self.err(where, f"{what}: args must start with the 'coordinator' subcommand")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--k8s-version", action="append", dest="versions",
                    help="Kubernetes version(s) to validate against (repeatable)")
    ap.add_argument("--base", help="base kustomization: LWS worker args must match its StatefulSet's")
    ap.add_argument("dirs", nargs="+", help="kustomization directories")
    a = ap.parse_args()
    versions = a.versions or [kubernetes_validate.utils.latest_version()]
    base_args = None
    if a.base:
        for o in render(a.kubectl, a.base):
            if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "hipserve-worker":
                base_args = o["spec"]["template"]["spec"]["containers"][0].get("args")
    failed = False
    for d in a.dirs:
        ch = Checker(versions)
        try:
            objs = render(a.kubectl, d)
        except RuntimeError as e:
            print(f"FAIL {d}: {e}")
            failed = True
            continue
        ch.schema(d, objs)
        ch.rules(d, objs, base_args)
        kinds = sorted({o["kind"] for o in objs})
        if ch.errors:
            failed = True
            print(f"FAIL {d} ({len(objs)} objects)")
            for e in ch.errors:
                print(f"  {e}")
        else:
            print(f"ok   {d}: {len(objs)} objects ({', '.join(kinds)}), Kubernetes {', '.join(versions)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
