"""Objects-table columns checked against the format's rules before anything is written.

:func:`check_spec` refuses header cells outside the published vocabularies;
:func:`check_objects_table` checks every cell of a table against its column's Type and
Requirement level (SPEC section 5; the rules themselves are in :mod:`maskbundle.rules`).
Pure: the table writer (``maskbundle.io.tables``) and the feature stage
(``maskbundle.measure.features``) call them; nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import TableFormatError
from .model import ColumnSpec
from .rules import (
    COLUMN_TYPES,
    COLUMN_UNITS,
    DOI_RE,
    EXCEL_EXACT_INT,
    FEATURE_CLASSES,
    HEADER_LABELS,
    OBJECT_ID,
    OBO_ID_RE,
    REQUIREMENT_LEVELS,
    TEXT_TYPES,
    check_ascii_text,
    check_text_cell,
)

__all__ = ["check_objects_table", "check_spec"]

_BOOLEAN_VALUES = frozenset({"true", "false", "yes", "no", "1", "0"})


def _check_text(value: str, where: str) -> None:
    check_ascii_text(value, where, TableFormatError)
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
    if spec.protocol_doi and not DOI_RE.fullmatch(spec.protocol_doi):
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
    names = [OBJECT_ID, *[s.name for s in specs]]
    if list(frame.columns) != names:
        raise TableFormatError(f"table columns {list(frame.columns)} differ from specs {names}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise TableFormatError(f"column names must be unique; repeated: {dup}")
    for spec in specs:
        check_spec(spec)
        col = frame[spec.name]
        where = f"column {spec.name!r}"
        if _fast_column(spec, col, frame, where, fmt):
            continue
        missing = col.isna().to_numpy().copy()
        if spec.type in TEXT_TYPES:
            missing |= np.asarray(col.to_numpy(dtype=object) == "", dtype=bool)
        if missing.any() and (spec.requirement == "REQUIRED" or spec.type == "integer"):
            first = int(frame[OBJECT_ID].iloc[int(np.argmax(missing))])
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
        if spec.type in TEXT_TYPES and len(present):
            # str() of the distinct cells only (not of every row): same values, less work
            values = list(dict.fromkeys(
                str(v) for v in (uniq if uniq is not None else present.tolist())))
            _check_text_column(spec, values, where)
        elif spec.type in ("integer", "float") and len(present):
            _check_number_column(spec, present, uniq, where, fmt)


def _fast_column(
    spec: ColumnSpec, col: pd.Series, frame: pd.DataFrame, where: str, fmt: str
) -> bool:
    """The checks of :func:`check_objects_table` for the two column shapes the writer
    builds itself, without pandas' per-cell passes (0.6 s at 650,000 objects): a numpy
    number column of a number type, and a text column holding one string in every row.
    Same verdicts and messages; False leaves the column to the general checks."""
    if not isinstance(col.dtype, np.dtype):
        return False  # extension dtypes (nullable integers, categoricals ...)
    values = col.to_numpy()
    kind = values.dtype.kind
    if kind in "iuf" and spec.type in ("integer", "float"):
        present = values
        if kind == "f":
            missing = np.isnan(values)
            if missing.any():
                if spec.requirement == "REQUIRED" or spec.type == "integer":
                    first = int(frame[OBJECT_ID].iloc[int(np.argmax(missing))])
                    raise TableFormatError(
                        f"{where}: {int(missing.sum())} empty cell(s), first at Object ID "
                        f"{first}; {'REQUIRED' if spec.requirement == 'REQUIRED' else 'integer'}"
                        " columns must be filled"
                    )
                present = values[~missing]
        if present.size:
            _check_number_values(spec, present, where, fmt)
        return True
    if kind == "O" and spec.type in TEXT_TYPES and values.size:
        first_cell = values[0]
        if type(first_cell) is not str or first_cell == "":
            return False
        try:  # one string in every row (np.full): the distinct cells are that string
            same = bool((values == first_cell).all())
        except (TypeError, ValueError):  # a cell whose == is not a truth value
            return False
        if not same:
            return False
        _check_text_column(spec, [first_cell], where)
        return True
    return False


def _check_text_column(spec: ColumnSpec, values: list[str], where: str) -> None:
    """The distinct cells of a text, doi, obo id or boolean column."""
    if spec.type == "boolean":
        bad_bool = [v for v in values if v.strip().lower() not in _BOOLEAN_VALUES]
        if bad_bool:
            raise TableFormatError(
                f"{where}: {bad_bool[0]!r} is not a boolean; use true/false, yes/no "
                "or 1/0"
            )
    for v in values:
        _check_text(v, where)
        if spec.type == "doi" and not DOI_RE.fullmatch(v):
            raise TableFormatError(f"{where}: {v!r} is not a bare DOI (10.xxxx/...)")
        if spec.type == "obo id" and not OBO_ID_RE.fullmatch(v):
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


def _check_number_column(
    spec: ColumnSpec, present: pd.Series, uniq: np.ndarray | None, where: str, fmt: str
) -> None:
    """The filled cells of an integer or float column (``uniq``: distinct object cells)."""
    if uniq is not None and any(isinstance(v, str | bool | np.bool_) for v in uniq):
        raise TableFormatError(
            f"{where}: text or booleans in a {spec.type} column; give numbers"
        )
    if present.dtype.kind == "b":
        raise TableFormatError(f"{where}: booleans in a {spec.type} column; give 0/1")
    _check_number_values(
        spec, pd.to_numeric(present, errors="coerce").to_numpy(dtype=float), where, fmt,
        present.to_numpy())


def _check_number_values(
    spec: ColumnSpec, values: np.ndarray, where: str, fmt: str,
    shown: np.ndarray | None = None,
) -> None:
    """Filled number cells (``values`` as numbers; ``shown`` the cells as given, for the
    message): finite, whole in an integer column, and exact in Excel."""
    shown = values if shown is None else shown
    if values.dtype.kind in "iu":  # finite and whole: only Excel's limit can refuse them
        if spec.type == "integer" and fmt == "xlsx":
            _check_excel_exact(values.astype(float), where)
        return
    arr = values.astype(float, copy=False)
    if not np.isfinite(arr).all():  # NaN (a text cell coerced) or infinite
        raise TableFormatError(f"{where}: non-numeric or infinite values in a number column")
    if spec.type == "integer" and (arr != np.round(arr)).any():
        first = shown[int(np.argmax(arr != np.round(arr)))]
        raise TableFormatError(
            f"{where}: fractional value {first!r} in an integer column; round it "
            "yourself or declare the column float"
        )
    if spec.type == "integer" and fmt == "xlsx":
        _check_excel_exact(arr, where)


def _check_excel_exact(arr: np.ndarray, where: str) -> None:
    if (np.abs(arr) > EXCEL_EXACT_INT).any():
        raise TableFormatError(
            f"{where}: integers of more than 15 digits lose digits in Excel; write "
            "the table as TSV (objects_format='tsv') or store them as text",
            cli=f"{where}: integers of more than 15 digits lose digits in Excel; use "
            "--objects-format tsv or store them as text",
        )
