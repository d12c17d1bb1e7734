"""Static checks of a compiled KFP pipeline against the open-source KFP backend's own rules.

    python -m pipelines.spec_check FILE.yaml [FILE.yaml ...] [--min-backend 2.14.0]

Prints one line per problem (``FILE: where: what``) and exits 1 when there is any, 0 when
there is none, 2 when a file cannot be read. Standard library and PyYAML only: no ``kfp``.

kfp.local forgives what the backend refuses. The rules, each from the backend source
(kubeflow/pipelines, tags 2.14.0-2.17.0; Argo Workflows v3.7 for retries):

* **Parameter types** (``backend/src/v2/driver/resolve.go``, ``resolveInputs``): the driver
  turns any value for a ``STRING`` input into text and refuses a string for any other type
  (``input parameter "seed" type mismatch: expect NUMBER_INTEGER, got string``). So every
  task input must get exactly its ``parameterType`` from its producer: a parameter of the
  enclosing DAG, another task's output, a ParallelFor item, or a constant. A loop item's
  type is checked against the items it iterates over (a constant list or the default of the
  pipeline input it comes from).
* **Loop names** (``backend/src/v2/compiler/argocompiler/dag.go``, ``iterationItemTask``):
  before 2.16.0 the ParallelFor's DAG execution is recorded under its display name
  (``taskInfo.name``) while downstream tasks look its outputs up by task key
  (``cannot find producer task``); fixed in 2.16.0 (#12808). Every loop's name must equal
  its task key.
* **Retries** (``argocompiler/container.go``; Argo ``workflow/controller/operator.go``,
  ``processNodeRetries``): Argo counts ``backoff.maxDuration`` from the *first* attempt's
  start, so a retry fires only while (attempts so far) x timeout fits in it; KFP passes
  ``"0"`` when the spec has none (no retry at all) and sends ``backoffFactor`` with ``%v``,
  which Argo parses as an integer. Each retried task needs a timeout
  (``activeDeadlineSeconds``), an integral factor and a max duration of at least
  (retries + 1) x timeout.
* **Backend version**: each feature the spec uses must be supported by ``--min-backend``
  (``FEATURES`` below: feature -> first backend release; docs/kubeflow.md shows the same table).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

MIN_BACKEND = "2.14.0"
"""The oldest KFP backend release StreamGuard's compiled pipelines support (docs/kubeflow.md)."""


@dataclass(frozen=True)
class Feature:
    key: str
    what: str
    since: str
    """First open-source KFP backend release that supports it."""
    source: str
    """Where that is shown: PR number, and file where the support lives."""


FEATURES: tuple[Feature, ...] = (
    Feature("parallel-for", "`dsl.ParallelFor` over a list parameter", "2.0.0",
            "argocompiler/dag.go `iteratorTask`"),
    Feature("caching", "per-task caching options (`set_caching_options`)", "2.0.0", "driver/cache.go"),
    Feature("node-selector", "`kubernetes.add_node_selector`", "2.0.0", "driver `GetNodeSelector`"),
    Feature("secret-as-env", "`kubernetes.use_secret_as_env`", "2.0.0", "#9178"),
    Feature("config-map-as-env", "`kubernetes.use_config_map_as_env`", "2.1.0", "#10483"),
    Feature("timeout", "`kubernetes.set_timeout` (pod `activeDeadlineSeconds`)", "2.1.0", "#10481"),
    Feature("tolerations", "`kubernetes.add_toleration`", "2.1.0", "#10471"),
    Feature("image-pull-policy", "`kubernetes.set_image_pull_policy`", "2.1.0", "#10417"),
    Feature("image-pull-secrets", "`kubernetes.set_image_pull_secrets`", "2.1.0", "#10427"),
    Feature("empty-dir", "`kubernetes.empty_dir_mount` (memory-backed `/dev/shm`)", "2.3.0", "#10913"),
    Feature("parallelism", "`dsl.ParallelFor(parallelism=N)`", "2.4.0", "#10798, argocompiler/dag.go"),
    Feature("retry", "`set_retry` on a task of the root DAG", "2.5.0", "#11673, argocompiler/container.go"),
    Feature("pipeline-placeholders", "`dsl.PIPELINE_JOB_ID_PLACEHOLDER` as a task input", "2.5.0",
            "#11599, driver/resolve.go"),
    Feature("k8s-names-from-parameters", "Secret/ConfigMap names taken from pipeline parameters", "2.5.0",
            "#11770"),
    Feature("collected", "`dsl.Collected` of a ParallelFor's outputs (fan-in)", "2.14.0",
            "#11725, driver/resolve.go `CollectInputs`"),
    Feature("retry-in-sub-dag", "`set_retry` on a task inside a ParallelFor (a sub-DAG)", "2.14.0",
            "#11908, argocompiler/container.go"),
    Feature("optional-secret-env", "`use_secret_as_env(..., optional=True)`", "2.15.0", "#12216"),
    Feature("task-config-passthrough", "task config passthroughs (`dsl.TaskConfig`)", "2.15.0", "#12185"),
    Feature("custom-loop-name", "`dsl.ParallelFor(name=...)` with a downstream consumer", "2.16.0",
            "#12808, argocompiler/dag.go `iterationItemTask`"),
    Feature("literals", "`Literal[...]` parameters (`literals` in the spec)", "2.16.0", "#12607"),
)
FEATURE = {f.key: f for f in FEATURES}

TYPES = ("STRING", "NUMBER_INTEGER", "NUMBER_DOUBLE", "BOOLEAN", "LIST", "STRUCT", "TASK_FINAL_STATUS",
         "TASK_CONFIG")


@dataclass(frozen=True)
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def value_type(value: Any) -> str:
    """The parameterType a JSON value has for the backend (all numbers are doubles in protobuf;
    a whole number fits NUMBER_INTEGER)."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "NUMBER_INTEGER" if math.isfinite(value) and float(value).is_integer() else "NUMBER_DOUBLE"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list):
        return "LIST"
    if isinstance(value, dict):
        return "STRUCT"
    return "NULL"


def fits(produced: str, expected: str) -> bool:
    """Does a value of type ``produced`` reach a ``expected`` input unchanged? (A whole number is also
    a double.) A STRING input takes anything only by turning it into JSON text, which we report too."""
    return produced == expected or (produced == "NUMBER_INTEGER" and expected == "NUMBER_DOUBLE")


def load(path: str | Path) -> tuple[dict, dict]:
    """(PipelineSpec, PlatformSpec or {}) of a compiled pipeline YAML."""
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    if not docs or "root" not in docs[0]:
        raise ValueError(f"{path}: not a compiled KFP pipeline (no `root` in the first YAML document)")
    return docs[0], (docs[1] if len(docs) > 1 else {})


def executors_k8s(platform: dict) -> dict[str, dict]:
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def dags(spec: dict) -> Iterator[tuple[str, dict, dict]]:
    """(name, component spec, dag) of the root and of every DAG component."""
    yield "root", spec["root"], spec["root"].get("dag", {})
    for name, comp in sorted(spec.get("components", {}).items()):
        if "dag" in comp:
            yield name, comp, comp["dag"]


def _params(comp: dict, side: str = "inputDefinitions") -> dict[str, dict]:
    return comp.get(side, {}).get("parameters", {}) or {}


def _is_loop(task: dict) -> bool:
    return "parameterIterator" in task or "artifactIterator" in task


# --------------------------------------------------------------------------------------- types
def _producer(spec: dict, owner: dict, dag: dict, pspec: dict) -> tuple[str | None, str]:
    """(type or None when unknown, description) of what feeds a task input parameter."""
    if "componentInputParameter" in pspec:
        name = pspec["componentInputParameter"]
        decl = _params(owner).get(name)
        if decl is None:
            return "MISSING", f"{name} (no such input of the enclosing DAG)"
        return decl.get("parameterType"), f"{name} (input of the enclosing DAG)"
    if "taskOutputParameter" in pspec:
        ref = pspec["taskOutputParameter"]
        producer = dag.get("tasks", {}).get(ref.get("producerTask"))
        key = ref.get("outputParameterKey")
        if producer is None:
            return "MISSING", f"{ref.get('producerTask')}.{key} (no such task in this DAG)"
        decl = _params(spec["components"].get(producer["componentRef"]["name"], {}), "outputDefinitions").get(key)
        if decl is None:
            return "MISSING", f"{ref.get('producerTask')}.{key} (no such output)"
        return decl.get("parameterType"), f"output {key} of task {ref.get('producerTask')}"
    if "runtimeValue" in pspec:
        const = pspec["runtimeValue"].get("constant")
        return value_type(const), f"constant {json.dumps(const)[:40]}"
    if "taskFinalStatus" in pspec:
        return "TASK_FINAL_STATUS", "the final status of a task"
    return None, "an unknown producer"


def _items(spec: dict, owner: dict, task: dict) -> tuple[list | None, str]:
    """The values a parameter loop iterates over, when the spec fixes them (constant or default)."""
    items = task["parameterIterator"].get("items", {})
    if "raw" in items:
        try:
            return json.loads(items["raw"]), "its constant items"
        except (TypeError, ValueError):
            return None, ""
    source = task.get("inputs", {}).get("parameters", {}).get(items.get("inputParameter"), {})
    if "componentInputParameter" in source:
        decl = _params(owner).get(source["componentInputParameter"], {})
        if isinstance(decl.get("defaultValue"), list):
            return decl["defaultValue"], f"the default of {source['componentInputParameter']}"
    if "runtimeValue" in source and isinstance(source["runtimeValue"].get("constant"), list):
        return source["runtimeValue"]["constant"], "its constant items"
    return None, ""


def type_problems(spec: dict) -> list[Problem]:
    out: list[Problem] = []
    for name, default in sorted(_params(spec["root"]).items()):
        if "defaultValue" in default and not fits(value_type(default["defaultValue"]), default.get("parameterType")):
            out.append(Problem(f"pipeline input {name}", f"default {json.dumps(default['defaultValue'])[:40]} is "
                                                          f"{value_type(default['defaultValue'])}, declared "
                                                          f"{default.get('parameterType')}"))
    for dag_name, owner, dag in dags(spec):
        for key, task in sorted(dag.get("tasks", {}).items()):
            where = f"task {key} ({dag_name})"
            comp = spec["components"].get(task.get("componentRef", {}).get("name"), {})
            expected = _params(comp)
            given = task.get("inputs", {}).get("parameters", {})
            item = task["parameterIterator"].get("itemInput") if "parameterIterator" in task else None
            for pname, pspec in sorted(given.items()):
                if "parameterExpressionSelector" in pspec:
                    continue  # a field picked out of a struct: its type is not in the spec
                decl = expected.get(pname)
                if decl is None:
                    out.append(Problem(where, f"input {pname}: the component declares no such input"))
                    continue
                want = decl.get("parameterType")
                got, what = _producer(spec, owner, dag, pspec)
                if got is not None and not fits(got, want):
                    out.append(Problem(where, f"input {pname}: producer {what} is {got}, consumer expects {want}"))
            if item is not None:
                decl = expected.get(item, {})
                values, source = _items(spec, owner, task)
                if values is not None and decl:
                    kinds = sorted({value_type(v) for v in values})
                    want = decl.get("parameterType")
                    bad = [k for k in kinds if not fits(k, want)]
                    if bad:
                        out.append(Problem(where, f"loop item {item}: {source} holds {'/'.join(kinds)} values, "
                                                  f"the item input is {want}"))
            for pname, decl in sorted(expected.items()):
                if pname in given or pname == item or decl.get("isOptional") or "defaultValue" in decl:
                    continue
                if "parameterIterator" in task and pname == task["parameterIterator"].get("items", {}).get(
                        "inputParameter"):
                    continue
                out.append(Problem(where, f"input {pname} ({decl.get('parameterType')}): required, but the task "
                                          "passes nothing"))
    return out


# --------------------------------------------------------------------------------------- loops
def loop_problems(spec: dict) -> list[Problem]:
    out = []
    for dag_name, _, dag in dags(spec):
        for key, task in sorted(dag.get("tasks", {}).items()):
            name = task.get("taskInfo", {}).get("name")
            if _is_loop(task) and name != key:
                out.append(Problem(f"task {key} ({dag_name})", f"loop taskInfo.name {name!r} differs from its task key "
                                                               f"{key!r} (drop ParallelFor(name=...))"))
    return out


# --------------------------------------------------------------------------------------- retries
def _seconds(duration: Any) -> int | None:
    """Seconds of a protobuf Duration as JSON/YAML writes it ("1800s", "1.5s")."""
    if duration is None:
        return None
    text = str(duration).strip()
    return int(float(text[:-1] if text.endswith("s") else text))


def _go_float(x: float) -> str:
    """Go's ``fmt.Sprintf("%v", float64)`` for the values a retry factor takes: 2.0 -> "2", 1.5 -> "1.5"."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def argo_retry_strategy(retry_policy: dict) -> dict:
    """The Argo ``retryStrategy`` KFP's Argo compiler makes of a task's ``retryPolicy``
    (backend/src/v2/compiler/argocompiler/container.go: ``getTaskRetryParametersWithValues`` fills
    template parameters that default to "0", ``getTaskRetryStrategyFromInput`` builds the strategy)."""
    duration = _seconds(retry_policy.get("backoffDuration"))
    max_duration = _seconds(retry_policy.get("backoffMaxDuration"))
    return {"limit": str(int(retry_policy.get("maxRetryCount", 0))),
            "backoff": {"duration": "0" if duration is None else str(duration),
                        "factor": _go_float(retry_policy.get("backoffFactor", 0.0)),
                        "maxDuration": "0" if max_duration is None else str(max_duration)}}


def retry_problem(retry_policy: dict, timeout_seconds: int | None) -> str | None:
    """Why a retry policy never fires for an attempt that runs to its timeout (None: it does)."""
    argo = argo_retry_strategy(retry_policy)
    retries = int(argo["limit"])
    if retries <= 0:
        return None
    factor = argo["backoff"]["factor"]
    if not factor.lstrip("-").isdigit():
        return f"backoffFactor {factor}: Argo parses the factor as an integer, so no retry is ever scheduled"
    max_duration = int(argo["backoff"]["maxDuration"])
    if max_duration <= 0:
        return "no backoffMaxDuration: KFP passes 0 to Argo, which then never retries"
    if not timeout_seconds:
        return (f"{retries} retries but no timeout (activeDeadlineSeconds): an attempt that runs past "
                f"backoffMaxDuration {max_duration}s is never retried")
    if max_duration < (retries + 1) * timeout_seconds:
        return (f"backoffMaxDuration {max_duration}s < (retries {retries} + 1) x timeout {timeout_seconds}s: "
                "Argo counts it from the first attempt, so a long attempt is never retried")
    return None


def retry_problems(spec: dict, platform: dict) -> list[Problem]:
    k8s = executors_k8s(platform)
    out = []
    for dag_name, _, dag in dags(spec):
        for key, task in sorted(dag.get("tasks", {}).items()):
            if "retryPolicy" not in task:
                continue
            label = spec["components"].get(task["componentRef"]["name"], {}).get("executorLabel")
            timeout = k8s.get(label, {}).get("activeDeadlineSeconds")
            why = retry_problem(task["retryPolicy"], int(timeout) if timeout else None)
            if why:
                out.append(Problem(f"task {key} ({dag_name})", f"retry: {why}"))
    return out


# --------------------------------------------------------------------------------------- features
def _walk(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, path + (i,))


def _constant_name(ref: dict) -> bool:
    return isinstance(ref, dict) and "constant" in ref.get("runtimeValue", {})


def features_used(spec: dict, platform: dict) -> dict[str, str]:
    """feature key -> one place in the spec that uses it."""
    used: dict[str, str] = {}

    def use(key: str, where: str) -> None:
        used.setdefault(key, where)

    for dag_name, _, dag in dags(spec):
        tasks = dag.get("tasks", {})
        for key, task in sorted(tasks.items()):
            where = f"task {key} ({dag_name})"
            if _is_loop(task):
                use("parallel-for", where)
                if task.get("iteratorPolicy", {}).get("parallelismLimit"):
                    use("parallelism", where)
                if task.get("taskInfo", {}).get("name") != key and any(
                        key in t.get("dependentTasks", []) for t in tasks.values()):
                    use("custom-loop-name", where)
            if "cachingOptions" in task:
                use("caching", where)
            if "retryPolicy" in task:
                use("retry" if dag_name == "root" else "retry-in-sub-dag", where)
            inputs = task.get("inputs", {})
            for kind in ("parameters", "artifacts"):
                for spec_ in inputs.get(kind, {}).values():
                    ref = spec_.get("taskOutputParameter") or spec_.get("taskOutputArtifact") or {}
                    producer = tasks.get(ref.get("producerTask"))
                    if producer is not None and _is_loop(producer):
                        use("collected", where)
                    const = spec_.get("runtimeValue", {}).get("constant")
                    if isinstance(const, str) and const.startswith("{{$.pipeline_"):
                        use("pipeline-placeholders", where)
            if task.get("taskConfigPassthroughs") or spec["components"].get(
                    task.get("componentRef", {}).get("name"), {}).get("taskConfigPassthroughs"):
                use("task-config-passthrough", where)
    for path, value in _walk(spec):
        if path and path[-1] == "literals" and value:
            use("literals", "/".join(map(str, path[:-1])))
    for label, cfg in sorted(executors_k8s(platform).items()):
        where = f"executor {label}"
        if cfg.get("nodeSelector"):
            use("node-selector", where)
        if cfg.get("activeDeadlineSeconds"):
            use("timeout", where)
        if cfg.get("tolerations"):
            use("tolerations", where)
        if cfg.get("imagePullPolicy"):
            use("image-pull-policy", where)
        if cfg.get("imagePullSecret"):
            use("image-pull-secrets", where)
        if cfg.get("emptyDirMounts"):
            use("empty-dir", where)
        for kind, legacy, param in (("secretAsEnv", "secretName", "secretNameParameter"),
                                    ("configMapAsEnv", "configMapName", "configMapNameParameter")):
            for entry in cfg.get(kind, []):
                use("secret-as-env" if kind == "secretAsEnv" else "config-map-as-env", where)
                if entry.get("optional") is True:
                    use("optional-secret-env", where)
                if param in entry and not (entry.get(legacy) and _constant_name(entry[param])):
                    use("k8s-names-from-parameters", where)
        for entry in cfg.get("imagePullSecret", []):
            if "secretNameParameter" in entry and not (entry.get("secretName")
                                                       and _constant_name(entry["secretNameParameter"])):
                use("k8s-names-from-parameters", where)
    return used


def feature_problems(spec: dict, platform: dict, min_backend: str) -> list[Problem]:
    floor = version_tuple(min_backend)
    return [Problem(where, f"uses {FEATURE[key].what}, first supported by KFP backend {FEATURE[key].since} "
                           f"({FEATURE[key].source}); the documented minimum is {min_backend}")
            for key, where in sorted(features_used(spec, platform).items())
            if version_tuple(FEATURE[key].since) > floor]


def check(spec: dict, platform: dict | None = None, min_backend: str = MIN_BACKEND) -> list[Problem]:
    platform = platform or {}
    return (type_problems(spec) + loop_problems(spec) + retry_problems(spec, platform)
            + feature_problems(spec, platform, min_backend))


def check_file(path: str | Path, min_backend: str = MIN_BACKEND) -> list[Problem]:
    spec, platform = load(path)
    return check(spec, platform, min_backend)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.spec_check", description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="compiled pipeline YAML files")
    ap.add_argument("--min-backend", default=MIN_BACKEND,
                    help=f"oldest KFP backend release to support (default: {MIN_BACKEND}, as documented)")
    args = ap.parse_args(argv)
    try:
        version_tuple(args.min_backend)
    except ValueError:
        print(f"error: --min-backend {args.min_backend!r}: expected a release such as {MIN_BACKEND}", file=sys.stderr)
        return 2
    found = 0
    for path in args.files:
        try:
            problems = check_file(path, args.min_backend)
        except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError) as e:
            print(f"error: {path}: cannot check: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                  file=sys.stderr)
            return 2
        for p in problems:
            print(f"{path}: {p}")
        found += len(problems)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
