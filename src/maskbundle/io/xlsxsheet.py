"""A fast reader for the workbooks maskbundle writes itself (``io.cellwriter``).

The validator spends most of its time on the objects tables of an ``.xlsx`` bundle:
calamine parses the sheet into Python objects, cell by cell. Our own writer produces one
fixed form of sheet XML (inline strings, numbers in ``<v>``, no styles, no shared
strings), so a workbook in exactly that form is read here in one compiled pass over the
inflated sheet, straight into float64 columns.

Anything else (a workbook saved by Excel or openpyxl, one edited by hand, any tag,
attribute, entity or number spelling the writer does not produce, a sheet beyond the
extent limits) makes :func:`read_own_xlsx` return ``None`` and the caller reads the file
with calamine as before, so every finding stays what calamine's reading gives. The
reader accepts only what it can reproduce exactly; tests compare it with calamine.

Hostile input: the zip members must pass the caller's size and ratio checks first; the
sheet is inflated never beyond the member's declared size, in one call up to
:data:`ONE_SHOT` bytes, else streamed in chunks of :data:`CHUNK` bytes, and scanned in
pieces of that size (a row longer than :data:`MAX_CARRY` falls back); no DTD, entity or
namespace is interpreted (the five predefined entities in text are the only ones
accepted). Memory grows with the cells present, not with the sheet's declared extent.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from ..rules import XLSX_SHEET

__all__ = ["CHUNK", "MAX_CARRY", "ONE_SHOT", "Extent", "OwnSheet", "read_own_xlsx"]

CHUNK = 1 << 22  # inflated bytes scanned at a time
MAX_CARRY = 1 << 26  # a single row longer than this is left to calamine
ONE_SHOT = 1 << 25  # a sheet up to this size is inflated in one call (libdeflate, fast);
# larger ones are streamed through zlib, which keeps the peak memory of large tables down
_MAX_PART = 1 << 16  # the small parts of our workbooks are a few hundred bytes

_SHEET = "xl/worksheets/sheet1.xml"
_PREAMBLE = re.compile(
    rb'<\?xml version="1\.0" encoding="UTF-8" standalone="yes"\?>\n'
    rb'<worksheet xmlns="http://schemas\.openxmlformats\.org/spreadsheetml/2006/main">'
    rb'<dimension ref="[A-Z]{1,3}[0-9]{1,7}(?::[A-Z]{1,3}[0-9]{1,7})?"/><sheetData>'
)
_END = b"</sheetData></worksheet>"


def _own_parts() -> dict[str, bytes]:
    """The parts besides the sheet, byte for byte as ``io.cellwriter`` writes them."""
    from . import cellwriter as cw

    return {
        "[Content_Types].xml": cw._CONTENT_TYPES.encode(),
        "_rels/.rels": cw._ROOT_RELS.encode(),
        "docProps/app.xml": cw._APP.encode(),
        "docProps/core.xml": cw._CORE.encode(),
        "xl/workbook.xml": cw._WORKBOOK.encode(),
        "xl/_rels/workbook.xml.rels": cw._WORKBOOK_RELS.encode(),
        "xl/styles.xml": cw._STYLES.encode(),
    }


def _lit(s: bytes) -> np.ndarray:
    return np.frombuffer(s, np.uint8).copy()


_ROW_OPEN = _lit(b'<row r="')
_ROW_CLOSE = _lit(b"</row>")
_CELL_OPEN = _lit(b'<c r="')
_NUM_OPEN = _lit(b'"><v>')
_NUM_CLOSE = _lit(b"</v></c>")
_TXT_OPEN = _lit(b'" t="inlineStr"><is><t')
_PRESERVE = _lit(b' xml:space="preserve">')
_TXT_CLOSE = _lit(b"</t></is></c>")
_INF = _lit(b"inf")
_POW10 = np.array([10.0**k for k in range(23)])  # exact doubles

# kinds of cell the scan reports
NUMBER, SLOW_NUMBER, TEXT, TEXT_ENTITIES = 0, 1, 2, 3
# scan results
_OK, _UNSUPPORTED = 0, 1


@numba.njit(cache=True, nogil=True, inline="always")
def _at(buf: np.ndarray, p: int, stop: int, lit: np.ndarray) -> bool:  # pragma: no cover
    if p + lit.size > stop:
        return False
    for i in range(lit.size):
        if buf[p + i] != lit[i]:
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _number(buf: np.ndarray, p: int, stop: int, most: int) -> tuple[int, int]:
    """(value, end) of the decimal digits at ``p``; value -1 when there are none, more
    than ``most``, or a leading zero."""
    q = p
    v = 0
    while q < stop and 48 <= buf[q] <= 57:
        if q - p == most:
            return -1, q
        v = v * 10 + int(buf[q] - 48)
        q += 1
    if q == p or buf[p] == 48:
        return -1, q
    return v, q


@numba.njit(cache=True, nogil=True)
def _scan(
    buf: np.ndarray,
    prev_row: int,
    rows: np.ndarray,
    cols: np.ndarray,
    kinds: np.ndarray,
    vals: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    roots: np.ndarray,
) -> tuple[int, int, int]:  # pragma: no cover
    """Rows of the writer's sheet XML in ``buf`` (whole ``<row>`` elements only).

    Returns (status, cells found, last row number). For each cell: its row number, its
    column (1-based), its kind, its value (numbers parsed exactly here: at most 15
    significant digits below 2**53 and a power of ten up to 22, Clinger's exact case) and the span
    of its text (text cells, and numbers left to a correctly rounded parse). A text cell
    that repeats the text of the column's previous text cell gets that cell's index in
    ``roots`` (most text columns hold one value), every other cell its own.
    """
    stop = buf.size
    last_root = np.full(16385, -1, np.int64)  # per column: the root of its last text cell
    p = 0
    n = 0
    two53 = 9007199254740992
    while p < stop:
        if not _at(buf, p, stop, _ROW_OPEN):
            return _UNSUPPORTED, n, prev_row
        row, p = _number(buf, p + _ROW_OPEN.size, stop, 7)
        if row <= prev_row or row > 1048576 or not _at(buf, p, stop, _NUM_OPEN[:2]):
            return _UNSUPPORTED, n, prev_row
        p += 2  # '">'
        prev_row = row
        prev_col = 0
        while True:
            if _at(buf, p, stop, _ROW_CLOSE):
                p += _ROW_CLOSE.size
                break
            if not _at(buf, p, stop, _CELL_OPEN):
                return _UNSUPPORTED, n, prev_row
            p += _CELL_OPEN.size
            col = 0
            q = p
            while p < stop and 65 <= buf[p] <= 90 and p - q < 3:
                col = col * 26 + int(buf[p] - 64)
                p += 1
            if p == q or col <= prev_col or col > 16384:
                return _UNSUPPORTED, n, prev_row
            ref_row, p = _number(buf, p, stop, 7)
            if ref_row != row:
                return _UNSUPPORTED, n, prev_row
            prev_col = col
            if n == rows.size:
                return _UNSUPPORTED, n, prev_row
            rows[n] = row
            cols[n] = col
            if _at(buf, p, stop, _NUM_OPEN):
                p += _NUM_OPEN.size
                s = p
                neg = p < stop and buf[p] == 45
                if neg:
                    p += 1
                value = 0.0
                kind = NUMBER
                if _at(buf, p, stop, _INF):
                    p += 3
                    value = np.inf
                else:
                    mant = 0
                    sig = 0  # significant digits (after leading zeros)
                    e10 = 0
                    q = p
                    while p < stop and 48 <= buf[p] <= 57:
                        if mant or buf[p] != 48:
                            sig += 1
                            if sig <= 18:  # below 2**63
                                mant = mant * 10 + int(buf[p] - 48)
                            else:
                                e10 += 1
                        p += 1
                    if p == q:
                        return _UNSUPPORTED, n, prev_row
                    if p < stop and buf[p] == 46:  # '.'
                        p += 1
                        q = p
                        while p < stop and 48 <= buf[p] <= 57:
                            if mant or buf[p] != 48:
                                sig += 1
                                if sig <= 18:  # below 2**63
                                    mant = mant * 10 + int(buf[p] - 48)
                                    e10 -= 1
                            else:
                                e10 -= 1
                            p += 1
                        if p == q:
                            return _UNSUPPORTED, n, prev_row
                    if p < stop and buf[p] == 101:  # 'e'
                        p += 1
                        eneg = p < stop and buf[p] == 45
                        if p < stop and (buf[p] == 45 or buf[p] == 43):
                            p += 1
                        q = p
                        ex = 0
                        while p < stop and 48 <= buf[p] <= 57:
                            if p - q < 6:
                                ex = ex * 10 + int(buf[p] - 48)
                            p += 1
                        if p == q or p - q > 5:
                            return _UNSUPPORTED, n, prev_row
                        e10 += -ex if eneg else ex
                    if mant == 0:
                        value = 0.0
                    elif sig <= 18 and mant <= two53 and -22 <= e10 <= 22:
                        value = mant * _POW10[e10] if e10 >= 0 else mant / _POW10[-e10]
                    else:
                        kind = SLOW_NUMBER
                starts[n] = s
                ends[n] = p
                vals[n] = -value if neg else value
                kinds[n] = kind
                if not _at(buf, p, stop, _NUM_CLOSE):
                    return _UNSUPPORTED, n, prev_row
                p += _NUM_CLOSE.size
            elif _at(buf, p, stop, _TXT_OPEN):
                p += _TXT_OPEN.size
                preserve = False
                if p < stop and buf[p] == 62:  # '>'
                    p += 1
                elif _at(buf, p, stop, _PRESERVE):
                    p += _PRESERVE.size
                    preserve = True
                else:
                    return _UNSUPPORTED, n, prev_row
                s = p
                kind = TEXT
                while p < stop and buf[p] != 60:  # '<'
                    b = buf[p]
                    if b == 38:  # '&': an entity, resolved by the caller
                        kind = TEXT_ENTITIES
                    elif b == 62 or (b < 32 and b != 9 and b != 10):  # '>', \r, controls
                        return _UNSUPPORTED, n, prev_row
                    elif b == 95 and p + 1 < stop and buf[p + 1] == 120:  # '_x' escapes
                        return _UNSUPPORTED, n, prev_row
                    p += 1
                if p == s:  # an empty text cell
                    return _UNSUPPORTED, n, prev_row
                # XML trims the ends of an element's text unless space is preserved
                first, last = buf[s], buf[p - 1]
                if not preserve and (first == 9 or first == 10 or first == 32 or last == 9
                                     or last == 10 or last == 32):
                    return _UNSUPPORTED, n, prev_row
                starts[n] = s
                ends[n] = p
                vals[n] = np.nan
                kinds[n] = kind
                roots[n] = n
                r = last_root[col]
                if r >= 0 and ends[r] - starts[r] == p - s:
                    same = True
                    for i in range(p - s):
                        if buf[s + i] != buf[starts[r] + i]:
                            same = False
                            break
                    if same:
                        roots[n] = r
                last_root[col] = roots[n]
                if not _at(buf, p, stop, _TXT_CLOSE):
                    return _UNSUPPORTED, n, prev_row
                p += _TXT_CLOSE.size
            else:
                return _UNSUPPORTED, n, prev_row
            n += 1
    return _OK, n, prev_row


_ENTITY = re.compile(rb"&(amp|lt|gt|quot|apos);")
_ENTITY_TEXT = {b"amp": b"&", b"lt": b"<", b"gt": b">", b"quot": b'"', b"apos": b"'"}


class _Unsupported(Exception):
    """The workbook is not in the writer's form: calamine reads it."""


def _unescape(raw: bytes) -> bytes:
    if raw.count(b"&") != len(_ENTITY.findall(raw)):  # a character reference or stray &
        raise _Unsupported
    return _ENTITY.sub(lambda m: _ENTITY_TEXT[m.group(1)], raw)


@numba.njit(cache=True, nogil=True)
def _gather(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int
            ) -> np.ndarray:  # pragma: no cover
    """The texts ``buf[starts[i]:ends[i]]`` as rows of ``width`` bytes, zero-padded."""
    out = np.zeros((starts.size, width), np.uint8)
    for i in range(starts.size):
        for j in range(ends[i] - starts[i]):
            out[i, j] = buf[starts[i] + j]
    return out


def _slow_numbers(buf: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Correctly rounded doubles of number texts the scan validated (numpy's parse, as
    Python's ``float``), vectorised: the texts are gathered into one fixed-width array."""
    width = int((ends - starts).max())
    if width > 64:
        raise _Unsupported
    texts = _gather(np.frombuffer(buf, np.uint8), starts, ends, width).view(f"S{width}")
    with np.errstate(over="ignore"):  # 1e400 is inf, as calamine reads it
        out: np.ndarray = texts.ravel().astype(np.float64)
    return out


@dataclass
class _Cells:
    """The cells of the sheet, numbers and texts apart, row and column 1-based."""

    num_rows: list[np.ndarray]
    num_cols: list[np.ndarray]
    num_vals: list[np.ndarray]
    txt_rows: list[np.ndarray]
    txt_cols: list[np.ndarray]
    txt_vals: list[np.ndarray]  # str objects
    last_row: int = 0  # the largest row number a <row> element names


def _decode(raw: bytes, kind: int) -> str:
    try:
        return (_unescape(raw) if kind == TEXT_ENTITIES else raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Unsupported from exc


def _scan_chunk(buf: bytes, start: int, stop: int, cells: _Cells) -> None:
    """Scan the whole rows in ``buf[start:stop]`` into ``cells``."""
    size = (stop - start) // len(b'<c r="A1"><v>1</v></c>') + 1  # the shortest cell
    rows = np.empty(size, np.int32)
    cols = np.empty(size, np.int32)
    kinds = np.empty(size, np.uint8)
    vals = np.empty(size, np.float64)
    starts = np.empty(size, np.int64)
    ends = np.empty(size, np.int64)
    roots = np.empty(size, np.int64)
    status, n, last = _scan(np.frombuffer(buf, np.uint8, stop - start, start), cells.last_row,
                            rows, cols, kinds, vals, starts, ends, roots)
    if status != _OK:
        raise _Unsupported
    cells.last_row = last
    kinds = kinds[:n]
    starts += start
    ends += start
    slow = np.flatnonzero(kinds == SLOW_NUMBER)
    if slow.size:
        vals[slow] = _slow_numbers(buf, starts[slow], ends[slow])
    num = kinds <= SLOW_NUMBER
    cells.num_rows.append(rows[:n][num])
    cells.num_cols.append(cols[:n][num])
    cells.num_vals.append(vals[:n][num])
    txt = np.flatnonzero(~num)
    if txt.size:
        texts = np.empty(n, dtype=object)
        new = txt[roots[txt] == txt]  # the cells whose text is decoded
        decoded = [_decode(buf[s:e], k) for s, e, k in zip(
            starts[new].tolist(), ends[new].tolist(), kinds[new].tolist(), strict=True)]
        objects = np.empty(len(decoded), dtype=object)
        objects[:] = decoded  # element by element: str objects as they are
        texts[new] = objects
        cells.txt_rows.append(rows[txt])
        cells.txt_cols.append(cols[txt])
        cells.txt_vals.append(texts[roots[txt]])


def _inflated(path: Path, info: zipfile.ZipInfo) -> bytes:
    """The member inflated in one call by libdeflate (about three times zlib's speed),
    never beyond its declared size, its CRC checked."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise _Unsupported
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        if f.read(name_len) != _SHEET.encode():  # the local header names another member
            raise _Unsupported
        f.seek(info.header_offset + 30 + name_len + extra_len)
        raw = f.read(info.compress_size)
    if len(raw) != info.compress_size:
        raise _Unsupported
    try:
        import imagecodecs

        data = bytes(imagecodecs.deflate_decode(raw, raw=True, out=info.file_size))
    except Exception:  # no libdeflate in this build (or damaged data): zlib, bounded
        d = zlib.decompressobj(-15)
        data = d.decompress(raw, info.file_size + 1)
    if len(data) != info.file_size or zlib.crc32(data) != info.CRC:
        raise _Unsupported
    return data


def _rows_in(buf: bytes, start: int, stop: int, cells: _Cells) -> None:
    """Scan ``buf[start:stop]`` (whole rows) in pieces of about :data:`CHUNK` bytes."""
    while stop - start > CHUNK:
        cut = buf.rfind(b"</row>", start, start + CHUNK)
        if cut < 0:  # a row longer than the chunk
            cut = buf.find(b"</row>", start, stop)
            if cut < 0 or cut - start > MAX_CARRY:
                raise _Unsupported
        cut += len(b"</row>")
        _scan_chunk(buf, start, cut, cells)
        start = cut
    _scan_chunk(buf, start, stop, cells)


def _read_cells(zf: zipfile.ZipFile, path: Path) -> _Cells:
    cells = _Cells([], [], [], [], [], [])
    info = zf.getinfo(_SHEET)
    if info.file_size <= ONE_SHOT and info.compress_type == zipfile.ZIP_DEFLATED \
            and not info.flag_bits & 1:
        data = _inflated(path, info)
        m = _PREAMBLE.match(data, 0, 4096)
        if m is None or not data.endswith(_END):
            raise _Unsupported
        _rows_in(data, m.end(), len(data) - len(_END), cells)
        return cells
    with zf.open(_SHEET) as part:  # streamed: memory stays at a chunk or two
        head = part.read(4096)
        m = _PREAMBLE.match(head)
        if m is None:
            raise _Unsupported
        carry = head[m.end():]
        while True:
            chunk = part.read(CHUNK)
            buf = carry + chunk if carry else chunk
            if not chunk:  # the end: the rows, then the closing tags
                if not buf.endswith(_END):
                    raise _Unsupported
                _scan_chunk(buf, 0, len(buf) - len(_END), cells)
                return cells
            cut = buf.rfind(b"</row>") + len(b"</row>")
            if cut < len(b"</row>"):  # no row ends in this chunk yet
                if len(buf) > MAX_CARRY:
                    raise _Unsupported
                carry = buf
                continue
            _scan_chunk(buf, 0, cut, cells)
            carry = buf[cut:]


@dataclass(frozen=True)
class OwnSheet:
    """The first sheet of one of our workbooks: ``n_rows`` x ``width`` cells
    (calamine's extent: up to the last cell, from A1), the numbers as float64 stored by
    column (NaN where there is no number), the text cells apart."""

    sheet_names: list[str]
    n_rows: int
    width: int
    numbers: np.ndarray  # (width, n_rows) float64 by column, NaN where blank or text
    text_rows: np.ndarray  # 0-based row of each text cell
    text_cols: np.ndarray  # 0-based column of each text cell
    texts: np.ndarray  # the text of each text cell (str objects)

    def rows_as_values(self, start: int, stop: int) -> list[list[Any]]:
        """Rows ``start:stop`` as calamine's ``to_python`` gives them: floats, strings,
        ``''`` for a blank cell, every row ``width`` long."""
        out: list[list[Any]] = [
            ["" if v != v else v for v in row] for row in self.numbers[:, start:stop].T.tolist()
        ]
        here = (self.text_rows >= start) & (self.text_rows < stop)
        for r, c, t in zip((self.text_rows[here] - start).tolist(),
                           self.text_cols[here].tolist(), self.texts[here].tolist(), strict=True):
            out[r][c] = t
        return out


@dataclass(frozen=True)
class Extent:
    """The largest sheet read here: more rows (by ``<row>`` number) or columns, or more
    cells in their product, and the sheet is left to the caller's checks."""

    rows: int
    columns: int
    cells: int


def read_own_xlsx(path: Path, limit: Extent) -> OwnSheet | None:
    """The first sheet of ``path`` when it is a workbook in our writer's exact form, else
    None (read it with calamine). The caller has checked the zip members' sizes; a sheet
    beyond ``limit`` gives None before its grid is allocated.

    Raises nothing for a damaged file: whatever cannot be read here is calamine's to judge.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            own = _own_parts()
            names = [i.filename for i in infos]
            if sorted(names) != sorted([*own, _SHEET]):
                return None
            for info in infos:
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    return None
                if info.filename != _SHEET and (
                    info.file_size > _MAX_PART or zf.read(info) != own[info.filename]
                ):
                    return None
            cells = _read_cells(zf, Path(path))
    except (_Unsupported, Exception):  # anything odd or damaged: calamine's to judge
        return None
    return _assemble(cells, limit)


def _assemble(cells: _Cells, limit: Extent) -> OwnSheet | None:
    num_rows = np.concatenate(cells.num_rows) if cells.num_rows else np.empty(0, np.int32)
    num_cols = np.concatenate(cells.num_cols) if cells.num_cols else np.empty(0, np.int32)
    txt_rows = np.concatenate(cells.txt_rows) if cells.txt_rows else np.empty(0, np.int32)
    txt_cols = np.concatenate(cells.txt_cols) if cells.txt_cols else np.empty(0, np.int32)
    if not (num_rows.size or txt_rows.size):
        return None  # an empty sheet: calamine's word on it
    n_rows = int(max(num_rows.max(initial=0), txt_rows.max(initial=0)))
    width = int(max(num_cols.max(initial=0), txt_cols.max(initial=0)))
    # the limits the caller's scan applies (rows named by <row>, the farthest column)
    extent_rows = max(cells.last_row, n_rows)
    if extent_rows > limit.rows or width > limit.columns or extent_rows * width > limit.cells:
        return None  # refused by the caller's checks, with their message
    numbers = np.full((width, n_rows), np.nan)  # by column: each one a contiguous view
    numbers[num_cols - 1, num_rows - 1] = np.concatenate(cells.num_vals)
    texts = np.concatenate(cells.txt_vals) if cells.txt_vals else np.empty(0, object)
    return OwnSheet([XLSX_SHEET], n_rows, width, numbers, (txt_rows - 1).astype(np.intp),
                    (txt_cols - 1).astype(np.intp), texts)
