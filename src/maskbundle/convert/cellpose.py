"""Cellpose outputs: ``*_seg.npy`` (read without running pickled code) and ``*_cp_masks``.

``cellpose.io.masks_flows_to_seg`` saves ``np.save(base + "_seg.npy", dat)`` with ``dat``
a dict: ``masks`` (uint16, or uint32 beyond 65535 objects; (Y, X) or (Z, Y, X)),
``outlines`` (``masks`` on the object boundaries), ``filename``, ``diameter``,
``chan_choose``, ``ismanual``, ``flows`` and, in some versions, ``est_diam``,
``model_path``, ``flow_threshold``, ``cellprob_threshold``. ``cellpose.io.save_masks``
writes ``*_cp_masks.png`` (2D, uint16) or ``*_cp_masks.tif`` (2D or 3D).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError
from ..labels.checks import check_label_array
from ..model import Mask, Segmentation
from ..names import check_mask_name
from ._common import file_source, jsonable, renamed_keywords
from ._safe_npy import load_npy_safely
from .generic import read_label_arrays

__all__ = ["read_cellpose"]

# scalar settings of a _seg.npy copied into provenance as they are
_SCALAR_KEYS = (
    "filename",
    "diameter",
    "est_diam",
    "chan_choose",
    "channels",
    "model_path",
    "flow_threshold",
    "cellprob_threshold",
    "restore",
    "ratio",
    "normalize_params",
)


def _seg_metadata(dat: dict[str, Any], masks: np.ndarray, what: str) -> dict[str, Any]:
    meta: dict[str, Any] = {k: jsonable(dat[k]) for k in _SCALAR_KEYS if k in dat}
    meta["keys"] = sorted(str(k) for k in dat)
    if "ismanual" in dat:
        manual = np.asarray(dat["ismanual"])
        if manual.dtype.kind == "b":
            meta["manually_drawn_objects"] = int(manual.sum())
    if "outlines" in dat:
        outlines = np.asarray(dat["outlines"])
        if outlines.shape != masks.shape:
            raise CorruptInputError(
                f"{what}: 'outlines' has shape {outlines.shape} but 'masks' has {masks.shape}; "
                "the file is damaged"
            )
        on = outlines != 0
        # cellpose writes outlines = masks * masks_to_outlines(masks)
        meta["outlines"] = {
            "pixels": int(on.sum()),
            "consistent_with_masks": bool(np.array_equal(outlines[on], masks[on])),
        }
    return meta


def read_cellpose(
    path: str | os.PathLike[str],
    *,
    mask_name: str = "cells",
    mask_id: str | None = None,
    **deprecated: Any,
) -> Segmentation:
    """Read a Cellpose result as a one-mask :class:`~maskbundle.model.Segmentation`.

    Parameters
    ----------
    path : path-like
        ``*_seg.npy`` (the GUI / ``masks_flows_to_seg`` file), ``*_cp_masks.png`` or
        ``*_cp_masks.tif`` (any ``.npy``, ``.png`` or ``.tif`` label file is accepted).
    mask_name : str
        Mask name (Cellpose segments cells or nuclei depending on the model). ``name=``
        is the deprecated spelling.
    mask_id : str, optional
        obo id of the mask's class, e.g. ``CL:0000000``.

    Returns
    -------
    Segmentation
        ``masks[mask_name].labels`` are Cellpose's labels unchanged, (Y, X) or (Z, Y, X).
        ``source["tool_metadata"]`` holds ``filename``, ``diameter``, channels, thresholds
        and an outline summary from a ``_seg.npy``.

    Raises
    ------
    CorruptInputError
        Damaged file, a dict without ``masks``, or a pickle naming anything besides numpy
        arrays and builtin containers (it is refused without running it).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle.synthetic import example_labels
    >>> labels = example_labels()  # three cells in 32 x 32 pixels
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> import tifffile
    >>> from maskbundle import read_cellpose
    >>> tifffile.imwrite(tmp / "img_cp_masks.tif", labels)
    >>> seg = read_cellpose(tmp / "img_cp_masks.tif")
    >>> list(seg.masks), seg.source["tool"], int(seg.masks["cells"].labels.max())
    (['cells'], 'cellpose', 3)
    """
    name = renamed_keywords("read_cellpose", deprecated, {
        "name": ("mask_name", mask_name, "cells")}).get("mask_name", mask_name)
    p = Path(path)
    check_mask_name(name)
    what = str(p)
    meta: dict[str, Any] = {}
    if p.suffix.lower() == ".npy":
        if not p.exists():
            raise CorruptInputError(f"{p}: no such file")
        obj = load_npy_safely(p)
        if isinstance(obj, dict):
            if "masks" not in obj:
                raise CorruptInputError(
                    f"{what}: the _seg.npy dict has no 'masks' entry (keys: "
                    f"{sorted(map(str, obj))}); save it with cellpose.io.masks_flows_to_seg"
                )
            labels = obj["masks"]
            if not isinstance(labels, np.ndarray):
                raise CorruptInputError(f"{what}: 'masks' is a {type(labels).__name__}, not an array")
            fmt = "cellpose _seg.npy"
        elif isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
            labels, fmt, obj = obj, "npy", {}
        else:
            raise CorruptInputError(
                f"{what}: holds a {type(obj).__name__}, not a Cellpose _seg.npy dict or a label array"
            )
        labels = np.squeeze(labels) if labels.ndim > 3 else labels
        if labels.ndim not in (2, 3):
            raise CorruptInputError(
                f"{what}: 'masks' has shape {labels.shape}; expected (Y, X) or (Z, Y, X)"
            )
        if obj:
            meta = _seg_metadata(obj, labels, what)
        size = None
    else:
        lf = read_label_arrays(p)
        if len(lf.arrays) != 1:
            raise CorruptInputError(
                f"{what}: holds {len(lf.arrays)} label arrays; a Cellpose mask file holds one"
            )
        labels, fmt, size = lf.arrays[0], f"cellpose masks {lf.fmt}", lf.physical_size
        meta = dict(lf.metadata)
    labels = check_label_array(name, labels, what=f"{what} ({name})", convert=False)
    meta["ndim"] = labels.ndim
    source = file_source(p, tool="cellpose", fmt=fmt, metadata=meta)
    mask = Mask(labels=labels, mask_id=mask_id, source=source)
    return Segmentation(masks={name: mask}, physical_size=size, source=source)
