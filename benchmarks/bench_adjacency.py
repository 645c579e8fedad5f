"""Adjacency files against the common approaches, in one run.

    python benchmarks/bench_adjacency.py [--size 4096] [--subset 100] [--repeat 3] [--large]

Input: the deterministic synthetic tissue (4096 x 4096, ~40,700 cells; ``--large``:
16384 x 16384, ~650,000 cells). Each method runs in its own subprocess on the same
labels (saved once as .npy):

- maskbundle: ``linkage_adjacency`` + ``centroid_adjacency`` (Delaunay, default cut) and
  both CSVs written.
- steinbock-style border distances (``measure neighbors --type borders``): per object, a
  full-image comparison to find it, a crop with a margin, a distance transform of the crop
  and the minimum distance per neighbour. Run on ``--subset`` objects and extrapolated
  linearly to all objects.
- dense centroid matrix (steinbock ``--type centroids``, squidpy-style radius graphs):
  regionprops centroids, then ``pdist``/``squareform`` N x N. Run on a subset of objects
  (N x N for 40,000 objects is 12.8 GB) and extrapolated quadratically.

Memory: working memory is the rise of the process's resident set above what it held once
the labels were loaded (VmHWM after resetting it through /proc/self/clear_refs; this sees
numba's and Qhull's allocations, which tracemalloc does not).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mib, reset_peak_rss


def worker_ours(labels: np.ndarray, out: Path, args: argparse.Namespace) -> dict[str, float]:
    from maskbundle.bundle.adjacency import mask_adjacency
    from maskbundle.io.adjacency_csv import write_adjacency_csv
    from maskbundle.measure.adjacency import centroid_adjacency, linkage_adjacency
    from maskbundle.synthetic import synthetic_tissue

    small, _ = synthetic_tissue((128, 128))  # compile / load the numba kernels first
    mask_adjacency(small, physical_size=0.5, kinds=("centroid", "linkage"))
    base = reset_peak_rss()
    best: dict[str, float] = {}

    def keep(key: str, value: float) -> None:
        best[key] = min(best.get(key, math.inf), value)

    for _ in range(args.repeat):  # the machine is shared: report the best of N runs
        c0 = time.process_time()
        t0 = time.perf_counter()
        link = linkage_adjacency(labels, physical_size=0.5)
        t1 = time.perf_counter()
        cent = centroid_adjacency(labels, physical_size=0.5)
        t2 = time.perf_counter()
        write_adjacency_csv(out / "cells-linkage-adjacency.csv", link)
        write_adjacency_csv(out / "cells-centroid-adjacency.csv", cent)
        t3 = time.perf_counter()
        keep("cpu_s", time.process_time() - c0)
        keep("linkage_s", t1 - t0)
        keep("centroid_s", t2 - t1)
        keep("write_s", t3 - t2)
        keep("total_s", t3 - t0)
        # what write_segmentation_bundle / add_adjacency run: both graphs side by side
        t4 = time.perf_counter()
        frames = mask_adjacency(labels, physical_size=0.5, kinds=("centroid", "linkage"))
        write_adjacency_csv(out / "cells-linkage-adjacency.csv", frames["linkage"])
        write_adjacency_csv(out / "cells-centroid-adjacency.csv", frames["centroid"])
        keep("threaded_total_s", time.perf_counter() - t4)
    best["linkage_edges"] = len(link)
    best["centroid_edges"] = len(cent)
    best["work_mib"] = peak_rss_mib() - base
    return best


def worker_steinbock(labels: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    from scipy.ndimage import distance_transform_edt

    n = int(labels.max())
    ids = np.linspace(1, n, args.subset).astype(np.int64)
    dmax = 1.0  # touching objects (pixel-centre distance 1)
    margin = int(np.ceil(dmax))
    base = reset_peak_rss()
    t0 = time.perf_counter()
    edges = 0
    for obj in ids:
        ys, xs = np.nonzero(labels == obj)  # what steinbock does per object: a full-image scan
        y0, y1 = max(0, ys.min() - margin), min(labels.shape[0], ys.max() + margin + 1)
        x0, x1 = max(0, xs.min() - margin), min(labels.shape[1], xs.max() + margin + 1)
        patch = labels[y0:y1, x0:x1]
        dist = distance_transform_edt(patch != obj)
        for nb in np.unique(patch):
            if nb and nb != obj and dist[patch == nb].min() <= dmax:
                edges += 1
    dt = time.perf_counter() - t0
    return {
        "subset": len(ids),
        "subset_s": dt,
        "extrapolated_s": dt * n / len(ids),
        "work_mib": peak_rss_mib() - base,
        "directed_edges_in_subset": edges,
    }


def worker_dense(labels: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    from scipy.spatial.distance import pdist, squareform
    from skimage.measure import regionprops

    base = reset_peak_rss()
    t0 = time.perf_counter()
    cents = np.array([p.centroid for p in regionprops(labels)]) * 0.5
    t1 = time.perf_counter()
    n = cents.shape[0]
    m = min(n, args.dense_subset)
    sub = cents[np.linspace(0, n - 1, m).astype(np.int64)]
    d = squareform(pdist(sub))
    np.fill_diagonal(d, np.inf)
    i, _ = np.nonzero(d <= 15.0)
    t2 = time.perf_counter()
    return {
        "regionprops_s": t1 - t0,
        "subset": m,
        "subset_matrix_s": t2 - t1,
        "extrapolated_s": (t1 - t0) + (t2 - t1) * (n / m) ** 2,
        "matrix_gib_full": n * n * 8 * 1.5 / 2**30,  # square + condensed copies
        "work_mib": peak_rss_mib() - base,
        "pairs_in_subset": int(i.size),
    }


def run_worker(args: argparse.Namespace) -> None:
    labels = np.load(args.labels)
    out = Path(args.out)
    if args.worker == "maskbundle":
        res = worker_ours(labels, out, args)
    elif args.worker == "steinbock":
        res = worker_steinbock(labels, args)
    else:
        res = worker_dense(labels, args)
    print(json.dumps(res))


def spawn(method: str, npy: Path, out: Path, args: argparse.Namespace) -> dict[str, float]:
    cmd = [
        sys.executable, __file__, "--worker", method, "--labels", str(npy), "--out", str(out),
        "--subset", str(args.subset), "--dense-subset", str(args.dense_subset),
        "--repeat", str(args.repeat),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--large", action="store_true", help="16384 x 16384 (~650k cells)")
    p.add_argument("--subset", type=int, default=100, help="objects for the per-object method")
    p.add_argument("--dense-subset", type=int, default=8000)
    p.add_argument("--repeat", type=int, default=3, help="runs of ours; the best is reported")
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--labels", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        run_worker(args)
        return

    from maskbundle.synthetic import synthetic_tissue

    size = 16384 if args.large else args.size
    t = time.perf_counter()
    cells, _ = synthetic_tissue((size, size))
    n = int(cells.max())
    print(f"synthetic tissue {size} x {size}: {n} cells, {cells.nbytes / 2**20:.0f} MiB "
          f"({cells.dtype}); generated in {time.perf_counter() - t:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "cells.npy"
        np.save(npy, cells)
        label_mib = cells.nbytes / 2**20
        del cells
        ours = spawn("maskbundle", npy, Path(tmp), args)
        print(
            f"maskbundle: linkage {ours['linkage_s']:.3f} s ({ours['linkage_edges']:.0f} edges), "
            f"centroid {ours['centroid_s']:.3f} s ({ours['centroid_edges']:.0f} edges), "
            f"CSV writes {ours['write_s']:.3f} s; both files {ours['total_s']:.3f} s "
            f"(CPU {ours['cpu_s']:.3f} s; {ours['threaded_total_s']:.3f} s with the two graphs "
            "in two threads, as the bundle writer runs them); "
            f"working memory {ours['work_mib']:.0f} MiB = "
            f"{ours['work_mib'] / label_mib:.2f} x the label image"
        )
        if args.skip_baselines:
            return
        st = spawn("steinbock", npy, Path(tmp), args)
        print(
            f"steinbock-style per-object borders: {st['subset_s']:.2f} s for "
            f"{st['subset']:.0f} objects -> {st['extrapolated_s']:.0f} s for {n} "
            f"(working memory {st['work_mib']:.0f} MiB)"
        )
        dn = spawn("dense", npy, Path(tmp), args)
        print(
            f"dense centroid matrix: regionprops {dn['regionprops_s']:.2f} s, N x N on "
            f"{dn['subset']:.0f} objects {dn['subset_matrix_s']:.2f} s -> "
            f"{dn['extrapolated_s']:.0f} s and {dn['matrix_gib_full']:.1f} GiB for {n} "
            f"(working memory on the subset {dn['work_mib']:.0f} MiB)"
        )
        print(
            f"ratios: linkage {st['extrapolated_s'] / ours['linkage_s']:.0f}x faster than "
            f"per-object borders; centroid {dn['extrapolated_s'] / ours['centroid_s']:.0f}x "
            f"faster than the dense matrix; both files vs both baselines "
            f"{(st['extrapolated_s'] + dn['extrapolated_s']) / ours['total_s']:.0f}x"
        )


if __name__ == "__main__":
    main()
