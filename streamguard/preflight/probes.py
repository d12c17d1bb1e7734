"""The ``smoke`` and ``memory`` checks: the probes of :mod:`streamguard.smoke`, one result per family.

``smoke``: a tiny overfit per family (``smoke.smoke_test``): ``smoke_transformer``, ``smoke_gnn``,
``smoke_fusion``. ``memory``: one worst-case batch forward + backward per family at the configured batch size
and sequence length (``smoke.memory_check``): ``memory_transformer``, ``memory_gnn``; fails above
``memory_limit_share`` (90 %) of the device memory (CPU: peak RSS vs usable RAM). A probe is skipped when the
data check failed, or when its family reads graphs and no graphs directory was given. The run's
:class:`~streamguard.smoke.ProbeContext` builds each family's model and items once for both.
"""

from __future__ import annotations

from streamguard.preflight.result import CheckResult, run_check


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


def _skip_reason(gate, family: str) -> str | None:
    from streamguard import families

    if gate.failed("data"):
        return "not run: the data check failed"
    if any(i.name == "graphs" for i in families.get(family).inputs) and not gate.graphs_dir:
        return "not run: no graphs directory given"
    return None


def run_smoke(gate) -> list[CheckResult]:
    o, out = gate.options, []
    for fam in gate.smoke_families:
        why = _skip_reason(gate, fam)
        out.append(CheckResult(f"smoke_{fam}", "skip", why, required=False) if why else
                   run_check(f"smoke_{fam}", lambda f=fam: check_smoke(f, gate.probes, n=o.smoke_samples,
                                                                       steps=o.smoke_steps)))
    return out


def run_memory(gate) -> list[CheckResult]:
    o, out = gate.options, []
    for fam in gate.memory_families:
        why = _skip_reason(gate, fam)
        out.append(CheckResult(f"memory_{fam}", "skip", why, required=False) if why else
                   run_check(f"memory_{fam}", lambda f=fam: check_memory(f, gate.probes,
                                                                         limit_share=o.memory_limit_share,
                                                                         total_bytes=o.memory_total_bytes)))
    return out
