"""QuPath GeoJSON exports (``Export objects as GeoJSON``) to label masks.

What QuPath writes (0.2 to 0.5): a ``FeatureCollection`` (or a bare list of features);
each feature has a ``geometry`` (Polygon / MultiPolygon / GeometryCollection, ``[x, y]``
coordinates in full-resolution pixels, origin at the top-left corner of the image), and
``properties`` with ``objectType`` (``cell``, ``detection``, ``annotation``, ``tile``;
0.2 used ``"id": "PathCellObject"`` instead), ``classification`` (``{"name": ...}``) and
``measurements`` (a dict, or in 0.2 a list of ``{"name", "value"}``). Cells carry their
nucleus beside the cell outline as ``nucleusGeometry``. Measurement names repeat
sometimes (duplicate JSON keys); the last value is kept and the repeats are counted.

Rasterising: a pixel belongs to an object when its centre lies inside or on the outline
(QuPath's and ImageJ's pixel-centre rule; centre of pixel (r, c) is (x, y) = (c + 0.5,
r + 0.5)); holes are removed; parts of a multi-polygon are united; what lies outside the
image is clipped; objects are painted in file order, a later one winning where they
overlap (the number of such pixels is recorded).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CorruptInputError, EmptyResultError, OptionError
from ..model import ColumnSpec, Mask, PhysicalSize, Segmentation
from ..names import check_mask_name, check_mask_names
from ..rules import REQUIRED_COLUMNS, check_obo_id
from ._common import ascii_safe, file_source, image_shape, renamed_keywords
from ._raster import PolygonSet, paint_polygons

__all__ = ["measurement_spec", "read_qupath"]

_CELL_TYPES = {"cell", "pathcellobject"}
_DETECTION_TYPES = {"detection", "pathdetectionobject"}
_ANNOTATION_TYPES = {"annotation", "pathannotationobject"}
_SKIPPED_TYPES = {"tile", "pathtileobject", "tma_core", "tmacore", "pathrootobject", "root"}

# Columns of the objects table that a measurement must not shadow.
RESERVED_COLUMNS = frozenset(c.casefold() for c in REQUIRED_COLUMNS)
_MORPHOLOGY = re.compile(
    r"area|perimeter|circularity|solidity|caliper|diameter|eccentricity|elongation|"
    r"compactness|roundness|length|width|ratio|convexity|max.?min", re.IGNORECASE
)
_SPATIAL = re.compile(r"centroid|distance|\bx\b|\by\b|position", re.IGNORECASE)
_NEIGHBOURHOOD = re.compile(r"neighbo|delaunay|cluster|density", re.IGNORECASE)
_INTENSITY = re.compile(r"mean|median|std|min|max|sum|intensity|\bod\b|variance", re.IGNORECASE)
_STAINS = re.compile(r"dapi|hoechst|hematoxylin|haematoxylin|eosin|residual|autofluor", re.IGNORECASE)
_COUNT = re.compile(r"^num |count|number of", re.IGNORECASE)
_AREA_UM = re.compile(r"(µm|μm|um|micron)\s*(\^2|²|2\b)", re.IGNORECASE)
_LENGTH_UM = re.compile(r"(µm|μm|\bum\b|micron)", re.IGNORECASE)
_PIXELS = re.compile(r"\bpx\b|pixel", re.IGNORECASE)


def measurement_spec(name: str, column: str) -> ColumnSpec:
    """Header cells for a QuPath measurement (float), from keywords of its name.

    Feature class: morphology (area, perimeter, circularity, caliper ...), neighborhood
    (Delaunay / neighbour counts), spatial (centroids, distances), antibody (intensity
    statistics of a marker channel), mask (intensities of counterstains such as DAPI or
    hematoxylin, and anything else). Unit: ``square micrometer`` for areas in µm²,
    ``pixel`` for pixel measures, ``intensity`` for intensity statistics, ``count`` for
    counts; lengths in µm get a blank unit and say so in the description.
    """
    desc = f"QuPath measurement '{ascii_safe(name)}'"
    unit: Any = ""
    if _AREA_UM.search(name):
        unit = "square micrometer"
    elif _PIXELS.search(name):
        unit = "pixel"
    elif _COUNT.search(name):
        unit = "count"
    elif _LENGTH_UM.search(name):
        desc += " (a length in micrometres)"
    fclass: Any
    if _NEIGHBOURHOOD.search(name):
        fclass = "neighborhood"
    elif _MORPHOLOGY.search(name):
        fclass = "morphology"
    elif _SPATIAL.search(name):
        fclass = "spatial"
    elif _INTENSITY.search(name):
        fclass = "mask" if _STAINS.search(name) else "antibody"
        if unit == "":
            unit = "intensity"
    else:
        fclass = "mask"
    if fclass == "antibody":
        # HuBMAP's conversion looks antibody columns up case-folded (docs/hubmap-ingest.md):
        # the name is written case-folded, QuPath's spelling kept in Description and Alt. ID
        return ColumnSpec(column.casefold(), "float", fclass, desc, unit=unit,
                          alternative_id=ascii_safe(name))
    return ColumnSpec(column, "float", fclass, desc, unit=unit)


class _DupCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                self.count += 1
            out[k] = v
        return out


@dataclass
class _Obj:
    feature: int
    geometry: Any
    nucleus: Any
    kind: str
    classification: str | None
    uid: str | None
    measurements: dict[str, float] = field(default_factory=dict)


def _classification(props: Mapping[str, Any]) -> str | None:
    c = props.get("classification")
    if c is None:
        return None
    if isinstance(c, str):
        return c or None
    if isinstance(c, Mapping):
        if c.get("name"):
            return str(c["name"])
        names = c.get("names")
        if isinstance(names, list) and names:
            return ": ".join(str(n) for n in names)
    return None


def _measurements(props: Mapping[str, Any]) -> dict[str, float]:
    m = props.get("measurements")
    out: dict[str, float] = {}
    if isinstance(m, Mapping):
        items = list(m.items())
    elif isinstance(m, list):  # QuPath 0.2: [{"name": ..., "value": ...}]
        items = [(d.get("name"), d.get("value")) for d in m if isinstance(d, Mapping)]
    else:
        return out
    for k, v in items:
        if k is None:
            continue
        try:
            x = float(v) if v is not None else math.nan
            out[str(k)] = x if math.isfinite(x) else math.nan
        except (TypeError, ValueError, OverflowError):
            continue  # text measurements are not numbers; skip them
    return out


def _kind(feature: Mapping[str, Any], props: Mapping[str, Any]) -> str:
    t = props.get("objectType") or feature.get("objectType")
    if t is None and isinstance(feature.get("id"), str) and feature["id"].startswith("Path"):
        t = feature["id"]
    if t is None:
        return "cell" if feature.get("nucleusGeometry") is not None else "detection"
    t = str(t).lower()
    if t in _CELL_TYPES:
        return "cell"
    if t in _DETECTION_TYPES:
        return "detection"
    if t in _ANNOTATION_TYPES:
        return "annotation"
    if t in _SKIPPED_TYPES:
        return "skip"
    return "detection"


_MAX_COLLECTION_DEPTH = 32  # GeometryCollections inside GeometryCollections


def _list(value: Any, what: str, part: str) -> list[Any]:
    """``value`` when it is a JSON array (or null: empty); a named error otherwise."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise CorruptInputError(
            f"{what}: {part} is a {type(value).__name__}, not a list; GeoJSON coordinates "
            "are nested lists of [x, y] pairs"
        )
    return value


def _rings(geometry: Any, what: str, depth: int = 0) -> list[list[np.ndarray]]:
    """Polygon parts of a GeoJSON geometry as lists of (row, col) rings (pixel-centre shift)."""
    if geometry is None:
        return []
    if not isinstance(geometry, Mapping):
        raise CorruptInputError(f"{what}: geometry is not a GeoJSON object")
    gtype = geometry.get("type")
    if gtype == "GeometryCollection":
        if depth >= _MAX_COLLECTION_DEPTH:
            raise CorruptInputError(
                f"{what}: GeometryCollections nested more than {_MAX_COLLECTION_DEPTH} deep"
            )
        parts: list[list[np.ndarray]] = []
        for g in _list(geometry.get("geometries"), what, "'geometries'"):
            parts.extend(_rings(g, what, depth + 1))
        return parts
    coords = geometry.get("coordinates")
    polygons: list[Any]
    if gtype == "Polygon":
        polygons = [_list(coords, what, "'coordinates'")]
    elif gtype == "MultiPolygon":
        polygons = _list(coords, what, "'coordinates'")
    else:
        return []  # points and lines have no area
    out: list[list[np.ndarray]] = []
    for poly in polygons:
        rings = []
        for ring in _list(poly, what, "a polygon"):
            try:
                a = np.asarray(ring, dtype=np.float64)
            except (TypeError, ValueError, OverflowError) as exc:
                raise CorruptInputError(f"{what}: polygon coordinates are not numbers") from exc
            if a.ndim != 2 or a.shape[1] < 2:
                raise CorruptInputError(f"{what}: a polygon ring is not a list of [x, y] pairs")
            rings.append(np.column_stack([a[:, 1] - 0.5, a[:, 0] - 0.5]))
        if rings and len(rings[0]) >= 3:
            out.append(rings)
    return out


def _load(path: Path) -> tuple[list[Any], int]:
    dups = _DupCounter()
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh, object_pairs_hook=dups)
    except RecursionError as exc:
        raise CorruptInputError(
            f"{path}: JSON nested too deeply to be GeoJSON (a polygon nests 4 levels)"
        ) from exc
    except UnicodeDecodeError as exc:
        raise CorruptInputError(f"{path}: not UTF-8 text; save GeoJSON as UTF-8 ({exc})") from exc
    except ValueError as exc:  # JSONDecodeError; a number of over 4300 digits
        raise CorruptInputError(f"{path}: not valid GeoJSON ({str(exc)[:200]})") from exc
    except OSError as exc:
        raise CorruptInputError(f"{path}: cannot be read ({exc})") from exc
    if isinstance(doc, Mapping) and doc.get("type") == "FeatureCollection":
        features = doc.get("features") or []
    elif isinstance(doc, Mapping) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, list):
        features = doc
    else:
        raise CorruptInputError(
            f"{path}: expected a GeoJSON FeatureCollection or a list of features (QuPath's "
            "'Export objects as GeoJSON')"
        )
    if not isinstance(features, list):
        raise CorruptInputError(f"{path}: 'features' is not a list")
    return features, dups.count


def _columns(names: list[str]) -> dict[str, str]:
    """Measurement name -> ASCII, spreadsheet-safe, unique column name."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        col = ascii_safe(name) or "measurement"
        if col.casefold() in RESERVED_COLUMNS:
            col = f"QuPath {col}"
        base, k = col, 2
        while col.casefold() in used:
            col = f"{base} ({k})"
            k += 1
        used.add(col.casefold())
        out[name] = col
    return out


def _features_frame(
    objs: list[_Obj], labels: list[int], keep: np.ndarray, only_prefix: str | None
) -> tuple[pd.DataFrame, dict[str, ColumnSpec]]:
    """Extra columns of one mask: QuPath id, classification and measurements, by label."""
    rows = [(lab, o) for lab, o in zip(labels, objs, strict=True) if keep[lab]]
    index = pd.Index(np.array([lab for lab, _ in rows], dtype=np.int64), name="label")
    data: dict[str, Any] = {}
    specs: dict[str, ColumnSpec] = {}
    if any(o.uid for _, o in rows):
        data["QuPath object ID"] = [ascii_safe(o.uid or "") for _, o in rows]
        specs["QuPath object ID"] = ColumnSpec(
            "QuPath object ID", "text", "mask", "The object's id in the QuPath project"
        )
    if any(o.classification for _, o in rows):
        data["QuPath classification"] = [ascii_safe(o.classification or "") for _, o in rows]
        specs["QuPath classification"] = ColumnSpec(
            "QuPath classification", "text", "ontology", "The object's QuPath class name"
        )
    names: list[str] = []
    seen: set[str] = set()
    for _, o in rows:
        for k in o.measurements:
            if k not in seen and (only_prefix is None or k.lower().startswith(only_prefix)):
                seen.add(k)
                names.append(k)
    cols = _columns(names)
    for name in names:
        spec = measurement_spec(name, cols[name])  # its name may be case-folded
        data[spec.name] = np.array(
            [o.measurements.get(name, math.nan) for _, o in rows], dtype=np.float64)
        specs[spec.name] = spec
    return pd.DataFrame(data, index=index), specs


def read_qupath(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int, ...] | None,
    class_types: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    mask_names: tuple[str, str] = ("cells", "nuclei"),
    detection_mask: str = "cells",
    measurements: bool = True,
    physical_size: PhysicalSize | tuple[float, ...] | float | None = None,
    parent_image: str | os.PathLike[str] | None = None,
    clip: bool = False,
    allow_empty: bool = False,
    **deprecated: Any,
) -> Segmentation:
    """Read a QuPath GeoJSON export as label masks.

    Parameters
    ----------
    path : path-like
        GeoJSON file (FeatureCollection or list of features).
    shape : (Y, X)
        Full-resolution shape of the image the objects were drawn on. May be ``None``
        when ``parent_image`` is given.
    class_types : mapping of classification name to obo id, optional
        ``{"Tumor": "CL:0001064", "Immune cells": "CL:0000738"}``: the ``Object type``
        of each classified object. Every class of a cell or detection must be mapped
        (unclassified objects stay blank); the id of an annotation class, when given,
        becomes the Object type of those annotations and the Mask ID of their mask.
    annotations : mapping of classification name to mask name, optional
        Annotations of these classes become tissue-unit masks, e.g.
        ``{"Glomerulus": "glomeruli"}``. Other annotations are skipped (and counted).
    mask_names : (str, str)
        Masks of cell objects (``geometry``) and their nuclei (``nucleusGeometry``); a
        nucleus has the label of its cell.
    detection_mask : str
        Mask of detection objects (no nucleus); by default they join the cells.
    measurements : bool
        Add QuPath's measurements as float columns (nuclei get the ``Nucleus: ...`` ones).
    physical_size : optional
        Micrometres per pixel, recorded on the result.
    parent_image : path, optional
        Parent OME-TIFF: gives the shape (when ``shape`` is None) and the pixel size.
    clip : bool
        Cut objects that reach beyond ``shape`` at the image edge (those left without a
        pixel are dropped). By default such objects raise :class:`EmptyResultError`: a
        shape smaller than the objects is usually a wrong ``shape``.
    allow_empty : bool
        Accept a file with no cell, detection or selected annotation (an empty mask);
        by default it raises :class:`EmptyResultError`.

    Returns
    -------
    Segmentation
        Objects are numbered 1..N per mask in file order. Features hold ``QuPath object
        ID`` and ``QuPath classification`` (text) and the measurements (float), indexed
        by label; objects that cover no pixel of the image are left out and counted.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> from maskbundle import read_qupath
    >>> def square(x0, y0, x1, y1):
    ...     return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1],
    ...                                                 [x0, y0]]]}
    >>> cell = {"type": "Feature", "geometry": square(2, 2, 12, 12),
    ...         "nucleusGeometry": square(5, 5, 9, 9),
    ...         "properties": {"objectType": "cell", "classification": {"name": "Tumor"}}}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cells.geojson"
    >>> _ = path.write_text(json.dumps({"type": "FeatureCollection", "features": [cell]}))
    >>> seg = read_qupath(path, shape=(16, 16), class_types={"Tumor": "CL:0001064"})
    >>> list(seg.masks), seg.masks["cells"].object_types
    (['cells', 'nuclei'], {1: 'CL:0001064'})
    >>> int((seg.masks["cells"].labels == 1).sum()), int((seg.masks["nuclei"].labels == 1).sum())
    (100, 16)
    """
    renamed = renamed_keywords("read_qupath", deprecated, {
        "object_types": ("class_types", class_types, None),
        "cell_mask": ("mask_names[0]", mask_names, ("cells", "nuclei")),
        "nucleus_mask": ("mask_names[1]", mask_names, ("cells", "nuclei")),
    })
    class_types = renamed.get("class_types", class_types)
    cell_mask = renamed.get("mask_names[0]", mask_names[0])
    nucleus_mask = renamed.get("mask_names[1]", mask_names[1])
    p = Path(path)
    dims, parent_size = image_shape(shape, parent_image, what=str(p))
    if len(dims) != 2:
        raise OptionError(f"{p}: QuPath objects are 2D; shape must be (Y, X), got {dims}")
    check_mask_names({cell_mask, nucleus_mask, detection_mask} | set((annotations or {}).values()))
    if cell_mask == nucleus_mask or detection_mask == nucleus_mask:
        raise OptionError("the nucleus mask needs its own name (e.g. 'nuclei')")
    types = dict(class_types or {})
    for cls, obo in types.items():
        check_obo_id(obo, what=f"class_types[{cls!r}]")
    ann_masks = dict(annotations or {})
    for ann_name in ann_masks.values():
        check_mask_name(ann_name)
    features, duplicates = _load(p)

    per_mask, nuclei_of, counts = _sort_objects(features, p, measurements=measurements,
                                                annotation_masks=ann_masks, cell_mask=cell_mask,
                                                detection_mask=detection_mask)
    if types:
        _check_classes(per_mask, types, set(ann_masks.values()), p)
    if not per_mask or not any(per_mask.values()):
        if not allow_empty:
            raise EmptyResultError(
                f"{p}: no cell, detection or selected annotation among {len(features)} "
                f"feature(s) ({counts['skipped_annotations']} unselected annotation(s)); "
                "select annotations with annotations={'Class': 'mask'} or pass "
                "allow_empty=True for an empty mask",
                cli=f"{p}: no cell, detection or selected annotation among {len(features)} "
                f"feature(s) ({counts['skipped_annotations']} unselected annotation(s)); "
                "select them with --annotation CLASS=MASK or add --allow-empty",
            )
        per_mask.setdefault(cell_mask, [])
    outside = _objects_outside(per_mask, dims, p)
    counts["objects_beyond_shape"] = outside
    if outside and not clip:
        raise EmptyResultError(
            f"{p}: {outside} object(s) reach beyond the image shape {tuple(dims)} (Y, X); "
            "check shape (or parent_image), or pass clip=True to cut them at the edge",
            cli=f"{p}: {outside} object(s) reach beyond the image shape {tuple(dims)} (Y, X); "
            "check --shape (or --parent), or add --clip to cut them at the edge",
        )

    meta: dict[str, Any] = {"counts": counts, "duplicate_json_keys": duplicates,
                            "shape": list(dims), "pixel_rule": "pixel centre inside or on outline"}
    masks = _paint_masks(per_mask, nuclei_of, dims, p, meta, types=types, annotation_masks=ann_masks,
                         cell_mask=cell_mask, nucleus_mask=nucleus_mask)
    source = file_source(p, tool="qupath", fmt="geojson", metadata=meta)
    for mask in masks.values():
        mask.source = source
    size = PhysicalSize.coerce(physical_size) if physical_size is not None else parent_size
    return Segmentation(masks=masks, physical_size=size, source=source)


def _sort_objects(
    features: list[Any], p: Path, *, measurements: bool, annotation_masks: Mapping[str, str],
    cell_mask: str, detection_mask: str,
) -> tuple[dict[str, list[_Obj]], list[tuple[_Obj, int]], dict[str, int]]:
    """The objects of each mask in file order, the cells with a nucleus, and the counts.

    Returns ``(per_mask, nuclei_of, counts)``; ``nuclei_of`` holds (cell object, its label
    in the cell mask).
    """
    per_mask: dict[str, list[_Obj]] = {}
    nuclei_of: list[tuple[_Obj, int]] = []  # (cell object, index in cell mask list)
    counts = {"features": len(features), "cells": 0, "detections": 0, "annotations": 0,
              "skipped_annotations": 0, "skipped_other": 0, "without_geometry": 0}
    for i, feat in enumerate(features):
        if not isinstance(feat, Mapping):
            raise CorruptInputError(f"{p}: feature {i} is not a JSON object")
        props = feat.get("properties") or {}
        if not isinstance(props, Mapping):
            raise CorruptInputError(f"{p}: feature {i} has 'properties' that are not an object")
        kind = _kind(feat, props)
        uid = feat.get("id") if isinstance(feat.get("id"), str) else None
        if uid is not None and uid.startswith("Path"):
            uid = None
        obj = _Obj(i, feat.get("geometry"), feat.get("nucleusGeometry"), kind,
                   _classification(props), uid,
                   _measurements(props) if measurements else {})
        if obj.geometry is None:
            counts["without_geometry"] += 1
            continue
        if kind == "skip":
            counts["skipped_other"] += 1
            continue
        if kind == "annotation":
            target = annotation_masks.get(obj.classification or "")
            if target is None:
                counts["skipped_annotations"] += 1
                continue
            counts["annotations"] += 1
        elif kind == "cell":
            counts["cells"] += 1
            target = cell_mask
        else:
            counts["detections"] += 1
            target = detection_mask
        lst = per_mask.setdefault(target, [])
        lst.append(obj)
        if kind == "cell" and obj.nucleus is not None:
            nuclei_of.append((obj, len(lst)))
    return per_mask, nuclei_of, counts


def _check_classes(
    per_mask: Mapping[str, list[_Obj]], types: Mapping[str, str], ann_names: set[str], p: Path
) -> None:
    """Refuse classes of cells and detections (and annotations) without an obo id."""
    missing = sorted({o.classification for mname, objs in per_mask.items() for o in objs
                      if mname not in ann_names or o.kind != "annotation"
                      if o.classification and o.classification not in types})
    if missing:
        raise OptionError(
            f"{p}: classes {missing} have no obo id in class_types; add them, e.g. "
            f"class_types={{{missing[0]!r}: 'CL:0000000', ...}}",
            cli=f"{p}: classes {missing} have no obo id; add --class-type "
            f"'{missing[0]}=CL:0000000' (for example) per class",
        )


def _paint_masks(
    per_mask: Mapping[str, list[_Obj]], nuclei_of: list[tuple[_Obj, int]], dims: tuple[int, ...],
    p: Path, meta: dict[str, Any], *, types: Mapping[str, str],
    annotation_masks: Mapping[str, str], cell_mask: str, nucleus_mask: str,
) -> dict[str, Mask]:
    """Paint every mask's polygons (nuclei take their cell's label); per-mask counts go
    into ``meta["masks"]``."""
    masks: dict[str, Mask] = {}
    cell_keep: np.ndarray | None = None
    for mname, objs in per_mask.items():
        polys = PolygonSet()
        for lab, o in enumerate(objs, start=1):
            for rings in _rings(o.geometry, f"{p}: feature {o.feature}"):
                polys.add(rings, lab)
        labels, overwritten = paint_polygons(polys, dims)
        keep = np.bincount(labels.ravel(), minlength=len(objs) + 1) > 0
        keep[0] = False
        if mname == cell_mask:
            cell_keep = keep
        meta.setdefault("masks", {})[mname] = {
            "objects": len(objs), "objects_without_pixels": int(len(objs) - keep.sum()),
            "overlap_pixels_later_object_wins": overwritten,
        }
        masks[mname] = _mask(objs, list(range(1, len(objs) + 1)), keep, labels, types,
                             annotation_masks, mname, None)
    if nuclei_of:
        polys = PolygonSet()
        for o, lab in nuclei_of:
            for rings in _rings(o.nucleus, f"{p}: feature {o.feature} (nucleus)"):
                polys.add(rings, lab)
        labels, overwritten = paint_polygons(polys, dims)
        keep = np.bincount(labels.ravel(), minlength=len(per_mask[cell_mask]) + 1) > 0
        keep[0] = False
        objs = [o for o, _ in nuclei_of]
        labs = np.array([lab for _, lab in nuclei_of], dtype=np.int64)
        cells_kept = cell_keep if cell_keep is not None else np.zeros_like(keep)
        meta["masks"][nucleus_mask] = {
            "objects": len(objs), "objects_without_pixels": int(len(objs) - keep.sum()),
            "overlap_pixels_later_object_wins": overwritten,
            "nuclei_whose_cell_has_no_pixels": int(np.count_nonzero(keep[labs] & ~cells_kept[labs])),
            "ids": "nucleus label = label of its cell",
        }
        masks[nucleus_mask] = _mask(objs, labs.tolist(), keep, labels, types, annotation_masks,
                                    nucleus_mask, "nucleus")
    return masks


def _objects_outside(per_mask: Mapping[str, list[_Obj]], dims: tuple[int, ...], p: Path) -> int:
    """How many objects (or their nuclei) have a vertex outside the image (Y, X)."""
    rows, cols = dims[0] - 0.5, dims[1] - 0.5  # rings are shifted to pixel centres
    n = 0
    for objs in per_mask.values():
        for o in objs:
            for geom in (o.geometry, o.nucleus):
                parts = _rings(geom, f"{p}: feature {o.feature}")
                if any(
                    r.size and (r[:, 0].min() < -0.5 or r[:, 1].min() < -0.5
                                or r[:, 0].max() > rows or r[:, 1].max() > cols)
                    for rings in parts for r in rings
                ):
                    n += 1
                    break
    return n


def _mask(
    objs: list[_Obj],
    labels_of: list[int],
    keep: np.ndarray,
    labels: np.ndarray,
    types: Mapping[str, str],
    ann_masks: Mapping[str, str],
    mname: str,
    only_prefix: str | None,
) -> Mask:
    frame, specs = _features_frame(objs, labels_of, keep, only_prefix)
    obj_types: dict[int, str] = {
        lab: types[o.classification]
        for lab, o in zip(labels_of, objs, strict=True)
        if keep[lab] and o.classification is not None and o.classification in types
    }
    mask_id = None
    ann_classes = [c for c, m in ann_masks.items() if m == mname]
    if ann_classes and all(c in types for c in ann_classes) and len(
        {types[c] for c in ann_classes}
    ) == 1:
        mask_id = types[ann_classes[0]]
    return Mask(
        labels=labels,
        mask_id=mask_id,
        object_types=obj_types or None,
        features=frame if len(frame.columns) else None,
        feature_specs=specs,
    )
