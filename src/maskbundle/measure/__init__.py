"""Pure measurements: label arrays in, per-object tables out."""

from __future__ import annotations

from .features import STATISTICS, FeatureTable, compute_features, user_columns

__all__ = ["STATISTICS", "FeatureTable", "compute_features", "user_columns"]
