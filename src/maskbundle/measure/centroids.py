"""Pixel counts and exact centroids per object in one pass over the pixels."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["object_centroids"]


@numba.njit(cache=True, nogil=True)
def _accumulate(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    counts = np.zeros(n + 1, np.int64)
    sums = np.zeros((n + 1, 3), np.float64)
    nz, ny, nx = labels.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                lab = labels[z, y, x]
                if lab:
                    counts[lab] += 1
                    sums[lab, 0] += z
                    sums[lab, 1] += y
                    sums[lab, 2] += x
    return counts, sums


def object_centroids(labels: np.ndarray, n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts and centroids of objects 1..N.

    Parameters
    ----------
    labels : ndarray of shape (M, N) or (P, M, N), labels 1..``n_objects`` (0 = background)
    n_objects : int

    Returns
    -------
    counts : ndarray of shape (n_objects,), int64
    centroids : ndarray of shape (n_objects, 3), float64
        Mean (plane, row, column) of each object's pixels; plane is 0 in 2D.
    """
    vol = labels if labels.ndim == 3 else labels[np.newaxis]
    counts, sums = _accumulate(np.ascontiguousarray(vol), n_objects)
    with np.errstate(invalid="ignore", divide="ignore"):
        cents = sums[1:] / counts[1:, np.newaxis]
    return counts[1:], cents
