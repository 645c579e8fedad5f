"""Exports to AnnData / MuData / SpatialData, checked against plain rereads of the bundle.

Every kind of bundle the suite writes goes through ``to_mudata()`` and is written to
``.h5mu`` and to zarr, then read back with mudata; expectations come from pandas and
tifffile rereads of the bundle's own files. No exported column may be ``object`` dtype
holding anything but strings (HuBMAP's conversion died on exactly that).
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from _plain import plain_table, table_path, tiff_levels
from helpers import expect_reference
from maskbundle import (
    ColumnSpec,
    HubmapConversionWarning,
    MissingDependencyError,
    read_bundle,
    read_qupath,
    validate_bundle,
    write_segmentation_bundle,
)
from maskbundle.cli import main
from maskbundle.synthetic import synthetic_tissue

ad = pytest.importorskip("anndata")
md = pytest.importorskip("mudata")

DOI = "10.17504/protocols.io.example"
X_CLASSES = {"antibody": "antibody", "gene": "gene", "ims": "IMS"}


@contextlib.contextmanager
def quiet_writers() -> Iterator[None]:
    """mudata 0.3 and anndata's zarr writer announce future defaults; not our findings."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*autosharding.*", category=UserWarning)
        try:
            ctx: Any = md.set_options(pull_on_update=False)
        except Exception:  # option gone in newer mudata
            ctx = contextlib.nullcontext()
        with ctx:
            yield


# -- the bundles ------------------------------------------------------------------------


def _tissue(shape: tuple[int, int] = (90, 80), seed: int = 2) -> dict[str, np.ndarray]:
    cells, nuclei = synthetic_tissue(shape, cell_spacing=14.0, seed=seed)
    return {"cells": cells, "nuclei": nuclei}


def _bundle_2d_tsv(root: Path) -> Path:
    return write_segmentation_bundle(root, _tissue(), physical_size=(0.5, 0.5),
                                     protocol_doi=DOI)


def _bundle_3d_xlsx(root: Path) -> Path:
    vol = np.zeros((5, 30, 34), np.uint16)
    vol[0:3, 2:12, 3:14] = 1
    vol[2:5, 15:28, 8:30] = 2
    vol[1:2, 20:25, 1:5] = 3
    return write_segmentation_bundle(root, {"nuclei": vol}, physical_size=(0.5, 0.5, 2.0),
                                     protocol_doi=DOI, objects_format="xlsx")


def _bundle_intensities(root: Path) -> Path:
    masks = _tissue()
    inten = np.random.default_rng(4).random((2, 90, 80)) * 100
    with pytest.warns(HubmapConversionWarning, match="aef3ff9"):
        return write_segmentation_bundle(
            root, masks, physical_size=(0.5, 0.5), protocol_doi=DOI,
            intensity_image=inten, marker_names=["DAPI", "CD3e"],
            alternative_ids={"CD3e": "RRID:AB_2728386"}, features=("morphology", "mean", "max"),
            objects_format="xlsx",
        )


def _bundle_user_columns(root: Path) -> Path:
    masks = _tissue()
    ids = np.unique(masks["cells"])
    ids = ids[ids != 0]
    frame = pd.DataFrame({
        "Cell type": ["T cell" if i % 2 else "B cell" for i in ids],
        "Neighbour count": (ids % 5).astype(np.int64),
        "Score": ids / 10.0,
        "CD8 counts": (ids % 3).astype(np.float64),
    }, index=pd.Index(ids, name="label"))
    specs = {
        "Cell type": ColumnSpec("Cell type", "text", "ontology", "Cell type by marker gating"),
        "Neighbour count": ColumnSpec("Neighbour count", "integer", "neighborhood",
                                      "Touching neighbours", unit="count"),
        "Score": ColumnSpec("Score", "float", "morphology", "A shape score"),
        "CD8 counts": ColumnSpec("CD8 counts", "float", "gene", "CD8A transcripts",
                                 unit="count", alternative_id="HGNC:1706"),
    }
    with pytest.warns(HubmapConversionWarning, match="'CD8 counts'"):
        return write_segmentation_bundle(
            root, masks, physical_size=(0.5, 0.5), protocol_doi=DOI,
            extra_columns={"cells": (frame, specs)},
        )


def _qupath_geojson(path: Path) -> Path:
    feats = []
    k = 0
    for row in range(4):
        for col in range(5):
            k += 1
            x0, y0 = 2 + col * 12, 2 + row * 12
            ring = [[x0, y0], [x0 + 9, y0], [x0 + 9, y0 + 9], [x0, y0 + 9], [x0, y0]]
            nuc = [[x0 + 3, y0 + 3], [x0 + 6, y0 + 3], [x0 + 6, y0 + 6], [x0 + 3, y0 + 6],
                   [x0 + 3, y0 + 3]]
            feats.append({
                "type": "Feature", "id": f"uid-{k}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "nucleusGeometry": {"type": "Polygon", "coordinates": [nuc]},
                "properties": {
                    "objectType": "cell",
                    "classification": {"name": "Tumor" if k % 2 else "Immune"},
                    "measurements": {
                        "Cell: Area µm^2": 20.0 + k, "Cell: CD3e mean": 0.5 * k,
                        "Nucleus: DAPI mean": 10.0 + k, "Nucleus: Area µm^2": 5.0,
                        "Cell: PanCK max": float(k % 4),
                    },
                },
            })
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def _bundle_qupath(root: Path) -> Path:
    root.mkdir()
    seg = read_qupath(_qupath_geojson(root / "cells.geojson"), shape=(52, 64),
                      class_types={"Tumor": "CL:0001064", "Immune": "CL:0000738"},
                      physical_size=0.5)
    with pytest.warns(HubmapConversionWarning, match="'cell: cd3e mean'"):
        return write_segmentation_bundle(root / "ds", seg, protocol_doi=DOI)


def _bundle_70k(root: Path) -> Path:
    # 2 x 2 pixel objects: 72,900 of them, features off to stay fast
    labels = np.arange(1, 270 * 270 + 1, dtype=np.uint32).reshape(270, 270)
    labels = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)
    return write_segmentation_bundle(root, {"cells": labels}, physical_size=0.5,
                                     protocol_doi=DOI, features=False)


BUNDLES = {
    "2d-tsv": _bundle_2d_tsv,
    "3d-xlsx": _bundle_3d_xlsx,
    "intensities": _bundle_intensities,
    "user-columns": _bundle_user_columns,
    "qupath": _bundle_qupath,
    "70k": _bundle_70k,
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    return {name: make(root / name) for name, make in BUNDLES.items()}


# -- checks -----------------------------------------------------------------------------


def assert_storable(frame: pd.DataFrame, where: str) -> None:
    """No column (and no index) of object dtype holding anything but str."""
    for name, values in [("<index>", frame.index), *frame.items()]:
        if values.dtype == object:
            bad = [v for v in values if not isinstance(v, str)]
            assert not bad, f"{where}[{name!r}]: object column holding {type(bad[0]).__name__}"


def assert_mudata_storable(mdata: Any) -> None:
    assert_storable(mdata.obs, "obs")
    for key, value in mdata.obsm.items():
        if isinstance(value, pd.DataFrame):
            assert_storable(value, f"obsm[{key!r}]")
    for name, mod in mdata.mod.items():
        assert_storable(mod.obs, f"mod[{name!r}].obs")
        assert_storable(mod.var, f"mod[{name!r}].var")


def expected_layout(ds: Path) -> dict[str, Any]:
    """From plain rereads: obs names, columns by class, X values by class."""
    out: dict[str, Any] = {"obs_names": [], "X": {}, "var": {}, "obs": {}, "spatial": {}}
    masks = pd.read_csv(ds / "derived/segmentation_masks/segmentation-masks.csv")["Mask name"]
    for mask in masks:
        data, head = plain_table(table_path(ds, mask))
        names = [f"{mask}-{i}" for i in data["Object ID"].astype(int)]
        out["obs_names"] += names
        classes = head.loc["Feature class"].str.casefold()
        for cls, key in X_CLASSES.items():
            cols = [c for c in head.columns if classes[c] == cls]
            if cols:
                vals = data[cols].replace("", "nan").astype(float).set_axis(names)
                vals.columns = [c.casefold() for c in cols]
                out["X"].setdefault(key, []).append(vals)
                for c in cols:
                    out["var"].setdefault(key, {})[c.casefold()] = (
                        head.at["Alternative ID", c], head.at["Description", c])
        for c in head.columns:
            if classes[c] == "mask":
                numeric = head.at["Type", c] in ("integer", "float")
                vals = data[c].replace("", "nan").astype(float) if numeric else data[c]
                out["obs"].setdefault(c.casefold(), {}).update(zip(names, vals, strict=True))
        out["spatial"].update(zip(names, data["X"].astype(int), strict=True))
    return out


def check_mudata(mdata: Any, ds: Path) -> None:
    want = expected_layout(ds)
    assert sorted(mdata.obs_names) == sorted(want["obs_names"])
    assert mdata.obs_names.is_unique
    assert_mudata_storable(mdata)
    for col, values in want["obs"].items():
        got = mdata.obs[col]
        expect = pd.Series(values).reindex(mdata.obs_names)
        if pd.api.types.is_numeric_dtype(got.dtype):
            np.testing.assert_allclose(got.to_numpy(float), expect.to_numpy(float), rtol=1e-6)
        else:
            assert got.astype(str).tolist() == expect.astype(str).tolist(), col
    x = mdata.obsm["X_spatial"]["x"]
    expect_x = pd.Series(want["spatial"]).reindex(mdata.obs_names)
    np.testing.assert_array_equal(x.to_numpy(np.int64), expect_x.to_numpy(np.int64))
    np.testing.assert_array_equal(
        mdata.obs["object id"].to_numpy(),
        [int(n.rsplit("-", 1)[1]) for n in mdata.obs_names])
    if not want["X"]:
        assert list(mdata.mod) == ["default"] and mdata.mod["default"].n_vars == 0
    for key, frames in want["X"].items():
        mod = mdata.mod[key]
        expect = pd.concat(frames).reindex(columns=list(mod.var_names))
        got = pd.DataFrame(np.asarray(mod.X), index=mod.obs_names, columns=mod.var_names)
        pd.testing.assert_frame_equal(got, expect.reindex(mod.obs_names), check_names=False,
                                      check_dtype=False, rtol=1e-6)
        for name, (alt, desc) in want["var"][key].items():
            assert mod.var.at[name, "alternative_id"] == alt
            assert mod.var.at[name, "description"] == desc


@pytest.mark.parametrize("kind", list(BUNDLES))
def test_to_mudata_writes_h5mu_and_zarr(kind: str, bundles: dict[str, Path],
                                        tmp_path: Path) -> None:
    ds = bundles[kind]
    with read_bundle(ds, validate=kind != "70k") as b:
        mdata = b.to_mudata()
    check_mudata(mdata, ds)
    with quiet_writers():
        mdata.write_h5mu(tmp_path / "out.h5mu")
        md.write_zarr(tmp_path / "out.zarr", mdata)
        back_h5 = md.read_h5mu(tmp_path / "out.h5mu")
        back_zarr = md.read_zarr(tmp_path / "out.zarr")
    for back in (back_h5, back_zarr):
        check_mudata(back, ds)


def test_to_anndata_one_mask(bundles: dict[str, Path], tmp_path: Path) -> None:
    ds = bundles["intensities"]
    data, _ = plain_table(table_path(ds, "nuclei"))
    with read_bundle(ds) as b:
        adata = b.to_anndata("nuclei")
        with pytest.raises(Exception, match="name one"):
            b.to_anndata()
    assert list(adata.obs_names) == [f"nuclei-{i}" for i in data["Object ID"]]
    assert list(adata.var_names) == ["dapi mean intensity", "dapi max intensity",
                                     "cd3e mean intensity", "cd3e max intensity"]
    np.testing.assert_allclose(adata.X[:, 2], data["cd3e mean intensity"].astype(float),
                               rtol=1e-6)
    assert set(adata.var["feature_class"]) == {"antibody"}
    np.testing.assert_allclose(adata.obsm["spatial"][:, 0], data["Centroid X"].astype(float),
                               rtol=1e-6)
    assert "morphology" in adata.obsm and "ontology" in adata.obsm
    adata.write_h5ad(tmp_path / "n.h5ad")
    back = ad.read_h5ad(tmp_path / "n.h5ad")
    assert_storable(back.obs, "obs")
    assert_storable(back.var, "var")
    assert back.uns["column_orig_name_mapping"]["obs"]["mask name"] == "Mask name"


# -- issue 15: marker columns HuBMAP's conversion cannot carry ---------------------------


def test_marker_columns_case_folded_spelling_kept_and_warned(
    bundles: dict[str, Path],
) -> None:
    ds = bundles["intensities"]
    _, head = plain_table(table_path(ds, "cells"))
    markers = [c for c in head.columns if head.at["Feature class", c] == "antibody"]
    assert markers and all(c == c.casefold() for c in markers)
    assert "DAPI" in head.at["Description", "dapi mean intensity"]
    assert head.at["Alternative ID", "dapi mean intensity"] == "DAPI"
    assert head.at["Alternative ID", "cd3e max intensity"] == "RRID:AB_2728386"
    assert "CD3e" in head.at["Description", "cd3e max intensity"]
    for kind in ("intensities", "qupath", "user-columns"):
        report = validate_bundle(bundles[kind])
        assert report.ok, report.format()
        warned = [f for f in report.warnings if f.code == "objects.hubmap-conversion"]
        assert warned and all("docs/hubmap-ingest.md" in f.message for f in warned)
        # the reference checker warns on the same columns and does not fail
        expect_reference(bundles[kind])
    plain = validate_bundle(bundles["2d-tsv"])
    assert not [f for f in plain.warnings if f.code == "objects.hubmap-conversion"]


def test_qupath_marker_columns_case_folded(bundles: dict[str, Path]) -> None:
    _, head = plain_table(table_path(bundles["qupath"], "cells"))
    classes = head.loc["Feature class"]
    assert "cell: cd3e mean" in head.columns and classes["cell: cd3e mean"] == "antibody"
    assert head.at["Alternative ID", "cell: cd3e mean"] == "Cell: CD3e mean"
    assert "Cell: CD3e mean" in head.at["Description", "cell: cd3e mean"]
    # counterstains are mask features, morphology keeps its spelling
    assert classes["Nucleus: DAPI mean"] == "mask"
    assert "Cell: Area um^2" in head.columns


# -- SpatialData --------------------------------------------------------------------------


def test_spatialdata_labels_and_tables(tmp_path: Path) -> None:
    sd = pytest.importorskip("spatialdata")
    masks = _tissue((700, 600), seed=7)
    ds = write_segmentation_bundle(tmp_path / "ds", masks, physical_size=(0.5, 0.4),
                                   protocol_doi=DOI, features=False)
    levels = tiff_levels(ds)
    assert len(levels) == 2
    with read_bundle(ds) as b, quiet_writers():
        sdata = b.to_spatialdata()
        sdata.write(tmp_path / "out.zarr")
        back = sd.read_zarr(tmp_path / "out.zarr")
        _check_spatialdata(sd, [sdata, back], ds, levels)  # sdata reads from the open bundle


def _check_spatialdata(sd: Any, objs: list[Any], ds: Path, levels: list[np.ndarray]) -> None:
    for c, mask in enumerate(("cells", "nuclei")):
        for obj in objs:
            tree = obj.labels[mask]
            for k, level in enumerate(levels):
                got = np.asarray(tree[f"scale{k}"]["image"].data)
                np.testing.assert_array_equal(got, level[c])
            scale = sd.transformations.get_transformation(tree, "global")
            np.testing.assert_allclose(scale.to_affine_matrix(("y", "x"), ("y", "x"))
                                       .diagonal()[:2], [0.4, 0.5])
            table = obj.tables[f"{mask}_table"]
            data, _ = plain_table(table_path(ds, mask))
            np.testing.assert_array_equal(table.obs["object_id"], data["Object ID"].astype(int))
            assert set(table.obs["region"]) == {mask}
            assert table.uns["spatialdata_attrs"]["instance_key"] == "object_id"
            np.testing.assert_array_equal(table.obsm["X_spatial"]["x"], data["X"].astype(int))
            assert_storable(table.obs, "obs")


def test_spatialdata_3d(bundles: dict[str, Path]) -> None:
    pytest.importorskip("spatialdata")
    ds = bundles["3d-xlsx"]
    (level0,) = tiff_levels(ds)
    with read_bundle(ds) as b:
        sdata = b.to_spatialdata()
        np.testing.assert_array_equal(np.asarray(sdata.labels["nuclei"].data), level0[0])


# -- CLI and missing extras ---------------------------------------------------------------


def test_cli_export_staged_no_overwrite(bundles: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    ds = str(bundles["2d-tsv"])
    out = tmp_path / "all.h5mu"
    with quiet_writers():
        res = runner.invoke(main, ["export", ds, "--to", "h5mu", "-o", str(out)])
        assert res.exit_code == 0, res.output
        check_mudata(md.read_h5mu(out), bundles["2d-tsv"])
        before = out.read_bytes()
        res = runner.invoke(main, ["export", ds, "--to", "h5mu", "-o", str(out)])
        assert res.exit_code == 2 and "already exists" in res.output
        assert out.read_bytes() == before
        res = runner.invoke(main, ["export", ds, "--to", "h5ad", "-o", str(tmp_path / "x.h5ad")])
        assert res.exit_code == 2 and "--only" in res.output
        assert not (tmp_path / "x.h5ad").exists()
        res = runner.invoke(main, ["export", ds, "--to", "h5ad", "--only", "nuclei",
                                   "-o", str(tmp_path / "n.h5ad")])
        assert res.exit_code == 0, res.output
    assert ad.read_h5ad(tmp_path / "n.h5ad").obs_names[0] == "nuclei-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.h5mu", "n.h5ad"]


def test_cli_bundle_prints_the_conversion_warning(tmp_path: Path) -> None:
    import tifffile

    masks = _tissue()
    tifffile.imwrite(tmp_path / "cells.tif", masks["cells"].astype(np.uint16))
    tifffile.imwrite(tmp_path / "int.tif", np.ones((1, 90, 80), np.uint16))
    res = CliRunner().invoke(main, [
        "bundle", str(tmp_path / "ds"), "--mask", f"cells={tmp_path / 'cells.tif'}",
        "--physical-size", "0.5", "--physical-size", "0.5", "--protocol-doi", DOI,
        "--intensity", str(tmp_path / "int.tif"), "--marker", "DAPI"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "'dapi mean intensity'" in lines[0] and "aef3ff9" in lines[0]


def test_missing_extra_is_named(bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mudata", None)  # import mudata -> ImportError
    with read_bundle(bundles["2d-tsv"]) as b, pytest.raises(
        MissingDependencyError, match=r"maskbundle\[anndata\]"
    ):
        b.to_mudata()


def test_conversion_problem_names_each_class() -> None:
    from maskbundle.bundle.hubmap import conversion_problem

    assert conversion_problem(["Area", "Cell type"], ["morphology", "ontology"]) is None
    msg = conversion_problem(["CD3 mean", "cd8 counts", "m/z 885.5"], ["antibody", "Gene", "IMS"])
    assert msg is not None
    assert "'CD3 mean', 'cd8 counts'" in msg and "KeyError" in msg and "1 name(s)" in msg
    assert "obsm['ims']" in msg and "'m/z 885.5'" in msg
    assert "aef3ff9" in msg and "docs/hubmap-ingest.md" in msg
    only_ims = conversion_problem(["m/z 885.5"], ["ims"])
    assert only_ims is not None and "fail" not in only_ims
