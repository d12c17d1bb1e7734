"""Model families and their one registry.

``REGISTRY`` maps a family's name to its :class:`~streamguard.families.base.Family`;
the CLI (``train-<name>`` commands), the pipeline's training components
(``kfp_io.train_and_log``), :func:`streamguard.training.train`, the smoke and
memory probes and pre-flight all go through it. A new family is one file in
this package plus one entry below.
"""

from __future__ import annotations

from streamguard.errors import UserError
from streamguard.families import fusion, gnn, transformer
from streamguard.families.base import GRAPHS, Datasets, Family, Input, RunContext

REGISTRY: dict[str, Family] = {f.name: f for f in (transformer.FAMILY, gnn.FAMILY, fusion.FAMILY)}
"""Every family by name, in training order (a family comes after those it ``requires``)."""


def names() -> tuple[str, ...]:
    """The registered families' names, in registry order."""
    return tuple(REGISTRY)


def get(name: str) -> Family:
    """The family called ``name``; a :class:`UserError` naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"family {name!r}: unknown (expected one of {', '.join(REGISTRY)})") from None


__all__ = ["GRAPHS", "REGISTRY", "Datasets", "Family", "Input", "RunContext", "get", "names"]
