"""One training engine for every model (transformer, GNN, fusion).

The model/batch interface (``interface.py``): a model is an ``nn.Module`` whose
``forward(batch)`` takes a batch dict and returns logits of shape ``[B, 2]``;
every batch dict carries ``labels`` (LongTensor ``[B]``) and anything else the
model needs (``input_ids``/``attention_mask``, ``graph``, ``features`` ...).
"""
