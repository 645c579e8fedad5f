"""Feature columns in written bundles: API options, CLI options, reread from the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner
from skimage.measure import regionprops_table
from skimage.segmentation import relabel_sequential

from helpers import DOI
from maskbundle import (
    ColumnSpec,
    HubmapConversionWarning,
    Mask,
    OptionError,
    ShapeMismatchError,
    TableFormatError,
    write_segmentation_bundle,
)
from maskbundle.bundle import write
from maskbundle.cli import main
from maskbundle.io.tables import read_table_cells
from maskbundle.rules import HEADER_LABELS
from maskbundle.synthetic import synthetic_tissue

SEG = Path("derived/segmentation_masks")
REQUIRED = ["Object ID", "Source file", "Mask name", "Mask ID",
            "Protocol for mask creation (DOI)", "Annotation tool", "Object type", "X", "Y", "Z"]


def _table(path: Path) -> tuple[dict[str, dict[str, str]], pd.DataFrame]:
    """Header cells per column and the data rows (strings) of an objects table."""
    rows = read_table_cells(path)
    names = rows[9]
    rows = [r + [""] * (len(names) - len(r)) for r in rows]
    head = {name: {HEADER_LABELS[i]: rows[i][j] for i in range(8)}
            for j, name in enumerate(names) if j}
    return head, pd.DataFrame(rows[10:], columns=names)


@pytest.fixture
def sparse_cells() -> np.ndarray:
    cells, _ = synthetic_tissue((120, 100), cell_spacing=14.0, seed=3)
    return np.where(cells > 0, cells.astype(np.int64) * 3 + 7, 0)


def _feature_bundle(path: Path, sparse_cells: np.ndarray) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    inten = rng.integers(0, 4000, size=(2, *sparse_cells.shape), dtype=np.uint16)
    originals = np.unique(sparse_cells[sparse_cells > 0])
    order = originals[::-1]  # any row order
    user = pd.DataFrame({"Cell type": np.where(order % 2 == 0, "even", "odd")}, index=order)
    spec = ColumnSpec("Cell type", "text", "ontology", "Parity of the original label.",
                      permissible_values=("even", "odd"))
    with pytest.warns(HubmapConversionWarning, match="'cd3 mean intensity'"):
        out = write_segmentation_bundle(
            path, {"cells": sparse_cells}, physical_size=(0.5, 0.5), protocol_doi=DOI,
            intensity_image=inten, marker_names=["CD3", "DAPI"],
            alternative_ids={"CD3": "RRID:AB_2728386"},
            features=("morphology", "mean", "max"),
            extra_columns={"cells": (user, {"Cell type": spec})},
        )
    return out, inten


def test_bundle_with_features_passes_the_reference_checker(
    tmp_path: Path, sparse_cells: np.ndarray, checker: object
) -> None:
    out, _ = _feature_bundle(tmp_path / "ds", sparse_cells)
    checker(out)  # type: ignore[operator]


def test_bundle_tables_hold_features_markers_and_user_columns(
    tmp_path: Path, sparse_cells: np.ndarray
) -> None:
    out, inten = _feature_bundle(tmp_path / "ds", sparse_cells)
    originals = np.unique(sparse_cells[sparse_cells > 0])
    head, data = _table(out / SEG / "cells-objects.tsv")
    cols = list(data.columns)
    assert cols[:10] == REQUIRED
    assert cols[10:13] == ["Centroid X", "Centroid Y", "Pixel count"]
    assert cols[-5:] == ["cd3 mean intensity", "cd3 max intensity", "dapi mean intensity",
                         "dapi max intensity", "Cell type"]
    assert head["cd3 mean intensity"]["Alternative ID"] == "RRID:AB_2728386"
    assert head["dapi mean intensity"]["Alternative ID"] == "DAPI"
    assert "DAPI" in head["dapi mean intensity"]["Description"]
    assert head["cd3 mean intensity"]["Unit"] == "intensity"
    assert head["cd3 mean intensity"]["Feature class"] == "antibody"
    assert head["Area (square micrometer)"]["Unit"] == "square micrometer"
    assert head["Perimeter (micrometer)"]["Unit"] == ""
    assert head["Cell type"]["Permissible values"] == "even | odd"

    # independent references on the relabelled image
    relab, _, _ = relabel_sequential(sparse_cells)
    ids = data["Object ID"].astype(int).to_numpy()
    np.testing.assert_array_equal(ids, np.arange(1, originals.size + 1))
    counts = np.bincount(relab.ravel())[1:]
    for c, marker in enumerate(["CD3", "DAPI"]):
        mean = np.bincount(relab.ravel(), weights=inten[c].ravel())[1:] / counts
        np.testing.assert_allclose(data[f"{marker.lower()} mean intensity"].astype(float), mean,
                                   rtol=1e-6)
    rp = regionprops_table(relab, spacing=(0.5, 0.5), properties=("area", "centroid",
                                                                   "solidity"))
    np.testing.assert_allclose(data["Area (square micrometer)"].astype(float), rp["area"])
    np.testing.assert_allclose(data["Solidity"].astype(float), rp["solidity"], rtol=1e-6)
    np.testing.assert_array_equal(data["X"].astype(int), np.rint(rp["centroid-1"] / 0.5))
    np.testing.assert_array_equal(data["Y"].astype(int), np.rint(rp["centroid-0"] / 0.5))
    np.testing.assert_allclose(data["Centroid X"].astype(float), rp["centroid-1"] / 0.5,
                               rtol=1e-6)
    # user values follow their original labels
    expected = np.where(originals % 2 == 0, "even", "odd")  # Object ID k <-> originals[k-1]
    np.testing.assert_array_equal(data["Cell type"].to_numpy(), expected)

    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    assert prov["features"]["morphology"] is True
    assert prov["features"]["intensity_statistics"] == ["mean", "max"]


def test_features_false_writes_only_required_columns(tmp_path: Path,
                                                     sparse_cells: np.ndarray) -> None:
    out = write_segmentation_bundle(tmp_path / "ds", {"cells": sparse_cells},
                                    physical_size=0.5, protocol_doi=DOI, features=False)
    _, data = _table(out / SEG / "cells-objects.tsv")
    assert list(data.columns) == REQUIRED


def test_default_adds_morphology_only_without_intensity(tmp_path: Path) -> None:
    cells, nuclei = synthetic_tissue((64, 64), cell_spacing=12.0, seed=1)
    out = write_segmentation_bundle(tmp_path / "ds", {"cells": cells, "nuclei": nuclei},
                                    physical_size=0.5, protocol_doi=DOI, objects_format="xlsx")
    for name in ("cells", "nuclei"):
        _, data = _table(out / SEG / f"{name}-objects.xlsx")
        assert "Eccentricity" in data.columns
        assert not any("intensity" in c for c in data.columns)


def test_model_masks_carry_user_columns(tmp_path: Path) -> None:
    labels = np.array([[0, 4, 4], [9, 0, 2]], np.uint8)
    feats = pd.DataFrame({"Score": [0.5, 2.5, 1.5]}, index=[9, 2, 4])
    mask = Mask(labels, mask_id="CL:0000000", features=feats,
                feature_specs={"Score": ColumnSpec("Score", "float", "morphology",
                                                   "A score per object (arbitrary units).")})
    out = write_segmentation_bundle(tmp_path / "ds", {"cells": mask}, physical_size=1.0,
                                    protocol_doi=DOI)
    _, data = _table(out / SEG / "cells-objects.tsv")
    assert data["Score"].astype(float).tolist() == [2.5, 1.5, 0.5]  # labels 2, 4, 9


def test_refusals_leave_nothing(tmp_path: Path, sparse_cells: np.ndarray) -> None:
    target = tmp_path / "ds"
    kw = {"physical_size": 0.5, "protocol_doi": DOI}
    with pytest.raises(ShapeMismatchError, match=r"\(2, 120, 99\).*\(120, 100\)"):
        write_segmentation_bundle(target, {"cells": sparse_cells},
                                  intensity_image=np.zeros((2, 120, 99)), **kw)
    with pytest.raises(OptionError, match="need an intensity image"):
        write_segmentation_bundle(target, {"cells": sparse_cells}, features=("mean",), **kw)
    with pytest.raises(OptionError, match="unknown"):
        write_segmentation_bundle(target, {"cells": sparse_cells}, features=("area",), **kw)
    with pytest.raises(OptionError, match="no intensity statistic"):
        write_segmentation_bundle(target, {"cells": sparse_cells}, features=False,
                                  intensity_image=np.zeros((120, 100)), **kw)
    partial = pd.DataFrame({"T": ["a"]}, index=[int(sparse_cells.max())])
    spec = ColumnSpec("T", "text", "ontology", "Text.")
    with pytest.raises(TableFormatError, match="no row"):
        write_segmentation_bundle(target, {"cells": sparse_cells},
                                  extra_columns={"cells": (partial, {"T": spec})}, **kw)
    clash = pd.DataFrame({"X": np.ones(np.unique(sparse_cells).size - 1)},
                         index=np.unique(sparse_cells)[1:])
    with pytest.raises(TableFormatError, match=r"'X' .*required column"):
        write_segmentation_bundle(target, {"cells": sparse_cells}, extra_columns={
            "cells": (clash, {"X": ColumnSpec("X", "float", "spatial", "Clash.")})}, **kw)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_intensity_from_ome_tiff_names_markers(tmp_path: Path) -> None:
    cells, _ = synthetic_tissue((80, 72), cell_spacing=12.0, seed=2)
    np.save(tmp_path / "cells.npy", cells)
    inten = np.random.default_rng(3).integers(0, 255, (2, 80, 72), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.ome.tif", inten, ome=True,
                     metadata={"axes": "CYX", "Channel": {"Name": ["CD45", "PanCK"]}})
    out = tmp_path / "ds"
    args = ["bundle", str(out), "--mask", f"cells={tmp_path / 'cells.npy'}",
            "--physical-size", "0.5", "--physical-size", "0.5", "--protocol-doi", DOI,
            "--intensity", str(tmp_path / "img.ome.tif"), "--features", "morphology,mean,std"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    _, data = _table(out / SEG / "cells-objects.tsv")
    assert {"cd45 mean intensity", "panck intensity standard deviation"} <= set(data.columns)
    assert res.output.count("warning: cells-objects.tsv: HuBMAP's post-ingest conversion") == 1
    relab, _, _ = relabel_sequential(cells)
    mean = np.bincount(relab.ravel(), weights=inten[0].ravel())[1:] / np.bincount(
        relab.ravel())[1:]
    np.testing.assert_allclose(data["cd45 mean intensity"].astype(float), mean, rtol=1e-6)
    # --marker overrides, --features none drops every feature column
    res = CliRunner().invoke(main, [*args[:-2], "--features", "none", "--overwrite"])
    assert res.exit_code == 2 and "no intensity statistic" in res.output
    res = CliRunner().invoke(main, [*args, "--marker", "A", "--marker", "B", "--overwrite"])
    assert res.exit_code == 0, res.output
    _, data = _table(out / SEG / "cells-objects.tsv")
    assert "a mean intensity" in data.columns
    res = CliRunner().invoke(main, [*args[:-1], "bogus", "--overwrite"])
    assert res.exit_code == 2 and "bogus" in res.output


def test_tables_beyond_excel_limit_fall_back_to_tsv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a limit of 30 objects stands in for Excel's 1,048,566 (same code path, fast)
    monkeypatch.setattr(write, "EXCEL_MAX_OBJECTS", 30)
    cells, nuclei = synthetic_tissue((100, 100), cell_spacing=12.0, seed=4)
    small = np.where(nuclei > 0, 1, 0)  # one object
    with pytest.warns(UserWarning, match="row limit"):
        out = write_segmentation_bundle(tmp_path / "ds", {"cells": cells, "nuclei": small},
                                        physical_size=1.0, protocol_doi=DOI,
                                        objects_format="xlsx")
    assert (out / SEG / "cells-objects.tsv").is_file()
    assert not (out / SEG / "cells-objects.xlsx").exists()
    assert (out / SEG / "nuclei-objects.xlsx").is_file()
    _, data = _table(out / SEG / "cells-objects.tsv")
    assert len(data) > 30 and "Solidity" in data.columns


def test_tables_carry_only_types_hubmaps_conversion_writes(
    tmp_path: Path, sparse_cells: np.ndarray
) -> None:
    """Border contact is integer 0/1 (brute force), no boolean column, Object type filled."""
    some = int(np.unique(sparse_cells[sparse_cells > 0])[0])
    out = write_segmentation_bundle(
        tmp_path / "ds", {"cells": sparse_cells, "nuclei": sparse_cells},
        physical_size=(0.5, 0.5), protocol_doi=DOI,
        object_types={"cells": {some: "CL:0000236"}},
    )
    for name, default in (("cells", "CL:0000000"), ("nuclei", "GO:0005634")):
        head, rows = _table(out / SEG / f"{name}-objects.tsv")
        assert all(h["Type"] != "boolean" for h in head.values())
        assert head["Touches image border"]["Type"] == "integer"
        relabelled, _, _ = relabel_sequential(sparse_cells)
        edge = np.concatenate([relabelled[0], relabelled[-1], relabelled[:, 0], relabelled[:, -1]])
        ids = rows["Object ID"].astype(int).to_numpy()
        expected = np.isin(ids, edge[edge > 0]).astype(int)
        np.testing.assert_array_equal(rows["Touches image border"].astype(int), expected)
        assert set(rows["Touches image border"]) <= {"0", "1"}
        types = rows["Object type"].tolist()
        if name == "cells":  # the one given label keeps its type, every other row the mask id
            assert types[0] == "CL:0000236"
            types = types[1:]
        assert set(types) == {default}
