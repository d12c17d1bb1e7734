"""Fixtures shared by the probe tests (test_smoke.py, test_smoke_loop.py)."""

from __future__ import annotations

import pytest

from streamguard.smoke import ProbeContext


@pytest.fixture(scope="module")
def probe_data(tiny_data):
    """The tiny data as paths: ``(data_dir, graphs_dir, cfg)``."""
    data, graphs, cfg = tiny_data
    return str(data), str(graphs), cfg


@pytest.fixture(scope="module")
def ctx(probe_data):
    """One ProbeContext over the tiny data (seed 0) per test module."""
    data, graphs, cfg = probe_data
    with ProbeContext(data, graphs, cfg, seed=0) as c:
        yield c
