"""Benchmark: validate_bundle against the reference checker on a whole-slide-like bundle.

    PYTHONPATH=src python benchmarks/bench_validate.py [--size 4096]
    PYTHONPATH=src python benchmarks/bench_validate.py --xlsx [--xlsx-size 4018]
        [--baseline-src /path/to/older/checkout/src]

Writes a deterministic synthetic tissue (4096 x 4096: ~40,000 cells and their nuclei) with
write_segmentation_bundle, then validates it with maskbundle's validator and with the
common approach, ../shared/tools/check_bundle.py (reads whole pyramid levels, loops over
cells in Python), each in its own subprocess. Prints wall time, peak RSS (ru_maxrss of the
child) and the ratios.

``--xlsx`` instead writes the synthetic tissue (4018 x 4018: ~78,400 cells + nuclei)
with features and ``objects_format="xlsx"`` and times ``validate_bundle`` on it (issue 11:
<= 3 s on 2 idle cores), the import of maskbundle included and also shown apart, with the
CPU time of all threads (steadier than wall time on a shared machine); ``--baseline-src``
times the same validation with another checkout's ``src`` (e.g. the main branch) in the
same run and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKBUNDLE_SHARED", REPO.parent / "shared"))
CHECKER = SHARED / "tools" / "check_bundle.py"

CHILD = """
import json, resource, sys, time
t = time.perf_counter()
imported = 0.0
if sys.argv[1] == "maskbundle":
    from maskbundle.bundle.validate import validate_bundle
    imported = time.perf_counter() - t
    ok = validate_bundle(sys.argv[2]).ok
else:
    import contextlib, importlib.util, io
    spec = importlib.util.spec_from_file_location("check_bundle", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with contextlib.redirect_stdout(io.StringIO()):
        ok = mod.main([sys.argv[2], "--quiet"]) == 0
secs = time.perf_counter() - t
use = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ok": ok, "seconds": secs, "peak_mib": use.ru_maxrss / 1024,
                  "import_seconds": imported, "cpu_seconds": use.ru_utime + use.ru_stime}))
"""


def measure(method: str, dataset: Path, src: Path | None = None) -> dict[str, float]:
    env_path = str(src or REPO / "src")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(dataset)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


WRITE = """
import sys, time
from pathlib import Path
from maskbundle import write_segmentation_bundle
from maskbundle.synthetic import synthetic_tissue
size = int(sys.argv[2])
cells, nuclei = synthetic_tissue((size, size), cell_spacing=20.0, seed=0)
t = time.perf_counter()
write_segmentation_bundle(
    Path(sys.argv[1]), {"cells": cells, "nuclei": nuclei}, physical_size=(0.5, 0.5),
    mask_ids={"cells": "CL:0000000", "nuclei": "GO:0005634"},
    protocol_doi="10.17504/protocols.io.example",
)
n = len(set(cells.ravel().tolist())) - 1
print(f"bundle {size} x {size}, {n} cells + nuclei, written in {time.perf_counter() - t:.1f} s")
"""


WRITE_XLSX = """
import sys, time
from pathlib import Path
from maskbundle import write_segmentation_bundle
from maskbundle.synthetic import synthetic_tissue
size = int(sys.argv[2])
cells, nuclei = synthetic_tissue((size, size), cell_spacing=20.0, seed=0)
t = time.perf_counter()
write_segmentation_bundle(
    Path(sys.argv[1]), {"cells": cells, "nuclei": nuclei}, physical_size=(0.5, 0.5),
    features=True, objects_format="xlsx", protocol_doi="10.17504/protocols.io.example",
)
print(f"xlsx bundle {size} x {size}, {int(cells.max()) + int(nuclei.max())} objects (cells + "
      f"nuclei), features on, written in {time.perf_counter() - t:.1f} s")
"""


def xlsx_case(size: int, baseline: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        proc = subprocess.run(
            [sys.executable, "-c", WRITE_XLSX, str(root), str(size)],
            capture_output=True, text=True, check=True,
            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
        )
        print(proc.stdout.strip())
        measure("maskbundle", root)  # warm-up: numba caches, the OS file cache
        ours = measure("maskbundle", root)
        print(f"validate_bundle (this tree) : {_line(ours)}")
        if baseline is None:
            return
        measure("maskbundle", root, baseline)
        old = measure("maskbundle", root, baseline)
        print(f"validate_bundle (baseline)  : {_line(old)}  ({baseline})")
        print(f"ratio (baseline / this tree): {old['seconds'] / ours['seconds']:.2f}x, "
              f"without the imports {_run(old) / _run(ours):.2f}x, CPU "
              f"{old['cpu_seconds'] / ours['cpu_seconds']:.2f}x")


def _run(m: dict[str, float]) -> float:
    return m["seconds"] - m["import_seconds"]


def _line(m: dict[str, float]) -> str:
    """Wall time (the imports' share apart), CPU time of all threads, peak RSS."""
    return (f"{m['seconds']:6.2f} s (imports {m['import_seconds']:.2f} s, validation "
            f"{_run(m):.2f} s), CPU {m['cpu_seconds']:.2f} s, peak {m['peak_mib']:.0f} MiB, "
            f"ok={m['ok']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--xlsx", action="store_true", help="the XLSX objects-table case")
    ap.add_argument("--xlsx-size", type=int, default=4018)
    ap.add_argument("--baseline-src", type=Path, default=None)
    args = ap.parse_args()
    if args.xlsx:
        xlsx_case(args.xlsx_size, args.baseline_src)
        return
    # The bundle is written in a child too: Linux children inherit the parent's ru_maxrss
    # high-water mark at fork, so this process must stay small.
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        proc = subprocess.run(
            [sys.executable, "-c", WRITE, str(root), str(args.size)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
        )
        print(proc.stdout.strip())
        ours = measure("maskbundle", root)
        print(
            f"maskbundle validate_bundle : {ours['seconds']:7.2f} s  peak {ours['peak_mib']:7.0f}"
            f" MiB  ok={ours['ok']}"
        )
        if not CHECKER.is_file():
            print("reference checker ../shared/tools/check_bundle.py absent: no comparison")
            return
        ref = measure(str(CHECKER), root)
        print(
            f"reference check_bundle.py  : {ref['seconds']:7.2f} s  peak {ref['peak_mib']:7.0f}"
            f" MiB  ok={ref['ok']}"
        )
        print(
            f"ratio (reference / ours)   : time {ref['seconds'] / ours['seconds']:.2f}x, "
            f"peak memory {ref['peak_mib'] / ours['peak_mib']:.2f}x"
        )


if __name__ == "__main__":
    main()
