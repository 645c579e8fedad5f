"""write_segmentation_bundle: files reread with independent readers and references."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from ome_types import from_xml, validate_xml
from skimage.measure import regionprops
from skimage.segmentation import relabel_sequential

from helpers import DOI
from maskbundle import (
    LabelError,
    MaskNameError,
    OptionError,
    OutputExistsError,
    ShapeMismatchError,
    TableFormatError,
    write_segmentation_bundle,
)
from maskbundle.io.tables import read_table_cells

SEG = Path("derived/segmentation_masks")


def _write(path: Path, masks: object, **kw: object) -> Path:
    first = next(iter(masks.values())) if isinstance(masks, dict) else None
    kw.setdefault("physical_size", (0.5, 0.5, 2.0) if np.ndim(first) == 3 else (0.5, 0.5))
    kw.setdefault("protocol_doi", DOI)
    return write_segmentation_bundle(path, masks, **kw)  # type: ignore[arg-type]


def _levels(tiff: Path) -> tuple[str, list[np.ndarray], str]:
    with tifffile.TiffFile(tiff) as tf:
        s = tf.series[0]
        return s.axes, [lv.asarray() for lv in s.levels], tf.ome_metadata or ""


def test_two_masks_round_trip_with_pyramid_tables_and_manifest(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cells = np.kron(rng.integers(0, 400, (70, 45)), np.ones((16, 16), np.int64))  # 1120 x 720
    cells[cells % 7 == 0] = 0
    nuclei = np.where(rng.random(cells.shape) < 0.001, 70000 + cells, 0)  # sparse ids above uint16
    out = _write(tmp_path / "my set", {"cells": cells, "nuclei": nuclei}, stem="Sample 1")
    tiff = out / SEG / "Sample-1.segmentations.ome.tiff"
    axes, levels, xml = _levels(tiff)
    assert axes == "CYX" and levels[0].dtype == np.uint16 and len(levels) == 2
    for ch, raw in enumerate((cells, nuclei)):
        ref, _, _ = relabel_sequential(raw)  # independent relabel, ascending
        assert np.array_equal(levels[0][ch], ref)
    for k, lv in enumerate(levels[1:], start=1):
        assert np.array_equal(lv, levels[0][..., :: 2**k, :: 2**k])
    validate_xml(xml)
    px = from_xml(xml).images[0].pixels
    assert [c.name for c in px.channels] == ["cells", "nuclei"]
    assert (px.physical_size_x, px.physical_size_y, px.size_t) == (0.5, 0.5, 1)
    assert px.dimension_order.value == "XYCZT"
    with tifffile.TiffFile(tiff) as tf:
        page = tf.pages[0]
        assert page.is_tiled and (page.tilewidth, page.tilelength) == (512, 512)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE

    rows = read_table_cells(out / SEG / "cells-objects.tsv")
    assert rows[8] == [""] * len(rows[9]) and rows[9][:3] == ["Object ID", "Source file", "Mask name"]
    ref, _, _ = relabel_sequential(cells)
    props = regionprops(ref)
    assert [int(r[0]) for r in rows[10:]] == [p.label for p in props]
    for r, p in zip(rows[10:], props, strict=True):
        assert (int(r[7]), int(r[8]), int(r[9])) == (round(p.centroid[1]), round(p.centroid[0]), 0)
        assert r[1] == tiff.name and r[2] == "cells" and r[3] == "CL:0000000" and r[4] == DOI
    with open(out / SEG / "segmentation-masks.csv", newline="") as f:
        manifest = list(csv.reader(f))
    assert manifest[1][:3] == ["0", "cells", tiff.name]
    assert manifest[2][7] == str(len(np.unique(nuclei)) - 1)
    # label maps list the original ids of the changed masks, in Object ID order
    with open(out / "derived/extras/nuclei-label-map.csv", newline="") as f:
        lm = list(csv.reader(f))
    assert lm[0] == ["Original label", "Object ID"]
    assert [int(r[0]) for r in lm[1:]] == np.unique(nuclei[nuclei > 0]).tolist()
    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    assert prov["masks"]["nuclei"]["objects"] == len(lm) - 1
    assert "created" not in json.dumps(prov)


def test_large_label_counts_use_uint32(tmp_path: Path) -> None:
    labels = np.arange(1, 300 * 250 + 1, dtype=np.int64).reshape(300, 250)
    out = _write(tmp_path / "d", {"cells": labels})
    _, levels, _ = _levels(next((out / SEG).glob("*.ome.tiff")))
    assert levels[0].dtype == np.uint32 and int(levels[0].max()) == 75000


def test_3d_masks_are_czyx_with_physical_size_z(tmp_path: Path, checker) -> None:  # type: ignore[no-untyped-def]
    from maskbundle.synthetic import synthetic_nuclei_3d

    nuc = synthetic_nuclei_3d((6, 40, 50), n_objects=8, seed=2)
    cells = np.where(nuc > 0, nuc + 10, 0)
    out = _write(tmp_path / "vol", {"nuclei": nuc, "cells": cells})
    axes, levels, xml = _levels(next((out / SEG).glob("*.ome.tiff")))
    assert axes == "CZYX" and levels[0].shape == (2, 6, 40, 50)
    assert np.array_equal(levels[0][1], relabel_sequential(cells)[0])
    px = from_xml(xml).images[0].pixels
    assert (px.size_z, px.physical_size_z) == (6, 2.0)
    rows = read_table_cells(out / SEG / "nuclei-objects.tsv")
    for r, p in zip(rows[10:], regionprops(nuc), strict=True):
        assert int(r[9]) == round(p.centroid[0]) and int(r[7]) == round(p.centroid[2])
    checker(out)


@pytest.mark.parametrize("fmt", ["tsv", "xlsx"])
def test_output_is_byte_identical_and_passes_reference_checker(tmp_path: Path, tissue, checker, fmt: str) -> None:  # type: ignore[no-untyped-def]
    cells, nuclei = tissue
    kw = {"stem": "same", "objects_format": fmt, "object_types": {"cells": "CL:0000000"},
          "contributors": [{"first_name": "Ada", "last_name": "Lovelace", "affiliation": "Lab",
                            "orcid": "0000-0002-1825-0097", "is_contact": True}]}
    a = _write(tmp_path / "a", {"cells": cells, "nuclei": nuclei}, **kw)
    b = _write(tmp_path / "b", {"cells": cells, "nuclei": nuclei}, **kw)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert any(p.suffix == f".{fmt}" for p in files_a)
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    checker(a)
    if fmt == "xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(a / SEG / "cells-objects.xlsx", read_only=True)
        assert wb.sheetnames == ["MAIN"]
        wb.close()
    contrib = (a / "extras/contributors.tsv").read_text().splitlines()
    assert contrib[1].split("\t")[:2] == ["Ada", "Lovelace"] and "\tYes\t" in contrib[1]


def test_empty_mask_gives_header_only_table(tmp_path: Path, checker) -> None:  # type: ignore[no-untyped-def]
    out = _write(tmp_path / "e", {"cells": np.zeros((20, 30), np.uint8)})
    rows = read_table_cells(out / SEG / "cells-objects.tsv")
    assert len(rows) == 10
    checker(out)


def test_parent_image_sizes_are_copied_and_mismatch_refused(tmp_path: Path, checker) -> None:  # type: ignore[no-untyped-def]
    parent = tmp_path / "parent.ome.tiff"
    tifffile.imwrite(parent, np.zeros((3, 64, 80), np.uint8), metadata={
        "axes": "CYX", "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": 0.3251, "PhysicalSizeYUnit": "µm"})
    labels = np.zeros((64, 80), np.uint16)
    labels[10:20, 10:30] = 4
    out = _write(tmp_path / "p", {"cells": labels}, parent_image=parent, physical_size=None)
    _, _, xml = _levels(next((out / SEG).glob("*.ome.tiff")))
    px = from_xml(xml).images[0].pixels
    assert (px.physical_size_x, px.physical_size_y) == (0.325, 0.3251)
    checker(out, "--parent", str(parent))
    with pytest.raises(ShapeMismatchError, match=r"parent image"):
        _write(tmp_path / "q", {"cells": labels[:, :79]}, parent_image=parent, physical_size=None)
    assert not (tmp_path / "q").exists()


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("masks", "kw", "error"),
    [
        ({"cells": np.ones((8, 8), bool)}, {}, LabelError),
        ({"cells": -np.ones((8, 8), np.int16)}, {}, LabelError),
        ({"cells": np.full((8, 8), np.nan)}, {}, LabelError),
        ({"cells": np.zeros(8, np.uint8)}, {}, LabelError),
        ({"cells": np.zeros((2, 2, 8, 8), np.uint8)}, {}, LabelError),
        ({"cells": np.zeros((8, 8), np.uint8), "nuclei": np.zeros((8, 9), np.uint8)}, {},
         ShapeMismatchError),
        ({"Cells": np.zeros((8, 8), np.uint8)}, {}, MaskNameError),
        ({"nuclei2": np.zeros((8, 8), np.uint8)}, {}, MaskNameError),
        ({"cells": np.zeros((8, 8), np.uint8)}, {"physical_size": None}, OptionError),
        ({"cells": np.zeros((8, 8), np.uint8)}, {"physical_size": (0.5, -1)}, OptionError),
        ({"cells": np.zeros((8, 8), np.uint8)}, {"protocol_doi": None}, OptionError),
        ({"cells": np.zeros((8, 8), np.uint8)}, {"protocol_doi": "not a doi"}, OptionError),
        ({"tubules": np.zeros((8, 8), np.uint8)}, {}, OptionError),  # no mask id
        ({"cells": np.zeros((8, 8), np.uint8)}, {"mask_ids": {"cells": "CL_0000000"}}, OptionError),
        ({"cells": np.zeros((8, 8), np.uint8)}, {"object_types": {"cells": "cell"}}, OptionError),
        ({"cells": np.eye(8, dtype=np.uint8)}, {"object_types": {"cells": {7: "CL:0000236"}}},
         OptionError),
        ({"cells": np.zeros((3, 8, 8), np.uint8)}, {"physical_size": (0.5, 0.5)}, OptionError),
        ({"cells": np.zeros((8, 8), np.uint8)}, {"annotation_tool": "napari"}, OptionError),
        ({"cells": np.zeros((8, 8), np.uint8)}, {"objects_format": "csv"}, OptionError),
        ({"cells": np.zeros((8, 8), np.uint8)},
         {"contributors": [{"first_name": "A", "last_name": "B", "affiliation": "C",
                            "orcid": "https://orcid.org/0000-0002-1825-0097"}]}, OptionError),
    ],
    ids=["boolean", "negative", "nan", "1d", "4d", "shape-mismatch", "upper-case-name",
         "digit-in-name", "no-physical-size", "negative-physical-size", "no-doi", "bad-doi",
         "no-mask-id", "bad-mask-id", "bad-object-type", "object-type-unknown-label",
         "3d-without-z", "bad-annotation-tool", "bad-format", "orcid-url"],
)
def test_refusals_leave_nothing_behind(tmp_path: Path, masks, kw, error) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "out"
    with pytest.raises(error):
        _write(target, masks, **kw)
    assert not target.exists()
    assert _listing(tmp_path) == []


def test_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import maskbundle.bundle.write as write

    def boom(*args: object, **kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(write, "write_label_ome_tiff", boom)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "out", {"cells": np.eye(8, dtype=np.uint8)})
    assert _listing(tmp_path) == []


def test_table_cells_that_break_the_format_are_refused(tmp_path: Path) -> None:
    import pandas as pd

    from maskbundle.io.tables import write_objects_table
    from maskbundle.model import ColumnSpec

    spec = ColumnSpec("Note", "text", "mask", "free text")
    with pytest.raises(TableFormatError, match="formula"):
        write_objects_table(tmp_path / "t.tsv", [spec],
                            pd.DataFrame({"Object ID": [1], "Note": ["=SUM(A1)"]}))
    with pytest.raises(TableFormatError, match="tab"):
        write_objects_table(tmp_path / "t.tsv", [spec],
                            pd.DataFrame({"Object ID": [1], "Note": ["a\tb"]}))
    with pytest.raises(TableFormatError, match="ASCII"):
        write_objects_table(tmp_path / "t.tsv", [spec],
                            pd.DataFrame({"Object ID": [1], "Note": ["µm"]}))
    with pytest.raises(TableFormatError, match="Unit"):
        write_objects_table(tmp_path / "t.tsv", [ColumnSpec("L", "float", "morphology", "x",
                                                            unit="micrometer")],  # type: ignore[arg-type]
                            pd.DataFrame({"Object ID": [1], "L": [1.0]}))
    assert not (tmp_path / "t.tsv").exists()


def test_existing_target_refused_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    _write(target, {"cells": np.eye(8, dtype=np.uint8)})
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        _write(target, {"cells": np.eye(8, dtype=np.uint8)})
    _write(target, {"cells": np.eye(8, dtype=np.uint8)}, overwrite=True)
    assert (target / SEG).is_dir()
    assert _listing(tmp_path) == ["out"]
    # a folder with anything of the user's is never replaced, even with overwrite
    (target / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a bundle written by maskbundle"):
        _write(target, {"cells": np.eye(8, dtype=np.uint8)}, overwrite=True)
    assert (target / "keep.txt").read_text() == "mine"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays(np.int32, st.one_of(st.tuples(st.integers(1, 20), st.integers(1, 20)),
                                  st.tuples(st.integers(2, 3), st.integers(1, 9), st.integers(1, 9))),
              elements=st.integers(0, 2**31 - 1)))
def test_written_bundle_reads_back_equal(tmp_path_factory: pytest.TempPathFactory, arr: np.ndarray) -> None:
    out = _write(tmp_path_factory.mktemp("h") / "d", {"cells": arr})
    _, levels, _ = _levels(next((out / SEG).glob("*.ome.tiff")))
    got = levels[0].reshape(arr.shape)
    # same partition, numbered ascending by original label
    uniq = np.unique(arr[arr > 0])
    expect = np.zeros(arr.shape, np.int64)
    expect[arr > 0] = np.searchsorted(uniq, arr[arr > 0]) + 1
    assert np.array_equal(got, expect)


def test_masks_may_be_model_objects_with_source_and_object_type_maps(tmp_path: Path) -> None:
    from maskbundle import Mask, Segmentation

    labels = np.zeros((10, 10), np.int64)
    labels[1:3, 1:3] = 40
    labels[5:8, 5:8] = 9
    seg = Segmentation({"cells": Mask(labels, mask_id="CL:0000000",
                                      object_types={40: "CL:0000236", 9: "CL:0000084"},
                                      source={"tool": "test"})}, physical_size=None)
    out = _write(tmp_path / "m", seg)
    rows = read_table_cells(out / SEG / "cells-objects.tsv")
    assert [(r[0], r[6]) for r in rows[10:]] == [("1", "CL:0000084"), ("2", "CL:0000236")]
    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    assert prov["masks"]["cells"]["source"] == {"tool": "test"}


def test_read_label_ome_tiff_accepts_plain_3d_tiff_and_refuses_time_series(tmp_path: Path) -> None:
    from maskbundle.errors import CorruptInputError
    from maskbundle.io.ometiff import read_label_ome_tiff

    vol = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    tifffile.imwrite(tmp_path / "plain.tif", vol, photometric="minisblack")
    img = read_label_ome_tiff(tmp_path / "plain.tif")
    assert img.labels.shape == (1, 3, 4, 5) and np.array_equal(img.labels[0], vol)
    tifffile.imwrite(tmp_path / "t.ome.tif", np.zeros((2, 3, 4, 5), np.uint16),
                     metadata={"axes": "TZYX"})
    with pytest.raises(CorruptInputError, match="axis 'T'"):
        read_label_ome_tiff(tmp_path / "t.ome.tif")


def test_bio_formats_reads_channels_levels_and_planes(tmp_path: Path) -> None:
    """Bio-Formats' ImageInfo (the reader behind HuBMAP's pipelines) on a 3D pyramid.

    Runs when MASKBUNDLE_BIOFORMATS_JAR names a bioformats_package.jar (`make test` fetches
    one, see tests/fetch_bioformats_jar.py) and java is on PATH.
    """
    import subprocess

    jar = _bioformats_jar()
    from maskbundle.synthetic import synthetic_nuclei_3d

    vol = synthetic_nuclei_3d((3, 600, 700), n_objects=12, seed=1)
    out = _write(tmp_path / "bf", {"nuclei": vol, "cells": np.where(vol > 0, vol + 3, 0)})
    info = subprocess.run([*_java(jar), "loci.formats.tools.ImageInfo", "-no-upgrade", "-nopix",
                           "-noflat", str(next((out / SEG).glob("*.ome.tiff")))],
                          capture_output=True, text=True, check=True, timeout=300).stdout
    for expected in ("Resolutions = 2", "Width = 700", "Height = 600", "SizeZ = 3",
                     "SizeC = 2", "Pixel type = uint16", "Plane #3 <=> Z 0, C 1, T 0"):
        assert expected in info, expected


def _bioformats_jar() -> str:
    import os
    import shutil

    jar = os.environ.get("MASKBUNDLE_BIOFORMATS_JAR", "")
    if not jar or not Path(jar).is_file() or shutil.which("java") is None:
        pytest.skip("set MASKBUNDLE_BIOFORMATS_JAR and install java to run Bio-Formats")
    return jar


def _java(jar: str) -> list[str]:
    # headless, and no check for a newer Bio-Formats (it would try the network)
    return ["java", "-Djava.awt.headless=true", "-Dbioformats_can_do_upgrade_check=false",
            "-cp", jar]


@pytest.mark.parametrize("streaming", [False, True])
def test_bio_formats_decodes_every_channel_to_the_relabelled_pixels(
        tmp_path: Path, streaming: bool) -> None:
    """Bio-Formats' converter (Java's own inflater) reads level 0 of each channel back as
    the labels relabelled by scikit-image: an independent decode of our tiles."""
    import subprocess

    import tifffile
    from skimage.segmentation import relabel_sequential

    from maskbundle.synthetic import synthetic_tissue

    jar = _bioformats_jar()
    cells, nuclei = synthetic_tissue((1200, 1100), seed=3)
    out = _write(tmp_path / "ds", {"cells": cells, "nuclei": nuclei}, streaming=streaming)
    image = next((out / SEG).glob("*.ome.tiff"))
    subprocess.run([*_java(jar), "loci.formats.tools.ImageConverter", "-no-upgrade",
                    "-overwrite", "-series", "0", str(image), str(tmp_path / "plane_C%c.tif")],
                   capture_output=True, text=True, check=True, timeout=300)
    for c, labels in enumerate((cells, nuclei)):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / f"plane_C{c}.tif"),
                                      relabel_sequential(labels)[0])


def test_progress_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.eye(16, dtype=np.uint8)
    _write(tmp_path / "quiet", {"cells": labels})
    assert capsys.readouterr().err == ""
    _write(tmp_path / "loud", {"cells": labels, "nuclei": labels}, progress=True)
    err = capsys.readouterr().err
    assert "writing loud" in err and "/3 " in err  # two tables + the OME-TIFF
