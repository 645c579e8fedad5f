"""QuPath GeoJSON export of a bundle: read_qupath gives back the bundle's pixels exactly.

Expected pixels and table values are read from the bundle's files with tifffile and
pandas; QuPath's side is maskbundle's read_qupath (its own scanline painter).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from ome_types import from_xml
from scipy import ndimage

from maskbundle import OptionError, OutputExistsError, read_qupath, write_segmentation_bundle
from maskbundle.synthetic import synthetic_tissue
from maskbundle.viewers.qupath import export_geojson

DOI = "10.17504/protocols.io.example"
SEG = Path("derived/segmentation_masks")


def _level0(ds: Path) -> dict[str, np.ndarray]:
    (tiff,) = (ds / SEG).glob("*.ome.tiff")
    with tifffile.TiffFile(tiff) as tf:
        data = tf.series[0].asarray(level=0)
        names = [c.name for c in from_xml(tf.ome_metadata).images[0].pixels.channels]
    data = data.reshape(-1, *data.shape[-2:])
    return dict(zip(names, data, strict=True))


def _table(ds: Path, mask: str) -> pd.DataFrame:
    raw = pd.read_csv(ds / SEG / f"{mask}-objects.tsv", sep="\t", header=None, dtype=str,
                      keep_default_na=False)
    frame = raw.iloc[10:].set_axis(list(raw.iloc[9]), axis=1)
    return frame.set_index(frame["Object ID"].astype(int))


@pytest.fixture(scope="module")
def matched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cells, nuclei = synthetic_tissue((180, 150), cell_spacing=18.0, seed=2)
    # one cell gets a one-pixel hole (away from its nucleus) and a second, far part
    c = int(cells[90, 75])
    inner = ndimage.binary_erosion(cells == c, np.ones((3, 3))) & (nuclei == 0)
    y, x = np.argwhere(inner)[0]
    cells[y, x] = 0
    cells[0:3, 0:3] = c
    nuclei[0:3, 0:3] = 0
    out = tmp_path_factory.mktemp("qp") / "ds"
    return write_segmentation_bundle(
        out, {"cells": cells, "nuclei": nuclei}, physical_size=(0.5, 0.5), protocol_doi=DOI,
        object_types={"cells": "CL:0000236"},
    )


def test_cells_with_nuclei_round_trip_exactly(matched: Path, tmp_path: Path) -> None:
    out = export_geojson(matched, tmp_path / "cells.geojson")
    truth = _level0(matched)
    doc = json.loads(out.read_text())
    kinds = {f["properties"]["objectType"] for f in doc["features"]}
    assert kinds == {"cell"}
    assert len(doc["features"]) == len(np.unique(truth["cells"])) - 1
    seg = read_qupath(out, shape=truth["cells"].shape)
    np.testing.assert_array_equal(seg.masks["cells"].labels, truth["cells"])
    # nuclei come back numbered by their cell: the same partition of the pixels
    got = np.asarray(seg.masks["nuclei"].labels)
    np.testing.assert_array_equal(got > 0, truth["nuclei"] > 0)
    pairs = np.unique(np.stack([got[got > 0], truth["nuclei"][got > 0]]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    # and each nucleus is drawn with the cell that holds most of it (brute force)
    for cell, nuc in pairs.T:
        inside = truth["cells"][truth["nuclei"] == nuc]
        assert np.bincount(inside).argmax() == cell
    # the multi-part cell is a MultiPolygon with a hole
    (multi,) = [f["geometry"] for f in doc["features"] if f["geometry"]["type"] == "MultiPolygon"]
    assert sorted(len(rings) for rings in multi["coordinates"]) == [1, 2]


def test_measurements_classification_and_names(matched: Path, tmp_path: Path) -> None:
    out = export_geojson(matched, tmp_path / "cells.geojson")
    cells, nuclei = _table(matched, "cells"), _table(matched, "nuclei")
    area = "Area (square micrometer)"
    for f in json.loads(out.read_text())["features"]:
        props = f["properties"]
        mask, oid = props["name"].split("-")
        assert mask == "cells"
        oid_i = int(oid)
        assert props["classification"]["name"] == cells.at[oid_i, "Object type"] == "CL:0000236"
        assert props["measurements"][f"Cell: {area}"] == float(cells.at[oid_i, area])
        nid = props["measurements"].get("Nucleus: Object ID")
        if nid is not None:
            assert props["measurements"][f"Nucleus: {area}"] == float(nuclei.at[int(nid), area])
        # centroids are QuPath's own measurements, not copied
        assert "Cell: X" not in props["measurements"]


def test_bytes_stable_and_no_overwrite(matched: Path, tmp_path: Path) -> None:
    a = export_geojson(matched, tmp_path / "a.geojson")
    b = export_geojson(matched, tmp_path / "b.geojson")
    assert a.read_bytes() == b.read_bytes()
    before = a.read_bytes()
    with pytest.raises(OutputExistsError):
        export_geojson(matched, a)
    assert a.read_bytes() == before
    export_geojson(matched, a, masks=["nuclei"], overwrite=True)
    assert a.read_bytes() != before


def test_single_mask_and_unmatched_masks_are_detections(tmp_path: Path) -> None:
    cells, nuclei = synthetic_tissue((120, 100), cell_spacing=18.0, seed=4)
    cells[:12, :12] = 0
    nuclei[:12, :12] = 0
    nuclei[3:8, 3:8] = nuclei.max() + 1  # a nucleus without a cell: the masks do not match
    ds = write_segmentation_bundle(tmp_path / "ds", {"cells": cells, "nuclei": nuclei},
                                   physical_size=0.5, protocol_doi=DOI)
    truth = _level0(ds)
    out = export_geojson(ds, tmp_path / "all.geojson")
    feats = json.loads(out.read_text())["features"]
    assert {f["properties"]["objectType"] for f in feats} == {"detection"}
    assert "nucleusGeometry" not in feats[0]
    assert len(feats) == (len(np.unique(truth["cells"])) - 1) + (len(np.unique(truth["nuclei"])) - 1)
    one = export_geojson(ds, tmp_path / "nuclei.geojson", masks=["nuclei"])
    seg = read_qupath(one, shape=truth["nuclei"].shape, detection_mask="nuclei",
                      mask_names=("cells", "nucleus"))
    np.testing.assert_array_equal(seg.masks["nuclei"].labels, truth["nuclei"])


def test_bad_requests(matched: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="no mask 'glomeruli'"):
        export_geojson(matched, tmp_path / "x.geojson", masks=["glomeruli"])
    assert not (tmp_path / "x.geojson").exists()
    vol = np.zeros((3, 20, 20), dtype=np.uint16)
    vol[1, 5:9, 5:9] = 1
    ds = write_segmentation_bundle(tmp_path / "vol", {"cells": vol},
                                   physical_size=(0.5, 0.5, 2.0), protocol_doi=DOI)
    with pytest.raises(OptionError, match="3D"):
        export_geojson(ds, tmp_path / "v.geojson")
    assert list(tmp_path.glob("*.geojson")) == [] and list(tmp_path.glob(".*")) == []


def test_export_to_geojson(matched: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from maskbundle.cli import main

    out = tmp_path / "cli.geojson"
    result = CliRunner().invoke(main, ["export", str(matched), "--to", "geojson", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == export_geojson(matched, tmp_path / "api.geojson").read_bytes()
    again = CliRunner().invoke(main, ["export", str(matched), "--to", "geojson", "-o", str(out)])
    assert again.exit_code == 2 and len(again.output.strip().splitlines()) == 1
    nuclei = tmp_path / "nuclei.geojson"
    result = CliRunner().invoke(main, ["export", str(matched), "--to", "geojson", "-o",
                                       str(nuclei), "--only", "nuclei"])
    assert result.exit_code == 0, result.output
    seg = read_qupath(nuclei, shape=_level0(matched)["nuclei"].shape, detection_mask="nuclei",
                      mask_names=("cells", "nucleus"))
    np.testing.assert_array_equal(seg.masks["nuclei"].labels, _level0(matched)["nuclei"])
