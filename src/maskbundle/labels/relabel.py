"""Relabel a mask to contiguous ids 1..N (0 = background), ascending by original label."""

from __future__ import annotations

from typing import Any

import fastremap
import numpy as np

from ..errors import LabelError
from ..model import RelabelledMask
from ..rules import MAX_OBJECTS
from .checks import check_label_array

__all__ = ["label_dtype", "relabel", "relabel_mask"]

# Below this maximum label a lookup table is the fastest remap and costs at most 64 MiB;
# above it we never allocate anything in proportion to the largest label.
_LUT_MAX_LABEL = 2**24


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
    uniq = fastremap.unique(labels)
    original_ids = uniq[uniq != 0]
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
