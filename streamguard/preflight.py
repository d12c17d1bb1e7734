"""Pre-flight gate: checks that stop a bad run before it spends GPU hours.

Each check is a function returning a :class:`CheckResult` (pass / warn / fail /
skip, a one-line message, measured values, whether it is required).
``preflight`` runs the selected checks, writes ``preflight_report.json`` and
``preflight_report.md``, and raises :class:`PreflightError` (exit code 4) when a
required check failed — which fails the KFP task and so stops the pipeline
before any training task starts. A check that crashes is a failed check (its
message is one line; the traceback goes to the JSON values).

Checks (names as in ``checks=`` and in the report):

``accelerator``
    CUDA where the profile asks for a GPU (``require_gpu``): device name, memory,
    compute capability, bf16, torch/CUDA/cuDNN versions, and a tiny kernel run.
``safety``
    Self-tests of the safety features training relies on: ``safety_atomic_json``
    (a crash at fsync or at the rename leaves the old file intact and no temp
    file), ``safety_amp_order`` (``step.train_step``, the one training step of
    the engine, the LR finder and the probes, with a recording scaler
    and optimizer calls scale → backward → unscale_ → clip → step → update, and
    clips the *unscaled* gradients), ``safety_lr_fallback`` (an LR finder whose
    loss raises returns the fallback LR with source ``fallback`` and leaves the
    model untouched).
``data``
    Splits present and non-empty, both classes in every split, label balance
    (warn below ``min_class_share``), no function (comment/whitespace-normalised)
    or id shared by two splits, share of functions truncated at
    ``transformer.max_length`` (warn above ``truncation_warn_share``; counted with
    the real tokenizer when it is cheap — the ``scratch`` tokenizer, a local
    checkpoint, or one the probes already built — else a lower-bound estimate in
    C lexical tokens, ``hygiene.length_stats``), a graph for every sample.
``object_store``
    Endpoint reachable (a TCP connect first, so a dead server fails in seconds,
    not after the S3 client's retries), bucket exists, write/read/list/delete
    probe, LR cache location listable, TTL a positive number.
``cluster``
    Only in a pod (``KUBERNETES_SERVICE_HOST`` and a service-account token;
    otherwise *skip* with the reason): nodes matching the GPU pool's node
    selector with allocatable ``nvidia.com/gpu``, and the credentials Secret.
``smoke``
    Tiny overfit per family (``smoke.smoke_test``): ``smoke_transformer``,
    ``smoke_gnn``, ``smoke_fusion``.
``memory``
    One worst-case batch forward + backward per family at the configured batch
    size and sequence length (``smoke.memory_check``): ``memory_transformer``,
    ``memory_gnn``; fails above ``memory_limit_share`` (90 %) of the device
    memory (CPU: peak RSS vs usable RAM).

Cost on 2 CPU cores: ``smoke`` and ``memory`` are the expensive ones (they build
the models; a :class:`~streamguard.smoke.ProbeContext` builds each once);
everything else takes about a second. Measured with every check on (2 cores
shared with other work, load ~2.5): ``demo`` profile, 2000 functions: 17 s in
``preflight`` (20 s for ``streamguard preflight`` with imports; the transformer
smoke test is 9 s of it); ``test`` profile, 240 functions: 4.6 s (7.6 s). ``checks=`` (or the environment
variable ``STREAMGUARD_PREFLIGHT_CHECKS``, comma-separated) selects checks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from streamguard.config import Config
from streamguard.data.samples import SPLITS, read_split
from streamguard.errors import PreflightError, UserError
from streamguard.jsonio import write_json_atomic
from streamguard.kube import SA_DIR, in_cluster_client, in_cluster_reason, pod_namespace
from streamguard.storage import ObjectStore

log = logging.getLogger(__name__)

CHECKS = ("accelerator", "safety", "data", "object_store", "cluster", "smoke", "memory")
"""Every check group, in the order they run; the default selection."""
GPU_RESOURCE = "nvidia.com/gpu"
SECRET_NAME = "streamguard-minio"
CHECKS_ENV = "STREAMGUARD_PREFLIGHT_CHECKS"
NODE_SELECTOR_ENV = "STREAMGUARD_GPU_NODE_SELECTOR"


@dataclass
class CheckResult:
    name: str
    status: str  # pass | warn | fail | skip
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    required: bool = True
    seconds: float = 0.0

    @property
    def blocking(self) -> bool:
        """A required check that failed: the run must stop."""
        return self.status == "fail" and self.required


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


# ------------------------------------------------------------------ accelerator
def check_accelerator(require_gpu: bool) -> CheckResult:
    vals: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "cuda_available": torch.cuda.is_available(), "require_gpu": require_gpu}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        cap = (int(p.major), int(p.minor))
        vals.update(name=p.name, memory_bytes=int(p.total_memory), capability=f"{cap[0]}.{cap[1]}",
                    bf16=bool(torch.cuda.is_bf16_supported()), device_count=torch.cuda.device_count())
        try:  # a driver/runtime mismatch shows up on the first kernel, not in the properties
            x = torch.ones(64, 64, device="cuda")
            vals["kernel_ok"] = bool(float((x @ x).sum()) == 64.0 ** 3)
        except Exception as e:
            return CheckResult("accelerator", "fail", f"{p.name}: a CUDA kernel failed ({_one_line(e)})", vals)
        msg = (f"{p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {cap[0]}.{cap[1]}, "
               f"bf16 {'yes' if vals['bf16'] else 'no'}, CUDA {torch.version.cuda}, torch {torch.__version__}")
        if not vals["kernel_ok"]:
            return CheckResult("accelerator", "fail", f"{p.name}: a test matmul gave a wrong result", vals)
        if cap < (7, 0):
            return CheckResult("accelerator", "warn", msg + " (below 7.0: no tensor cores, AMP gains little)", vals)
        return CheckResult("accelerator", "pass", msg, vals)
    if require_gpu:
        return CheckResult("accelerator", "fail", f"the profile asks for a GPU but CUDA is not available "
                                                  f"(torch {torch.__version__}, CUDA build {torch.version.cuda})", vals)
    return CheckResult("accelerator", "pass", f"CPU only (no GPU requested); torch {torch.__version__}", vals)


# ------------------------------------------------------------------ safety self-tests
class _SimulatedCrash(RuntimeError):
    pass


def check_atomic_json(write_json: Callable[[Any, Any], None] | None = None, workdir: str | None = None) -> CheckResult:
    """A writer that crashes at ``os.fsync`` (data written, not yet renamed) or at ``os.replace`` must leave the
    previous file intact and no temporary file beside it; a normal write then replaces it."""
    from unittest import mock

    from streamguard.jsonio import read_json

    write_json = write_json or write_json_atomic
    old, new = {"version": "old", "pad": "x" * 4096}, {"version": "new", "pad": "y" * 8192}
    vals: dict[str, Any] = {
        "writer": f"{getattr(write_json, '__module__', '?')}.{getattr(write_json, '__name__', '?')}"}
    with tempfile.TemporaryDirectory(prefix="sg-preflight-atomic-", dir=workdir) as tmp:
        target = Path(tmp) / "state.json"
        for point in ("fsync", "replace"):
            write_json(target, old)

            def crash(*_a, point=point, **_k):
                raise _SimulatedCrash(f"simulated crash at os.{point}")

            # os.<point> is patched only for this call (a few milliseconds; the pre-flight runs no other threads)
            with mock.patch.object(os, point, crash):
                try:
                    write_json(target, new)
                    crashed = False
                except _SimulatedCrash:
                    crashed = True
            leftovers = sorted(p.name for p in Path(tmp).iterdir() if p.name != target.name)
            try:
                intact = read_json(target) == old
            except Exception:
                intact = False
            vals[f"crash_at_{point}"] = {"raised": crashed, "old_file_intact": intact, "leftover_files": leftovers}
            if not crashed:  # the write went through: nothing to prove at this point
                vals[f"crash_at_{point}"]["note"] = f"the writer never called os.{point}"
            elif not intact:
                return CheckResult("safety_atomic_json", "fail",
                                   f"a crash at os.{point} during a JSON write corrupted the previous file", vals)
            if leftovers:
                return CheckResult("safety_atomic_json", "fail",
                                   f"a crash at os.{point} left temporary files behind: {', '.join(leftovers)}", vals)
        if not (vals["crash_at_fsync"]["raised"] or vals["crash_at_replace"]["raised"]):
            return CheckResult("safety_atomic_json", "fail", "the JSON writer neither fsyncs nor renames: "
                                                             "not an atomic write", vals)
        write_json(target, new)
        if read_json(target) != new:
            return CheckResult("safety_atomic_json", "fail", "a normal write did not replace the file", vals)
    return CheckResult("safety_atomic_json", "pass", "crash at fsync or rename keeps the old file, no temp file left",
                       vals)


class _RecordingScaler:
    """A GradScaler stand-in (scale 1024) that records its calls and the gradient norm each call sees."""

    scale_factor = 1024.0

    def __init__(self, events: list[str], params: list[torch.nn.Parameter]):
        self.events, self.params, self.seen_norms = events, params, {}

    def _norm(self) -> float:
        grads = [p.grad.detach().flatten() for p in self.params if p.grad is not None]
        return float(torch.cat(grads).norm()) if grads else 0.0

    def is_enabled(self) -> bool:
        return True

    def scale(self, loss):
        self.events.append("scale")
        return loss * self.scale_factor

    def unscale_(self, optimizer):
        self.events.append("unscale_")
        self.seen_norms["unscale_"] = self._norm()
        for p in self.params:
            if p.grad is not None:
                p.grad.div_(self.scale_factor)

    def step(self, optimizer):
        self.events.append("step")
        self.seen_norms["step"] = self._norm()
        return optimizer.step()

    def update(self):
        self.events.append("update")


def check_amp_order(train_step: Callable | None = None) -> CheckResult:
    """``train_step`` (default: ``step.train_step``) must call scale → backward → unscale_ → clip → optimizer
    step → update, and clip the unscaled gradients (so ``max_norm`` means what it says under fp16)."""
    from unittest import mock

    from streamguard.train import step

    train_step = train_step or step.train_step
    events: list[str] = []
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    params = list(model.parameters())
    for p in params:
        p.register_hook(lambda g: events.append("backward") or g)
    opt = torch.optim.SGD(params, lr=0.1)
    real_step = opt.step
    opt.step = lambda *a, **k: (events.append("optimizer.step"), real_step(*a, **k))[1]
    scaler = _RecordingScaler(events, params)
    real_clip = torch.nn.utils.clip_grad_norm_
    clip_seen: dict[str, float] = {}

    def clip(ps, max_norm, *a, **k):
        events.append("clip")
        clip_seen["max_norm"] = float(max_norm)
        clip_seen["norm_in"] = scaler._norm()
        return real_clip(ps, max_norm, *a, **k)

    x = torch.full((8, 4), 10.0)
    loss = (model(x) ** 2).mean()  # large gradients: the unscaled norm is well above max_norm
    max_norm = 1.0
    with mock.patch.object(torch.nn.utils, "clip_grad_norm_", clip):
        train_step(loss, opt, scaler, params, max_norm)
    compact = [e for i, e in enumerate(events) if e != "backward" or (i and events[i - 1] != "backward")]
    expected = ["scale", "backward", "unscale_", "clip", "step", "optimizer.step", "update"]
    vals = {"calls": compact, "expected": expected, "norm_at_unscale": scaler.seen_norms.get("unscale_"),
            "norm_into_clip": clip_seen.get("norm_in"), "norm_at_step": scaler.seen_norms.get("step"),
            "max_norm": max_norm}
    if compact != expected:
        return CheckResult("safety_amp_order", "fail", f"train_step called {' → '.join(compact) or 'nothing'}; "
                                                       f"expected {' → '.join(expected)}", vals)
    at_step = scaler.seen_norms.get("step", math.inf)
    true_norm = scaler.seen_norms.get("unscale_", 0.0) / scaler.scale_factor  # > max_norm by construction
    if not (min(true_norm, max_norm) * 0.999 <= at_step <= max_norm * 1.001):
        return CheckResult("safety_amp_order", "fail", f"gradient norm at the optimizer step is {at_step:.4g}, "
                                                       f"expected max_norm {max_norm} (unscaled norm {true_norm:.4g}): "
                                                       "clipping did not act on the unscaled gradients", vals)
    return CheckResult("safety_amp_order", "pass", "scale → backward → unscale_ → clip → step → update; "
                                                   "clipped norm at step ≤ max_norm", vals)


def check_lr_fallback(find_lr: Callable | None = None) -> CheckResult:
    """An LR finder whose loss raises must return the fallback LR, source ``fallback`` with a reason, and leave
    the model's weights as they were."""
    from streamguard.train import lr_finder

    find_lr = find_lr or lr_finder.find_lr
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [{"x": torch.randn(4, 4), "labels": torch.tensor([0, 1, 0, 1])}]
    calls = {"n": 0}

    def broken_loss(m, batch):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("simulated loss failure")
        out = m(batch["x"])
        return torch.nn.functional.cross_entropy(out, batch["labels"]), out

    fallback = 1.234e-4
    try:
        res = find_lr(model, lambda ps, lr: torch.optim.SGD(ps, lr=lr), batches, loss=broken_loss, steps=10,
                      fallback_lr=fallback)
    except Exception as e:
        return CheckResult("safety_lr_fallback", "fail",
                           f"the LR finder raised instead of falling back: {_one_line(e)}", {"loss_calls": calls["n"]})
    source, lr, reason = getattr(res, "source", None), getattr(res, "lr", None), getattr(res, "reason", None)
    restored = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    vals = {"source": source, "lr": lr, "reason": reason, "weights_restored": restored, "loss_calls": calls["n"]}
    if source != "fallback" or lr != fallback:
        return CheckResult("safety_lr_fallback", "fail", f"a failing sweep gave lr {lr} from {source!r}; expected "
                                                         f"the fallback {fallback} from 'fallback'", vals)
    if not reason:
        return CheckResult("safety_lr_fallback", "fail", "the fallback carries no reason", vals)
    if not restored:
        return CheckResult("safety_lr_fallback", "fail", "the failed sweep left the model's weights changed", vals)
    return CheckResult("safety_lr_fallback", "pass", f"failing sweep -> fallback lr ({reason})", vals)


# ------------------------------------------------------------------ data
def _count_truncated(samples: Sequence, tokenizer, max_length: int) -> int:
    if not samples:
        return 0
    enc = tokenizer([s.func for s in samples], truncation=True, max_length=max_length + 1)
    return sum(len(ids) > max_length for ids in enc["input_ids"])


def check_data(data_dir: str, graphs_dir: str | None, max_length: int | None = None, *,
               tokenizer: Any = None, tokenizer_fn: Callable[[], Any] | None = None,
               truncation_warn_share: float = 0.1, min_class_share: float = 0.05) -> CheckResult:
    """See the module docstring. ``tokenizer`` (or ``tokenizer_fn()``, tried when no tokenizer is given; a
    failure there falls back to the estimate) counts truncation; without one the count is an estimate."""
    from streamguard.data.hygiene import leakage, length_stats

    vals: dict[str, Any] = {}
    splits: dict[str, list] = {}
    for s in SPLITS:
        p = Path(data_dir) / f"{s}.jsonl"
        if not p.is_file():
            return CheckResult("data", "fail", f"{p}: split file missing", vals)
        splits[s] = read_split(data_dir, s)
        if not splits[s]:
            return CheckResult("data", "fail", f"{p}: split is empty", vals)
        vals[f"{s}_size"] = len(splits[s])
        vals[f"{s}_positive_share"] = round(sum(x.target for x in splits[s]) / len(splits[s]), 4)
    problems, warnings = [], []
    n_all = sum(len(splits[s]) for s in SPLITS)
    n_vuln = sum(x.target for s in SPLITS for x in splits[s])
    if n_vuln in (0, n_all):  # one class in the whole dataset: one finding, not one per split
        problems.append(f"{data_dir}: the dataset has one class only ({n_all} samples, all "
                        f"{'vulnerable' if n_vuln else 'safe'}); a detector needs safe and vulnerable functions")
    for s in SPLITS if n_vuln not in (0, n_all) else ():
        share = vals[f"{s}_positive_share"]
        if share in (0.0, 1.0):
            problems.append(f"split {s} has a single class ({'all vulnerable' if share else 'all safe'}; "
                            f"{len(splits[s])} samples)")
        elif min(share, 1 - share) < min_class_share:
            warnings.append(f"split {s}: extreme label balance ({share:.1%} vulnerable)")
    leaks = leakage(splits)
    vals["duplicates_across_splits"] = leaks
    if any(leaks.values()):
        problems.append("functions shared across splits (normalised): "
                        + ", ".join(f"{k} {v}" for k, v in leaks.items() if v))
    ids = {s: {x.id for x in splits[s]} for s in SPLITS}
    id_leaks = {f"{a}/{b}": len(ids[a] & ids[b]) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]}
    vals["ids_across_splits"] = id_leaks
    if any(id_leaks.values()):
        problems.append("sample ids shared across splits: " + ", ".join(f"{k} {v}" for k, v in id_leaks.items() if v))
    if max_length:
        all_samples = [x for s in SPLITS for x in splits[s]]
        how = None
        if tokenizer is None and tokenizer_fn is not None:
            try:
                tokenizer = tokenizer_fn()
            except Exception as e:
                how = f"estimate (tokenizer unavailable: {_one_line(e)})"
        if tokenizer is not None:
            n = _count_truncated(all_samples, tokenizer, max_length)
            how = "tokenizer"
        else:
            n = length_stats(all_samples, max_length)["n_truncated"]
            how = how or "estimate"
        share = n / len(all_samples)
        vals["truncation"] = {"max_length": max_length, "n_truncated": n, "share": round(share, 4),
                              "method": how if how != "estimate" else
                              "estimate: C lexical tokens, a lower bound of subword tokens"}
        if share > truncation_warn_share:
            warnings.append(f"{share:.1%} of functions longer than max_length {max_length} ({how}); "
                            f"the transformer sees only their start")
    if graphs_dir:
        from streamguard.graphs import load_graphs

        for s in SPLITS:
            try:
                have = {g.sample_id for g in load_graphs(graphs_dir, s)}
            except Exception as e:
                problems.append(f"{graphs_dir}: graphs of split {s} unreadable ({_one_line(e)})")
                continue
            missing = [x.id for x in splits[s] if x.id not in have]
            vals[f"{s}_graphs_missing"] = len(missing)
            if missing:
                problems.append(f"split {s}: {len(missing)} samples without a graph (first {missing[0]!r})")
    else:
        vals["graphs"] = "not checked (no graphs directory)"
    if problems:
        return CheckResult("data", "fail", "; ".join(problems + warnings), vals)
    sizes = "/".join(str(vals[f"{s}_size"]) for s in SPLITS)
    if warnings:
        return CheckResult("data", "warn", f"train/valid/test {sizes}; " + "; ".join(warnings), vals)
    trunc = vals.get("truncation")
    return CheckResult("data", "pass", f"train/valid/test {sizes}, both classes, no cross-split duplicates"
                       + (", graphs complete" if graphs_dir else "")
                       + (f", {trunc['share']:.1%} truncated" if trunc else ""), vals)


# ------------------------------------------------------------------ object store
def _endpoint(store: ObjectStore) -> tuple[str, int] | None:
    ep = getattr(store, "endpoint", None)
    if not ep:
        return None
    host, _, port = ep.rpartition(":")
    if not host or not port.isdigit():
        base = getattr(getattr(store, "client", None), "_base_url", None)
        return ep, 443 if getattr(base, "is_https", False) else 80
    return host.strip("[]"), int(port)


def check_store(store: ObjectStore | None, cfg: Config, *, connect_timeout: float = 3.0,
                environ: Mapping[str, str] | None = None) -> CheckResult:
    from streamguard.train.lr_cache import LRCache

    if store is None:
        return CheckResult("object_store", "skip", "no object store configured", required=False)
    environ = os.environ if environ is None else environ
    vals: dict[str, Any] = {"uri": store.uri}
    t0 = time.perf_counter()
    ep = _endpoint(store)
    if ep is not None:  # S3: a dead endpoint fails here in seconds, not after the client's retries
        vals["endpoint"] = f"{ep[0]}:{ep[1]}"
        try:
            socket.create_connection(ep, timeout=connect_timeout).close()
        except OSError as e:
            return CheckResult("object_store", "fail",
                               f"{store.uri}: endpoint {ep[0]}:{ep[1]} unreachable ({_one_line(e)})", vals)
        vals["connect_ms"] = round(1000 * (time.perf_counter() - t0), 1)
    try:
        client, bucket = getattr(store, "client", None), getattr(store, "bucket", None)
        if client is not None and bucket:
            if not client.bucket_exists(bucket):
                return CheckResult("object_store", "fail", f"{store.uri}: bucket {bucket!r} does not exist "
                                                           "(manifests/base/buckets-job.yaml creates it)", vals)
            vals["bucket"] = bucket
        elif hasattr(store, "root"):
            vals["root"] = str(store.root)
        key = f"preflight/probe-{uuid.uuid4().hex}.txt"
        payload = b"streamguard preflight probe " + uuid.uuid4().hex.encode()
        t1 = time.perf_counter()
        store.put_bytes(key, payload)
        ok_read = store.get_bytes(key) == payload
        ok_list = key in store.list("preflight/")
        store.delete(key)
        gone = not store.exists(key)
        vals["probe_ms"] = round(1000 * (time.perf_counter() - t1), 1)
    except Exception as e:  # any client/network/permission error is the finding
        return CheckResult("object_store", "fail", f"{store.uri}: {_one_line(e)}", vals)
    if not (ok_read and ok_list and gone):
        vals.update(read_back=ok_read, listed=ok_list, deleted=gone)
        return CheckResult("object_store", "fail", f"{store.uri}: write/read/list/delete probe gave wrong results "
                                                   f"(read {ok_read}, listed {ok_list}, deleted {gone})", vals)
    ttl = cfg.train.lr_cache_ttl_hours
    cache = LRCache(store, ttl_hours=ttl) if isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0 else None
    vals["lr_cache_ttl_hours"] = ttl
    if cache is None:
        return CheckResult("object_store", "fail", f"train.lr_cache_ttl_hours={ttl!r}: expected a positive number",
                           vals)
    location = cache.object_key("KEY").rsplit("/", 1)[0]
    vals["lr_cache_location"] = f"{store.uri}/{location}"
    try:
        vals["lr_cache_entries"] = len(store.list(location + "/"))
    except Exception as e:
        return CheckResult("object_store", "fail", f"{store.uri}: LR cache {location}/ not listable ({_one_line(e)})",
                           vals)
    msg = (f"{store.uri}: reachable, write/read/list/delete ok; LR cache {location}/ "
           f"({vals['lr_cache_entries']} entries), TTL {ttl:g} h")
    env_ttl = environ.get("LR_CACHE_TTL_HOURS")
    if env_ttl not in (None, ""):
        vals["lr_cache_ttl_hours_env"] = env_ttl
        try:
            same = math.isclose(float(env_ttl), float(ttl))
        except ValueError:
            same = False
        if not same:
            return CheckResult("object_store", "warn", msg + f"; LR_CACHE_TTL_HOURS={env_ttl!r} from the environment "
                                                             f"differs from train.lr_cache_ttl_hours (the engine uses "
                                                             f"the config)", vals)
    return CheckResult("object_store", "pass", msg, vals)


# ------------------------------------------------------------------ cluster
def parse_node_selector(text: str | None) -> dict[str, str]:
    """``"k=v,k2=v2"`` -> dict (the form of ``$STREAMGUARD_GPU_NODE_SELECTOR``)."""
    out = {}
    for item in (text or "").split(","):
        if item.strip():
            k, sep, v = item.partition("=")
            if not sep or not k.strip():
                raise UserError(f"node selector {text!r}: expected key=value[,key=value]")
            out[k.strip()] = v.strip()
    return out


def _quantity(v: Any) -> float:
    try:
        return float(str(v))
    except ValueError:
        return 0.0


def check_cluster(*, require_gpu: bool = False, node_selector: Mapping[str, str] | None = None,
                  namespace: str | None = None, secret_name: str = SECRET_NAME, api_client: Any = None,
                  environ: Mapping[str, str] | None = None, sa_dir: str = SA_DIR,
                  request_timeout: float = 10.0) -> CheckResult:
    """GPU nodes of the target pool and the credentials Secret, through the Kubernetes API.

    ``api_client`` (a ``kubernetes.client.ApiClient``) is used as given (tests
    point one at an API double); otherwise the check runs only in a pod, with the
    in-cluster config. ``node_selector`` default: ``$STREAMGUARD_GPU_NODE_SELECTOR``
    (``k=v,...``), else any node with allocatable ``nvidia.com/gpu``.
    ``namespace`` default: ``$POD_NAMESPACE``, else the service account's.
    Missing matching GPU nodes fail when ``require_gpu``, warn otherwise; an API
    that refuses to list nodes (403: the pipeline's Role has no cluster-wide
    ``nodes: list``) is a warning; a missing Secret fails.
    """
    environ = os.environ if environ is None else environ
    from kubernetes import client as k8s

    if api_client is None:
        why = in_cluster_reason(environ, sa_dir)
        if why:
            return CheckResult("cluster", "skip", why, {"in_cluster": False}, required=False)
        api_client = in_cluster_client(environ, sa_dir)
    if node_selector is None:
        node_selector = parse_node_selector(environ.get(NODE_SELECTOR_ENV))
    if namespace is None:
        namespace = pod_namespace(environ, sa_dir)
    api = k8s.CoreV1Api(api_client)
    vals: dict[str, Any] = {"in_cluster": True, "node_selector": dict(node_selector), "namespace": namespace,
                            "secret": secret_name, "host": api_client.configuration.host}
    problems, warnings = [], []

    try:
        nodes = api.list_node(_request_timeout=request_timeout).items
    except k8s.ApiException as e:
        nodes = None
        (warnings if e.status in (401, 403) else problems).append(
            f"cannot list nodes ({e.status} {e.reason})"
            + ("; the service account needs a ClusterRole with nodes: list to check the GPU pool"
               if e.status == 403 else ""))
    if nodes is not None:
        pool, gpu_nodes = [], []
        for n in nodes:
            labels = n.metadata.labels or {}
            if all(labels.get(k) == v for k, v in node_selector.items()):
                alloc = _quantity((n.status.allocatable or {}).get(GPU_RESOURCE, 0)) if n.status else 0.0
                ready = any(c.type == "Ready" and c.status == "True"
                            for c in ((n.status and n.status.conditions) or []))
                schedulable = not (n.spec and n.spec.unschedulable)
                pool.append(n.metadata.name)
                if alloc > 0 and ready and schedulable:
                    gpu_nodes.append({"name": n.metadata.name, "gpus": alloc})
        vals.update(nodes_total=len(nodes), nodes_matching_selector=len(pool),
                    gpu_nodes=gpu_nodes, gpus_allocatable=sum(g["gpus"] for g in gpu_nodes))
        if not gpu_nodes:
            sel = ",".join(f"{k}={v}" for k, v in node_selector.items()) or "(any node)"
            what = (f"no Ready node matching {sel} has allocatable {GPU_RESOURCE} "
                    f"({len(pool)} of {len(nodes)} nodes match the selector)")
            (problems if require_gpu else warnings).append(what)
    try:
        sec = api.read_namespaced_secret(secret_name, namespace, _request_timeout=request_timeout)
        vals["secret_keys"] = sorted((sec.data or {}).keys())  # key names only, never values
        missing = [k for k in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY") if k not in (sec.data or {})]
        if missing:
            problems.append(f"Secret {namespace}/{secret_name} lacks key(s) {', '.join(missing)}")
    except k8s.ApiException as e:
        if e.status == 404:
            problems.append(f"Secret {namespace}/{secret_name} not found (see manifests/base/secret.env.example)")
        else:
            warnings.append(f"cannot read Secret {namespace}/{secret_name} ({e.status} {e.reason})")
    status = "fail" if problems else "warn" if warnings else "pass"
    if status == "pass":
        msg = (f"{len(vals['gpu_nodes'])} GPU node(s), {vals['gpus_allocatable']:g} allocatable {GPU_RESOURCE}; "
               f"Secret {namespace}/{secret_name} present")
    else:
        msg = "; ".join(problems + warnings)
    return CheckResult("cluster", status, msg, vals)


# ------------------------------------------------------------------ probes
def check_smoke(family: str, ctx, **kwargs) -> CheckResult:
    from streamguard.smoke import smoke_test

    r = smoke_test(family, ctx.data_dir, ctx.graphs_dir, ctx.cfg, context=ctx, **kwargs)
    vals = {k: v for k, v in r.items() if k != "train_losses"}
    vals["train_losses"] = [round(x, 4) if isinstance(x, float) else x for x in r["train_losses"]]
    fl = r["final_loss"]
    desc = (f"loss {r['first_loss']:.3g} -> {fl:.3g} ({r['reduction']:.0%} lower) in {r['steps']} steps on "
            f"{r['samples']} samples at lr {r['lr']:.3g}" if isinstance(fl, float) else f"loss {fl}")
    if r["passed"]:
        return CheckResult(f"smoke_{family}", "pass", desc, vals)
    tried = ", ".join(f"{a['lr']:.3g}" for a in r["attempts"])
    return CheckResult(f"smoke_{family}", "fail", f"cannot overfit {r['samples']} samples: {r['reason']} "
                                                  f"(lr tried: {tried})", vals)


def check_memory(family: str, ctx, *, limit_share: float = 0.9, total_bytes: int | None = None) -> CheckResult:
    from streamguard.smoke import memory_check

    r = memory_check(family, ctx.data_dir, ctx.graphs_dir, ctx.cfg, context=ctx, limit_share=limit_share,
                     total_bytes=total_bytes)
    shape = (f"batch {r['batch_items']} x {r['seq_len']} tokens" if "seq_len" in r else
             f"batch {r['batch_items']} graphs, {r['nodes']} nodes" if "nodes" in r else f"batch {r['batch_items']}")
    share = r.get("share")
    used = (f"{(r['peak_bytes'] + r['optimizer_state_bytes']) / 2**20:.0f} MiB of {r['total_bytes'] / 2**20:.0f} MiB "
            f"({share:.1%}, {r['total_source']}, {r['method']})" if share is not None else "")
    if r["passed"]:
        return CheckResult(f"memory_{family}", "pass", f"{shape} on {r['device']}: {used}", r)
    return CheckResult(f"memory_{family}", "fail", f"{shape} on {r['device']}: {r['reason']}", r)


# ------------------------------------------------------------------ running and reporting
def _run(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    t = time.time()
    try:
        r = fn()
    except Exception as e:
        log.debug("check %s crashed", name, exc_info=True)
        r = CheckResult(name, "fail", f"check crashed: {_one_line(e)}", {"traceback": traceback.format_exc(limit=4)})
    r.seconds = round(time.time() - t, 3)
    return r


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short(v: Any, limit: int = 160) -> str:
    text = json.dumps(v, default=str, ensure_ascii=False) if not isinstance(v, str) else v
    return text if len(text) <= limit else text[:limit - 1] + "…"


def render_markdown(results: list[CheckResult], seconds: float | None = None) -> str:
    icon = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
    failed = [r for r in results if r.blocking]
    head = "FAILED: " + ", ".join(r.name for r in failed) if failed else "PASSED"
    lines = ["# StreamGuard pre-flight", "", f"**{head}**" + (f" ({seconds:.1f} s)" if seconds is not None else ""),
             "", "| check | status | required | seconds | message |", "|---|---|---|---:|---|"]
    for r in results:
        lines.append(f"| {r.name} | {icon[r.status]} | {'yes' if r.required else 'no'} | {r.seconds:.2f} "
                     f"| {_md(r.message)} |")
    lines += ["", "## Measured values", ""]
    for r in results:
        vals = {k: v for k, v in r.values.items() if k not in ("traceback", "train_losses")}
        if vals:
            lines.append(f"- **{r.name}**: " + "; ".join(f"{k} = {_md(_short(v))}" for k, v in vals.items()))
    return "\n".join(lines) + "\n"


def _selected(checks: Sequence[str] | None) -> list[str]:
    if checks is None:
        env = os.environ.get(CHECKS_ENV, "").strip()
        checks = [c.strip() for c in env.split(",") if c.strip()] if env else list(CHECKS)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise UserError(f"pre-flight checks: unknown {', '.join(map(repr, unknown))} (known: {', '.join(CHECKS)})")
    return list(checks)


def preflight(data_dir: str, graphs_dir: str | None, cfg: Config, json_path: str, md_path: str,
              store: ObjectStore | None = None, require_gpu: bool = False, *,
              checks: Sequence[str] | None = None, smoke_families: Sequence[str] | None = None,
              memory_families: Sequence[str] | None = None, memory_limit_share: float = 0.9,
              memory_total_bytes: int | None = None, smoke_steps: int = 50, smoke_samples: int = 32,
              truncation_warn_share: float = 0.1, node_selector: Mapping[str, str] | None = None,
              namespace: str | None = None, secret_name: str = SECRET_NAME, k8s_api_client: Any = None,
              seed: int = 0, cpu_threads: int | None = 1) -> dict[str, Any]:
    """Run the selected checks (default: all, or ``$STREAMGUARD_PREFLIGHT_CHECKS``); write the JSON and Markdown
    reports; raise PreflightError (exit 4) when a required check failed. Returns the JSON report.

    ``smoke_families`` / ``memory_families``: the families probed (default: every registered family / those
    whose ``memory_probe`` is set).

    ``cpu_threads``: torch threads for the probes on a CPU-only machine (``train.num_threads`` wins when set;
    None keeps torch's default). The probes' models are tiny; on 2 cores shared with other work the demo
    transformer's smoke test took 8 s on one thread and 16-58 s on two (OpenMP threads waiting on each other).
    """
    from streamguard import families
    from streamguard.smoke import ProbeContext
    from streamguard.train.device import cuda_required

    require_gpu = require_gpu or cuda_required()  # $STREAMGUARD_REQUIRE_CUDA: set by cluster profiles on GPU tasks
    if smoke_families is None:
        smoke_families = families.names()
    if memory_families is None:
        memory_families = [n for n in families.names() if families.get(n).memory_probe]
    t0 = time.time()
    selected = _selected(checks)
    results: list[CheckResult] = []
    ctx = ProbeContext(data_dir, graphs_dir, cfg, seed=seed, store=store)
    threads = torch.get_num_threads()
    if cfg.train.num_threads > 0:  # the probes run with the threads training will use
        torch.set_num_threads(cfg.train.num_threads)
    elif cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(min(threads, cpu_threads))
    probed = [*(smoke_families if "smoke" in selected else ()), *(memory_families if "memory" in selected else ())]
    transformer_probes = any("transformer" in (f, *families.get(f).requires) for f in probed)
    pretrained = cfg.transformer.pretrained

    def tokenizer_fn():
        # the real tokenizer when it is cheap: the probes build it anyway, or scratch / a local checkpoint
        if transformer_probes or pretrained == "scratch":
            return families.transformer.probe_parts(ctx).tokenizer
        if Path(pretrained).is_dir():
            from streamguard.models.transformer import load_tokenizer

            return load_tokenizer(pretrained, cfg.transformer.max_length)
        return None

    try:
        if "accelerator" in selected:
            results.append(_run("accelerator", lambda: check_accelerator(require_gpu)))
        if "safety" in selected:
            results.append(_run("safety_atomic_json", check_atomic_json))
            results.append(_run("safety_amp_order", check_amp_order))
            results.append(_run("safety_lr_fallback", check_lr_fallback))
        data_ok = True
        if "data" in selected:
            r = _run("data", lambda: check_data(data_dir, graphs_dir, cfg.transformer.max_length,
                                                tokenizer_fn=tokenizer_fn, truncation_warn_share=truncation_warn_share))
            data_ok = r.status != "fail"
            results.append(r)
        if "object_store" in selected:
            results.append(_run("object_store", lambda: check_store(store, cfg)))
        if "cluster" in selected:
            results.append(_run("cluster", lambda: check_cluster(require_gpu=require_gpu, node_selector=node_selector,
                                                                 namespace=namespace, secret_name=secret_name,
                                                                 api_client=k8s_api_client)))
        probe_plan = ([("smoke", f) for f in smoke_families] if "smoke" in selected else []) + \
                     ([("memory", f) for f in memory_families] if "memory" in selected else [])
        for kind, fam in probe_plan:
            name = f"{kind}_{fam}"
            if not data_ok:
                results.append(CheckResult(name, "skip", "not run: the data check failed", required=False))
            elif any(i.name == "graphs" for i in families.get(fam).inputs) and not graphs_dir:
                results.append(CheckResult(name, "skip", "not run: no graphs directory given", required=False))
            elif kind == "smoke":
                results.append(_run(name, lambda f=fam: check_smoke(f, ctx, n=smoke_samples, steps=smoke_steps)))
            else:
                results.append(_run(name, lambda f=fam: check_memory(f, ctx, limit_share=memory_limit_share,
                                                                     total_bytes=memory_total_bytes)))
    finally:
        ctx.close()
        torch.set_num_threads(threads)
    seconds = round(time.time() - t0, 3)
    failed = [r for r in results if r.blocking]
    report = {"passed": not failed, "failed": [r.name for r in failed], "seconds": seconds,
              "require_gpu": require_gpu, "checks": [asdict(r) for r in results]}
    write_json_atomic(json_path, report)
    Path(md_path).parent.mkdir(parents=True, exist_ok=True)
    Path(md_path).write_text(render_markdown(results, seconds))
    for r in results:
        (log.warning if r.status in ("fail", "warn") else log.info)("preflight %-20s %s  %s (%.2f s)", r.name,
                                                                     r.status.upper(), r.message, r.seconds)
    if failed:
        raise PreflightError("pre-flight failed: " + "; ".join(f"{r.name}: {r.message}" for r in failed)
                             + f" (report: {md_path})")
    return report
