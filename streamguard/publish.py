"""``streamguard publish``: the pipeline's last stage -- one seed's bundle out to the people who use the model.

1. **Pick** the seed: the bundle whose head is best on the **validation** split by ``publish.metric`` (ties:
   the lowest seed). The test split never chooses; it only measures.
2. **Write** it to the object store at ``models/<publish.model_name>/<version>/`` (``bundle.json`` last; version:
   the KFP run id, or a UTC time, plus the code version; a retry of the same run rewrites the same version).
3. **Gate** (:mod:`streamguard.gate`): the current champion (``models/<name>/champion.json``,
   :mod:`streamguard.champion`) and the challenger score the same functions -- the new test split and every
   ``eval_uris`` set -- and the challenger becomes the champion only when better by more than
   ``publish.margin``. The first publish promotes; ``promote=False`` evaluates and reports but never moves
   the pointer. Racing publishers: see :func:`_promote`.
4. **Card** ``models/<name>/<version>/card.json`` (+ ``card.md``): the data card, test metrics with bootstrap
   intervals, the ablation, the ``eval_uris`` results, the gate (decision, both scores, every dataset), lineage
   (KFP run id, data fingerprint, image, code version).
5. **Register** the version in Kubeflow Model Registry when ``MODEL_REGISTRY_URL`` is set
   (:mod:`streamguard.registry`). A registry that stays down past the store's retry budget costs one line; the
   store publish stands (exit 0, or 7 with ``publish.registry_failure: fail``).

Outputs in ``out_dir``: ``publish.json`` (everything above), ``card.json``, ``card.md`` and ``report.md``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from streamguard import __version__
from streamguard.bundle import MANIFEST, Bundle, check_manifest, load_bundle, upload_bundle
from streamguard.champion import CARD, IMAGE_ENV, make_version, pointer_key, read_pointer, swap_pointer, version_prefix
from streamguard.config import Config
from streamguard.errors import RegistryError, UserError
from streamguard.gate import LOWER_IS_BETTER, Scorer, card_metrics, compare, gate_datasets
from streamguard.jsonio import dumps, read_json, write_json_atomic
from streamguard.storage import ObjectStore, open_store

log = logging.getLogger(__name__)



def _valid_value(manifest: dict[str, Any], metric: str) -> float:
    valid = (manifest["card"]["metrics"].get(manifest["head"]) or {}).get("valid") or {}
    v = valid.get(metric)
    return float("nan") if v is None else float(v)


def select_bundle(paths: Sequence[str | os.PathLike], metric: str) -> tuple[Path, dict[str, Any]]:
    """The bundle whose head is best on the validation split by ``metric`` (NaN last, ties: the lowest seed),
    and every candidate's number (``{seed: value}``)."""
    if not paths:
        raise UserError("publish: no bundles given")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows = []
    for p in paths:
        m = check_manifest(read_json(Path(p) / MANIFEST), str(Path(p) / MANIFEST))
        v = _valid_value(m, metric)
        rows.append((0 if math.isnan(v) else 1, sign * (0.0 if math.isnan(v) else v), -int(m["card"].get("seed") or 0),
                     Path(p), m["card"].get("seed"), v))
    best = max(rows, key=lambda r: r[:3])
    return best[3], {"metric": metric, "split": "valid", "chosen_seed": best[4],
                     "seeds": {str(r[4]): r[5] for r in rows}}


def _upload(store: ObjectStore, local: Path, prefix: str, manifest: dict[str, Any]) -> None:
    """The bundle at ``prefix`` (``bundle.json`` last). A complete copy of the same seed and data already there
    (a retry of this run) is kept: a version, once complete, never changes."""
    key = f"{prefix}/{MANIFEST}"
    if store.exists(key):
        there = read_json_bytes(store.get_bytes(key), f"{store.uri}/{key}")
        same = all(there.get("card", {}).get(k) == manifest["card"].get(k) for k in ("seed", "data_fingerprint"))
        if same:
            log.info("publish: %s/%s is complete already (a retry): kept", store.uri, prefix)
            return
        raise UserError(f"{store.uri}/{key}: version exists with another model (seed "
                        f"{there.get('card', {}).get('seed')}); a version is written once")
    upload_bundle(local, store, prefix)


def read_json_bytes(data: bytes, where: str) -> dict[str, Any]:
    import json

    try:
        return json.loads(data)
    except ValueError as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None


def _promote(store: ObjectStore, name: str, version: str, against: Callable[[dict | None], dict[str, Any]],
             pointer_for: Callable[[dict | None, dict[str, Any]], dict[str, Any]], *, promote: bool,
             settle_s: float, max_rounds: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Compare with the champion and, when better, make this version the champion; returns (gate, pointer).

    Consistency without trusting the store's conditional writes: (1) the pointer is written only after the
    version's bundle is complete and names nothing else; (2) after the comparison the pointer is read again and
    written only if it still names the champion compared with, *conditionally* on that read (``If-Match`` /
    ``If-None-Match`` on S3, a lock on a local store); a changed pointer or a refused write means another
    publisher got there first: compare with that champion (each champion is scored once); (3) after writing,
    wait ``settle_s`` and read it back: a pointer that a racer wrote meanwhile without having compared with us
    (its ``previous`` is not our version) is compared with too, and we write again if still better. So the
    pointer ends naming a version that was compared with every version that was champion after it was read
    -- on stores that enforce the condition always; on others when a pointer write takes less than
    ``settle_s`` (docs/kubeflow.md, "Champion and challenger")."""
    gate: dict[str, Any] = {}
    for _ in range(max(1, max_rounds)):
        pointer, tag = read_pointer(store, name)
        if pointer is not None and pointer["version"] == version:
            return {**(gate or against(None)), "decision": "already-champion", "promoted": True,
                    "reason": f"version {version} is the champion already (a retry of this run)"}, pointer
        gate = against(pointer)
        if not promote or not gate["promote"]:
            decision = "not-promoted" if not promote else "refused"
            reason = "promote=false: evaluated, not promoted" if not promote else gate["reason"]
            return {**gate, "decision": decision, "promoted": False, "reason": reason}, pointer
        current, tag = read_pointer(store, name)  # comparing took a while: write only if nothing changed since
        if (current or {}).get("version") != (pointer or {}).get("version"):
            log.info("publish: the champion changed while comparing; comparing with the new champion")
            continue
        if not swap_pointer(store, name, pointer_for(current, gate), tag):
            log.info("publish: the champion pointer changed while comparing; comparing with the new champion")
            continue
        time.sleep(max(0.0, settle_s))
        back, _ = read_pointer(store, name)
        if back is not None and back["version"] == version:
            return {**gate, "decision": "promoted", "promoted": True}, back
        if back is not None and back.get("previous") == version:  # a racer compared with us and won
            return {**gate, "decision": "superseded", "promoted": False,
                    "reason": f"{gate['reason']}; then replaced by {back['version']}, which was compared with this "
                              "version and was better"}, back
        log.info("publish: a racing publisher replaced the pointer (%s) without comparing with %s; comparing again",
                 back and back["version"], version)
    pointer, _ = read_pointer(store, name)
    return {**gate, "decision": "contention", "promoted": False,
            "reason": f"the champion pointer kept changing ({max_rounds} rounds); not promoted"}, pointer


def _external(summary: dict[str, Any] | None, head: str, seed: Any) -> dict[str, Any]:
    out = {}
    for name, e in ((summary or {}).get("external") or {}).items():
        row = (e.get("models", {}).get(head, {}).get("seeds") or {}).get(str(seed))
        if row is not None:
            out[name] = {"uri": e.get("uri"), **row, "counts": (e.get("counts") or {}).get(str(seed))}
    return out


def publish(bundles: Sequence[str | os.PathLike], data_dir: str | os.PathLike, out_dir: str | os.PathLike,
            cfg: Config, *, store: ObjectStore | None = None, summary_dir: str | os.PathLike | None = None,
            external_dir: str | os.PathLike | None = None, promote: bool = True, run_id: str | None = None,
            image: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Publish the best (by validation) of ``bundles`` behind the champion/challenger gate; see the module doc.

    ``data_dir``: the run's ingested data (its test split is a gate dataset; its data card goes in the card);
    ``summary_dir``: aggregate's output (``production_summary.json``: ablation, ``eval_uris`` results);
    ``external_dir``: the evaluate step's output (its ingested ``eval_uris`` sets are gate datasets)."""
    from streamguard.registry import register, registry_url
    from streamguard.report import render_card_markdown
    from streamguard.storage.retry import RetryPolicy

    pc = cfg.publish
    store = store if store is not None else open_store(None, cfg.store)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen, selection = select_bundle(bundles, pc.metric)
    challenger = load_bundle(chosen, cfg.store)
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    version = make_version(run_id, __version__, now)
    prefix = version_prefix(pc.model_name, version)
    uri = f"{store.uri.rstrip('/')}/{prefix}"
    if "://" not in uri:
        uri = f"file://{uri}"
    summary = read_json(Path(summary_dir) / "production_summary.json") if summary_dir else None
    data_report = Path(data_dir) / "data_report.json"
    scorer = Scorer(gate_datasets(data_dir, external_dir), progress=progress)
    test = card_metrics(challenger, scorer, pc.metric, pc.n_boot)
    _upload(store, Path(chosen), prefix, challenger.manifest)

    champions: dict[str, Bundle | str] = {}

    def against(pointer: dict | None) -> dict[str, Any]:
        if pointer is None:
            return {"promote": True, "reason": "first publish: no champion yet", "metric": pc.metric,
                    "margin": pc.margin, "rule": pc.rule, "champion_version": None, "datasets": {},
                    "challenger_score": test["metrics"].get(pc.metric), "champion_score": None}
        v = pointer["version"]
        if v not in champions:
            try:
                champions[v] = load_bundle(f"{store.uri.rstrip('/')}/{version_prefix(pc.model_name, v)}", cfg.store)
            except UserError as e:
                champions[v] = str(e)
        champ = champions[v]
        if isinstance(champ, str):
            ok = pc.incompatible_champion == "promote"
            return {"promote": ok, "metric": pc.metric, "margin": pc.margin, "rule": pc.rule, "champion_version": v,
                    "datasets": {}, "challenger_score": test["metrics"].get(pc.metric), "champion_score": None,
                    "reason": f"the champion cannot be loaded by this StreamGuard ({champ}); publish.incompatible_"
                              f"champion={pc.incompatible_champion}"}
        return {**compare(challenger, champ, scorer, metric=pc.metric, margin=pc.margin, rule=pc.rule,
                          n_boot=pc.n_boot), "champion_version": v}

    lineage = {"kfp_run_id": run_id or None, "data_fingerprint": challenger.card.get("data_fingerprint"),
               "image": image or os.environ.get(IMAGE_ENV) or None, "code_version": __version__,
               "bundle_code_version": challenger.card.get("code_version"), "source_bundle": str(chosen),
               "store": store.uri}

    def pointer_for(previous: dict | None, gate: dict[str, Any]) -> dict[str, Any]:
        return {"model_name": pc.model_name, "version": version, "prefix": prefix, "uri": uri,
                "previous": previous["version"] if previous else None, "promoted_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "metric": pc.metric,
                "challenger_score": gate.get("challenger_score"), "champion_score": gate.get("champion_score"),
                "reason": gate["reason"], "seed": challenger.card.get("seed"), **lineage}

    gate, pointer = _promote(store, pc.model_name, version, against, pointer_for, promote=promote,
                             settle_s=pc.settle_s, max_rounds=pc.max_rounds)
    head = challenger.head
    card = {
        "model_name": pc.model_name, "version": version, "uri": uri, "created_at": now,
        "seed": challenger.card.get("seed"), "head": head, "families": challenger.families,
        "thresholds": challenger.thresholds, "selection": selection,
        "valid": (challenger.card.get("metrics", {}).get(head) or {}).get("valid"),
        "test": test, "data_card": read_json(data_report) if data_report.is_file() else None,
        "ablation": (summary or {}).get("ablation"), "external": _external(summary, head, challenger.card.get("seed")),
        "gate": gate, "champion": {"version": pointer["version"] if pointer else None,
                                   "pointer": f"{store.uri.rstrip('/')}/{pointer_key(pc.model_name)}"},
        "lineage": lineage,
    }
    store.put_bytes(f"{prefix}/{CARD}", dumps(card))
    md = render_card_markdown(card)
    store.put_bytes(f"{prefix}/card.md", md.encode())
    registry: dict[str, Any] = {"url": registry_url(), "registered": False}
    if registry["url"]:
        try:
            registry.update(register(registry["url"], name=pc.model_name, version=version,
                                     uri=uri, card=card, promoted=bool(gate["promoted"]),
                                     retry=RetryPolicy.from_settings(cfg.store), timeout_s=cfg.store.timeout_s),
                            registered=True)
        except RegistryError as e:
            registry["error"] = str(e)
            log.warning("model registry: not registered: %s (the store publish at %s stands; `streamguard register "
                        "--version %s` registers it later)", e, uri, version)
    result = {"model_name": pc.model_name, "version": version, "uri": uri, "prefix": prefix, "card": card,
              "gate": gate, "champion": card["champion"]["version"], "registry": registry}
    write_json_atomic(out / "publish.json", result)
    write_json_atomic(out / CARD, card)
    (out / "card.md").write_text(md)
    (out / "report.md").write_text(md)
    log.info("publish %s %s (seed %s): %s -- %s", pc.model_name, version, card["seed"], gate["decision"],
             gate["reason"])
    if registry.get("error") and pc.registry_failure == "fail":
        raise RegistryError(f"{registry['error']} (the store publish at {uri} stands)")
    return result


def register_published(store: ObjectStore, name: str, version: str, cfg: Config) -> dict[str, Any]:
    """Register a version already in the store (``streamguard register``: a registry that was down at publish)."""
    from streamguard.registry import register, registry_url
    from streamguard.storage.retry import RetryPolicy

    url = registry_url()
    if not url:
        raise UserError("environment MODEL_REGISTRY_URL: not set (the Model Registry's address)")
    prefix = version_prefix(name, version)
    try:
        card = read_json_bytes(store.get_bytes(f"{prefix}/{CARD}"), f"{store.uri}/{prefix}/{CARD}")
    except KeyError:
        raise UserError(f"{store.uri}/{prefix}/{CARD}: missing; not a published version") from None
    pointer, _ = read_pointer(store, name)
    return register(url, name=name, version=version, uri=card["uri"], card=card,
                    promoted=bool(pointer and pointer["version"] == version),
                    retry=RetryPolicy.from_settings(cfg.store), timeout_s=cfg.store.timeout_s)


def publish_kfp_metrics(result: dict[str, Any]) -> dict[str, float]:
    """UI scalars: the decision (``gate_promoted`` 1/0), both scores, every dataset's difference, the published
    model's test metrics with their interval bounds."""
    g, test = result["gate"], result["card"]["test"]
    out: dict[str, Any] = {"gate_promoted": 1.0 if g["promoted"] else 0.0,
                           "gate_challenger_score": g.get("challenger_score"),
                           "gate_champion_score": g.get("champion_score"), "gate_delta": g.get("delta")}
    for name, row in (g.get("datasets") or {}).items():
        out[f"gate_{name}_delta"] = row.get("delta")
        out[f"gate_{name}_challenger"] = row.get("challenger")
        out[f"gate_{name}_champion"] = row.get("champion")
    for k in ("f1", "precision", "recall", "roc_auc", "pr_auc"):
        out[f"test_{k}"] = test["metrics"].get(k)
        ci = test["intervals"].get(k) or {}
        out[f"test_{k}_low"], out[f"test_{k}_high"] = ci.get("low"), ci.get("high")
    return {k: round(float(v), 6) for k, v in out.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v))}

