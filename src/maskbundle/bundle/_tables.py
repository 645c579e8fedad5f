"""Cell-by-cell rules of the objects table (SPEC section 5), on a grid of strings.

Pure: the caller reads the file (``maskbundle.io.readers``) and passes the rows; findings
go into a :class:`~maskbundle.errors.Report`.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import Report
from ..io.readers import BodyColumn, cell_texts
from ..rules import (
    COLUMN_TYPES,
    COLUMN_UNITS,
    DOI_RE,
    EXCEL_MAX_ROWS,
    FEATURE_CLASSES,
    HEADER_LABELS,
    HEADER_ROWS,
    MASK_NAME,
    OBJECT_TYPE,
    OBO_ID_RE,
    POSITION_COLUMNS,
    REQUIRED_COLUMNS,
    REQUIREMENT_LEVELS,
    SOURCE_FILE,
    ObjectsFormat,
    is_ascii_text,
    text_cell_problem,
)
from ._pixels import LabelStats
from .hubmap import conversion_problem

__all__ = [
    "SHOW",
    "TableTruth",
    "check_objects_rows",
    "check_objects_table",
    "first_items",
    "record_rule",
]

# The validator reads header cells case-insensitively (HuBMAP's does); Unit and
# Requirement level exactly.
TYPES = frozenset(COLUMN_TYPES)
UNITS = frozenset(COLUMN_UNITS)
FEATURE_CLASSES_FOLDED = frozenset(c.casefold() for c in FEATURE_CLASSES)
LEVELS = frozenset(REQUIREMENT_LEVELS)
SHOW = 5  # offenders quoted per finding


@dataclass(frozen=True)
class TableTruth:
    """What the pixels say about one mask: its name, the OME-TIFF file name, label stats."""

    name: str
    source_file: str
    stats: LabelStats | None
    # micrometres per pixel (z, y, x) from the OME-TIFF, and whether the mask is 3D
    um_zyx: tuple[float, float, float] | None = None
    is_3d: bool = False


def first_items(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:SHOW])
    return shown + (f" ... ({len(items)} in all)" if len(items) > SHOW else "")


def record_rule(
    report: Report,
    location: str,
    code: str,
    offenders: Sequence[object],
    what: str,
    *,
    fix: str = "",
    severity: Literal["error", "warning"] = "error",
) -> bool:
    """Add one finding for a rule: passed when nothing offends, else failed with examples."""
    if offenders:
        msg = f"{what}: {first_items(offenders)}" + (f"; {fix}" if fix else "")
        report.add(location, code, msg, severity)
        return False
    report.passed(location, code, what)
    return True


class _Checker:
    """Adds one finding per rule for one table (a fixed location)."""

    def __init__(self, report: Report, location: str) -> None:
        self.report = report
        self.location = location

    def rule(
        self,
        code: str,
        offenders: Sequence[object],
        what: str,
        *,
        fix: str = "",
        severity: Literal["error", "warning"] = "error",
    ) -> bool:
        return record_rule(self.report, self.location, code, offenders, what, fix=fix,
                           severity=severity)

    def not_applicable(self, code: str, why: str) -> None:
        self.report.add(self.location, code, why, "info", "not applicable")


def _parse_floats(values: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """Float value of each string (NaN where unparsable) and the unparsable positions."""
    try:
        return np.fromiter(map(float, values), np.float64, len(values)), []
    except (ValueError, TypeError):
        pass
    out = np.full(len(values), np.nan)
    bad = []
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except ValueError:
            bad.append(i)
    return out, bad


def _is_integral(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(x) & (x == np.floor(x)))


@dataclass(frozen=True)
class _Head:
    """The header block as the body checks need it."""

    width: int
    cols: list[str]  # the column names, Object ID first
    head: dict[str, list[str]]  # header label -> its cells of columns 2.. (by name)
    types: list[str]
    levels: list[str]


def check_objects_rows(
    rows: list[list[str]],
    *,
    location: str,
    fmt: ObjectsFormat,
    report: Report,
    truth: TableTruth | None,
) -> int | None:
    """Check an objects table given as rows of cell strings; return its object count.

    ``rows`` holds every row of the file, header block included. ``truth`` (when the
    OME-TIFF could be read) adds the checks against the pixels: Object IDs equal the
    labels, Mask name and Source file columns, X/Y/Z within one pixel of the centroids.
    Returns ``None`` when the table is too short to have a header block.
    """
    chk = _Checker(report, location)
    h = _check_head(chk, rows)
    if h is None:
        return None
    width = h.width
    # rows of the full width (nearly all) are kept as they are, not copied
    data = [r if len(r) >= width else r + [""] * (width - len(r)) for r in rows[HEADER_ROWS:]]
    n_rows = len(data)
    chk.rule(
        "objects.blank-rows",
        [f"row {i + HEADER_ROWS + 1}" for i, r in enumerate(data) if not any(c.strip() for c in r)],
        "no blank data rows",
    )
    chk.rule(
        "objects.row-width",
        [
            f"row {i + HEADER_ROWS + 1}: {len(r)} cells"
            for i, r in enumerate(data)
            if len(r) > width and any(c.strip() for c in r[width:])
        ],
        f"no cells beyond the {width} named columns",
        severity="warning",
    )
    # every row has at least ``width`` cells: one transposition serves all column checks
    raw: list[BodyColumn] = (
        [list(col) for col in itertools.islice(zip(*data, strict=False), width)]
        if data
        else [[] for _ in range(width)]
    )
    _check_body(chk, h, raw, n_rows, fmt, truth)
    return n_rows


def check_objects_table(
    head_rows: list[list[str]],
    columns: Sequence[BodyColumn],
    n_rows: int,
    *,
    location: str,
    fmt: Literal["tsv", "xlsx"],
    report: Report,
    truth: TableTruth | None,
) -> int | None:
    """:func:`check_objects_rows` on a typed table (``read_table_grid(...,
    typed_body_after=HEADER_ROWS)``): the header block as rows of text, the ``n_rows``
    data rows as columns, float64 (NaN for blank) or text. The findings are the same as
    for the rows of text the same cells give; numeric columns skip the text round trip.
    """
    chk = _Checker(report, location)
    h = _check_head(chk, head_rows)
    if h is None:
        return None
    width = h.width
    cols = list(columns) + [[""] * n_rows for _ in range(width - len(columns))]
    filled = np.zeros(n_rows, bool)  # some cell of the row holds more than whitespace
    beyond = np.zeros(n_rows, bool)  # ... beyond the named columns
    for j, c in enumerate(cols):
        if isinstance(c, np.ndarray):
            has = ~np.isnan(c)
        else:  # judged once per distinct value: most text columns repeat one value
            blanks = {v for v in set(c) if not v.strip()}
            has = (
                np.fromiter((v not in blanks for v in c), bool, n_rows)
                if blanks
                else np.ones(n_rows, bool)
            )
        filled |= has
        if j >= width:
            beyond |= has
    chk.rule(
        "objects.blank-rows",
        [f"row {i + HEADER_ROWS + 1}" for i in np.flatnonzero(~filled).tolist()],
        "no blank data rows",
    )

    def row_length(i: int) -> int:  # cells up to the last non-empty one (as read_xlsx_grid)
        for j in range(len(cols) - 1, -1, -1):
            c = cols[j]
            if (not np.isnan(c[i])) if isinstance(c, np.ndarray) else c[i] != "":
                return j + 1
        return 0

    chk.rule(
        "objects.row-width",
        [
            f"row {i + HEADER_ROWS + 1}: {row_length(i)} cells"
            for i in np.flatnonzero(beyond).tolist()
        ],
        f"no cells beyond the {width} named columns",
        severity="warning",
    )
    _check_body(chk, h, cols[:width], n_rows, fmt, truth)
    return n_rows


def _check_head(chk: _Checker, rows: list[list[str]]) -> _Head | None:
    """The header-block rules; None when there is no header block."""
    if not chk.rule(
        "objects.header-block",
        [f"{len(rows)} rows"] if len(rows) < HEADER_ROWS else [],
        "the 10-row header block (8 header rows, an empty row, the column names)",
        fix="start from the object-by-feature template",
    ):
        return None
    width = len(rows[HEADER_ROWS - 1])
    grid = [r if len(r) >= width else r + [""] * (width - len(r)) for r in rows[:HEADER_ROWS]]
    labels = [r[0] if r else "" for r in grid[:8]]
    chk.rule(
        "objects.header-labels",
        [
            f"row {i + 1}: {got!r} (want {want!r})"
            for i, (got, want) in enumerate(zip(labels, HEADER_LABELS, strict=True))
            if got != want
        ],
        "column A of rows 1-8 holds the header labels",
    )
    chk.rule(
        "objects.separator-row",
        [f"{c!r}" for c in grid[8] if c.strip()],
        "row 9 is entirely empty (HuBMAP's validator needs the separator)",
    )
    cols = grid[HEADER_ROWS - 1][:width]
    chk.rule(
        "objects.required-columns",
        [
            f"{got!r} at column {i + 1} (want {want!r})"
            for i, (got, want) in enumerate(
                zip([*cols, *[""] * 10][:10], REQUIRED_COLUMNS, strict=True)
            )
            if got != want
        ],
        "the ten required columns come first, in order",
        fix=f"use {', '.join(REQUIRED_COLUMNS)}",
    )
    dups = sorted(c for c, k in Counter(cols).items() if k > 1)
    chk.rule("objects.unique-columns", dups, "column names are unique")
    head = {
        lab: [r[j] for j in range(1, width)] for lab, r in zip(HEADER_LABELS, grid, strict=False)
    }
    names = cols[1:]
    na = [
        f"{lab} of {names[j]!r}"
        for lab, vals in head.items()
        for j, c in enumerate(vals)
        if c.strip().upper() in ("N/A", "NA")
    ]
    unsafe = [
        f"{lab} of {names[j]!r}: {c!r}"
        for lab, vals in head.items()
        for j, c in enumerate(vals)
        if j < len(names)
        for part in (c.split("|") if lab == "Permissible values" else [c])
        if text_cell_problem(part.strip() if lab == "Permissible values" else part)
    ] + [f"column name {c!r}" for c in cols if text_cell_problem(c)]
    chk.rule(
        "objects.header-formula",
        unsafe[:SHOW],
        "header cells and column names are no formulas and hold no control characters",
        fix="rephrase them (maskbundle.rules)",
    )
    chk.rule(
        "objects.header-na", na, "header cells are blank, never N/A", fix="leave the cell empty"
    )
    types = [t.strip().lower() for t in head["Type"]]
    chk.rule(
        "objects.type",
        [f"{names[j]!r}: {t!r}" for j, t in enumerate(head["Type"]) if types[j] not in TYPES],
        f"Type is one of {', '.join(sorted(TYPES))}",
    )
    chk.rule(
        "objects.no-boolean",
        [repr(names[j]) for j, t in enumerate(types) if t == "boolean"],
        "no boolean columns (HuBMAP's post-ingest MuData conversion puts NaN into them and "
        "then cannot write the .h5mu)",
        fix="write yes/no values as Type integer 0/1 and say so in the Description",
    )
    chk.rule(
        "objects.unit",
        [f"{names[j]!r}: {u!r}" for j, u in enumerate(head["Unit"]) if u.strip() not in UNITS],
        "Unit is blank, pixel, intensity, count or square micrometer",
        fix="give other units in the Description and leave Unit blank",
    )
    chk.rule(
        "objects.feature-class",
        [
            f"{names[j]!r}: {c!r}"
            for j, c in enumerate(head["Feature class"])
            if c.strip().casefold() not in FEATURE_CLASSES_FOLDED
        ],
        "Feature class is one of the published classes",
    )
    levels = [v.strip() for v in head["Requirement level"]]
    chk.rule(
        "objects.requirement-level",
        [f"{names[j]!r}: {v!r}" for j, v in enumerate(levels) if v not in LEVELS],
        "Requirement level is REQUIRED or OPTIONAL",
    )
    chk.rule(
        "objects.description",
        [repr(names[j]) for j, d in enumerate(head["Description"]) if not d.strip()],
        "every column has a Description",
    )
    return _Head(width, cols, head, types, levels)


def _check_body(
    chk: _Checker,
    h: _Head,
    raw: list[BodyColumn],
    n_rows: int,
    fmt: Literal["tsv", "xlsx"],
    truth: TableTruth | None,
) -> None:
    """The rules on the data rows, given as ``h.width`` columns of raw cells."""
    width, cols, head, types, levels = h.width, h.cols, h.head, h.types, h.levels
    names = cols[1:]
    if fmt == "xlsx":
        chk.rule(
            "objects.row-limit",
            [n_rows + HEADER_ROWS] if n_rows + HEADER_ROWS > EXCEL_MAX_ROWS else [],
            f"at most {EXCEL_MAX_ROWS:,} rows (Excel's limit); use .tsv for larger tables",
        )
    else:
        chk.not_applicable("objects.row-limit", "Excel's row limit applies to .xlsx only")

    columns: list[BodyColumn] = [
        c if isinstance(c, np.ndarray) else list(map(str.strip, c)) for c in raw
    ]
    _check_cells(chk, names, columns[1:], types, levels, head["Permissible values"], n_rows)
    if OBJECT_TYPE in cols:
        kept = columns[cols.index(OBJECT_TYPE)]
        blank = (
            int(np.isnan(kept).sum())
            if isinstance(kept, np.ndarray)
            else sum(1 for v in kept if not v)
        )
        chk.rule(
            "objects.object-type-filled",
            [f"{blank} of {n_rows} rows blank"] if blank else [],
            "Object type is filled on every row (HuBMAP's conversion turns a blank into NaN "
            "in calculated_metadata.json, which is then not valid JSON)",
            fix="fill it with the mask's own id (Mask ID) where nothing more specific is known",
            severity="warning",
        )
    problem = conversion_problem(names, head["Feature class"])
    chk.rule(
        "objects.hubmap-conversion",
        [problem] if problem else [],
        "HuBMAP's post-ingest MuData conversion can carry every column",
        severity="warning",
    )
    ids = _check_object_ids(chk, columns[0] if width else [""] * n_rows)
    if truth is not None:
        _check_against_pixels(chk, cols, raw, ids, truth)
        units = {c: u.strip() for c, u in zip(names, head["Unit"], strict=False)}
        _check_sizes(chk, cols, raw, ids, truth, units)


def _texts(col: BodyColumn) -> list[str]:
    """The cells of a column as text (a typed column's numbers as the reader's text)."""
    return cell_texts(col) if isinstance(col, np.ndarray) else col


def _floats(col: BodyColumn) -> np.ndarray:
    """The float value of each cell (NaN where blank or unparsable)."""
    return col if isinstance(col, np.ndarray) else _parse_floats(col)[0]


def _stripped_floats(col: BodyColumn) -> np.ndarray:
    return col if isinstance(col, np.ndarray) else _parse_floats([v.strip() for v in col])[0]


def _row(i: int) -> int:
    return i + HEADER_ROWS + 1


def _check_cells(
    chk: _Checker,
    names: list[str],
    columns: list[BodyColumn],
    types: list[str],
    levels: list[str],
    permissible: list[str],
    n_rows: int,
) -> None:
    found: dict[str, list[str]] = {
        k: []
        for k in (
            "required-blank",
            "integer-blank",
            "number",
            "integer",
            "doi",
            "obo-id",
            "ascii",
            "formula",
            "permissible",
        )
    }

    def add(kind: str, col: str, where: Sequence[int], vals: Callable[[int], str]) -> None:
        found[kind].extend(f"row {_row(i)} {col!r}: {vals(i)!r}" for i in where[:SHOW])

    for j, (col, column) in enumerate(zip(names, columns, strict=True)):
        typ = types[j]
        perm = {p.strip().lower() for p in permissible[j].split("|") if p.strip()}
        if isinstance(column, np.ndarray) and typ in ("integer", "float") and not perm:
            _check_number_column(add, col, column, typ, levels[j])
            continue
        values = _texts(column)
        full = all(values)  # the common case: no blank cell, no index lists needed
        blank = [] if full else [i for i, v in enumerate(values) if not v]
        if blank and levels[j] == "REQUIRED":
            add("required-blank", col, blank, lambda i: "")
        if blank and typ == "integer":
            add("integer-blank", col, blank, lambda i: "")
        filled: Sequence[int] = range(len(values)) if full else [
            i for i, v in enumerate(values) if v
        ]
        vals = values if full else [values[i] for i in filled]

        def at(i: int, _vals: list[str] = values) -> str:
            return _vals[i]

        nums: np.ndarray | None = None
        if typ in ("integer", "float"):
            nums, bad = _parse_floats(vals)
            add("number", col, [filled[i] for i in bad], at)
            if typ == "integer":
                unparsable = set(bad)
                wrong = [
                    filled[i] for i in np.flatnonzero(~_is_integral(nums)).tolist() if i not in unparsable
                ]
                add("integer", col, wrong, at)
            if bad:
                nums = None  # some cells are no numbers: the text rule looks at every cell
        elif typ == "doi":
            add("doi", col, [filled[i] for i in _where(vals, _not_doi)], at)
        elif typ == "obo id":
            add("obo-id", col, [filled[i] for i in _where(vals, _not_obo)], at)
        elif typ in ("text", "boolean"):
            add("ascii", col, [filled[i] for i in _where(vals, _not_ascii)], at)
        # the one text-cell rule, on every cell: a formula cell of an xlsx (read as its
        # formula text) fails here whatever its column's type
        add("formula", col, [filled[i] for i in _text_problems(vals, nums)], at)
        if perm:

            def not_permitted(v: str, _perm: set[str] = perm) -> bool:
                return v.lower() not in _perm

            add("permissible", col, [filled[i] for i in _where(vals, not_permitted)], at)

    rules = {
        "required-blank": ("every REQUIRED cell is filled", ""),
        "integer-blank": ("no blank cells in integer columns", "HuBMAP's ingest casts them"),
        "number": ("integer and float cells are numbers", ""),
        "integer": ("integer cells are whole numbers", ""),
        "doi": ("DOIs are bare (10.xxxx/...)", "drop any https://doi.org/ prefix"),
        "obo-id": ("obo ids look like PREFIX:0000000", ""),
        "ascii": ("text is ASCII only", "spell it in ASCII"),
        "formula": (
            "no cell is a formula or holds |, control characters, or text starting with "
            "= + - @ (maskbundle.rules)",
            "spreadsheets run such cells as formulas",
        ),
        "permissible": ("values are among the Permissible values (any case)", ""),
    }
    if n_rows == 0:
        for kind in rules:
            chk.not_applicable(f"objects.{kind}", "the table has no data rows")
        return
    for kind, (what, fix) in rules.items():
        chk.rule(f"objects.{kind}", found[kind], what, fix=fix)


def _check_number_column(
    add: Callable[[str, str, Sequence[int], Callable[[int], str]], None],
    col: str,
    x: np.ndarray,
    typ: str,
    level: str,
) -> None:
    """:func:`_check_cells` for an integer or float column read as numbers (NaN = blank).

    The same findings as on the cells' text: every filled cell parses (it is a number),
    the text rule can only fail on the non-finite ones (``inf``, ``-inf``), which are
    judged on their text, as are the cells quoted in a finding.
    """
    has = ~np.isnan(x)
    full = bool(has.all())
    blank: list[int] = [] if full else np.flatnonzero(~has).tolist()
    if blank and level == "REQUIRED":
        add("required-blank", col, blank, lambda i: "")
    if blank and typ == "integer":
        add("integer-blank", col, blank, lambda i: "")

    def at(i: int) -> str:
        return cell_texts(x[i : i + 1])[0]

    if typ == "integer":
        add("integer", col, np.flatnonzero(has & ~_is_integral(x)).tolist(), at)
    odd = np.flatnonzero(has & ~np.isfinite(x)).tolist()
    add("formula", col, [i for i in odd if text_cell_problem(at(i)) is not None], at)


def _not_doi(v: str) -> bool:
    return DOI_RE.fullmatch(v) is None


def _not_obo(v: str) -> bool:
    return OBO_ID_RE.fullmatch(v) is None


def _not_ascii(v: str) -> bool:
    return not is_ascii_text(v)


def _where(values: list[str], bad: Callable[[str], bool]) -> list[int]:
    """Positions of the values for which ``bad`` holds, in order.

    Columns such as Mask name, Source file or the DOI repeat one value on every row, so
    each distinct value is judged once and the positions are found by set lookup.
    """
    distinct = set(values)
    if 2 * len(distinct) > len(values):
        return [i for i, v in enumerate(values) if bad(v)]
    offending = {v for v in distinct if bad(v)}
    return [i for i, v in enumerate(values) if v in offending] if offending else []


def _text_problems(values: list[str], nums: np.ndarray | None) -> list[int]:
    """Positions of the values that break the text-cell rule (:func:`text_cell_problem`).

    ``nums`` (when every value parsed as a float) narrows the search: a stripped cell that
    ``float`` reads holds no control character, ``|``, ``=`` or ``@``, and one starting with
    ``+``/``-`` is a formula only when it is not a plain number, i.e. an infinity, a NaN or
    a number with ``_`` separators. Only those cells are judged one by one.
    """
    if nums is None or "_" in "".join(values):
        return _where(values, lambda v: text_cell_problem(v) is not None)
    odd = np.flatnonzero(~np.isfinite(nums)).tolist()
    return [i for i in odd if text_cell_problem(values[i]) is not None]


def _check_object_ids(chk: _Checker, values: BodyColumn) -> np.ndarray:
    """Object IDs as int64 (-1 where not a positive whole number)."""
    nums = _floats(values)
    with np.errstate(invalid="ignore"):
        ok = _is_integral(nums) & (nums >= 1)
    ids = np.where(ok, nums, -1).astype(np.int64)

    def quoted(rows: np.ndarray) -> list[str]:
        texts = _texts(values[rows]) if isinstance(values, np.ndarray) else [values[i] for i in rows]
        return [f"row {_row(int(i))}: {t!r}" for i, t in zip(rows.tolist(), texts, strict=True)]

    bad = quoted(np.flatnonzero(~ok))
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    dup = quoted(np.array([first[i] for i in np.flatnonzero(counts > 1) if ids[first[i]] >= 1],
                          dtype=np.intp))
    chk.rule("objects.object-ids", bad + dup, "Object IDs are unique positive whole numbers")
    return ids


def _xyz(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(c):g}" for c in np.round(v, 1)) + ")"


def _check_against_pixels(
    chk: _Checker, cols: list[str], columns: list[BodyColumn], ids: np.ndarray, truth: TableTruth
) -> None:
    stats = truth.stats
    index = {c: j for j, c in reversed(list(enumerate(cols)))}
    if stats is not None:
        want = stats.ids
        got = np.sort(ids)
        same = got.size == want.size and bool(np.array_equal(got, want))
        chk.rule(
            "objects.ids-match-labels",
            []
            if same  # the set differences (two more sorts) only to name the offenders
            else [
                f"{ids.size} rows vs {want.size} labels; labels without a row: "
                f"{first_items(np.setdiff1d(want, ids).tolist())}; rows without a label: "
                f"{first_items(np.setdiff1d(ids, want).tolist())}"
            ],
            f"Object IDs equal the pixel labels of channel {truth.name!r}",
        )
    for col, want_value in ((MASK_NAME, truth.name), (SOURCE_FILE, truth.source_file)):
        if col not in index:
            chk.not_applicable(f"objects.{col.lower().replace(' ', '-')}", f"no {col!r} column")
            continue
        vals = _texts(columns[index[col]])
        other: Callable[[str], bool] = want_value.__ne__
        chk.rule(
            f"objects.{col.lower().replace(' ', '-')}",
            [f"row {_row(i)}: {vals[i]!r}" for i in _where(vals, other)],
            f"{col} column == {want_value!r}",
        )
    if stats is None or not all(c in index for c in POSITION_COLUMNS):
        chk.not_applicable("objects.centroids", "no pixels or no X/Y/Z columns to compare")
        return
    xyz = np.stack([_stripped_floats(columns[index[c]]) for c in POSITION_COLUMNS], axis=1)
    pos = np.searchsorted(stats.ids, ids)
    pos = np.clip(pos, 0, max(stats.n - 1, 0))
    known = (stats.n > 0) & (stats.ids[pos] == ids) if stats.n else np.zeros(ids.size, bool)
    cent_xyz = stats.centroids[pos][:, ::-1] if stats.n else np.zeros((ids.size, 3))
    with np.errstate(invalid="ignore"):
        off = known & ~np.all(np.abs(xyz - cent_xyz) <= 1.0, axis=1)
    chk.rule(
        "objects.centroids",
        [
            f"Object ID {ids[i]}: X,Y,Z = {_xyz(xyz[i])}, centroid {_xyz(cent_xyz[i])}"
            for i in np.flatnonzero(off)
        ],
        "X, Y, Z are the pixel centroids (column, row, plane) within one pixel",
    )


# Columns whose value follows from the pixel count and the pixel size alone.
_AREA_RE = re.compile(r"(Area|Volume|Pixel count|Voxel count)(\s*\(.*\))?", re.IGNORECASE)
# relative tolerance: floats are written with at least 9 significant digits
SIZE_RTOL = 1e-6


def _check_sizes(
    chk: _Checker,
    cols: list[str],
    columns: list[BodyColumn],
    ids: np.ndarray,
    truth: TableTruth,
    units: dict[str, str],
) -> None:
    """Area / Volume / Pixel count columns against the pixel counts and the pixel size.

    ``Area`` (2D) must be the pixel count times the pixel area (y size times x size) when
    its Unit is ``square micrometer``, the pixel count when it is ``pixel``; ``Volume``
    (3D) the voxel count times the voxel volume; ``Pixel count`` / ``Voxel count`` the
    count itself. A blank or other unit cannot be checked (not applicable). Catches an
    edited PhysicalSizeX or unit as well as edited values.
    """
    stats, um = truth.stats, truth.um_zyx
    checked: list[str] = []
    if stats is not None and stats.n:
        pos = np.clip(np.searchsorted(stats.ids, ids), 0, stats.n - 1)
        known = stats.ids[pos] == ids
    for j, col in enumerate(cols):
        m = _AREA_RE.fullmatch(col.strip())
        if m is None or stats is None or um is None or not stats.n:
            continue
        kind = m.group(1).lower()
        unit = units.get(col, "")
        if kind in ("pixel count", "voxel count"):
            scale = 1.0
        elif kind == "area" and not truth.is_3d and unit == "square micrometer":
            scale = um[1] * um[2]
        elif kind == "area" and not truth.is_3d and unit == "pixel":
            scale = 1.0
        elif kind == "volume" and truth.is_3d and "cubic micrometer" in col.lower():
            scale = um[0] * um[1] * um[2]
        else:
            continue
        got = _floats(columns[j])
        want = stats.counts[pos].astype(np.float64) * scale
        with np.errstate(invalid="ignore"):
            off = known & ~(np.abs(got - want) <= SIZE_RTOL * np.abs(want) + 1e-12)
        checked.append(col)
        shown = [
            f"Object ID {ids[i]}: {got[i]:g}, want {int(stats.counts[pos[i]])} px x "
            f"{scale:g} = {want[i]:g}"
            for i in np.flatnonzero(off)
        ]
        chk.rule(
            "objects.size-columns",
            shown,
            f"{col!r} == pixel count x pixel size "
            f"({um[2]:g} x {um[1]:g}{f' x {um[0]:g}' if truth.is_3d else ''} um from the "
            "OME-TIFF)",
            fix="recompute it, or restore PhysicalSizeX/Y and their units if they were edited",
        )
    if not checked:
        chk.not_applicable("objects.size-columns", "no Area/Volume/Pixel count column to check")



