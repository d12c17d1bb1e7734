"""Small helpers for mk/kfp.mk.

    kfp --output json ... | python3 mk/kfp_helper.py field pipeline_version_id
        print one field of the JSON that `kfp --output json` printed (first item of a list;
        empty when there is none). The CLI prints "... details: URL" lines before the JSON.
    python3 mk/kfp_helper.py check-params PACKAGE NAME=VALUE ...
        check run parameters against the compiled pipeline's inputs: known names, required ones
        present, each value of the input's type (a string parameter takes any text; a list, dict,
        boolean or number must be JSON of that type: seeds=[1,2] require_gpu=true).
    python3 mk/kfp_helper.py data-version NAME=VALUE ...
        print the version of input_uri's data (ETag of an s3:// object, size and mtime of a path;
        streamguard.data.version), unless data_version is among the parameters. Prints nothing
        (and a note) when it cannot be read from here: the pipeline's source_version step reads
        it in the cluster then.
    python3 mk/kfp_helper.py schedule PACKAGE --endpoint URL [kfp options] --experiment NAME --name NAME
                                      --cron EXPR --pipeline-id ID --version-id ID NAME=VALUE ...
        create an enabled recurring run (max concurrency 1, no catch-up) through kfp.Client, with
        the parameters typed as the compiled pipeline declares them (`kfp recurring-run create`
        sends every value as a string, which the backend refuses for list/dict/bool/number inputs).

`field` and `check-params` need only the standard library and PyYAML; `data-version` and
`schedule` need the project's venv (streamguard, kfp): `make venv`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

JSON_TYPES = {"LIST": list, "STRUCT": dict, "BOOLEAN": bool, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": (int, float)}


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


def pipeline_inputs(package: str) -> dict[str, dict]:
    with open(package) as f:
        spec = next(yaml.safe_load_all(f))
    return spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})


def typed(name: str, parameter_type: str, raw: str) -> Any:
    """``raw`` as the value a ``parameter_type`` input takes; ValueError naming the parameter otherwise."""
    if parameter_type == "STRING":
        return raw
    want = JSON_TYPES.get(parameter_type)
    try:
        value = json.loads(raw.lower() if parameter_type == "BOOLEAN" else raw)
    except json.JSONDecodeError:
        value = None
    if want is None or not isinstance(value, want) or (parameter_type != "BOOLEAN" and isinstance(value, bool)):
        raise ValueError(f"parameter {name!r} ({parameter_type}): {raw!r} is not a JSON "
                         f"{'true/false' if parameter_type == 'BOOLEAN' else parameter_type.lower()}")
    return value


def split(args: list[str]) -> tuple[dict[str, str], list[str]]:
    values, errors = {}, []
    for arg in args:
        if "=" not in arg:
            errors.append(f"parameter {arg!r}: expected NAME=VALUE")
            continue
        name, raw = arg.split("=", 1)
        values[name] = raw
    return values, errors


def check_params(package: str, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(typed parameters, errors)."""
    inputs = pipeline_inputs(package)
    values, errors = split(args)
    params = {}
    for name, raw in values.items():
        if name not in inputs:
            errors.append(f"parameter {name!r}: the pipeline has no such input (inputs: {', '.join(sorted(inputs))})")
            continue
        try:
            params[name] = typed(name, inputs[name].get("parameterType"), raw)
        except ValueError as e:
            errors.append(str(e))
    for name, spec_ in sorted(inputs.items()):
        if name not in values and not spec_.get("isOptional") and "defaultValue" not in spec_:
            errors.append(f"parameter {name!r}: required (add {name}=... to the parameters)")
    return params, errors


def data_version(args: list[str]) -> str:
    values, _ = split(args)
    if "data_version" in values or not values.get("input_uri"):
        return ""
    from streamguard.data.version import data_version as read
    from streamguard.errors import StreamGuardError

    try:
        return read(values["input_uri"])
    except StreamGuardError as e:
        print(f"note: data_version not filled ({e}); the pipeline's source_version step reads it in the cluster",
              file=sys.stderr)
        return ""


def schedule(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kfp_helper.py schedule")
    ap.add_argument("package")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("-n", "--namespace", default="kubeflow")
    ap.add_argument("--existing-token", default=None)
    ap.add_argument("--iap-client-id", default=None)
    ap.add_argument("--other-client-id", default=None)
    ap.add_argument("--other-client-secret", default=None)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--cron", required=True)
    ap.add_argument("--pipeline-id", required=True)
    ap.add_argument("--version-id", required=True)
    ap.add_argument("params", nargs="*")
    a = ap.parse_intermixed_args(argv)
    params, errors = check_params(a.package, a.params)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 2
    import kfp

    client = kfp.Client(host=a.endpoint, namespace=a.namespace, existing_token=a.existing_token,
                        client_id=a.iap_client_id, other_client_id=a.other_client_id,
                        other_client_secret=a.other_client_secret)
    experiment = client.create_experiment(a.experiment, namespace=a.namespace)
    rr = client.create_recurring_run(experiment_id=experiment.experiment_id, job_name=a.name, cron_expression=a.cron,
                                     max_concurrency=1, no_catchup=True, enabled=True, params=params,
                                     pipeline_id=a.pipeline_id, version_id=a.version_id)
    print(f"recurring run {rr.display_name}: id {rr.recurring_run_id}, cron '{a.cron}', parameters "
          f"{json.dumps(params, sort_keys=True)}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "field":
        print(field(argv[1], sys.stdin.read()))
        return 0
    if len(argv) >= 2 and argv[0] == "check-params":
        _, errors = check_params(argv[1], argv[2:])
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 2 if errors else 0
    if argv[:1] == ["data-version"]:
        print(data_version(argv[1:]))
        return 0
    if argv[:1] == ["schedule"]:
        return schedule(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
