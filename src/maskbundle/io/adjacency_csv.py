"""Writer of adjacency CSVs (SPEC section 6): integer id columns, then decimal columns.

Edge lists hold hundreds of thousands of rows; pandas formats each float through Python,
which took longer than computing the graph. Here one compiled pass formats the rows into a
byte buffer: ids as integers, decimals rounded to 1e-6 (a picometre for micrometre
values) with trailing zeros dropped (``0``, ``7``, ``10.601823``). Output is ASCII, ``\\n``
line ends, and byte-identical for the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from ..errors import TableFormatError
from ..rules import ADJACENCY_COLUMNS

__all__ = [
    "DECIMALS",
    "EdgeRows",
    "adjacency_header_ok",
    "format_adjacency_csv",
    "judge_edge_rows",
    "write_adjacency_csv",
]

DECIMALS = 6
_SCALE = 10**DECIMALS
_MAX_ABS = 9.0e12  # |value| * 1e6 must fit an int64 exactly
_PARALLEL_ROWS = 100_000


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _put_uint(buf: np.ndarray, pos: int, v: int) -> int:  # pragma: no cover
    if v == 0:
        buf[pos] = 48
        return pos + 1
    n = 0
    t = v
    while t > 0:
        n += 1
        t //= 10
    end = pos + n
    t = v
    for i in range(end - 1, pos - 1, -1):
        buf[i] = 48 + t % 10
        t //= 10
    return end


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _format_rows(ids: np.ndarray, vals: np.ndarray, scale: int, decimals: int) -> np.ndarray:
    # pragma: no cover
    n = ids.shape[0]
    ni = ids.shape[1]
    nv = vals.shape[1]
    # ids up to 20 digits, values up to 1 + 13 + 1 + decimals characters, separators
    width = ni * 21 + nv * (16 + decimals) + 1
    buf = np.empty(n * width, np.uint8)
    pos = 0
    for r in range(n):
        for c in range(ni):
            if c > 0:
                buf[pos] = 44
                pos += 1
            pos = _put_uint(buf, pos, int(ids[r, c]))
        for c in range(nv):
            buf[pos] = 44
            pos += 1
            v = vals[r, c]
            neg = v < 0
            q = np.int64(np.rint(abs(v) * scale))
            if neg and q != 0:
                buf[pos] = 45
                pos += 1
            ip = q // scale
            fp = q % scale
            pos = _put_uint(buf, pos, int(ip))
            if fp != 0:
                buf[pos] = 46
                pos += 1
                d = decimals
                while fp % 10 == 0:
                    fp //= 10
                    d -= 1
                start = pos
                for i in range(d - 1, -1, -1):
                    buf[start + i] = 48 + fp % 10
                    fp //= 10
                pos = start + d
        buf[pos] = 10
        pos += 1
    return buf[:pos]


def _csv_parts(frame: pd.DataFrame, n_id_columns: int) -> list[memoryview]:
    """The header line and the formatted row blocks of :func:`format_adjacency_csv`."""
    header: Sequence[str] = [str(c) for c in frame.columns]
    for h in header:
        if any(ch in h for ch in ',"\n\r') or not h.isascii():
            raise TableFormatError(
                f"adjacency CSV header cell {h!r} must be ASCII without commas, quotes or "
                "line breaks"
            )
    id_cols = [frame[c].to_numpy() for c in header[:n_id_columns]]
    val_cols = [np.asarray(frame[c].to_numpy(), np.float64) for c in header[n_id_columns:]]
    for name, col in zip(header, id_cols, strict=False):
        if col.dtype.kind not in "ui":
            raise TableFormatError(
                f"adjacency column {name!r} must hold integers, got {col.dtype}"
            )
        if col.size and col.dtype.kind == "i" and int(col.min()) < 0:
            raise TableFormatError(f"adjacency column {name!r} holds a negative id")
    for name, col in zip(header[n_id_columns:], val_cols, strict=True):
        if col.size and not (np.all(np.isfinite(col)) and float(np.abs(col).max()) < _MAX_ABS):
            raise TableFormatError(
                f"adjacency column {name!r} holds a value that is not a finite number below "
                f"{_MAX_ABS:g}"
            )
    n = len(frame)
    ids = (
        np.stack([c.astype(np.int64) for c in id_cols], axis=1)
        if id_cols
        else np.empty((n, 0), np.int64)
    )
    vals = np.stack(val_cols, axis=1) if val_cols else np.empty((n, 0), np.float64)
    ids, vals = np.ascontiguousarray(ids), np.ascontiguousarray(vals)
    # row blocks formatted on threads (the kernel releases the GIL), joined in order:
    # the same bytes as one pass
    cuts = np.linspace(0, n, _blocks(n) + 1).astype(int).tolist()

    def block(i: int) -> np.ndarray:
        a, b = cuts[i], cuts[i + 1]
        out: np.ndarray = _format_rows(ids[a:b], vals[a:b], _SCALE, DECIMALS)
        return out

    if len(cuts) == 2:
        parts = [block(0)]
    else:
        with ThreadPoolExecutor(max_workers=len(cuts) - 1) as pool:
            parts = list(pool.map(block, range(len(cuts) - 1)))
    return [memoryview((",".join(header) + "\n").encode("ascii")), *[p.data for p in parts]]


def _blocks(n_rows: int) -> int:
    """Row blocks of the formatter: two (one per thread) once the table is large enough
    to gain from a second thread; a fixed number, so the bytes never depend on it."""
    return 2 if n_rows >= _PARALLEL_ROWS else 1


def format_adjacency_csv(frame: pd.DataFrame, *, n_id_columns: int = 2) -> bytes:
    """The CSV bytes of an adjacency table.

    Parameters
    ----------
    frame : DataFrame
        The first ``n_id_columns`` columns hold non-negative integers (Object IDs); the
        others finite numbers, written rounded to ``DECIMALS`` decimal places.

    Raises
    ------
    TableFormatError
        A header cell holds a comma, quote or line break; an id is negative or not an
        integer; a value is not finite or too large to format exactly.
    """
    return b"".join(_csv_parts(frame, n_id_columns))


def write_adjacency_csv(path: Path | str, frame: pd.DataFrame) -> None:
    """Write an adjacency table to ``path`` (callers stage the path; see io.staging).

    The formatted blocks go to the file as they are (no joined copy of the whole text).
    """
    parts = _csv_parts(frame, 2)
    with open(path, "wb") as f:
        for part in parts:
            f.write(part)


# -- reading back: the rules of SPEC section 6 that the validator and the amend check share


def adjacency_header_ok(rows: Sequence[Sequence[str]]) -> bool:
    """Whether the first row of a CSV starts with :data:`~maskbundle.rules.ADJACENCY_COLUMNS`."""
    return bool(rows) and list(rows[0][:3]) == list(ADJACENCY_COLUMNS)


def _parse_column(values: list[str], kind: type) -> tuple[np.ndarray, np.ndarray]:
    """Values as int64 or float64, and a mask of the values that parse as ``kind``."""
    dtype = np.int64 if kind is int else np.float64
    try:
        return np.array(values, dtype=object).astype(dtype), np.ones(len(values), bool)
    except (ValueError, TypeError, OverflowError):
        pass
    out = np.zeros(len(values), dtype)
    ok = np.ones(len(values), bool)
    for i, v in enumerate(values):
        try:
            out[i] = kind(v)
        except (ValueError, OverflowError):
            ok[i] = False
    return out, ok


@dataclass(frozen=True)
class EdgeRows:
    """The edge rows (after the header) of an adjacency CSV, parsed and judged.

    ``a``, ``b``, ``d`` are the parsed columns (0 where a cell does not parse);
    ``parsed`` marks rows whose three cells parse, ``known_a``/``known_b`` rows whose ids
    are Object IDs of the mask, ``good`` rows that keep the edge rule: ``id1 < id2``, both
    known, a finite distance >= 0.
    """

    body: list[list[str]]
    a: np.ndarray
    b: np.ndarray
    d: np.ndarray
    parsed: np.ndarray
    known_a: np.ndarray
    known_b: np.ndarray
    good: np.ndarray

    def reasons(self, show: int) -> list[str]:
        """One line for each of the first ``show`` rows that break the edge rule."""
        out = []
        for i in np.flatnonzero(~self.good)[:show]:
            why = (
                "unparsable"
                if not self.parsed[i]
                else "self edge"
                if self.a[i] == self.b[i]
                else "id1 > id2"
                if self.a[i] > self.b[i]
                else "unknown id"
                if not (self.known_a[i] and self.known_b[i])
                else "bad distance"
            )
            out.append(f"line {i + 2} {','.join(self.body[i])!r} ({why})")
        return out

    def duplicates(self) -> list[str]:
        """``"id1,id2 xN"`` for every parsed edge that occurs more than once."""
        pairs = np.stack([self.a[self.parsed], self.b[self.parsed]], axis=1)
        uniq, cnt = np.unique(pairs, axis=0, return_counts=True)
        return [
            f"{p[0]},{p[1]} x{c}"
            for p, c in zip(uniq.tolist(), cnt.tolist(), strict=True)
            if c > 1
        ]


def judge_edge_rows(body: Sequence[Sequence[str]], ids: np.ndarray) -> EdgeRows:
    """Parse the rows after the header and judge each against the edge rule of SPEC 6.

    ``ids`` are the mask's Object IDs (sorted). Used by the validator
    (``adjacency.edges``, ``adjacency.duplicates``) and by ``add_adjacency``'s check of
    the file it stages, so the rule is written once.
    """
    rows = [list(r) for r in body]
    short = [i for i, r in enumerate(rows) if len(r) < 3]
    cells = [r[:3] + [""] * (3 - len(r[:3])) for r in rows]
    a, ok_a = _parse_column([r[0] for r in cells], int)
    b, ok_b = _parse_column([r[1] for r in cells], int)
    d, ok_d = _parse_column([r[2] for r in cells], float)
    parsed = ok_a & ok_b & ok_d
    parsed[short] = False
    known_a = np.isin(a, ids)
    known_b = np.isin(b, ids)
    with np.errstate(invalid="ignore"):
        good = parsed & (a < b) & known_a & known_b & np.isfinite(d) & (d >= 0)
    return EdgeRows(rows, a, b, d, parsed, known_a, known_b, good)
