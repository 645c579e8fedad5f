"""The compiled reader of our own workbooks (``io.xlsxsheet``) against calamine and openpyxl.

``read_own_xlsx`` reads a workbook in exactly the form ``io.cellwriter`` writes and returns
None for anything else, which calamine then reads. Every sheet it accepts must give
calamine's cells (same values, same types, same doubles bit for bit), and the validator's
findings must not depend on which reader ran.
"""

from __future__ import annotations

import math
import random
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pytest

from maskbundle import write_segmentation_bundle
from maskbundle.bundle.validate import validate_bundle
from maskbundle.errors import CorruptInputError
from maskbundle.io import cellwriter, readers, xlsxsheet
from maskbundle.io.readers import read_table_grid, read_xlsx_grid
from maskbundle.synthetic import synthetic_tissue

calamine = pytest.importorskip("python_calamine")
openpyxl = pytest.importorskip("openpyxl")

SEG = Path("derived/segmentation_masks")
TABLE = SEG / "cells-objects.xlsx"
SHEET = "xl/worksheets/sheet1.xml"
PREAMBLE = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)


def _own(path: Path) -> xlsxsheet.OwnSheet | None:
    """The compiled reader with the limits ``read_table_grid`` gives it."""
    return readers._read_own(path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cells, nuclei = synthetic_tissue((64, 64), cell_spacing=12.0, seed=1)
    root = tmp_path_factory.mktemp("own") / "ds"
    write_segmentation_bundle(root, {"cells": cells, "nuclei": nuclei}, physical_size=0.5,
                              protocol_doi="10.17504/protocols.io.example",
                              objects_format="xlsx", features=True)
    return root


def _write_book(path: Path, sheet_xml: str | bytes, parts: dict[str, str] | None = None) -> Path:
    """A workbook with the writer's own parts around ``sheet_xml``."""
    own = {
        "[Content_Types].xml": cellwriter._CONTENT_TYPES,
        "_rels/.rels": cellwriter._ROOT_RELS,
        "docProps/app.xml": cellwriter._APP,
        "docProps/core.xml": cellwriter._CORE,
        "xl/workbook.xml": cellwriter._WORKBOOK,
        "xl/_rels/workbook.xml.rels": cellwriter._WORKBOOK_RELS,
        "xl/styles.xml": cellwriter._STYLES,
        **(parts or {}),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in own.items():
            zf.writestr(name, text)
        zf.writestr(SHEET, sheet_xml)
    return path


def _sheet(rows_xml: str, dim: str = "A1:C3") -> str:
    return f'{PREAMBLE}<dimension ref="{dim}"/><sheetData>{rows_xml}</sheetData></worksheet>'


def _letters(col: int) -> str:
    s = ""
    while col:
        col, r = divmod(col - 1, 26)
        s = chr(65 + r) + s
    return s


def _key(v: Any) -> tuple[str, Any]:
    """A value with its type; doubles by their bits (-0.0 and NaN compare exactly)."""
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    return (type(v).__name__, v)


def _calamine_rows(path: Path) -> list[list[Any]]:
    wb = calamine.CalamineWorkbook.from_path(str(path))
    try:
        rows: list[list[Any]] = wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    finally:
        wb.close()
    return rows


def _same_cells(path: Path) -> None:
    own = _own(path)
    assert own is not None
    got = [[_key(v) for v in r] for r in own.rows_as_values(0, own.n_rows)]
    want = [[_key(v) for v in r] for r in _calamine_rows(path)]
    assert got == want


@pytest.fixture
def calamine_only(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call to make ``read_table_grid`` skip the compiled reader (calamine reads all)."""

    def off() -> None:
        monkeypatch.setattr(readers, "_read_own", lambda path: None)

    return off


def _same_grids(a: readers.TableGrid, b: readers.TableGrid) -> None:
    assert a.rows == b.rows
    assert a.sheet_names == b.sheet_names
    assert a.n_body == b.n_body
    assert (a.columns is None) == (b.columns is None)
    for x, y in zip(a.columns or [], b.columns or [], strict=True):
        assert type(x) is type(y)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype == np.float64
            assert np.array_equal(x.view(np.uint64), np.asarray(y).view(np.uint64))
        else:
            assert x == y


# -- our own files -----------------------------------------------------------------------


def test_own_bundle_tables_read_as_calamine_reads_them(
    bundle: Path, calamine_only: Callable[[], None]
) -> None:
    for name in ("cells", "nuclei"):
        path = bundle / SEG / f"{name}-objects.xlsx"
        assert _own(path) is not None
        _same_cells(path)
    fast = read_table_grid(bundle / TABLE, typed_body_after=10)
    text = read_xlsx_grid(bundle / TABLE)
    calamine_only()
    _same_grids(fast, read_table_grid(bundle / TABLE, typed_body_after=10))
    assert text == read_xlsx_grid(bundle / TABLE)
    assert fast.columns is not None and sum(isinstance(c, np.ndarray) for c in fast.columns) > 5


def test_own_bundle_cells_match_openpyxl(bundle: Path) -> None:
    """An independent reading: openpyxl's values, numbers as doubles, text as text."""
    own = _own(bundle / TABLE)
    assert own is not None
    wb = openpyxl.load_workbook(bundle / TABLE, read_only=True)
    rows = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    got = own.rows_as_values(0, own.n_rows)
    assert len(got) == len(rows)
    for g, w in zip(got, rows, strict=True):
        w = [*w, *[None] * (len(g) - len(w))]
        for a, b in zip(g, w, strict=True):
            if b is None:
                assert a == ""
            elif isinstance(b, str):
                assert a == b
            else:
                assert isinstance(a, float) and a == float(b)


def test_other_tools_workbooks_go_to_calamine(bundle: Path, tmp_path: Path) -> None:
    """openpyxl writes shared strings and styles: not our form, read by calamine."""
    src = openpyxl.load_workbook(bundle / TABLE, read_only=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "MAIN"
    for row in src.worksheets[0].iter_rows(values_only=True):
        ws.append(list(row))
    src.close()
    ws.cell(row=11, column=2).font = openpyxl.styles.Font(bold=True)
    path = tmp_path / "openpyxl.xlsx"
    wb.save(path)
    assert _own(path) is None
    grid = read_table_grid(path, typed_body_after=10)
    own = read_table_grid(bundle / TABLE, typed_body_after=10)
    assert grid.rows == own.rows and grid.n_body == own.n_body
    assert grid.columns is not None and own.columns is not None
    for x, y in zip(grid.columns, own.columns, strict=True):
        assert type(x) is type(y)  # openpyxl keeps 15 digits: the values only nearly equal
        assert np.allclose(x, y, rtol=1e-14, equal_nan=True) if isinstance(x, np.ndarray) \
            else x == y


def test_shared_strings_workbook_goes_to_calamine(tmp_path: Path) -> None:
    """Excel's form: shared strings, styles, spans; read by calamine, as openpyxl reads it."""
    rels = cellwriter._WORKBOOK_RELS.replace(
        "</Relationships>",
        '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
    types = cellwriter._CONTENT_TYPES.replace(
        "</Types>",
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
    sst = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="http://'
           'schemas.openxmlformats.org/spreadsheetml/2006/main" count="2" uniqueCount="2">'
           '<si><t>Object ID</t></si><si><t xml:space="preserve"> a &amp; b </t></si></sst>')
    sheet = _sheet('<row r="1" spans="1:2"><c r="A1" t="s"><v>0</v></c>'
                   '<c r="B1" t="s" s="0"><v>1</v></c></row>'
                   '<row r="2" spans="1:2"><c r="A2" t="n"><v>7</v></c>'
                   '<c r="B2" s="0"><v>2.5</v></c></row>', dim="A1:B2")
    path = _write_book(tmp_path / "sst.xlsx", sheet, {
        "xl/_rels/workbook.xml.rels": rels, "[Content_Types].xml": types,
        "xl/sharedStrings.xml": sst})
    assert _own(path) is None
    wb = openpyxl.load_workbook(path, read_only=True)
    want = [["" if v is None else str(v) for v in r]
            for r in wb.worksheets[0].iter_rows(values_only=True)]
    wb.close()
    assert want == [["Object ID", " a & b "], ["7", "2.5"]]
    assert read_xlsx_grid(path).rows == want


# -- generated sheets against calamine ---------------------------------------------------


def _number_texts(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        return repr(rng.uniform(-1e3, 1e3))
    if kind == 1:
        return repr(struct.unpack("<d", struct.pack("<Q", rng.getrandbits(63)))[0])
    if kind == 2:
        return str(rng.randrange(-10**6, 10**6))
    if kind == 3:  # many digits, beyond what the compiled parse does exactly
        return "".join(rng.choice("0123456789") for _ in range(rng.randrange(15, 30)))
    if kind == 4:
        return f"{rng.randrange(1, 10)}.{rng.randrange(10**16):016d}e{rng.randrange(-330, 330)}"
    if kind == 5:
        return rng.choice(["0", "-0", "0.0", "-0.0", "inf", "-inf", "1e400", "-1e-400",
                           "5e-324", "1.7976931348623157e+308", "9007199254740993",
                           "0.1", "007.50", "1e+16", "1e-05", "0e99999", "123456789012345678"])
    if kind == 6:
        return repr(rng.random() * 10.0 ** rng.randrange(-25, 25))
    if kind == 7:
        return str(rng.randrange(0, 2**64))
    return repr(float(rng.randrange(-(2**53), 2**53)))


_ALPHABET = ["a", "Z", "0", " ", "\t", "\n", "&", "<", ">", '"', "'", "\u00e9", "\u4e2d",
             "\U0001f600", "|", "=", "-", "_", "x"]


def _text(rng: random.Random) -> str:
    while True:
        s = "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(1, 8)))
        if "_x" not in s:
            return s


def _text_cell(ref: str, s: str, rng: random.Random) -> str:
    body = escape(s, {'"': "&quot;", "'": "&apos;"} if rng.random() < 0.5 else {})
    space = ' xml:space="preserve"' if s != s.strip(" \t\n") or rng.random() < 0.2 else ""
    return f'<c r="{ref}" t="inlineStr"><is><t{space}>{body}</t></is></c>'


def _random_sheet(rng: random.Random) -> str:
    parts = []
    row = 0
    for _ in range(rng.randrange(1, 12)):
        row += rng.choice([1, 1, 1, 2, 5])
        cells = []
        col = 0
        for _ in range(rng.randrange(0, 7)):
            col += rng.choice([1, 1, 2, 30])
            ref = f"{_letters(col)}{row}"
            if rng.random() < 0.6:
                cells.append(f'<c r="{ref}"><v>{_number_texts(rng)}</v></c>')
            else:
                cells.append(_text_cell(ref, _text(rng), rng))
        parts.append(f'<row r="{row}">' + "".join(cells) + "</row>")
    return _sheet("".join(parts))


@pytest.mark.parametrize("seed", range(6))
def test_generated_sheets_read_as_calamine_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(xlsxsheet, "CHUNK", rng.choice([64, 512, 1 << 22]))  # row carries
    if seed % 2:  # inflated as a stream, not in one call
        monkeypatch.setattr(xlsxsheet, "ONE_SHOT", 0)
    for i in range(25):
        path = _write_book(tmp_path / f"g{i}.xlsx", _random_sheet(rng))
        if all(not r for r in _calamine_rows(path)):
            assert _own(path) is None  # no cells: calamine's to judge
            continue
        _same_cells(path)


def test_typed_tables_of_generated_sheets(tmp_path: Path, calamine_only: Callable[[], None]
                                          ) -> None:
    """``read_table_grid(..., typed_body_after=k)`` from either reader, on sheets with
    number, text and mixed columns, blanks, gaps and trailing empty rows."""
    rng = random.Random(99)
    books = []
    for i in range(40):
        rows = []
        for r in range(1, rng.randrange(2, 30)):
            cells = []
            for c in range(1, 7):
                ref = f"{_letters(c)}{r}"
                if rng.random() < 0.15:
                    continue
                if c <= 3 or rng.random() < 0.1:
                    cells.append(f'<c r="{ref}"><v>{_number_texts(rng)}</v></c>')
                else:
                    cells.append(_text_cell(ref, _text(rng), rng))
            rows.append(f'<row r="{r}">' + "".join(cells) + "</row>")
        rows.append(f'<row r="{r + 1}"></row>')
        books.append(_write_book(tmp_path / f"t{i}.xlsx", _sheet("".join(rows))))
    fast = [read_table_grid(p, typed_body_after=k) for p in books for k in (1, 10)]
    fast_text = [read_xlsx_grid(p) for p in books]
    calamine_only()
    slow = [read_table_grid(p, typed_body_after=k) for p in books for k in (1, 10)]
    for a, b in zip(fast, slow, strict=True):
        _same_grids(a, b)
    assert fast_text == [read_xlsx_grid(p) for p in books]


UNSUPPORTED = {
    "shared string": '<row r="1"><c r="A1" t="s"><v>0</v></c></row>',
    "style": '<row r="1"><c r="A1" s="1"><v>1</v></c></row>',
    "formula": '<row r="1"><c r="A1"><f>1+1</f><v>2</v></c></row>',
    "spans": '<row r="1" spans="1:1"><c r="A1"><v>1</v></c></row>',
    "number spelled 1E5": '<row r="1"><c r="A1"><v>1E5</v></c></row>',
    "number spelled +1": '<row r="1"><c r="A1"><v>+1</v></c></row>',
    "number spelled .5": '<row r="1"><c r="A1"><v>.5</v></c></row>',
    "not a number": '<row r="1"><c r="A1"><v>abc</v></c></row>',
    "nan": '<row r="1"><c r="A1"><v>nan</v></c></row>',
    "empty text": '<row r="1"><c r="A1" t="inlineStr"><is><t></t></is></c></row>',
    "trimmed text": '<row r="1"><c r="A1" t="inlineStr"><is><t> a</t></is></c></row>',
    "_x escape": '<row r="1"><c r="A1" t="inlineStr"><is><t>a_x000D_</t></is></c></row>',
    "character reference": '<row r="1"><c r="A1" t="inlineStr"><is><t>&#65;</t></is></c></row>',
    "carriage return": '<row r="1"><c r="A1" t="inlineStr"><is><t>a\rb</t></is></c></row>',
    "rich text": '<row r="1"><c r="A1" t="inlineStr"><is><r><t>a</t></r></is></c></row>',
    "rows out of order": '<row r="2"><c r="A2"><v>1</v></c></row><row r="1"></row>',
    "columns out of order": '<row r="1"><c r="B1"><v>1</v></c><c r="A1"><v>1</v></c></row>',
    "reference of another row": '<row r="1"><c r="A2"><v>1</v></c></row>',
    "cell without reference": '<row r="1"><c><v>1</v></c></row>',
    "leading zero in the row": '<row r="01"><c r="A01"><v>1</v></c></row>',
    "self-closing cell": '<row r="1"><c r="A1"/></row>',
    "comment": '<row r="1"><!-- x --><c r="A1"><v>1</v></c></row>',
    "deep garbage": '<row r="1">' + "<a>" * 5000 + "</a>" * 5000 + "</row>",
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_anything_else_goes_to_calamine(tmp_path: Path, case: str,
                                        calamine_only: Callable[[], None]) -> None:
    path = _write_book(tmp_path / "u.xlsx", _sheet(UNSUPPORTED[case]))
    assert _own(path) is None
    fast = _outcome(lambda: read_table_grid(path, typed_body_after=1))
    calamine_only()
    assert fast == _outcome(lambda: read_table_grid(path, typed_body_after=1))


def _outcome(read: Callable[[], readers.TableGrid]) -> Any:
    """The grid's rows and text (NaN-safe), or the error's type and message."""
    try:
        g = read()
    except Exception as exc:
        return (type(exc).__name__, str(exc))
    cols = [c.tolist() if isinstance(c, np.ndarray) else c for c in g.columns or []]
    return (g.rows, g.sheet_names, g.n_body, [[repr(v) for v in c] for c in cols])


def test_other_parts_or_names_go_to_calamine(bundle: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(bundle / TABLE) as zf:
        sheet = zf.read(SHEET)
    renamed = cellwriter._WORKBOOK.replace('name="MAIN"', 'name="Other"')
    assert _own(_write_book(tmp_path / "a.xlsx", sheet)) is not None
    assert _own(
        _write_book(tmp_path / "b.xlsx", sheet, {"xl/workbook.xml": renamed})) is None
    grid = read_table_grid(tmp_path / "b.xlsx", typed_body_after=10)
    assert grid.sheet_names == ["Other"]
    with zipfile.ZipFile(tmp_path / "c.xlsx", "w") as zf:  # an extra part
        with zipfile.ZipFile(tmp_path / "a.xlsx") as src:
            for info in src.infolist():
                zf.writestr(info, src.read(info))
        zf.writestr("xl/sharedStrings.xml", "<sst/>")
    assert _own(tmp_path / "c.xlsx") is None


# -- hostile input -----------------------------------------------------------------------


def test_far_cell_is_refused_with_the_same_message(tmp_path: Path,
                                                   calamine_only: Callable[[], None]) -> None:
    """One cell at XFD1048576 in a tiny file: no grid of 17 billion cells is built."""
    path = _write_book(tmp_path / "far.xlsx", _sheet(
        '<row r="1"><c r="A1"><v>1</v></c></row>'
        '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>', dim="A1:XFD1048576"))
    assert _own(path) is None
    with pytest.raises(CorruptInputError, match="beyond") as fast:
        read_table_grid(path, typed_body_after=10)
    calamine_only()
    with pytest.raises(CorruptInputError) as slow:
        read_table_grid(path, typed_body_after=10)
    assert str(fast.value) == str(slow.value)


def test_row_beyond_excel_and_declared_dimension(tmp_path: Path) -> None:
    path = _write_book(tmp_path / "r.xlsx", _sheet('<row r="9999999"></row>'))
    assert _own(path) is None
    # a huge declared dimension alone is no extent: the cells are
    path = _write_book(tmp_path / "d.xlsx", _sheet('<row r="1"><c r="A1"><v>1</v></c></row>',
                                                    dim="A1:XFD1048576"))
    own = _own(path)
    assert own is not None and (own.n_rows, own.width) == (1, 1)


def test_entity_declarations_are_never_expanded(tmp_path: Path) -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&b;</t></is></c></row>'
            '</sheetData></worksheet>')
    path = _write_book(tmp_path / "e.xlsx", bomb)
    assert _own(path) is None
    entity_in_text = _sheet('<row r="1"><c r="A1" t="inlineStr"><is><t>&b;</t></is></c></row>')
    assert _own(_write_book(tmp_path / "f.xlsx", entity_in_text)) is None


@pytest.mark.parametrize("one_shot", [True, False])
def test_long_row_and_truncated_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      one_shot: bool) -> None:
    row = '<row r="1">' + "".join(f'<c r="{_letters(c)}1"><v>{c}</v></c>'
                                  for c in range(1, 200)) + "</row>"
    path = _write_book(tmp_path / "l.xlsx", _sheet(row + row.replace('"1"', '"2"')
                                                   .replace('1"', '2"')))
    if not one_shot:
        monkeypatch.setattr(xlsxsheet, "ONE_SHOT", 0)
    monkeypatch.setattr(xlsxsheet, "CHUNK", 256)
    assert _own(path) is not None
    monkeypatch.setattr(xlsxsheet, "MAX_CARRY", 1024)  # one row longer than the carry bound
    assert _own(path) is None
    cut = _sheet(row)[:-30]  # no closing tags
    assert _own(_write_book(tmp_path / "t.xlsx", cut)) is None


@pytest.mark.parametrize("one_shot", [True, False])
def test_damaged_member_goes_to_calamine(bundle: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, one_shot: bool) -> None:
    """A flipped byte inside the deflated sheet: never an exception from our reader."""
    if not one_shot:
        monkeypatch.setattr(xlsxsheet, "ONE_SHOT", 0)
    path = tmp_path / "x.xlsx"
    shutil.copy(bundle / TABLE, path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(SHEET)
    data = bytearray(path.read_bytes())
    at = info.header_offset + 30 + len(SHEET) + 200
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _own(path) is None


# -- the validator's findings ------------------------------------------------------------


def _cell(xml: str, ref: str) -> tuple[int, int]:
    start = xml.index(f'<c r="{ref}"')
    return start, xml.index("</c>", start) + 4


def _column_of(xml: str, name: str) -> str:
    s, e = _cell(xml, next(f"{_letters(c)}10" for c in range(1, 60)
                           if f"<t>{name}</t>" in xml[slice(*_cell(xml, f"{_letters(c)}10"))]))
    return xml[s + 6: e].split('"')[0].rstrip("0123456789")


def _edit_number(col: str, row: int, text: str) -> Callable[[str], str]:
    def run(xml: str) -> str:
        s, e = _cell(xml, f"{col}{row}")
        return xml[:s] + f'<c r="{col}{row}"><v>{text}</v></c>' + xml[e:]
    return run


def _edit_text(col: str, row: int, text: str) -> Callable[[str], str]:
    def run(xml: str) -> str:
        s, e = _cell(xml, f"{col}{row}")
        return xml[:s] + _text_cell(f"{col}{row}", text, random.Random(0)) + xml[e:]
    return run


def _drop(col: str, row: int) -> Callable[[str], str]:
    def run(xml: str) -> str:
        s, e = _cell(xml, f"{col}{row}")
        return xml[:s] + xml[e:]
    return run


def _by_name(name: str, make: Callable[[str, int, str], Callable[[str], str]], row: int,
             text: str) -> Callable[[str], str]:
    return lambda xml: make(_column_of(xml, name), row, text)(xml)


def _drop_named(name: str, row: int) -> Callable[[str], str]:
    return lambda xml: _drop(_column_of(xml, name), row)(xml)


EDITS: dict[str, tuple[list[Callable[[str], str]], str]] = {
    "text in number columns": ([_by_name("X", _edit_text, 11, "far"),
                                _by_name("Area (square micrometer)", _edit_text, 12, "12")], "objects.number"),
    "fraction in an integer column": ([_by_name("Object ID", _edit_number, 12, "2.5")],
                                      "objects.object-ids"),
    "inf and -inf": ([_by_name("X", _edit_number, 13, "inf"),
                      _by_name("Y", _edit_number, 14, "-inf")], "objects.formula"),
    "blank required cells": ([_drop_named("Object ID", 15), _drop_named("X", 16)],
                             "objects.required-blank"),
    "moved centroid": ([_by_name("X", _edit_number, 11, "1e6")], "objects.centroids"),
    "formula-like text": ([_by_name("Object type", _edit_text, 12, "=1+1"),
                           _by_name("Mask name", _edit_text, 13, "a|b")], "objects.formula"),
    "non-ASCII and entities": ([_by_name("Mask name", _edit_text, 11, "c\u00e9l & <x>")],
                               "objects.ascii"),
    "number in a text column": ([_by_name("Mask name", _edit_number, 12, "3.5")],
                                "objects.mask-name"),
    "long digits": ([_by_name("Object ID", _edit_number, 11, "9007199254740993")],
                    "objects.ids-match-labels"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_validator_findings_do_not_depend_on_the_reader(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    edits, code = EDITS[case]
    root = tmp_path / "ds"
    shutil.copytree(bundle, root)
    with zipfile.ZipFile(root / TABLE) as zf:
        parts = {i.filename: zf.read(i) for i in zf.infolist()}
    xml = parts[SHEET].decode()
    for edit in edits:
        xml = edit(xml)
    parts[SHEET] = xml.encode()
    with zipfile.ZipFile(root / TABLE, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    assert _own(root / TABLE) is not None  # the edit kept our form
    fast = validate_bundle(root)
    monkeypatch.setattr(readers, "_read_own", lambda path: None)
    slow = validate_bundle(root)

    def findings(r: Any) -> list[tuple[str, ...]]:
        return [(f.location, f.code, f.message, f.severity, f.status) for f in r.findings]

    assert findings(fast) == findings(slow)
    assert code in {f.code for f in fast.findings if f.status == "failed"}


def test_clinger_parse_is_exact() -> None:
    """The compiled parse of short decimals equals Python's ``float`` bit for bit."""
    rng = random.Random(5)
    texts = [repr(round(rng.uniform(-1e6, 1e6), rng.randrange(0, 9))) for _ in range(3000)]
    texts += [f"{rng.randrange(10**15)}e-{rng.randrange(0, 23)}" for _ in range(3000)]
    texts += [f"{rng.randrange(2**53)}e{rng.randrange(0, 23)}" for _ in range(1000)]
    xml = "".join(f'<row r="{i + 1}"><c r="A{i + 1}"><v>{t}</v></c></row>'
                  for i, t in enumerate(texts))
    buf = np.frombuffer(xml.encode(), np.uint8)
    n = len(texts)
    arrays = [np.empty(n, t) for t in (np.int32, np.int32, np.uint8, np.float64, np.int64,
                                       np.int64, np.int64)]
    status, found, _ = xlsxsheet._scan(buf, 0, *arrays)
    assert (status, found) == (0, n)
    kinds, vals = arrays[2], arrays[3]
    fast = kinds == xlsxsheet.NUMBER
    assert fast.mean() > 0.9  # most take the compiled route
    want = np.array([float(t) for t in texts])
    assert np.array_equal(vals[fast].view(np.uint64), want[fast].view(np.uint64))
    assert not any(math.isnan(v) for v in vals[fast])
