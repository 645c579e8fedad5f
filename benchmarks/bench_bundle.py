"""write_segmentation_bundle against the plain route, in one run.

    python benchmarks/bench_bundle.py [--size 4096]

Input: the deterministic synthetic tissue (4096 x 4096, ~40,700 cells and their nuclei).
Plain route (what notebooks do today): skimage relabel_sequential + regionprops
centroids + a tifffile SubIFD pyramid written by hand + pandas TSV. Each method runs in
its own subprocess; we report wall time, the tracemalloc peak (numpy heap) and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _memory import peak_rss_mib


def plain_route(out: Path, masks: dict[str, np.ndarray]) -> None:
    import pandas as pd
    import tifffile
    from skimage.measure import regionprops_table
    from skimage.segmentation import relabel_sequential

    out.mkdir(parents=True)
    relabelled = []
    for name, labels in masks.items():
        lab, _, _ = relabel_sequential(labels)
        props = regionprops_table(lab, properties=("label", "centroid"))
        pd.DataFrame(props).round().astype(int).to_csv(out / f"{name}-objects.tsv", sep="\t",
                                                       index=False)
        relabelled.append(lab.astype(np.uint16 if lab.max() < 65536 else np.uint32))
    stack = np.stack(relabelled)
    levels = 0
    h = min(stack.shape[-2:])
    while h > 512:
        h = (h + 1) // 2
        levels += 1
    opts = {"tile": (512, 512), "compression": "zlib", "photometric": "minisblack", "maxworkers": 2}
    with tifffile.TiffWriter(out / "plain.ome.tiff", bigtiff=False, ome=True) as tif:
        tif.write(stack, subifds=levels, metadata={"axes": "CYX", "PhysicalSizeX": 0.5,
                                                    "PhysicalSizeY": 0.5}, **opts)
        for k in range(1, levels + 1):
            tif.write(stack[..., :: 2**k, :: 2**k], subfiletype=1, **opts)


def ours(out: Path, masks: dict[str, np.ndarray]) -> None:
    from maskbundle import write_segmentation_bundle

    write_segmentation_bundle(out, masks, physical_size=(0.5, 0.5),
                              protocol_doi="10.17504/protocols.io.example")


def run_one(method: str, inputs: Path) -> dict[str, float]:
    cells, nuclei = np.load(inputs / "cells.npy"), np.load(inputs / "nuclei.npy")
    masks = {"cells": cells, "nuclei": nuclei}
    fn = {"plain": plain_route, "maskbundle": ours}[method]
    if method == "maskbundle":  # compile the numba kernels outside the timed region
        with tempfile.TemporaryDirectory() as warm:
            ours(Path(warm) / "w", {"cells": cells[:64, :64]})
    base_rss = peak_rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fn(Path(tmp) / "timed", masks)
        elapsed = time.perf_counter() - t0
        rss = peak_rss_mib()
        # a second, untimed run measures the numpy heap (tracemalloc slows allocation)
        tracemalloc.start()
        fn(Path(tmp) / "traced", masks)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"seconds": elapsed, "peak_mib": peak / 2**20,
            "rss_mib": rss,
            "rss_before_mib": base_rss, "objects": int(cells.max()),
            "label_mib": cells.nbytes / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--method", choices=["plain", "maskbundle"])
    ap.add_argument("--inputs", type=Path)
    a = ap.parse_args()
    if a.method:
        print(json.dumps(run_one(a.method, a.inputs)))
        return
    from maskbundle.synthetic import synthetic_tissue

    res = {}
    with tempfile.TemporaryDirectory() as inputs:
        cells, nuclei = synthetic_tissue((a.size, a.size))
        np.save(Path(inputs) / "cells.npy", cells)
        np.save(Path(inputs) / "nuclei.npy", nuclei)
        del cells, nuclei
        for method in ("plain", "maskbundle"):
            out = subprocess.run([sys.executable, __file__, "--method", method, "--inputs", inputs],
                                 check=True, capture_output=True, text=True).stdout
            res[method] = json.loads(out.strip().splitlines()[-1])
    p, m = res["plain"], res["maskbundle"]
    print(f"bundle {a.size}x{a.size}, {m['objects']} cells + nuclei "
          f"(one uint32 label image = {m['label_mib']:.0f} MiB)")
    for name, r in res.items():
        print(f"  {name:10s} {r['seconds']:7.2f} s  numpy peak {r['peak_mib']:7.0f} MiB  "
              f"process peak RSS {r['rss_mib']:7.0f} MiB (inputs {r['rss_before_mib']:.0f} MiB)")
    print(f"  speed-up maskbundle vs plain: {p['seconds'] / m['seconds']:.1f}x")


if __name__ == "__main__":
    main()
