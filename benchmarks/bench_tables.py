"""Objects-table writing and reading: maskbundle against pandas / openpyxl, one run.

    python benchmarks/bench_tables.py [--rows 652185] [--xlsx-size 4018]

1. TSV: a 652,185-row x 27-column objects table (the 16384 x 16384 tissue's cell count;
   the ten required columns, 16 float and one integer feature column) written by
   ``write_objects_table`` and by pandas ``to_csv(float_format=repr)``, which must give
   identical bytes. Pre-write checks are included in our time.
2. XLSX: the same table's first 78,400 rows written by ``write_objects_table`` and by
   openpyxl (write-only mode), and read back as cell text by maskbundle's reader
   (``read_xlsx_grid``: its compiled reader of our own workbooks), by the calamine route it
   takes for any other workbook, and by openpyxl (read-only mode).
3. A whole bundle with ``objects_format="xlsx"``: the synthetic tissue at
   ``--xlsx-size`` (4018 x 4018 gives ~78,400 cells + nuclei) with features, written by
   ``write_segmentation_bundle`` and checked by ``validate_bundle``.

Each measurement runs in its own subprocess (numba kernels warmed first: compilation is
cached on disk) and reports wall time and the peak RSS above its inputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mib, reset_peak_rss

DOI = "10.17504/protocols.io.example"


def make_table(n: int):  # type: ignore[no-untyped-def]
    import pandas as pd

    from maskbundle.bundle.objects import required_specs
    from maskbundle.model import ColumnSpec

    rng = np.random.default_rng(0)
    specs = required_specs("In-house")
    data = {
        "Object ID": np.arange(1, n + 1, dtype=np.int64),
        "Source file": np.full(n, "tissue.segmentations.ome.tiff", object),
        "Mask name": np.full(n, "cells", object),
        "Mask ID": np.full(n, "CL:0000000", object),
        "Protocol for mask creation (DOI)": np.full(n, DOI, object),
        "Annotation tool": np.full(n, "In-house", object),
        "Object type": np.full(n, "CL:0000000", object),
        "X": rng.integers(0, 16384, n),
        "Y": rng.integers(0, 16384, n),
        "Z": np.zeros(n, np.int64),
    }
    for k in range(16):
        specs.append(ColumnSpec(f"Feature {k}", "float", "morphology", "a float feature"))
        data[f"Feature {k}"] = rng.gamma(2.0, 50.0, n) * 0.5**k
    specs.append(ColumnSpec("Touches image border", "integer", "morphology", "0 or 1"))
    data["Touches image border"] = rng.integers(0, 2, n)
    return specs, pd.DataFrame(data)


def _pandas_tsv(path: Path, specs, frame) -> None:  # type: ignore[no-untyped-def]
    from maskbundle.io.tables import _header_rows

    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in _header_rows(specs):
            f.write("\t".join(row) + "\n")
        frame.to_csv(f, sep="\t", header=False, index=False, quoting=csv.QUOTE_NONE,
                     quotechar="\x00", lineterminator="\n",
                     float_format=lambda x: repr(float(x)))


def _openpyxl_xlsx(path: Path, specs, frame) -> None:  # type: ignore[no-untyped-def]
    from openpyxl import Workbook

    from maskbundle.io.tables import _header_rows

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("MAIN")
    for row in _header_rows(specs):
        ws.append([c if c != "" else None for c in row])
    for row in frame.itertuples(index=False):
        ws.append([v.item() if isinstance(v, np.generic) else v for v in row])
    wb.save(path)


def child(task: str, rows: int, work: Path, size: int) -> dict[str, float]:
    from maskbundle.io.readers import read_xlsx_grid
    from maskbundle.io.tables import write_objects_table

    out: dict[str, float] = {}
    if task in ("tsv-ours", "tsv-pandas", "xlsx-ours", "xlsx-openpyxl"):
        specs, frame = make_table(rows)
        write_objects_table(work / "warm.tsv", specs, frame.iloc[:50])
        write_objects_table(work / "warm.xlsx", specs, frame.iloc[:50])
        fn = {
            "tsv-ours": lambda p: write_objects_table(p, specs, frame),
            "tsv-pandas": lambda p: _pandas_tsv(p, specs, frame),
            "xlsx-ours": lambda p: write_objects_table(p, specs, frame),
            "xlsx-openpyxl": lambda p: _openpyxl_xlsx(p, specs, frame),
        }[task]
        base = reset_peak_rss()
        t0 = time.perf_counter()
        fn(work / f"{task}.{task.split('-')[0]}")
        out["seconds"] = time.perf_counter() - t0
        out["extra_peak_mib"] = peak_rss_mib() - base
    elif task in ("read-ours", "read-calamine", "read-openpyxl"):
        path = work / "xlsx-ours.xlsx"
        if task == "read-ours":
            read_xlsx_grid(work / "warm.xlsx")  # numba kernels loaded from the disk cache
        base = reset_peak_rss()
        t0 = time.perf_counter()
        if task == "read-ours":
            grid = read_xlsx_grid(path).rows
        elif task == "read-calamine":
            from maskbundle.io import readers

            readers._read_own = lambda p: None  # type: ignore[assignment]  # the other route
            grid = read_xlsx_grid(path).rows
        else:
            from openpyxl import load_workbook

            wb = load_workbook(path, read_only=True, data_only=True)
            grid = [["" if v is None else str(v) for v in r]
                    for r in wb.worksheets[0].iter_rows(values_only=True)]
            wb.close()
        out["seconds"] = time.perf_counter() - t0
        out["extra_peak_mib"] = peak_rss_mib() - base
        out["rows"] = len(grid)
    else:  # bundle
        from maskbundle import write_segmentation_bundle
        from maskbundle.bundle.validate import validate_bundle
        from maskbundle.synthetic import synthetic_tissue

        cells, nuclei = synthetic_tissue((size, size))
        write_segmentation_bundle(work / "warm", {"cells": cells[:256, :256]},
                                  physical_size=0.5, protocol_doi=DOI, objects_format="xlsx")
        validate_bundle(work / "warm")
        base = reset_peak_rss()
        t0 = time.perf_counter()
        write_segmentation_bundle(work / "bundle", {"cells": cells, "nuclei": nuclei},
                                  physical_size=0.5, protocol_doi=DOI, objects_format="xlsx")
        out["write_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = validate_bundle(work / "bundle")
        out["validate_seconds"] = time.perf_counter() - t0
        out["ok"] = float(report.ok)
        out["objects"] = float(cells.max()) + float(nuclei.max())
        out["extra_peak_mib"] = peak_rss_mib() - base
    return out


def _spawn(task: str, rows: int, work: Path, size: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--child", task, "--rows", str(rows),
                           "--work", str(work), "--xlsx-size", str(size)],
                          check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=652_185)
    ap.add_argument("--xlsx-rows", type=int, default=78_400)
    ap.add_argument("--xlsx-size", type=int, default=4018)
    ap.add_argument("--child")
    ap.add_argument("--work", type=Path)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.rows, a.work, a.xlsx_size)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        r = {t: _spawn(t, a.rows, work, a.xlsx_size) for t in ("tsv-ours", "tsv-pandas")}
        same = (work / "tsv-ours.tsv").read_bytes() == (work / "tsv-pandas.tsv").read_bytes()
        print(f"objects TSV, {a.rows} rows x 27 columns (identical bytes: {same})")
        for t, v in r.items():
            print(f"  {t:14s} {v['seconds']:7.2f} s  peak RSS above inputs "
                  f"{v['extra_peak_mib']:6.0f} MiB")
        print(f"  speed-up: {r['tsv-pandas']['seconds'] / r['tsv-ours']['seconds']:.1f}x")
        x = {t: _spawn(t, a.xlsx_rows, work, a.xlsx_size)
             for t in ("xlsx-ours", "xlsx-openpyxl", "read-ours", "read-calamine",
                       "read-openpyxl")}
        print(f"objects XLSX, {a.xlsx_rows} rows x 27 columns")
        for t, v in x.items():
            print(f"  {t:14s} {v['seconds']:7.2f} s  peak RSS above inputs "
                  f"{v['extra_peak_mib']:6.0f} MiB")
        print(f"  write speed-up: {x['xlsx-openpyxl']['seconds'] / x['xlsx-ours']['seconds']:.1f}x"
              f", read speed-up: {x['read-openpyxl']['seconds'] / x['read-ours']['seconds']:.1f}x"
              f" (calamine route {x['read-calamine']['seconds'] / x['read-ours']['seconds']:.1f}x)")
        b = _spawn("bundle", a.rows, work, a.xlsx_size)
        print(f"xlsx bundle {a.xlsx_size}x{a.xlsx_size} ({b['objects']:.0f} objects, features): "
              f"write {b['write_seconds']:.2f} s, validate {b['validate_seconds']:.2f} s "
              f"(ok={bool(b['ok'])}), peak RSS above inputs {b['extra_peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
