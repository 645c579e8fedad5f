"""validate_bundle on hand-built bundles: good ones, and broken ones with one defect each.

Every verdict is compared with the independent reference checker
(``../shared/tools/check_bundle.py``, run in a subprocess; skipped when absent).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from _bundles import (
    SEG,
    build_bundle,
    checker_path,
    edit_cell,
    edit_header,
    read_tsv,
    reference_verdicts,
    two_masks,
    write_ome_tiff,
    write_tsv,
    write_xlsx,
)
from helpers import expect_reference, expect_verdict
from maskbundle.bundle._pixels import compare_level, contact_pairs, label_stats, pair_keys
from maskbundle.bundle.validate import validate_bundle
from maskbundle.cli import validate_command

CELLS_TSV = SEG / "cells-objects.tsv"


def codes(report: Any, severity: str = "error") -> set[str]:
    return {f.code for f in report.findings if f.status == "failed" and f.severity == severity}


# -- good bundles ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tsv", "xlsx"])
def test_good_2d_bundle_passes_both_validators(tmp_path: Path, fmt: str) -> None:
    root = build_bundle(tmp_path / "ds", fmt=fmt)
    report = validate_bundle(root)
    assert report.ok, report.format()
    expect_reference(root)
    passed = {f.code for f in report.findings if f.status == "passed"}
    # the rules that matter ran and passed (not skipped)
    assert {
        "tiff.xsd",
        "pixels.labels",
        "objects.centroids",
        "objects.ids-match-labels",
        "adjacency.distances",
        "adjacency.face-pairs",
        "manifest.num-objects",
    } <= passed
    assert ("objects.tsv-only" in codes(report, "warning")) == (fmt == "tsv")


def test_good_3d_bundle_with_meshes(tmp_path: Path) -> None:
    from maskbundle.synthetic import synthetic_nuclei_3d

    vol = synthetic_nuclei_3d((8, 40, 48), n_objects=6, radius=(3.0, 6.0), seed=2)
    root = build_bundle(
        tmp_path / "ds", {"nuclei": vol}, physical_size=(0.5, 0.5, 2.0), meshes=True
    )
    report = validate_bundle(root)
    assert report.ok, report.format()
    assert not codes(report, "warning") - {"objects.tsv-only"}, report.format()
    assert {"mesh.node-names", "mesh.bounds", "mesh.extras"} <= {
        f.code for f in report.findings if f.status == "passed"
    }
    expect_reference(root)


def test_not_a_directory_is_a_finding_not_an_exception(tmp_path: Path) -> None:
    report = validate_bundle(tmp_path / "missing")
    assert not report.ok
    assert codes(report) == {"bundle.directory"}


# -- one defect each -------------------------------------------------------------------------


def _rewrite(root: Path, rel: Path, fn: Callable[[list[list[str]]], list[list[str]]]) -> None:
    write_tsv(root / rel, fn(read_tsv(root / rel)))


def _gap_tiff(path: Path, masks: dict[str, np.ndarray], **kw: Any) -> None:
    cells = masks["cells"].copy()
    cells[cells == 2] = 0  # label 2 missing: labels are no longer 1..N
    write_ome_tiff(path, {**masks, "cells": cells}, **kw)


def _swap_xy(grid: list[list[str]]) -> list[list[str]]:
    i, j = grid[9].index("X"), grid[9].index("Y")
    for r in grid:
        r[i], r[j] = r[j], r[i]
    return grid


def _csv_edit(root: Path, name: str, fn: Callable[[list[str]], list[str]]) -> None:
    p = root / SEG / name
    lines = p.read_text().split("\n")[:-1]
    p.write_text("\n".join(fn(lines)) + "\n")


def _set_distance(lines: list[str], k: int, delta: float) -> list[str]:
    a, b, d = lines[k].split(",")
    lines[k] = f"{a},{b},{float(d) + delta}"
    return lines


def _zero_tail(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3] + bytes(len(raw) - len(raw) // 3))


def _rename_sheets(root: Path) -> None:
    import openpyxl

    for path in sorted((root / SEG).glob("*-objects.xlsx")):
        wb = openpyxl.load_workbook(path)
        wb["MAIN"].title = "Sheet1"
        wb.save(path)


def _far_pair(root: Path) -> list[str]:
    """A linkage edge between two objects that do not touch, claimed at distance 0."""
    lines = (root / SEG / "nuclei-linkage-adjacency.csv").read_text().split("\n")[:-1]
    return [*lines, "1,3,0"] if "1,3,0" not in lines else lines


BROKEN: dict[str, tuple[Callable[[Path], None], str, dict[str, Any]]] = {
    # id: (mutate the good bundle, expected error code, build options)
    "bad channel name": (lambda r: None, "tiff.mask-names", {"names": ["Cells", "nuclei"]}),
    "label gap": (lambda r: None, "pixels.labels", {"tiff": _gap_tiff}),
    "no PhysicalSizeX": (lambda r: None, "tiff.physical-size", {"drop_physical_x": True}),
    "signed pixels": (lambda r: None, "tiff.pixel-type", {"dtype": np.int16}),
    "packbits": (lambda r: None, "tiff.compression", {"compression": "packbits"}),
    "corrupt OME-TIFF": (
        lambda r: next((r / SEG).glob("*.ome.tiff")).write_bytes(b"II*\x00garbage" * 10),
        "tiff.read",
        {},
    ),
    "OME-XML lost (tail zeroed)": (
        lambda r: _zero_tail(next((r / SEG).glob("*.ome.tiff"))),
        "tiff.ome-xml",
        {},
    ),
    "no OME-TIFF": (lambda r: next((r / SEG).glob("*.ome.tiff")).unlink(), "tiff.count", {}),
    "two OME-TIFFs": (
        lambda r: shutil.copy(
            next((r / SEG).glob("*.ome.tiff")), r / SEG / "other.segmentations.ome.tiff"
        ),
        "tiff.count",
        {},
    ),
    "missing row 9": (
        lambda r: _rewrite(r, CELLS_TSV, lambda g: g[:8] + g[9:]),
        "objects.separator-row",
        {},
    ),
    "wrong column order": (
        lambda r: _rewrite(r, CELLS_TSV, _swap_xy),
        "objects.required-columns",
        {},
    ),
    "duplicate column": (
        lambda r: _rewrite(r, CELLS_TSV, lambda g: [*g[:9], [*g[9][:-1], "Area"], *g[10:]]),
        "objects.unique-columns",
        {},
    ),
    "N/A header cell": (
        lambda r: edit_header(r / CELLS_TSV, "Alternative ID", "X", "N/A"),
        "objects.header-na",
        {},
    ),
    "unknown Type": (
        lambda r: edit_header(r / CELLS_TSV, "Type", "Label", "string"),
        "objects.type",
        {},
    ),
    "invented Unit": (
        lambda r: edit_header(r / CELLS_TSV, "Unit", "Area", "micrometer"),
        "objects.unit",
        {},
    ),
    "no Description": (
        lambda r: edit_header(r / CELLS_TSV, "Description", "Area", ""),
        "objects.description",
        {},
    ),
    "URL DOI": (
        lambda r: edit_cell(
            r / CELLS_TSV,
            11,
            "Protocol for mask creation (DOI)",
            "https://doi.org/10.17504/protocols.io.example",
        ),
        "objects.doi",
        {},
    ),
    "bad obo id": (
        lambda r: edit_cell(r / CELLS_TSV, 12, "Mask ID", "CL_0000000"),
        "objects.obo-id",
        {},
    ),
    "non-ASCII text": (
        lambda r: edit_cell(r / CELLS_TSV, 11, "Label", "caf\u00e9"),
        "objects.ascii",
        {},
    ),
    "formula text": (
        lambda r: edit_cell(r / CELLS_TSV, 11, "Label", "=SUM(A1:A3)"),
        "objects.formula",
        {},
    ),
    "not permissible": (
        lambda r: edit_cell(r / CELLS_TSV, 13, "Annotation tool", "Napari"),
        "objects.permissible",
        {},
    ),
    "integer blank": (
        lambda r: edit_cell(r / CELLS_TSV, 11, "Area", ""),
        "objects.integer-blank",
        {},
    ),
    "REQUIRED blank": (
        lambda r: edit_cell(r / CELLS_TSV, 11, "Mask ID", ""),
        "objects.required-blank",
        {},
    ),
    "boolean column": (
        lambda r: edit_header(r / CELLS_TSV, "Type", "Label", "boolean"),
        "objects.no-boolean",
        {},
    ),
    "not a number": (lambda r: edit_cell(r / CELLS_TSV, 11, "Area", "big"), "objects.number", {}),
    "blank data row": (
        lambda r: _rewrite(r, CELLS_TSV, lambda g: [*g[:12], [], *g[12:]]),
        "objects.blank-rows",
        {},
    ),
    "Object IDs != labels": (
        lambda r: edit_cell(r / CELLS_TSV, 11, "Object ID", "999"),
        "objects.ids-match-labels",
        {},
    ),
    "duplicate Object ID": (
        lambda r: edit_cell(r / CELLS_TSV, 12, "Object ID", "1"),
        "objects.object-ids",
        {},
    ),
    "centroid off": (
        lambda r: edit_cell(r / CELLS_TSV, 11, "X", str(int(read_tsv(r / CELLS_TSV)[10][7]) + 5)),
        "objects.centroids",
        {},
    ),
    "wrong Mask name": (
        lambda r: edit_cell(r / CELLS_TSV, 11, "Mask name", "nuclei"),
        "objects.mask-name",
        {},
    ),
    "BOM": (
        lambda r: (r / CELLS_TSV).write_bytes(b"\xef\xbb\xbf" + (r / CELLS_TSV).read_bytes()),
        "objects.readable",
        {},
    ),
    "CRLF": (
        lambda r: (r / CELLS_TSV).write_bytes((r / CELLS_TSV).read_bytes().replace(b"\n", b"\r\n")),
        "objects.readable",
        {},
    ),
    "both tsv and xlsx": (
        lambda r: write_xlsx(r / SEG / "cells-objects.xlsx", read_tsv(r / CELLS_TSV)),
        "objects.one-file",
        {},
    ),
    "no objects table": (lambda r: (r / CELLS_TSV).unlink(), "objects.one-file", {}),
    "table of no channel": (
        lambda r: shutil.copy(r / CELLS_TSV, r / SEG / "other-objects.tsv"),
        "objects.prefix",
        {},
    ),
    "manifest count wrong": (
        lambda r: _csv_edit(
            r,
            "segmentation-masks.csv",
            lambda ls: [*ls[:1], ls[1].rsplit(",", 1)[0] + ",9999", *ls[2:]],
        ),
        "manifest.num-objects",
        {},
    ),
    "manifest columns": (
        lambda r: _csv_edit(
            r,
            "segmentation-masks.csv",
            lambda ls: [ls[0].replace("Num objects", "Objects"), *ls[1:]],
        ),
        "manifest.columns",
        {},
    ),
    "stray file": (lambda r: (r / "notes.txt").write_text("x"), "layout.pattern", {}),
    "extras/transformations": (
        lambda r: (
            (r / "extras" / "transformations").mkdir(),
            (r / "extras" / "transformations" / "t.txt").write_text("x"),
        ),
        "layout.extras-transformations",
        {},
    ),
    "stray objects xlsx": (
        lambda r: write_xlsx(r / "derived" / "extras" / "old-objects.xlsx", [["x"]]),
        "layout.stray-objects",
        {},
    ),
    "no extras": (lambda r: shutil.rmtree(r / "extras"), "layout.required", {}),
    "adjacency self edge": (
        lambda r: _csv_edit(r, "cells-centroid-adjacency.csv", lambda ls: [*ls, "2,2,0.0"]),
        "adjacency.edges",
        {},
    ),
    "adjacency reversed": (
        lambda r: _csv_edit(r, "cells-linkage-adjacency.csv", lambda ls: [*ls, "9,3,0"]),
        "adjacency.edges",
        {},
    ),
    "adjacency unknown id": (
        lambda r: _csv_edit(r, "cells-linkage-adjacency.csv", lambda ls: [*ls, "1,9999,0"]),
        "adjacency.edges",
        {},
    ),
    "adjacency duplicate": (
        lambda r: _csv_edit(r, "cells-linkage-adjacency.csv", lambda ls: [*ls, ls[1]]),
        "adjacency.duplicates",
        {},
    ),
    "adjacency wrong distance": (
        lambda r: _csv_edit(
            r, "cells-centroid-adjacency.csv", lambda ls: _set_distance(ls, 1, 0.5)
        ),
        "adjacency.distances",
        {},
    ),
    "adjacency negative": (
        lambda r: _csv_edit(
            r, "cells-centroid-adjacency.csv", lambda ls: _set_distance(ls, 2, -100.0)
        ),
        "adjacency.edges",
        {},
    ),
    "adjacency header": (
        lambda r: _csv_edit(
            r, "cells-centroid-adjacency.csv", lambda ls: ["a,b,distance", *ls[1:]]
        ),
        "adjacency.header",
        {},
    ),
    "missing touching pair": (
        lambda r: _csv_edit(r, "cells-linkage-adjacency.csv", lambda ls: [ls[0], *ls[2:]]),
        "adjacency.face-pairs",
        {},
    ),
    "distance 0 not touching": (
        lambda r: (r / SEG / "nuclei-linkage-adjacency.csv").write_text(
            "\n".join(_far_pair(r)) + "\n"
        ),
        "adjacency.touching",
        {},
    ),
}

BIG = (530, 560)  # larger than one 512 tile: needs a pyramid
BROKEN_BIG: dict[str, tuple[str, dict[str, Any]]] = {
    "averaged pyramid level": ("pyramid.downsample", {"pyramid": "mean"}),
    "no pyramid": ("pyramid.present", {"pyramid": "none"}),
}


NUCLEI_3D = np.kron(np.arange(1, 4, dtype=np.uint16)[:, None, None], np.ones((1, 6, 6), np.uint16))

WARNED: dict[str, tuple[Callable[[Path], None], str, dict[str, Any]]] = {
    # id: (mutate the good bundle, expected warning code, build options); both say OK
    "mode-like pyramid": (
        lambda r: None,
        "pyramid.downsample",
        {"masks": two_masks(BIG), "pyramid": "mode", "adjacency": False},
    ),
    "strips": (lambda r: None, "tiff.tiled", {"tile": 0}),
    "blank Object type": (
        lambda r: edit_cell(r / CELLS_TSV, 12, "Object type", ""),
        "objects.object-type-filled",
        {},
    ),
    "no manifest": (
        lambda r: (r / SEG / "segmentation-masks.csv").unlink(),
        "manifest.present",
        {},
    ),
    "no contributors": (
        lambda r: (r / "extras" / "contributors.tsv").unlink(),
        "extras.contributors",
        {},
    ),
    "empty derived/extras": (
        lambda r: (r / "derived" / "extras" / "provenance.json").unlink(),
        "layout.extras-empty",
        {},
    ),
    "lab file in derived/": (
        lambda r: (r / "derived" / "notes.txt").write_text("x"),
        "layout.unknown-file",
        {},
    ),
    "mesh without extras": (
        lambda r: None,
        "mesh.extras",
        {
            "masks": {"nuclei": NUCLEI_3D},
            "physical_size": (0.5, 0.5, 2.0),
            "meshes": True,
            "mesh_extras": False,
        },
    ),
    "mesh of a 2D mask": (lambda r: None, "mesh.3d", {"meshes": True}),
    "DimensionOrder XYTZC": (lambda r: None, "tiff.dimension-order", {"dimension_order": "XYTZC"}),
    "xlsx sheet not MAIN": (lambda r: _rename_sheets(r), "objects.sheet", {"fmt": "xlsx"}),
    "3D without PhysicalSizeZ": (
        lambda r: None,
        "tiff.physical-size-z",
        {
            "masks": {
                "nuclei": np.kron(
                    np.arange(1, 4, dtype=np.uint16)[:, None, None], np.ones((1, 6, 6), np.uint16)
                )
            },
            "physical_size": (0.5, 0.5),
            "adjacency": False,
        },
    ),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bool | None]]:
    """Every broken and warned bundle, built once, with the reference checker's verdict.

    The reference checker runs in one subprocess for all of them (see reference_verdicts);
    its verdict is None when ../shared is absent.
    """
    roots: dict[str, Path] = {}
    for case, (mutate, _code, options) in {**BROKEN, **WARNED}.items():
        root = build_bundle(tmp_path_factory.mktemp("case") / "ds", **options)
        mutate(root)
        roots[case] = root
    for case, (_code, options) in BROKEN_BIG.items():
        roots[case] = build_bundle(
            tmp_path_factory.mktemp("case") / "ds", two_masks(BIG), adjacency=False, **options
        )
    verdicts: dict[Path, bool] = {}
    if checker_path() is not None:
        verdicts = reference_verdicts(list(roots.values()))
    return {case: (root, verdicts.get(root)) for case, root in roots.items()}


@pytest.mark.parametrize("case", sorted(BROKEN) + sorted(BROKEN_BIG))
def test_broken_bundle_fails_both_validators(
    prepared: dict[str, tuple[Path, bool | None]], case: str
) -> None:
    code = BROKEN[case][1] if case in BROKEN else BROKEN_BIG[case][0]
    root, verdict = prepared[case]
    report = validate_bundle(root)
    assert code in codes(report), report.format()
    assert not report.ok
    expect_verdict(verdict, False)


@pytest.mark.parametrize("case", sorted(WARNED))
def test_warnings_do_not_fail_either_validator(
    prepared: dict[str, tuple[Path, bool | None]], case: str
) -> None:
    code = WARNED[case][1]
    root, verdict = prepared[case]
    report = validate_bundle(root)
    assert code in codes(report, "warning"), report.format()
    assert report.ok, report.format()
    expect_verdict(verdict, True)


def test_xlsx_table_rules_apply_cell_by_cell(tmp_path: Path) -> None:
    root = build_bundle(tmp_path / "ds", fmt="xlsx")
    path = root / SEG / "nuclei-objects.xlsx"
    import openpyxl

    wb = openpyxl.load_workbook(path)
    ws = wb["MAIN"]
    ws.title = "Sheet1"
    ws.cell(row=11, column=5, value="doi:10.17504/x")
    wb.save(path)
    report = validate_bundle(root)
    assert {"objects.doi"} <= codes(report)
    assert "objects.sheet" in codes(report, "warning")
    expect_reference(root, ok=False)


def test_parent_image_sizes_must_match(tmp_path: Path) -> None:
    masks = two_masks()
    root = build_bundle(tmp_path / "ds", masks)
    same = tmp_path / "same.ome.tiff"
    write_ome_tiff(same, {"dapi": masks["cells"]})
    other = tmp_path / "other.ome.tiff"
    write_ome_tiff(other, {"dapi": masks["cells"]}, physical_size=(0.25, 0.5))
    ok = validate_bundle(root, parent_image=same)
    assert ok.ok and "tiff.parent" in {f.code for f in ok.findings if f.status == "passed"}
    expect_reference(root, "--parent", str(same))
    bad = validate_bundle(root, parent_image=other)
    assert "tiff.parent" in codes(bad)
    expect_reference(root, "--parent", str(other), ok=False)


def test_mesh_node_names_must_be_object_ids(tmp_path: Path) -> None:
    from maskbundle.synthetic import synthetic_nuclei_3d

    vol = synthetic_nuclei_3d((6, 32, 32), n_objects=4, radius=(3.0, 5.0), seed=1)
    root = build_bundle(
        tmp_path / "ds", {"nuclei": vol}, physical_size=(0.5, 0.5, 2.0), meshes=True
    )
    path = root / SEG / "nuclei-mesh.glb"
    path.write_bytes(path.read_bytes().replace(b'"name":"1"', b'"name":"7"'))
    report = validate_bundle(root)
    assert {"mesh.node-names"} <= codes(report), report.format()
    expect_reference(root, ok=False)


def test_clean_run_reports_not_applicable_rules(tmp_path: Path) -> None:
    root = build_bundle(tmp_path / "ds", adjacency=False)
    report = validate_bundle(root)
    na = {f.code for f in report.findings if f.status == "not applicable"}
    assert {"tiff.parent", "pyramid.present", "adjacency.header", "objects.row-limit"} <= na


# -- CLI ------------------------------------------------------------------------------------


def test_cli_exit_status_and_json(tmp_path: Path) -> None:
    root = build_bundle(tmp_path / "ds", adjacency=False)
    runner = CliRunner()
    out = tmp_path / "report.json"
    res = runner.invoke(validate_command, [str(root), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1].startswith("OK")
    doc = json.loads(out.read_text())
    assert doc["ok"] is True and doc["findings"]
    verbose = runner.invoke(validate_command, [str(root), "--verbose"])
    assert "PASS" in verbose.output and "PASS" not in res.output
    (root / "stray.txt").write_text("x")
    res = runner.invoke(validate_command, [str(root)])
    assert res.exit_code == 1
    assert "layout.pattern" in res.output


# -- pure helpers against independent computations ------------------------------------------

labels_3d = arrays(
    np.uint32,
    st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    elements=st.sampled_from([0, 1, 2, 5, 70000, 2**32 - 1]),
)


@settings(max_examples=60, deadline=None)
@given(labels_3d)
def test_label_stats_match_scipy(lab: np.ndarray) -> None:
    stats = label_stats(lab)
    ids = np.unique(lab)
    ids = ids[ids != 0]
    np.testing.assert_array_equal(stats.ids, ids)
    if ids.size:
        cz = np.array(ndimage.center_of_mass(np.ones(lab.shape), lab, ids)).reshape(-1, 3)
        np.testing.assert_allclose(stats.centroids, cz)
        np.testing.assert_array_equal(stats.counts, [np.count_nonzero(lab == i) for i in ids])
    assert stats.contiguous == (ids.size == 0 or list(ids) == list(range(1, ids.size + 1)))


small_labels = st.one_of(
    arrays(np.uint16, st.tuples(st.integers(1, 7), st.integers(1, 7)), elements=st.integers(0, 4)),
    arrays(
        np.uint32,
        st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),
        elements=st.sampled_from([0, 1, 2, 3, 2**32 - 1]),
    ),
)


@settings(max_examples=80, deadline=None)
@given(small_labels, st.booleans())
def test_contact_pairs_match_brute_force(lab: np.ndarray, diagonal: bool) -> None:
    want = set()
    for here in np.ndindex(*lab.shape):
        for off in np.ndindex(*([3] * lab.ndim)):
            d = [o - 1 for o in off]
            if not any(d) or (not diagonal and sum(map(abs, d)) != 1):
                continue
            there = tuple(h + o for h, o in zip(here, d, strict=True))
            if all(0 <= t < n for t, n in zip(there, lab.shape, strict=True)):
                a, b = int(lab[here]), int(lab[there])
                if a and b and a != b:
                    want.add((min(a, b), max(a, b)))
    got = contact_pairs(lab, diagonal=diagonal)
    assert sorted(want) == [(int(k) >> 32, int(k) & 0xFFFFFFFF) for k in got]
    assert np.array_equal(got, np.unique(pair_keys(*np.array(sorted(want), int).T.reshape(2, -1))))


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.uint16,
        st.tuples(st.integers(1, 2), st.integers(1, 17), st.integers(1, 17)),
        elements=st.integers(0, 6),
    ),
    st.integers(1, 3),
)
def test_compare_level_classifies_downsamples(base: np.ndarray, k: int) -> None:
    f = 2**k
    assert compare_level(base, base[..., ::f, ::f].copy(), k) == ("stride", 0)
    # any pick from each block is label-safe
    shifted = base[..., f - 1 :: f, f - 1 :: f]
    level = base[..., ::f, ::f].copy()
    level[..., : shifted.shape[-2], : shifted.shape[-1]] = shifted
    assert compare_level(base, level, k)[0] in ("stride", "mode")
    # a value that occurs nowhere in the block is invented
    bad = level.copy()
    bad[..., 0, 0] = 9
    assert compare_level(base, bad, k)[0] == "invented"
    assert compare_level(base, level[..., :-1], k)[0] == "shape"


# -- bundles written by write_segmentation_bundle ---------------------------------------------

CONTRIBUTOR = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "affiliation": "Analytical Engines",
    "orcid": "0000-0002-1825-0097",
    "email": "ada@example.org",
    "is_contact": "Yes",
    "is_principal_investigator": "Yes",
    "is_operator": "Yes",
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bool | None]]:
    """Bundles from the spine's writer (2D tsv, 2D xlsx with pyramid, 3D), with verdicts."""
    from maskbundle import write_segmentation_bundle
    from maskbundle.synthetic import synthetic_nuclei_3d, synthetic_tissue

    base = tmp_path_factory.mktemp("written")
    small = synthetic_tissue((120, 150), cell_spacing=16.0, seed=5)
    big = synthetic_tissue((600, 530), cell_spacing=24.0, seed=6)
    vol = synthetic_nuclei_3d((10, 48, 40), n_objects=8, radius=(3.0, 7.0), seed=4)
    doi = "10.17504/protocols.io.example"
    ids = {"cells": "CL:0000000", "nuclei": "GO:0005634"}
    cases = {
        "2d-tsv": dict(masks={"cells": small[0], "nuclei": small[1]}, physical_size=(0.5, 0.5)),
        "2d-xlsx-pyramid": dict(
            masks={"cells": big[0], "nuclei": big[1]},
            physical_size=(0.377, 0.377),
            objects_format="xlsx",
        ),
        "3d-tsv": dict(masks={"nuclei": vol}, physical_size=(0.5, 0.5, 2.0)),
        "3d-xlsx": dict(
            masks={"nuclei": vol * 3}, physical_size=(0.5, 0.5, 2.0), objects_format="xlsx"
        ),
    }
    roots = {}
    for case, kw in cases.items():
        masks = kw.pop("masks")
        roots[case] = write_segmentation_bundle(
            base / case,
            masks,
            mask_ids={k: ids[k] for k in masks},
            protocol_doi=doi,
            contributors=[CONTRIBUTOR],
            **kw,
        )
    verdicts: dict[Path, bool] = {}
    if checker_path() is not None:
        verdicts = reference_verdicts(list(roots.values()))
    return {case: (root, verdicts.get(root)) for case, root in roots.items()}


@pytest.mark.parametrize("case", ["2d-tsv", "2d-xlsx-pyramid", "3d-tsv", "3d-xlsx"])
def test_written_bundles_pass_both_validators(
    written: dict[str, tuple[Path, bool | None]], case: str
) -> None:
    root, verdict = written[case]
    report = validate_bundle(root)
    assert report.ok, report.format()
    assert not codes(report, "warning") - {"objects.tsv-only"}, report.format()
    passed = {f.code for f in report.findings if f.status == "passed"}
    assert {
        "tiff.xsd",
        "pixels.labels",
        "objects.ids-match-labels",
        "objects.centroids",
        "manifest.num-objects",
    } <= passed
    if "pyramid" in case:
        assert {"pyramid.present", "pyramid.downsample"} <= passed
    expect_verdict(verdict, True)


def test_written_bundle_with_broken_table_fails_both(tmp_path: Path) -> None:
    from maskbundle import write_segmentation_bundle
    from maskbundle.synthetic import synthetic_tissue

    cells, _ = synthetic_tissue((64, 64), cell_spacing=16.0, seed=8)
    root = write_segmentation_bundle(
        tmp_path / "ds",
        {"cells": cells},
        physical_size=(0.5, 0.5),
        mask_ids={"cells": "CL:0000000"},
        protocol_doi="10.17504/protocols.io.example",
    )
    table = root / SEG / "cells-objects.tsv"
    edit_cell(table, 11, "Y", str(int(read_tsv(table)[10][8]) + 3))
    report = validate_bundle(root)
    assert "objects.centroids" in codes(report)
    expect_reference(root, ok=False)


def test_maskbundle_group_has_validate(tmp_path: Path) -> None:
    from maskbundle import validate_bundle as exported
    from maskbundle.cli import main

    assert exported is validate_bundle
    root = build_bundle(tmp_path / "ds", adjacency=False)
    res = CliRunner().invoke(main, ["validate", str(root)])
    assert res.exit_code == 0, res.output
    (root / SEG / "segmentation-masks.csv").write_text("Channel number\n")
    res = CliRunner().invoke(main, ["validate", str(root)])
    assert res.exit_code == 1 and "manifest.columns" in res.output


nasty = st.text(alphabet=st.sampled_from(list('\t\n\r =+-@|,."01aZ:/\u00e9\ufeff')), max_size=12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 14), st.integers(0, 13), nasty), min_size=1, max_size=4))
def test_any_table_damage_gives_findings_not_exceptions(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, int, str]]
) -> None:
    root = build_bundle(tmp_path_factory.mktemp("fuzz") / "ds", adjacency=False)
    path = root / CELLS_TSV
    grid = read_tsv(path)
    for r, c, value in edits:
        row = grid[min(r, len(grid) - 1)]
        row[min(c, len(row) - 1)] = value
    path.write_bytes("".join("\t".join(r) + "\n" for r in grid).encode())
    report = validate_bundle(root)
    assert {"objects.readable", "pixels.labels"} <= {f.code for f in report.findings}
    # only the damaged table can be wrong
    assert all(f.location == CELLS_TSV.as_posix() for f in report.errors), report.format()


def test_empty_mask_is_valid_for_both(tmp_path: Path) -> None:
    from maskbundle import write_segmentation_bundle
    from maskbundle.synthetic import synthetic_tissue

    cells, _ = synthetic_tissue((64, 80), cell_spacing=16.0, seed=9)
    root = write_segmentation_bundle(
        tmp_path / "ds",
        {"cells": cells, "nuclei": np.zeros_like(cells)},
        physical_size=(0.5, 0.5),
        protocol_doi="10.17504/protocols.io.example",
        contributors=[CONTRIBUTOR],
    )
    report = validate_bundle(root)
    assert report.ok, report.format()
    na = {(f.location, f.code) for f in report.findings if f.status == "not applicable"}
    assert ("derived/segmentation_masks/nuclei-objects.tsv", "objects.integer-blank") in na
    expect_reference(root)


def test_stray_objects_tsv_outside_the_mask_folder(tmp_path: Path) -> None:
    # SPEC section 1 forbids any other file named *-objects.tsv; the reference checker only
    # looks for stray *objects*.xlsx, so this rule is checked against our validator alone.
    root = build_bundle(tmp_path / "ds", adjacency=False)
    shutil.copy(root / CELLS_TSV, root / "extras" / "old-objects.tsv")
    assert "layout.stray-objects" in codes(validate_bundle(root))
