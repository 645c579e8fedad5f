"""Give the objects of one mask the ids of the objects of another that contain them.

Typical use: nuclei take the id of their cell (Mesmer numbers them independently). For
every child object (nucleus) the parent object (cell) covering the most of its pixels is
found from pair counts: one ``np.unique`` over packed ``(child, parent)`` keys of the
pixels where both are set. The child takes the parent's id when that parent covers more
than ``min_fraction`` of it and no other child claims the same parent with a larger
overlap; every other child gets a new id after the largest parent label, in ascending
order of its original label. Memory is proportional to the number of foreground pixels,
never to the largest label value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastremap
import numba
import numpy as np
import pandas as pd

from ..errors import OptionError, ShapeMismatchError
from ..labels.checks import check_label_array
from ..model import ColumnSpec, Mask, Segmentation

__all__ = ["MatchResult", "match_labels", "match_masks"]


@dataclass(frozen=True)
class MatchResult:
    """Outcome of :func:`match_labels`.

    ``labels`` is the child array renumbered; ``original_ids`` / ``new_ids`` map each child
    object (ascending original label) to its new label; ``parent_object_ids`` is the
    Object ID its parent will have once the parent mask is numbered 1..N by ascending
    label (0 when unmatched).
    """

    labels: np.ndarray
    original_ids: np.ndarray
    new_ids: np.ndarray
    parent_object_ids: np.ndarray
    matched: int
    unmatched: int
    below_fraction: int
    lost_to_larger_overlap: int

    def stats(self) -> dict[str, int]:
        return {
            "matched": self.matched,
            "unmatched_given_new_ids": self.unmatched,
            "unmatched_because_mostly_outside_any_parent": self.below_fraction,
            "unmatched_because_parent_taken_by_larger_overlap": self.lost_to_larger_overlap,
        }


@numba.njit(cache=True)
def _remap_sorted(
    labels: np.ndarray, ids: np.ndarray, new_ids: np.ndarray, out: np.ndarray
) -> None:
    """``out[i] = new_ids[k]`` where ``labels[i] == ids[k]`` (``ids`` sorted); 0 stays 0."""
    for i in range(labels.shape[0]):
        v = labels[i]
        if v != 0:
            out[i] = new_ids[np.searchsorted(ids, v)]


def _overlap_counts(
    child_ids: np.ndarray, parent_ids: np.ndarray, cb: np.ndarray, qb: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(child rank, parent rank, pixels) of every overlapping pair, from the pixels'
    child labels ``cb`` and parent labels ``qb`` (both non-zero)."""
    n_child = child_ids.size
    pmax = int(parent_ids[-1]) if parent_ids.size else 0
    cmax = int(child_ids[-1]) if n_child else 0
    pc: np.ndarray
    pp: np.ndarray
    if (cmax + 1) * (pmax + 1) <= np.iinfo(np.uint64).max:
        # pack the raw labels: no sort of the pixels beyond the one np.unique of the keys
        base = np.uint64(pmax + 1)
        keys = cb.astype(np.uint64) * base + qb.astype(np.uint64)
        pair, count = np.unique(keys, return_counts=True)
        pc = np.searchsorted(child_ids, (pair // base).astype(child_ids.dtype))
        pp = np.searchsorted(parent_ids, (pair % base).astype(parent_ids.dtype))
    else:  # labels near 2**64: pack ranks instead (n_child * n_parent < pixels**2)
        base = np.uint64(max(parent_ids.size, 1))
        keys = np.searchsorted(child_ids, cb).astype(np.uint64) * base + np.searchsorted(
            parent_ids, qb
        ).astype(np.uint64)
        pair, count = np.unique(keys, return_counts=True)
        pc, pp = pair // base, pair % base
    return pc, pp, count


def match_labels(child: np.ndarray, parent: np.ndarray, *, min_fraction: float = 0.5) -> MatchResult:
    """Renumber ``child`` objects with the label of the ``parent`` object containing most of each.

    Parameters
    ----------
    child : ndarray of shape (Y, X) or (Z, Y, X), integer
        E.g. nuclei; 0 is background.
    parent : ndarray, same shape, integer
        E.g. cells.
    min_fraction : float
        A child matches a parent only when the parent covers more than this fraction of
        the child's pixels (default: more than half).

    Returns
    -------
    MatchResult
        ``labels`` has unsigned type (uint32, or uint64 when the new ids need it).

    Examples
    --------
    >>> import numpy as np
    >>> from maskbundle.convert import match_labels
    >>> parent = np.array([[1, 1, 2, 2]], np.uint8)
    >>> child = np.array([[0, 5, 6, 0]], np.uint8)
    >>> match_labels(child, parent).labels.tolist()
    [[0, 1, 2, 0]]
    """
    if child.shape != parent.shape:
        raise ShapeMismatchError(
            f"cannot match masks of shapes {child.shape} and {parent.shape}; they must be "
            "drawn on the same image"
        )
    if not 0.0 <= min_fraction < 1.0:
        raise OptionError(f"min_fraction must be in [0, 1), got {min_fraction}")
    child = check_label_array(None, child, what="child mask", convert=False)
    parent = check_label_array(None, parent, what="parent mask", convert=False)
    fg = child != 0
    c = child[fg]
    q = parent[fg]
    child_ids, child_area = fastremap.unique(c, return_counts=True)  # sorted
    parent_ids = fastremap.unique(parent)
    parent_ids = parent_ids[parent_ids != 0]
    n_child = child_ids.size
    both = q != 0
    cb, qb = c[both], q[both]
    del c, q
    pc, pp, count = _overlap_counts(child_ids, parent_ids, cb, qb)
    del cb, qb
    pc = pc.astype(np.int64)
    pp = pp.astype(np.int64)
    # best parent per child: largest count, then smallest parent label
    order = np.lexsort((pp, -count.astype(np.int64), pc))
    pc, pp, count = pc[order], pp[order], count[order]
    first = np.ones(pc.size, dtype=bool)
    first[1:] = pc[1:] != pc[:-1]
    best_c, best_p, best_n = pc[first], pp[first], count[first]
    ok = best_n > min_fraction * child_area[best_c]
    below = int(n_child - np.count_nonzero(ok))
    best_c, best_p, best_n = best_c[ok], best_p[ok], best_n[ok]
    # one child per parent: the larger overlap wins, then the smaller child label
    order = np.lexsort((best_c, -best_n.astype(np.int64), best_p))
    best_c, best_p = best_c[order], best_p[order]
    win = np.ones(best_p.size, dtype=bool)
    win[1:] = best_p[1:] != best_p[:-1]
    lost = int(np.count_nonzero(~win))
    best_c, best_p = best_c[win], best_p[win]

    parent_max = int(parent.max()) if parent.size else 0
    matched = np.zeros(n_child, dtype=bool)
    matched[best_c] = True
    n_new = int(n_child - best_c.size)
    top = max(parent_max + n_new, int(parent_ids[-1]) if parent_ids.size else 0)
    dtype = np.uint32 if top <= np.iinfo(np.uint32).max else np.uint64
    if top > np.iinfo(np.uint64).max:  # pragma: no cover - needs labels near 2**64
        raise OptionError("new nucleus ids would exceed 2**64 - 1")
    new_ids = np.empty(n_child, dtype=dtype)
    new_ids[best_c] = parent_ids[best_p].astype(dtype)
    new_ids[~matched] = np.arange(parent_max + 1, parent_max + 1 + n_new, dtype=dtype)
    parent_object_ids = np.zeros(n_child, dtype=np.int64)
    parent_object_ids[best_c] = best_p + 1
    del fg
    out = np.zeros(child.shape, dtype=dtype)
    _remap_sorted(child.reshape(-1), child_ids, new_ids, out.reshape(-1))
    return MatchResult(
        labels=out,
        original_ids=child_ids,
        new_ids=new_ids,
        parent_object_ids=parent_object_ids,
        matched=int(best_c.size),
        unmatched=n_new,
        below_fraction=below,
        lost_to_larger_overlap=lost,
    )


def _remap_index(index: pd.Index, result: MatchResult) -> np.ndarray:
    old = np.asarray(index, dtype=np.int64)
    pos = np.searchsorted(result.original_ids.astype(np.int64), old)
    pos = np.clip(pos, 0, max(result.original_ids.size - 1, 0))
    if result.original_ids.size == 0 or not np.array_equal(
        result.original_ids.astype(np.int64)[pos], old
    ):
        raise OptionError("features are indexed by labels that are not in the mask")
    return result.new_ids[pos].astype(np.int64)


def rematch_mask(mask: Mask, result: MatchResult, parent_name: str, stats_key: str) -> Mask:
    """``mask`` renumbered by ``result``: labels, features, object types and a link column."""
    col = f"Object ID in {parent_name}"
    link = pd.DataFrame(
        {col: result.parent_object_ids}, index=pd.Index(result.new_ids.astype(np.int64), name="label")
    )
    old_feats = mask.features
    if old_feats is not None and col in old_feats.columns:  # matched before: replace
        old_feats = old_feats.drop(columns=[col])
    if old_feats is not None and len(old_feats.columns):
        feats = old_feats.copy()
        feats.index = pd.Index(_remap_index(feats.index, result), name="label")
        feats = feats.join(link, how="outer")
        feats[col] = feats[col].fillna(0).astype(np.int64)
    else:
        feats = link
    feats = feats.sort_index()
    specs = dict(mask.feature_specs)
    specs[col] = ColumnSpec(
        col,
        "integer",
        "mask",
        f"Object ID of the object of mask '{parent_name}' that covers most of this object "
        f"(its label here equals that object's original label); 0 when none covers more "
        "than half of it",
    )
    types: Any = mask.object_types
    if isinstance(types, Mapping):
        keys = pd.Index(np.array([int(k) for k in types], dtype=np.int64))
        new_keys = _remap_index(keys, result) if len(keys) else keys
        types = {int(n): v for n, v in zip(new_keys, types.values(), strict=True)}
    source = dict(mask.source)
    source[stats_key] = {"parent_mask": parent_name, **result.stats()}
    return dataclasses.replace(
        mask, labels=result.labels, features=feats, feature_specs=specs, object_types=types,
        source=source,
    )


def match_masks(
    segmentation: Segmentation, pairs: Mapping[str, str], *, min_fraction: float = 0.5
) -> Segmentation:
    """Renumber masks so each object takes the id of the object containing it in another mask.

    Parameters
    ----------
    segmentation : Segmentation
        Masks as read.
    pairs : mapping of child mask name to parent mask name
        ``{"nuclei": "cells"}`` gives every nucleus the label of the cell covering most of
        it; unmatched nuclei get new labels after the largest cell label.
    min_fraction : float
        See :func:`match_labels`.

    Returns
    -------
    Segmentation
        A copy with the child masks renumbered, their features re-indexed, an ``Object ID
        in <parent>`` integer column added and the match counts in each child's
        ``source["matched"]``.

    Examples
    --------
    >>> import numpy as np
    >>> from maskbundle import Mask, Segmentation, match_masks
    >>> cells = np.zeros((8, 8), np.uint8)
    >>> cells[:, :4], cells[:, 4:] = 1, 2
    >>> nuclei = np.zeros((8, 8), np.uint8)
    >>> nuclei[2:4, 5:7], nuclei[5:7, 1:3] = 1, 2  # nucleus 1 lies in cell 2, nucleus 2 in cell 1
    >>> seg = Segmentation(masks={"cells": Mask(cells), "nuclei": Mask(nuclei)})
    >>> matched = match_masks(seg, {"nuclei": "cells"})
    >>> int(matched.masks["nuclei"].labels[2, 5]), int(matched.masks["nuclei"].labels[5, 1])
    (2, 1)
    """
    masks = dict(segmentation.masks)
    for child, parent in pairs.items():
        for n in (child, parent):
            if n not in masks:
                raise OptionError(f"match names mask {n!r}, which is not among {list(masks)}")
        if child == parent:
            raise OptionError(f"mask {child!r} cannot be matched to itself")
        result = match_labels(
            np.asarray(masks[child].labels), np.asarray(masks[parent].labels),
            min_fraction=min_fraction,
        )
        masks[child] = rematch_mask(masks[child], result, parent, "matched")
    return dataclasses.replace(segmentation, masks=masks)
