"""Benchmark: reading a bundle back and exporting it, against the common eager approach.

    PYTHONPATH=src python benchmarks/bench_export.py [--size 4096]

Writes a deterministic synthetic tissue (4096 x 4096: ~40,000 cells and their nuclei, two
marker channels), then, each in its own subprocess after its imports (wall time, peak
RSS above the RSS after the imports):

- ``lazy tile``: ``read_bundle(validate=False)`` and one 512 x 512 window of level 0
  (tables are read on first access, so not here);
- ``eager tile``: the common approach, ``tifffile.imread`` of the whole OME-TIFF, then the
  same window;
- ``tables``: ``read_bundle(validate=False)`` objects tables (typed by the Type row) against
  ``pandas.read_csv(skiprows=10)`` per table (untyped header, no checks);
- ``to_mudata``: ``read_bundle(validate=False).to_mudata()`` and ``write_h5mu``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# imports first (maskbundle pulls in numba, scikit-image ...); then the peak is reset and
# only the operation is timed and measured (VmHWM above the RSS after the imports)
CHILD = """
import glob, json, sys, time, warnings
from pathlib import Path
import mudata, pandas as pd, tifffile
from maskbundle import read_bundle
warnings.simplefilter("ignore")
mudata.set_options(pull_on_update=False)

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")

Path("/proc/self/clear_refs").write_text("5")
base = status("VmRSS")
t = time.perf_counter()
kind, ds = sys.argv[1], sys.argv[2]
if kind == "lazy tile":
    with read_bundle(ds, validate=False) as b:
        window = b.masks["cells"][1024:1536, 1024:1536]
elif kind == "eager tile":
    (tiff,) = glob.glob(ds + "/derived/segmentation_masks/*.ome.tiff")
    window = tifffile.imread(tiff)[0, 1024:1536, 1024:1536]
elif kind == "tables":
    with read_bundle(ds, validate=False) as b:
        n = sum(len(t) for t in b.objects.values())
elif kind == "pandas tables":
    n = sum(len(pd.read_csv(p, sep="\\t", skiprows=10, header=None))
            for p in glob.glob(ds + "/derived/segmentation_masks/*-objects.tsv"))
else:
    with read_bundle(ds, validate=False) as b:
        m = b.to_mudata()
    m.write_h5mu(sys.argv[3])
secs = time.perf_counter() - t
print(json.dumps({"seconds": secs, "peak_mib": status("VmHWM") - base}))
"""

WRITE = """
import sys, warnings
import numpy as np
from maskbundle import write_segmentation_bundle
from maskbundle.synthetic import synthetic_tissue
warnings.simplefilter("ignore")
size = int(sys.argv[2])
cells, nuclei = synthetic_tissue((size, size), cell_spacing=18.0, seed=1)
inten = np.random.default_rng(0).integers(0, 4096, (2, size, size), dtype=np.uint16)
write_segmentation_bundle(sys.argv[1], {"cells": cells, "nuclei": nuclei}, physical_size=0.5,
                          protocol_doi="10.17504/protocols.io.example", intensity_image=inten,
                          marker_names=["DAPI", "CD3e"])
print(int(cells.max()))
"""


def child(code: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    return proc.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "ds"
        n = child(WRITE, str(ds), str(args.size))
        print(f"{args.size} x {args.size}, {n} cells (+ nuclei), 2 markers")
        results = {}
        for kind in ("lazy tile", "eager tile", "tables", "pandas tables", "to_mudata"):
            results[kind] = json.loads(child(CHILD, kind, str(ds), str(Path(tmp) / "o.h5mu")))
            r = results[kind]
            print(f"{kind:14} {r['seconds']:7.2f} s  peak +{r['peak_mib']:6.0f} MiB")
        lazy, eager = results["lazy tile"], results["eager tile"]
        print(f"one 512 x 512 window: lazy {lazy['seconds']:.2f} s / +{lazy['peak_mib']:.0f} MiB, "
              f"whole image {eager['seconds']:.2f} s / +{eager['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
