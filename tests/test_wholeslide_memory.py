"""Whole-slide memory (issue 10): tables written in row blocks, columns parked on disk,
and a streamed bundle's feature values checked against scikit-image.

The streaming tests in test_bundle_streaming.py compare our streamed bundle with our
in-memory bundle; here the references are independent: Python's own ``repr``/``str`` of
every cell, the one-shot CSV writer, and ``skimage.measure.regionprops_table`` on the
same mask.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops_table

from maskbundle import write_segmentation_bundle
from maskbundle.bundle.objects import objects_frame
from maskbundle.errors import OutputWriteError
from maskbundle.io import cellwriter, tables
from maskbundle.io.adjacency_csv import format_adjacency_csv
from maskbundle.io.spill import SpilledFrame
from maskbundle.model import ColumnSpec, RelabelledMask
from maskbundle.synthetic import synthetic_tissue

DOI = "10.17504/protocols.io.example"


def _table(n: int) -> tuple[list[ColumnSpec], pd.DataFrame]:
    rng = np.random.default_rng(3)
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-8, 9, size=n)
    floats[::7] = np.nan  # missing values: empty cells
    floats[3] = 0.1 + 0.2  # a double whose shortest text is long
    specs = [
        ColumnSpec("Score", "float", "mask", "A float column."),
        ColumnSpec("Size", "integer", "morphology", "An integer column.", unit="count"),
        ColumnSpec("Note", "text", "mask", "A text column."),
    ]
    frame = pd.DataFrame({
        "Object ID": np.arange(1, n + 1, dtype=np.int64),
        "Score": floats,
        "Size": rng.integers(-(2**40), 2**40, size=n),
        "Note": np.array([f"cell {i % 5}" if i % 4 else "" for i in range(n)], dtype=object),
    })
    return specs, frame


def _expected_rows(frame: pd.DataFrame) -> list[str]:
    """Every data row as Python itself writes the cells (repr of the double, str else)."""
    out = []
    for oid, score, size, note in frame.itertuples(index=False):
        cell = "" if math.isnan(score) else repr(float(score))
        out.append("\t".join([str(int(oid)), cell, str(int(size)), str(note)]))
    return out


def test_objects_table_written_in_row_blocks_is_byte_identical(tmp_path, monkeypatch):
    specs, frame = _table(1000)
    whole = tmp_path / "whole.tsv"
    tables.write_objects_table(whole, specs, frame)  # 1000 rows: one block
    monkeypatch.setattr(cellwriter, "CHUNK_ROWS", 37)  # 28 blocks, formatted ahead in threads
    blocks = tmp_path / "blocks.tsv"
    tables.write_objects_table(blocks, specs, frame)
    assert blocks.read_bytes() == whole.read_bytes()
    lines = blocks.read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Object ID\t")) + 1
    assert lines[start:-1] == _expected_rows(frame)
    assert lines[-1] == ""  # one final newline
    # and the XLSX of the same table: block boundaries leave no trace either
    monkeypatch.setattr(cellwriter, "CHUNK_ROWS", 1 << 14)
    tables.write_objects_table(tmp_path / "whole.xlsx", specs, frame)
    monkeypatch.setattr(cellwriter, "CHUNK_ROWS", 37)
    tables.write_objects_table(tmp_path / "blocks.xlsx", specs, frame)
    assert (tmp_path / "blocks.xlsx").read_bytes() == (tmp_path / "whole.xlsx").read_bytes()


def test_adjacency_rows_in_blocks_equal_the_one_shot_csv(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    n = 1001
    a = np.sort(rng.integers(1, 5000, n))
    frame = pd.DataFrame({"Object ID 1": a, "Object ID 2": a + rng.integers(1, 50, n),
                          "Distance (micrometer)": rng.random(n) * 30})
    one_shot = format_adjacency_csv(frame)
    for rows in (1, 10, 1000, 1001, 5000):
        monkeypatch.setattr(tables, "ADJACENCY_CHUNK_ROWS", rows)
        tables.write_adjacency_rows(tmp_path / f"{rows}.csv", frame)
        assert (tmp_path / f"{rows}.csv").read_bytes() == one_shot, rows
    empty = frame.iloc[:0]
    tables.write_adjacency_rows(tmp_path / "empty.csv", empty)
    assert (tmp_path / "empty.csv").read_bytes() == b"Object ID 1,Object ID 2,Distance (micrometer)\n"


def test_constant_text_columns_hold_one_string_not_one_per_row():
    n = 50
    mask = RelabelledMask("cells", np.zeros((0, 0), np.uint8), np.arange(1, n + 1))
    _, frame = objects_frame(
        mask, source_file="ds.segmentations.ome.tiff", mask_id="CL:0000000",
        protocol_doi=DOI, annotation_tool="In-house", centroids_zyx=np.zeros((n, 3)),
        object_types=np.array(["CL:0000000"] * n, dtype=object),
    )
    for col in ("Source file", "Mask name", "Mask ID", "Protocol for mask creation (DOI)",
                "Annotation tool"):
        values = frame[col].to_numpy()
        assert len({id(v) for v in values}) == 1, col  # 8 bytes per row, not ~60
    assert list(frame["Mask name"].unique()) == ["cells"]


def test_spilled_frame_round_trip_and_cleanup(tmp_path):
    frame = pd.DataFrame(
        {"a": np.arange(5, dtype=np.int64), "b": np.linspace(0, 1, 5),
         "c": np.array(list("vwxyz"), dtype=object), "d": np.arange(5, dtype=np.uint8)},
        index=pd.RangeIndex(1, 6, name="Object ID"),
    )
    frame.attrs["kind"] = "test"
    spilled = SpilledFrame(frame, tmp_path)
    assert [p.name[:18] for p in tmp_path.iterdir()] == [".maskbundle-spill-"]
    back = spilled.load()
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == {"kind": "test"}
    assert list(tmp_path.iterdir()) == []


def test_spill_to_a_missing_directory_is_a_named_error(tmp_path):
    frame = pd.DataFrame({"a": np.arange(3.0)})
    with pytest.raises(OutputWriteError):
        SpilledFrame(frame, tmp_path / "missing")


def _objects_rows(path: Path) -> pd.DataFrame:
    """The data rows of an objects TSV, read by pandas from the ``Object ID`` line on."""
    lines = path.read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Object ID\t"))
    return pd.read_csv(path, sep="\t", skiprows=start)


def test_streamed_bundle_features_match_regionprops(tmp_path):
    shape = (700, 600)
    cells, _ = synthetic_tissue(shape, seed=5)
    spacing = (0.5, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # tile=256: many objects cross tiles and are recomputed in the second pass; the
        # centroid adjacency parks the feature columns on disk meanwhile
        out = write_segmentation_bundle(
            tmp_path / "st", {"cells": cells}, physical_size=spacing, protocol_doi=DOI,
            stem="ds", streaming=True, tile=256, adjacency=("centroid", "linkage"))
    assert not [p for p in tmp_path.iterdir() if "spill" in p.name or "staging" in p.name]
    got = _objects_rows(out / "derived/segmentation_masks/cells-objects.tsv")
    rp = regionprops_table(cells, spacing=spacing, properties=(
        "label", "num_pixels", "area", "perimeter", "area_convex", "solidity", "extent",
        "eccentricity", "equivalent_diameter_area", "axis_major_length",
        "axis_minor_length", "orientation", "centroid", "bbox"))
    # Object IDs are the labels ranked ascending: regionprops lists labels ascending too
    assert len(got) == rp["label"].size
    np.testing.assert_array_equal(got["Object ID"], np.arange(1, rp["label"].size + 1))
    np.testing.assert_array_equal(got["Pixel count"], rp["num_pixels"])
    for ours, theirs in {
        "Area (square micrometer)": "area", "Perimeter (micrometer)": "perimeter",
        "Convex area (square micrometer)": "area_convex", "Solidity": "solidity",
        "Extent": "extent", "Eccentricity": "eccentricity",
        "Equivalent diameter (micrometer)": "equivalent_diameter_area",
        "Major axis length (micrometer)": "axis_major_length",
        "Minor axis length (micrometer)": "axis_minor_length",
    }.items():
        atol = 1e-7 if "axis" in ours else 1e-9  # square roots of ~1e-16 moment noise
        np.testing.assert_allclose(got[ours], rp[theirs], rtol=1e-9, atol=atol, err_msg=ours)
    np.testing.assert_allclose(got["Centroid Y"] * spacing[0], rp["centroid-0"], rtol=1e-12)
    np.testing.assert_allclose(got["Centroid X"] * spacing[1], rp["centroid-1"], rtol=1e-12)
    # the required X / Y columns: the centroid in pixels, rounded half to even
    np.testing.assert_array_equal(got["X"], np.rint(rp["centroid-1"] / spacing[1]))
    np.testing.assert_array_equal(got["Y"], np.rint(rp["centroid-0"] / spacing[0]))
    theta = got["Orientation (radian)"].to_numpy()  # an axis: equal modulo pi
    np.testing.assert_allclose(np.cos(2 * theta), np.cos(2 * rp["orientation"]), atol=1e-9)
    np.testing.assert_allclose(np.sin(2 * theta), np.sin(2 * rp["orientation"]), atol=1e-9)
    np.testing.assert_array_equal(got["Bounding box Y min"], rp["bbox-0"])
    np.testing.assert_array_equal(got["Bounding box X min"], rp["bbox-1"])
    np.testing.assert_array_equal(got["Bounding box Y max"], rp["bbox-2"] - 1)
    np.testing.assert_array_equal(got["Bounding box X max"], rp["bbox-3"] - 1)
    border = ((rp["bbox-0"] == 0) | (rp["bbox-1"] == 0) | (rp["bbox-2"] == shape[0])
              | (rp["bbox-3"] == shape[1]))
    np.testing.assert_array_equal(got["Touches image border"], border.astype(int))


def test_parked_tables_live_in_the_stage_and_go_with_it(tmp_path, monkeypatch):
    # a failure while the tables wait on disk (during the centroid graph) leaves nothing
    # beside the target; the parked files were inside the staging directory
    import maskbundle.bundle.tiles as tiles

    cells, _ = synthetic_tissue((300, 300), seed=5)
    seen = []
    real = tiles.SpilledFrame

    def spy(frame, directory):
        seen.append(Path(directory))
        return real(frame, directory)

    def fail(*a, **k):
        raise RuntimeError("triangulation failed")

    monkeypatch.setattr(tiles, "SpilledFrame", spy)
    monkeypatch.setattr(tiles, "_centroid_graph", fail)
    out = tmp_path / "out"
    out.mkdir()
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="triangulation"):
        warnings.simplefilter("ignore")
        write_segmentation_bundle(out / "ds", {"cells": cells}, physical_size=(0.5, 0.5),
                                  protocol_doi=DOI, streaming=True, tile=256,
                                  adjacency=("centroid", "linkage"))
    assert seen and all(any(".staging-" in part for part in d.parts) for d in seen)
    assert list(out.iterdir()) == []
