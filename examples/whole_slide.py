"""A whole-slide bundle from files on disk, read by tiles within a memory limit.

    python examples/whole_slide.py [OUT_DIR] [--size 8192] [--memory-limit 512MiB]

What a tiled Cellpose/StarDist run leaves behind: a tiled label TIFF and the tiled
OME-TIFF of the markers. Neither is loaded whole: `write_segmentation_bundle` opens both
lazily, measures the objects tile by tile (objects crossing tiles included), writes the
pyramidal OME-TIFF band by band and validates the result. The inputs are generated here
(deterministic synthetic tissue, written band by band), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import tifffile

from maskbundle import validate_bundle, write_segmentation_bundle
from maskbundle.synthetic import iter_synthetic_tissue

TILE = 512


def write_inputs(folder: Path, size: int) -> tuple[Path, Path]:
    """cells.tif (uint32 labels) and markers.ome.tif (2 channels), both tiled, by bands."""
    folder.mkdir(parents=True, exist_ok=True)
    cells_path, markers_path = folder / "cells.tif", folder / "markers.ome.tif"
    bands = []  # one band of 2048 rows at a time: (cells band, markers band)
    band_rows = 2048
    tiles = iter_synthetic_tissue((size, size), seed=0, tile=band_rows)
    per_row = -(-size // band_rows)
    rng = np.random.default_rng(7)
    while True:
        row = [next(tiles, None) for _ in range(per_row)]
        if row[0] is None:
            break
        cells = np.concatenate([t[1] for t in row if t is not None], axis=1)
        nuclei = np.concatenate([t[2] for t in row if t is not None], axis=1)
        # marker 0 lights the nuclei, marker 1 the cell bodies, with noise
        noise = rng.integers(0, 200, (2, *cells.shape), dtype=np.uint16)
        markers = noise + np.stack([(nuclei > 0) * 3000, (cells > 0) * 1500]).astype(np.uint16)
        bands.append((cells, markers))

    def tiles_of(k: int):  # tiles of level 0 in file order, band by band
        for cells, markers in bands:
            arrays = [cells] if k < 0 else [markers[k]]
            for arr in arrays:
                for y in range(0, arr.shape[0], TILE):
                    for x in range(0, size, TILE):
                        yield arr[y : y + TILE, x : x + TILE]

    tifffile.imwrite(cells_path, tiles_of(-1), shape=(size, size), dtype=np.uint32,
                     tile=(TILE, TILE), compression="zlib", bigtiff=True)

    def marker_tiles():
        for k in range(2):
            yield from tiles_of(k)

    tifffile.imwrite(markers_path, marker_tiles(), shape=(2, size, size), dtype=np.uint16,
                     tile=(TILE, TILE), compression="zlib", bigtiff=True,
                     photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "CD45"]}})
    return cells_path, markers_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", type=Path, default=Path("out/whole-slide"))
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--memory-limit", default="512MiB")
    a = ap.parse_args()
    cells, markers = write_inputs(a.out / "inputs", a.size)
    t0 = time.perf_counter()
    dataset = write_segmentation_bundle(
        a.out / "slide-1", {"cells": cells},
        intensity_image=markers,
        physical_size=(0.5, 0.5),
        protocol_doi="10.17504/protocols.io.example",
        features=["morphology", "mean", "std"],
        adjacency=("centroid", "linkage"),
        memory_limit=a.memory_limit,
        overwrite=True,
    )
    # (the marker columns draw a HubmapConversionWarning: see the README on HuBMAP ingest)
    took = time.perf_counter() - t0
    objects = dataset.provenance["masks"]["cells"]["objects"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"wrote {dataset}: {objects} cells from a {a.size} x {a.size} mask in {took:.1f} s "
          f"(process peak RSS {peak:.0f} MiB, input generation included)")
    report = validate_bundle(dataset)
    print(f"validate_bundle: {'OK' if report.ok else 'FAILED'}")
    if not report.ok:
        raise SystemExit(str(report))


if __name__ == "__main__":
    main()
