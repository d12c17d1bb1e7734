"""The fusion head: cross-fitting on held-out items, the gate that starts at (and falls back to) the better
branch, and a correction that opens where the other branch really adds something. Trained by the engine on
hand-made branch margins (what ``families.fusion.encoder_features`` makes from two trained branches)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from streamguard.config import load_config
from streamguard.eval.metrics import compute_metrics, tune_threshold
from streamguard.families import fusion
from streamguard.models.fusion import BRANCHES, FusionHead, features_collate
from streamguard.train.engine import TrainJob, fit


def margins(n: int, seed: int, strength: tuple[float, float], noise: float = 1.5) -> tuple[torch.Tensor, list[int]]:
    """``[n, 2]`` branch margins: branch k is ``strength[k] * (2y - 1)`` plus independent noise (0: pure noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    sign = (2 * y - 1).float().unsqueeze(1)
    z = sign * torch.tensor(strength) + noise * torch.randn(n, 2, generator=g)
    return z, y.tolist()


def branch_f1_pr(z: torch.Tensor, y: list[int], zv: torch.Tensor, yv: list[int], k: int) -> tuple[float, float]:
    """Test F1 (at the threshold tuned on validation) and PR-AUC of branch ``k`` alone."""
    pv, pt = torch.sigmoid(zv[:, k]).numpy(), torch.sigmoid(z[:, k]).numpy()
    m = compute_metrics(y, pt, tune_threshold(yv, pv))
    return m["f1"], m["pr_auc"]


def train_fusion(zv, yv, zt, yt, tmp_path: Path, seed: int = 0, **fusion_cfg):
    """What ``FusionFamily`` does after scoring the branches: anchor, cross-fit rows, head, one engine fit."""
    cfg = load_config("demo")
    cfg = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion, **{"lr": 0.01, **fusion_cfg}),
                              train=dataclasses.replace(cfg.train, num_threads=0))
    items = lambda z, y: [{"features": f, "labels": int(v)} for f, v in zip(z, y)]  # noqa: E731
    anchor = fusion.better_branch(zv, yv)
    train, valid = fusion.cross_fit(items(zv, yv), cfg.fusion.folds, seed)
    model = fusion.head(cfg, seed, 0, 0, anchor=anchor)
    job = TrainJob(family="fusion", model=model, train=train, valid=valid, test=items(zt, yt),
                   collate=features_collate, labels=lambda its: [int(i["labels"]) for i in its], opt=cfg.fusion,
                   train_cfg=cfg.train, seed=seed, out_dir=tmp_path, initial_candidate=True)
    return model, fit(job)


@pytest.mark.parametrize("noise_branch", [0, 1])
def test_where_one_branch_is_noise_the_fusion_falls_back_to_the_other(tmp_path, noise_branch):
    strength = [2.0, 2.0]
    strength[noise_branch] = 0.0
    good = 1 - noise_branch
    fell_back = 0
    for data_seed in range(4):
        zv, yv = margins(300, 10 * data_seed + 1, tuple(strength))
        zt, yt = margins(300, 10 * data_seed + 2, tuple(strength))
        model, result = train_fusion(zv, yv, zt, yt, tmp_path / str(data_seed))
        assert model.anchor == good  # the better branch on validation is the informative one
        f1, pr = branch_f1_pr(zt, yt, zv, yv, good)
        # never below the better branch: the fusion is that branch (no trained epoch beat the untrained head
        # out of fold by min_delta), or a correction that did and keeps its F1 and ranking on test
        assert result.test_metrics["f1"] >= f1 - 1e-9, data_seed
        assert result.test_metrics["pr_auc"] >= pr - 0.005, data_seed
        w = model.w.detach().mean(0)
        assert abs(float(w[noise_branch])) < 0.1 * (1 + float(w[good])), data_seed  # noise gets ~no weight
        if result.best_epoch == -1:
            fell_back += 1
            probs = torch.tensor(result.test_probs, dtype=torch.float64)
            assert torch.allclose(probs, torch.sigmoid(zt[:, good]).double(), atol=1e-6)  # exactly that branch
            assert result.test_metrics["f1"] == pytest.approx(f1)
    assert fell_back >= 3  # pure noise almost never earns the correction a place


def test_where_both_branches_carry_independent_signal_the_gate_opens_and_beats_both(tmp_path):
    zv, yv = margins(400, 5, (1.0, 1.2))
    zt, yt = margins(1000, 6, (1.0, 1.2))
    model, result = train_fusion(zv, yv, zt, yt, tmp_path)
    assert result.best_epoch >= 0  # a trained epoch beat the anchor out of fold
    w = model.w.detach().mean(0)
    assert float(w[1 - model.anchor]) > 0.5  # the other branch now counts about as much as the anchor
    for k in range(len(BRANCHES)):
        f1, pr = branch_f1_pr(zt, yt, zv, yv, k)
        assert result.test_metrics["f1"] > f1 + 0.02 and result.test_metrics["pr_auc"] > pr + 0.02


def test_the_untrained_head_is_its_anchor_branch_and_rows_name_their_copy():
    z, y = margins(40, 7, (1.0, 2.0))
    for anchor in (0, 1):
        model = FusionHead(0, 0, anchor=anchor, folds=4).eval()
        probs = torch.softmax(model({"features": z}), -1)[:, 1]
        assert torch.allclose(probs, torch.sigmoid(z[:, anchor]), atol=1e-6)
    model = FusionHead(0, 0, anchor=1, folds=3)
    with torch.no_grad():
        model.b.copy_(torch.tensor([1.0, 2.0, 3.0]))
    batch = features_collate([{"features": f, "labels": v, "head": h} for f, v, h in zip(z[:3], y, [2, 0, -1])])
    s = model(batch)[:, 1] * 2  # logits are [-s/2, s/2]
    assert torch.allclose(s, z[:3, 1] + torch.tensor([3.0, 1.0, 2.0]))  # copy 2, copy 0, the mean of the copies
    assert "head" not in features_collate([{"features": z[0], "labels": 0}])  # inference rows: the mean


def test_cross_fitting_never_trains_a_copy_on_its_own_fold():
    items = [{"features": torch.zeros(2), "labels": i % 3 == 0, "id": i} for i in range(50)]
    train, valid = fusion.cross_fit(items, 5, seed=3)
    fold = {it["id"]: it["head"] for it in valid}
    assert sorted(fold) == list(range(50)) and set(fold.values()) == set(range(5))
    for it in train:
        assert it["head"] != fold[it["id"]]
    assert len(train) == 4 * 50 and all(sum(t["id"] == i for t in train) == 4 for i in range(50))
    for k in range(5):  # stratified: every fold holds both classes in about the split's proportion
        ys = [it["labels"] for it in valid if it["head"] == k]
        assert len(ys) == 10 and 3 <= sum(ys) <= 4
    assert fusion.cross_fit(items, 5, seed=3) == (train, valid)
    with pytest.raises(Exception, match="at least 2 folds"):
        fusion.cross_fit(items, 1, seed=3)
