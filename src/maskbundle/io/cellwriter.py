"""Streaming writer of the objects table: cells formatted once, written as TSV or XLSX.

The cells of a block of rows are formatted column by column (one C-level ``map`` per
column: ``repr`` for floats, ``str`` for integers and text), then joined into TSV lines
or wrapped into sheet XML. Both formats come from the same formatted strings, so a TSV
and an XLSX of one table hold the same cell text. Only one block of rows is formatted at
a time: memory does not grow with a second copy of the table.

Cell text (what :func:`pandas.DataFrame.to_csv` writes with ``float_format=repr``):

- floats: Python ``repr`` of the double (the shortest text that reads back to the same
  double); NaN (a missing value) is an empty cell; infinities are ``inf``/``-inf``
  (the pre-write checks refuse them in number columns);
- integers: exact decimal digits; integer-typed columns stored as floats are written as
  integers (the pre-write checks have made sure they are whole);
- anything else: ``str(value)``, empty for ``None``/NaN.

The XLSX is a minimal workbook (one sheet ``MAIN``, inline strings) written with fixed
zip timestamps, so equal tables give byte-identical files.
"""

from __future__ import annotations

import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from ..rules import XLSX_SHEET
from ._cellbytes import format_floats, format_ints, join_sheet_rows, join_tsv

__all__ = ["CHUNK_ROWS", "ColumnCells", "write_tsv_table", "write_xlsx_table"]

#: Rows formatted at a time: large enough that per-block overhead vanishes, small enough
#: that the block's strings stay a few tens of MB for wide tables.
CHUNK_ROWS = 1 << 14
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# zlib level 1: the sheet XML is very repetitive, so level 1 is within a few per cent of
# the default's size at a third of its time
_ZIP_LEVEL = 1
_AHEAD = 3


Block = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Formatted cells of one column over a block of rows: (bytes, starts, ends)."""


def _starts(ends: np.ndarray) -> np.ndarray:
    starts = np.empty_like(ends)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1]
    return starts


def _object_cells(values: np.ndarray) -> tuple[list[str], bool]:
    """Cell text of an object column, and whether all cells are one constant text."""
    missing = pd.isna(values)
    if not missing.any():
        first = values[0] if len(values) else None
        # constant text columns (Source file, Mask name ...) are the common case
        if isinstance(first, str) and bool((values == first).all()):
            return [first], True
        return list(map(str, values.tolist())), False
    cells = ["" if m else str(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]
    return cells, False


def _text_xml(s: str) -> str:
    space = ' xml:space="preserve"' if s != s.strip() else ""
    return f"<is><t{space}>{escape(s)}</t></is>"


def _text_block(cells: list[str], constant_rows: int) -> Block:
    """Encoded cells; ``cells`` is one text repeated ``constant_rows`` times when > 0."""
    if constant_rows:
        data = np.frombuffer(cells[0].encode("utf-8"), np.uint8)
        return data, np.zeros(constant_rows, np.int64), np.full(constant_rows, data.size, np.int64)
    n = len(cells)
    encoded = [c.encode("utf-8") for c in cells]
    ends = np.cumsum(np.fromiter(map(len, encoded), np.int64, n))
    return np.frombuffer(b"".join(encoded), np.uint8), _starts(ends), ends


def _xml_cells(cells: list[str]) -> list[str]:
    cache: dict[str, str] = {}
    out = []
    for c in cells:
        x = cache.get(c)
        if x is None:
            x = cache[c] = _text_xml(c) if c else ""
            if len(cache) > 4096:  # many distinct texts: do not hold them all
                cache.clear()
        out.append(x)
    return out


class ColumnCells:
    """How one column's values become cell text, and whether the XLSX cell is a number."""

    def __init__(self, column: pd.Series, *, integer: bool) -> None:
        dtype = column.dtype
        self.numeric = True
        self._values: np.ndarray
        self._fmt: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None
        big = isinstance(dtype, np.dtype) and dtype == np.uint64 and len(column) and bool(
            column.to_numpy().max() > np.iinfo(np.int64).max
        )
        if isinstance(dtype, np.dtype) and dtype.kind in "iu" and not big:
            self._values, self._fmt = column.to_numpy().astype(np.int64, copy=False), format_ints
        elif isinstance(dtype, np.dtype) and dtype.kind == "f":
            values = column.to_numpy()
            if integer:  # whole and finite: checked before writing
                self._values, self._fmt = values.astype(np.int64), format_ints
            else:
                # float32 and float16 are written as the double they widen to
                self._values, self._fmt = values.astype(np.float64, copy=False), format_floats
        elif integer:  # nullable or object integer columns: whole numbers, no blanks
            values = column.to_numpy(dtype=object)
            self._values, self._fmt = np.asarray([int(v) for v in values], np.int64), format_ints
        else:
            self._values, self._fmt = column.to_numpy(dtype=object), None
            self.numeric = False

    def text(self, start: int, stop: int) -> list[str]:
        """Cell text of rows ``start:stop`` as Python strings."""
        buf, starts, ends = self.block(start, stop)
        raw = buf.tobytes()
        return [raw[s:e].decode("utf-8") for s, e in zip(starts.tolist(), ends.tolist(),
                                                          strict=True)]

    def block(self, start: int, stop: int, *, xml: bool = False) -> Block:
        """Cells of rows ``start:stop``; ``xml`` gives text cells as sheet XML."""
        values = self._values[start:stop]
        if self._fmt is not None:
            buf, ends = self._fmt(values)
            return buf, _starts(ends), ends
        cells, constant = _object_cells(values)
        return _text_block(_xml_cells(cells) if xml else cells, len(values) if constant else 0)


def _stack(blocks: Sequence[Block]) -> Block:
    """One buffer for all columns, starts/ends of shape (rows, columns) into it."""
    base = np.cumsum([0, *[b[0].size for b in blocks]])
    buf = np.concatenate([b[0] for b in blocks]) if blocks else np.empty(0, np.uint8)
    starts = np.stack([b[1] + base[c] for c, b in enumerate(blocks)], axis=1)
    ends = np.stack([b[2] + base[c] for c, b in enumerate(blocks)], axis=1)
    return buf, starts, ends


def _in_order(make: Callable[[int, int], np.ndarray], n_rows: int) -> Iterator[np.ndarray]:
    """``make(start, stop)`` for each block of rows, in order, computed ahead in threads.

    The kernels release the GIL, so formatting the next blocks overlaps writing (and, for
    XLSX, compressing) this one; at most ``_AHEAD`` blocks wait, which bounds memory.
    """
    ranges = [(a, min(a + CHUNK_ROWS, n_rows)) for a in range(0, n_rows, CHUNK_ROWS)]
    if len(ranges) <= 1:
        yield from (make(a, b) for a, b in ranges)
        return
    with ThreadPoolExecutor(2) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for a, b in ranges:
            pending.append(pool.submit(make, a, b))
            if len(pending) > _AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_tsv_table(
    path: Path, header: Sequence[Sequence[str]], columns: Sequence[ColumnCells], n_rows: int
) -> None:
    """Header rows, then the data rows, tab-separated with ``\\n`` line ends."""
    with open(path, "wb") as f:
        f.write("".join("\t".join(row) + "\n" for row in header).encode("utf-8"))
        def make(start: int, stop: int) -> np.ndarray:
            out: np.ndarray = join_tsv(*_stack([c.block(start, stop) for c in columns]))
            return out

        for data in _in_order(make, n_rows):
            f.write(data.data)


def _col_letters(j: int) -> str:
    s = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        s = chr(65 + r) + s
    return s


def _header_row_xml(row_number: int, cells: Sequence[str]) -> str:
    parts = [
        f'<c r="{_col_letters(j)}{row_number}" t="inlineStr">{_text_xml(c)}</c>'
        for j, c in enumerate(cells)
        if c != ""
    ]
    return f'<row r="{row_number}">' + "".join(parts) + "</row>"


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
    '<Override PartName="/docProps/app.xml" ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
    "</Types>"
)
_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>'
    '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties" Target="docProps/app.xml"/>'
    "</Relationships>"
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    f'<sheets><sheet name="{XLSX_SHEET}" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>'
    "</Relationships>"
)
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)
_CORE = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<dc:creator>maskbundle</dc:creator>"
    '<dcterms:created xsi:type="dcterms:W3CDTF">2000-01-01T00:00:00Z</dcterms:created>'
    "</cp:coreProperties>"
)
_APP = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
    "<Application>maskbundle</Application></Properties>"
)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    # ZipFile's compresslevel does not reach entries given as ZipInfo (Python 3.11-3.13)
    info._compresslevel = _ZIP_LEVEL  # type: ignore[attr-defined]
    return info


def write_xlsx_table(
    path: Path, header: Sequence[Sequence[str]], columns: Sequence[ColumnCells], n_rows: int
) -> None:
    """A one-sheet (``MAIN``) workbook: header rows as text, then the data rows.

    Number columns hold numeric cells (``<v>``) with the same text the TSV gets; text
    cells are inline strings; empty cells are left out.
    """
    width = max([len(columns), *[len(r) for r in header]])
    last_row = len(header) + n_rows
    dim = f"A1:{_col_letters(max(width - 1, 0))}{max(last_row, 1)}"
    # zip64 only where the sheet could pass 2 GiB (a bound on its size), so small files
    # keep the plain layout; either way the bytes depend on the table only
    zip64 = n_rows * (len(columns) * 96 + 32) > 2**31
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=_ZIP_LEVEL) as zf:
        for name, text in (
            ("[Content_Types].xml", _CONTENT_TYPES),
            ("_rels/.rels", _ROOT_RELS),
            ("docProps/app.xml", _APP),
            ("docProps/core.xml", _CORE),
            ("xl/workbook.xml", _WORKBOOK),
            ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS),
            ("xl/styles.xml", _STYLES),
        ):
            zf.writestr(_entry(name), text)
        with zf.open(_entry("xl/worksheets/sheet1.xml"), "w", force_zip64=zip64) as raw:
            _write_sheet(raw, dim, header, columns, n_rows)


def _write_sheet(
    raw: IO[bytes],
    dim: str,
    header: Sequence[Sequence[str]],
    columns: Sequence[ColumnCells],
    n_rows: int,
) -> None:
    raw.write(
        (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f'<dimension ref="{dim}"/><sheetData>'
            + "".join(_header_row_xml(i + 1, row) for i, row in enumerate(header))
        ).encode()
    )
    letters = [_col_letters(j).encode() for j in range(len(columns))]
    refs = np.frombuffer(b"".join(letters), np.uint8)
    ref_ends = np.cumsum([len(x) for x in letters]).astype(np.int64)
    numeric = np.array([c.numeric for c in columns], np.bool_)
    first = len(header) + 1

    def make(start: int, stop: int) -> np.ndarray:
        buf, starts, ends = _stack([c.block(start, stop, xml=True) for c in columns])
        out: np.ndarray = join_sheet_rows(buf, starts, ends, numeric, refs, ref_ends,
                                          first + start)
        return out

    for data in _in_order(make, n_rows):
        raw.write(data.data)
    raw.write(b"</sheetData></worksheet>")
