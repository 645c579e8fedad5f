"""StarDist outputs: label TIFFs, the ``details`` of ``predict_instances``, ImageJ ROI zips.

- Labels: ``StarDist2D.predict_instances`` returns ``int32`` labels (``polygons_to_label``
  allocates ``np.zeros(shape, np.int32)``); they are accepted when no value is negative.
- Details: ``predict_instances`` also returns ``details = dict(coord=..., points=...,
  prob=...)`` with ``coord`` of shape (N, 2, n_rays) as (row, column) = (y, x) vertices,
  ``points`` (N, 2) and ``prob`` (N,); users save it with ``np.savez``. StarDist paints
  label ``i + 1`` for row ``i``, in ascending ``prob`` (stable) so the more probable
  polygon wins where two overlap (``stardist.geometry.geom2d.polygons_to_label``), with
  ``skimage.draw.polygon``'s pixel rule. This module reproduces exactly that.
- ImageJ ROI zips (``export_imagej_rois``, or Fiji's ROI manager): polygons in ImageJ's
  convention (pixel ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)``, so its centre is at
  ``(r + 0.5, c + 0.5)``), read with ``roifile``; label ``k`` is the k-th ROI.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError
from ..io.limits import check_zip_member
from ..labels.checks import check_label_array
from ..model import ColumnSpec, Mask, Segmentation
from ..names import check_mask_name
from ._common import ascii_safe, file_source, image_shape, renamed_keywords
from ._raster import PolygonSet, paint_polygons
from ._safe_npy import load_npz_safely
from .generic import read_label_arrays

__all__ = ["details_to_labels", "read_stardist", "rois_to_labels"]


def details_to_labels(
    coord: np.ndarray, prob: np.ndarray | None, shape: tuple[int, int]
) -> tuple[np.ndarray, int]:
    """Paint StarDist polygons as ``polygons_to_label`` does.

    Parameters
    ----------
    coord : ndarray of shape (N, 2, n_rays)
        Polygon vertices, ``coord[i, 0]`` rows (y) and ``coord[i, 1]`` columns (x).
    prob : ndarray of shape (N,), optional
        Object probabilities; painting is in ascending ``prob`` (stable), so where
        polygons overlap the more probable one keeps the pixels. ``None`` paints in row order.
    shape : (Y, X)
        Image shape; polygon parts outside it are clipped.

    Returns
    -------
    labels : ndarray of shape ``shape``, uint32
        Label ``i + 1`` for polygon ``i`` (rows of ``coord``); 0 background.
    overwritten : int
        Pixels claimed by two polygons (given to the more probable one).
    """
    coord = np.asarray(coord)
    if coord.ndim != 3 or coord.shape[1] != 2:
        raise CorruptInputError(
            f"StarDist 'coord' has shape {coord.shape}; expected (N, 2, n_rays) (2D polygons)"
        )
    n = coord.shape[0]
    if prob is None:
        order = np.arange(n)
    else:
        p = np.asarray(prob, dtype=np.float64).reshape(-1)
        if p.shape[0] != n:
            raise CorruptInputError(
                f"StarDist 'prob' has {p.shape[0]} values for {n} polygons in 'coord'"
            )
        order = np.argsort(p, kind="stable")
    xy = np.transpose(coord[order], (0, 2, 1))  # (N, n_rays, 2) as (row, col)
    polys = PolygonSet.from_rings(xy, order + 1)
    labels, overwritten = paint_polygons(polys, shape)
    return labels, overwritten


def rois_to_labels(rois: list[Any], shape: tuple[int, ...]) -> tuple[np.ndarray, int, list[str]]:
    """Paint ImageJ ROIs (``roifile.ImagejRoi``) in file order; label k is the k-th ROI.

    Returns the labels (``shape``, uint32), the number of overwritten pixels and the ROI
    names. ROIs with a Z / stack position go to that plane when ``shape`` is (Z, Y, X).
    """
    polys = PolygonSet()
    names: list[str] = []
    for k, roi in enumerate(rois, start=1):
        try:
            parts = roi.coordinates(multi=True)
        except Exception as exc:
            raise CorruptInputError(f"ImageJ ROI {k} ({roi.name!r}) has no usable outline ({exc})") from exc
        rings = [np.asarray(part, dtype=np.float64)[:, ::-1] - 0.5 for part in parts if len(part)]
        plane = 0
        if len(shape) == 3:
            pos = int(getattr(roi, "z_position", 0) or 0) or int(getattr(roi, "position", 0) or 0)
            plane = max(pos - 1, 0)
        # composite ROIs list their shapes one after another: each a separate part
        for ring in rings:
            polys.add([ring], k, plane)
        names.append(str(roi.name or ""))
    labels, overwritten = paint_polygons(polys, shape)
    return labels, overwritten, names


def _read_details(path: Path, dims: tuple[int, ...]) -> tuple[np.ndarray, dict[str, Any]]:
    data = load_npz_safely(path)
    if "coord" not in data:
        raise CorruptInputError(
            f"{path}: no 'coord' array (found {sorted(data)}); save StarDist's details with "
            "np.savez(path, **details)"
        )
    if len(dims) != 2:
        raise CorruptInputError(f"{path}: StarDist 2D polygons need a 2D shape (Y, X), got {dims}")
    coord = data["coord"]
    prob = data.get("prob")
    if prob is not None and prob.size == 0 and coord.shape[0] == 0:
        prob = None
    if coord.size == 0:
        coord = coord.reshape(0, 2, max(coord.shape[-1] if coord.ndim == 3 else 0, 3))
    labels, overwritten = details_to_labels(coord, prob, (dims[0], dims[1]))
    meta: dict[str, Any] = {
        "objects": int(coord.shape[0]),
        "n_rays": int(coord.shape[2]),
        "keys": sorted(data),
        "overlap_pixels_resolved_by_probability": overwritten,
        "label_rule": "label i+1 = row i of coord; painted in ascending prob (stable)",
    }
    if prob is not None and prob.size:
        meta["prob_min"] = float(np.min(prob))
        meta["prob_max"] = float(np.max(prob))
    points = data.get("points")
    if points is not None and points.shape[:1] != coord.shape[:1]:
        raise CorruptInputError(
            f"{path}: 'points' has {points.shape[0]} rows but 'coord' has {coord.shape[0]}"
        )
    return labels, meta


def _check_roi_zip(path: Path) -> None:
    """Refuse a zip whose members would inflate beyond any ROI set (a zip bomb)."""
    if not zipfile.is_zipfile(path):
        return  # a single .roi file, or not a zip: roifile says what it is
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                check_zip_member(info, f"{path}[{info.filename}]", limit=1 << 28, max_ratio=None)
    except CorruptInputError:
        raise
    except Exception as exc:  # BadZipFile, NotImplementedError ...
        raise CorruptInputError(f"{path}: not a readable ROI zip ({exc})") from exc


def read_stardist(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, ...] | None = None,
    mask_name: str = "nuclei",
    mask_id: str | None = None,
    parent_image: str | os.PathLike[str] | None = None,
    **deprecated: Any,
) -> Segmentation:
    """Read a StarDist result as a one-mask :class:`~maskbundle.model.Segmentation`.

    Parameters
    ----------
    path : path-like
        A label TIFF (``int32`` accepted when non-negative), a ``.npz`` of the ``details``
        returned by ``predict_instances`` (``coord``, ``points``, ``prob``), or an ImageJ
        ROI ``.zip`` / ``.roi``.
    shape : (Y, X) or (Z, Y, X), optional
        Full-resolution image shape; required for polygons (``.npz``, ROIs) unless
        ``parent_image`` is given.
    mask_name : str
        Mask name (StarDist's published models segment nuclei). ``name=`` is the
        deprecated spelling.
    mask_id : str, optional
        obo id of the mask's class.
    parent_image : path, optional
        Parent OME-TIFF giving the shape (when ``shape`` is None) and the pixel size.

    Returns
    -------
    Segmentation
        For polygons, label ``i + 1`` is polygon ``i`` (row ``i`` of ``coord``, or the i-th
        ROI); ROI names become a ``ROI name`` text column.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle.synthetic import example_labels
    >>> labels = example_labels()  # three cells in 32 x 32 pixels
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> import tifffile
    >>> from maskbundle import read_stardist
    >>> tifffile.imwrite(tmp / "nuclei.tif", labels.astype(np.int32))
    >>> seg = read_stardist(tmp / "nuclei.tif")
    >>> list(seg.masks), seg.masks["nuclei"].labels.dtype
    (['nuclei'], dtype('int32'))
    """
    name = renamed_keywords("read_stardist", deprecated, {
        "name": ("mask_name", mask_name, "nuclei")}).get("mask_name", mask_name)
    p = Path(path)
    check_mask_name(name)
    if not p.exists():
        raise CorruptInputError(f"{p}: no such file")
    suffix = p.suffix.lower()
    size = None
    features = None
    specs: dict[str, ColumnSpec] = {}
    parent_size = None
    if suffix in (".npz", ".zip", ".roi"):
        dims, parent_size = image_shape(shape, parent_image, what=str(p))
        size = parent_size
    if suffix == ".npz":
        labels, meta = _read_details(p, dims)
        fmt = "stardist details npz"
    elif suffix in (".zip", ".roi"):
        import roifile

        _check_roi_zip(p)
        try:
            rois = roifile.roiread(p)
        except Exception as exc:  # zipfile and roifile raise many types on damaged files
            raise CorruptInputError(
                f"{p}: not a readable ImageJ ROI file ({type(exc).__name__}: {exc})"[:400]
            ) from exc
        rois = rois if isinstance(rois, list) else [rois]
        labels, overwritten, roi_names = rois_to_labels(rois, dims)
        meta = {"objects": len(rois), "overlap_pixels_later_roi_wins": overwritten}
        fmt = "imagej roi"
        if any(roi_names):
            import pandas as pd

            features = pd.DataFrame(
                {"ROI name": [ascii_safe(n) for n in roi_names]},
                index=pd.Index(np.arange(1, len(roi_names) + 1), name="label"),
            )
            specs = {"ROI name": ColumnSpec("ROI name", "text", "mask", "Name of the ImageJ ROI")}
    else:
        lf = read_label_arrays(p)
        if len(lf.arrays) != 1:
            raise CorruptInputError(f"{p}: holds {len(lf.arrays)} label arrays; expected one")
        labels, size, meta = lf.arrays[0], lf.physical_size, dict(lf.metadata)
        fmt = f"stardist labels {lf.fmt}"
        meta["input_dtype"] = str(labels.dtype)
    labels = check_label_array(name, labels, what=f"{p} ({name})", convert=False)
    source = file_source(p, tool="stardist", fmt=fmt, metadata=meta)
    mask = Mask(labels=labels, mask_id=mask_id, source=source, features=features,
                feature_specs=specs)
    return Segmentation(masks={name: mask}, physical_size=size, source=source)
