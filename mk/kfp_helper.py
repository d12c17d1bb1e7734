"""Small helpers for mk/kfp.mk (stdlib + PyYAML only, so any python3 with PyYAML runs it).

    kfp --output json ... | python3 mk/kfp_helper.py field pipeline_version_id
        print one field of the JSON that `kfp --output json` printed (first item of a list;
        empty when there is none). The CLI prints "... details: URL" lines before the JSON.
    python3 mk/kfp_helper.py check-params PACKAGE [--strings-only] NAME=VALUE ...
        check run parameters against the compiled pipeline's inputs: known names, required
        ones present; with --strings-only, refuse parameters that are not strings
        (`kfp recurring-run create` sends every value as a string, and the KFP API server
        rejects a string for a list/dict/bool/int parameter).
"""

from __future__ import annotations

import json
import sys

import yaml


def field(name: str, text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(("{", "["))), None)
    if start is None:
        return ""
    data = json.loads("\n".join(lines[start:]))
    if isinstance(data, list):
        data = data[0] if data else {}
    value = data.get(name) if isinstance(data, dict) else None
    return "" if value is None else str(value)


def check_params(package: str, args: list[str], strings_only: bool) -> list[str]:
    with open(package) as f:
        spec = next(yaml.safe_load_all(f))
    inputs = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    errors, given = [], set()
    for arg in args:
        if "=" not in arg:
            errors.append(f"parameter {arg!r}: expected NAME=VALUE")
            continue
        name = arg.split("=", 1)[0]
        given.add(name)
        if name not in inputs:
            errors.append(f"parameter {name!r}: the pipeline has no such input (inputs: {', '.join(sorted(inputs))})")
        elif strings_only and inputs[name].get("parameterType") != "STRING":
            errors.append(f"parameter {name!r} ({inputs[name].get('parameterType')}): `kfp recurring-run create` "
                          "sends every value as a string, which the API server rejects for this type; "
                          "leave it at its default or use `make submit`")
    for name, spec_ in sorted(inputs.items()):
        if name not in given and not spec_.get("isOptional") and "defaultValue" not in spec_:
            errors.append(f"parameter {name!r}: required (add {name}=... to the parameters)")
    return errors


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "field":
        print(field(argv[1], sys.stdin.read()))
        return 0
    if len(argv) >= 2 and argv[0] == "check-params":
        rest = argv[2:]
        strings_only = "--strings-only" in rest
        errors = check_params(argv[1], [a for a in rest if a != "--strings-only"], strings_only)
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 2 if errors else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
