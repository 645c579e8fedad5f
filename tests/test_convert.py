"""Readers in maskbundle.convert: each against an independent computation of what it should read.

Neither cellpose nor stardist is installed here (they pull torch / tensorflow), so their
files are built exactly as the tools' own source writes them; each fixture cites the
function it follows.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import pandas as pd
import pytest
import roifile
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skimage.draw import polygon as sk_polygon
from skimage.segmentation import find_boundaries

from helpers import expect_reference
from maskbundle.convert import (
    match_labels,
    match_masks,
    read_cellpose,
    read_labels,
    read_mesmer,
    read_qupath,
    read_stardist,
)
from maskbundle.convert._common import ascii_safe
from maskbundle.convert._raster import PolygonSet, paint_polygons
from maskbundle.errors import (
    CorruptInputError,
    EmptyResultError,
    HubmapConversionWarning,
    LabelError,
    OptionError,
)
from maskbundle.model import Mask, Segmentation
from maskbundle.synthetic import synthetic_nuclei_3d, synthetic_tissue

REPO = Path(__file__).resolve().parents[1]
# ../shared relative to the repo root; MASKBUNDLE_CHECK_BUNDLE points elsewhere (worktrees)
CHECKER = Path(
    os.environ.get("MASKBUNDLE_CHECK_BUNDLE", REPO.parent / "shared" / "tools" / "check_bundle.py")
)
DOI = "10.17504/protocols.io.example"


# ----------------------------------------------------------------------------- fixtures


def cellpose_seg_npy(path: Path, masks: np.ndarray, image_name: str = "img.tif") -> Path:
    """Write ``path`` as ``cellpose.io.masks_flows_to_seg`` does (cellpose 3.x, cellpose/io.py).

    That function builds ``dat = {"outlines": masks * utils.masks_to_outlines(masks),
    "masks": masks as uint16 (uint32 beyond 65534), "chan_choose": channels,
    "ismanual": np.zeros(masks.max(), bool), "filename": file_names, "flows": flowi,
    "diameter": np.nan}`` and calls ``np.save(base + "_seg.npy", dat)``. The outlines here
    come from skimage's inner boundaries (cellpose's masks_to_outlines marks the same
    object-boundary pixels with the object's label).
    """
    masks = masks.astype(np.uint16) if masks.max() < 2**16 - 1 else masks.astype(np.uint32)
    outlines = masks * find_boundaries(masks, mode="inner")
    shape2d = masks.shape[-2:]
    flowi = [
        np.zeros((1, *shape2d, 3), np.uint8),
        np.zeros((1, *shape2d), np.uint8),
        np.zeros((1, *shape2d, 3), np.uint8),
        [],
        np.zeros((3, *shape2d), np.float32),
    ]
    dat = {
        "outlines": outlines.astype(masks.dtype),
        "masks": masks,
        "chan_choose": [0, 0],
        "ismanual": np.zeros(int(masks.max()), bool),
        "filename": image_name,
        "flows": flowi,
        "diameter": np.nan,
    }
    np.save(path, dat)  # type: ignore[arg-type]
    return path


class _Exec:
    """Pickles as ``builtins.exec(code)``: runs ``code`` when unpickled by np.load."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


class _System:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (self.cmd,))


def stardist_details(n: int, shape: tuple[int, int], seed: int, n_rays: int = 32) -> dict[str, Any]:
    """``details`` as ``StarDist2D.predict_instances`` returns them (stardist/models/base.py).

    ``coord`` comes from ``stardist.geometry.geom2d.dist_to_coord``: (N, 2, n_rays) float32,
    ``coord = dist[:, None] * [sin(phi), cos(phi)] + points[..., None]`` with
    ``phi = linspace(0, 2 pi, n_rays, endpoint=False)`` (row 0 is y, row 1 is x).
    """
    rng = np.random.default_rng(seed)
    points = np.column_stack(
        [rng.integers(-4, shape[0] + 4, n), rng.integers(-4, shape[1] + 4, n)]
    ).astype(np.int32)
    dist = rng.uniform(2.0, 9.0, size=(n, n_rays)).astype(np.float32)
    phis = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    coord = (dist[:, np.newaxis] * np.array([np.sin(phis), np.cos(phis)])).astype(np.float32)
    coord += points[..., np.newaxis]
    prob = rng.uniform(0.4, 1.0, n).astype(np.float32)
    return {"coord": coord, "points": points, "prob": prob}


def stardist_reference_labels(details: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """``polygons_to_label`` + ``polygons_to_label_coord`` of stardist/geometry/geom2d.py."""
    coord, prob = details["coord"], details["prob"]
    ind = np.argsort(prob, kind="stable")
    lbl = np.zeros(shape, np.int32)
    for i, c in zip(ind, coord[ind], strict=True):
        rr, cc = sk_polygon(*c, shape)
        lbl[rr, cc] = i + 1
    return lbl


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def qupath_feature(
    geometry: dict[str, Any],
    *,
    kind: str = "cell",
    nucleus: dict[str, Any] | None = None,
    cls: str | None = None,
    measurements: dict[str, float] | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    """One feature as QuPath 0.4/0.5 exports it (qupath-core, PathObjectTypeAdapters).

    ``{"type": "Feature", "id": <uuid>, "geometry": {...}, "properties": {"objectType":
    "cell" | "detection" | "annotation", "classification": {"name": ..., "color": [r, g,
    b]}, "measurements": {name: value}}, "nucleusGeometry": {...}}`` with coordinates
    [x, y] in full-resolution pixels.
    """
    props: dict[str, Any] = {"objectType": kind}
    if cls is not None:
        props["classification"] = {"name": cls, "color": [200, 0, 0]}
    if measurements is not None:
        props["measurements"] = measurements
    feat: dict[str, Any] = {"type": "Feature", "geometry": geometry, "properties": props}
    if uid is not None:
        feat["id"] = uid
    if nucleus is not None:
        feat["nucleusGeometry"] = nucleus
    return feat


def ref_polygon(rings: list[list[list[float]]], shape: tuple[int, int]) -> np.ndarray:
    """Pixel-centre rule via skimage: (x, y) -> (row y - 0.5, col x - 0.5), holes subtracted."""
    out = np.zeros(shape, bool)
    for k, ring in enumerate(rings):
        a = np.asarray(ring, float)
        rr, cc = sk_polygon(a[:, 1] - 0.5, a[:, 0] - 0.5, shape)
        m = np.zeros(shape, bool)
        m[rr, cc] = True
        out = out | m if k == 0 else out & ~m
    return out


def run_checker(bundle: Path) -> None:
    """The reference checker passes ``bundle`` (recorded as not compared when absent)."""
    expect_reference(bundle)


def validate(bundle: Path) -> None:
    try:
        from maskbundle.bundle.validate import validate_bundle  # type: ignore[import-not-found]
    except ImportError:
        return
    report = validate_bundle(bundle)
    assert report.ok, report.format()


# ----------------------------------------------------------------------------- rasteriser


coord_st = st.integers(-8, 48).map(lambda v: v / 2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pts=st.lists(st.tuples(coord_st, coord_st), min_size=3, max_size=9),
    h=st.integers(3, 20),
    w=st.integers(3, 20),
)
def test_painter_matches_skimage_polygon(pts: list[tuple[float, float]], h: int, w: int) -> None:
    a = np.array(pts, float)
    ref = np.zeros((h, w), np.uint32)
    rr, cc = sk_polygon(a[:, 0], a[:, 1], (h, w))
    ref[rr, cc] = 5
    ps = PolygonSet()
    ps.add([a], 5)
    got, _ = paint_polygons(ps, (h, w))
    np.testing.assert_array_equal(got, ref)


def test_painter_random_float_polygons_match_skimage() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        a = rng.uniform(-6, 26, size=(int(rng.integers(3, 12)), 2))
        ref = np.zeros((20, 17), np.uint32)
        rr, cc = sk_polygon(a[:, 0], a[:, 1], (20, 17))
        ref[rr, cc] = 1
        ps = PolygonSet()
        ps.add([a], 1)
        np.testing.assert_array_equal(paint_polygons(ps, (20, 17))[0], ref)


def test_painter_rejects_nan_vertices() -> None:
    with pytest.raises(CorruptInputError, match="NaN"):
        PolygonSet().add([np.array([[0, 0], [np.nan, 1], [2, 2]])], 1)


# ----------------------------------------------------------------------------- cellpose


def test_cellpose_seg_npy_2d_ids_and_metadata(tmp_path: Path) -> None:
    cells, _ = synthetic_tissue((96, 80), cell_spacing=12, seed=2)
    cells = cells * 3  # gaps in the numbering must survive unchanged
    path = cellpose_seg_npy(tmp_path / "img_seg.npy", cells)
    seg = read_cellpose(path)
    m = seg.masks["cells"]
    assert m.labels.dtype == np.uint16 and m.labels.shape == (96, 80)
    np.testing.assert_array_equal(m.labels, cells)
    src = m.source
    assert src["tool"] == "cellpose" and src["file"] == "img_seg.npy"
    import hashlib

    assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    meta = src["tool_metadata"]
    assert meta["filename"] == "img.tif"
    assert meta["diameter"] is None  # NaN in the file; JSON has no NaN
    assert meta["chan_choose"] == [0, 0]
    assert meta["outlines"]["consistent_with_masks"] is True
    assert meta["outlines"]["pixels"] == int(find_boundaries(cells, mode="inner").sum())
    json.dumps(src)  # provenance must be JSON


def test_cellpose_seg_npy_3d_and_uint32(tmp_path: Path) -> None:
    nuclei = synthetic_nuclei_3d((6, 40, 48), n_objects=12, radius=(3.0, 6.0), seed=1)
    seg = read_cellpose(cellpose_seg_npy(tmp_path / "vol_seg.npy", nuclei), mask_name="nuclei")
    lab = seg.masks["nuclei"].labels
    assert lab.shape == (6, 40, 48)
    np.testing.assert_array_equal(lab, nuclei)
    big = np.zeros((8, 8), np.int64)
    big[2:4, 2:4] = 70000
    lab = read_cellpose(cellpose_seg_npy(tmp_path / "big_seg.npy", big)).masks["cells"].labels
    assert lab.dtype == np.uint32 and int(lab.max()) == 70000


def test_cellpose_cp_masks_png_and_tif(tmp_path: Path) -> None:
    """``cellpose.io.save_masks``: imsave(basename + "_cp_masks.png"/".tif", masks) (uint16)."""
    cells, _ = synthetic_tissue((50, 70), cell_spacing=10, seed=4)
    png = tmp_path / "a_cp_masks.png"
    png.write_bytes(imagecodecs.png_encode(cells.astype(np.uint16)))
    np.testing.assert_array_equal(read_cellpose(png).masks["cells"].labels, cells)
    vol = synthetic_nuclei_3d((5, 30, 31), n_objects=8, radius=(3.0, 6.0), seed=3)
    tif = tmp_path / "b_cp_masks.tif"
    tifffile.imwrite(tif, vol.astype(np.uint16))
    lab = read_cellpose(tif).masks["cells"].labels
    assert lab.shape == (5, 30, 31)
    np.testing.assert_array_equal(lab, vol)


def test_cellpose_empty_masks(tmp_path: Path) -> None:
    lab = read_cellpose(cellpose_seg_npy(tmp_path / "e_seg.npy", np.zeros((10, 12), int)))
    assert lab.masks["cells"].labels.shape == (10, 12)
    assert not lab.masks["cells"].labels.any()


def test_seg_npy_written_by_numpy_1_loads(tmp_path: Path) -> None:
    """numpy < 2 pickles name ``numpy.core.multiarray``; protocol 2 spells bytes via _codecs."""
    from numpy.lib import format as npformat

    masks = np.arange(20, dtype=np.uint16).reshape(4, 5)
    payload = pickle.dumps(np.array({"masks": masks, "filename": "a.tif"}, dtype=object), protocol=2)
    payload = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct" in payload and b"c_codecs\nencode" in payload
    path = tmp_path / "old_seg.npy"
    with open(path, "wb") as fh:
        npformat.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": ()})
        fh.write(payload)
    np.testing.assert_array_equal(read_cellpose(path).masks["cells"].labels, masks)


@pytest.mark.parametrize("kind", ["exec", "system"])
def test_malicious_seg_npy_is_refused_without_running(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "PWNED"
    payload: Any = (
        _Exec(f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')")
        if kind == "exec"
        else _System(f"touch {marker}")
    )
    dat = {"masks": np.ones((4, 4), np.uint16), "filename": "x.tif", "evil": payload}
    path = tmp_path / "evil_seg.npy"
    np.save(path, dat)  # type: ignore[arg-type]
    with pytest.raises(CorruptInputError, match=r"refused.*(builtins\.exec|posix\.system)"):
        read_cellpose(path)
    assert not marker.exists()
    if kind == "exec":
        # the fixture is live: an ordinary np.load runs the payload
        np.load(path, allow_pickle=True)
        assert marker.exists()


def test_malicious_global_in_nested_container_refused(tmp_path: Path) -> None:
    dat = {"masks": np.ones((3, 3), np.uint16), "flows": [[{"x": pickle}]]}
    path = tmp_path / "mod_seg.npy"
    with pytest.raises((TypeError, pickle.PicklingError)):
        np.save(path, dat)  # type: ignore[arg-type]
    # a module cannot even be pickled; a class reference can: refused by name
    dat = {"masks": np.ones((3, 3), np.uint16), "cls": pd.DataFrame}
    np.save(path, dat)  # type: ignore[arg-type]
    with pytest.raises(CorruptInputError, match="pandas"):
        read_cellpose(path)


def test_cellpose_bad_files(tmp_path: Path) -> None:
    good = cellpose_seg_npy(tmp_path / "g_seg.npy", np.ones((6, 6), int))
    data = good.read_bytes()
    trunc = tmp_path / "t_seg.npy"
    trunc.write_bytes(data[: len(data) - 40])
    with pytest.raises(CorruptInputError, match="damaged or truncated"):
        read_cellpose(trunc)
    junk = tmp_path / "j_seg.npy"
    junk.write_bytes(b"not numpy at all" * 4)
    with pytest.raises(CorruptInputError, match=r"not a readable \.npy"):
        read_cellpose(junk)
    nomask = tmp_path / "n_seg.npy"
    np.save(nomask, {"outlines": np.zeros((2, 2))})  # type: ignore[arg-type]
    with pytest.raises(CorruptInputError, match="no 'masks'"):
        read_cellpose(nomask)
    with pytest.raises(CorruptInputError, match="no such file"):
        read_cellpose(tmp_path / "missing_seg.npy")


# ----------------------------------------------------------------------------- stardist


def test_stardist_details_match_polygons_to_label(tmp_path: Path) -> None:
    shape = (60, 70)
    details = stardist_details(40, shape, seed=5)  # overlapping, some cut by the border
    path = tmp_path / "details.npz"
    np.savez(path, **details)
    seg = read_stardist(path, shape=shape)
    lab = seg.masks["nuclei"].labels
    ref = stardist_reference_labels(details, shape)
    assert lab.shape == shape
    np.testing.assert_array_equal(lab, ref)
    meta = seg.source["tool_metadata"]
    assert meta["objects"] == 40 and meta["n_rays"] == 32
    assert meta["overlap_pixels_resolved_by_probability"] > 0
    # polygons reaching outside the image are clipped, not wrapped
    assert lab[0].any() or lab[-1].any() or lab[:, 0].any() or lab[:, -1].any()


def test_stardist_details_need_shape_and_handle_empty(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, coord=np.zeros((0, 2, 32), np.float32), points=np.zeros((0, 2), np.int32),
             prob=np.zeros(0, np.float32))
    with pytest.raises(OptionError, match="shape"):
        read_stardist(path)
    lab = read_stardist(path, shape=(9, 11)).masks["nuclei"].labels
    assert lab.shape == (9, 11) and not lab.any()
    bad = tmp_path / "bad.npz"
    np.savez(bad, points=np.zeros((1, 2)))
    with pytest.raises(CorruptInputError, match="no 'coord'"):
        read_stardist(bad, shape=(5, 5))


def test_stardist_int32_label_tiff(tmp_path: Path) -> None:
    """``predict_instances`` labels are int32 (``polygons_to_label_coord`` allocates int32)."""
    details = stardist_details(15, (40, 40), seed=1)
    ref = stardist_reference_labels(details, (40, 40))
    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, ref)
    lab = read_stardist(path).masks["nuclei"].labels
    assert lab.dtype == np.int32
    np.testing.assert_array_equal(lab, ref)
    neg = ref.copy()
    neg[3, 4] = -2
    tifffile.imwrite(path, neg)
    with pytest.raises(LabelError, match=r"negative.*\(3, 4\)"):
        read_stardist(path)


def test_stardist_imagej_roi_zip(tmp_path: Path) -> None:
    """ROIs as ImageJ writes them (integer vertices are pixel corners), via roifile."""
    boxes = [(2, 3, 9, 8), (6, 5, 14, 12), (-3, 10, 4, 19)]  # x0, y0, x1, y1; last one clipped
    rois = []
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        roi = roifile.ImagejRoi.frompoints(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
        roi.name = f"cell-{k}" if k != 1 else "=SUM(A1)"
        rois.append(roi)
    path = tmp_path / "rois.zip"
    roifile.roiwrite(path, rois)
    seg = read_stardist(path, shape=(16, 12))
    m = seg.masks["nuclei"]
    ref = np.zeros((16, 12), np.uint32)
    for k, (x0, y0, x1, y1) in enumerate(boxes, start=1):  # later ROI wins
        ref[max(y0, 0) : y1, max(x0, 0) : x1] = k
    np.testing.assert_array_equal(m.labels, ref)
    assert m.features is not None
    assert list(m.features["ROI name"]) == ["cell-0", "equals SUM(A1)", "cell-2"]
    assert m.feature_specs["ROI name"].type == "text"


# ----------------------------------------------------------------------------- qupath


def qupath_file(tmp_path: Path, features: Any, name: str = "export.geojson") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(features), encoding="utf-8")
    return path


def test_qupath_cells_nuclei_holes_multipolygon_clipping(tmp_path: Path) -> None:
    shape = (30, 25)
    f1_rings = [square(1, 1, 12, 12), square(4, 4, 7, 8)]  # with a hole
    f1_nuc = [square(8, 1, 11, 4)]
    f2_parts = [[square(14, 0, 18, 5)], [square(20, 20, 40, 40)]]  # 2nd part crosses the edge
    f3 = [square(-10, 14, 6, 22)]  # outside on the left: clipped
    f3_nuc = [[2.5, 15.5], [5.5, 15.5], [5.5, 19.5], [2.5, 19.5]]
    feats = [
        qupath_feature({"type": "Polygon", "coordinates": f1_rings},
                       nucleus={"type": "Polygon", "coordinates": f1_nuc},
                       cls="Tumor", uid="a1",
                       measurements={"Nucleus: Area µm^2": 9.0, "Cell: CD3 mean": 1.5}),
        qupath_feature({"type": "MultiPolygon", "coordinates": f2_parts}, kind="detection",
                       cls="Immune", uid="b2", measurements={"X": 3.0, "-Area px": 2.0}),
        qupath_feature({"type": "Polygon", "coordinates": f3},
                       nucleus={"type": "Polygon", "coordinates": [f3_nuc]}, uid="c3"),
    ]
    path = qupath_file(tmp_path, {"type": "FeatureCollection", "features": feats})
    types = {"Tumor": "CL:0001064", "Immune": "CL:0000738"}
    with pytest.raises(EmptyResultError, match="reach beyond"):
        read_qupath(path, shape=shape, class_types=types)
    seg = read_qupath(path, shape=shape, class_types=types, clip=True)
    cells, nuclei = seg.masks["cells"], seg.masks["nuclei"]
    ref = np.zeros(shape, np.uint32)
    ref[ref_polygon(f1_rings, shape)] = 1
    ref[ref_polygon(f2_parts[0][0:1], shape) | ref_polygon(f2_parts[1][0:1], shape)] = 2
    ref[ref_polygon(f3, shape)] = 3
    np.testing.assert_array_equal(cells.labels, ref)
    assert not cells.labels[4:8, 4:7].any()  # the hole: pixels 4..6 x 4..7
    nref = np.zeros(shape, np.uint32)
    nref[ref_polygon(f1_nuc, shape)] = 1
    nref[ref_polygon([f3_nuc], shape)] = 3  # the nucleus has the id of its cell
    np.testing.assert_array_equal(nuclei.labels, nref)
    assert cells.object_types == {1: "CL:0001064", 2: "CL:0000738"}
    assert cells.features is not None
    cols = list(cells.features.columns)
    assert cols[:2] == ["QuPath object ID", "QuPath classification"]
    assert "Nucleus: Area um^2" in cols and "QuPath X" in cols and "minus Area px" in cols
    assert all(c.isascii() for c in cols)
    assert cells.feature_specs["Nucleus: Area um^2"].unit == "square micrometer"
    assert cells.feature_specs["Nucleus: Area um^2"].feature_class == "morphology"
    # antibody columns are case-folded (HuBMAP's conversion), QuPath's spelling kept
    assert cells.feature_specs["cell: cd3 mean"].unit == "intensity"
    assert cells.feature_specs["cell: cd3 mean"].alternative_id == "Cell: CD3 mean"
    assert np.isnan(cells.features.loc[3, "cell: cd3 mean"])
    assert nuclei.features is not None
    assert "cell: cd3 mean" not in nuclei.features.columns  # nuclei get Nucleus: ... only
    assert list(nuclei.features.index) == [1, 3]


def test_qupath_list_duplicate_keys_old_measurements_annotations(tmp_path: Path) -> None:
    feats = [
        {"type": "Feature", "id": "PathDetectionObject",
         "geometry": {"type": "Polygon", "coordinates": [square(0, 0, 4, 4)]},
         "properties": {"classification": {"name": "Other"},
                        "measurements": [{"name": "Area", "value": 16}]}},
        qupath_feature({"type": "Polygon", "coordinates": [square(0, 0, 10, 10)]},
                       kind="annotation", cls="Glomerulus"),
        qupath_feature({"type": "Polygon", "coordinates": [square(0, 0, 3, 3)]},
                       kind="annotation", cls="Region*"),
    ]
    text = json.dumps(feats).replace('"name": "Other"', '"name": "Tumor", "name": "Other"')
    path = tmp_path / "list.json"
    path.write_text(text, encoding="utf-8")
    seg = read_qupath(path, shape=(12, 12), annotations={"Glomerulus": "glomeruli"},
                      class_types={"Glomerulus": "UBERON:0000074", "Other": "CL:0000000"})
    assert set(seg.masks) == {"cells", "glomeruli"}
    glom = seg.masks["glomeruli"]
    assert glom.mask_id == "UBERON:0000074" and int(glom.labels.sum()) == 100
    cells = seg.masks["cells"]
    assert cells.object_types == {1: "CL:0000000"}  # the duplicate key: last one wins
    assert cells.features is not None and cells.features.loc[1, "Area"] == 16.0
    meta = seg.source["tool_metadata"]
    assert meta["duplicate_json_keys"] == 1
    assert meta["counts"]["skipped_annotations"] == 1


def test_qupath_unmapped_class_empty_and_bad_input(tmp_path: Path) -> None:
    f = [qupath_feature({"type": "Polygon", "coordinates": [square(0, 0, 4, 4)]}, cls="Tumor")]
    path = qupath_file(tmp_path, f)
    with pytest.raises(OptionError, match="Tumor"):
        read_qupath(path, shape=(8, 8), class_types={"Stroma": "CL:0000057"})
    with pytest.raises(OptionError, match="shape"):
        read_qupath(path, shape=None)
    empty = qupath_file(tmp_path, {"type": "FeatureCollection", "features": []}, "e.geojson")
    with pytest.raises(EmptyResultError, match="allow_empty"):
        read_qupath(empty, shape=(5, 6))
    seg = read_qupath(empty, shape=(5, 6), allow_empty=True)
    assert list(seg.masks) == ["cells"] and not seg.masks["cells"].labels.any()
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CorruptInputError, match="not valid GeoJSON"):
        read_qupath(bad, shape=(5, 5))
    outside = qupath_file(
        tmp_path, [qupath_feature({"type": "Polygon", "coordinates": [square(50, 50, 60, 60)]})],
        "o.geojson",
    )
    seg = read_qupath(outside, shape=(5, 5), clip=True)
    assert seg.source["tool_metadata"]["masks"]["cells"]["objects_without_pixels"] == 1
    assert seg.masks["cells"].features is None or len(seg.masks["cells"].features) == 0


def test_qupath_and_stardist_take_shape_from_parent_image(tmp_path: Path) -> None:
    parent = tmp_path / "parent.ome.tiff"
    tifffile.imwrite(parent, np.zeros((2, 24, 20), np.uint8), photometric="minisblack",
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325,
                               "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    f = [qupath_feature({"type": "Polygon", "coordinates": [square(2, 2, 8, 9)]})]
    seg = read_qupath(qupath_file(tmp_path, f), shape=None, parent_image=parent)
    assert seg.masks["cells"].labels.shape == (24, 20)
    assert seg.physical_size is not None and seg.physical_size.x == 0.325
    np.savez(tmp_path / "d.npz", **stardist_details(5, (24, 20), seed=0))
    sd = read_stardist(tmp_path / "d.npz", parent_image=parent)
    assert sd.masks["nuclei"].labels.shape == (24, 20)
    from maskbundle.bundle.build import write_segmentation_bundle

    out = write_segmentation_bundle(tmp_path / "b", seg, parent_image=parent, protocol_doi=DOI)
    expect_reference(out, "--parent", str(parent))


def test_damaged_files_raise_corrupt_input(tmp_path: Path) -> None:
    tif = tmp_path / "t.tif"
    tifffile.imwrite(tif, np.arange(4096, dtype=np.uint16).reshape(64, 64))
    tif.write_bytes(tif.read_bytes()[:200])
    with pytest.raises(CorruptInputError, match="TIFF"):
        read_labels(tif)
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    with pytest.raises(CorruptInputError, match="PNG"):
        read_labels(png)
    roi = tmp_path / "r.zip"
    roi.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(CorruptInputError, match="ROI"):
        read_stardist(roi, shape=(4, 4))
    with pytest.raises(CorruptInputError, match="no such file"):
        read_labels(tmp_path / "missing.tif")


def test_ascii_safe() -> None:
    assert ascii_safe("Nucleus: Area µm²") == "Nucleus: Area um^2"
    assert ascii_safe("=cmd|x") == "equals cmd|x"
    assert ascii_safe("a\tb\nc") == "a b c"
    assert ascii_safe("Café") == "Cafe"


# ----------------------------------------------------------------------------- mesmer / match


def brute_force_match(nuclei: np.ndarray, cells: np.ndarray) -> dict[int, int]:
    """For each nucleus: the cell covering more than half of it, one nucleus per cell."""
    best: dict[int, tuple[int, int]] = {}
    for n in np.unique(nuclei[nuclei > 0]).tolist():
        under = cells[nuclei == n]
        area = under.size
        ids, counts = np.unique(under[under > 0], return_counts=True)
        if ids.size:
            k = int(np.argmax(counts))  # argmax takes the smallest id among ties
            if counts[k] * 2 > area:
                best[n] = (int(ids[k]), int(counts[k]))
    winners: dict[int, int] = {}
    for n, (c, cnt) in sorted(best.items()):
        prev = winners.get(c)
        if prev is None or best[prev][1] < cnt:
            winners[c] = n
    return {n: c for c, n in winners.items()}


@settings(max_examples=60, deadline=None)
@given(
    nuc=st.lists(st.integers(0, 5), min_size=36, max_size=36),
    cel=st.lists(st.integers(0, 4), min_size=36, max_size=36),
)
def test_match_labels_equals_brute_force(nuc: list[int], cel: list[int]) -> None:
    nuclei = np.array(nuc, np.uint16).reshape(6, 6) * 7
    cells = np.array(cel, np.int32).reshape(6, 6) * 3
    res = match_labels(nuclei, cells)
    want = brute_force_match(nuclei, cells)
    top = int(cells.max())
    unmatched = [n for n in res.original_ids.tolist() if n not in want]
    expected_new = dict(zip(unmatched, range(top + 1, top + 1 + len(unmatched)), strict=True))
    for orig, new in zip(res.original_ids.tolist(), res.new_ids.tolist(), strict=True):
        assert new == want.get(orig, expected_new.get(orig))
        np.testing.assert_array_equal(res.labels == new, nuclei == orig)
    assert res.matched == len(want) and res.unmatched == len(unmatched)
    assert not res.labels[nuclei == 0].any()


def test_match_labels_huge_label_values_use_ranks() -> None:
    big = 2**63 + 5
    nuclei = np.zeros((4, 4), np.uint64)
    nuclei[0, :2] = big
    nuclei[3, 3] = big + 1
    cells = np.zeros((4, 4), np.uint64)
    cells[0, :3] = big + 2
    res = match_labels(nuclei, cells)
    assert res.labels.dtype == np.uint64
    assert res.labels[0, 0] == big + 2 and res.labels[3, 3] == big + 3
    assert res.matched == 1 and res.unmatched == 1


def test_mesmer_batch_array_matches_nuclei_to_cells(tmp_path: Path) -> None:
    """Mesmer.predict(compartment='both') -> (1, Y, X, 2): 0 whole-cell, 1 nuclear."""
    cells, nuclei = synthetic_tissue((120, 100), cell_spacing=14, seed=6)
    cells = np.pad(cells, ((0, 0), (0, 8)))  # an empty strip on the right
    nuclei = np.pad(nuclei, ((0, 0), (0, 8)))
    rng = np.random.default_rng(0)
    perm = np.r_[0, rng.permutation(int(nuclei.max())) + 500].astype(np.uint32)
    shuffled = perm[nuclei]
    shuffled[2:6, 102:106] = 9999  # a nucleus in the background: no cell
    arr = np.stack([cells, shuffled], axis=-1)[np.newaxis].astype(np.int32)
    path = tmp_path / "mesmer.npy"
    np.save(path, arr)
    seg = read_mesmer(path)
    c, n = seg.masks["cells"].labels, seg.masks["nuclei"].labels
    np.testing.assert_array_equal(c, cells)
    inside = nuclei > 0
    # synthetic nuclei carry their cell's id, so matching must give back exactly them
    np.testing.assert_array_equal(n[inside], nuclei[inside])
    assert np.all(n[2:6, 102:106] == int(cells.max()) + 1)
    stats = seg.source["tool_metadata"]["nucleus_matching"]
    assert stats["unmatched_given_new_ids"] == 1
    assert stats["matched"] == int(np.unique(nuclei[nuclei > 0]).size)
    feats = seg.masks["nuclei"].features
    assert feats is not None and feats.loc[int(cells.max()) + 1, "Object ID in cells"] == 0


def test_mesmer_tiff_layouts(tmp_path: Path) -> None:
    cells, nuclei = synthetic_tissue((40, 50), cell_spacing=12, seed=2)
    p2 = tmp_path / "m2.tif"
    tifffile.imwrite(p2, np.stack([cells, nuclei], -1), photometric="minisblack")
    seg = read_mesmer(p2)
    assert set(seg.masks) == {"cells", "nuclei"}
    p1 = tmp_path / "m1.tif"
    tifffile.imwrite(p1, cells[..., np.newaxis], photometric="minisblack")
    seg = read_mesmer(p1)
    assert list(seg.masks) == ["cells"]
    np.testing.assert_array_equal(seg.masks["cells"].labels, cells)
    bad = tmp_path / "b.npy"
    np.save(bad, np.zeros((2, 4, 4, 2), np.int32))
    with pytest.raises(CorruptInputError, match="batch of 2"):
        read_mesmer(bad)
    np.save(bad, np.zeros((4, 4, 3), np.int32))
    with pytest.raises(CorruptInputError, match="not a Mesmer output"):
        read_mesmer(bad)


def test_match_masks_remaps_features_and_types() -> None:
    cells = np.zeros((6, 6), np.uint16)
    cells[:3] = 4
    cells[3:] = 8
    nuclei = np.zeros((6, 6), np.uint16)
    nuclei[1, 1] = 1
    nuclei[4, 4] = 2
    feats = pd.DataFrame({"Area": [1.0, 1.0]}, index=pd.Index([1, 2], name="label"))
    seg = Segmentation(
        masks={"cells": Mask(cells), "nuclei": Mask(nuclei, object_types={2: "CL:0000236"},
                                                        features=feats)}
    )
    out = match_masks(seg, {"nuclei": "cells"})
    n = out.masks["nuclei"]
    assert n.labels[1, 1] == 4 and n.labels[4, 4] == 8
    assert n.object_types == {8: "CL:0000236"}
    assert n.features is not None
    assert list(n.features.index) == [4, 8]
    assert list(n.features["Object ID in cells"]) == [1, 2]  # cells 4, 8 become Object IDs 1, 2
    assert seg.masks["nuclei"].labels[1, 1] == 1  # the input is not modified
    again = match_masks(out, {"nuclei": "cells"})  # idempotent
    np.testing.assert_array_equal(again.masks["nuclei"].labels, n.labels)
    assert again.masks["nuclei"].features is not None
    pd.testing.assert_frame_equal(again.masks["nuclei"].features, n.features)
    with pytest.raises(OptionError, match="spleen"):
        match_masks(seg, {"spleen": "cells"})


# ----------------------------------------------------------------------------- generic


def test_read_labels_ome_tiff_pyramid_channels_and_physical_size(tmp_path: Path) -> None:
    cells, nuclei = synthetic_tissue((64, 70), cell_spacing=12, seed=8)
    stack = np.stack([cells, nuclei]).astype(np.uint16)
    path = tmp_path / "labels.ome.tiff"
    with tifffile.TiffWriter(path) as tw:
        tw.write(stack, subifds=1, photometric="minisblack", tile=(32, 32),
                 metadata={"axes": "CYX", "Channel": {"Name": ["Cells", "nuclei"]},
                           "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5,
                           "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
        tw.write(stack[:, ::2, ::2], subfiletype=1, photometric="minisblack", tile=(32, 32))
    seg = read_labels(path)
    assert list(seg.masks) == ["cells", "nuclei"]
    np.testing.assert_array_equal(seg.masks["cells"].labels, cells)
    np.testing.assert_array_equal(seg.masks["nuclei"].labels, nuclei)
    assert seg.physical_size is not None
    assert (seg.physical_size.x, seg.physical_size.y) == (0.25, 0.5)
    assert seg.masks["cells"].source["name_in_file"] == "Cells"
    with pytest.raises(OptionError, match="1 mask name"):
        read_labels(path, mask_names="cells")


def test_read_labels_npz_npy_png_and_errors(tmp_path: Path) -> None:
    cells, nuclei = synthetic_tissue((30, 20), cell_spacing=8, seed=1)
    npz = tmp_path / "m.npz"
    np.savez(npz, cells=cells, nuclei=nuclei)
    seg = read_labels(npz)
    assert list(seg.masks) == ["cells", "nuclei"]
    np.testing.assert_array_equal(seg.masks["nuclei"].labels, nuclei)
    npy = tmp_path / "m.npy"
    np.save(npy, cells.astype(np.float32))
    lab = read_labels(npy, mask_names="tissue").masks["tissue"].labels
    np.testing.assert_array_equal(lab, cells)
    png = tmp_path / "m.png"
    png.write_bytes(imagecodecs.png_encode(nuclei.astype(np.uint8)))
    np.testing.assert_array_equal(read_labels(png).masks["cells"].labels, nuclei)
    np.save(npy, cells.astype(np.float32) + 0.5)
    with pytest.raises(LabelError, match="not a non-negative integer"):
        read_labels(npy)
    rgb = tmp_path / "rgb.png"
    rgb.write_bytes(imagecodecs.png_encode(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(CorruptInputError, match="colour channels"):
        read_labels(rgb)
    rgbt = tmp_path / "rgb.tif"
    tifffile.imwrite(rgbt, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(CorruptInputError, match="samples per pixel"):
        read_labels(rgbt)
    other = tmp_path / "x.jpg"
    other.write_bytes(b"\xff\xd8")
    with pytest.raises(CorruptInputError, match="unknown label file type"):
        read_labels(other)


def test_read_labels_zarr_and_ome_zarr(tmp_path: Path) -> None:
    import zarr

    cells, nuclei = synthetic_tissue((40, 36), cell_spacing=10, seed=3)
    plain = tmp_path / "plain.zarr"
    z = zarr.open_array(str(plain), mode="w", shape=cells.shape, dtype=cells.dtype, zarr_format=2)
    z[...] = cells
    np.testing.assert_array_equal(read_labels(plain).masks["cells"].labels, cells)
    # OME-Zarr 0.4 image with a labels group (as ome-zarr-py writes it)
    root = zarr.open_group(str(tmp_path / "image.zarr"), mode="w", zarr_format=2)
    root.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 0.5, 0.5]}]}]}]
    img = root.create_array("0", shape=(1, *cells.shape), dtype=np.uint8)
    img[...] = 0
    labels = root.create_group("labels")
    labels.attrs["labels"] = ["cells", "nuclei"]
    for name, arr in (("cells", cells), ("nuclei", nuclei)):
        g = labels.create_group(name)
        g.attrs["image-label"] = {"version": "0.4"}
        g.attrs["multiscales"] = [{"version": "0.4", "axes": [
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}],
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [0.5, 0.25]}]}]}]
        a = g.create_array("0", shape=arr.shape, dtype=arr.dtype)
        a[...] = arr
    seg = read_labels(tmp_path / "image.zarr")
    assert list(seg.masks) == ["cells", "nuclei"]
    np.testing.assert_array_equal(seg.masks["nuclei"].labels, nuclei)
    assert seg.physical_size is not None
    assert (seg.physical_size.x, seg.physical_size.y) == (0.25, 0.5)
    one = read_labels(tmp_path / "image.zarr" / "labels" / "cells")
    np.testing.assert_array_equal(one.masks["cells"].labels, cells)


# ----------------------------------------------------------------------------- bundles


def _bundle(seg: Segmentation, out: Path, **kw: Any) -> Path:
    from maskbundle.bundle.build import write_segmentation_bundle

    kw.setdefault("physical_size", (0.5, 0.5) if seg.physical_size is None else None)
    path = write_segmentation_bundle(out, seg, protocol_doi=DOI, **kw)
    run_checker(path)
    validate(path)
    return path


def test_every_reader_converts_to_a_valid_bundle(tmp_path: Path) -> None:
    cells, nuclei = synthetic_tissue((64, 60), cell_spacing=11, seed=9)
    seg_cp = read_cellpose(cellpose_seg_npy(tmp_path / "c_seg.npy", cells * 2))
    out = _bundle(seg_cp, tmp_path / "cellpose")
    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    assert prov["masks"]["cells"]["source"]["tool"] == "cellpose"
    assert prov["masks"]["cells"]["source"]["sha256"] == seg_cp.source["sha256"]
    # a 3D Cellpose mask
    vol = synthetic_nuclei_3d((4, 32, 30), n_objects=6, radius=(3.0, 6.0), seed=2)
    _bundle(read_cellpose(cellpose_seg_npy(tmp_path / "v_seg.npy", vol), mask_name="nuclei"),
            tmp_path / "cellpose3d", physical_size=(0.5, 0.5, 2.0))

    details = stardist_details(20, (64, 60), seed=2)
    np.savez(tmp_path / "sd.npz", **details)
    _bundle(read_stardist(tmp_path / "sd.npz", shape=(64, 60)), tmp_path / "stardist")

    feats = [
        qupath_feature({"type": "Polygon", "coordinates": [square(1, 1, 12, 12)]},
                       nucleus={"type": "Polygon", "coordinates": [square(3, 3, 7, 7)]},
                       cls="Tumor", uid="id-1",
                       measurements={"Nucleus: Area µm^2": 4.0, "Cell: Mean": float("nan")}),
        qupath_feature({"type": "Polygon", "coordinates": [square(20, 20, 70, 30)]},
                       nucleus={"type": "Polygon", "coordinates": [square(22, 22, 26, 26)]},
                       uid="id-2", measurements={"Nucleus: Area µm^2": 4.0, "Cell: Mean": 2.0}),
    ]
    q = read_qupath(qupath_file(tmp_path, feats), shape=(64, 60),
                    class_types={"Tumor": "CL:0001064"}, clip=True)
    with pytest.warns(HubmapConversionWarning, match="'cell: mean'"):
        out = _bundle(q, tmp_path / "qupath")
    table = (out / "derived/segmentation_masks/cells-objects.tsv").read_text().splitlines()
    assert table[9].split("\t")[-4:] == [
        "QuPath object ID", "QuPath classification", "Nucleus: Area um^2", "cell: mean"]
    assert table[10].split("\t")[6] == "CL:0001064"

    np.save(tmp_path / "mesmer.npy", np.stack([cells, nuclei], -1)[np.newaxis])
    out = _bundle(read_mesmer(tmp_path / "mesmer.npy"), tmp_path / "mesmer")
    nt = (out / "derived/segmentation_masks/nuclei-objects.tsv").read_text().splitlines()
    assert nt[9].split("\t")[-1] == "Object ID in cells"

    # a bundle's own OME-TIFF reads back as its masks
    tiff = next((out / "derived/segmentation_masks").glob("*.segmentations.ome.tiff"))
    back = read_labels(tiff)
    assert list(back.masks) == ["cells", "nuclei"]
    assert back.source["tool"] == "maskbundle"
    np.testing.assert_array_equal(back.masks["cells"].labels, cells)  # already 1..N
    assert back.physical_size is not None and back.physical_size.x == 0.5


def test_reference_checker_is_available_for_the_bundle_tests() -> None:
    """Makes a missing checker visible as a skip instead of silently weaker tests."""
    if not CHECKER.exists():
        pytest.skip(f"reference checker {CHECKER} not present")
    res = subprocess.run([sys.executable, str(CHECKER), "--help"], capture_output=True, text=True)
    assert res.returncode == 0


# ----------------------------------------------------------------------------- CLI


def _cli(args: list[str]) -> Any:
    from click.testing import CliRunner

    from maskbundle.cli import main

    return CliRunner().invoke(main, args)


def test_cli_convert_each_tool(tmp_path: Path) -> None:
    cells, nuclei = synthetic_tissue((48, 40), cell_spacing=10, seed=4)
    common = ["--physical-size", "0.5", "--physical-size", "0.5", "--protocol-doi", DOI]
    cellpose_seg_npy(tmp_path / "a_seg.npy", cells)
    cellpose_seg_npy(tmp_path / "b_seg.npy", nuclei)
    res = _cli(["convert", "cellpose", str(tmp_path / "a_seg.npy"), str(tmp_path / "b_seg.npy"),
                "--mask-name", "cells", "--mask-name", "nuclei", "--match", "nuclei=cells",
                "-o", str(tmp_path / "cp"), *common])
    assert res.exit_code == 0, res.output
    run_checker(tmp_path / "cp")
    prov = json.loads((tmp_path / "cp/derived/extras/provenance.json").read_text())
    assert prov["masks"]["nuclei"]["source"]["matched"]["parent_mask"] == "cells"
    assert prov["source"]["inputs"][1]["file"] == "b_seg.npy"

    np.savez(tmp_path / "sd.npz", **stardist_details(10, (48, 40), seed=3))
    res = _cli(["convert", "stardist", str(tmp_path / "sd.npz"), "--shape", "48", "40",
                "-o", str(tmp_path / "sd"), *common])
    assert res.exit_code == 0, res.output
    run_checker(tmp_path / "sd")

    f = [qupath_feature({"type": "Polygon", "coordinates": [square(1, 1, 9, 9)]}, cls="Tumor",
                        nucleus={"type": "Polygon", "coordinates": [square(2, 2, 5, 5)]}),
         qupath_feature({"type": "Polygon", "coordinates": [square(0, 0, 30, 30)]},
                        kind="annotation", cls="Glomerulus")]
    q = qupath_file(tmp_path, f)
    res = _cli(["convert", "qupath", str(q), "--shape", "48", "40",
                "--class-type", "Tumor=CL:0001064", "--annotation", "Glomerulus=glomeruli",
                "--mask-id", "glomeruli=UBERON:0000074", "-o", str(tmp_path / "qp"), *common])
    assert res.exit_code == 0, res.output
    run_checker(tmp_path / "qp")
    manifest = (tmp_path / "qp/derived/segmentation_masks/segmentation-masks.csv").read_text()
    assert "glomeruli" in manifest and "nuclei" in manifest

    np.save(tmp_path / "m.npy", np.stack([cells, nuclei], -1))
    res = _cli(["convert", "mesmer", str(tmp_path / "m.npy"), "-o", str(tmp_path / "me"),
                *common])
    assert res.exit_code == 0, res.output
    run_checker(tmp_path / "me")

    tifffile.imwrite(tmp_path / "c.tif", cells)
    tifffile.imwrite(tmp_path / "n.tif", nuclei)
    res = _cli(["convert", "labels", str(tmp_path / "c.tif"), str(tmp_path / "n.tif"),
                "-o", str(tmp_path / "lb"), *common])
    assert res.exit_code == 2 and "--mask-name" in res.output
    res = _cli(["convert", "labels", str(tmp_path / "c.tif"), str(tmp_path / "n.tif"),
                "--mask-name", "cells", "--mask-name", "nuclei", "-o", str(tmp_path / "lb"),
                *common])
    assert res.exit_code == 0, res.output
    run_checker(tmp_path / "lb")


def test_cli_convert_errors_are_one_line(tmp_path: Path) -> None:
    evil = tmp_path / "e_seg.npy"
    np.save(evil, {"masks": np.ones((3, 3), np.uint16), "x": _System("true")})  # type: ignore[arg-type]
    res = _cli(["convert", "cellpose", str(evil), "-o", str(tmp_path / "o"),
                "--physical-size", "1", "--physical-size", "1", "--protocol-doi", DOI])
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and "posix.system" in res.output
    q = qupath_file(tmp_path, [])
    res = _cli(["convert", "qupath", str(q), "-o", str(tmp_path / "o"), "--protocol-doi", DOI])
    assert res.exit_code == 2 and "--shape" in res.output
