"""Objects-table writer: float text equals repr, TSV bytes equal pandas, XLSX reads back."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maskbundle.bundle.objects import required_specs
from maskbundle.io import cellwriter
from maskbundle.io._cellbytes import format_floats, format_ints
from maskbundle.io.readers import read_tsv_grid, read_xlsx_grid
from maskbundle.io.tables import _header_rows, read_table_cells, write_objects_table
from maskbundle.model import ColumnSpec


def _cells(buf: np.ndarray, ends: np.ndarray) -> list[str]:
    raw = buf.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [raw[a:b].decode() for a, b in zip(starts, ends.tolist(), strict=True)]


def _want(x: float) -> str:
    # the writer's rule: NaN is a missing value (empty cell), everything else repr
    return "" if x != x else repr(x)


EDGE = [
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
    1.7976931348623157e308, 1e16, 9999999999999998.0, 1e15, 123456789012345680.0, 1e-4,
    1e-5, 0.0001234, 1e22, 1e23, 2.0**53, 2.0**53 + 2, 0.1, 0.3, 1 / 3, 100.0, 1.5,
    float("inf"), float("-inf"), float("nan"), 4.35, 5e-310, 1e-320, 9.5e-5,
]


def test_float_text_edge_cases_equal_repr() -> None:
    assert _cells(*format_floats(np.array(EDGE))) == [_want(x) for x in EDGE]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
                min_size=1, max_size=40))
def test_float_text_equals_repr(values: list[float]) -> None:
    got = _cells(*format_floats(np.array(values, np.float64)))
    assert got == [_want(x) for x in values]
    assert all(float(g) == x for g, x in zip(got, values, strict=True) if x == x)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40))
def test_float_text_equals_repr_for_any_bit_pattern(bits: list[int]) -> None:
    values = [struct.unpack("<d", struct.pack("<Q", b))[0] for b in bits]
    got = _cells(*format_floats(np.array(bits, np.uint64).view(np.float64)))
    assert got == [_want(x) for x in values]


def test_float_text_on_many_random_doubles() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**64 - 1, 60_000, dtype=np.uint64, endpoint=True)
    values = np.concatenate([bits.view(np.float64), rng.gamma(2.0, 50.0, 30_000),
                             np.round(rng.random(20_000) * 1000, 3)])
    assert _cells(*format_floats(values)) == [_want(x) for x in values.tolist()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=40))
def test_integer_text_is_exact(values: list[int]) -> None:
    assert _cells(*format_ints(np.array(values, np.int64))) == [str(v) for v in values]


def _table(n: int, seed: int = 0) -> tuple[list[ColumnSpec], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    specs = required_specs("In-house")
    frame = pd.DataFrame({
        "Object ID": np.arange(1, n + 1, dtype=np.int64),
        "Source file": np.full(n, "img.ome.tiff", object),
        "Mask name": np.full(n, "cells", object),
        "Mask ID": np.full(n, "CL:0000000", object),
        "Protocol for mask creation (DOI)": np.full(n, "10.1234/abc", object),
        "Annotation tool": np.full(n, "In-house", object),
        # varied text (not one repeated value)
        "Object type": np.array([f"CL:{i % 7:07d}" for i in range(n)], object),
        "X": rng.integers(0, 5000, n),
        "Y": rng.integers(0, 5000, n),
        "Z": np.zeros(n, np.int64),
    })
    extra = {
        "Area": ("integer", rng.integers(1, 10**6, n).astype(np.float64)),  # whole floats
        "Perimeter": ("float", rng.gamma(2.0, 30.0, n)),
        "Tiny": ("float", rng.random(n) * 1e-7),
        "Huge": ("float", rng.random(n) * 1e17),
        "Half": ("float", rng.random(n).astype(np.float32)),
        "Sparse": ("float", np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n))),
        "Border": ("integer", rng.integers(0, 2, n).astype(np.uint8)),
        "Note": ("text", np.array(["a b" if i % 3 else "x&<y>" for i in range(n)], object)),
    }
    for name, (kind, values) in extra.items():
        specs.append(ColumnSpec(name, kind, "morphology", f"{name} of the object"))
        frame[name] = values
    return specs, frame


def _pandas_tsv(path: Path, specs: list[ColumnSpec], frame: pd.DataFrame) -> None:
    # what the writer promises: pandas to_csv with repr floats, integer columns as integers
    frame = frame.copy()
    for s in specs:
        if s.type == "integer":
            frame[s.name] = frame[s.name].astype(np.int64)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in _header_rows(specs):
            f.write("\t".join(row) + "\n")
        frame.to_csv(f, sep="\t", header=False, index=False, quoting=csv.QUOTE_NONE,
                     quotechar="\x00", lineterminator="\n",
                     float_format=lambda x: repr(float(x)))


@pytest.mark.parametrize("chunk", [7, 1 << 14])
def test_tsv_bytes_equal_pandas_to_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       chunk: int) -> None:
    monkeypatch.setattr(cellwriter, "CHUNK_ROWS", chunk)  # several blocks, threads
    specs, frame = _table(101)
    write_objects_table(tmp_path / "ours.tsv", specs, frame)
    _pandas_tsv(tmp_path / "pandas.tsv", specs, frame)
    assert (tmp_path / "ours.tsv").read_bytes() == (tmp_path / "pandas.tsv").read_bytes()


def test_empty_table(tmp_path: Path) -> None:
    specs, frame = _table(0)
    write_objects_table(tmp_path / "o.tsv", specs, frame)
    _pandas_tsv(tmp_path / "p.tsv", specs, frame)
    assert (tmp_path / "o.tsv").read_bytes() == (tmp_path / "p.tsv").read_bytes()
    write_objects_table(tmp_path / "o.xlsx", specs, frame)
    assert len(read_xlsx_grid(tmp_path / "o.xlsx").rows) == 10


def test_xlsx_reads_back_with_openpyxl_and_pandas(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from openpyxl import load_workbook

    monkeypatch.setattr(cellwriter, "CHUNK_ROWS", 16)
    specs, frame = _table(75, seed=3)
    path = tmp_path / "o.xlsx"
    write_objects_table(path, specs, frame)
    wb = load_workbook(path, read_only=True, data_only=True)
    assert wb.sheetnames == ["MAIN"]
    rows = list(wb["MAIN"].iter_rows(values_only=True))
    wb.close()
    assert [list(r) for r in rows[:10]] == [
        [c if c != "" else None for c in r] for r in _header_rows(specs)
    ]
    for j, name in enumerate(frame.columns):
        got = [r[j] for r in rows[10:]]
        want = frame[name].tolist()
        kind = "integer" if j == 0 else specs[j - 1].type
        if kind == "integer":
            assert got == [int(v) for v in want] and all(type(v) is int for v in got)
        elif kind == "float":
            assert got == [None if v != v else float(v) for v in want]  # exact doubles
        else:
            assert got == want
    back = pd.read_excel(path, engine="openpyxl", header=9)
    assert list(back.columns) == list(frame.columns)
    np.testing.assert_array_equal(back["Perimeter"].to_numpy(), frame["Perimeter"].to_numpy())


def test_xlsx_and_tsv_hold_the_same_cell_text(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cellwriter, "CHUNK_ROWS", 32)
    specs, frame = _table(90, seed=5)
    write_objects_table(tmp_path / "o.tsv", specs, frame)
    write_objects_table(tmp_path / "o.xlsx", specs, frame)
    tsv = read_tsv_grid(tmp_path / "o.tsv")
    xlsx = read_table_cells(tmp_path / "o.xlsx")  # openpyxl: str() of each cell value
    width = len(tsv[9])
    assert [r + [""] * (width - len(r)) for r in xlsx] == [
        r + [""] * (width - len(r)) for r in tsv
    ]


def test_xlsx_bytes_repeat_run_to_run(tmp_path: Path) -> None:
    specs, frame = _table(40, seed=9)
    write_objects_table(tmp_path / "a.xlsx", specs, frame)
    write_objects_table(tmp_path / "b.xlsx", specs, frame)
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()


def test_validator_reader_gives_the_tsv_cells(tmp_path: Path) -> None:
    # the validator reads .xlsx with calamine, which returns numbers as doubles: text
    # cells and non-whole numbers come back as written, whole numbers without ".0"
    specs, frame = _table(120, seed=11)
    write_objects_table(tmp_path / "o.tsv", specs, frame)
    write_objects_table(tmp_path / "o.xlsx", specs, frame)
    tsv = read_tsv_grid(tmp_path / "o.tsv")
    grid = read_xlsx_grid(tmp_path / "o.xlsx")
    assert grid.sheet_names == ["MAIN"]
    assert len(grid.rows) == len(tsv)
    for got_row, want_row in zip(grid.rows, tsv, strict=True):
        want_row = [*want_row][: len(want_row)]
        while want_row and want_row[-1] == "":
            want_row.pop()
        assert len(got_row) == len(want_row)
        for got, want in zip(got_row, want_row, strict=True):
            if got != want:
                assert want.endswith(".0") and got == want[:-2]
