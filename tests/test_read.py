"""read_bundle: every part of a bundle read back equals a plain reread of its files.

Expected values come from tifffile, pandas and json on the written files, and from the
hand-built bundles of ``_bundles`` (written without maskbundle), never from the reader.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _bundles import build_bundle, edit_cell
from _plain import plain_table as _pandas_table
from _plain import tiff_levels as _tiff_levels
from maskbundle import (
    Bundle,
    BundleInvalidError,
    CorruptInputError,
    OptionError,
    read_bundle,
    write_segmentation_bundle,
)
from maskbundle.synthetic import synthetic_tissue

DOI = "10.17504/protocols.io.example"
SEG = Path("derived/segmentation_masks")


@pytest.fixture(scope="module")
def tissue_masks() -> dict[str, np.ndarray]:
    cells, nuclei = synthetic_tissue((600, 560), cell_spacing=20.0, seed=5)
    return {"cells": cells, "nuclei": nuclei}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory,
            tissue_masks: dict[str, np.ndarray]) -> Path:
    return write_segmentation_bundle(
        tmp_path_factory.mktemp("rd") / "ds", tissue_masks, physical_size=(0.5, 0.4),
        protocol_doi=DOI, adjacency=("centroid", "linkage"),
    )


def test_masks_levels_and_physical_size_equal_the_ome_tiff(written: Path) -> None:
    levels = _tiff_levels(written)
    with read_bundle(written) as b:
        assert isinstance(b, Bundle)
        assert b.mask_names == ("cells", "nuclei")
        assert b.n_levels == len(levels) == 2
        for c, name in enumerate(b.mask_names):
            assert b.masks[name].shape == levels[0].shape[1:]
            assert b.masks[name].dtype == levels[0].dtype
            for k, lazy in enumerate(b.levels(name)):
                np.testing.assert_array_equal(np.asarray(lazy), levels[k][c])
            np.testing.assert_array_equal(b.masks[name][100:140, 7], levels[0][c, 100:140, 7])
            np.testing.assert_array_equal(b.masks[name][..., -3:], levels[0][c, :, -3:])
        assert b.physical_size is not None
        assert (b.physical_size.x, b.physical_size.y) == (0.5, 0.4)
        assert b.report is not None and b.report.ok


def test_objects_tables_are_typed_by_the_type_row(written: Path) -> None:
    with read_bundle(written) as b:
        for name in b.mask_names:
            data, head = _pandas_table(written / SEG / f"{name}-objects.tsv")
            got = b.objects[name]
            assert got.index.name == "Object ID"
            np.testing.assert_array_equal(got.index.to_numpy(), data["Object ID"].astype(int))
            assert list(got.columns) == list(head.columns)
            for col in got.columns:
                typ = head.at["Type", col]
                if typ == "integer":
                    assert got[col].dtype == np.int64
                    np.testing.assert_array_equal(got[col], data[col].astype(np.int64))
                elif typ == "float":
                    assert got[col].dtype == np.float64
                    np.testing.assert_allclose(got[col], pd.to_numeric(data[col]), rtol=0)
                else:
                    assert got[col].tolist() == data[col].tolist()
            pd.testing.assert_frame_equal(
                b.headers[name].reset_index(drop=True), head.reset_index(drop=True),
                check_dtype=False, check_names=False,
            )
            assert b.feature_classes(name)["X"] == "spatial"


def test_adjacency_frames_and_graph(written: Path) -> None:
    with read_bundle(written) as b:
        for kind in ("centroid", "linkage"):
            plain = pd.read_csv(written / SEG / f"cells-{kind}-adjacency.csv")
            got = b.adjacency["cells"][kind]
            pd.testing.assert_frame_equal(got, plain, check_dtype=False)
            g = b.adjacency_graph("cells", kind, weighted=True)
            n = len(b.objects["cells"])
            assert g.shape == (n, n)
            dense = g.toarray()
            np.testing.assert_array_equal(dense, dense.T)
            a = plain["Object ID 1"].to_numpy() - 1
            c = plain["Object ID 2"].to_numpy() - 1
            np.testing.assert_allclose(dense[a, c], plain["Distance (micrometer)"])
            unweighted = b.adjacency_graph("cells", kind)
            assert unweighted.nnz == 2 * len(plain)
        with pytest.raises(OptionError, match="no mask"):
            b.adjacency_graph("glomeruli")


def test_provenance_and_manifest(written: Path) -> None:
    with read_bundle(written) as b:
        assert b.provenance == json.loads(
            (written / "derived/extras/provenance.json").read_text())
        plain = pd.read_csv(written / SEG / "segmentation-masks.csv", dtype=str)
        assert b.manifest is not None
        assert b.manifest.to_numpy().tolist() == plain.to_numpy().tolist()


def test_3d_xlsx_bundle_with_meshes(tmp_path: Path) -> None:
    vol = np.zeros((6, 40, 44), np.uint16)
    vol[1:4, 5:15, 5:18] = 1
    vol[2:6, 20:33, 10:30] = 2
    vol[0:3, 25:38, 32:42] = 3
    ds = write_segmentation_bundle(
        tmp_path / "ds", {"nuclei": vol}, physical_size=(0.5, 0.5, 2.0), protocol_doi=DOI,
        objects_format="xlsx", meshes=True,
    )
    levels = _tiff_levels(ds)
    data, _ = _pandas_table(ds / SEG / "nuclei-objects.xlsx")
    with read_bundle(ds) as b:
        assert b.is_3d and b.masks["nuclei"].axes == "ZYX"
        np.testing.assert_array_equal(np.asarray(b.masks["nuclei"]), levels[0][0])
        np.testing.assert_array_equal(b.masks["nuclei"][2, 20], vol[2, 20])
        assert b.objects["nuclei"]["Z"].tolist() == data["Z"].astype(int).tolist()
        assert b.physical_size is not None and b.physical_size.z == 2.0
        scene = b.load_mesh("nuclei")
        assert sorted(scene.graph.nodes_geometry, key=int) == ["1", "2", "3"]


def test_reads_a_bundle_written_without_maskbundle(tmp_path: Path) -> None:
    ds = build_bundle(tmp_path / "hand", fmt="xlsx")
    with read_bundle(ds) as b:
        assert b.objects["cells"]["Area"].dtype == np.int64
        assert b.objects["cells"]["Label"].eq("ok").all()
        assert set(b.adjacency["nuclei"]) == {"centroid", "linkage"}


def test_refuses_an_invalid_bundle_with_the_findings(tmp_path: Path) -> None:
    ds = build_bundle(tmp_path / "bad")
    edit_cell(ds / SEG / "cells-objects.tsv", 11, "X", "not a number")
    with pytest.raises(BundleInvalidError) as info:
        read_bundle(ds)
    msg = str(info.value)
    assert "\n" not in msg and "objects.number" in msg and "maskbundle validate" in msg
    assert info.value.report is not None
    assert any(f.code == "objects.number" for f in info.value.report.errors)
    with pytest.raises(BundleInvalidError, match="does not exist"):
        read_bundle(tmp_path / "missing")


def test_level_zero_is_not_loaded_until_indexed(tmp_path: Path) -> None:
    labels = np.zeros((2048, 2048), np.uint16)
    labels[100:200, 100:300] = 1
    labels[1500:1900, 1000:1100] = 2
    ds = write_segmentation_bundle(tmp_path / "big", {"cells": labels}, physical_size=0.5,
                                   protocol_doi=DOI, features=False)
    tracemalloc.start()
    try:
        b = read_bundle(ds, validate=False)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        window = b.masks["cells"][150:160, 95:105]
        _, peak_slice = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    b.close()
    # level 0 is 8 MiB; opening reads headers only, a 10x10 slice decodes one 512x512 tile
    assert peak < labels.nbytes / 8
    assert peak_slice < labels.nbytes / 8
    np.testing.assert_array_equal(window, labels[150:160, 95:105])


def test_unvalidated_read_names_a_broken_file(tmp_path: Path) -> None:
    ds = build_bundle(tmp_path / "hand")
    csv = ds / SEG / "cells-linkage-adjacency.csv"
    csv.write_text(csv.read_text().replace("\n1,", "\nx,", 1))
    with pytest.raises(CorruptInputError, match=r"cells-linkage-adjacency\.csv"):
        read_bundle(ds, validate=False)
    edit_cell(ds / SEG / "nuclei-objects.tsv", 12, "Object ID", "2.5")
    csv.unlink()
    with read_bundle(ds, validate=False) as b:
        assert b.objects["cells"].index.tolist()[:2] == [1, 2]  # read on access, fine
        with pytest.raises(CorruptInputError, match=r"nuclei-objects\.tsv"):
            b.objects["nuclei"]
