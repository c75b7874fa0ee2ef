#!/usr/bin/env python3
"""Renders deploy/kubernetes with the kustomize semantics its files use (resources, namespace,
labels, JSON 6902 patches and `$patch: delete`) and validates every object offline: Kubernetes
kinds against the bundled OpenAPI schemas of `kubernetes-validate` (strict: unknown fields
fail), Knative kinds against the required fields of their CRDs (below). Prints each rendered
object's kind/name per target and exits non-zero on the first problem.

Usage: scripts/check_kubernetes.py [K8S_VERSION]   (needs: pip install kubernetes-validate jsonpatch pyyaml)
"""
import copy
import pathlib
import sys

import jsonpatch
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
TARGETS = ["base", "overlays/ha", "knative"]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}

# The fields the Knative CRDs require, and the shapes we rely on.
KNATIVE = {
    ("eventing.knative.dev/v1", "Trigger"): {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {
            "type": "object",
            "required": ["broker", "subscriber"],
            "properties": {
                "broker": {"type": "string", "minLength": 1},
                "filters": {"type": "array"},
                "subscriber": {"type": "object", "anyOf": [{"required": ["uri"]}, {"required": ["ref"]}]},
                "delivery": {"type": "object", "properties": {
                    "retry": {"type": "integer", "minimum": 0},
                    "backoffPolicy": {"enum": ["linear", "exponential"]},
                    "backoffDelay": {"type": "string", "pattern": "^P"},
                    "timeout": {"type": "string", "pattern": "^P"},
                }},
            },
        }},
    },
    ("sources.knative.dev/v1", "ApiServerSource"): {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {
            "type": "object",
            "required": ["resources", "sink"],
            "properties": {
                "mode": {"enum": ["Reference", "Resource"]},
                "resources": {"type": "array", "minItems": 1,
                              "items": {"type": "object", "required": ["apiVersion", "kind"]}},
                "sink": {"type": "object", "anyOf": [{"required": ["uri"]}, {"required": ["ref"]}]},
            },
        }},
    },
}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def render(directory):
    k = load(directory / "kustomization.yaml")[0]
    unknown = set(k) - {"apiVersion", "kind", "namespace", "labels", "resources", "patches"}
    if unknown:
        sys.exit(f"{directory}: kustomization fields this checker does not render: {sorted(unknown)}")
    objects = []
    for r in k.get("resources", []):
        p = (directory / r).resolve()
        objects += render(p) if p.is_dir() else load(p)
    for patch in k.get("patches", []):
        target = patch["target"]
        body = yaml.safe_load(patch["patch"])
        hits = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        if not hits:
            sys.exit(f"{directory}: patch target {target} matches nothing")
        for o in hits:
            if isinstance(body, dict) and body.get("$patch") == "delete":
                objects.remove(o)
            else:
                objects[objects.index(o)] = jsonpatch.apply_patch(o, body)
    for o in objects:
        meta = o.setdefault("metadata", {})
        if "namespace" in k and o["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = k["namespace"]
        for label in k.get("labels", []):
            meta.setdefault("labels", {}).update(label["pairs"])
    return objects


def validate(o, version):
    key = (o.get("apiVersion"), o.get("kind"))
    if key in KNATIVE:
        jsonschema.validate(o, KNATIVE[key])
    else:
        kubernetes_validate.validate(copy.deepcopy(o), version, strict=True)


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else "1.30.0"
    for target in TARGETS:
        objects = render(ROOT / target)
        names = set()
        for o in objects:
            ident = (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
            if ident in names:
                sys.exit(f"{target}: {ident} twice")
            names.add(ident)
            try:
                validate(o, version)
            except Exception as e:  # noqa: BLE001 - every validator's error is reported alike
                sys.exit(f"{target}: {o['kind']}/{o['metadata']['name']}: {e}")
        print(f"{target}: {len(objects)} objects valid for Kubernetes {version}: "
              + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
    ha = {(o["kind"], o["metadata"]["name"]): o for o in render(ROOT / "overlays/ha")}
    deploy = ha[("Deployment", "hookrelay")]["spec"]
    env = {e["name"]: e for e in deploy["template"]["spec"]["containers"][0]["env"]}
    assert deploy["replicas"] == 2 and env["HOOKRELAY_STORE"]["value"] == "postgres", "ha overlay"
    assert ("PersistentVolumeClaim", "hookrelay-data") not in ha, "ha keeps no PVC"
    grace = deploy["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 10, "termination grace must exceed shutdown_grace (10s)"


if __name__ == "__main__":
    main()
