"""Mesmer / DeepCell outputs: whole-cell and nuclear labels in one array.

``deepcell.applications.Mesmer.predict(..., compartment="both")`` returns labels of shape
(batch, Y, X, 2): channel 0 whole-cell, channel 1 nuclear; ``compartment="whole-cell"``
or ``"nuclear"`` gives (batch, Y, X, 1). Users save one image of it as TIFF or NPY,
often without the batch axis. Mesmer numbers cells and nuclei independently, so the
nuclei are renumbered with the id of the cell containing most of each
(:func:`~maskbundle.convert.match.match_labels`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError
from ..io.limits import check_tiff_level0, check_tiff_structure
from ..labels.checks import check_label_array
from ..model import Mask, Segmentation
from ..names import check_mask_names
from ._common import file_source, renamed_keywords
from ._safe_npy import load_npy_safely, load_npz_safely
from .match import match_labels, rematch_mask

__all__ = ["read_mesmer", "split_mesmer_array"]


def split_mesmer_array(array: np.ndarray, what: str = "Mesmer labels") -> list[np.ndarray]:
    """Split a Mesmer label array into its (Y, X) channels.

    Parameters
    ----------
    array : ndarray of shape (1, Y, X, C), (Y, X, C) with C in {1, 2}, or (Y, X)
        Channels last, as Mesmer returns them.

    Returns
    -------
    list of ndarray of shape (Y, X)
        ``[whole_cell, nuclear]`` for C = 2, ``[labels]`` for C = 1 or 2D input.
    """
    a = np.asarray(array)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise CorruptInputError(
                f"{what}: batch of {a.shape[0]} images (shape {a.shape}); save one image "
                "(labels[i]) per file"
            )
        a = a[0]
    if a.ndim == 2:
        return [a]
    if a.ndim != 3 or a.shape[2] not in (1, 2):
        raise CorruptInputError(
            f"{what}: shape {a.shape} is not a Mesmer output; expected (1, Y, X, 2), "
            "(Y, X, 2), (Y, X, 1) or (Y, X) with channel 0 whole-cell and 1 nuclear"
        )
    return [np.ascontiguousarray(a[..., k]) for k in range(a.shape[2])]


def _load(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        obj = load_npy_safely(path)
        if not isinstance(obj, np.ndarray) or obj.dtype.hasobject:
            raise CorruptInputError(f"{path}: holds a {type(obj).__name__}, not a label array")
        return obj
    if suffix == ".npz":
        arrays = load_npz_safely(path)
        if len(arrays) != 1:
            raise CorruptInputError(
                f"{path}: holds arrays {list(arrays)}; save Mesmer's label array alone"
            )
        return next(iter(arrays.values()))
    if suffix in (".tif", ".tiff"):
        import tifffile

        check_tiff_structure(path, str(path))
        try:
            with tifffile.TiffFile(path) as tf:
                check_tiff_level0(tf.series[0], path, str(path))
                return np.asarray(tf.series[0].asarray())
        except CorruptInputError:
            raise
        except Exception as exc:
            raise CorruptInputError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    raise CorruptInputError(f"{path}: Mesmer labels must be .tif, .npy or .npz, got {suffix!r}")


def read_mesmer(
    path: str | os.PathLike[str],
    *,
    mask_names: tuple[str, str] = ("cells", "nuclei"),
    match: bool = True,
    min_fraction: float = 0.5,
    **deprecated: Any,
) -> Segmentation:
    """Read Mesmer labels as ``cells`` (+ ``nuclei``) masks with matched ids.

    Parameters
    ----------
    path : path-like
        ``.tif``, ``.npy`` or ``.npz`` holding (1, Y, X, 2), (Y, X, 2), (Y, X, 1) or (Y, X).
    mask_names : (str, str)
        Names of the whole-cell and nuclear masks (``names=`` is the deprecated
        spelling).
    match : bool
        Renumber nuclei with the id of the cell containing most of each; unmatched nuclei
        get ids after the largest cell id (counted in ``source["tool_metadata"]``).
    min_fraction : float
        Fraction of a nucleus its cell must cover (more than) to match.

    Returns
    -------
    Segmentation

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle.synthetic import example_labels
    >>> labels = example_labels()  # three cells in 32 x 32 pixels
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> from maskbundle import read_mesmer
    >>> nuclei = np.zeros_like(labels)
    >>> nuclei[4:8, 4:8], nuclei[24:28, 8:12] = 1, 2  # inside cells 1 and 3
    >>> np.save(tmp / "mesmer.npy", np.stack([labels, nuclei], axis=-1)[np.newaxis])
    >>> seg = read_mesmer(tmp / "mesmer.npy")
    >>> list(seg.masks), np.unique(seg.masks["nuclei"].labels).tolist()
    (['cells', 'nuclei'], [0, 1, 3])
    """
    names = renamed_keywords("read_mesmer", deprecated, {
        "names": ("mask_names", mask_names, ("cells", "nuclei"))}).get("mask_names", mask_names)
    p = Path(path)
    check_mask_names(names)
    if not p.exists():
        raise CorruptInputError(f"{p}: no such file")
    raw = _load(p)
    channels = split_mesmer_array(raw, str(p))
    channels = [check_label_array(n, c, what=f"{p} ({n})", convert=False)
                for c, n in zip(channels, names, strict=False)]
    meta: dict[str, Any] = {"input_shape": list(raw.shape), "input_dtype": str(raw.dtype),
                            "channels": {"0": "whole-cell", "1": "nuclear"}}
    masks: dict[str, Mask] = {names[0]: Mask(labels=channels[0])}
    if len(channels) == 2:
        nuclei = Mask(labels=channels[1])
        if match:
            result = match_labels(channels[1], channels[0], min_fraction=min_fraction)
            nuclei = rematch_mask(nuclei, result, names[0], "matched")
            meta["nucleus_matching"] = {"min_fraction": min_fraction, **result.stats()}
        masks[names[1]] = nuclei
    source = file_source(p, tool="mesmer", fmt=f"mesmer {p.suffix.lower().lstrip('.')}",
                         metadata=meta)
    for m in masks.values():
        m.source = {**source, **{k: v for k, v in m.source.items() if k == "matched"}}
    return Segmentation(masks=masks, source=source)
