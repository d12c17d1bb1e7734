"""The data check: what each model family actually sees of a function, and what that hides.

A *view* gives each sample a key -- two samples with the same key are the same
input to that family -- and says whether the family's input is truncated.
:func:`view_stats` counts, for one view:

* ``identical_pairs``: vulnerable/fixed pairs (``pair_id`` with both labels)
  whose two sides are identical in the view -- the model cannot tell them apart,
  whatever it learns;
* ``truncated``: samples the family sees only in part (tokens beyond the
  transformer's windows, nodes beyond the GNN's cap);
* ``conflicting``: samples whose key occurs with both labels (identical input,
  different labels).

Views (where they are computed):

``lexical`` (ingest, pre-flight)
    The whole function in C lexical tokens, comments and layout dropped
    (``hygiene.tokens``; string literals as written): what no model setting can separate.
``transformer`` (pre-flight; the real tokenizer and windows)
    The token ids of the windows the transformer reads (``models.transformer.encode``).
``transformer_estimate`` (ingest)
    Ingest has no tokenizer (the ``scratch`` one is trained per run by the transformer
    family; a hub tokenizer may need the network): the first
    ``max_windows x (window - 2)`` C lexical tokens (the windows' content budget,
    :meth:`Windowing.budget`). Subword tokens are usually more than lexical tokens,
    so this estimate of what is hidden is usually low; pre-flight has the exact count.
``gnn`` (pre-flight; needs the graphs of ``build-graphs``)
    The graph after the node cap (a hash of ``x``, ``edge_index``, ``edge_type``).
``fusion`` (pre-flight)
    Both: identical only when identical to the transformer and to the GNN.

A share of identical pairs above ``data.max_identical_view_share`` is a warning
naming the setting that shows more of the function (``transformer.max_windows``,
``gnn.max_nodes``) -- unless the pairs are identical lexically too, which no
setting changes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

from streamguard.data.hygiene import tokens


@dataclass
class View:
    """One family's view of a list of samples (same order)."""

    name: str
    keys: list[str]
    """Equal keys: identical inputs to the family."""
    truncated: list[bool]
    setting: str | None
    """The config field that shows more of a truncated function (None: nothing truncates in this view)."""
    method: str
    sizes: list | None = None
    """What each sample costs the family (windows, nodes …; sortable): the probes draw the cheapest."""


def digest(*parts: Any) -> str:
    """A short stable hash of ``parts`` (bytes, str, or anything with a stable ``repr``)."""
    h = hashlib.sha1()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:20]


LEXICAL_METHOD = "C lexical tokens, comments and layout dropped"


def estimate_method(budget: int) -> str:
    return (f"first {budget} C lexical tokens (an estimate: subword tokens are usually more, so the exact share, "
            "in pre-flight, is usually higher)")


def digest_tokens(toks: Sequence[str]) -> str:
    """:func:`digest` of a token list (tokens joined by NUL: no token holds one)."""
    return digest("\x00".join(toks))


def lexical_view(samples: Sequence) -> View:
    return View("lexical", [digest_tokens(tokens(s.func)) for s in samples], [False] * len(samples), None,
                LEXICAL_METHOD)


def lexical_budget_view(samples: Sequence, budget: int, name: str = "transformer_estimate",
                        setting: str = "transformer.max_windows") -> View:
    """The first ``budget`` C lexical tokens of each function (ingest's estimate of the transformer's view)."""
    keys, trunc = [], []
    for s in samples:
        toks = tokens(s.func)
        keys.append(digest_tokens(toks[:budget]))
        trunc.append(len(toks) > budget)
    return View(name, keys, trunc, setting, estimate_method(budget))


def combine(name: str, *views: View) -> View:
    """Samples identical in every one of ``views`` (the fusion sees both encoders' inputs)."""
    keys = [digest(*ks) for ks in zip(*(v.keys for v in views))]
    trunc = [any(ts) for ts in zip(*(v.truncated for v in views))]
    settings = ", ".join(v.setting for v in views if v.setting)
    sizes = list(zip(*(v.sizes for v in views))) if all(v.sizes is not None for v in views) else None
    return View(name, keys, trunc, settings or None, " + ".join(v.name for v in views), sizes)


def _pairs(samples: Sequence) -> list[tuple[int, int]]:
    """(index of the vulnerable side, index of the fixed side) of every pair with both labels."""
    by_pair: dict[str, dict[int, int]] = defaultdict(dict)
    for i, s in enumerate(samples):
        if getattr(s, "pair_id", None):
            by_pair[str(s.pair_id)].setdefault(int(s.target), i)
    return [(v[1], v[0]) for v in by_pair.values() if 0 in v and 1 in v]


def view_stats(view: View, samples: Sequence, lexical: View | None = None) -> dict[str, Any]:
    """Counts and shares of identical pairs, truncated samples and conflicting samples in ``view``.

    ``lexical`` (the lexical view of the same samples): also count the identical pairs that are identical
    lexically too (``identical_pairs_lexical``: no setting separates them)."""
    n = len(samples)
    pairs = _pairs(samples)
    same = [(a, b) for a, b in pairs if view.keys[a] == view.keys[b]]
    labels: dict[str, set[int]] = defaultdict(set)
    for k, s in zip(view.keys, samples):
        labels[k].add(int(s.target))
    conflicting = sum(1 for k in view.keys if len(labels[k]) > 1)
    out = {
        "view": view.name, "method": view.method, "setting": view.setting, "samples": n, "pairs": len(pairs),
        "identical_pairs": len(same), "identical_pair_share": round(len(same) / len(pairs), 4) if pairs else 0.0,
        "truncated": sum(view.truncated), "truncated_share": round(sum(view.truncated) / n, 4) if n else 0.0,
        "conflicting": conflicting, "conflicting_share": round(conflicting / n, 4) if n else 0.0,
    }
    if lexical is not None:
        out["identical_pairs_lexical"] = sum(1 for a, b in same if lexical.keys[a] == lexical.keys[b])
    return out


def warnings(stats: Sequence[dict[str, Any]], max_share: float) -> list[str]:
    """One line per view whose share of identical pairs is above ``max_share``, naming the fixing setting."""
    out = []
    for st in stats:
        if st["pairs"] and st["identical_pair_share"] > max_share:
            lex = st.get("identical_pairs_lexical", 0)
            fix = (f"raise {st['setting']} (only {lex} of them are identical lexically)"
                   if st["setting"] and st["identical_pairs"] > lex else
                   "no setting separates them: they differ only in comments or layout")
            out.append(f"{st['view']}: {st['identical_pairs']} of {st['pairs']} pairs "
                       f"({st['identical_pair_share']:.1%}) are identical inputs with opposite labels, above "
                       f"data.max_identical_view_share={max_share:.0%}; {fix}")
    return out


def markdown(stats: Sequence[dict[str, Any]]) -> list[str]:
    """The stats as a Markdown table (data card, pre-flight report)."""
    lines = ["| view | pairs | identical pairs | truncated samples | conflicting samples | setting | how |",
             "|---|---:|---:|---:|---:|---|---|"]
    for st in stats:
        lines.append(f"| {st['view']} | {st['pairs']} | {st['identical_pairs']} ({st['identical_pair_share']:.1%}) "
                     f"| {st['truncated']} ({st['truncated_share']:.1%}) | {st['conflicting']} "
                     f"({st['conflicting_share']:.1%}) | {st['setting'] or '–'} | {st['method']} |")
    return lines
