"""The one label-array check: any array in, a safe integer label array out, or why not.

Every stage that takes labels calls :func:`check_label_array`: the writer
(``relabel_mask``), the converters, features, adjacency and meshes. The rules are the same
for all of them; parameters say only where callers really differ.

- Booleans are refused everywhere: a boolean mask has no object ids (label its connected
  components first, e.g. ``skimage.measure.label``).
- Unsigned integers are taken as they are; signed integers when no value is negative.
- Floats are accepted where masks enter (the writer and the converters) when every value
  is a finite, non-negative whole number below the integers the float type holds exactly
  (SPEC section 3), and are converted to uint64 with that range check. The stages that
  take a relabelled mask (features, adjacency, meshes) pass ``floats=False`` and refuse
  them: relabel the mask first.
- Any other dtype (text, complex, objects) is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LabelError
from ..rules import MAX_OBJECTS

__all__ = ["check_label_array", "first_position"]

_RELABEL = "maskbundle.labels.relabel.relabel_mask"


def first_position(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first True element of ``mask`` in C order."""
    flat = int(np.argmax(mask.ravel()))
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def _axes_name(ndim: int) -> str:
    return {2: "(row, column)", 3: "(plane, row, column)"}.get(ndim, "index")


def _dims(ndim: tuple[int, ...]) -> str:
    names = {2: "2D (Y, X)", 3: "3D (Z, Y, X)"}
    return " or ".join(names.get(d, f"{d}D") for d in ndim)


def check_label_array(
    name: str | None,
    array: Any,
    *,
    what: str | None = None,
    ndim: tuple[int, ...] | None = (2, 3),
    floats: bool = True,
    convert: bool = True,
    max_label: int | None = None,
) -> np.ndarray:
    """Check that ``array`` is a label image; return it as integers.

    Parameters
    ----------
    name : str or None
        Mask name, used in error messages (``mask 'cells': ...``).
    array : array_like of shape (M, N) or (P, M, N)
        Labels, 0 = background.
    what : str, optional
        The subject of error messages instead of the mask name (a file and mask, or the
        stage: ``"linkage adjacency"``).
    ndim : tuple of int or None
        The dimensions allowed; None for any.
    floats : bool
        Accept floats holding whole numbers (where masks enter); False where a relabelled
        mask is expected.
    convert : bool
        Return native-order integers (floats as uint64). False returns ``array`` itself
        once checked, so a converter hands on exactly what the file held.
    max_label : int, optional
        Refuse labels above this value (stages that pack ids into 32 bits).

    Returns
    -------
    ndarray
        The same values with an integer dtype (a view when no conversion was needed).

    Raises
    ------
    LabelError
        Booleans, non-numeric data, NaN or infinity, negative or fractional values,
        values beyond 2**64 - 1 or ``max_label``, or a dimension not in ``ndim``.

    Examples
    --------
    >>> check_label_array("cells", np.array([[0.0, 3.0], [3.0, 7.0]])).dtype
    dtype('uint64')
    >>> check_label_array("cells", np.ones((2, 2), bool))
    Traceback (most recent call last):
    ...
    maskbundle.errors.LabelError: mask 'cells': a boolean array has no object ids; label its connected components first, e.g. skimage.measure.label(mask)
    """
    who = what if what is not None else ("labels" if name is None else f"mask {name!r}")
    given = np.asarray(array)
    arr = given
    if ndim is not None and arr.ndim not in ndim:
        raise LabelError(
            f"{who}: labels must be {_dims(ndim)}, got {arr.ndim}D with shape {arr.shape}; "
            "squeeze singleton axes or pass one mask per channel"
        )
    if arr.dtype == np.bool_:
        raise LabelError(
            f"{who}: a boolean array has no object ids; label its connected components "
            "first, e.g. skimage.measure.label(mask)"
        )
    kind = arr.dtype.kind
    if kind not in "iuf":
        raise LabelError(
            f"{who}: dtype {arr.dtype} is not a label type; pass an integer array "
            "(e.g. the uint16/uint32 output of your segmentation tool)"
        )
    if kind == "f" and not floats:
        raise LabelError(
            f"{who}: labels of dtype {arr.dtype} must be integers numbered 1..N; relabel "
            f"the mask first ({_RELABEL})"
        )
    if not arr.dtype.isnative:
        # big-endian data (from some TIFF/NPY writers): same values, native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    axes = _axes_name(arr.ndim)
    if kind in "iu":
        if kind == "i" and arr.size:
            neg = arr < 0
            if neg.any():
                raise LabelError(
                    f"{who}: {int(neg.sum())} negative label value(s), first at {axes} "
                    f"{first_position(neg)}; labels must be >= 0 (0 = background): fix the "
                    "source or add an offset"
                )
        _check_max(arr, who, max_label)
        return arr if convert else given
    if arr.size == 0:
        return arr.astype(np.uint32) if convert else given
    bad = ~np.isfinite(arr)
    if bad.any():
        raise LabelError(
            f"{who}: {int(bad.sum())} NaN or infinite value(s), first at {axes} "
            f"{first_position(bad)}; replace them with 0 (background)"
        )
    neg = arr < 0
    if neg.any():
        raise LabelError(
            f"{who}: {int(neg.sum())} negative label value(s), first at {axes} "
            f"{first_position(neg)}; labels must be >= 0"
        )
    frac = arr != np.floor(arr)
    if frac.any():
        pos = first_position(frac)
        raise LabelError(
            f"{who}: {int(frac.sum())} fractional value(s), first at {axes} {pos} "
            f"({float(arr[pos])!r} is not a non-negative integer); a float label image must hold "
            "whole numbers only (did you pass an intensity or probability image?)"
        )
    top = float(arr.max())
    if top >= 2.0**64:
        raise LabelError(f"{who}: label value {top:g} does not fit in 64 bits; relabel the source")
    # a float of p mantissa bits holds every integer only below 2**p (float16: 2048,
    # float32: 2**24, float64: 2**53); at or above it distinct labels may already have
    # been rounded into one, so refuse rather than merge objects silently
    exact = 2 ** (np.finfo(arr.dtype).nmant + 1)
    if top >= exact:
        raise LabelError(
            f"{who}: {arr.dtype} labels reach {top:.0f}, at or above {exact} where "
            f"{arr.dtype} stops holding every integer (neighbouring labels may already be "
            "merged); save the labels with an integer dtype"
        )
    if max_label is not None and top > max_label:
        _check_max(arr.astype(np.uint64), who, max_label)
    return arr.astype(np.uint64) if convert else given


def _check_max(arr: np.ndarray, who: str, max_label: int | None) -> None:
    if max_label is None or not arr.size or np.iinfo(arr.dtype).max <= max_label:
        return
    hi = int(arr.max())
    if hi > max_label:
        limit = "2**32 - 1" if max_label == MAX_OBJECTS else str(max_label)
        raise LabelError(
            f"{who}: largest label {hi} exceeds {limit}; relabel the mask to 1..N first "
            f"({_RELABEL})"
        )
