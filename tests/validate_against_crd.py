#!/usr/bin/env python3
"""Validates JSON documents against a version of a CustomResourceDefinition's openAPIV3Schema,
strictly: every object schema that lists its properties takes no others (what the API server
would prune silently is an error here), and enums, types and required fields hold.

kubernetes-validate knows the built-in kinds only; this is its counterpart for a custom
resource (tests/audit.rs, for the PolicyReport the audit writes).

Usage: validate_against_crd.py CRD.yaml VERSION DOCUMENT.json...
Exit 0 when every document is valid, 1 with each error on stderr otherwise.
"""

import json
import sys

import jsonschema
import yaml


def strict(schema):
    """The schema with additionalProperties: false on every object that lists properties."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def main(crd_path, version, documents):
    with open(crd_path, encoding="utf-8") as crd_file:
        crds = [d for d in yaml.safe_load_all(crd_file) if d and d.get("kind") == "CustomResourceDefinition"]
    if len(crds) != 1:
        sys.exit(f"{crd_path}: expected one CustomResourceDefinition, found {len(crds)}")
    crd = crds[0]
    versions = [v for v in crd["spec"]["versions"] if v["name"] == version]
    if not versions:
        sys.exit(f"{crd_path}: no version {version}")
    schema = strict(versions[0]["schema"]["openAPIV3Schema"])
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    validator = jsonschema.Draft7Validator(schema)
    failed = False
    for path in documents:
        with open(path, encoding="utf-8") as document_file:
            document = json.load(document_file)
        if document.get("apiVersion") != f"{group}/{version}" or document.get("kind") != kind:
            print(f"{path}: not a {group}/{version} {kind}", file=sys.stderr)
            failed = True
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(part) for part in error.absolute_path) or "(root)"
            print(f"{path}: {where}: {error.message}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
