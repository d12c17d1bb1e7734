"""GNNClassifier on a 4-node graph: shapes, edge types matter, optimisation reduces the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from streamguard.config import GNNConfig
from streamguard.graphs import FEATURE_SPEC, build_graph
from streamguard.models.gnn import GNNClassifier, gnn_collate


def four_nodes(edge_type, label=1):
    x = torch.tensor([[1, 5, 3, 3, 0, 2], [2, 0, 0, 0, 1, 1], [3, 7, 4, 4, 0, 4], [1, 9, 0, 0, 2, 3]])
    ei = torch.tensor([[0, 0, 1, 2], [1, 2, 3, 3]])
    return Data(x=x, edge_index=ei, edge_type=torch.tensor(edge_type), y=torch.tensor([label]), num_nodes=4)


def test_shapes_and_edge_types_change_output():
    torch.manual_seed(0)
    cfg = GNNConfig(hidden=16, layers=2, dropout=0.0)
    model = GNNClassifier(cfg).eval()
    assert len(model.embeds) == len(FEATURE_SPEC)
    batch = gnn_collate([four_nodes([0, 0, 0, 0]), four_nodes([0, 0, 0, 0], 0)])
    assert batch["labels"].tolist() == [1, 0]
    logits, emb = model(batch), model.embed(batch)
    assert logits.shape == (2, 2) and emb.shape == (2, 16)
    other = model(gnn_collate([four_nodes([2, 3, 6, 1]), four_nodes([0, 0, 0, 0], 0)]))
    assert not torch.allclose(logits[0], other[0], atol=1e-6)  # same structure, different edge types
    assert torch.allclose(logits[1], other[1], atol=1e-6)  # graphs in a batch are independent


def test_a_few_steps_reduce_loss_on_real_graphs():
    torch.manual_seed(0)
    graphs = [build_graph("int f(char *b, int n) { char t[8]; memcpy(t, b, n); return t[0]; }", label=1),
              build_graph("int g(int a) { if (a > 0) return a; return -a; }", label=0),
              four_nodes([0, 1, 2, 3], 1), four_nodes([4, 5, 6, 7], 0)]
    model = GNNClassifier(GNNConfig(hidden=32, layers=2, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = gnn_collate(graphs)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(batch), batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5


def test_collate_casts_compact_graphs_to_int64_and_matches_long_graphs():
    graphs = [build_graph("int f(int a) { if (a) return 1; return 0; }", label=1),
              build_graph("void g(char *s) { while (*s) s++; }", label=0), four_nodes([0, 1, 2, 3], 1)]
    compact = [Data(x=g.x.to(torch.int16), edge_index=g.edge_index.to(torch.int32),
                    edge_type=g.edge_type.to(torch.int8), y=g.y, num_nodes=g.num_nodes) for g in graphs]
    mixed = [graphs[0], compact[1], compact[2]]
    ref = gnn_collate(graphs)
    for items in (compact, mixed):
        b = gnn_collate(items)
        for key in ("x", "edge_index", "edge_type", "batch"):
            assert b["graph"][key].dtype == torch.long and torch.equal(b["graph"][key], ref["graph"][key])
        assert b["labels"].dtype == torch.long and b["labels"].tolist() == [1, 0, 1]
    torch.manual_seed(0)
    model = GNNClassifier(GNNConfig(hidden=8, layers=1, dropout=0.0)).eval()
    assert torch.allclose(model(gnn_collate(compact)), model(ref), atol=1e-6)
