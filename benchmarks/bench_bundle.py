"""write_segmentation_bundle against a scikit-image route writing the same content.

    python benchmarks/bench_bundle.py [--size 4096] [--markers 8]
    python benchmarks/bench_bundle.py --large        # also 16384 x 16384, one mask (slow)

Input: the deterministic synthetic tissue (4096 x 4096: ~40,700 cells + nuclei) and a
deterministic random uint16 marker image (``--markers`` channels). Both routes write a
two-mask bundle with the same content: relabelled masks in a tiled zlib OME-TIFF pyramid,
objects tables with the morphology and mean-intensity columns, centroid (Delaunay) and
touching-pair adjacency CSVs.

- maskbundle: ``write_segmentation_bundle(features=True, adjacency=("centroid",
  "linkage"))``; the share of each stage comes from a second, profiled run.
- skimage: ``relabel_sequential``, ``regionprops_table`` (same morphology, ``intensity_mean``),
  scipy ``Delaunay`` edges, touching pairs by array shifts, a tifffile SubIFD pyramid and
  pandas ``to_csv``; each stage timed.

Each route runs in its own subprocess after loading its inputs (numba kernels are warmed
on a small crop first: compilation is cached on disk). Reported: wall time, the share of
each stage, and the peak RSS above the loaded inputs (VmHWM after ``clear_refs``).
``--large`` adds the 16384 x 16384 single-mask case (one marker, maskbundle only; the
skimage route would take minutes).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mib, reset_peak_rss

DOI = "10.17504/protocols.io.example"
MORPH = ("label", "centroid", "area", "perimeter", "area_convex", "solidity", "extent",
         "eccentricity", "orientation", "axis_major_length", "axis_minor_length",
         "equivalent_diameter_area", "bbox")
# our stage -> functions whose cumulative profile time is that stage (linkage runs in a
# thread beside the centroid graph, so the two share one stage; the OME-TIFF is written
# on a thread beside the table writes, so its share is the time the run waits for it)
STAGES = {
    "relabel + checks": ("relabel_mask",),
    "features": ("compute_features",),
    "objects table": ("write_objects_table",),
    "adjacency (both)": ("mask_adjacency",),
    "adjacency CSV": ("write_adjacency_csv",),
    "OME-TIFF": ("wait_for_label_image",),
}


def skimage_route(out: Path, masks: dict[str, np.ndarray], inten: np.ndarray | None,
                  times: dict[str, float]) -> None:
    import pandas as pd
    import tifffile
    from scipy.spatial import Delaunay
    from skimage.measure import regionprops_table
    from skimage.segmentation import relabel_sequential

    def tick(stage: str, t0: float) -> float:
        t = time.perf_counter()
        times[stage] = times.get(stage, 0.0) + t - t0
        return t

    out.mkdir(parents=True)
    relabelled = []
    for name, labels in masks.items():
        t = time.perf_counter()
        lab, _, _ = relabel_sequential(labels)
        t = tick("relabel", t)
        props = MORPH + (("intensity_mean",) if inten is not None else ())
        table = regionprops_table(
            lab, intensity_image=None if inten is None else np.moveaxis(inten, 0, -1),
            properties=props, spacing=(0.5, 0.5))
        t = tick("features", t)
        frame = pd.DataFrame(table)
        frame.insert(1, "Mask name", name)
        frame.to_csv(out / f"{name}-objects.tsv", sep="\t", index=False,
                     float_format=lambda x: repr(float(x)))
        t = tick("objects table", t)
        pts = np.stack([table["centroid-1"], table["centroid-0"]], -1)
        tri = Delaunay(pts)
        a = np.concatenate([tri.simplices[:, [0, 1]], tri.simplices[:, [1, 2]],
                            tri.simplices[:, [0, 2]]])
        a = np.unique(np.sort(a, axis=1), axis=0)
        dist = np.linalg.norm(pts[a[:, 0]] - pts[a[:, 1]], axis=1)
        t = tick("centroid adjacency", t)
        pairs = []
        for sa, sb in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                       ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
            u, v = lab[sa].ravel(), lab[sb].ravel()
            keep = (u != v) & (u > 0) & (v > 0)
            pairs.append(np.stack([np.minimum(u[keep], v[keep]),
                                   np.maximum(u[keep], v[keep])], -1))
        touch = np.unique(np.concatenate(pairs), axis=0)
        t = tick("linkage adjacency", t)
        pd.DataFrame({"Object ID 1": a[:, 0] + 1, "Object ID 2": a[:, 1] + 1,
                      "Distance (micrometer)": dist}).to_csv(
            out / f"{name}-centroid-adjacency.csv", index=False)
        pd.DataFrame({"Object ID 1": touch[:, 0], "Object ID 2": touch[:, 1],
                      "Distance (micrometer)": 0.0}).to_csv(
            out / f"{name}-linkage-adjacency.csv", index=False)
        t = tick("adjacency CSV", t)
        relabelled.append(lab.astype(np.uint16 if lab.max() < 65536 else np.uint32))
    t = time.perf_counter()
    stack = np.stack(relabelled)
    levels = 0
    h = min(stack.shape[-2:])
    while h > 512:
        h = (h + 1) // 2
        levels += 1
    opts = {"tile": (512, 512), "compression": "zlib", "photometric": "minisblack",
            "maxworkers": 2}
    with tifffile.TiffWriter(out / "plain.ome.tiff", bigtiff=False, ome=True) as tif:
        tif.write(stack, subifds=levels, metadata={"axes": "CYX", "PhysicalSizeX": 0.5,
                                                    "PhysicalSizeY": 0.5}, **opts)
        for k in range(1, levels + 1):
            tif.write(stack[..., :: 2**k, :: 2**k], subfiletype=1, **opts)
    tick("OME-TIFF", t)


def ours(out: Path, masks: dict[str, np.ndarray], inten: np.ndarray | None) -> None:
    from maskbundle import write_segmentation_bundle

    write_segmentation_bundle(out, masks, physical_size=(0.5, 0.5), protocol_doi=DOI,
                              intensity_image=inten, features=True,
                              adjacency=("centroid", "linkage"))


def _profile_shares(out: Path, masks: dict[str, np.ndarray],
                    inten: np.ndarray | None) -> dict[str, float]:
    prof = cProfile.Profile()
    prof.enable()
    t0 = time.perf_counter()
    ours(out, masks, inten)
    total = time.perf_counter() - t0
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    cum: dict[str, float] = {}
    for (_file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.items():
        cum[func] = max(cum.get(func, 0.0), ct)
    shares = {stage: sum(cum.get(f, 0.0) for f in funcs) for stage, funcs in STAGES.items()}
    shares["other"] = max(total - sum(shares.values()), 0.0)
    return shares


def run_one(method: str, inputs: Path) -> dict[str, object]:
    masks = {name: np.load(inputs / f"{name}.npy") for name in ("cells", "nuclei")
             if (inputs / f"{name}.npy").exists()}
    inten = np.load(inputs / "intensity.npy") if (inputs / "intensity.npy").exists() else None
    n_objects = sum(int(m.max()) for m in masks.values())
    stages: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if method == "maskbundle":  # compile (or load the cached) kernels outside the timing
            crop = {k: v[:256, :256] for k, v in masks.items()}
            ours(Path(tmp) / "warm", crop, None if inten is None else inten[:, :256, :256])
        base = reset_peak_rss()
        t0 = time.perf_counter()
        if method == "maskbundle":
            ours(Path(tmp) / "timed", masks, inten)
        else:
            skimage_route(Path(tmp) / "timed", masks, inten, stages)
        elapsed = time.perf_counter() - t0
        peak = peak_rss_mib() - base
        if method == "maskbundle":
            stages = _profile_shares(Path(tmp) / "profiled", masks, inten)
    return {"seconds": elapsed, "extra_peak_mib": peak, "objects": n_objects,
            "stages": stages}


def _report(title: str, res: dict[str, dict[str, object]]) -> None:
    print(title)
    for name, r in res.items():
        secs = float(r["seconds"])  # type: ignore[arg-type]
        print(f"  {name:10s} {secs:7.2f} s  peak RSS above inputs "
              f"{float(r['extra_peak_mib']):6.0f} MiB  ({r['objects']} objects)")  # type: ignore[arg-type]
        stages: dict[str, float] = r["stages"]  # type: ignore[assignment]
        total = sum(stages.values()) or 1.0
        for stage, t in sorted(stages.items(), key=lambda kv: -kv[1]):
            print(f"      {stage:20s} {t:7.2f} s  {100 * t / total:5.1f} %")
    if "skimage" in res and "maskbundle" in res:
        ratio = float(res["skimage"]["seconds"]) / float(res["maskbundle"]["seconds"])  # type: ignore[arg-type]
        print(f"  maskbundle vs skimage route (same content): {ratio:.1f}x")


def _case(size: int, markers: int, masks: tuple[str, ...], methods: tuple[str, ...]
          ) -> dict[str, dict[str, object]]:
    from maskbundle.synthetic import synthetic_tissue

    res = {}
    with tempfile.TemporaryDirectory() as inputs:
        cells, nuclei = synthetic_tissue((size, size))
        for name, lab in (("cells", cells), ("nuclei", nuclei)):
            if name in masks:
                np.save(Path(inputs) / f"{name}.npy", lab)
        del cells, nuclei
        if markers:
            rng = np.random.default_rng(1)
            np.save(Path(inputs) / "intensity.npy",
                    rng.integers(0, 4096, (markers, size, size), dtype=np.uint16))
        for method in methods:
            proc = subprocess.run(
                [sys.executable, __file__, "--method", method, "--inputs", inputs],
                check=True, capture_output=True, text=True)
            res[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--markers", type=int, default=8)
    ap.add_argument("--large", action="store_true",
                    help="also the 16384 x 16384 single-mask case (maskbundle only)")
    ap.add_argument("--large-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", choices=["skimage", "maskbundle"])
    ap.add_argument("--inputs", type=Path)
    a = ap.parse_args()
    if a.method:
        print(json.dumps(run_one(a.method, a.inputs)))
        return
    if not a.large_only:
        res = _case(a.size, a.markers, ("cells", "nuclei"), ("skimage", "maskbundle"))
        _report(f"two-mask bundle {a.size}x{a.size}, {a.markers} markers, features, "
                "centroid + linkage adjacency", res)
    if a.large or a.large_only:
        res = _case(16384, 1, ("cells",), ("maskbundle",))
        _report("single-mask bundle 16384x16384, 1 marker, features, centroid + linkage "
                "adjacency", res)


if __name__ == "__main__":
    main()
