"""Writers (and a raw reader) for the bundle's tables: objects TSV/XLSX, CSV, JSON, TSV.

Every objects table passes :func:`maskbundle.columns.check_objects_table` (the cell rules
of SPEC section 5) here, before any byte is written, because this is the last place
every table passes through.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..columns import check_objects_table
from ..errors import TableFormatError
from ..model import ColumnSpec
from ..rules import EXCEL_MAX_OBJECTS, HEADER_LABELS, OBJECT_ID, check_text_cell
from .adjacency_csv import format_adjacency_csv
from .cellwriter import ColumnCells, write_tsv_table, write_xlsx_table

__all__ = [
    "read_json",
    "read_table_cells",
    "write_adjacency_rows",
    "write_csv",
    "write_json",
    "write_objects_table",
    "write_tsv",
]

_FLOAT_FORMAT = "%.7g"
#: Edge rows formatted at a time by :func:`write_adjacency_rows`.
ADJACENCY_CHUNK_ROWS = 1 << 18


def _header_rows(specs: Sequence[ColumnSpec]) -> list[list[str]]:
    cells = [s.header_cells() for s in specs]
    rows = [[label, *[c[i] for c in cells]] for i, label in enumerate(HEADER_LABELS)]
    rows.append([""] * (len(specs) + 1))
    rows.append([OBJECT_ID, *[s.name for s in specs]])
    return rows


def write_objects_table(path: Path, specs: Sequence[ColumnSpec], frame: pd.DataFrame) -> None:
    """Write an objects table in the object-by-feature layout (.tsv or .xlsx by suffix).

    ``frame`` has the column ``Object ID`` followed by one column per spec, in order.
    Floats are written as the shortest text that reads back to the same double (Python
    ``repr``), integers exactly, missing values as empty cells; TSV and XLSX get the same
    cell text (:mod:`maskbundle.io.cellwriter`, streamed block by block).
    """
    check_objects_table(specs, frame, fmt="xlsx" if path.suffix == ".xlsx" else "tsv")
    kinds = ["integer", *[s.type for s in specs]]
    columns = [
        ColumnCells(frame.iloc[:, j], integer=kind == "integer") for j, kind in enumerate(kinds)
    ]
    if path.suffix == ".xlsx":
        if len(frame) > EXCEL_MAX_OBJECTS:
            raise TableFormatError(
                f"{len(frame)} objects exceed Excel's row limit ({EXCEL_MAX_OBJECTS}); write TSV"
            )
        write_xlsx_table(path, _header_rows(specs), columns, len(frame))
        return
    write_tsv_table(path, _header_rows(specs), columns, len(frame))


def write_adjacency_rows(path: Path, frame: pd.DataFrame) -> None:
    """:func:`~maskbundle.io.adjacency_csv.write_adjacency_csv`, formatted in blocks of
    rows: the same bytes (each row's text depends on that row only), without the whole
    file's text and its ~65-byte-per-row format buffer in memory at once (at 30 million
    edges that buffer alone is 2 GB).
    """
    n = len(frame)
    with open(path, "wb") as f:
        for start in range(0, max(n, 1), ADJACENCY_CHUNK_ROWS):
            text = format_adjacency_csv(frame.iloc[start : start + ADJACENCY_CHUNK_ROWS])
            # every block starts with the header line; the file has it once
            f.write(text if start == 0 else text[text.index(b"\n") + 1 :])


def read_table_cells(path: Path) -> list[list[str]]:
    """All cells of a TSV or XLSX table as strings ('' for empty), row by row.

    :func:`maskbundle.io.readers.read_table_grid` with ``strict=False`` (a table a user
    hands in may have ``\\r\\n`` line ends).
    """
    from .readers import read_table_grid

    return read_table_grid(path, strict=False).rows


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]] | pd.DataFrame) -> None:
    """Comma-separated file with a header row and ``\\n`` line ends."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        if isinstance(rows, pd.DataFrame):
            rows.to_csv(f, header=list(header), index=False, lineterminator="\n",
                        float_format=_FLOAT_FORMAT)
            return
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            for c in row:
                if isinstance(c, str):
                    check_text_cell(c, f"{path.name}: cell", TableFormatError)
            w.writerow(row)


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Tab-separated file (contributors, upload metadata) with ``\\n`` line ends."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        for row in [list(header), *[list(r) for r in rows]]:
            cells = ["" if c is None else str(c) for c in row]
            for c in cells:
                check_text_cell(c, f"{path.name}: cell", TableFormatError)
            f.write("\t".join(cells) + "\n")


def write_json(path: Path, obj: Any) -> None:
    """JSON with sorted keys and a final newline (byte-stable for equal content)."""
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def read_json(path: Path) -> Any:
    """Parse a JSON file (provenance)."""
    return json.loads(path.read_text(encoding="utf-8"))
