"""Checks that turn any user array into a safe integer label array, or explain why not."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LabelError

__all__ = ["check_label_array", "first_position"]


def first_position(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first True element of ``mask`` in C order."""
    flat = int(np.argmax(mask.ravel()))
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def _axes_name(ndim: int) -> str:
    return "(row, column)" if ndim == 2 else "(plane, row, column)"


def check_label_array(name: str, array: Any) -> np.ndarray:
    """Return ``array`` as a non-negative integer ndarray of 2 or 3 dimensions.

    Parameters
    ----------
    name : str
        Mask name, used in error messages.
    array : array_like of shape (M, N) or (P, M, N)
        Labels, 0 = background. Any integer dtype; floats only when every value is a
        finite, non-negative integer (they are then converted with a range check).

    Returns
    -------
    ndarray
        The same data with an integer dtype (a view when no conversion was needed).

    Raises
    ------
    LabelError
        Booleans, non-numeric data, NaN or infinity, negative or fractional values,
        values beyond 2**64 - 1, or an array that is not 2D or 3D.
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise LabelError(
            f"mask {name!r}: labels must be 2D (Y, X) or 3D (Z, Y, X), got {arr.ndim}D with "
            f"shape {arr.shape}; squeeze singleton axes or pass one mask per channel"
        )
    if arr.dtype == np.bool_:
        raise LabelError(
            f"mask {name!r}: a boolean array has no object ids; label its connected components "
            "first, e.g. skimage.measure.label(mask)"
        )
    if arr.dtype.kind in "iuf" and not arr.dtype.isnative:
        # big-endian data (from some TIFF/NPY writers): same values, native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    kind = arr.dtype.kind
    if kind in "iu":
        if kind == "i" and arr.size:
            neg = arr < 0
            if neg.any():
                raise LabelError(
                    f"mask {name!r}: {int(neg.sum())} negative label value(s), first at "
                    f"{_axes_name(arr.ndim)} {first_position(neg)}; labels must be >= 0 "
                    "(0 = background): fix the source or add an offset"
                )
        return arr
    if kind == "f":
        if arr.size == 0:
            return arr.astype(np.uint32)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise LabelError(
                f"mask {name!r}: {int(bad.sum())} NaN or infinite value(s), first at "
                f"{_axes_name(arr.ndim)} {first_position(bad)}; replace them with 0 (background)"
            )
        neg = arr < 0
        if neg.any():
            raise LabelError(
                f"mask {name!r}: {int(neg.sum())} negative label value(s), first at "
                f"{_axes_name(arr.ndim)} {first_position(neg)}; labels must be >= 0"
            )
        frac = arr != np.floor(arr)
        if frac.any():
            raise LabelError(
                f"mask {name!r}: {int(frac.sum())} fractional value(s), first at "
                f"{_axes_name(arr.ndim)} {first_position(frac)}; a float label image must hold "
                "whole numbers only (did you pass an intensity or probability image?)"
            )
        top = float(arr.max())
        if top >= 2.0**64:
            raise LabelError(
                f"mask {name!r}: label value {top:g} does not fit in 64 bits; relabel the source"
            )
        # a float of p mantissa bits holds every integer only below 2**p (float16: 2048,
        # float32: 2**24, float64: 2**53); at or above it distinct labels may already have
        # been rounded into one, so refuse rather than merge objects silently
        exact = 2 ** (np.finfo(arr.dtype).nmant + 1)
        if top >= exact:
            raise LabelError(
                f"mask {name!r}: {arr.dtype} labels reach {top:.0f}, at or above "
                f"{exact} where {arr.dtype} stops holding every integer (neighbouring "
                "labels may already be merged); save the labels with an integer dtype"
            )
        return arr.astype(np.uint64)
    raise LabelError(
        f"mask {name!r}: dtype {arr.dtype} is not a label type; pass an integer array "
        "(e.g. the uint16/uint32 output of your segmentation tool)"
    )
