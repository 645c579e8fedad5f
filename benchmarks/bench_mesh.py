"""Meshes of a 3D mask as one glb: maskbundle against the common route, in one run.

    python benchmarks/bench_mesh.py [--shape 256 512 512] [--spacing 24]

Input: a deterministic synthetic tissue volume (Voronoi cells of jittered-grid seeds, cut
at a random radius per cell; about 5,000 objects in 256 x 512 x 512), voxel size
(0.5, 0.5, 1.0) um.

Common route: per object ``skimage.measure.marching_cubes`` on its cropped, padded binary
mask, then a trimesh Scene (one node per object) exported as glb.
Ours: ``mesh_labels`` (zmesh, one pass over all labels) + ``write_glb``, at full
resolution and at the default simplification; for the full-resolution meshes we also time
trimesh's export of the same meshes against our writer.

Every method runs in its own subprocess; we report wall time, triangles, file size, the
volume error of objects of >= 1000 voxels and the peak RSS (minus the RSS with just the
volume loaded, i.e. what meshing and writing add).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

PS = (0.5, 0.5, 1.0)  # x, y, z um


@numba.njit(cache=True)
def _voronoi(shape: np.ndarray, spacing: float, seeds: np.ndarray, radius: np.ndarray,
             out: np.ndarray) -> None:
    gz, gy, gx = seeds.shape[0], seeds.shape[1], seeds.shape[2]
    for z in range(shape[0]):
        cz = int(z // spacing)
        for y in range(shape[1]):
            cy = int(y // spacing)
            for x in range(shape[2]):
                cx = int(x // spacing)
                best = 1e30
                lab = 0
                for iz in range(max(cz - 1, 0), min(cz + 2, gz)):
                    for iy in range(max(cy - 1, 0), min(cy + 2, gy)):
                        for ix in range(max(cx - 1, 0), min(cx + 2, gx)):
                            if seeds[iz, iy, ix, 0] < 0:
                                continue
                            d = ((z - seeds[iz, iy, ix, 0]) ** 2 + (y - seeds[iz, iy, ix, 1]) ** 2
                                 + (x - seeds[iz, iy, ix, 2]) ** 2)
                            if d < best:
                                best = d
                                lab = (iz * gy + iy) * gx + ix + 1
                if lab and best <= radius[lab - 1] ** 2:
                    out[z, y, x] = lab


def tissue_3d(shape: tuple[int, int, int], spacing: float, seed: int = 0) -> np.ndarray:
    """Voronoi cells of jittered-grid seeds cut at 0.4-0.6 x spacing; ids 1..N (uint16/32)."""
    import fastremap

    rng = np.random.default_rng(seed)
    grid = [int(np.ceil(s / spacing)) for s in shape]
    centres = (np.stack(np.meshgrid(*[np.arange(n) for n in grid], indexing="ij"), -1) + 0.5)
    seeds = centres * spacing + rng.uniform(-0.3, 0.3, size=centres.shape) * spacing
    seeds = np.minimum(seeds, np.array(shape) - 1.0)
    seeds[rng.random(grid) < 0.03] = -1.0  # a few missing cells
    radius = rng.uniform(0.4, 0.6, size=int(np.prod(grid))) * spacing
    out = np.zeros(shape, np.uint32)
    _voronoi(np.array(shape), float(spacing), seeds, radius, out)
    out, _ = fastremap.renumber(out, in_place=True)
    return np.ascontiguousarray(out)


def _signed_volumes(vertices: list[np.ndarray], faces: list[np.ndarray]) -> np.ndarray:
    vols = []
    for v, f in zip(vertices, faces, strict=True):
        t = v.astype(np.float64)[f]
        vols.append(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)
    return np.array(vols)


def _volume_error(ids: list[int], vols: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    counts = np.bincount(labels.ravel())
    voxel = float(np.prod(PS))
    errs = [abs(v / (counts[i] * voxel) - 1) for i, v in zip(ids, vols, strict=True)
            if counts[i] >= 1000]
    return float(np.mean(errs)), float(np.max(errs)), len(errs)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_common(volume: Path, out: Path) -> dict[str, object]:
    import trimesh
    from scipy import ndimage
    from skimage.measure import marching_cubes

    labels = np.load(volume)
    base = _rss_mb()
    t0 = time.perf_counter()
    scene = trimesh.Scene()
    verts, faces, ids = [], [], []
    spacing = (PS[2], PS[1], PS[0])
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        crop = np.pad(labels[sl] == i, 1).astype(np.float32)
        v, f, _, _ = marching_cubes(crop, 0.5, spacing=spacing)
        origin = np.array([s.start - 1 for s in sl]) * np.array(spacing)
        v = (v + origin)[:, ::-1]  # (z, y, x) -> (x, y, z); skimage's winding then faces out
        scene.add_geometry(trimesh.Trimesh(v, f, process=False), node_name=str(i),
                           geom_name=str(i))
        verts.append(v)
        faces.append(f)
        ids.append(i)
    t_mesh = time.perf_counter() - t0
    t1 = time.perf_counter()
    data = scene.export(file_type="glb")
    (out / "common.glb").write_bytes(data)
    t_write = time.perf_counter() - t1
    err = _volume_error(ids, _signed_volumes(verts, faces), labels)
    return {"method": "skimage marching_cubes per object + trimesh glb export",
            "mesh_s": t_mesh, "write_s": t_write, "total_s": t_mesh + t_write,
            "triangles": int(sum(len(f) for f in faces)), "bytes": len(data),
            "vol_err_mean": err[0], "vol_err_max": err[1], "objects_ge_1000": err[2],
            "rss_mb": _rss_mb(), "rss_added_mb": _rss_mb() - base}


def run_ours(volume: Path, out: Path, simplify: bool, trimesh_export: bool,
             max_error: float | None = None) -> dict[str, object]:
    from maskbundle.io.glb import write_glb
    from maskbundle.mesh import mesh_labels

    labels = np.load(volume)
    # load the compiled numba kernels (meshing and the glb scan) before timing
    warm = mesh_labels(np.zeros((2, 2, 2), np.uint8) + 1, physical_size=PS, simplify=simplify)
    write_glb(out / "warm.glb", warm, mask="cells", overwrite=True)
    base = _rss_mb()
    t0 = time.perf_counter()
    meshes = mesh_labels(labels, physical_size=PS, simplify=simplify, max_error=max_error)
    t_mesh = time.perf_counter() - t0
    t1 = time.perf_counter()
    path = write_glb(out / f"ours-{simplify}.glb", meshes, mask="cells", overwrite=True)
    t_write = time.perf_counter() - t1
    rss = _rss_mb()
    err = _volume_error([m.object_id for m in meshes],
                        _signed_volumes([m.vertices for m in meshes], [m.faces for m in meshes]),
                        labels)
    result: dict[str, object] = {
        "method": f"maskbundle mesh_labels(simplify={simplify}, max_error={max_error}) "
                  "+ write_glb",
        "mesh_s": t_mesh, "write_s": t_write, "total_s": t_mesh + t_write,
        "triangles": int(sum(len(m.faces) for m in meshes)), "bytes": path.stat().st_size,
        "vol_err_mean": err[0], "vol_err_max": err[1], "objects_ge_1000": err[2],
        "rss_mb": rss, "rss_added_mb": rss - base,
    }
    if trimesh_export:
        import trimesh

        t2 = time.perf_counter()
        scene = trimesh.Scene()
        for m in meshes:
            scene.add_geometry(trimesh.Trimesh(m.vertices, m.faces, vertex_normals=m.normals,
                                               process=False),
                               node_name=str(m.object_id), geom_name=str(m.object_id))
        data = scene.export(file_type="glb")
        result["trimesh_export_same_meshes_s"] = time.perf_counter() - t2
        result["trimesh_export_bytes"] = len(data)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[256, 512, 512])
    ap.add_argument("--spacing", type=float, default=24.0)
    ap.add_argument("--max-error", type=float, default=None,
                    help="also run the simplification with this max_error (um)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, volume, out, err = args.child
        if method == "common":
            res = run_common(Path(volume), Path(out))
        else:
            res = run_ours(Path(volume), Path(out), simplify=method != "full",
                           trimesh_export=method == "full",
                           max_error=float(err) if method == "custom" else None)
        print(json.dumps(res))
        return

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        labels = tissue_3d(tuple(args.shape), args.spacing)  # type: ignore[arg-type]
        volume = Path(tmp) / "labels.npy"
        np.save(volume, labels)
        print(f"volume {labels.shape} {labels.dtype} ({labels.nbytes / 2**20:.0f} MiB), "
              f"{int(labels.max())} objects, generated in {time.perf_counter() - t0:.1f} s; "
              f"voxel {PS} um (x, y, z)")
        del labels
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        results = {}
        methods = ["common", "full", "simplified"] + (["custom"] if args.max_error else [])
        for method in methods:
            run = subprocess.run([sys.executable, __file__, "--child", method, str(volume), tmp,
                                  str(args.max_error)], capture_output=True, text=True, check=True)
            results[method] = json.loads(run.stdout.strip().splitlines()[-1])
    for key, r in results.items():
        print(f"\n[{key}] {r['method']}")
        print(f"  time {r['total_s']:.2f} s (mesh {r['mesh_s']:.2f} s, write {r['write_s']:.2f} s)"
              f"  triangles {r['triangles']:,}  file {r['bytes'] / 2**20:.1f} MiB")
        print(f"  volume error (objects >= 1000 voxels, n={r['objects_ge_1000']}): "
              f"mean {r['vol_err_mean']:.2%}, max {r['vol_err_max']:.2%}")
        print(f"  peak RSS {r['rss_mb']:.0f} MB, added by meshing+writing {r['rss_added_mb']:.0f} MB")
        if "trimesh_export_same_meshes_s" in r:
            print(f"  trimesh glb export of the same meshes: {r['trimesh_export_same_meshes_s']:.2f} s"
                  f" vs write_glb {r['write_s']:.2f} s "
                  f"({r['trimesh_export_same_meshes_s'] / r['write_s']:.1f}x)")
    print(f"\nload average after: {os.getloadavg()[0]:.1f} (other jobs share the machine)")
    c = results["common"]
    for key in [k for k in results if k != "common"]:
        print(f"\nratio common/{key}: time {c['total_s'] / results[key]['total_s']:.2f}x, "
              f"file {c['bytes'] / results[key]['bytes']:.2f}x")


if __name__ == "__main__":
    main()
