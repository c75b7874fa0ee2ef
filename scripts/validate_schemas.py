#!/usr/bin/env python3
"""Validates every shipped hooks.d document with an independent validator (Python jsonschema)
against the standalone schemas an editor would use: `schemas/<kind>.json`, each read on its own,
and `schemas/hooks.d.json`, which picks the schema by `kind`.

    python3 -m pip install -r .ci/requirements.txt
    python3 scripts/validate_schemas.py

Exits non-zero on any document that fails, or if a known-bad document passes.
"""

import glob
import json
import os
import sys

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = {
    "Source": "source.json",
    "Channel": "channel.json",
    "Template": "template.json",
    "Route": "route.json",
    "Subscription": "subscription.json",
    "ClusterSubscription": "subscription.json",
    "User": "user.json",
}


def schema(name):
    with open(os.path.join(ROOT, "schemas", name), encoding="utf-8") as f:
        s = json.load(f)
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def main():
    per_kind = {kind: schema(name) for kind, name in FILES.items()}
    any_kind = schema("hooks.d.json")
    docs = []
    patterns = ["hooks.d/*.yaml", "hooks.d/*.yml", "examples/*/hooks.d/*.yaml", "examples/*/hooks.d/*.yml"]
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            with open(path, encoding="utf-8") as f:
                for i, doc in enumerate(yaml.safe_load_all(f), 1):
                    if doc is not None:
                        docs.append((os.path.relpath(path, ROOT), i, doc))
    failures = 0
    for path, i, doc in docs:
        for name, validator in (("schemas/" + FILES[doc["kind"]], per_kind[doc["kind"]]), ("schemas/hooks.d.json", any_kind)):
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
            for e in errors:
                failures += 1
                print(f"{path}: document {i}: {name}: /{'/'.join(map(str, e.path))}: {e.message}")
    # The check must be able to fail: a Source without auth is refused by both.
    bad = {"apiVersion": "hookrelay.dev/v1alpha1", "kind": "Source", "metadata": {"name": "x"}, "spec": {}}
    for name, validator in (("source.json", per_kind["Source"]), ("hooks.d.json", any_kind)):
        if validator.is_valid(bad):
            failures += 1
            print(f"schemas/{name} accepts a Source without auth")
    print(f"schemas: {len(docs)} shipped documents checked with jsonschema {jsonschema_version()}, {failures} problems")
    return 1 if failures else 0


def jsonschema_version():
    from importlib.metadata import version
    return version("jsonschema")


if __name__ == "__main__":
    sys.exit(main())
