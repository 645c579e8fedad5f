"""Strict readers for the validator: files as they are on disk, nothing repaired.

Each reader returns the raw content (cell grids of strings, one pyramid level of one
channel, node names of a glTF scene) so that ``maskbundle.bundle.validate`` can judge it.
A file that cannot be read at all raises :class:`CorruptInputError` (or
:class:`TableFormatError` for a table whose encoding breaks SPEC section 5) with the reason.
"""

from __future__ import annotations

import csv
import itertools
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ..errors import CorruptInputError, MissingDependencyError, TableFormatError
from ..rules import EXCEL_MAX_ROWS
from .limits import check_tiff_pages, check_tiff_structure, check_zip_member

if TYPE_CHECKING:
    from .xlsxsheet import OwnSheet

__all__ = [
    "BodyColumn",
    "LabelTiffReader",
    "TableGrid",
    "XlsxGrid",
    "cell_texts",
    "list_tree",
    "read_csv_rows",
    "read_table_grid",
    "read_tsv_grid",
    "read_xlsx_grid",
]


def list_tree(root: Path) -> list[str]:
    """Every file below ``root`` and every empty directory (with a trailing ``/``).

    Paths are relative to ``root``, POSIX style, sorted.
    """
    out: list[str] = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            if not any(p.iterdir()):
                out.append(rel + "/")
        else:
            out.append(rel)
    return out


class LabelTiffReader:
    """An OME-TIFF opened for checking, read one channel of one pyramid level at a time.

    Reduced levels are tifffile's ``series[0].levels`` (SubIFDs or further series).
    Planes are located through the series axes, so any OME DimensionOrder reads correctly.

    Use as a context manager::

        with LabelTiffReader(path) as r:
            level0 = r.read(0, channel=0)      # ndarray of shape (Z, Y, X)
    """

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = Path(path)
        self._file_size = self.path.stat().st_size if self.path.is_file() else 0
        check_tiff_structure(self.path, self.path.name)
        try:
            self._tf = tifffile.TiffFile(self.path)
        except Exception as exc:  # tifffile raises struct.error, TypeError ... on damage
            raise CorruptInputError(f"{path}: cannot be read as a TIFF ({exc})") from exc
        try:
            self._series = self._tf.series[0]
            axes = self._series.get_axes(False)
            shape = self._series.get_shape(False)
        except Exception as exc:  # tifffile raises many types on broken files
            self._tf.close()
            raise CorruptInputError(f"{path}: no readable image series ({exc})") from exc
        if "S" in axes:
            i = axes.index("S")
            if shape[i] != 1:
                self._tf.close()
                raise CorruptInputError(f"{path}: {shape[i]} samples per pixel; labels need one")
            axes, shape = axes[:i] + axes[i + 1 :], shape[:i] + shape[i + 1 :]
        if not axes.endswith("YX"):
            self._tf.close()
            raise CorruptInputError(f"{path}: image axes {axes!r} do not end in YX")
        self._lead_axes = axes[:-2]
        self._lead_shape = tuple(int(n) for n in shape[:-2])

    def __enter__(self) -> LabelTiffReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._tf.close()

    @property
    def ome_xml(self) -> str | None:
        xml: str | None = self._tf.ome_metadata
        return xml

    @property
    def axes(self) -> str:
        """The axes of the planes before Y and X (tifffile letters, e.g. ``TZC``)."""
        return self._lead_axes

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self._series.dtype)

    def _first_page(self) -> Any:
        try:
            page = self._series.pages[0]
            if page is not None:
                return page.keyframe
        except Exception as exc:  # tifffile raises many types on damaged tags
            raise CorruptInputError(f"{self.path}: the first image plane is damaged ({exc})") from exc
        raise CorruptInputError(f"{self.path}: the first image plane is missing")

    def _tag(self, name: str) -> Any:
        try:
            return getattr(self._first_page(), name)
        except CorruptInputError:
            raise
        except Exception as exc:  # a damaged tag value (a tuple where a number belongs)
            raise CorruptInputError(f"{self.path}: damaged TIFF tag ({name}: {exc})") from exc

    @property
    def is_tiled(self) -> bool:
        return bool(self._tag("is_tiled"))

    @property
    def compression(self) -> str:
        """tifffile's name of the first page's compression (``ADOBE_DEFLATE``, ``NONE`` ...)."""
        comp = self._tag("compression")
        return str(getattr(comp, "name", comp))

    @property
    def level_count(self) -> int:
        try:
            return len(self._series.levels)
        except Exception as exc:  # damaged SubIFD offsets
            raise CorruptInputError(f"{self.path}: damaged pyramid levels ({exc})") from exc

    def _size(self, axis: str) -> int:
        return self._lead_shape[self._lead_axes.index(axis)] if axis in self._lead_axes else 1

    @property
    def n_channels(self) -> int:
        return self._size("C")

    def level_shape(self, level: int) -> tuple[int, int, int, int]:
        """(C, Z, Y, X) of pyramid ``level``."""
        try:
            shape = self._series.levels[level].get_shape(False)
            axes = self._series.levels[level].get_axes(False)
            y, x = shape[axes.index("Y")], shape[axes.index("X")]
        except Exception as exc:  # damaged SubIFDs
            raise CorruptInputError(f"{self.path}: level {level} is damaged ({exc})") from exc
        return (self._size("C"), self._size("Z"), int(y), int(x))

    def read(self, level: int, channel: int) -> np.ndarray:
        """Pixels of one channel of pyramid ``level`` as an array of shape (Z, Y, X).

        Axes other than C and Z (T, ...) are read at index 0.
        """
        try:
            pages = self._series.levels[level].pages
        except Exception as exc:  # damaged SubIFDs
            raise CorruptInputError(f"{self.path}: level {level} is damaged ({exc})") from exc
        planes = []
        for z in range(self._size("Z")):
            index = [0] * len(self._lead_axes)
            if "C" in self._lead_axes:
                index[self._lead_axes.index("C")] = channel
            if "Z" in self._lead_axes:
                index[self._lead_axes.index("Z")] = z
            flat = int(np.ravel_multi_index(index, self._lead_shape)) if index else 0
            page = pages[flat] if flat < len(pages) else None
            if page is None:
                raise CorruptInputError(
                    f"{self.path}: level {level} has no plane for channel {channel}, z {z}"
                )
            check_tiff_pages([page], self._file_size, f"{self.path.name}: level {level}")
            try:
                arr = page.asarray()
            except Exception as exc:  # decoders raise their own types on damaged tiles
                raise CorruptInputError(
                    f"{self.path}: level {level}, channel {channel}, z {z} cannot be decoded "
                    f"({exc})"
                ) from exc
            if arr.ndim < 2 or any(n != 1 for n in arr.shape[:-2]):
                raise CorruptInputError(
                    f"{self.path}: level {level}, channel {channel}, z {z} decodes to shape "
                    f"{arr.shape}, not one plane"
                )
            planes.append(arr.reshape(arr.shape[-2:]))
        if len(planes) == 1:  # a 2D mask: a view, not a copy of the channel
            return planes[0][np.newaxis]
        try:
            return np.stack(planes)
        except ValueError as exc:  # planes of different shapes
            raise CorruptInputError(f"{self.path}: level {level} planes differ in shape") from exc


def read_tsv_grid(path: Path) -> list[list[str]]:
    """Cells of a TSV as strings; rows split on ``\\n``, cells on tab, no quoting.

    Raises :class:`TableFormatError` for a UTF-8 byte-order mark, carriage returns, or
    bytes that are not UTF-8 (SPEC section 5: UTF-8 without BOM, ``\\n`` line ends).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CorruptInputError(f"{path.name}: cannot be read ({exc})") from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raise TableFormatError(
            f"{path.name}: starts with a UTF-8 byte-order mark; save without BOM"
        )
    if b"\r" in raw:
        line = raw[: raw.index(b"\r")].count(b"\n") + 1
        raise TableFormatError(
            f"{path.name}: carriage return on line {line}; use '\\n' line ends only"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TableFormatError(f"{path.name}: not UTF-8 ({exc}); save as UTF-8") from exc
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line.split("\t") if line else [] for line in lines]


@dataclass(frozen=True)
class XlsxGrid:
    """The first sheet of a workbook as strings (blank cells are ``''``), and all sheet names."""

    sheet_names: list[str]
    rows: list[list[str]]


def _float_texts(values: np.ndarray) -> list[str]:
    """The objects writer's text of each double (``repr``; NaN is an empty cell), a whole
    number below 1e16 without its ``.0`` (it was an integer cell).

    ``repr`` of a Python float is the shortest round-trip text, what the writer's numba
    formatter produces; here it runs at C speed through ``map`` and spares the validator
    numba's start-up (about a second) when nothing else needs it. Whole numbers (the
    integer columns) are written from int64, which is faster than ``repr``.
    """
    texts = np.empty(values.size, dtype=object)
    with np.errstate(invalid="ignore"):
        whole = (values == np.floor(values)) & (np.abs(values) < 1e16)
    texts[whole] = list(map(str, values[whole].astype(np.int64).tolist()))
    texts[whole & (values == 0) & np.signbit(values)] = "-0"  # repr(-0.0) is "-0.0"
    rest = ~whole
    texts[rest] = list(map(repr, values[rest].tolist()))
    texts[np.isnan(values)] = ""
    out: list[str] = texts.tolist()
    return out


def _xlsx_text(rows: list[list[Any]]) -> list[list[str]]:
    """Calamine's cell values as text: numbers as the writer's text, blank as ''.

    Numbers come back as doubles; they get the objects writer's float text (``repr``),
    with a whole number below 1e16 written without ``.0`` (an integer cell). Text is kept;
    booleans, dates and errors become ``str(value)``.
    """
    flat = list(itertools.chain.from_iterable(rows))
    if not flat:
        return [[] for _ in rows]
    cells = np.empty(len(flat), dtype=object)
    cells[:] = flat
    kinds = np.fromiter(map(type, flat), object, len(flat))
    is_float = kinds == float  # noqa: E721 - elementwise over an object array
    if is_float.any():
        texts = np.empty(int(is_float.sum()), dtype=object)
        texts[:] = _float_texts(cells[is_float].astype(np.float64))
        cells[is_float] = texts
    other = np.flatnonzero(~is_float & (kinds != str))  # noqa: E721
    for i in other.tolist():
        v = flat[i]
        cells[i] = "" if v is None else str(v)
    text: list[str] = cells.tolist()
    out: list[list[str]] = []
    k = 0
    for row in rows:
        out.append(text[k : k + len(row)])
        k += len(row)
    return out


_FORMULA_TAG = re.compile(rb"<(?:\w+:)?f[\s>/]")
_ROW_REF = re.compile(rb'<(?:\w+:)?row\s[^>]*?r="(\d+)"')
_CELL_COLUMN = re.compile(rb'<(?:\w+:)?c\s[^>]*?r="([A-Z]+)')
# The patterns above try a match at every "<" (millions in a large sheet). These start with
# a literal the regex engine searches for fast; each hit is then confirmed with the full
# pattern in its own tag, which starts after the last ">" before the hit.
_FORMULA_PLAIN = re.compile(rb"<f[\s>/]")  # a match of _FORMULA_TAG as it stands
_FORMULA_HINT = re.compile(rb":f[\s>/]")  # <x:f ...> with a namespace prefix
_ROW_HINT = re.compile(rb'r="(\d+)"')
# only references of two or more letters (column AA on): a sheet of one-letter columns is
# at most 26 wide, which no row count can push past the cell limit
_COLUMN_HINT = re.compile(rb'r="([A-Z]{2,})')
_MAX_UNCONFIRMED = 1000  # hits that are no tag (text, odd attributes) before the slow scan


class _TooManyHints(Exception):
    pass


def _confirmed(body: bytes, full: re.Pattern[bytes], hint: bytes, budget: list[int]) -> bool:
    """Whether some occurrence of ``hint`` in ``body`` ends a match of ``full``."""
    pos = body.find(hint)
    while pos >= 0:
        start = body.rfind(b">", 0, pos) + 1
        for m in full.finditer(body, start, pos + len(hint)):
            if m.end() == pos + len(hint):
                return True
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooManyHints
        pos = body.find(hint, pos + 1)
    return False


def _largest(body: bytes, hint: re.Pattern[bytes], full: re.Pattern[bytes],
             value: Callable[[bytes], int], budget: list[int]) -> int:
    """The largest ``value`` of a group of ``full`` in ``body`` (0 when none)."""
    candidates = sorted(set(hint.findall(body)), key=value, reverse=True)
    for c in candidates:
        # a row reference ends with its closing quote; a column reference goes on with digits
        tail = b'"' if c[:1].isdigit() else b""
        if _confirmed(body, full, b'r="' + c + tail, budget):
            return value(c)
    return 0


def _sheet_facts_plain(body: bytes) -> tuple[bool, int, int]:
    """(holds a formula, largest row number, largest column number) of a chunk of sheet
    XML, every tag tried."""
    formulas = _FORMULA_TAG.search(body) is not None
    rows = max(map(int, _ROW_REF.findall(body)), default=0)
    columns = max(map(_column_number, set(_CELL_COLUMN.findall(body))), default=0)
    return formulas, rows, columns


def _sheet_facts(body: bytes) -> tuple[bool, int, int]:
    """:func:`_sheet_facts_plain` from the literal hints; the column count is an upper
    bound (26 stands for any one-letter column)."""
    budget = [_MAX_UNCONFIRMED]
    try:
        formulas = _FORMULA_PLAIN.search(body) is not None or any(
            _confirmed(body, _FORMULA_TAG, m.group(), budget)
            for m in _FORMULA_HINT.finditer(body)
        )
        rows = _largest(body, _ROW_HINT, _ROW_REF, int, budget)
        columns = _largest(body, _COLUMN_HINT, _CELL_COLUMN, _column_number, budget)
    except _TooManyHints:  # a hostile sheet full of look-alikes: the plain scan
        return _sheet_facts_plain(body)
    if rows and columns < 26:
        columns = 26
    return formulas, rows, columns


@dataclass(frozen=True)
class _SheetScan:
    """What one streaming pass over the worksheet XML found, before any reader parses it."""

    has_formulas: bool
    rows: int  # the largest row number a row element names
    columns: int  # the largest column a cell reference names


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


def _scan_sheets(path: Path, *, exact: bool = False) -> _SheetScan:
    """Formulas and the real extent of every worksheet, streamed in chunks.

    A reader sizes its grid by the farthest cell: one cell at XFD1048576 in a tiny file
    makes calamine allocate (and abort on) billions of cells, so the extent is measured
    here first. Chunks are cut at the last ``<`` so no tag is split. Unless ``exact``,
    one-letter columns count as 26 (an upper bound that decides the same).
    """
    facts = _sheet_facts_plain if exact else _sheet_facts
    formulas, rows, columns = False, 0, 0
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                    continue
                tail = b""
                with zf.open(name) as part:
                    while True:
                        chunk = part.read(1 << 22)
                        buf = tail + chunk
                        cut = buf.rfind(b"<") if chunk else len(buf)
                        body, tail = buf[:cut], buf[cut:]
                        has_f, n_rows, n_cols = facts(body)
                        formulas = formulas or has_f
                        rows = max(rows, n_rows)
                        columns = max(columns, n_cols)
                        if not chunk:
                            break
    except Exception as exc:  # zipfile and zlib raise many types on damaged members
        raise CorruptInputError(f"{path.name}: not a readable .xlsx workbook ({exc})") from exc
    return _SheetScan(formulas, rows, columns)


def _read_xlsx_formulas(path: Path) -> XlsxGrid:
    """openpyxl's reading with formulas as their text, so the text-cell rule refuses them."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, ValueError ...
        raise CorruptInputError(f"{path.name}: not a readable .xlsx workbook ({exc})") from exc
    try:
        names = list(wb.sheetnames)
        if not names:
            raise CorruptInputError(f"{path.name}: the workbook has no sheet")
        ws = wb[names[0]]
        _check_xlsx_extent(ws.max_row or 0, ws.max_column or 0, path)
        rows = [["" if v is None else str(v) for v in row]
                for row in ws.iter_rows(values_only=True)]
    except CorruptInputError:
        raise
    except Exception as exc:  # damaged XML inside a well-formed zip
        raise CorruptInputError(f"{path.name}: not a readable .xlsx workbook ({exc})") from exc
    finally:
        wb.close()
    return XlsxGrid(names, rows)


# Excel's own sheet limits, and a cap on parsed XML that bounds the time a sheet can take
XLSX_MAX_COLUMNS = 16_384
XLSX_MAX_CELLS = 100_000_000
XLSX_MAX_MEMBER = 1 << 30


def _check_xlsx_members(path: Path) -> None:
    """Refuse zip bombs before openpyxl inflates anything: every member of the workbook
    must inflate to at most 1 GiB and by at most 1000:1."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except Exception as exc:  # BadZipFile, NotImplementedError (zip version) ...
        raise CorruptInputError(f"{path.name}: not a readable .xlsx workbook ({exc})") from exc
    for info in infos:
        check_zip_member(info, f"{path.name}[{info.filename}]", limit=XLSX_MAX_MEMBER)


def _check_xlsx_extent(rows: int, cols: int, path: Path) -> None:
    """A sheet whose extent is beyond Excel's (or 100 million cells) is refused: the
    readers pad every row to the sheet's width, so one far cell in a tiny file would
    mean billions of empty cells."""
    if rows > EXCEL_MAX_ROWS or cols > XLSX_MAX_COLUMNS or rows * cols > XLSX_MAX_CELLS:
        raise CorruptInputError(
            f"{path.name}: the sheet spans {rows} rows x {cols} columns, beyond "
            f"{XLSX_MAX_CELLS} cells (Excel stops at {EXCEL_MAX_ROWS} x {XLSX_MAX_COLUMNS}); "
            "write large tables as .tsv"
        )


def _checked_scan(path: Path) -> _SheetScan:
    """:func:`_scan_sheets`, refusing a sheet beyond the extent limits (named exactly)."""
    scan = _scan_sheets(path)
    try:
        _check_xlsx_extent(scan.rows, scan.columns, path)
    except CorruptInputError:  # refused: name the exact extent
        exact = _scan_sheets(path, exact=True)
        _check_xlsx_extent(exact.rows, exact.columns, path)
    return scan


def _read_calamine(path: Path) -> tuple[list[str], list[list[Any]]]:
    """Sheet names and the first sheet's cell values as calamine gives them (every row
    padded to the sheet's width; numbers as floats, blank cells as ``''``)."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError as exc:  # pragma: no cover - a dependency
        raise MissingDependencyError(
            "reading .xlsx tables needs python-calamine: pip install python-calamine"
        ) from exc
    try:
        wb = CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises its own error types on broken files
        raise CorruptInputError(f"{path.name}: not a readable .xlsx workbook ({exc})") from exc
    try:
        names = list(wb.sheet_names)
        if not names:
            raise CorruptInputError(f"{path.name}: the workbook has no sheet")
        try:
            sheet = wb.get_sheet_by_index(0)
            _check_xlsx_extent(sheet.height, sheet.width, path)
            rows: list[list[Any]] = sheet.to_python(skip_empty_area=False)
        except CorruptInputError:
            raise
        except Exception as exc:  # a damaged sheet part
            raise CorruptInputError(f"{path.name}: the first sheet cannot be read ({exc})") from exc
    finally:
        wb.close()
    return names, rows


def _trimmed(grid: list[list[str]]) -> list[list[str]]:
    """Rows without their trailing blanks (calamine pads every row; those are no cells)."""
    for r in grid:
        while r and r[-1] == "":
            r.pop()
    return grid


def read_xlsx_grid(path: Path) -> XlsxGrid:
    """Cells of the first sheet of an ``.xlsx`` as strings (blank cells are ``''``).

    Read with calamine (Rust): about ten times faster than openpyxl on large tables.
    Calamine gives a formula's cached value (or nothing), so a workbook holding formulas
    is read again with their text (``=WEBSERVICE(...)``), which the rules then refuse.
    """
    _check_xlsx_members(path)
    own = _read_own(path)
    if own is not None:
        return XlsxGrid(own.sheet_names, _own_text_rows(own))
    scan = _checked_scan(path)
    if scan.has_formulas:
        return _read_xlsx_formulas(path)
    names, rows = _read_calamine(path)
    return XlsxGrid(names, _trimmed(_xlsx_text(rows)))


def _read_own(path: Path) -> OwnSheet | None:
    """The sheet of a workbook in our writer's exact form (:mod:`.xlsxsheet`, compiled
    and about ten times faster than calamine), or None: read it with calamine."""
    from .xlsxsheet import Extent, read_own_xlsx

    return read_own_xlsx(path, Extent(EXCEL_MAX_ROWS, XLSX_MAX_COLUMNS, XLSX_MAX_CELLS))


def _objects(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _own_text_rows(own: OwnSheet) -> list[list[str]]:
    """:func:`_xlsx_text` of every row of the sheet, trimmed, built column by column."""
    grid = np.empty((own.n_rows, own.width), dtype=object)
    for j in range(own.width):
        column = _objects([""] * own.n_rows)
        numbers = own.numbers[j]
        filled = np.flatnonzero(~np.isnan(numbers))
        column[filled] = _objects(_float_texts(numbers[filled]))
        grid[:, j] = column
    grid[own.text_rows, own.text_cols] = own.texts
    return _trimmed(grid.tolist())


def _own_table(own: OwnSheet, k: int) -> TableGrid:
    """What the calamine branch of ``read_table_grid(..., typed_body_after=k)`` returns
    for the same cells: the first ``k`` rows as text, the rows below as columns, float64
    where the column holds no text cell, else the cells' text (:func:`_body_columns`)."""
    if own.n_rows < k:
        rows = _trimmed(_xlsx_text(own.rows_as_values(0, own.n_rows)))
        return TableGrid(rows, own.sheet_names)
    head = _trimmed(_xlsx_text(own.rows_as_values(0, k)))
    n = own.n_rows - k
    columns: list[BodyColumn] = []
    if n:
        below = own.text_rows >= k
        t_rows = own.text_rows[below] - k
        t_cols = own.text_cols[below]
        t_vals = own.texts[below]
        with_text = set(np.unique(t_cols).tolist())
        for j in range(own.width):
            numbers = own.numbers[j, k:]  # a view: no copy of the table
            if j not in with_text:
                columns.append(numbers)
                continue
            cells = _objects([""] * n)
            filled = np.flatnonzero(~np.isnan(numbers))
            cells[filled] = _objects(_float_texts(numbers[filled]))
            here = t_cols == j
            cells[t_rows[here]] = t_vals[here]
            columns.append(cells.tolist())
    return TableGrid(head, own.sheet_names, columns, n)


# a column of a typed table body: float64 (NaN for blank) or the cells' text
BodyColumn: TypeAlias = np.ndarray | list[str]


def _body_columns(rows: list[list[Any]]) -> list[BodyColumn]:
    """Calamine's rows below the header as columns: float64 where every cell of the column
    is a number or blank (NaN stands for blank), else each cell's text as
    :func:`_xlsx_text` gives it.

    The numeric columns never go through text: :func:`_float_texts` of a cell gives the
    text on demand (the validator quotes only offending cells).
    """
    if not rows:
        return []
    width = max(map(len, rows))
    n = len(rows)
    if any(len(r) != width for r in rows):  # calamine pads; keep any reader's rows safe
        rows = [[*r, *[""] * (width - len(r))] for r in rows]
    flat = list(itertools.chain.from_iterable(rows))
    cells = np.empty(len(flat), dtype=object)
    cells[:] = flat
    grid = cells.reshape(n, width)
    kinds = np.fromiter(map(type, flat), object, len(flat)).reshape(n, width)
    is_float = kinds == float  # noqa: E721 - elementwise over an object array
    out: list[BodyColumn] = []
    for j in range(width):
        take = is_float[:, j]
        # the other cells must all be blank ('' or None): short-circuits on a text column
        if take.all() or all(v == "" or v is None for v in grid[~take, j].tolist()):
            col = np.full(n, np.nan)
            col[take] = grid[take, j].astype(np.float64)
            out.append(col)
        else:
            out.append(_xlsx_text([grid[:, j].tolist()])[0])
    return out


@dataclass(frozen=True)
class TableGrid:
    """A table as rows of cell strings; ``sheet_names`` lists a workbook's sheets (the
    rows are the first sheet's) and is None for a TSV.

    ``columns`` is set only when the caller asked for a typed body
    (``read_table_grid(..., typed_body_after=k)``) and the table is an ``.xlsx`` read by
    calamine with at least ``k`` rows: then ``rows`` holds the first ``k`` rows only and
    ``columns`` the cells below them, one entry per sheet column (float64 with NaN for
    blank where every cell is a number or blank, else the cells' text), ``n_body`` rows.
    """

    rows: list[list[str]]
    sheet_names: list[str] | None = None
    columns: list[BodyColumn] | None = None
    n_body: int = 0


def cell_texts(values: np.ndarray) -> list[str]:
    """The text the validator sees for each number of a typed body column (NaN is '')."""
    return _float_texts(np.asarray(values, dtype=np.float64))


def read_table_grid(
    path: Path | str, *, strict: bool = True, typed_body_after: int | None = None
) -> TableGrid:
    """The one reader of table grids (objects tables, contributors, metadata TSVs).

    ``strict`` (the validator, ``read_bundle``): a TSV must follow SPEC section 5
    (:func:`read_tsv_grid`: UTF-8 without BOM, ``\\n`` line ends); an ``.xlsx`` is read
    by calamine (:func:`read_xlsx_grid`), fast, numbers as doubles (a whole number comes
    back without ``.0``). ``strict=False`` is for tables users hand in and for reading
    cells exactly as written: ``\\r\\n`` line ends are accepted, a blank line is one
    empty cell, bytes that are not UTF-8 raise :class:`UnicodeDecodeError`, and an
    ``.xlsx`` is read with openpyxl (the number text as stored, formulas as their text).
    Either way an ``.xlsx`` passes the zip-bomb and sheet-extent checks first.
    ``typed_body_after`` (strict only): keep the numbers of an ``.xlsx`` below that many
    rows as float64 columns (see :class:`TableGrid`) instead of turning them into text.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "t.tsv"
    >>> _ = path.write_text("a\\tb\\n1\\t2\\n", encoding="utf-8")
    >>> read_table_grid(path).rows
    [['a', 'b'], ['1', '2']]
    """
    path = Path(path)
    if path.suffix == ".xlsx":
        if strict and typed_body_after is not None:
            _check_xlsx_members(path)
            own = _read_own(path)
            if own is not None:
                return _own_table(own, typed_body_after)
            if not _checked_scan(path).has_formulas:
                names, cells = _read_calamine(path)
                k = typed_body_after
                if len(cells) >= k:
                    head = _trimmed(_xlsx_text(cells[:k]))
                    body = cells[k:]
                    return TableGrid(head, names, _body_columns(body), len(body))
                return TableGrid(_trimmed(_xlsx_text(cells)), names)
            grid = _read_xlsx_formulas(path)
        elif strict:
            grid = read_xlsx_grid(path)
        else:
            _check_xlsx_members(path)
            _checked_scan(path)
            grid = _read_xlsx_formulas(path)
        return TableGrid(grid.rows, grid.sheet_names)
    if strict:
        return TableGrid(read_tsv_grid(path))
    lines = path.read_text(encoding="utf-8").split("\n")  # text mode: \r\n reads as \n
    if lines and lines[-1] == "":
        lines.pop()
    return TableGrid([line.split("\t") for line in lines])


def read_csv_rows(path: Path) -> list[list[str]]:
    """Rows of a comma-separated UTF-8 file (standard CSV quoting)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [list(r) for r in csv.reader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorruptInputError(f"{path.name}: not a readable UTF-8 CSV ({exc})") from exc
