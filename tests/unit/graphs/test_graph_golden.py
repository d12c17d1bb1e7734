"""Graphs change only with BUILDER_VERSION: a digest of the graphs of fixed reference functions, per version.

The graph cache is keyed by BUILDER_VERSION, so a change of graphs without a new version would mix
old and new graphs. If this test fails after a change that is meant to change graphs, bump
``_REVISION`` in ``streamguard/graphs/builder.py`` and re-record:
``.venv/bin/python tests/unit/graphs/test_graph_golden.py --record``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from streamguard.data.synthetic import generate
from streamguard.graphs.builder import BUILDER_VERSION, GraphBuildError, build_arrays

GOLDEN = Path(__file__).with_name("golden_graphs.json")
CAPS = (4000, 40)  # the default, and a cap that truncates most functions


# every statement kind the walk handles, K&R, #if, GNU extensions, broken and truncated code
HANDWRITTEN = [
    "int f(int a) {\n  int x;\n  if (a > 0)\n    x = 1;\n  else if (a < 0)\n    x = 2;\n  return x;\n}",
    "void f(int n) {\n  int i = 0;\n  while (i < n) {\n    if (i == 5) break;\n"
    "    if (i == 3) { i += 2; continue; }\n"
    "    i++;\n  }\n  do { n--; if (n == 2) continue; } while (n > 0);\n  done(i);\n}",
    "int f(int c) {\n  int r = 0;\n  switch (c) {\n  case 1: r = 10;\n  case 2: r += 1; break;\n"
    "  default: r = 5;\n  }\n"
    "  for (int i = 0; i < c; i++) { if (i) continue; r = r * i; }\n  for (;;) break;\n  return r;\n}",
    "int f(int *p) {\n  int rc = -1;\n  if (!p)\n    goto out;\n  rc = use(p, \"%s\", 0x10, 'c', NULL, 1.5f);\n"
    "out:\n  cleanup(p);\n  return rc;\n}",
    "int add(a, b)\n  int a;\n  char *b;\n{\n  return a + *b;\n}",
    "int f(int x) {\n#ifdef CONFIG_A\n  x += 1;\n#elif defined(CONFIG_B)\n  x += 2;\n#else\n  x += 3;\n#endif\n"
    "  return x;\n}",
    "static inline int g(int *p) {\n  typeof(*p) t = ({ int y = *p; y * 2; });\n"
    "  switch (t) { case 1 ... 5: t++; break; }\n"
    "  void *l = &&done;\n  goto *l;\ndone:\n  return t ?: 1;\n}",
    "int outer(void) { int inner(int z) { return z + 1; } return inner(2); }",
    "int f(int a) {\n  if (a > 0) {\n    while (a--) {\n      x = buf[a",
    "int f() { } } } if (x) { y = 1; ) ) ; return",
    "void f(void) { break; continue; case 3: x = 1; }",
]


def reference_functions() -> list[str]:
    return HANDWRITTEN + [s.func for s in generate(120, seed=0)]


def digests() -> dict[str, str]:
    inputs, graphs = hashlib.sha256(), hashlib.sha256()
    for code in reference_functions():
        inputs.update(code.encode() + b"\0")
        for cap in CAPS:
            try:
                g = build_arrays(code, cap)
            except GraphBuildError as e:
                graphs.update(e.reason.encode())
                continue
            for part in (g.x, g.src, g.dst, g.etype):
                graphs.update(part.tobytes())
            graphs.update(f"{g.num_nodes} {g.error_share!r} {g.truncated}".encode())
    return {"inputs": inputs.hexdigest(), "graphs": graphs.hexdigest()}


def test_graphs_match_the_digest_recorded_for_this_builder_version():
    recorded = json.loads(GOLDEN.read_text())
    assert BUILDER_VERSION in recorded, f"no digest for builder {BUILDER_VERSION}: re-record (see module docstring)"
    got = digests()
    want = recorded[BUILDER_VERSION]
    assert got["inputs"] == want["inputs"], "the reference functions changed (tests or synthetic generator): re-record"
    assert got["graphs"] == want["graphs"], (
        f"graphs changed but BUILDER_VERSION is still {BUILDER_VERSION}: bump _REVISION in builder.py, re-record")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    data = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    data[BUILDER_VERSION] = digests()
    GOLDEN.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"recorded {BUILDER_VERSION}: {data[BUILDER_VERSION]}")
