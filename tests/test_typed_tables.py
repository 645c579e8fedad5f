"""The validator's typed XLSX path (numbers kept as float64 columns) against its text path.

``read_table_grid(..., typed_body_after=10)`` hands the objects-table checks float64
columns where calamine read numbers; without it every cell is turned into text first. Both
must give the same findings, word for word, on hand-edited workbooks.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maskbundle import write_segmentation_bundle
from maskbundle.bundle import validate as validate_module
from maskbundle.bundle.validate import validate_bundle
from maskbundle.io.readers import read_table_grid
from maskbundle.synthetic import synthetic_tissue

openpyxl = pytest.importorskip("openpyxl")

SEG = Path("derived/segmentation_masks")
TABLE = SEG / "cells-objects.xlsx"
FIRST = 11  # the first data row (1-based)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cells, nuclei = synthetic_tissue((64, 64), cell_spacing=12.0, seed=1)
    root = tmp_path_factory.mktemp("typed") / "ds"
    write_segmentation_bundle(root, {"cells": cells, "nuclei": nuclei}, physical_size=0.5,
                              protocol_doi="10.17504/protocols.io.example",
                              objects_format="xlsx", features=True)
    return root


def _column(ws: Any, name: str) -> int:
    for cell in ws[10]:
        if cell.value == name:
            return int(cell.column)
    raise KeyError(name)


def _typed_column(ws: Any, typ: str, skip: tuple[str, ...] = ("X", "Y", "Z")) -> int:
    """The first column of Type ``typ`` (header row 1) that is not in ``skip``."""
    for cell in ws[1]:
        name = ws.cell(row=10, column=cell.column).value
        if cell.value == typ and name not in skip:
            return int(cell.column)
    raise KeyError(typ)


def _set(name: str, row: int, value: object) -> Callable[[Any], None]:
    def run(ws: Any) -> None:  # ws.cell(..., value=None) would leave the cell as it is
        ws.cell(row=row, column=_column(ws, name)).value = value

    return run


def _set_typed(typ: str, row: int, value: object) -> Callable[[Any], None]:
    def run(ws: Any) -> None:
        ws.cell(row=row, column=_typed_column(ws, typ)).value = value

    return run


def _raw(find: Callable[[Any], int], row: int, text: str) -> Callable[[Any], None]:
    """A number cell whose stored text is ``text`` (openpyxl writes inf as an empty <v>
    and an int beyond 2**53 rounded): a placeholder here, patched into the XML on save."""

    def run(ws: Any) -> None:
        cell = ws.cell(row=row, column=find(ws))
        cell.value = 12345.678
        PATCHES[f'<c r="{cell.coordinate}" t="n"><v>12345.678</v></c>'] = (
            f'<c r="{cell.coordinate}" t="n"><v>{text}</v></c>'
        )

    return run


PATCHES: dict[str, str] = {}


def _patch(path: Path) -> None:
    with zipfile.ZipFile(path) as zf:
        parts = {i.filename: zf.read(i) for i in zf.infolist()}
    sheet = "xl/worksheets/sheet1.xml"
    xml = parts[sheet].decode()
    for old, new in PATCHES.items():
        assert old in xml, old
        xml = xml.replace(old, new)
    parts[sheet] = xml.encode()
    PATCHES.clear()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)


def _blank_row(ws: Any) -> None:
    for cell in ws[FIRST + 2]:
        cell.value = None


def _beyond(ws: Any) -> None:
    ws.cell(row=FIRST + 1, column=ws.max_column + 3, value="stray")
    ws.cell(row=FIRST + 3, column=ws.max_column + 1, value="   ")


def _many(*edits: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(ws: Any) -> None:
        for e in edits:
            e(ws)

    return run


# edit, a rule that must fail (so that the comparison is not between two clean reports),
# and whether the typed path applies (a formula sends the workbook through openpyxl)
CASES: dict[str, tuple[Callable[[Any], None], str, bool]] = {
    "formula": (_set("Object type", FIRST, "=1+1"), "objects.formula", False),
    "-inf in a float column": (
        _raw(lambda ws: _typed_column(ws, "float"), FIRST + 1, "-inf"), "objects.formula", True),
    "inf and nan in an integer column": (
        _many(_raw(lambda ws: _typed_column(ws, "integer"), FIRST, "inf"),
              _raw(lambda ws: _typed_column(ws, "integer"), FIRST + 1, "NaN")),
        "objects.integer", True),
    "control character": (_set("Object type", FIRST, "cell\ttype"), "objects.formula", True),
    "pipe": (_set("Mask ID", FIRST + 4, "CL:0000000|x"), "objects.formula", True),
    "blanks in numbers": (
        _many(_set_typed("float", FIRST, None), _set_typed("integer", FIRST + 1, None),
              _set("Object ID", FIRST + 2, None)),
        "objects.integer-blank", True),
    "text in numbers": (
        _many(_set_typed("float", FIRST, "abc"), _set_typed("integer", FIRST + 1, "12"),
              _set("X", FIRST + 3, "far")),
        "objects.number", True),
    "non-ASCII": (_set("Mask name", FIRST + 2, "cell\u00e9"), "objects.ascii", True),
    "boolean": (_set_typed("float", FIRST + 1, True), "objects.number", True),
    "bad IDs": (
        _many(_set("Object ID", FIRST, 0), _set("Object ID", FIRST + 1, -3),
              _set("Object ID", FIRST + 2, 2.5), _set("Object ID", FIRST + 4, 5),
              _set("Object ID", FIRST + 5, 5)),
        "objects.object-ids", True),
    "whole float in an integer column": (
        _many(_set_typed("integer", FIRST, 7.0), _set_typed("integer", FIRST + 1, 7.5)),
        "objects.integer", True),
    "integer above 2**53": (
        _many(_raw(lambda ws: 1, FIRST, "9007199254740993"),
              _raw(lambda ws: _typed_column(ws, "integer"), FIRST + 1, "1152921504606846977")),
        "objects.ids-match-labels", True),
    "moved centroid and size": (
        _many(_set("X", FIRST, 1e6), _set("Y", FIRST + 1, -0.0)),
        "objects.centroids", True),
    "blank row and stray cells": (_many(_blank_row, _beyond), "objects.blank-rows", True),
    "number in text columns": (
        _many(_set("Mask name", FIRST, 3.5), _set("Source file", FIRST + 1, 1),
              _set("Object type", FIRST + 2, -1.25)),
        "objects.mask-name", True),
}


def _findings(report: Any) -> list[tuple[str, str, str, str, str]]:
    return [(f.location, f.code, f.message, f.severity, f.status) for f in report.findings]


@pytest.mark.parametrize("case", sorted(CASES))
def test_typed_and_text_paths_give_the_same_findings(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    edit, code, typed = CASES[case]
    root = tmp_path / "ds"
    shutil.copytree(bundle, root)
    wb = openpyxl.load_workbook(root / TABLE)
    edit(wb.worksheets[0])
    wb.save(root / TABLE)
    _patch(root / TABLE)

    grid = read_table_grid(root / TABLE, typed_body_after=10)
    assert (grid.columns is not None) == typed
    if typed:  # numbers stay numbers: the Object ID column is float64 unless edited to text
        assert grid.columns is not None
        assert len(grid.rows) == 10
        assert grid.n_body == len(read_table_grid(root / TABLE).rows) - 10
    typed_report = validate_bundle(root)
    text_only = read_table_grid
    monkeypatch.setattr(validate_module, "read_table_grid", lambda p, **_: text_only(p))
    text_report = validate_bundle(root)
    assert _findings(typed_report) == _findings(text_report)
    failed = {f.code for f in typed_report.findings if f.status == "failed"}
    assert code in failed


def test_typed_columns_hold_the_cells_numbers(bundle: Path) -> None:
    """Each float64 column equals the text path's cells read back with float()."""
    grid = read_table_grid(bundle / TABLE, typed_body_after=10)
    rows = read_table_grid(bundle / TABLE).rows
    assert grid.rows == rows[:10] and grid.columns is not None
    n_numeric = 0
    for j, col in enumerate(grid.columns):
        cells = [r[j] if j < len(r) else "" for r in rows[10:]]
        if isinstance(col, np.ndarray):
            n_numeric += 1
            want = np.array([float(c) if c else np.nan for c in cells])
            np.testing.assert_array_equal(col, want)
        else:
            assert col == cells
    assert n_numeric >= 10  # Object ID, X, Y, Z and the features
