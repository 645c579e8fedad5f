"""A bundle's objects as a GeoJSON file that QuPath imports (``File > Import objects``).

Every object becomes one feature whose outline runs along its pixel edges (holes and
separate parts kept), in full-resolution pixel coordinates, so that
:func:`maskbundle.read_qupath` on the file paints exactly the bundle's pixels back.

- Cells with their nuclei: when the bundle has a cell mask and a nucleus mask and every
  nucleus lies (more than half of its pixels) in a cell of its own (the rule of
  :func:`maskbundle.match_masks`), each cell is a QuPath ``cell`` with its nucleus as
  ``nucleusGeometry`` and its measurements as ``Cell: ...`` and ``Nucleus: ...`` (plus
  ``Nucleus: Object ID``). A bundle numbers each mask 1..N on its own, so the pairing is
  found from the pixels, not from equal IDs. read_qupath then gives each nucleus the
  label of its cell: the same pixels, numbered by cell.
- Every other object is a ``detection`` (nuclei too when any of them has no cell).
- ``classification`` is the object's ``Object type`` (an obo id such as ``CL:0000236``),
  with a colour fixed per class; ``measurements`` are the numeric columns of its objects
  table (integer and float columns other than the centroid, which QuPath computes);
  ``name`` is ``<mask>-<Object ID>`` (HuBMAP's name of the object) and the feature ``id``
  a UUID derived from the OME-TIFF name, the mask and the Object ID (the same on every
  export).
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..convert.match import match_labels
from ..errors import OptionError
from ..io.geojson import QuPathType, outline_geometry, qupath_feature, write_geojson
from ..io.staging import refuse_existing
from ..labels.outlines import ObjectOutline, label_outlines
from ..rules import OBJECT_ID, OBJECT_TYPE, POSITION_COLUMNS, TYPE_ROW

if TYPE_CHECKING:
    from ..bundle.read import Bundle

__all__ = ["export_geojson", "geojson_features"]

# Columns every objects table has that are no measurement of the object.
_NOT_MEASURED = {c.casefold() for c in (OBJECT_ID, *POSITION_COLUMNS)}
_NAMESPACE = uuid.UUID("6f0b7f5e-2f43-4a57-9d56-0e4f8d5a1c21")  # fixed: stable feature ids


def _measurement_columns(header: pd.DataFrame) -> list[str]:
    """Integer and float columns of an objects table, in table order."""
    out = []
    for col in header.columns:
        kind = str(header.at[TYPE_ROW, col]).strip().lower()
        if kind in ("integer", "float") and str(col).strip().lower() not in _NOT_MEASURED:
            out.append(str(col))
    return out


def _rows(table: pd.DataFrame, header: pd.DataFrame, prefix: str) -> dict[int, dict[str, float]]:
    """Object ID -> {measurement name: value} (non-finite values left out)."""
    cols = _measurement_columns(header)
    if not cols:
        return {}
    values = table[cols].to_numpy(dtype=np.float64, na_value=math.nan)
    ids = table.index.to_numpy(dtype=np.int64)
    names = [f"{prefix}{c}" for c in cols]
    return {
        int(oid): {n: float(v) for n, v in zip(names, row.tolist(), strict=True) if math.isfinite(v)}
        for oid, row in zip(ids, values, strict=True)
    }


def _types(table: pd.DataFrame) -> dict[int, str]:
    if OBJECT_TYPE not in table.columns:
        return {}
    col = table[OBJECT_TYPE]
    return {
        int(oid): str(v).strip()
        for oid, v in zip(table.index, col, strict=True)
        if isinstance(v, str) and v.strip()
    }


def _level0(bundle: Bundle, mask: str) -> np.ndarray:
    if bundle.is_3d:
        raise OptionError(
            f"{bundle.path}: mask {mask!r} is 3D; QuPath GeoJSON holds 2D objects (export a "
            "2D bundle, or one plane of it written as its own bundle)"
        )
    return np.asarray(bundle.masks[mask])


def _nucleus_of_cell(cells: np.ndarray, nuclei: np.ndarray) -> dict[int, int] | None:
    """Cell Object ID -> nucleus Object ID when every nucleus has a cell of its own, else None."""
    result = match_labels(nuclei, cells)
    if result.unmatched:
        return None
    return {int(c): int(n) for n, c in zip(result.original_ids.tolist(),
                                            result.new_ids.tolist(), strict=True)}


def geojson_features(
    bundle: Bundle,
    *,
    masks: Sequence[str] | None = None,
    cell_mask: str = "cells",
    nucleus_mask: str = "nuclei",
    measurements: bool = True,
) -> Iterator[dict[str, Any]]:
    """The QuPath features of a bundle, mask by mask in channel order, Object ID ascending.

    See the module documentation for what each feature holds. Reads level 0 of each
    selected mask whole (one mask at a time).
    """
    chosen = list(bundle.mask_names) if masks is None else list(masks)
    for m in chosen:
        if m not in bundle.mask_names:
            raise OptionError(
                f"{bundle.path} has no mask {m!r}; choose among {list(bundle.mask_names)}"
            )
    if len(set(chosen)) != len(chosen):
        raise OptionError(f"masks {chosen} name a mask twice")
    tiff_name = Path(bundle.ome_tiff).name

    def uid(mask: str, oid: int) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{tiff_name}/{mask}/{oid}"))

    nuclei: dict[int, ObjectOutline] | None = None
    pairs: dict[int, int] = {}
    if cell_mask in chosen and nucleus_mask in chosen and cell_mask != nucleus_mask:
        nuc_labels = _level0(bundle, nucleus_mask)
        found = _nucleus_of_cell(_level0(bundle, cell_mask), nuc_labels)
        if found is not None:
            pairs = found
            nuclei = label_outlines(nuc_labels)
        del nuc_labels
    for mask in chosen:
        if nuclei is not None and mask == nucleus_mask:
            continue  # drawn inside their cells
        table = bundle.objects[mask]
        types = _types(table)
        is_cell = nuclei is not None and mask == cell_mask
        kind: QuPathType = "cell" if is_cell else "detection"
        values: dict[int, dict[str, float]] = {}
        nuc_values: dict[int, dict[str, float]] = {}
        if measurements:
            values = _rows(table, bundle.headers[mask], "Cell: " if is_cell else "")
            if is_cell:
                nuc_values = _rows(
                    bundle.objects[nucleus_mask], bundle.headers[nucleus_mask], "Nucleus: "
                )
        for oid, parts in label_outlines(_level0(bundle, mask)).items():
            nid = pairs.get(oid) if is_cell else None
            nucleus = nuclei.get(nid) if nuclei is not None and nid is not None else None
            extra = {} if nid is None else {**nuc_values.get(nid, {}), "Nucleus: Object ID": nid}
            yield qupath_feature(
                outline_geometry(parts),
                object_type=kind,
                uid=uid(mask, oid),
                name=f"{mask}-{oid}",
                classification=types.get(oid),
                measurements={**values.get(oid, {}), **extra} if measurements else None,
                nucleus_geometry=None if nucleus is None else outline_geometry(nucleus),
            )


def export_geojson(
    bundle: str | Path | Bundle,
    path: str | Path,
    *,
    masks: Sequence[str] | None = None,
    cell_mask: str = "cells",
    nucleus_mask: str = "nuclei",
    measurements: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a bundle's objects as a QuPath GeoJSON ``FeatureCollection``.

    Parameters
    ----------
    bundle : path or Bundle
        The dataset directory (or a :class:`~maskbundle.Bundle` already open).
    path : path
        The ``.geojson`` file to write (staged beside it, moved into place when complete).
    masks : sequence of str, optional
        Masks to export (default: all, which must be 2D).
    cell_mask, nucleus_mask : str
        The masks exported together as QuPath cells with nuclei when they match.
    measurements : bool
        Copy the numeric columns of the objects tables as QuPath measurements.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The file written. ``read_qupath(path, shape=..., mask_names=(cells, nuclei))``
        gives back the same pixels (a single detection mask with ``detection_mask=``).
    """
    from ..bundle.read import read_bundle

    if isinstance(bundle, str | os.PathLike):  # a path, or a BundleResult standing for one
        with read_bundle(bundle, validate=False) as opened:
            return _write(opened, path, masks, cell_mask, nucleus_mask, measurements, overwrite)
    return _write(bundle, path, masks, cell_mask, nucleus_mask, measurements, overwrite)


def _write(
    bundle: Bundle,
    path: str | Path,
    masks: Sequence[str] | None,
    cell_mask: str,
    nucleus_mask: str,
    measurements: bool,
    overwrite: bool,
) -> Path:
    refuse_existing(Path(path), overwrite)  # before the (long) tracing
    features = geojson_features(
        bundle, masks=masks, cell_mask=cell_mask, nucleus_mask=nucleus_mask,
        measurements=measurements,
    )
    # the first feature is built before anything is created, so bad options leave no file
    first = next(features, None)
    return write_geojson(path, _chain(first, features), overwrite=overwrite)


def _chain(first: Mapping[str, Any] | None, rest: Iterator[dict[str, Any]]) -> Iterator[Mapping[str, Any]]:
    if first is not None:
        yield first
        yield from rest
