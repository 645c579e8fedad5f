"""Pure array checks behind the validator: label statistics, pyramid levels, contacts.

Nothing here reads files. Memory is proportional to the pixels of one channel and to the
number of distinct labels, never to the largest label value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "LabelStats",
    "PyramidVerdict",
    "compare_level",
    "contact_pairs",
    "label_stats",
    "pair_keys",
]

_BLOCK_PIXELS = 1 << 20


@dataclass(frozen=True)
class LabelStats:
    """Per-label statistics of one channel.

    ids : ndarray of shape (N,), int64
        The distinct non-zero labels, ascending.
    counts : ndarray of shape (N,), int64
        Pixels (voxels) per label.
    centroids : ndarray of shape (N, 3), float64
        Mean (plane, row, column) of each label's pixels.
    """

    ids: np.ndarray
    counts: np.ndarray
    centroids: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ids.size)

    @property
    def contiguous(self) -> bool:
        """True when the labels are exactly 1..N (also for N = 0)."""
        return self.n == 0 or (int(self.ids[0]) == 1 and int(self.ids[-1]) == self.n)


def label_stats(labels: np.ndarray) -> LabelStats:
    """Distinct labels, pixel counts and centroids of a (Z, Y, X) label array.

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X), unsigned integers; 0 is background.

    Notes
    -----
    The distinct values come from one sort (``fastremap.unique``); each block of rows is
    then mapped to its index among them (``np.searchsorted``, the inverse of
    ``np.unique``; the values themselves when they are already 0..K-1 or 1..K) and summed
    with ``np.bincount``. Memory: one sorted copy of the channel plus one block, never
    anything proportional to the largest label value.
    """
    import fastremap

    if labels.ndim != 3:
        raise ValueError(f"labels must be (Z, Y, X), got shape {labels.shape}")
    nz, ny, nx = labels.shape
    flat = labels.reshape(-1)
    uniq = np.asarray(fastremap.unique(flat)) if flat.size else np.zeros(0, labels.dtype)
    k = uniq.size
    offset = None  # index = value - offset when the values are a dense run
    if k and int(uniq[-1]) - int(uniq[0]) == k - 1 and int(uniq[0]) <= 1:
        offset = int(uniq[0])
    counts = np.zeros(k, np.int64)
    sums = np.zeros((3, k), np.float64)
    rows_per_block = max(1, _BLOCK_PIXELS // max(nx, 1))
    n_rows = nz * ny
    cols = np.arange(nx, dtype=np.float64)
    col_block = np.tile(cols, min(rows_per_block, nz * ny))  # column weights, built once
    for r0 in range(0, n_rows, rows_per_block):
        r1 = min(n_rows, r0 + rows_per_block)
        block = flat[r0 * nx : r1 * nx]
        if offset is None:
            idx = np.searchsorted(uniq, block)
        else:
            idx = block.astype(np.int64) - offset
        rows = np.arange(r0, r1)
        counts += np.bincount(idx, minlength=k)
        if nz > 1:  # in 2D every plane index is 0: the sums stay 0 without a pass
            plane_w = np.repeat((rows // ny).astype(np.float64), nx)
            sums[0] += np.bincount(idx, weights=plane_w, minlength=k)
        row_w = np.repeat((rows % ny).astype(np.float64), nx)
        sums[1] += np.bincount(idx, weights=row_w, minlength=k)
        col_w = col_block if r1 - r0 == rows_per_block else np.tile(cols, r1 - r0)
        sums[2] += np.bincount(idx, weights=col_w, minlength=k)
    keep = uniq != 0
    ids = uniq[keep].astype(np.int64)
    cnt = counts[keep]
    cent = (sums[:, keep] / np.maximum(cnt, 1)).T.copy()
    return LabelStats(ids, cnt, cent)


PyramidVerdict = Literal["stride", "mode", "invented", "shape"]


def compare_level(base: np.ndarray, level: np.ndarray, k: int) -> tuple[PyramidVerdict, int]:
    """Judge pyramid ``level`` k of one channel against its full resolution ``base``.

    Parameters
    ----------
    base : ndarray of shape (Z, Y, X)
    level : ndarray of shape (Z, ceil(Y / 2**k), ceil(X / 2**k))
    k : int, >= 1

    Returns
    -------
    verdict, count
        ``"stride"`` when ``level == base[..., ::2**k, ::2**k]``; ``"mode"`` when not, but
        every value occurs in its own 2**k x 2**k block (label-safe, count = differing
        pixels); ``"invented"`` when ``count`` pixels hold a value absent from their block
        (averaged or interpolated); ``"shape"`` when the shape is wrong.
    """
    f = 2**k
    expect = base[..., ::f, ::f]
    if level.shape != expect.shape:
        return "shape", 0
    if np.array_equal(level, expect):
        return "stride", 0
    differ = int(np.count_nonzero(level != expect))
    inblock = np.zeros(level.shape, dtype=bool)
    for dy, dx in itertools.product(range(f), range(f)):
        sub = base[..., dy::f, dx::f]
        h, w = sub.shape[-2:]
        inblock[..., :h, :w] |= sub == level[..., :h, :w]
    invented = int(np.count_nonzero(~inblock))
    if invented:
        return "invented", invented
    return "mode", differ


def pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Undirected pairs as sortable uint64 keys ``min << 32 | max`` (ids < 2**32)."""
    a64 = np.asarray(a).astype(np.uint64)
    b64 = np.asarray(b).astype(np.uint64)
    lo = np.minimum(a64, b64)
    hi = np.maximum(a64, b64)
    return np.asarray((lo << np.uint64(32)) | hi, dtype=np.uint64)


def contact_pairs(labels: np.ndarray, *, diagonal: bool) -> np.ndarray:
    """Sorted unique keys (see :func:`pair_keys`) of label pairs whose pixels touch.

    Parameters
    ----------
    labels : ndarray of shape (Y, X) or (Z, Y, X)
    diagonal : bool
        False: faces only (4-connected in 2D, 6 in 3D); True: also edges and corners
        (8- / 26-connected).
    """
    nd = labels.ndim
    found = [np.zeros(0, np.uint64)]
    for off in itertools.product((-1, 0, 1), repeat=nd):
        if off <= (0,) * nd:  # one offset of each +/- pair, and not the zero offset
            continue
        if not diagonal and sum(abs(o) for o in off) != 1:
            continue
        src = tuple(
            slice(max(0, -o), n - max(0, o)) for o, n in zip(off, labels.shape, strict=True)
        )
        dst = tuple(
            slice(max(0, o), n - max(0, -o)) for o, n in zip(off, labels.shape, strict=True)
        )
        a, b = labels[src], labels[dst]
        m = (a != b) & (a != 0) & (b != 0)
        found.append(np.unique(pair_keys(a[m], b[m])))
    return np.unique(np.concatenate(found))
