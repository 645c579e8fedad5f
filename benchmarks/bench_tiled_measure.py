"""Pass 1 by tiles (measure.tiled) against the in-memory route, same mask, same run.

    python benchmarks/bench_tiled_measure.py [--sizes 8192 16384] [--memory-limit 512]
                                             [--markers 0] [--workers 2]

Input: the deterministic synthetic tissue (``cell_spacing`` 20: ~10,000 cells per
2048^2), written once as an uncompressed zarr array (512 x 512 chunks) so the tiled run
reads it lazily, and as .npy for the in-memory route. Each method runs in its own
subprocess; after imports and a numba warm-up the child resets its peak-RSS counter and
reports the peak RSS above that point ("extra peak"), so the in-memory figure excludes
its loaded input (the tiled run never loads the whole input).

- tiled: ``measure_tiled`` from the zarr array (relabel map, features with morphology,
  centroids, linkage adjacency), tile size from ``--memory-limit`` MiB;
- in-memory: ``relabel`` + ``compute_features`` + ``object_centroids`` +
  ``linkage_adjacency`` on the loaded array.

The parent checks that both gave the same values and prints Mpx/s, extra peak RSS,
objects, bytes per object, and the time ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {bench!r})
from _memory import reset_peak_rss, peak_rss_mib
method, npy, zpath, limit, markers, workers = {args!r}
from maskbundle.synthetic import synthetic_tissue
from maskbundle.measure.tiled import measure_tiled
from maskbundle.labels.relabel import relabel
from maskbundle.measure.features import compute_features
from maskbundle.measure.centroids import object_centroids
from maskbundle.measure.adjacency import linkage_adjacency
small, _ = synthetic_tissue((700, 700))
inten_small = np.zeros((markers, 700, 700), np.uint16) if markers else None
measure_tiled(small, physical_size=0.5, tile=512, intensity=inten_small)
rel, orig = relabel(small)
compute_features(rel, physical_size=0.5, intensity_image=inten_small)
linkage_adjacency(rel, physical_size=0.5)
if method == "tiled":
    import zarr
    src = zarr.open_array(zpath, mode="r")
    inten = None
    if markers:
        inten = zarr.open_array(zpath + ".int", mode="r")
    base = reset_peak_rss()
    t = time.perf_counter()
    r = measure_tiled(src, physical_size=0.5, intensity=inten, memory_limit=limit << 20,
                      workers=workers)
    dt = time.perf_counter() - t
    out = dict(seconds=dt, extra_mib=peak_rss_mib() - base, n=int(r.counts.size),
               tile=r.plan.tile[0], crossing=int(r.crossing.size),
               check=float(np.nansum(r.features.frame.to_numpy()[:, :6])),
               edges=len(r.linkage))
else:
    lab = np.load(npy)
    inten = np.load(npy + ".int.npy") if markers else None
    base = reset_peak_rss()
    t = time.perf_counter()
    rel, orig = relabel(lab)
    ft = compute_features(rel, physical_size=0.5, intensity_image=inten)
    counts, cents = object_centroids(rel, orig.size)
    link = linkage_adjacency(rel, physical_size=0.5)
    dt = time.perf_counter() - t
    out = dict(seconds=dt, extra_mib=peak_rss_mib() - base, n=int(orig.size),
               check=float(np.nansum(ft.frame.to_numpy()[:, :6])), edges=len(link))
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--memory-limit", type=int, default=512, help="MiB for the tiles")
    ap.add_argument("--markers", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import zarr

    from maskbundle.synthetic import synthetic_tissue

    bench = str(Path(__file__).resolve().parent)
    print(f"{'size':>7} {'method':>9} {'objects':>9} {'s':>7} {'Mpx/s':>7} "
          f"{'extra peak MiB':>15} {'B/object':>9}  notes")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            t0 = time.perf_counter()
            cells, _ = synthetic_tissue((size, size))
            npy = str(Path(tmp) / f"cells{size}.npy")
            zpath = str(Path(tmp) / f"cells{size}.zarr")
            np.save(npy, cells)
            z = zarr.create_array(store=zpath, shape=cells.shape, chunks=(512, 512),
                                  dtype=cells.dtype, compressors=None)
            z[:] = cells
            if args.markers:
                rng = np.random.default_rng(0)
                inten = rng.integers(0, 4000, (args.markers, size, size), dtype=np.uint16)
                np.save(npy + ".int.npy", inten)
                zi = zarr.create_array(store=zpath + ".int", shape=inten.shape,
                                       chunks=(args.markers, 512, 512), dtype=inten.dtype,
                                       compressors=None)
                zi[:] = inten
                del inten
            del cells
            print(f"# {size}^2 generated and written in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            res = {}
            for method in ("tiled", "in-memory"):
                code = CHILD.format(bench=bench, args=(method, npy, zpath, args.memory_limit,
                                                       args.markers, args.workers))
                out = subprocess.run([sys.executable, "-c", code], check=True,
                                     capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                res[method] = r
                mpx = size * size / r["seconds"] / 1e6
                per = r["extra_mib"] * 2**20 / max(r["n"], 1)
                note = (f"tile {r['tile']}, {r['crossing']} objects crossing tiles"
                        if method == "tiled" else "input loaded before the peak reset")
                print(f"{size:>7} {method:>9} {r['n']:>9} {r['seconds']:>7.2f} {mpx:>7.1f} "
                      f"{r['extra_mib']:>15.0f} {per:>9.0f}  {note}", flush=True)
            a, b = res["tiled"], res["in-memory"]
            same = a["n"] == b["n"] and a["check"] == b["check"] and a["edges"] == b["edges"]
            print(f"# {size}^2: tiled / in-memory time ratio {a['seconds'] / b['seconds']:.2f}, "
                  f"same results: {same}", flush=True)
            if not same:
                raise SystemExit("tiled and in-memory results differ")


if __name__ == "__main__":
    main()
