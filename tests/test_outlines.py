"""Pixel-edge outlines of label images, checked by painting them back with QuPath's rule.

The expected pixels are the input label image itself; read_qupath (pixel-centre rule,
independent scanline painter) and shapely (areas, validity) judge the polygons, and
scipy's connected components give the number of parts and holes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from shapely.geometry import shape as shapely_shape

from maskbundle import OutputExistsError, read_qupath
from maskbundle.io.geojson import outline_geometry, qupath_feature, write_geojson
from maskbundle.labels.outlines import label_outlines


def _export(labels: np.ndarray, path: Path) -> list[dict]:
    feats = [
        qupath_feature(outline_geometry(parts), object_type="detection", name=str(lab))
        for lab, parts in label_outlines(labels).items()
    ]
    write_geojson(path, feats)
    return feats


def _back(labels: np.ndarray, path: Path) -> np.ndarray:
    """read_qupath numbers objects 1..N in file order: map them back to the input labels."""
    seg = read_qupath(path, shape=labels.shape, detection_mask="cells", measurements=False,
                     allow_empty=True)  # an all-background image is a valid input here
    got = np.asarray(seg.masks["cells"].labels)
    ids = np.concatenate([[0], np.unique(labels[labels > 0])])
    return ids[got]


@settings(max_examples=150, deadline=None)
@given(arrays(np.uint16, st.tuples(st.integers(1, 14), st.integers(1, 14)),
              elements=st.integers(0, 4)))
def test_random_label_images_round_trip_exactly(tmp_path_factory: pytest.TempPathFactory,
                                                labels: np.ndarray) -> None:
    path = tmp_path_factory.mktemp("rt") / "objects.geojson"
    feats = _export(labels, path)
    np.testing.assert_array_equal(_back(labels, path), labels)
    for f in feats:  # area of every outline = its pixel count; valid OGC geometry
        geom = shapely_shape(f["geometry"])
        assert geom.is_valid, f
        assert geom.area == np.count_nonzero(labels == int(f["properties"]["name"]))


def test_holes_islands_and_diagonal_parts(tmp_path: Path) -> None:
    lab = np.zeros((12, 14), dtype=np.uint32)
    lab[1:10, 1:10] = 1
    lab[3:8, 3:8] = 0          # a hole ...
    lab[5, 5] = 1              # ... with an island of the same object inside
    lab[4, 4] = 2              # another object inside the hole
    lab[10, 10] = 1            # touches the ring only at a corner: a separate part
    lab[0:3, 11:14] = 3
    lab[1, 12] = 0             # a one-pixel hole
    lab[11, 0:4] = 4
    lab[10, 0:2] = 4
    lab[10, 1] = 0             # background reaching the outside only through a corner
    out = label_outlines(lab)
    assert sorted(out) == [1, 2, 3, 4]
    for v, parts in out.items():
        mask = lab == v
        n_parts = ndimage.label(mask)[1]  # 4-connected parts
        n_bg = ndimage.label(~np.pad(mask, 1))[1]
        assert len(parts) == n_parts
        assert sum(len(rings) - 1 for rings in parts) == n_bg - 1  # enclosed 4-connected bg
    geom = outline_geometry(out[1])
    assert geom["type"] == "MultiPolygon" and len(geom["coordinates"]) == 3
    assert outline_geometry(out[2])["type"] == "Polygon"
    # RFC 7946: exterior rings counter-clockwise (positive shoelace), holes clockwise
    for rings in out[1]:
        areas = [0.5 * float(np.dot(r[:, 0], np.roll(r[:, 1], -1))
                             - np.dot(np.roll(r[:, 0], -1), r[:, 1])) for r in rings]
        assert areas[0] > 0 and all(a < 0 for a in areas[1:])
    path = tmp_path / "o.geojson"
    _export(lab, path)
    np.testing.assert_array_equal(_back(lab, path), lab)


def test_only_corners_are_kept() -> None:
    lab = np.zeros((6, 7), dtype=np.uint8)
    lab[1:5, 1:6] = 1
    ((ring,),) = label_outlines(lab)[1]
    assert ring.tolist() == [[1, 1], [1, 5], [6, 5], [6, 1]] or sorted(ring.tolist()) == sorted(
        [[1, 1], [6, 1], [6, 5], [1, 5]])
    assert len(ring) == 4


def test_geojson_bytes_are_deterministic_and_never_overwritten(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lab = ndimage.label(rng.random((40, 50)) > 0.6)[0]
    a, b = tmp_path / "a.geojson", tmp_path / "b.geojson"
    _export(lab, a)
    _export(lab, b)
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == lab.max()
    with pytest.raises(OutputExistsError):
        _export(lab, a)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
