"""compute_features / user_columns against independent computations.

References: scikit-image regionprops (same definitions), brute-force numpy per object,
np.bincount, and a tiled run merged against the whole-image run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.measure import regionprops, regionprops_table

from maskbundle.columns import check_spec
from maskbundle.errors import LabelError, OptionError, ShapeMismatchError, TableFormatError
from maskbundle.labels.relabel import relabel_mask
from maskbundle.measure import _accumulate as acc_mod
from maskbundle.measure.features import (
    CENTROID_COLUMNS,
    FeatureTable,
    compute_features,
    user_columns,
)
from maskbundle.model import ColumnSpec
from maskbundle.synthetic import synthetic_nuclei_3d, synthetic_tissue

MORPH_2D = {
    "Area (square micrometer)": "area",
    "Perimeter (micrometer)": "perimeter",
    "Convex area (square micrometer)": "area_convex",
    "Solidity": "solidity",
    "Extent": "extent",
    "Eccentricity": "eccentricity",
    "Equivalent diameter (micrometer)": "equivalent_diameter_area",
    "Major axis length (micrometer)": "axis_major_length",
    "Minor axis length (micrometer)": "axis_minor_length",
}


def random_labels_2d(seed: int, shape: tuple[int, int] = (90, 110)) -> np.ndarray:
    """Blocky random objects with sparse ids, border objects, one-pixel objects, a ring
    with a hole and an object in two pieces."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 40, size=(shape[0] // 6 + 1, shape[1] // 6 + 1))
    coarse[rng.random(coarse.shape) < 0.3] = 0
    img = np.kron(coarse, np.ones((6, 6), np.int64))[: shape[0], : shape[1]]
    # ragged edges so shapes are not all rectangles
    img[rng.random(shape) < 0.15] = 0
    h, w = shape
    img[h // 5: h // 5 + 16, w // 2: w // 2 + 16] = 50  # ring: a square with a hole
    img[h // 5 + 5: h // 5 + 11, w // 2 + 5: w // 2 + 11] = 0
    img[2, 2] = 51  # one-pixel objects, one on the image corner
    img[0, w - 1] = 52
    img[h - 20, 5] = 53
    img[h - 10: h - 6, w - 20: w - 17] = 54  # one object in two pieces
    img[h - 30: h - 27, w - 10: w - 6] = 54
    sparse = np.where(img > 0, img * 7919 + 100_000, 0)  # sparse, large ids
    return sparse.astype(np.int64)


def check_frame_against_regionprops(
    frame: pd.DataFrame, labels: np.ndarray, spacing: tuple[float, float]
) -> None:
    props = ["label", "centroid", "bbox", *MORPH_2D.values(), "orientation"]
    isotropic = spacing[0] == spacing[1]
    if not isotropic:
        props.remove("perimeter")
    rp = regionprops_table(labels, spacing=spacing, properties=props)
    assert len(frame) == rp["label"].size
    for ours, theirs in MORPH_2D.items():
        if theirs in rp:
            # axis lengths are 4 sqrt(eigenvalue): regionprops' rounding noise in the
            # moments (~eps x extent^2) shows as ~sqrt(eps) x extent where the exact
            # value is 0 (collinear pixels): 1.2e-7 for two pixels 10 rows apart
            extent = max(labels.shape) * max(spacing)
            atol = 1e-6 * extent if "axis" in ours else 1e-9
            np.testing.assert_allclose(frame[ours], rp[theirs], rtol=1e-9, atol=atol,
                                       err_msg=ours)
    # regionprops centroids are physical (row, col); ours are pixel (x, y)
    np.testing.assert_allclose(frame["Centroid Y"] * spacing[0], rp["centroid-0"], rtol=1e-12)
    np.testing.assert_allclose(frame["Centroid X"] * spacing[1], rp["centroid-1"], rtol=1e-12)
    # orientation is an axis direction: equal modulo pi (regionprops' rounding noise
    # can flip an exactly axis-aligned object between +pi/2 and -pi/2)
    ours, theirs = frame["Orientation (radian)"].to_numpy(), rp["orientation"]
    np.testing.assert_allclose(np.cos(2 * ours), np.cos(2 * theirs), atol=1e-9)
    np.testing.assert_allclose(np.sin(2 * ours), np.sin(2 * theirs), atol=1e-9)
    assert np.all((ours > -math.pi / 2 - 1e-12) & (ours <= math.pi / 2 + 1e-12))
    np.testing.assert_array_equal(frame["Bounding box Y min"], rp["bbox-0"])
    np.testing.assert_array_equal(frame["Bounding box X min"], rp["bbox-1"])
    np.testing.assert_array_equal(frame["Bounding box Y max"], rp["bbox-2"] - 1)
    np.testing.assert_array_equal(frame["Bounding box X max"], rp["bbox-3"] - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(0.5, 0.5), (0.65, 0.4)])
def test_2d_morphology_matches_regionprops(seed: int, spacing: tuple[float, float]) -> None:
    raw = random_labels_2d(seed)
    mask = relabel_mask("cells", raw)
    ft = compute_features(mask.labels, physical_size=(spacing[1], spacing[0]))
    # regionprops on the relabelled labels (its find_objects would allocate per raw id)
    check_frame_against_regionprops(ft.frame, mask.labels, spacing)
    assert list(ft.frame.index) == list(range(1, mask.n_objects + 1))
    assert ft.frame.index.name == "Object ID"


def test_2d_morphology_on_synthetic_tissue() -> None:
    cells, nuclei = synthetic_tissue((256, 240), cell_spacing=16.0, seed=5)
    for labels in (cells, nuclei):
        mask = relabel_mask("cells", labels)
        ft = compute_features(mask.labels, physical_size=0.5)
        check_frame_against_regionprops(ft.frame, mask.labels, (0.5, 0.5))


def test_anisotropic_perimeter_uses_geometric_mean_pixel_size() -> None:
    raw = random_labels_2d(4)
    labels = relabel_mask("cells", raw).labels
    ft = compute_features(labels, physical_size=(0.4, 0.9))
    rp = regionprops_table(labels, properties=("perimeter",))
    np.testing.assert_allclose(ft.frame["Perimeter (micrometer)"],
                               rp["perimeter"] * math.sqrt(0.4 * 0.9), rtol=1e-12)


TWO_CORNER_PIXELS = np.zeros((11, 7), np.uint8)
TWO_CORNER_PIXELS[0, 6] = TWO_CORNER_PIXELS[10, 0] = 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.uint8, st.tuples(st.integers(1, 14), st.integers(1, 14)),
              elements=st.integers(0, 5)))
# one object of two pixels at opposite corners: its minor axis is exactly 0 (ours) and
# 1.19e-7 in regionprops (rounding noise)
@example(TWO_CORNER_PIXELS)
def test_2d_random_small_images_match_regionprops(raw: np.ndarray) -> None:
    if not raw.any():
        return
    mask = relabel_mask("cells", raw)
    ft = compute_features(mask.labels, physical_size=1.0)
    check_frame_against_regionprops(ft.frame, mask.labels, (1.0, 1.0))
    # invariants: one row per object, areas sum to the foreground
    assert len(ft.frame) == mask.n_objects
    assert ft.frame["Pixel count"].sum() == np.count_nonzero(raw)
    assert ft.frame["Area (square micrometer)"].sum() == pytest.approx(np.count_nonzero(raw))


def test_centroids_are_exact_mean_pixel_coordinates() -> None:
    cells, _ = synthetic_tissue((128, 150), cell_spacing=12.0, seed=1)
    labels = relabel_mask("cells", cells).labels
    frame = compute_features(labels, physical_size=1.0, morphology=False).frame
    ys, xs = np.nonzero(labels)
    order = np.argsort(labels[ys, xs], kind="stable")
    bounds = np.searchsorted(labels[ys, xs][order], np.arange(1, labels.max() + 2))
    for k in range(1, int(labels.max()) + 1):
        sel = order[bounds[k - 1]: bounds[k]]
        assert frame.at[k, CENTROID_COLUMNS["x"]] == np.mean(xs[sel])
        assert frame.at[k, CENTROID_COLUMNS["y"]] == np.mean(ys[sel])


def test_3d_matches_regionprops_and_brute_force() -> None:
    vol = synthetic_nuclei_3d((14, 48, 52), n_objects=25, seed=2)
    vol[0, 0:3, 0:3] = 26  # on the corner of the volume
    vol[7, 30, 30] = 27  # one voxel
    labels = relabel_mask("nuclei", vol).labels
    sx, sy, sz = 0.5, 0.4, 1.5
    ft = compute_features(labels, physical_size=(sx, sy, sz))
    f = ft.frame
    rp = regionprops_table(labels, spacing=(sz, sy, sx), properties=(
        "label", "centroid", "area", "bbox", "axis_major_length", "axis_minor_length",
        "equivalent_diameter_area"))
    np.testing.assert_allclose(f["Volume (cubic micrometer)"], rp["area"], rtol=1e-12)
    for ours, theirs in (("Major axis length (micrometer)", "axis_major_length"),
                         ("Minor axis length (micrometer)", "axis_minor_length"),
                         ("Equivalent diameter (micrometer)", "equivalent_diameter_area")):
        np.testing.assert_allclose(f[ours], rp[theirs], rtol=1e-9, atol=1e-9, err_msg=ours)
    np.testing.assert_allclose(f["Centroid Z"] * sz, rp["centroid-0"], rtol=1e-12)
    np.testing.assert_allclose(f["Centroid Y"] * sy, rp["centroid-1"], rtol=1e-12)
    np.testing.assert_allclose(f["Centroid X"] * sx, rp["centroid-2"], rtol=1e-12)
    for i, ax in enumerate("ZYX"):
        np.testing.assert_array_equal(f[f"Bounding box {ax} min"], rp[f"bbox-{i}"])
        np.testing.assert_array_equal(f[f"Bounding box {ax} max"], rp[f"bbox-{i + 3}"] - 1)
    # surface area: exposed voxel faces counted by brute force
    n = int(labels.max())
    faces = np.zeros((n + 1, 3))
    padded = np.pad(labels, 1)
    for axis in range(3):
        a = np.moveaxis(padded, axis, 0)
        lo, hi = a[:-1], a[1:]
        diff = lo != hi
        faces[:, axis] += np.bincount(lo[diff], minlength=n + 1)
        faces[:, axis] += np.bincount(hi[diff], minlength=n + 1)
    expected = faces[1:, 0] * sy * sx + faces[1:, 1] * sz * sx + faces[1:, 2] * sz * sy
    np.testing.assert_allclose(f["Surface area (square micrometer)"], expected, rtol=1e-12)
    # border contact, brute force
    inner = np.zeros_like(labels, dtype=bool)
    inner[1:-1, 1:-1, 1:-1] = True
    touching = np.unique(labels[~inner & (labels > 0)])
    np.testing.assert_array_equal(np.flatnonzero(f["Touches image border"]) + 1, touching)
    assert f["Voxel count"].sum() == np.count_nonzero(labels)


def test_touches_border_2d_brute_force() -> None:
    labels = relabel_mask("cells", random_labels_2d(7)).labels
    f = compute_features(labels, physical_size=1.0, morphology=False).frame
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.unique(edge[edge > 0])
    np.testing.assert_array_equal(np.flatnonzero(f["Touches image border"]) + 1, touching)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32, ">u2"])
def test_intensities_match_regionprops(dtype: type | str) -> None:
    labels = relabel_mask("cells", random_labels_2d(3)).labels
    rng = np.random.default_rng(0)
    inten = (rng.random((3, *labels.shape)) * 1000).astype(dtype)
    if dtype == ">u2":
        labels = labels.astype(">u4")  # big-endian labels too (TIFF data)
    if dtype is np.int32:
        inten -= 300  # negative values too
    stats = ("mean", "median", "std", "min", "max", "sum")
    ft = compute_features(labels, physical_size=0.5, intensity_image=inten,
                          marker_names=["CD3", "CD45", "DAPI"],
                          alternative_ids={"CD3": "RRID:AB_000001"}, statistics=stats)
    rp = regionprops_table(labels, intensity_image=np.moveaxis(inten, 0, -1), properties=(
        "intensity_mean", "intensity_median", "intensity_std", "intensity_min", "intensity_max"))
    for c, marker in enumerate(["CD3", "CD45", "DAPI"]):
        for st_, prop in (("mean intensity", "intensity_mean"),
                          ("median intensity", "intensity_median"),
                          ("intensity standard deviation", "intensity_std"),
                          ("min intensity", "intensity_min"), ("max intensity", "intensity_max")):
            np.testing.assert_allclose(ft.frame[f"{marker} {st_}".casefold()], rp[f"{prop}-{c}"],
                                       rtol=1e-6 if dtype is np.float32 else 1e-10,
                                       err_msg=f"{marker} {st_}")
        total = np.bincount(labels.ravel(), weights=inten[c].ravel().astype(np.float64))[1:]
        np.testing.assert_allclose(ft.frame[f"{marker} total intensity".casefold()], total,
                                   rtol=1e-12)
        spec = ft.specs[f"{marker} mean intensity".casefold()]
        assert (spec.feature_class, spec.unit, spec.type) == ("antibody", "intensity", "float")
        # case-folded names (HuBMAP's conversion looks them up so); the spelling is kept
        assert f"the {marker} intensity" in spec.description
    assert ft.specs["cd3 mean intensity"].alternative_id == "RRID:AB_000001"
    assert ft.specs["dapi max intensity"].alternative_id == "DAPI"


def test_intensities_3d_single_marker_and_default_names() -> None:
    vol = relabel_mask("nuclei", synthetic_nuclei_3d((8, 32, 32), n_objects=10, seed=4)).labels
    inten = np.random.default_rng(1).integers(0, 255, size=vol.shape, dtype=np.uint8)
    ft = compute_features(vol, physical_size=(1, 1, 2), intensity_image=inten,
                          statistics=["max", "mean"], morphology=False)
    rp = regionprops_table(vol, intensity_image=inten, properties=("intensity_mean",
                                                                   "intensity_max"))
    np.testing.assert_allclose(ft.frame["channel 0 mean intensity"], rp["intensity_mean"])
    np.testing.assert_allclose(ft.frame["channel 0 max intensity"], rp["intensity_max"])
    # statistics come out in the fixed order, morphology columns are left out
    assert [c for c in ft.frame.columns if "channel" in c] == [
        "channel 0 mean intensity", "channel 0 max intensity"]
    assert "Volume (cubic micrometer)" not in ft.frame


def _tiled(labels: np.ndarray, inten: np.ndarray | None, tile: int) -> acc_mod.Accumulator:
    """Accumulate copies of halo-padded tiles (as an out-of-core run would) and merge."""
    n = int(labels.max())
    nz, ny, nx = labels.shape
    halo = 2
    out = None
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, tile):
            y1, x1 = min(y0 + tile, ny), min(x0 + tile, nx)
            by0, bx0 = max(0, y0 - halo), max(0, x0 - halo)
            by1, bx1 = min(ny, y1 + halo), min(nx, x1 + halo)
            block = labels[:, by0:by1, bx0:bx1].copy()
            iblock = None if inten is None else inten[:, :, by0:by1, bx0:bx1].copy()
            part = acc_mod.accumulate(
                block, iblock, n_objects=n, moments=True, extremes=True,
                core=(0, nz, y0 - by0, y1 - by0, x0 - bx0, x1 - bx0),
                origin=(0, by0, bx0), image_shape=(nz, ny, nx))
            out = part if out is None else acc_mod.merge(out, part)
    assert out is not None
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), tile=st.integers(3, 40))
def test_tile_merge_equals_whole_image(seed: int, tile: int) -> None:
    labels = relabel_mask("cells", random_labels_2d(seed, (50, 64))).labels[np.newaxis]
    inten = np.random.default_rng(seed).random((2, *labels.shape)) * 100
    n = int(labels.max())
    whole = acc_mod.accumulate(labels, inten, n_objects=n, moments=True, extremes=True)
    tiled = _tiled(labels, inten, tile)
    for name in ("count", "lo", "hi", "border", "faces", "imin", "imax"):
        np.testing.assert_array_equal(getattr(tiled, name), getattr(whole, name), err_msg=name)
    # coordinate sums about different references: compare the exact totals
    for a in (whole, tiled):
        a.s1_abs = a.s1 + a.count[:, None] * a.ref  # type: ignore[attr-defined]
    np.testing.assert_array_equal(tiled.s1_abs, whole.s1_abs)  # type: ignore[attr-defined]
    for k, (i, j) in enumerate(acc_mod.MOMENT_PAIRS):
        def central(a: acc_mod.Accumulator, k: int = k, i: int = i, j: int = j) -> np.ndarray:
            n_ = np.maximum(a.count, 1)
            return a.s2[:, k] * n_ - a.s1[:, i] * a.s1[:, j]  # exact integers
        np.testing.assert_array_equal(central(tiled), central(whole))
    np.testing.assert_allclose(tiled.perimeter, whole.perimeter, rtol=1e-12)
    np.testing.assert_allclose(tiled.isum, whole.isum, rtol=1e-12)
    var = [(a.is2 - a.is1**2 / np.maximum(a.count, 1)[:, None]) for a in (tiled, whole)]
    np.testing.assert_allclose(var[0], var[1], rtol=1e-9, atol=1e-9)
    # hull rows merge by min / max over column tiles
    _, lo_w, hi_w = acc_mod.hull_rows(labels[0], whole)
    lo_t = np.full_like(lo_w, np.iinfo(np.int32).max)
    hi_t = np.full_like(hi_w, -1)
    for x0 in range(0, labels.shape[2], tile):
        _, lo_p, hi_p = acc_mod.hull_rows(labels[0, :, x0:x0 + tile], whole, x_origin=x0)
        lo_t, hi_t = np.minimum(lo_t, lo_p), np.maximum(hi_t, hi_p)
    np.testing.assert_array_equal(lo_t, lo_w)
    np.testing.assert_array_equal(hi_t, hi_w)


def test_results_are_deterministic() -> None:
    cells, _ = synthetic_tissue((200, 200), cell_spacing=14.0, seed=9)
    inten = np.random.default_rng(2).random((2, 200, 200)).astype(np.float32)
    runs = [compute_features(cells, physical_size=0.3, intensity_image=inten,
                             statistics=("mean", "std")).frame for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0], runs[1], check_exact=True)


def test_column_headers_follow_the_spec() -> None:
    cells, _ = synthetic_tissue((64, 64), cell_spacing=12.0, seed=2)
    vol = synthetic_nuclei_3d((6, 24, 24), n_objects=5, seed=1)
    tables = [
        compute_features(cells, physical_size=0.5, intensity_image=np.ones((1, 64, 64)),
                         statistics=("mean", "median", "std", "min", "max", "sum")),
        compute_features(vol, physical_size=(0.5, 0.5, 2.0)),
    ]
    for ft in tables:
        assert list(ft.frame.columns) == list(ft.specs)
        for name, spec in ft.specs.items():
            check_spec(spec)  # the table writer's own header rules
            assert spec.name == name and name.isascii() and name[0] not in "=+-@"
            assert spec.requirement == "OPTIONAL"
            assert spec.feature_class in ("morphology", "spatial", "antibody")
            if "micrometer)" in name and spec.unit != "square micrometer":
                assert spec.unit == "" and "micromet" in spec.description
        assert ft.frame.notna().all().all()


def test_bad_inputs_raise_named_errors() -> None:
    labels = relabel_mask("cells", random_labels_2d(1, (30, 40))).labels
    with pytest.raises(ShapeMismatchError, match=r"\(2, 30, 41\).*\(30, 40\)"):
        compute_features(labels, physical_size=1.0, intensity_image=np.zeros((2, 30, 41)))
    with pytest.raises(LabelError, match="label 2 is absent"):
        compute_features(np.array([[1, 3], [0, 0]], np.uint16), physical_size=1.0)
    # a huge raw id is refused before anything is allocated for it
    with pytest.raises(LabelError, match="relabel"):
        compute_features(np.array([[2**31 - 5, 0]], np.int64), physical_size=1.0)
    with pytest.raises(LabelError, match="negative"):
        compute_features(np.array([[-1, 1]], np.int32), physical_size=1.0)
    with pytest.raises(LabelError, match="integer"):
        compute_features(np.ones((3, 3), np.float32), physical_size=1.0)
    with pytest.raises(OptionError, match="z pixel size"):
        compute_features(np.ones((2, 3, 3), np.uint16), physical_size=(1.0, 1.0))
    with pytest.raises(OptionError, match="unknown intensity statistics"):
        compute_features(labels, physical_size=1.0, intensity_image=np.zeros((30, 40)),
                         statistics=("average",))
    with pytest.raises(OptionError, match="2 marker names for 1"):
        compute_features(labels, physical_size=1.0, intensity_image=np.zeros((30, 40)),
                         marker_names=["a", "b"])
    with pytest.raises(OptionError, match="twice"):
        compute_features(labels, physical_size=1.0, intensity_image=np.zeros((2, 30, 40)),
                         marker_names=["CD3", "cd3"])
    with pytest.raises(OptionError, match="formula"):
        compute_features(labels, physical_size=1.0, intensity_image=np.zeros((30, 40)),
                         marker_names=["=CD3"])
    with pytest.raises(OptionError, match="unknown markers"):
        compute_features(labels, physical_size=1.0, intensity_image=np.zeros((30, 40)),
                         marker_names=["CD3"], alternative_ids={"CD4": "RRID:AB_1"})


def _user_spec(name: str, **kw: object) -> ColumnSpec:
    base: dict[str, object] = {"type": "text", "feature_class": "ontology",
                               "description": "Cell type from the annotation."}
    base.update(kw)
    return ColumnSpec(name=name, **base)  # type: ignore[arg-type]


def test_user_columns_are_reindexed_to_object_ids() -> None:
    raw = np.array([[0, 70, 70], [5, 0, 900]], np.int64)
    mask = relabel_mask("cells", raw)  # 5 -> 1, 70 -> 2, 900 -> 3
    frame = pd.DataFrame({"Cell type": ["B", "A", "C"], "Score": [0.5, 0.25, 0.75]},
                         index=[70, 5, 900])
    specs = {"Cell type": _user_spec("Cell type", permissible_values=("A", "B", "C")),
             "Score": _user_spec("Score", type="float", feature_class="morphology")}
    ft = user_columns(frame, specs, mask.original_ids)
    assert isinstance(ft, FeatureTable)
    assert ft.frame.index.tolist() == [1, 2, 3] and ft.frame.index.name == "Object ID"
    assert ft.frame["Cell type"].tolist() == ["A", "B", "C"]
    assert ft.frame["Score"].tolist() == [0.25, 0.5, 0.75]
    # joined with computed features on the same Object IDs
    joined = compute_features(mask.labels, physical_size=1.0, morphology=False).join(ft)
    assert joined.frame.shape[0] == 3 and "Cell type" in joined.specs


@pytest.mark.parametrize(
    ("frame", "specs", "match"),
    [
        (pd.DataFrame({"T": ["A", "B"]}, index=[5, 70]), None, r"1 object.*no row.*\[900\]"),
        (pd.DataFrame({"T": ["A", "B", "C", "D"]}, index=[5, 70, 900, 4]), None,
         r"not objects of the mask.*\[4\]"),
        (pd.DataFrame({"T": ["A", "B", "C"]}, index=[5, 5, 900]), None, "repeat labels"),
        (pd.DataFrame({"T": ["A", "B", "C"]}, index=[5, 70, 900]),
         {"T": _user_spec("T", unit="micrometer")}, "Unit"),
        (pd.DataFrame({"T": ["A", "B", "C"]}, index=[5, 70, 900]),
         {"T": _user_spec("T", description=" ")}, "Description"),
        (pd.DataFrame({"T": ["A", "B", "C"]}, index=[5, 70, 900]),
         {"T": _user_spec("T", description="Typ\u00e9")}, "ASCII"),
        (pd.DataFrame({"T": ["A", "=B", "C"]}, index=[5, 70, 900]), None, "formula"),
        (pd.DataFrame({"T": [1, None, 3]}, index=[5, 70, 900]),
         {"T": _user_spec("T", type="integer")}, "empty"),
        (pd.DataFrame({"T": ["A", "B", "C"]}, index=[5, 70, 900]), {}, "no header cells"),
        (pd.DataFrame({"T": ["A", "B", "C"]}, index=["a", "b", "c"]), None, "integer labels"),
    ],
)
def test_user_columns_refusals(
    frame: pd.DataFrame, specs: dict[str, ColumnSpec] | None, match: str
) -> None:
    mask = relabel_mask("cells", np.array([[0, 70, 70], [5, 0, 900]], np.int64))
    specs = {"T": _user_spec("T")} if specs is None else specs
    with pytest.raises(TableFormatError, match=match):
        user_columns(frame, specs, mask.original_ids)


def test_regionprops_single_object_reference() -> None:
    """A hand-checked object: a 3 x 4 rectangle with one corner pixel removed."""
    img = np.zeros((6, 7), np.uint8)
    img[1:4, 2:6] = 1
    img[1, 2] = 0
    f = compute_features(img, physical_size=2.0).frame
    r = regionprops(img, spacing=(2.0, 2.0))[0]
    assert f.at[1, "Pixel count"] == 11
    assert f.at[1, "Area (square micrometer)"] == 44.0
    assert f.at[1, "Extent"] == pytest.approx(11 / 12)
    assert f.at[1, "Perimeter (micrometer)"] == pytest.approx(r.perimeter)
    assert f.at[1, "Solidity"] == pytest.approx(r.solidity)
    assert not f.at[1, "Touches image border"]
