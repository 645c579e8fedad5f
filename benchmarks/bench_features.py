"""compute_features against skimage.measure.regionprops_table, same columns, one run.

    python benchmarks/bench_features.py [--size 4096] [--markers 8] [--repeat 3]
    python benchmarks/bench_features.py --large      # 16384 x 16384, ours only

Input: the deterministic synthetic tissue (4096 x 4096 gives ~40,700 cells), relabelled
to 1..N as the bundle writer does, and a deterministic random uint16 intensity image of
``--markers`` channels. Two workloads:

- morphology: centroid, area, perimeter, convex area, solidity, extent, eccentricity,
  orientation, major / minor axis, equivalent diameter, bounding box;
- intensities: the mean of every marker per object;
- morphology-no-hull: regionprops without the convex-hull columns (area_convex, solidity,
  its slowest), ours still computing everything: a conservative ratio.

Every (method, workload) runs in its own subprocess on inputs loaded from .npy files.
After loading and warming up (numba compilation is not timed; it is cached on disk), the
child resets its peak-RSS counter (``/proc/self/clear_refs``) and reports the peak RSS
above the loaded inputs ("extra peak"). Times are the best of ``--repeat`` runs. The
parent then checks that both methods produced the same values.
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

MORPH_PROPS = (
    "label", "centroid", "area", "perimeter", "area_convex", "solidity", "extent",
    "eccentricity", "orientation", "axis_major_length", "axis_minor_length",
    "equivalent_diameter_area", "bbox",
)
# our column -> regionprops_table key (pixel size 1, so units agree)
MORPH_PAIRS = {
    "Centroid Y": "centroid-0",
    "Centroid X": "centroid-1",
    "Area (square micrometer)": "area",
    "Perimeter (micrometer)": "perimeter",
    "Convex area (square micrometer)": "area_convex",
    "Solidity": "solidity",
    "Extent": "extent",
    "Eccentricity": "eccentricity",
    "Major axis length (micrometer)": "axis_major_length",
    "Minor axis length (micrometer)": "axis_minor_length",
    "Equivalent diameter (micrometer)": "equivalent_diameter_area",
    "Bounding box Y min": "bbox-0",
    "Bounding box X min": "bbox-1",
}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def child(method: str, workload: str, inputs: Path, out: Path, repeat: int) -> None:
    labels = np.load(inputs / "labels.npy")
    inten = np.load(inputs / "intensity.npy") if workload == "intensities" else None
    if method == "ours":
        from maskbundle.measure.features import compute_features

        def run() -> dict[str, np.ndarray]:
            ft = compute_features(labels, physical_size=1.0, intensity_image=inten,
                                  morphology=workload.startswith("morphology"))
            return {c: ft.frame[c].to_numpy() for c in ft.frame.columns}

        # warm up: compile (or load the cached) kernels on a small crop
        crop = np.load(inputs / "warm.npy")
        compute_features(crop, physical_size=1.0,
                         intensity_image=None if inten is None else inten[:, :crop.shape[0],
                                                                          :crop.shape[1]])
    else:
        from skimage.measure import regionprops_table

        def run() -> dict[str, np.ndarray]:
            if workload == "morphology":
                return regionprops_table(labels, properties=MORPH_PROPS)  # type: ignore[no-any-return]
            if workload == "morphology-no-hull":
                props = tuple(p for p in MORPH_PROPS if p not in ("area_convex", "solidity"))
                return regionprops_table(labels, properties=props)  # type: ignore[no-any-return]
            assert inten is not None
            return regionprops_table(  # type: ignore[no-any-return]
                labels, intensity_image=np.moveaxis(inten, 0, -1),
                properties=("label", "intensity_mean"))

    base = _status_kib("VmRSS")
    _reset_peak()
    times = []
    result: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    peak = _status_kib("VmHWM")
    np.savez(out, **{k.replace("/", "_"): np.asarray(v) for k, v in result.items()})
    print(json.dumps({"time": min(times), "extra_peak_mib": (peak - base) / 1024}))


def spawn(method: str, workload: str, inputs: Path, repeat: int) -> tuple[dict[str, float], Path]:
    out = inputs / f"{method}-{workload}.npz"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, workload, str(inputs), str(out),
         str(repeat)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1]), out


def make_inputs(size: int, markers: int, inputs: Path) -> tuple[int, int]:
    from maskbundle.labels.relabel import relabel_mask
    from maskbundle.synthetic import synthetic_tissue

    cells, _ = synthetic_tissue((size, size))
    mask = relabel_mask("cells", cells)
    del cells
    np.save(inputs / "labels.npy", mask.labels)
    np.save(inputs / "warm.npy", relabel_mask("cells", mask.labels[:256, :256]).labels)
    rng = np.random.default_rng(0)
    inten = np.empty((markers, size, size), np.uint16)
    for c in range(markers):
        inten[c] = rng.integers(0, 4096, size=(size, size), dtype=np.uint16)
    np.save(inputs / "intensity.npy", inten)
    return mask.n_objects, mask.labels.nbytes


def compare(ours: Path, theirs: Path, workload: str) -> float:
    a, b = np.load(ours), np.load(theirs)
    if workload.startswith("morphology"):
        pairs = {k: v for k, v in MORPH_PAIRS.items() if v in b.files}
    else:
        pairs = {c: f"intensity_mean-{c.split()[1]}" for c in a.files if "mean" in c}
    worst = 0.0
    for ours_key, their_key in pairs.items():
        x, y = a[ours_key].astype(float), b[their_key].astype(float)
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)))))
    return worst


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]), int(sys.argv[6]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--markers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--large", action="store_true",
                    help="16384 x 16384 (~650,000 cells), ours only (regionprops takes minutes)")
    args = ap.parse_args()
    size = 16384 if args.large else args.size
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp)
        t0 = time.perf_counter()
        n, nbytes = make_inputs(size, args.markers, inputs)
        print(f"{size} x {size}, {n} objects, labels {nbytes / 2**20:.0f} MiB "
              f"(inputs made in {time.perf_counter() - t0:.0f} s); best of {args.repeat}")
        print(f"{'workload':<19} {'method':<13} {'time (s)':>9} {'extra peak RSS':>15} "
              f"{'x label image':>14}")
        ours_by: dict[str, tuple[dict[str, float], Path]] = {}
        for workload in ("morphology", "morphology-no-hull", "intensities"):
            if args.large and workload == "morphology-no-hull":
                continue
            key = "morphology" if workload.startswith("morphology") else workload
            if key not in ours_by:
                ours_by[key] = spawn("ours", key, inputs, args.repeat)
            ours, ours_out = ours_by[key]
            rows = [("maskbundle", ours)]
            if not args.large:
                theirs, their_out = spawn("regionprops", workload, inputs, 1)
                rows.append(("regionprops", theirs))
            for name, r in rows:
                print(f"{workload:<19} {name:<13} {r['time']:>9.3f} "
                      f"{r['extra_peak_mib']:>11.0f} MiB {r['extra_peak_mib'] * 2**20 / nbytes:>13.2f}x")
            if not args.large:
                print(f"{'':<19} speed-up {theirs['time'] / ours['time']:.1f}x; largest relative "
                      f"difference {compare(ours_out, their_out, workload):.1e}")


if __name__ == "__main__":
    main()
