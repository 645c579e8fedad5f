"""Label-safe pyramid levels: one source pixel per output pixel, never an average."""

from __future__ import annotations

import numpy as np

from ..rules import TILE_SIZE

__all__ = ["pyramid_level", "pyramid_level_count"]


def pyramid_level_count(height: int, width: int, tile: int = TILE_SIZE) -> int:
    """Number of reduced levels (factor 2 each) until the smaller side fits in ``tile``."""
    n = 0
    while min(height, width) > tile:
        height, width = (height + 1) // 2, (width + 1) // 2
        n += 1
    return n


def pyramid_level(level0: np.ndarray, k: int) -> np.ndarray:
    """Level ``k`` of the pyramid: ``level0[..., ::2**k, ::2**k]`` (a view)."""
    f = 2**k
    return level0[..., ::f, ::f]
