"""Writers (and a raw reader) for the bundle's tables: objects TSV/XLSX, CSV, JSON, TSV.

Cell rules of SPEC section 5 are enforced here, before any byte is written, because this
is the last place every table passes through.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import TableFormatError
from ..model import (
    COLUMN_TYPES,
    COLUMN_UNITS,
    FEATURE_CLASSES,
    REQUIREMENT_LEVELS,
    ColumnSpec,
)
from ..rules import check_text_cell
from .cellwriter import ColumnCells, write_tsv_table, write_xlsx_table

__all__ = [
    "EXCEL_MAX_OBJECTS",
    "HEADER_LABELS",
    "check_objects_table",
    "read_json",
    "read_table_cells",
    "write_csv",
    "write_json",
    "write_objects_table",
    "write_tsv",
]

HEADER_LABELS = (
    "Type",
    "Unit",
    "Feature class",
    "Description",
    "Protocol used to derive this feature value (DOI)",
    "Alternative ID",
    "Permissible values",
    "Requirement level",
)
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_OBJECTS = EXCEL_MAX_ROWS - 10
DOI_RE = re.compile(r"^10\.\d{4,9}/[-._;()/:a-zA-Z0-9]+$")
OBO_RE = re.compile(r"^[A-Za-z]+:[0-9]{7}$")
_FLOAT_FORMAT = "%.7g"


EXCEL_EXACT_INT = 10**15 - 1  # Excel keeps 15 significant digits of a number
_BOOLEAN_VALUES = frozenset({"true", "false", "yes", "no", "1", "0"})


def _check_text(value: str, where: str) -> None:
    if not value.isascii():
        raise TableFormatError(f"{where}: {value!r} is not ASCII; HuBMAP accepts ASCII text only")
    check_text_cell(value, where, TableFormatError)  # the one rule (maskbundle.rules)


def _check_scalars(values: Any, where: str) -> None:
    """Cells hold scalars: a dict, list or array in a cell would be written as its repr."""
    for v in values:
        if not isinstance(v, str | int | float | bool | np.generic) or isinstance(v, bytes):
            raise TableFormatError(
                f"{where}: a cell holds a {type(v).__name__} ({str(v)[:40]!r}); cells take "
                "one string or number each"
            )


def check_spec(spec: ColumnSpec) -> None:
    """Refuse header cells outside the published value lists (SPEC section 5)."""
    where = f"column {spec.name!r}"
    if not spec.name or spec.name.strip() != spec.name:
        raise TableFormatError(f"{where}: column names must be non-empty without outer spaces")
    _check_text(spec.name, where)
    for value, allowed, what in (
        (spec.type, COLUMN_TYPES, "Type"),
        (spec.unit, COLUMN_UNITS, "Unit"),
        (spec.feature_class, FEATURE_CLASSES, "Feature class"),
        (spec.requirement, REQUIREMENT_LEVELS, "Requirement level"),
    ):
        if value not in allowed:
            raise TableFormatError(
                f"{where}: {what} {value!r} is not one of {list(allowed)}; a physical unit "
                "without a published Unit value goes in the Description with Unit left blank"
            )
    if not spec.description.strip():
        raise TableFormatError(f"{where}: the Description cell is empty; say what the column holds")
    for i, cell in enumerate(spec.header_cells()):
        if cell.strip().upper() in ("N/A", "NA"):
            raise TableFormatError(f"{where}: header cell {cell!r}: leave it blank instead of N/A")
        if cell and HEADER_LABELS[i] != "Permissible values":
            _check_text(cell, where)
    for allowed_value in spec.permissible_values:  # joined with " | " into one header cell
        if not isinstance(allowed_value, str) or not allowed_value.strip():
            raise TableFormatError(f"{where}: permissible values must be non-empty strings")
        _check_text(allowed_value, f"{where}, permissible value")
    if spec.protocol_doi and not DOI_RE.match(spec.protocol_doi):
        raise TableFormatError(
            f"{where}: protocol DOI {spec.protocol_doi!r} is not a bare DOI (10.xxxx/...); "
            "drop any https://doi.org/ prefix"
        )


def check_objects_table(
    specs: Sequence[ColumnSpec], frame: pd.DataFrame, *, fmt: str = "tsv"
) -> None:
    """Check header specs and every cell of ``frame`` (columns: Object ID then ``specs``).

    ``fmt="xlsx"`` also refuses integers Excel would round (beyond 2**53).
    """
    names = ["Object ID", *[s.name for s in specs]]
    if list(frame.columns) != names:
        raise TableFormatError(f"table columns {list(frame.columns)} differ from specs {names}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise TableFormatError(f"column names must be unique; repeated: {dup}")
    for spec in specs:
        check_spec(spec)
        col = frame[spec.name]
        where = f"column {spec.name!r}"
        missing = col.isna().to_numpy().copy()
        if spec.type == "text" or spec.type in ("doi", "obo id", "boolean"):
            missing |= np.asarray(col.to_numpy(dtype=object) == "", dtype=bool)
        if missing.any() and (spec.requirement == "REQUIRED" or spec.type == "integer"):
            first = int(frame["Object ID"].iloc[int(np.argmax(missing))])
            raise TableFormatError(
                f"{where}: {int(missing.sum())} empty cell(s), first at Object ID {first}; "
                f"{'REQUIRED' if spec.requirement == 'REQUIRED' else 'integer'} columns "
                "must be filled"
            )
        present = col[~missing]
        uniq = None
        if present.dtype == object:
            try:
                # dict, not pd.unique: pandas < 3 hashes "a\x00b" as "a" and drops it
                uniq = np.array(list(dict.fromkeys(present.tolist())), dtype=object)
            except TypeError:  # unhashable cells: a dict, list or array in a cell
                uniq = present.to_numpy()
            _check_scalars(uniq, where)
        if spec.type in ("text", "doi", "obo id", "boolean") and len(present):
            # str() of the distinct cells only (not of every row): same values, less work
            values = list(dict.fromkeys(
                str(v) for v in (uniq if uniq is not None else present.tolist())))
            if spec.type == "boolean":
                bad_bool = [v for v in values if v.strip().lower() not in _BOOLEAN_VALUES]
                if bad_bool:
                    raise TableFormatError(
                        f"{where}: {bad_bool[0]!r} is not a boolean; use true/false, yes/no "
                        "or 1/0"
                    )
            for v in values:
                _check_text(v, where)
                if spec.type == "doi" and not DOI_RE.match(v):
                    raise TableFormatError(f"{where}: {v!r} is not a bare DOI (10.xxxx/...)")
                if spec.type == "obo id" and not OBO_RE.match(v):
                    raise TableFormatError(
                        f"{where}: {v!r} is not an OBO id like CL:0000000 (prefix, colon, 7 digits)"
                    )
            if spec.permissible_values:
                allowed = {p.lower() for p in spec.permissible_values}
                bad = [v for v in values if v.lower() not in allowed]
                if bad:
                    raise TableFormatError(
                        f"{where}: {bad[0]!r} is not one of {list(spec.permissible_values)}"
                    )
        elif spec.type in ("integer", "float") and len(present):
            if uniq is not None and any(isinstance(v, str | bool | np.bool_) for v in uniq):
                raise TableFormatError(
                    f"{where}: text or booleans in a {spec.type} column; give numbers"
                )
            if present.dtype.kind == "b":
                raise TableFormatError(f"{where}: booleans in a {spec.type} column; give 0/1")
            arr = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float)
            if np.isnan(arr).any() or not np.isfinite(arr).all():
                raise TableFormatError(f"{where}: non-numeric or infinite values in a number column")
            if spec.type == "integer" and (arr != np.round(arr)).any():
                first = present.to_numpy()[int(np.argmax(arr != np.round(arr)))]
                raise TableFormatError(
                    f"{where}: fractional value {first!r} in an integer column; round it "
                    "yourself or declare the column float"
                )
            if spec.type == "integer" and fmt == "xlsx" and (np.abs(arr) > EXCEL_EXACT_INT).any():
                raise TableFormatError(
                    f"{where}: integers of more than 15 digits lose digits in Excel; write "
                    "the table as TSV (objects_format='tsv') or store them as text",
                    cli=f"{where}: integers of more than 15 digits lose digits in Excel; use "
                    "--objects-format tsv or store them as text",
                )


def _header_rows(specs: Sequence[ColumnSpec]) -> list[list[str]]:
    cells = [s.header_cells() for s in specs]
    rows = [[label, *[c[i] for c in cells]] for i, label in enumerate(HEADER_LABELS)]
    rows.append([""] * (len(specs) + 1))
    rows.append(["Object ID", *[s.name for s in specs]])
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
