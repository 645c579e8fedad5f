"""Deterministic synthetic tissue for examples, tests and benchmarks (no downloads).

Cells are Voronoi regions of jittered-grid seeds, cut off at a maximum radius so that
some background remains; nuclei are smaller discs (or ellipsoids) around the same seeds.
Large images are generated tile by tile so memory stays proportional to one tile.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

__all__ = ["example_labels", "iter_synthetic_tissue", "synthetic_nuclei_3d", "synthetic_tissue"]


def example_labels() -> np.ndarray:
    """The 32 x 32 uint16 label image of the documentation examples: three cells.

    Cells 1 and 2 are 8 x 8 squares side by side (they touch), cell 3 a 10 x 10 square
    apart from them; everything else is background (0).

    Examples
    --------
    >>> from maskbundle.synthetic import example_labels
    >>> labels = example_labels()
    >>> labels.shape, labels.dtype.name, [int((labels == i).sum()) for i in (1, 2, 3)]
    ((32, 32), 'uint16', [64, 64, 100])
    """
    labels = np.zeros((32, 32), np.uint16)
    labels[2:10, 2:10], labels[2:10, 10:18], labels[20:30, 5:15] = 1, 2, 3
    return labels


def _tile_tissue(
    shape: tuple[int, int], spacing: float, rng: np.random.Generator, first_id: int
) -> tuple[np.ndarray, np.ndarray, int]:
    h, w = shape
    ys = np.arange(spacing / 2, h, spacing)
    xs = np.arange(spacing / 2, w, spacing)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    jitter = rng.uniform(-0.35, 0.35, size=(2, *gy.shape)) * spacing
    py = np.clip(gy + jitter[0], 0, h - 1).astype(np.int64).ravel()
    px = np.clip(gx + jitter[1], 0, w - 1).astype(np.int64).ravel()
    # a few seeds are dropped to leave holes of background tissue
    keep = rng.random(py.size) > 0.03
    py, px = py[keep], px[keep]
    n = py.size
    seeds = np.zeros(shape, dtype=bool)
    seeds[py, px] = True
    ids = np.zeros(shape, dtype=np.uint32)
    ids[py, px] = np.arange(first_id, first_id + n, dtype=np.uint32)
    dist, (iy, ix) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    cells = ids[iy, ix]
    # per-cell radius so shapes vary; background beyond it
    radius = rng.uniform(0.45, 0.75, size=n) * spacing
    rmap = np.zeros(shape, dtype=np.float32)
    rmap[py, px] = radius
    r_here = rmap[iy, ix]
    cells[dist > r_here] = 0
    nuclei = cells.copy()
    nuclei[dist > 0.45 * r_here] = 0
    return cells, nuclei, n


def synthetic_tissue(
    shape: tuple[int, int] = (512, 512),
    *,
    cell_spacing: float = 20.0,
    seed: int = 0,
    tile: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Cells and nuclei label images (uint32, ids 1..N in scan order of the tiles).

    Parameters
    ----------
    shape : (rows, columns)
    cell_spacing : float
        Seed spacing in pixels; a 4096 x 4096 image with the default 20 holds ~40,000 cells.
    seed : int
        Random seed; the same seed gives the same arrays.
    tile : int
        Tiles of this size are generated independently (cells are cut at tile edges).

    Returns
    -------
    cells, nuclei : ndarray of shape ``shape``, dtype uint32
        Each nucleus has the id of the cell that contains it.
    """
    cells = np.zeros(shape, dtype=np.uint32)
    nuclei = np.zeros(shape, dtype=np.uint32)
    for sl, c, nu in iter_synthetic_tissue(shape, cell_spacing=cell_spacing, seed=seed, tile=tile):
        cells[sl] = c
        nuclei[sl] = nu
    return cells, nuclei


def iter_synthetic_tissue(
    shape: tuple[int, int],
    *,
    cell_spacing: float = 20.0,
    seed: int = 0,
    tile: int = 4096,
) -> Iterator[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """The tiles of :func:`synthetic_tissue` one at a time, in row-major tile order.

    Yields ``(window, cells, nuclei)``; pasting every tile at its window gives exactly
    ``synthetic_tissue(shape, ...)`` with the same arguments, and ids are unique across
    tiles. Memory stays one tile, so whole-slide masks can be written to disk tile-wise.
    """
    rng = np.random.default_rng(seed)
    next_id = 1
    for y0 in range(0, shape[0], tile):
        for x0 in range(0, shape[1], tile):
            sl = (slice(y0, min(y0 + tile, shape[0])), slice(x0, min(x0 + tile, shape[1])))
            sub = (sl[0].stop - y0, sl[1].stop - x0)
            c, nu, n = _tile_tissue(sub, cell_spacing, rng, next_id)
            yield sl, c, nu
            next_id += n


def synthetic_nuclei_3d(
    shape: tuple[int, int, int] = (32, 128, 128),
    *,
    n_objects: int = 40,
    radius: tuple[float, float] = (4.0, 9.0),
    anisotropy: float = 2.0,
    seed: int = 0,
) -> np.ndarray:
    """A (Z, Y, X) label volume of non-overlapping ellipsoidal nuclei (uint32, 1..N).

    ``anisotropy`` is the ratio of the z step to the xy step, so ellipsoids are flattened
    in z by that factor (they look round in physical space). Later objects never paint over
    earlier ones, so every object keeps at least its own centre.
    """
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, dtype=np.uint32)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    label = 0
    for _ in range(n_objects * 20):
        if label == n_objects:
            break
        r = rng.uniform(*radius, size=3) * np.array([1 / anisotropy, 1.0, 1.0])
        c = rng.uniform(0, 1, size=3) * np.array(shape)
        if vol[tuple(np.clip(c.astype(int), 0, np.array(shape) - 1))]:
            continue
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        free = inside & (vol == 0)
        if free.sum() < 8:
            continue
        label += 1
        vol[free] = label
    return vol
