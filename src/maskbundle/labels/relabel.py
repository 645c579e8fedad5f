"""Relabel a mask to contiguous ids 1..N (0 = background), ascending by original label."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import fastremap
import numba
import numpy as np

from ..errors import LabelError
from ..model import RelabelledMask
from ..rules import MAX_OBJECTS
from .checks import check_label_array

__all__ = ["label_dtype", "relabel", "relabel_mask"]

# Below this maximum label a lookup table is the fastest remap and costs at most 64 MiB;
# above it we never allocate anything in proportion to the largest label.
_LUT_MAX_LABEL = 2**24
# Pixel passes split into this many contiguous parts on threads (numba kernels without the
# GIL); every part gives integers only, so the result does not depend on the split.
_PARTS = 2


@numba.njit(cache=True, nogil=True)
def _mark_present(flat: np.ndarray, present: np.ndarray) -> None:  # pragma: no cover
    """``present[v] = True`` for every value of ``flat`` (one store per run of equal values)."""
    if flat.size == 0:
        return
    prev = flat[0]
    present[prev] = True
    for i in range(flat.size):
        v = flat[i]
        if v != prev:
            present[v] = True
            prev = v


@numba.njit(cache=True, nogil=True)
def _remap_lut(flat: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """``out[i] = lut[flat[i]]`` with one look-up per run of equal values."""
    if flat.size == 0:
        return
    prev = flat[0]
    cur = lut[prev]
    for i in range(flat.size):
        v = flat[i]
        if v != prev:
            prev = v
            cur = lut[v]
        out[i] = cur


def _parts(size: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, size, _PARTS + 1).astype(np.int64).tolist()
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _on_threads(jobs: list[Callable[[], None]]) -> None:
    """Run the jobs on one thread each (the kernels release the GIL)."""
    if len(jobs) <= 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for fut in [pool.submit(job) for job in jobs]:
            fut.result()


def _unsigned_flat(labels: np.ndarray) -> np.ndarray:
    """The labels as one C-ordered run of unsigned values (checked non-negative before)."""
    flat = labels.reshape(-1)
    if flat.dtype.kind == "i":
        flat = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))
    return flat


def _present_ids(flat: np.ndarray, hi: int) -> np.ndarray:
    """Sorted non-zero values of ``flat`` (all <= ``hi``), int64: a presence table per
    part on threads, then their union."""
    parts = _parts(flat.size)
    tables = [np.zeros(hi + 1, np.bool_) for _ in parts]
    _on_threads([
        functools.partial(_mark_present, flat[a:b], t)
        for (a, b), t in zip(parts, tables, strict=True)
    ])
    present = tables[0]
    for t in tables[1:]:
        present |= t
    present[0] = False
    return np.flatnonzero(present).astype(np.int64)


def label_dtype(n_objects: int) -> np.dtype[Any]:
    """The OME pixel type for ``n_objects``: uint16 up to 65535 objects, else uint32."""
    if n_objects > MAX_OBJECTS:
        raise LabelError(
            f"{n_objects} objects exceed the 2**32 - 1 that OME-TIFF's uint32 can number; "
            "split the mask into several masks"
        )
    return np.dtype(np.uint16) if n_objects <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber ``labels`` to 1..N in ascending order of the original value.

    Parameters
    ----------
    labels : ndarray of non-negative integers, any shape
        Already checked by :func:`check_label_array`.

    Returns
    -------
    relabelled : ndarray, same shape, dtype uint16 or uint32 (see :func:`label_dtype`)
    original_ids : ndarray of shape (N,), dtype int64 or uint64
        ``original_ids[k - 1]`` is the original label of new id k (sorted ascending).
    """
    flat = _unsigned_flat(labels) if labels.size and labels.dtype.kind in "iu" else None
    hi = int(flat.max()) if flat is not None else -1
    if flat is not None and hi <= _LUT_MAX_LABEL:
        # a presence table over 0..max on both cores: less than half the CPU time of
        # fastremap.unique (4096^2 synthetic cells: 0.05 s against 0.12 s)
        original_ids = _present_ids(flat, hi)
    else:
        uniq = fastremap.unique(labels)
        original_ids = uniq[uniq != 0]
        flat = None
    n = int(original_ids.size)
    dtype = label_dtype(n)
    if n and int(original_ids[-1]) == n:
        # already 1..N: only the dtype may change, and n fits it by construction
        return labels.astype(dtype, copy=False), original_ids.astype(np.int64)
    if n == 0:
        return np.zeros(labels.shape, dtype), original_ids.astype(np.int64)
    new_ids = np.arange(1, n + 1, dtype=dtype)
    if int(original_ids[-1]) <= _LUT_MAX_LABEL:
        lut = np.zeros(int(original_ids[-1]) + 1, dtype=dtype)
        lut[original_ids] = new_ids
        if flat is not None:
            out = np.empty(labels.shape, dtype)
            out_flat = out.reshape(-1)
            _on_threads([
                functools.partial(_remap_lut, flat[a:b], lut, out_flat[a:b])
                for a, b in _parts(flat.size)
            ])
        else:
            out = lut[labels]
    else:
        mapping = dict(zip(original_ids.tolist(), new_ids.tolist(), strict=True))
        mapping[0] = 0
        out = fastremap.remap(labels, mapping, preserve_missing_labels=False).astype(
            dtype, copy=False
        )
    keep_unsigned = original_ids.dtype == np.uint64 and int(original_ids[-1]) > 2**63 - 1
    return out, original_ids.astype(np.uint64 if keep_unsigned else np.int64)


def relabel_mask(name: str, array: Any) -> RelabelledMask:
    """Check ``array`` (see :func:`check_label_array`) and relabel it to 1..N."""
    checked = check_label_array(name, array)
    labels, original_ids = relabel(checked)
    return RelabelledMask(name=name, labels=labels, original_ids=original_ids)
