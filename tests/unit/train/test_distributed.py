"""Who trains and predicts what in a distributed run (``train.distributed``), without starting processes."""

from __future__ import annotations

import pytest
import torch

from streamguard.errors import UserError
from streamguard.train import distributed
from streamguard.train.distributed import Dist
from streamguard.train.interface import class_weights_from_labels, loss_fn


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 5, 16, 17])
def test_the_ranks_shards_of_a_batch_cover_it_once(world, n):
    batch = list(range(100, 100 + n))
    shards = [Dist(rank=r, world=world).batch_shard(batch) for r in range(world)]
    assert sorted(i for s in shards for i in s) == batch
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [0, 1, 7, 64, 65, 130])
@pytest.mark.parametrize("align", [1, 64])
def test_split_shards_are_contiguous_in_rank_order_and_chunk_aligned(world, n, align):
    parts = [Dist(rank=r, world=world).shard(n, align) for r in range(world)]
    assert [i for p in parts for i in p] == list(range(n))  # in rank order: concatenating them is the split
    for p in parts:
        assert p.start % align == 0 and (p.stop % align == 0 or p.stop == n)
    chunks = [-(-len(p) // align) for p in parts]
    assert max(chunks) - min(chunks) <= 1


def test_one_process_is_the_identity():
    d = Dist()
    assert not d.enabled and d.is_main
    assert d.batch_shard([3, 1, 2]) == [3, 1, 2] and d.shard(5, 2) == range(5)
    assert d.broadcast("x") == "x" and d.all_gather(1) == [1] and d.any(True) and not d.any(False)
    t = torch.tensor([1.5])
    assert d.mean(t) is t
    assert d.gather_shards(lambda part: list(part), 4) == [[0, 1, 2, 3]]
    assert d.gather_shards(lambda part: list(part), 0) == []
    d.barrier()


def test_shard_losses_normalised_by_the_global_weight_sum_average_to_the_batch_loss():
    """What makes DDP's mean of the ranks' gradients the 1-process gradient: each rank's loss is its weighted sum
    over the global batch's weight sum / W (the engine's ``shard_batch``), not its own weighted mean."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(7, 4), torch.tensor([0, 0, 0, 0, 1, 1, 0])
    w = class_weights_from_labels(y.tolist())

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    full = loss_fn(lambda b: model(b["x"]), {"x": x, "labels": y}, w)[0]
    g_full = grads(full)
    world = 2
    total = float(w[y].sum())
    parts, g_parts = [], []
    for r in range(world):
        idx = Dist(rank=r, world=world).batch_shard(list(range(7)))
        loss = loss_fn(lambda b: model(b["x"]), {"x": x[idx], "labels": y[idx]}, w, weight_sum=total / world)[0]
        parts.append(loss.detach())
        g_parts.append(grads(loss))
    assert torch.stack(parts).mean() == pytest.approx(float(full), rel=1e-6)
    torch.testing.assert_close(torch.stack(g_parts).mean(0), g_full, rtol=1e-5, atol=1e-7)
    # the ranks' own weighted means would not do: their shards hold different class mixes
    own = [loss_fn(lambda b: model(b["x"]), {"x": x[i], "labels": y[i]}, w)[0].detach()
           for i in (list(range(0, 7, 2)), list(range(1, 7, 2)))]
    assert abs(float(torch.stack(own).mean()) - float(full)) > 1e-3


def test_the_environment_decides(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.launched_rank() is None
    assert distributed._init(10) == Dist()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed._init(10) == Dist() and distributed.launched_rank() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.launched_rank() == 1
    with pytest.raises(UserError, match=r"\$LOCAL_RANK: not set"):
        distributed._init(10)
    monkeypatch.setenv("LOCAL_RANK", "one")
    with pytest.raises(UserError, match=r"\$LOCAL_RANK='one': not an integer"):
        distributed._init(10)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(UserError, match=r"\$RANK=2: outside 0..1"):
        distributed._init(10)
