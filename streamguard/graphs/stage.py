"""The ``build_graphs`` pipeline stage: every sample of every split -> one graph, in shards.

Output directory::

    manifest.json        builder version, data fingerprint, max_nodes, shards per split,
                         counts, failures with reasons, the report
    train-00000.pt ...   shards (see streamguard.graphs.shards), ``shard_size`` graphs each

With a store, the shards are also cached under
``graphs/<fingerprint>/<BUILDER_VERSION>/max<max_nodes>/`` and reused by the next call with
the same data, builder version and cap (``manifest.json`` is uploaded last and marks the
entry complete). A different builder version is a different key, so stale shards are
never reused.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path

from tqdm import tqdm

from streamguard.data.samples import SPLITS, fingerprint, read_split
from streamguard.errors import StreamGuardError, UserError
from streamguard.graphs import builder
from streamguard.graphs.shards import MANIFEST, write_shard
from streamguard.jsonio import read_json, write_json_atomic

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 4096
_PARALLEL_MIN = 256  # below this many functions, worker start-up costs more than it saves


def _build_one(item: tuple[str, str, int]) -> tuple[builder.GraphArrays, str | None]:
    _, code, _ = item
    return builder.build_or_fallback(code, _MAX_NODES)


_MAX_NODES = builder.DEFAULT_MAX_NODES


def _init_worker(max_nodes: int) -> None:
    global _MAX_NODES
    _MAX_NODES = max_nodes


def _cache_prefix(fp: str, version: str, max_nodes: int) -> str:
    safe = "".join(c if c.isalnum() or c in ".-_+" else "_" for c in version)
    return f"graphs/{fp}/{safe}/max{max_nodes}"


def _try_cache(store, prefix: str, out: Path, fp: str, version: str, max_nodes: int) -> dict | None:
    key = f"{prefix}/{MANIFEST}"
    try:
        if not store.exists(key):
            return None
        manifest = json.loads(store.get_bytes(key))
        if (manifest.get("builder_version"), manifest.get("fingerprint"), manifest.get("max_nodes")) != \
                (version, fp, max_nodes):
            log.warning("graph cache %s: manifest is for another builder/data/cap; rebuilding", key)
            return None
        for split in SPLITS:
            for name in manifest["splits"][split]["shards"]:
                store.get_file(f"{prefix}/{name}", out / name)
    except StreamGuardError:  # the store is down past its retry budget (exit 5) or refuses us (exit 2)
        raise
    except Exception as e:  # a broken cache entry is rebuilt, never fatal
        log.warning("graph cache %s unusable (%s: %s); rebuilding", key, type(e).__name__, e)
        return None
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def build_graphs(data_dir: str | os.PathLike, out_dir: str | os.PathLike, store=None, workers: int | None = None,
                 max_nodes: int = builder.DEFAULT_MAX_NODES, shard_size: int = DEFAULT_SHARD_SIZE) -> dict:
    """Build one graph per sample of every split into shards + ``manifest.json``; returns the report.

    ``workers``: processes (default: all cores). ``store``: an ObjectStore used as a cache keyed by
    data fingerprint, builder version and ``max_nodes``.
    """
    t0 = time.perf_counter()
    if max_nodes < 1:
        raise UserError(f"max_nodes: {max_nodes!r}, expected >= 1")
    if shard_size < 1:
        raise UserError(f"shard_size: {shard_size!r}, expected >= 1")
    splits = {s: read_split(data_dir, s) for s in SPLITS}
    fp = fingerprint(splits)
    version = builder.BUILDER_VERSION
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = _cache_prefix(fp, version, max_nodes)

    if store is not None:
        manifest = _try_cache(store, prefix, out, fp, version, max_nodes)
        if manifest is not None:
            report = dict(manifest["report"], cache_hit=True, seconds=round(time.perf_counter() - t0, 3))
            log.info("graphs: cache hit %s (%d graphs)", prefix, sum(report["counts"].values()))
            return report

    total = sum(len(v) for v in splits.values())
    workers = max(1, workers or os.cpu_count() or 1)
    if total < _PARALLEL_MIN:
        workers = 1
    items = [(split, s) for split in SPLITS for s in splits[split]]
    args = [(s.id, s.func, s.target) for _, s in items]
    t_build = time.perf_counter()
    if workers == 1:
        _init_worker(max_nodes)
        results = map(_build_one, args)
        pool = None
    else:
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        pool = mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(max_nodes,))
        results = pool.imap(_build_one, args, chunksize=64)
    built: dict[str, list] = {s: [] for s in SPLITS}
    failures = []
    try:
        for (split, s), (g, reason) in tqdm(zip(items, results), total=total, desc="build graphs", unit="fn",
                                            mininterval=1.0, disable=None):
            built[split].append((s.id, s.target, g, reason is not None))
            if reason is not None:
                failures.append({"split": split, "id": s.id, "reason": reason})
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    build_seconds = time.perf_counter() - t_build

    manifest_splits = {}
    for split in SPLITS:
        graphs = built[split]
        names, counts = [], []
        for j in range(0, max(len(graphs), 1), shard_size):
            name = f"{split}-{j // shard_size:05d}.pt"
            write_shard(out / name, graphs[j:j + shard_size])
            names.append(name)
            counts.append(len(graphs[j:j + shard_size]))
        manifest_splits[split] = {"count": len(graphs), "shards": names, "shard_counts": counts,
                                  "failed": sum(1 for g in graphs if g[3]),
                                  "truncated": sum(1 for g in graphs if g[2].truncated)}

    all_graphs = [g for split in SPLITS for _, _, g, failed in built[split] if not failed]
    shares = sorted(g.error_share for g in all_graphs)
    nodes = [g.num_nodes for g in all_graphs]
    report = {
        "fingerprint": fp,
        "builder_version": version,
        "max_nodes": max_nodes,
        "counts": {s: len(built[s]) for s in SPLITS},
        "failed": len(failures),
        "failures": failures,
        "truncated": {s: manifest_splits[s]["truncated"] for s in SPLITS},
        "error_share": {
            "mean": round(sum(shares) / len(shares), 5) if shares else 0.0,
            "p95": round(shares[int(0.95 * (len(shares) - 1))], 5) if shares else 0.0,
            "max": round(shares[-1], 5) if shares else 0.0,
            "graphs_with_errors": sum(1 for v in shares if v > 0),
        },
        "nodes": {"mean": round(sum(nodes) / len(nodes), 1) if nodes else 0.0, "max": max(nodes, default=0)},
        "edges_mean": round(sum(len(g.etype) for g in all_graphs) / len(all_graphs), 1) if all_graphs else 0.0,
        "workers": workers,
        "functions_per_second": round(total / build_seconds, 1) if build_seconds > 0 else 0.0,
        "cache_hit": False,
        "cache_key": prefix if store is not None else None,
    }
    report["seconds"] = round(time.perf_counter() - t0, 3)
    manifest = {"builder_version": version, "fingerprint": fp, "max_nodes": max_nodes,
                "feature_spec": builder.FEATURE_SPEC, "edge_types": list(builder.EDGE_TYPES),
                "splits": manifest_splits, "failures": failures, "report": report}
    write_json_atomic(out / MANIFEST, manifest)
    if failures:
        log.warning("graphs: %d of %d functions gave no graph (fallback graphs stored; first: %s)",
                    len(failures), total, failures[0])
    if store is not None:
        for split in SPLITS:
            for name in manifest_splits[split]["shards"]:
                store.put_file(f"{prefix}/{name}", out / name)
        store.put_file(f"{prefix}/{MANIFEST}", out / MANIFEST)  # last: marks the entry complete
    return report


def read_report(graphs_dir: str | os.PathLike) -> dict:
    return read_json(Path(graphs_dir) / MANIFEST)["report"]
