#!/usr/bin/env python3
"""Turns CustomResourceDefinition YAML into the JSON schemas `scripts/schema-check.py` validates
custom resources against: one file per kind and version, `OUT/<group>/<kind>_<version>.json`.

The CRD's openAPIV3Schema is adapted to plain JSON Schema the way the API server reads it:
`nullable` admits null, `x-kubernetes-int-or-string` admits an integer or a string, and an object
that lists its properties (unless it keeps unknown fields) rejects any other field, as server-side
strict field validation does. `apiVersion` and `kind` are pinned. CEL rules
(`x-kubernetes-validations`) have no JSON Schema form; only a real API server checks them.

usage: crd2schema.py OUT_DIR CRD.yaml [CRD.yaml ...]
"""
import json
import os
import sys

import yaml

# Keywords whose value is one schema, a list of schemas, or a map of name to schema.
ONE = ("items", "additionalProperties", "not")
MANY = ("allOf", "anyOf", "oneOf")
NAMED = ("properties", "patternProperties")


def adapt(node):
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ONE and isinstance(value, dict):
            out[key] = adapt(value)
        elif key in MANY:
            out[key] = [adapt(v) for v in value]
        elif key in NAMED:
            out[key] = {name: adapt(v) for name, v in value.items()}
        else:
            out[key] = value
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def convert(crd, out_dir):
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    written = []
    for version in spec["versions"]:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not schema:
            continue
        schema = adapt(schema)
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        props["kind"] = {"type": "string", "enum": [kind]}
        # metadata is checked by the API server, not by the CRD's schema.
        props["metadata"] = {"type": "object"}
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        path = os.path.join(out_dir, group, f"{kind.lower()}_{version['name']}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(schema, f, indent=1, sort_keys=True)
            f.write("\n")
        written.append(path)
    return written


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    for path in sys.argv[2:]:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    for written in convert(doc, out_dir):
                        print(written)


if __name__ == "__main__":
    main()
