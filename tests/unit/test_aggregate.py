import json

import numpy as np
import pytest

from streamguard.aggregate import aggregate, kfp_metrics
from streamguard.errors import UserError
from streamguard.eval.metrics import compute_metrics


def _result(tmp_path, family, seed, labels, probs, threshold=0.5, fp="abc", pairs=None):
    d = tmp_path / f"{family}-{seed}"
    d.mkdir()
    rows = []
    for i, (y, p) in enumerate(zip(labels, probs)):
        row = {"idx": i, "label": y, "prob": p}
        if pairs:
            row["pair_id"] = pairs[i]
        rows.append(json.dumps(row))
    (d / "predictions.jsonl").write_text("\n".join(rows) + "\n")
    (d / "model_card.json").write_text(json.dumps({"family": family, "seed": seed, "threshold": threshold,
                                                   "data_fingerprint": fp, "best_epoch": 1, "lr": 0.01,
                                                   "lr_source": "fixed"}))
    (d / "training_metadata.json").write_text(json.dumps({"history": [{"valid_f1": 0.5}, {"valid_f1": 0.7}]}))
    return str(d)


def test_summary_recomputes_from_predictions_and_aggregates_seeds(tmp_path):
    rng = np.random.default_rng(1)
    dirs, per_seed_f1 = [], {}
    y = [0, 1] * 20
    for seed in (1, 2, 3):
        p = np.clip(np.array(y) * 0.4 + rng.uniform(0, 0.6, 40), 0, 1).round(4).tolist()
        pairs = [f"p{i // 2}" for i in range(40)]
        dirs.append(_result(tmp_path, "gnn", seed, y, p, threshold=0.45, pairs=pairs))
        per_seed_f1[seed] = compute_metrics(y, p, 0.45)["f1"]
    summary = aggregate(dirs, str(tmp_path / "out"))
    m = summary["models"]["gnn"]
    assert m["n_seeds"] == 3
    assert m["mean"]["f1"] == pytest.approx(np.mean(list(per_seed_f1.values())))
    assert m["std"]["f1"] == pytest.approx(np.std(list(per_seed_f1.values()), ddof=1))
    assert m["best_seed"] == max(per_seed_f1, key=per_seed_f1.get)
    assert "pair_correct" in m["mean"] and 0 <= m["mean"]["pair_correct"] <= 1
    on_disk = json.loads((tmp_path / "out" / "production_summary.json").read_text())
    assert on_disk["models"]["gnn"]["seeds"]["2"]["f1"] == pytest.approx(per_seed_f1[2])
    assert (tmp_path / "out" / "report.md").read_text().count("| gnn |") == 4  # mean row + 3 seed rows
    assert kfp_metrics(summary)["gnn_f1_mean"] == pytest.approx(m["mean"]["f1"], abs=1e-6)


def test_pairs_counted_by_hand(tmp_path):
    # pair a: vuln 0.9 / fixed 0.1 -> correct; pair b: 0.9/0.8 -> both vulnerable
    d = _result(tmp_path, "fusion", 1, [1, 0, 1, 0], [0.9, 0.1, 0.9, 0.8], pairs=["a", "a", "b", "b"])
    s = aggregate([d], str(tmp_path / "o"))["models"]["fusion"]["seeds"]["1"]
    assert s["pair_correct"] == 0.5 and s["pair_vulnerable"] == 0.5 and s["pair_reversed"] == 0.0


def test_mixed_datasets_and_duplicate_seeds_are_refused(tmp_path):
    a = _result(tmp_path, "gnn", 1, [0, 1], [0.2, 0.8], fp="one")
    b = _result(tmp_path, "transformer", 1, [0, 1], [0.2, 0.8], fp="two")
    with pytest.raises(UserError, match="different datasets"):
        aggregate([a, b], str(tmp_path / "o"))
    with pytest.raises(UserError, match="seed given twice"):
        aggregate([a, a], str(tmp_path / "o2"))


def _external(tmp_path, name, per_seed, fp="abc", thresholds=None):
    """An evaluate-step output: external.json and, per seed, evaluation.json + predictions/<family>.jsonl."""
    root = tmp_path / "external"
    thresholds = thresholds or {"gnn": 0.5, "fusion": 0.4}
    seeds = {}
    for seed, (labels, probs, pairs) in per_seed.items():
        d = root / name / f"seed-{seed}"
        (d / "predictions").mkdir(parents=True)
        for fam in thresholds:
            rows = [{"idx": i, "label": y, "prob": p, **({"pair_id": pairs[i]} if pairs else {})}
                    for i, (y, p) in enumerate(zip(labels, probs[fam]))]
            (d / "predictions" / f"{fam}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        counts = {"evaluated": len(labels), "training_overlap": 1, "pairs": len(set(pairs or []))}
        (d / "evaluation.json").write_text(json.dumps({"bundle": {"seed": seed, "data_fingerprint": fp,
                                                                  "thresholds": thresholds}, "counts": counts}))
        seeds[str(seed)] = f"{name}/seed-{seed}"
    (root / "external.json").write_text(json.dumps({"datasets": {name: {"uri": f"/data/{name}.jsonl",
                                                                        "seeds": seeds}}}))
    return str(root)


def test_external_evaluations_are_recomputed_from_predictions_and_aggregated_over_seeds(tmp_path):
    from streamguard.aggregate import external_kfp_metrics

    y = [1, 0, 1, 0, 1, 0]
    pairs = ["a", "a", "b", "b", "c", "c"]
    per_seed = {
        1: (y, {"gnn": [0.9, 0.1, 0.9, 0.8, 0.2, 0.1], "fusion": [0.9, 0.2, 0.6, 0.3, 0.3, 0.7]}, pairs),
        2: (y, {"gnn": [0.7, 0.6, 0.4, 0.2, 0.8, 0.1], "fusion": [0.5, 0.1, 0.9, 0.1, 0.2, 0.3]}, pairs),
    }
    ext = _external(tmp_path, "primevul", per_seed)
    results = [_result(tmp_path, "fusion", s, [0, 1], [0.2, 0.8]) for s in (1, 2)]
    summary = aggregate(results, str(tmp_path / "out"), external_dir=ext)
    e = summary["external"]["primevul"]
    assert e["n_seeds"] == 2 and e["uri"] == "/data/primevul.jsonl" and e["counts"]["1"]["training_overlap"] == 1
    f1 = [compute_metrics(y, per_seed[s][1]["fusion"], 0.4)["f1"] for s in (1, 2)]
    m = e["models"]["fusion"]
    assert m["mean"]["f1"] == pytest.approx(np.mean(f1)) and m["std"]["f1"] == pytest.approx(np.std(f1, ddof=1))
    # seed 1, fusion at 0.4: pair a (0.9, 0.2) correct, b (0.6, 0.3) correct, c (0.3, 0.7) reversed
    assert m["seeds"]["1"]["pair_correct"] == pytest.approx(2 / 3) and m["seeds"]["1"]["pair_reversed"] == \
        pytest.approx(1 / 3)
    # seed 2, gnn at 0.5: a (0.7, 0.6) both vulnerable, b (0.4, 0.2) both benign, c (0.8, 0.1) correct
    g = e["models"]["gnn"]["seeds"]["2"]
    assert (g["pair_vulnerable"], g["pair_benign"], g["pair_correct"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    on_disk = json.loads((tmp_path / "out" / "production_summary.json").read_text())
    assert on_disk["external"]["primevul"]["models"]["fusion"]["mean"]["f1"] == pytest.approx(np.mean(f1))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## External evaluations, mean ± std over seeds" in md and "### primevul (`/data/primevul.jsonl`)" in md
    assert "External evaluations" in (tmp_path / "out" / "report.html").read_text()
    ui = external_kfp_metrics(summary)
    assert ui["external_primevul_fusion_f1_mean"] == pytest.approx(np.mean(f1), abs=1e-6)
    assert "external_primevul_gnn_pair_correct_std" in ui


def test_without_external_evaluations_the_summary_says_so_and_the_report_has_no_section(tmp_path):
    summary = aggregate([_result(tmp_path, "gnn", 1, [0, 1], [0.2, 0.8])], str(tmp_path / "out"))
    assert summary["external"] == {}
    assert "External" not in (tmp_path / "out" / "report.md").read_text()


def test_external_evaluations_of_bundles_from_another_dataset_are_refused(tmp_path):
    ext = _external(tmp_path, "x", {1: ([1, 0], {"gnn": [0.9, 0.1], "fusion": [0.8, 0.2]}, None)}, fp="other")
    with pytest.raises(UserError, match="external x: bundles trained on data"):
        aggregate([_result(tmp_path, "gnn", 1, [0, 1], [0.2, 0.8])], str(tmp_path / "out"), external_dir=ext)


def test_ablation_compares_the_fusion_with_each_branch_on_the_same_test_samples(tmp_path):
    from streamguard.eval.metrics import paired_bootstrap

    rng = np.random.default_rng(4)
    y = [0, 1] * 30
    dirs, probs = [], {}
    for seed in (1, 2):
        g = np.clip(np.array(y) * 0.5 + rng.uniform(0, 0.5, 60), 0, 1).round(4)
        t = np.clip(np.array(y) * 0.2 + rng.uniform(0, 0.8, 60), 0, 1).round(4)
        probs[seed] = {"gnn": g, "transformer": t, "fusion": g}  # this fusion fell back to its GNN
        for fam, p in probs[seed].items():
            dirs.append(_result(tmp_path, fam, seed, y, p.tolist(), threshold=0.5))
    # the transformer's predictions listed in another order: the ablation pairs samples by id, not by line
    tdir = tmp_path / "transformer-2"
    lines = (tdir / "predictions.jsonl").read_text().splitlines()
    (tdir / "predictions.jsonl").write_text("\n".join(lines[::-1]) + "\n")
    summary = aggregate(dirs, str(tmp_path / "out"))
    abl = summary["ablation"]["models"]
    assert list(abl) == ["fusion"] and abl["fusion"]["parts"] == ["transformer", "gnn"]
    for seed in ("1", "2"):
        vs = abl["fusion"]["seeds"][seed]["vs"]
        assert vs["gnn"]["f1"]["diff"] == {**vs["gnn"]["f1"]["diff"], "value": 0.0, "low": 0.0, "high": 0.0}
        want = paired_bootstrap(y, probs[int(seed)]["fusion"], 0.5, probs[int(seed)]["transformer"], 0.5)
        assert vs["transformer"]["f1"]["diff"] == pytest.approx(want["f1"]["diff"])
        assert vs["transformer"]["pr_auc"]["diff"]["value"] == pytest.approx(
            compute_metrics(y, probs[int(seed)]["fusion"])["pr_auc"]
            - compute_metrics(y, probs[int(seed)]["transformer"])["pr_auc"])
    overall = abl["fusion"]["overall"]
    assert overall["gnn"]["f1"]["seeds_at_least_as_good"] == 2 and overall["gnn"]["f1"]["mean_diff"] == 0.0
    on_disk = json.loads((tmp_path / "out" / "production_summary.json").read_text())
    assert on_disk["ablation"]["models"]["fusion"]["seeds"]["1"]["n_test"] == 60
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Ablation" in md and "| 1 | gnn | " in md and "+0.0000 [+0.0000, +0.0000]" in md
    assert "Ablation" in (tmp_path / "out" / "report.html").read_text()
    ui = kfp_metrics(summary)
    assert ui["fusion_vs_gnn_f1_diff_mean"] == 0.0
    assert ui["fusion_vs_transformer_f1_diff_s2"] == pytest.approx(vs["transformer"]["f1"]["diff"]["value"], abs=1e-6)
    assert ui["fusion_vs_transformer_f1_diff_low_s2"] <= ui["fusion_vs_transformer_f1_diff_s2"]


def test_ablation_refuses_models_scored_on_different_test_samples(tmp_path):
    a = _result(tmp_path, "fusion", 1, [0, 1, 0, 1], [0.2, 0.8, 0.3, 0.7])
    b = _result(tmp_path, "gnn", 1, [0, 1, 0], [0.2, 0.8, 0.3])
    with pytest.raises(UserError, match="test samples differ"):
        aggregate([a, b], str(tmp_path / "o"))
