"""Benchmark: open a 65536 x 65536 bundle in napari (headless) without reading level 0.

    PYTHONPATH=src python benchmarks/bench_napari_open.py [--size 65536]

A bundle that size cannot be written from an in-memory array here (8 GiB of uint16
labels), so the benchmark writes a small bundle with write_segmentation_bundle (one
object, near the top-left corner) and swaps in an OME-TIFF of the full size written tile
by tile with tifffile: the same object, zeros elsewhere, the same SubIFD pyramid and
OME-XML layout. It then opens the directory through npe2 (napari's plugin API), adds the
layers to a ViewerModel (napari's viewer without Qt) and reports the wall time, the peak
resident memory and which pyramid levels were read (and how many pixels of each).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _memory import peak_rss_mib, reset_peak_rss  # noqa: E402

from maskbundle import write_segmentation_bundle  # noqa: E402
from maskbundle.io.ometiff import build_ome_xml  # noqa: E402
from maskbundle.labels.pyramid import pyramid_level_count  # noqa: E402
from maskbundle.model import PhysicalSize  # noqa: E402
from maskbundle.rules import TILE_SIZE as TILE  # noqa: E402

DOI = "10.17504/protocols.io.example"


def _tiles(size: int, k: int, obj: np.ndarray) -> Any:
    """Tiles of level k in row-major order: the object in the first tile, zeros elsewhere."""
    n = -(-(size >> k) // TILE)
    zero = np.zeros((TILE, TILE), dtype=np.uint16)
    first = zero.copy()
    small = obj[:: 2**k, :: 2**k]
    first[: small.shape[0], : small.shape[1]] = small[:TILE, :TILE]
    for i in range(n * n):
        yield first if i == 0 else zero


def build(root: Path, size: int) -> Path:
    obj = np.zeros((TILE, TILE), dtype=np.uint16)
    obj[100:300, 120:260] = 1
    ds = write_segmentation_bundle(root / "ds", {"cells": obj}, physical_size=0.5,
                                   protocol_doi=DOI)
    (tiff,) = (ds / "derived/segmentation_masks").glob("*.ome.tiff")
    xml = build_ome_xml(channel_names=["cells"], shape_zyx=(1, size, size),
                        dtype=np.dtype(np.uint16), physical_size=PhysicalSize(0.5, 0.5),
                        image_name=tiff.name.split(".")[0])
    n_levels = pyramid_level_count(size, size, TILE)
    opts: dict[str, Any] = {"photometric": "minisblack", "tile": (TILE, TILE),
                            "compression": "zlib", "metadata": None, "dtype": np.uint16}
    tiff.unlink()
    with tifffile.TiffWriter(tiff, bigtiff=True, ome=False) as tif:
        tif.write(_tiles(size, 0, obj), shape=(1, 1, size, size), subifds=n_levels,
                  description=xml, **opts)
        for k in range(1, n_levels + 1):
            s = -(-size // 2**k)
            tif.write(_tiles(size, k, obj), shape=(1, 1, s, s), subfiletype=1, **opts)
    return ds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=65536)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ds = build(Path(tmp), args.size)
        print(f"built {args.size}^2 bundle ({sum(p.stat().st_size for p in ds.rglob('*') if p.is_file()) / 2**20:.1f} MiB) in {time.perf_counter() - t:.1f} s")

        import npe2
        from napari.components import ViewerModel

        from maskbundle.bundle.read import LabelArray

        reads: Counter[tuple[int, ...]] = Counter()
        pixels: Counter[tuple[int, ...]] = Counter()
        original = LabelArray.__getitem__

        def spy(self: LabelArray, key: Any) -> np.ndarray:
            out = original(self, key)
            reads[self.shape] += 1
            pixels[self.shape] += out.size
            return out

        LabelArray.__getitem__ = spy  # type: ignore[method-assign]
        npe2.PluginManager.instance().discover()
        viewer = ViewerModel()
        base = reset_peak_rss()
        t = time.perf_counter()
        for data, kwargs, kind in npe2.read([str(ds)], stack=False, plugin_name="maskbundle"):
            getattr(viewer, f"add_{kind}")(data, **kwargs)
        secs = time.perf_counter() - t
        layer = viewer.layers["cells"]
        print(f"opened in napari (npe2 reader + ViewerModel): {secs:.2f} s, peak RSS "
              f"{peak_rss_mib() - base:.0f} MiB above the {base:.0f} MiB before")
        print(f"layer: multiscale={layer.multiscale} levels={len(layer.data)} "
              f"shown level={layer.data_level} level-0 shape={layer.data[0].shape}")
        for shape in sorted(reads, reverse=True):
            print(f"  read level {shape}: {reads[shape]} slices, {pixels[shape]:,} pixels")
        level0 = (args.size, args.size)
        print("level 0 read:", "YES" if level0 in reads else "no")


if __name__ == "__main__":
    main()
