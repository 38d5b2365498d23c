#!/usr/bin/env python3
"""Offline schema check of Kubernetes manifests: every document of every file, built-in kinds
against the Kubernetes OpenAPI schemas shipped in the PyPI package kubernetes-validate (strict:
unknown fields are errors), custom resources against the JSON schemas under the `--crd-schemas`
directories (`<group>/<kind>_<version>.json`, made by scripts/crd2schema.py).

A kind with no schema at all is an error: a typo in `kind` or `apiVersion` must not pass.

usage: schema-check.py [-k 1.34.0] --crd-schemas DIR [--crd-schemas DIR ...] FILE [FILE ...]
exit status: 0 all valid, 1 otherwise
"""
import argparse
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml


def crd_schema(dirs, api_version, kind):
    group, _, version = api_version.rpartition("/")
    for d in dirs:
        path = os.path.join(d, group, f"{kind.lower()}_{version}.json")
        if os.path.exists(path):
            with open(path) as f:
                return path, json.load(f)
    return None, None


def check(doc, label, args):
    """Problems of one document, as lines."""
    api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    path, schema = crd_schema(args.crd_schemas, api, kind)
    if schema is not None:
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc),
                        key=lambda e: list(e.absolute_path))
        where = lambda e: ".".join(map(str, e.absolute_path)) or "(root)"
        return [f"INVALID {label}: {where(e)}: {e.message[:300]}" for e in errors], path
    try:
        kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"NOSCHEMA {label}: no schema for {api} {kind}"], None
    except kubernetes_validate.ValidationError as e:
        where = ".".join(map(str, e.path)) or "(root)"
        return [f"INVALID {label}: {where}: {e.message[:300]}"], None
    return [], f"Kubernetes {args.kubernetes_version}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--kubernetes-version", default="1.34.0")
    parser.add_argument("--crd-schemas", action="append", default=[], required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    failed = 0
    for path in args.files:
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if not isinstance(doc, dict) or not doc:
                    continue
                name = (doc.get("metadata") or {}).get("name", "?")
                label = f"{path}#{i} {doc.get('apiVersion')} {doc.get('kind')}/{name}"
                problems, against = check(doc, label, args)
                for p in problems:
                    print(p)
                if problems:
                    failed += 1
                else:
                    print(f"ok      {label} ({against})")
    if failed:
        print(f"schema-check: {failed} invalid document(s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
