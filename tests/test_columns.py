"""check_objects_table: the fast checks of numpy number columns and one-string text
columns give the verdicts and messages of the general per-cell checks."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from maskbundle.columns import check_objects_table
from maskbundle.errors import TableFormatError
from maskbundle.model import ColumnSpec

N = 4


def _verdict(spec: ColumnSpec, values: Any, fmt: str) -> str:
    frame = pd.DataFrame({"Object ID": np.arange(1, N + 1), spec.name: values})
    try:
        check_objects_table([spec], frame, fmt=fmt)
    except TableFormatError as exc:
        # the general checks show a cell as Python gives it, the fast ones as numpy's scalar
        return re.sub(r"np\.(?:float|int)\d+\((.*?)\)", r"\1", str(exc))
    return "ok"


NUMBER_CASES = [
    ("float", "OPTIONAL", [0.5, np.nan, 1.0, 2.0], "tsv"),
    ("float", "REQUIRED", [0.5, np.nan, 1.0, 2.0], "tsv"),
    ("float", "OPTIONAL", [0.5, np.inf, 1.0, 2.0], "tsv"),
    ("float", "OPTIONAL", [0.5, -np.inf, 1.0, 2.0], "xlsx"),
    ("integer", "OPTIONAL", [1.0, 1.5, 2.0, 3.0], "tsv"),
    ("integer", "OPTIONAL", [1.0, np.nan, 2.0, 3.0], "tsv"),
    ("integer", "OPTIONAL", [1.0, 2.0, 2.0**60, 3.0], "xlsx"),
    ("integer", "OPTIONAL", [1.0, 2.0, 2.0**60, 3.0], "tsv"),
    ("integer", "OPTIONAL", np.array([1, 2**53 + 1, 3, 4], np.int64), "xlsx"),
    ("integer", "OPTIONAL", np.array([1, 2**53 + 1, 3, 4], np.int64), "tsv"),
    ("integer", "OPTIONAL", np.array([1, 2**64 - 1, 3, 4], np.uint64), "xlsx"),
    ("integer", "REQUIRED", np.array([1, 2, 3, 4], np.int32), "xlsx"),
    ("float", "OPTIONAL", np.array([1, 2, 3, 4], np.int16), "tsv"),
    ("float", "OPTIONAL", np.array([0.5, np.nan, np.inf, 4], np.float32), "tsv"),
]


@pytest.mark.parametrize(("typ", "level", "values", "fmt"), NUMBER_CASES)
def test_number_columns_fast_and_general_agree(typ: str, level: str, values: Any,
                                               fmt: str) -> None:
    spec = ColumnSpec("v", typ, "morphology", "a test column", requirement=level)  # type: ignore[arg-type]
    arr = np.asarray(values)
    fast = _verdict(spec, arr, fmt)
    general = _verdict(spec, np.array(arr.tolist(), dtype=object), fmt)  # per-cell checks
    assert fast == general


TEXT_CASES = [
    ("text", "a", ()),
    ("text", "=cmd|' /C calc'!A0", ()),
    ("text", "caf\u00e9", ()),
    ("boolean", "yes", ()),
    ("boolean", "maybe", ()),
    ("obo id", "CL:0000000", ()),
    ("obo id", "CL:123", ()),
    ("doi", "10.1234/x", ()),
    ("doi", "https://doi.org/10.1234/x", ()),
    ("text", "B", ("a", "b")),
    ("text", "c", ("a", "b")),
]


@pytest.mark.parametrize(("typ", "cell", "allowed"), TEXT_CASES)
def test_one_string_text_columns_fast_and_general_agree(typ: str, cell: str,
                                                        allowed: tuple[str, ...]) -> None:
    spec = ColumnSpec("t", typ, "ontology", "a test column",  # type: ignore[arg-type]
                      permissible_values=allowed)
    fast = _verdict(spec, np.full(N, cell, dtype=object), "tsv")
    # a numpy string in every row is the same text but takes the per-cell checks
    general = _verdict(spec, np.full(N, np.str_(cell), dtype=object), "tsv")
    assert fast == general
    assert (fast == "ok") == (cell in ("a", "yes", "CL:0000000", "10.1234/x", "B"))


def test_text_columns_that_vary_or_hold_odd_cells_take_the_general_checks() -> None:
    spec = ColumnSpec("t", "text", "ontology", "a test column", requirement="REQUIRED")
    assert _verdict(spec, np.array(["a", "a", "=1+1", "a"], dtype=object), "tsv") != "ok"
    assert "empty cell" in _verdict(spec, np.array(["a", "a", None, "a"], dtype=object), "tsv")
    assert "empty cell" in _verdict(spec, np.array(["a", "", "a", "a"], dtype=object), "tsv")
    cells = np.empty(N, dtype=object)
    cells[:] = ["a", "a", "a", "a"]
    cells[1] = {"k": 1}
    assert "holds a dict" in _verdict(spec, cells, "tsv")
