"""Evaluation used by every trainer and by the aggregator."""

from streamguard.eval.metrics import compute_metrics, pair_metrics, tune_threshold

__all__ = ["compute_metrics", "tune_threshold", "pair_metrics"]
