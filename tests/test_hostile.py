"""Hostile inputs (issue 13, "Reading hostile files" and the validator's misses).

Every case asserts a named MaskBundleError subclass (CLI: exit 2, one line, nothing
written), or for the validator a named finding; nothing may crash the process, so the
crash-prone readers run in a child process (tests/_fuzz.py) where a signal is seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from numpy.lib import format as npformat

from _bundles import build_bundle, two_masks
from helpers import DOI
from maskbundle import (
    add_adjacency,
    add_meshes,
    read_cellpose,
    read_labels,
    read_qupath,
    read_stardist,
    validate_bundle,
    write_segmentation_bundle,
    write_upload_metadata,
)
from maskbundle.cli import main
from maskbundle.errors import CorruptInputError, MaskBundleError
from maskbundle.io.ometiff import read_label_ome_tiff, read_parent_image
from maskbundle.io.readers import read_xlsx_grid
from maskbundle.measure.adjacency import linkage_adjacency

TESTS = Path(__file__).resolve().parent
SEG = Path("derived/segmentation_masks")


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def assert_one_line_exit_2(result: Any, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in result.output


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- crafted files ---------------------------------------------------------------------


def npy_claiming(path: Path, shape: tuple[int, ...], payload: bytes = b"\0" * 100) -> Path:
    with open(path, "wb") as fh:
        npformat.write_array_header_1_0(fh, {"descr": "<u2", "fortran_order": False, "shape": shape})
        fh.write(payload)
    return path


def tiff_claiming(path: Path, height: int, width: int) -> Path:
    """A small valid TIFF whose ImageLength/ImageWidth tags are then overwritten."""
    tifffile.imwrite(path, np.ones((32, 32), np.uint16), compression="zlib", tile=(16, 16))
    with tifffile.TiffFile(path, mode="r+b") as tf:
        tf.pages[0].tags["ImageWidth"].overwrite(width)
        tf.pages[0].tags["ImageLength"].overwrite(height)
    return path


def seg_npy(path: Path) -> Path:
    lab = np.zeros((12, 12), np.uint16)
    lab[2:5, 2:6] = 1
    lab[6:10, 3:9] = 2
    np.save(path, {"masks": lab, "outlines": lab * 0, "filename": "x.tif",  # type: ignore[arg-type]
                   "flows": [np.zeros((3, 12, 12), np.float32)], "diameter": 12.0})
    return path


def segfault_seg_npy(path: Path) -> Path:
    """The one-byte mutation that crashed ``read_cellpose`` (and ``np.load``) with SIGSEGV:
    the dict's object dtype ``'O8'`` becomes ``'M8'`` (datetime64) while its pickled state
    still carries the object flags (63), which ``dtype.__setstate__`` copies unchecked."""
    data = bytearray(seg_npy(path).read_bytes())
    i = data.index(b"\x8c\x02O8")
    assert data[i + 4 :].startswith(b"\x94\x89\x88")  # dtype('O8', False, True) ...
    data[i + 2] = ord("M")
    path.write_bytes(bytes(data))
    return path


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, check=False)


# -- .npy / .npz / TIFF sizes ------------------------------------------------------------


@pytest.mark.parametrize("reader", ["cellpose", "labels"])
def test_npy_header_larger_than_the_file_is_refused_before_allocating(
    tmp_path: Path, reader: str
) -> None:
    path = npy_claiming(tmp_path / "huge_seg.npy", (10**6, 10**6))
    read = read_cellpose if reader == "cellpose" else read_labels
    t = time.monotonic()
    with pytest.raises(CorruptInputError, match=r"declares shape \(1000000, 1000000\).*100 bytes"):
        read(path)
    assert time.monotonic() - t < 5


def test_intensity_npy_header_larger_than_the_file_is_refused(tmp_path: Path) -> None:
    path = npy_claiming(tmp_path / "stain.npy", (10**6, 10**6))
    out = tmp_path / "out"
    with pytest.raises(CorruptInputError, match="declares shape"):
        write_segmentation_bundle(out, two_masks(), physical_size=(0.5, 0.5), protocol_doi=DOI,
                                  intensity_image=path)
    assert not out.exists()


def test_npz_member_larger_than_declared_is_refused(tmp_path: Path) -> None:
    inner = npy_claiming(tmp_path / "cells.npy", (10**6, 10**6))
    path = tmp_path / "labels.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(inner, "cells.npy")
    with pytest.raises(CorruptInputError, match="declares shape"):
        read_labels(path)


def test_tiff_claiming_60000_squared_is_refused(tmp_path: Path) -> None:
    path = tiff_claiming(tmp_path / "forged.tif", 60000, 60000)
    assert path.stat().st_size < 1000
    for read in (read_labels, read_label_ome_tiff):
        with pytest.raises(CorruptInputError, match=r"declares 7200000000 bytes"):
            read(path)


def test_validator_reports_a_forged_tiff_size(tmp_path: Path) -> None:
    root = build_bundle(tmp_path / "ds", {"cells": two_masks()["cells"]}, adjacency=False)
    tiff = next((root / SEG).glob("*.ome.tiff"))
    with tifffile.TiffFile(tiff, mode="r+b") as tf:
        tf.pages[0].tags["ImageWidth"].overwrite(60000)
        tf.pages[0].tags["ImageLength"].overwrite(60000)
    t = time.monotonic()
    report = validate_bundle(root)
    assert time.monotonic() - t < 10
    assert not report.ok
    assert {f.code for f in report.errors} & {"tiff.read", "tiff.channel-count"}, report.format()


def test_tiff_whose_directories_loop_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.tif"
    tifffile.imwrite(path, np.ones((8, 8), np.uint8))
    data = bytearray(path.read_bytes())
    first = int.from_bytes(data[4:8], "little")
    n = int.from_bytes(data[first : first + 2], "little")
    at = first + 2 + 12 * n
    data[at : at + 4] = first.to_bytes(4, "little")  # next IFD = itself
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptInputError, match="loops back"):
        read_labels(path)


# -- the SIGSEGV ---------------------------------------------------------------------------


def test_the_seg_npy_that_crashed_the_process_now_raises(tmp_path: Path) -> None:
    path = segfault_seg_npy(tmp_path / "crash_seg.npy")
    proc = run_child(
        "import numpy as np\n"
        "from maskbundle.convert import read_cellpose\n"
        "from maskbundle.errors import CorruptInputError\n"
        f"try:\n    read_cellpose({str(path)!r})\nexcept CorruptInputError as e:\n"
        "    print('NAMED', e)\n"
        "assert np.dtype('f4').flags == 0 and not np.dtype('M8').hasobject\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NAMED" in proc.stdout and "'M8'" in proc.stdout


def test_pickled_dtype_flags_are_never_trusted(tmp_path: Path) -> None:
    """A uint16 dtype whose pickled flags claim object references (1 = NPY_ITEM_REFCOUNT)
    made numpy free 'objects' that were label values; now the array is rebuilt fresh."""
    path = seg_npy(tmp_path / "flags_seg.npy")
    data = bytearray(path.read_bytes())
    i = data.index(b"\x8c\x02u2")
    j = data.index(b"K\x00t", i)
    data[j + 1] = 1
    path.write_bytes(bytes(data))
    proc = run_child(
        "import gc, numpy as np\n"
        "from maskbundle.convert import read_cellpose\n"
        f"lab = read_cellpose({str(path)!r}).masks['cells'].labels\n"
        "assert lab.dtype == np.uint16 and not lab.dtype.hasobject and int(lab.max()) == 2\n"
        "del lab; gc.collect(); print('OK')\n"
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]
    assert "RuntimeError" not in proc.stderr


def test_seg_npy_still_round_trips_every_array_kind(tmp_path: Path) -> None:
    """The stand-ins rebuild what numpy pickled: dtypes, Fortran order, big-endian, text,
    object arrays, numpy scalars (checked against np.load of the same trusted file)."""
    lab = np.arange(30, dtype=np.uint32).reshape(5, 6)
    dat = {
        "masks": np.asfortranarray(lab),
        "outlines": lab.astype(">u4"),
        "ismanual": np.array([True, False]),
        "names": np.array(["ab", "c"]),
        "ragged": np.array([[1], [2, 3]], dtype=object),
        "diameter": np.float32(3.5),
        "est_diam": np.int64(-7),
        "complex": np.complex128(1 + 2j),
    }
    path = tmp_path / "kinds_seg.npy"
    np.save(path, dat)  # type: ignore[arg-type]
    from maskbundle.convert._safe_npy import load_npy_safely

    got = load_npy_safely(path)
    want = np.load(path, allow_pickle=True).item()
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        g = got[k]
        if isinstance(v, np.ndarray) and v.dtype.hasobject:
            assert [list(x) for x in g] == [list(x) for x in v]
        else:
            np.testing.assert_array_equal(g, v)
            assert np.asarray(g).dtype == np.asarray(v).dtype.newbyteorder("=")
    assert got["masks"].flags.f_contiguous


# -- fuzzing: every reader, seeded, bounded, in a child process -------------------------

FUZZ_KINDS = ["seg_npy", "npz", "details_npz", "tiff", "png", "geojson", "roi_zip", "tsv",
              "xlsx", "bundle_tiff", "bundle_tsv", "bundle_xlsx", "bundle_csv"]
FUZZ_SECONDS = float(os.environ.get("MASKBUNDLE_FUZZ_SECONDS", "2.5"))


@pytest.mark.parametrize("kind", FUZZ_KINDS)
def test_fuzzed_inputs_read_or_raise_a_named_error(tmp_path: Path, kind: str) -> None:
    """Seeded byte mutations and truncations of a valid file: each one reads, or raises a
    MaskBundleError subclass; the child process never dies of a signal."""
    proc = subprocess.run(
        [sys.executable, str(TESTS / "_fuzz.py"), kind, str(tmp_path), "13", "100000",
         str(FUZZ_SECONDS)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    last = lines[-1] if lines else {}
    assert proc.returncode == 0, (
        f"child died (status {proc.returncode}) after mutation {last}: {proc.stderr[-1500:]}"
    )
    assert "done" in last and last["done"] >= 20, (last, proc.stderr[-1500:])
    outcomes = [ln["outcome"] for ln in lines if "outcome" in ln]
    foreign = [o for o in outcomes if o.startswith("FOREIGN")]
    assert not foreign, foreign[:5]
    from maskbundle import errors

    named = {o for o in outcomes if o != "ok"}
    assert all(issubclass(getattr(errors, o), MaskBundleError) for o in named), named
    if not kind.startswith("bundle"):
        assert named, "no mutation was refused: the fuzzer is not reaching the reader"


# -- GeoJSON -------------------------------------------------------------------------------

GEOJSON_CASES = {
    "nested 100000 deep": "[" * 100_000 + "]" * 100_000,
    "5001-digit number": '{"type": "FeatureCollection", "features": [{"type": "Feature", '
    '"geometry": {"type": "Polygon", "coordinates": [[[' + "7" * 5001 + ', 1], [2, 2], '
    '[3, 1]]]}, "properties": {}}]}',
    "coordinates a number": '{"type": "FeatureCollection", "features": [{"type": "Feature", '
    '"geometry": {"type": "Polygon", "coordinates": 5}, "properties": {}}]}',
    "multipolygon of numbers": '{"type": "FeatureCollection", "features": [{"type": '
    '"Feature", "geometry": {"type": "MultiPolygon", "coordinates": [1, 2]}, '
    '"properties": {}}]}',
    "collections 40 deep": json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": json.loads(
            '{"type": "GeometryCollection", "geometries": [' * 40 + "]}" * 40)}]}),
    "not UTF-8": b"\xff\xfe{}".decode("latin-1"),
}


@pytest.mark.parametrize("case", sorted(GEOJSON_CASES))
def test_hostile_geojson_is_a_named_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "objects.geojson"
    text = GEOJSON_CASES[case]
    path.write_bytes(text.encode("latin-1" if case == "not UTF-8" else "utf-8"))
    with pytest.raises(CorruptInputError):
        read_qupath(path, shape=(16, 16))
    out = tmp_path / "out"
    result = cli("convert", "qupath", str(path), "--shape", "16", "16", "-o", str(out),
                 "--physical-size", "0.5", "--physical-size", "0.5", "--protocol-doi", DOI)
    assert_one_line_exit_2(result, "objects.geojson")
    assert not out.exists()


# -- parent OME-TIFF with an impossible pixel size ------------------------------------------


@pytest.mark.parametrize("value", ["-1", "NaN", "0", "abc"])
def test_parent_with_bad_physical_size_is_a_named_error(tmp_path: Path, value: str) -> None:
    parent = tmp_path / "parent.ome.tif"
    tifffile.imwrite(parent, np.zeros((48, 64), np.uint8), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    with tifffile.TiffFile(parent) as tf:
        xml = tf.ome_metadata
    assert xml is not None and 'PhysicalSizeX="0.5"' in xml
    tifffile.tiffcomment(parent, xml.replace('PhysicalSizeX="0.5"', f'PhysicalSizeX="{value}"').encode())
    with pytest.raises(CorruptInputError, match="PhysicalSize"):
        read_parent_image(parent)
    out = tmp_path / "out"
    with pytest.raises(CorruptInputError):
        write_segmentation_bundle(out, two_masks(), parent_image=parent, protocol_doi=DOI)
    assert not out.exists()
    np.save(tmp_path / "cells.npy", two_masks()["cells"])
    result = cli("bundle", str(out), "--mask", f"cells={tmp_path / 'cells.npy'}",
                 "--parent", str(parent), "--protocol-doi", DOI)
    assert_one_line_exit_2(result, "parent.ome.tif")
    assert not out.exists()


# -- provenance.json that is not JSON -----------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("hostile-bundles")
    two_d = write_segmentation_bundle(base / "two", two_masks(), physical_size=(0.5, 0.5),
                                      protocol_doi=DOI)
    vol = np.zeros((6, 20, 20), np.uint16)
    vol[1:4, 2:8, 2:8] = 1
    vol[2:5, 10:17, 9:18] = 2
    three_d = write_segmentation_bundle(base / "three", {"cells": vol},
                                        physical_size=(0.5, 0.5, 1.0), protocol_doi=DOI)
    return {"2d": Path(two_d), "3d": Path(three_d)}


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe"])
@pytest.mark.parametrize("command", ["adjacency", "mesh", "metadata"])
def test_provenance_not_json_is_a_named_error(
    tmp_path: Path, bundles: dict[str, Path], command: str, content: str
) -> None:
    root = _copy(bundles["3d" if command == "mesh" else "2d"], tmp_path / "ds")
    (root / "derived/extras/provenance.json").write_bytes(content.encode("latin-1"))
    before = snapshot(root)
    upload_tsv = tmp_path / "seg-metadata.tsv"
    with pytest.raises(CorruptInputError, match=r"provenance\.json"):
        if command == "adjacency":
            add_adjacency(root, adjacency="centroid")
        elif command == "mesh":
            add_meshes(root)
        else:
            write_upload_metadata(upload_tsv, [root], parent_dataset_id="HBM123.ABCD.456")
    args = {
        "adjacency": ["adjacency", str(root), "--adjacency", "centroid"],
        "mesh": ["mesh", str(root)],
        "metadata": ["metadata", str(upload_tsv), str(root),
                     "--parent-dataset-id", "HBM123.ABCD.456"],
    }[command]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = cli(*args)
    finally:
        os.chdir(cwd)
    assert_one_line_exit_2(result, "provenance.json")
    assert snapshot(root) == before
    assert not upload_tsv.exists()
    assert not list(root.parent.glob(".staging-*")) and not list(root.rglob(".staging-*"))


# -- linkage with a huge gap ---------------------------------------------------------------


def brute_force_gaps(lab: np.ndarray, s: tuple[float, float]) -> dict[tuple[int, int], float]:
    """Smallest gap between the pixel boxes of every pair of labels (SPEC definition)."""
    ys, xs = np.nonzero(lab)
    ids = lab[ys, xs].astype(np.int64)
    dy = np.maximum(np.abs(ys[:, None] - ys[None, :]) - 1, 0) * s[0]
    dx = np.maximum(np.abs(xs[:, None] - xs[None, :]) - 1, 0) * s[1]
    g = np.sqrt(dy**2 + dx**2)
    out: dict[tuple[int, int], float] = {}
    for a in np.unique(ids):
        for b in np.unique(ids):
            if a < b:
                out[(int(a), int(b))] = float(g[np.ix_(ids == a, ids == b)].min())
    return out


def test_linkage_with_max_gap_1e6_is_fast_and_exact() -> None:
    lab = two_masks((32, 32), seed=2)["cells"]
    t = time.monotonic()
    frame = linkage_adjacency(lab, physical_size=(0.5, 0.5), max_gap=1e6)
    assert time.monotonic() - t < 10
    want = brute_force_gaps(lab, (0.5, 0.5))
    got = {(int(a), int(b)): float(d) for a, b, d in frame.itertuples(index=False)}
    assert set(got) == set(want)  # every pair is within 1e6 um
    for k, d in got.items():
        assert d == pytest.approx(want[k], abs=1e-9)
    t = time.monotonic()
    linkage_adjacency(lab, physical_size=(0.5, 0.5), max_gap=1e300)
    assert time.monotonic() - t < 10


def test_cli_linkage_with_huge_gap_finishes(tmp_path: Path, bundles: dict[str, Path]) -> None:
    root = _copy(bundles["2d"], tmp_path / "ds")
    t = time.monotonic()
    result = cli("adjacency", str(root), "--adjacency", "linkage", "--max-gap", "1e6")
    assert result.exit_code in (0, 1), result.output
    assert time.monotonic() - t < 60
    assert list((root / SEG).glob("*-linkage-adjacency.csv"))


# -- the validator: names are never paths, foreign files never quoted ----------------------


def test_channel_name_is_never_a_path(tmp_path: Path) -> None:
    secret = tmp_path / "secret-objects.tsv"
    secret.write_text("TOPSECRET\tpassword\n" * 12)
    root = build_bundle(tmp_path / "ds", {"cells": two_masks()["cells"]}, adjacency=False,
                        names=["../../../secret"])
    report = validate_bundle(root)
    text = report.to_json() + report.format(verbose=True)
    assert "TOPSECRET" not in text and "password" not in text
    assert any(f.code == "tiff.mask-names" for f in report.errors)


def test_links_out_of_the_bundle_are_reported_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.tsv"
    secret.write_text("TOPSECRET\tpassword\n" * 12)
    root = build_bundle(tmp_path / "ds", {"cells": two_masks()["cells"]}, adjacency=False)
    table = root / SEG / "cells-objects.tsv"
    table.unlink()
    table.symlink_to(secret)
    report = validate_bundle(root)
    text = report.to_json() + report.format(verbose=True)
    assert "TOPSECRET" not in text
    assert any(f.code == "layout.outside-links" for f in report.errors)


def xlsx_with_sheet(path: Path, sheet_xml: bytes) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.save(path)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(
        tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9
    ) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = sheet_xml
            dst.writestr(info.filename, data)
    tmp.replace(path)
    return path


SHEET_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
              b'openxmlformats.org/spreadsheetml/2006/main">')


def test_xlsx_inflating_far_beyond_its_size_is_refused_fast(tmp_path: Path) -> None:
    bomb = SHEET_HEAD + b"<sheetData>" + b" " * (64 << 20) + b"</sheetData></worksheet>"
    path = xlsx_with_sheet(tmp_path / "cells-objects.xlsx", bomb)
    assert path.stat().st_size < 2 << 20
    t = time.monotonic()
    with pytest.raises(CorruptInputError, match="zip bomb"):
        read_xlsx_grid(path)
    assert time.monotonic() - t < 5


def test_xlsx_declaring_a_huge_sheet_is_refused_fast(tmp_path: Path) -> None:
    far = (SHEET_HEAD + b'<dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1" '
           b't="inlineStr"><is><t>x</t></is></c></row><row r="1048576"><c r="XFD1048576">'
           b"<v>1</v></c></row></sheetData></worksheet>")
    path = xlsx_with_sheet(tmp_path / "cells-objects.xlsx", far)
    t = time.monotonic()
    with pytest.raises(CorruptInputError, match="rows x"):
        read_xlsx_grid(path)
    assert time.monotonic() - t < 5
    root = build_bundle(tmp_path / "ds", {"cells": two_masks()["cells"]}, adjacency=False,
                        fmt="xlsx")
    (root / SEG / "cells-objects.xlsx").write_bytes(path.read_bytes())
    report = validate_bundle(root)
    assert any(f.code == "objects.readable" for f in report.errors)


# -- the validator's misses: pixel size and areas ------------------------------------------


def edit_ome_xml(root: Path, old: str, new: str) -> None:
    tiff = next((root / SEG).glob("*.ome.tiff"))
    with tifffile.TiffFile(tiff) as tf:
        xml = tf.ome_metadata
    assert xml is not None and old in xml, old
    tifffile.tiffcomment(tiff, xml.replace(old, new).encode())


def codes(report: Any) -> set[str]:
    return {f.code for f in report.errors}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("validator-misses")
    masks = two_masks()
    plain = write_segmentation_bundle(base / "plain", masks, physical_size=(0.5, 0.5),
                                      protocol_doi=DOI)
    adj = write_segmentation_bundle(base / "adj", masks, physical_size=(0.5, 0.5),
                                    protocol_doi=DOI, adjacency="centroid")
    return {"plain": Path(plain), "adj": Path(adj)}


def test_written_bundles_pass_the_new_rules(written: dict[str, Path]) -> None:
    for root in written.values():
        report = validate_bundle(root)
        assert report.ok, report.format()
        passed = {f.code for f in report.findings if f.status == "passed"}
        assert {"objects.size-columns", "tiff.physical-size-recorded"} <= passed


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ('PhysicalSizeX="0.5"', 'PhysicalSizeX="0.65"', "PhysicalSizeX = 0.65"),
        ('PhysicalSizeXUnit="µm"', 'PhysicalSizeXUnit="nm"', "PhysicalSizeX = 0.0005"),
    ],
)
def test_pixel_size_edit_without_adjacency_is_caught(
    tmp_path: Path, written: dict[str, Path], old: str, new: str, named: str
) -> None:
    root = _copy(written["plain"], tmp_path / "ds")
    edit_ome_xml(root, old, new)
    report = validate_bundle(root)
    assert {"tiff.physical-size-recorded", "objects.size-columns"} <= codes(report), report.format()
    assert any(named in f.message for f in report.errors)
    # without provenance.json the Area column alone still catches it
    (root / "derived/extras/provenance.json").unlink()
    assert "objects.size-columns" in codes(validate_bundle(root))


def test_area_times_ten_is_caught(tmp_path: Path, written: dict[str, Path]) -> None:
    root = _copy(written["plain"], tmp_path / "ds")
    table = root / SEG / "cells-objects.tsv"
    rows = [r.split("\t") for r in table.read_text().split("\n")[:-1]]
    j = rows[9].index("Area (square micrometer)")
    k = rows[9].index("Pixel count")
    assert float(rows[10][j]) == pytest.approx(int(rows[10][k]) * 0.25)  # independent truth
    rows[10][j] = repr(float(rows[10][j]) * 10)
    table.write_text("".join("\t".join(r) + "\n" for r in rows))
    report = validate_bundle(root)
    bad = [f for f in report.errors if f.code == "objects.size-columns"]
    assert bad and "Object ID 1" in bad[0].message, report.format()


def test_pixel_size_edit_with_adjacency_names_the_pixel_size(
    tmp_path: Path, written: dict[str, Path]
) -> None:
    root = _copy(written["adj"], tmp_path / "ds")
    edit_ome_xml(root, 'PhysicalSizeX="0.5"', 'PhysicalSizeX="0.65"')
    (root / "derived/extras/provenance.json").unlink()  # only the adjacency can tell
    report = validate_bundle(root)
    found = [f for f in report.errors if f.code == "adjacency.pixel-size"]
    assert found, report.format()
    assert "PhysicalSizeX: distances fit 0.5 um, the OME-TIFF declares 0.65 um" in found[0].message
    assert "PhysicalSizeY" not in found[0].message


def test_validate_cli_on_an_edited_bundle_exits_1(tmp_path: Path, written: dict[str, Path]) -> None:
    root = _copy(written["plain"], tmp_path / "ds")
    edit_ome_xml(root, 'PhysicalSizeX="0.5"', 'PhysicalSizeX="0.65"')
    result = cli("validate", str(root))
    assert result.exit_code == 1
    assert "objects.size-columns" in result.output


# -- the CLI on hostile label files --------------------------------------------------------


@pytest.mark.parametrize("case", ["segfault", "huge-npy", "forged-tiff"])
def test_cli_on_hostile_label_files(tmp_path: Path, case: str) -> None:
    if case == "segfault":
        path = segfault_seg_npy(tmp_path / "x_seg.npy")
        args = ["convert", "cellpose", str(path)]
    elif case == "huge-npy":
        path = npy_claiming(tmp_path / "x_seg.npy", (10**6, 10**6))
        args = ["convert", "cellpose", str(path)]
    else:
        path = tiff_claiming(tmp_path / "x.tif", 60000, 60000)
        args = ["convert", "labels", str(path)]
    out = tmp_path / "out"
    code = (
        "import sys\nfrom maskbundle.cli import run\n"
        f"sys.argv = ['maskbundle', *{[*args, '-o', str(out), '--physical-size', '0.5', '--physical-size', '0.5', '--protocol-doi', DOI]!r}]\n"
        "run()\n"
    )
    proc = run_child(code)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and path.name in lines[0], proc.stderr
    assert not out.exists()


def test_read_stardist_roi_zip_bomb(tmp_path: Path) -> None:
    path = tmp_path / "rois.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("a.roi", b"\0" * (300 << 20))
    with pytest.raises(CorruptInputError, match="limit"):
        read_stardist(path, shape=(16, 16))

