"""build_graphs stage: shards roundtrip, every sample gets a graph, store cache hit and stale-version miss."""

from __future__ import annotations

import json

import pytest
import torch

from streamguard.errors import UserError
from streamguard.graphs import GraphShardDataset, build_graph, build_graphs, builder, load_graphs, stage

FUNCS = [
    "int f(int a) { if (a) return 1; return 0; }",
    "void g(char *s) { while (*s) s++; }",
    "",  # no graph: fallback + reported failure
    "int h(int n) { int s = 0; for (int i = 0; i < n; i++) s += i; return s; }",
    "static void k(struct x *p) { FOO(p); p->len = 3; memcpy(p->buf, src, p->len); }",
    "int broken(int a) { if (a > 0) { while (a--",
]


def make_data(root, n_per_split: int = 6):
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        with open(root / f"{split}.jsonl", "w") as f:
            for i in range(n_per_split):
                f.write(json.dumps({"id": f"{split}-{i}", "func": FUNCS[i % len(FUNCS)], "target": i % 2}) + "\n")
    return root


def same(a, b):
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
    assert torch.equal(a.edge_type, b.edge_type) and a.sample_id == b.sample_id
    assert torch.equal(a.y.view(-1), b.y.view(-1))


def test_roundtrip_every_sample_has_one_graph(tmp_path):
    data = make_data(tmp_path / "data", 9)
    report = build_graphs(data, tmp_path / "graphs", shard_size=4)
    assert report["counts"] == {"train": 9, "valid": 9, "test": 9}
    assert report["failed"] == 6 and {f["reason"] for f in report["failures"]} == {"empty input"}
    manifest = json.loads((tmp_path / "graphs" / "manifest.json").read_text())
    assert manifest["builder_version"] == builder.BUILDER_VERSION and manifest["fingerprint"] == report["fingerprint"]
    assert manifest["splits"]["train"]["shards"] == ["train-00000.pt", "train-00001.pt", "train-00002.pt"]
    for split in ("train", "valid", "test"):
        graphs = load_graphs(tmp_path / "graphs", split)
        assert [g.sample_id for g in graphs] == [f"{split}-{i}" for i in range(9)]
        ds = GraphShardDataset(tmp_path / "graphs", split)
        assert len(ds) == 9
        for i, g in enumerate(graphs):
            code = FUNCS[i % len(FUNCS)]
            if code:
                assert not g.failed
                same(g, build_graph(code, sample_id=f"{split}-{i}", label=i % 2))
            else:
                assert g.failed and g.num_nodes == 1 and g.edge_type.numel() == 0
            same(ds[i], g)
            assert g.y.tolist() == [i % 2]


def test_parallel_build_matches_serial(tmp_path, monkeypatch):
    data = make_data(tmp_path / "data", 12)
    serial = build_graphs(data, tmp_path / "a", workers=1)
    monkeypatch.setattr(stage, "_PARALLEL_MIN", 0)
    par = build_graphs(data, tmp_path / "b", workers=2)
    assert par["workers"] == 2 and par["failures"] == serial["failures"]
    for g1, g2 in zip(load_graphs(tmp_path / "a", "test"), load_graphs(tmp_path / "b", "test")):
        same(g1, g2)


def test_store_cache_hit_and_stale_version_miss(tmp_path, store, monkeypatch):
    data = make_data(tmp_path / "data")
    first = build_graphs(data, tmp_path / "g1", store=store)
    assert first["cache_hit"] is False
    assert store.exists(f"{first['cache_key']}/manifest.json")

    second = build_graphs(data, tmp_path / "g2", store=store)  # fresh output dir: shards come from the store
    assert second["cache_hit"] is True and second["counts"] == first["counts"]
    for g1, g2 in zip(load_graphs(tmp_path / "g1", "train"), load_graphs(tmp_path / "g2", "train")):
        same(g1, g2)

    monkeypatch.setattr(builder, "BUILDER_VERSION", builder.BUILDER_VERSION + "-next")
    third = build_graphs(data, tmp_path / "g3", store=store)
    assert third["cache_hit"] is False and third["cache_key"] != first["cache_key"]
    manifest = json.loads((tmp_path / "g3" / "manifest.json").read_text())
    assert manifest["builder_version"].endswith("-next")


def test_cache_entry_for_other_builder_is_not_reused(tmp_path, local_store):
    data = make_data(tmp_path / "data")
    first = build_graphs(data, tmp_path / "g1", store=local_store)
    key = f"{first['cache_key']}/manifest.json"
    m = json.loads(local_store.get_bytes(key))
    m["builder_version"] = "0-old"
    local_store.put_bytes(key, json.dumps(m).encode())
    assert build_graphs(data, tmp_path / "g2", store=local_store)["cache_hit"] is False


def test_changed_data_misses_cache(tmp_path, local_store):
    data = make_data(tmp_path / "data")
    build_graphs(data, tmp_path / "g1", store=local_store)
    with open(data / "test.jsonl", "a") as f:
        f.write(json.dumps({"id": "new", "func": "int z(void) { return 0; }", "target": 0}) + "\n")
    r = build_graphs(data, tmp_path / "g2", store=local_store)
    assert r["cache_hit"] is False and r["counts"]["test"] == 7


@pytest.mark.parametrize("line, field", [
    ('{"id": "a", "func": "int f();", "target": 2}', "'target'"),
    ('{"id": "a", "target": 1}', "'func'"),
    ('{"func": "x", "target": 1}', "'id'"),
    ("{not json", "not valid JSON"),
])
def test_bad_rows_are_user_errors(tmp_path, line, field):
    data = make_data(tmp_path / "data")
    (data / "valid.jsonl").write_text(line + "\n")
    with pytest.raises(UserError, match=field) as e:
        build_graphs(data, tmp_path / "g")
    assert "valid.jsonl:1" in str(e.value)


def test_missing_split_and_manifest_are_user_errors(tmp_path):
    data = make_data(tmp_path / "data")
    (data / "test.jsonl").unlink()
    with pytest.raises(UserError, match="test.jsonl: missing"):
        build_graphs(data, tmp_path / "g")
    with pytest.raises(UserError, match="manifest.json: missing"):
        load_graphs(tmp_path / "nowhere", "train")


def test_loaded_graphs_are_compact_views_and_dataset_items_equal_them(tmp_path):
    data = make_data(tmp_path / "data", 9)
    build_graphs(data, tmp_path / "graphs", shard_size=4)
    for mmap in (True, False):
        graphs = load_graphs(tmp_path / "graphs", "train", mmap=mmap)
        ds = GraphShardDataset(tmp_path / "graphs", "train")
        assert len(graphs) == len(ds) == 9
        for i, g in enumerate(graphs):
            assert (g.x.dtype, g.edge_index.dtype, g.edge_type.dtype, g.y.dtype) == \
                (torch.int16, torch.int32, torch.int8, torch.long)
            assert g.x.shape == (g.num_nodes, len(builder.FEATURE_SPEC)) and g.edge_index.shape[0] == 2
            d = ds[i]
            for key in ("x", "edge_index", "edge_type", "y"):
                assert d[key].dtype == g[key].dtype and torch.equal(d[key], g[key])
            for key in ("sample_id", "num_nodes", "error_share", "truncated", "failed"):
                assert d[key] == g[key]
            code = FUNCS[i % len(FUNCS)]
            if code:  # exact values equal a fresh build (int64)
                fresh = build_graph(code)
                assert torch.equal(g.x.long(), fresh.x) and torch.equal(g.edge_index.long(), fresh.edge_index)
                assert torch.equal(g.edge_type.long(), fresh.edge_type)
    assert ds[-1].sample_id == "train-8"
    with pytest.raises(IndexError):
        ds[9]
