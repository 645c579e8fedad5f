"""Reading a tiled label TIFF by bands: maskbundle's tile reader against tifffile.

    python benchmarks/bench_tiff_read.py [--size 8192] [--compression zlib]

Writes the synthetic tissue (``--size``^2, uint32) as a 512 x 512 tiled TIFF, then reads
it the way the streaming path does (full-width bands of 512 rows), each way in its own
subprocess:

- maskbundle: ``open_label_source(path).read(band)`` (io/tifftiles.py: ``os.pread`` of
  each stored tile, libdeflate/zstd decode, two threads);
- tifffile zarr: ``zarr.open_array(tifffile.imread(path, aszarr=True))[band]`` (what the
  source used before, and what dask/napari users do);
- tifffile whole: ``tifffile.imread(path)`` (the common approach: the whole image in memory).

Reported: wall time, Mpx/s, peak RSS (VmHWM) above the imports, and that every route
read the same pixels (sha256 of the bands).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAND = 512


def run(route: str, path: str) -> dict[str, float | str]:
    import numpy as np
    import tifffile
    from _memory import peak_rss_mib, reset_peak_rss

    from maskbundle.io.sources import open_label_source

    h = hashlib.sha256()
    if route == "maskbundle":
        src = open_label_source(path, name="cells")
        read = src.read
    elif route == "zarr":
        import zarr

        arr = zarr.open_array(tifffile.imread(path, aszarr=True), mode="r")

        def read(win):  # type: ignore[no-untyped-def]
            return np.asarray(arr[win])
    base = reset_peak_rss()
    t0 = time.perf_counter()
    if route == "whole":
        data = tifffile.imread(path)
        h.update(np.ascontiguousarray(data).data)
        shape = data.shape
    else:
        with tifffile.TiffFile(path) as tf:
            shape = tf.pages[0].shape
        for y in range(0, shape[0], BAND):
            h.update(np.ascontiguousarray(read((slice(y, min(shape[0], y + BAND)),
                                                slice(0, shape[1])))).data)
    dt = time.perf_counter() - t0
    return {"s": dt, "mpx_s": shape[0] * shape[1] / dt / 1e6,
            "peak_mib": peak_rss_mib() - base, "sha": h.hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--compression", default="zlib", choices=["zlib", "zstd", "none"])
    ap.add_argument("--route", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.route:
        print(json.dumps(run(a.route, a.path)))
        return
    import numpy as np
    import tifffile

    from maskbundle.synthetic import iter_synthetic_tissue

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cells.tif"
        image = np.zeros((a.size, a.size), np.uint32)
        for sl, cells, _ in iter_synthetic_tissue((a.size, a.size), seed=0, tile=2048):
            image[sl] = cells
        comp = None if a.compression == "none" else a.compression
        tifffile.imwrite(path, image, tile=(512, 512), compression=comp, maxworkers=2)
        del image
        res = {}
        for route in ("maskbundle", "zarr", "whole"):
            out = subprocess.run([sys.executable, __file__, "--route", route, "--path", str(path)],
                                 capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).parent)
            res[route] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"read {a.size}^2 uint32, tiled 512, {a.compression}, bands of {BAND} rows")
    for route, r in res.items():
        ratio = r["s"] / res["maskbundle"]["s"]
        print(f"  {route:10s} {r['s']:6.2f} s  {r['mpx_s']:7.1f} Mpx/s  peak +{r['peak_mib']:7.0f} MiB"
              f"  ({ratio:4.2f} x maskbundle's time)")
    same = len({r["sha"] for r in res.values()}) == 1
    print(f"  same pixels: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
