"""Models: transformer, GNN and fusion."""
