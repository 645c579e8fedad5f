"""QuPath-flavoured GeoJSON: features built from traced outlines, written staged and byte-stable.

QuPath's conventions (``File > Import objects from file``, 0.3 to 0.5): a
``FeatureCollection`` whose coordinates are full-resolution pixels with the origin at the
top-left corner of the image; ``properties.objectType`` is ``cell``, ``detection`` or
``annotation``; a cell's nucleus is ``nucleusGeometry`` beside ``geometry``;
``properties.classification`` is ``{"name": ..., "color": [r, g, b]}``;
``properties.measurements`` a flat ``{name: number}`` map; ``properties.name`` the name
shown in the hierarchy; the feature ``id`` QuPath's object UUID.

A single-part object is a ``Polygon``, several parts make a ``MultiPolygon`` (QuPath
writes the same); rings are closed (first corner repeated).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from ..labels.outlines import ObjectOutline
from .staging import staged_path

__all__ = ["class_color", "outline_geometry", "qupath_feature", "write_geojson"]

QuPathType = Literal["cell", "detection", "annotation"]


def outline_geometry(parts: ObjectOutline) -> dict[str, Any]:
    """GeoJSON geometry of one traced object (integer pixel-corner coordinates)."""
    polys = [[[*r.tolist(), r[0].tolist()] for r in rings] for rings in parts]
    if len(polys) == 1:
        return {"type": "Polygon", "coordinates": polys[0]}
    return {"type": "MultiPolygon", "coordinates": polys}


def class_color(name: str) -> list[int]:
    """A stable colour per class name (the same name is drawn alike in every export)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    # keep away from black and white so outlines stay visible on bright and dark images
    return [48 + digest[i] * 176 // 255 for i in range(3)]


def qupath_feature(
    geometry: Mapping[str, Any],
    *,
    object_type: QuPathType,
    uid: str | None = None,
    name: str | None = None,
    classification: str | None = None,
    measurements: Mapping[str, float] | None = None,
    nucleus_geometry: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One GeoJSON feature as QuPath reads it; NaN or infinite measurements are left out."""
    feat: dict[str, Any] = {"type": "Feature"}
    if uid is not None:
        feat["id"] = uid
    feat["geometry"] = dict(geometry)
    if nucleus_geometry is not None:
        feat["nucleusGeometry"] = dict(nucleus_geometry)
    props: dict[str, Any] = {"objectType": object_type}
    if name is not None:
        props["name"] = name
    if classification:
        props["classification"] = {"name": classification, "color": class_color(classification)}
    if measurements:
        # QuPath stores measurements as doubles and cannot import NaN from strict JSON
        props["measurements"] = {
            k: float(v) for k, v in measurements.items() if math.isfinite(float(v))
        }
    feat["properties"] = props
    return feat


def write_geojson(
    path: str | Path, features: Iterable[Mapping[str, Any]], *, overwrite: bool = False
) -> Path:
    """Write a FeatureCollection, one feature per line, staged beside ``path``.

    The bytes depend only on the features (compact separators, ASCII escapes, keys in
    the order given), so the same input always gives the same file.
    """
    target = Path(path)
    with staged_path(target, overwrite=overwrite) as stage, open(
        stage, "w", encoding="ascii", newline="\n"
    ) as fh:
        fh.write('{"type":"FeatureCollection","features":[')
        first = True
        for feat in features:
            fh.write("\n" if first else ",\n")
            fh.write(json.dumps(feat, separators=(",", ":"), allow_nan=False))
            first = False
        fh.write("\n]}\n")
    return target
