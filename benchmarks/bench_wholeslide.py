"""Whole-slide masks from disk: the full bundle by tiles against the in-memory path.

    python benchmarks/bench_wholeslide.py [--sizes 8192 16384] [--formats tiff zarr]
        [--what bundle|tiff] [--memory-limit 2GiB] [--in-memory-max 16384]
        [--workdir DIR] [--compression zlib]

``--what bundle`` (default): ``write_segmentation_bundle(out, {"cells": PATH})`` with
features (morphology) and both adjacencies, streamed from the file on disk
(``memory_limit``), against reading the whole mask into numpy and writing the same
bundle in memory; every file of the two bundles is compared by sha256.
``--what tiff``: only the label OME-TIFF, as below.

65536^2 (16 GiB of uint32 labels, ~10 million cells) is
``python benchmarks/bench_wholeslide.py --sizes 65536 --formats zarr --in-memory-max 0``
(the in-memory path cannot run on 24 GiB; the zarr input takes ~20 GiB of disk less
compression, the bundle's OME-TIFF ~2 GiB).

1. Input: the deterministic synthetic tissue (``iter_synthetic_tissue``, cell spacing 20:
   ~40,000 cells per 4096^2) generated tile by tile and written to disk without holding
   the image: a tiled (512 x 512, zlib) single-level TIFF and/or a zarr array (1024^2
   chunks, zstd). Generation is not timed.
2. Unique pass (stand-in for the coming pass 1): the sorted distinct labels, band by band.
3. Streaming write: ``open_label_source(path)`` -> ``TileRelabel`` ->
   ``write_label_ome_tiff_streaming`` (level 0 and the stride pyramid).
4. In memory (sizes up to ``--in-memory-max``): read the whole mask, ``relabel``,
   ``write_label_ome_tiff``; the two files are compared byte for byte.

Each measurement runs in its own subprocess; peak RSS is that process's VmHWM after the
imports (``clear_refs``), so it is what the step itself needs. Mpx/s counts level-0 pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GEN_TILE = 2048  # generator tile: cells are cut at its edges, as in synthetic_tissue


def generate(path: Path, size: int, fmt: str) -> dict[str, object]:
    """Write the synthetic cells mask of ``size``^2 to ``path`` band by band."""
    import numpy as np
    import tifffile
    import zarr

    from maskbundle.synthetic import iter_synthetic_tissue

    shape = (size, size)
    tiles = iter_synthetic_tissue(shape, seed=0, tile=GEN_TILE)
    top = 0
    if fmt == "zarr":
        arr = zarr.create_array(str(path), shape=shape, dtype="uint32", chunks=(1024, 1024),
                                compressors=zarr.codecs.ZstdCodec(level=1))
        for sl, cells, _ in tiles:
            arr[sl] = cells
            top = max(top, int(cells.max()))
        return {"max_label": top}

    def band_tiles():  # a band of generator tiles, cut into 512 x 512 TIFF tiles
        nonlocal top
        per_row = -(-size // GEN_TILE)
        while True:
            row = []
            for _ in range(per_row):
                item = next(tiles, None)
                if item is None:
                    return
                row.append(item[1])
            band = np.concatenate(row, axis=1)
            top = max(top, int(band.max()))
            for y in range(0, band.shape[0], 512):
                for x in range(0, size, 512):
                    yield band[y : y + 512, x : x + 512]

    tifffile.imwrite(path, band_tiles(), shape=shape, dtype=np.uint32, tile=(512, 512),
                     compression="zlib", bigtiff=size * size * 4 > 2**31, maxworkers=2)
    return {"max_label": top}


def _xml(shape, dtype):
    from maskbundle.io.ometiff import build_ome_xml
    from maskbundle.model import PhysicalSize

    return build_ome_xml(channel_names=["cells"], shape_zyx=(1, *shape), dtype=dtype,
                         physical_size=PhysicalSize(0.5, 0.5), image_name="bench")


COMMON = {"physical_size": (0.5, 0.5), "protocol_doi": "10.17504/protocols.io.example",
          "stem": "bench", "features": True, "adjacency": ("centroid", "linkage")}


def measure_bundle(kind: str, src_path: Path, out: Path, compression: str,
                   memory_limit: str) -> dict[str, object]:
    """One full-bundle run in this process: by tiles from disk, or in memory."""
    import warnings

    from _memory import peak_rss_mib, reset_peak_rss

    from maskbundle import write_segmentation_bundle

    warnings.simplefilter("ignore")
    base = reset_peak_rss()
    t0 = time.perf_counter()
    result: dict[str, object] = {}
    if kind == "bundle-stream":
        res = write_segmentation_bundle(out, {"cells": src_path}, compression=compression,
                                        memory_limit=memory_limit, **COMMON)  # type: ignore[arg-type]
    else:
        import tifffile
        import zarr

        if src_path.suffix == ".zarr":
            data = zarr.open_array(str(src_path), mode="r")[:]
        else:
            data = tifffile.imread(src_path)
        result["read_s"] = time.perf_counter() - t0
        res = write_segmentation_bundle(out, {"cells": data}, compression=compression,
                                        **COMMON)  # type: ignore[arg-type]
    result.update(total_s=time.perf_counter() - t0, peak_rss_mib=peak_rss_mib(),
                  base_rss_mib=base, objects=res.provenance["masks"]["cells"]["objects"])
    return result


def measure(kind: str, src_path: Path, out: Path, compression: str) -> dict[str, object]:
    """One measurement in this process (run as a subprocess by main)."""
    import fastremap
    import numpy as np
    from _memory import peak_rss_mib, reset_peak_rss

    from maskbundle.io.ometiff import (
        StreamChannel,
        write_label_ome_tiff,
        write_label_ome_tiff_streaming,
    )
    from maskbundle.io.sources import open_label_source
    from maskbundle.labels.relabel import TileRelabel, label_dtype, relabel

    base = reset_peak_rss()
    t0 = time.perf_counter()
    result: dict[str, object] = {}
    if kind == "stream":
        with open_label_source(src_path, name="cells") as src:
            h, w = src.shape
            # unique pass: the relabel map (pass 1 proper also merges features etc.)
            ids: np.ndarray = np.zeros(0, np.uint32)
            band = 512
            for y0 in range(0, h, band):
                u = fastremap.unique(src.read((slice(y0, min(h, y0 + band)), slice(0, w))))
                ids = np.union1d(ids, u)
            ids = ids[ids != 0]
            t1 = time.perf_counter()
            dtype = label_dtype(ids.size)
            res = write_label_ome_tiff_streaming(
                out, [StreamChannel(src, TileRelabel(ids, dtype, name="cells"))],
                ome_xml=_xml((h, w), dtype), dtype=dtype, compression=compression,  # type: ignore[arg-type]
            )
            result.update(unique_s=t1 - t0, write_s=time.perf_counter() - t1,
                          objects=int(ids.size), levels=res.levels, input_sha256=res.input_sha256[0])
    else:
        import tifffile
        import zarr

        if src_path.suffix == ".zarr":
            data = zarr.open_array(str(src_path), mode="r")[:]
        else:
            data = tifffile.imread(src_path)
        t1 = time.perf_counter()
        lab, ids = relabel(data)
        dtype = label_dtype(ids.size)
        write_label_ome_tiff(out, lab.reshape(1, 1, *lab.shape), ome_xml=_xml(lab.shape, dtype),
                             compression=compression)  # type: ignore[arg-type]
        result.update(read_s=t1 - t0, write_s=time.perf_counter() - t1, objects=int(ids.size))
    result.update(total_s=time.perf_counter() - t0, peak_rss_mib=peak_rss_mib(),
                  base_rss_mib=base)
    return result


def _sub(kind: str, src: Path, out: Path, compression: str,
         memory_limit: str = "2GiB") -> dict[str, object]:
    cmd = [sys.executable, __file__, "--_measure", kind, str(src), str(out), compression,
           memory_limit]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parent)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--formats", nargs="+", default=["tiff", "zarr"], choices=["tiff", "zarr"])
    ap.add_argument("--in-memory-max", type=int, default=16384,
                    help="largest size also written by the in-memory writer")
    ap.add_argument("--compression", default="zlib", choices=["zlib", "zstd"])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--what", default="bundle", choices=["bundle", "tiff"])
    ap.add_argument("--memory-limit", default="2GiB",
                    help="memory_limit of the streamed bundle (tile working set)")
    ap.add_argument("--_measure", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._measure:
        kind, src, out, comp, limit = args._measure
        if kind.startswith("bundle"):
            print(json.dumps(measure_bundle(kind, Path(src), Path(out), comp, limit)))
        else:
            print(json.dumps(measure(kind, Path(src), Path(out), comp)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-wholeslide-", dir=args.workdir))
    rows = []
    try:
        for size in args.sizes:
            for fmt in args.formats:
                src = work / (f"cells-{size}.zarr" if fmt == "zarr" else f"cells-{size}.tif")
                t = time.perf_counter()
                info = generate(src, size, fmt)
                gen_s = time.perf_counter() - t
                if args.what == "bundle":
                    rows.append(_bundle_row(work, src, size, fmt, gen_s, info, args))
                    shutil.rmtree(src) if src.is_dir() else src.unlink()
                    continue
                stream = _sub("stream", src, work / "stream.ome.tif", args.compression)
                row = {"size": size, "format": fmt, "generate_s": round(gen_s, 1), **info,
                       "stream": stream}
                if size <= args.in_memory_max:
                    mem = _sub("memory", src, work / "memory.ome.tif", args.compression)
                    row["memory"] = mem
                    row["identical_bytes"] = _sha(work / "stream.ome.tif") == _sha(
                        work / "memory.ome.tif")
                    (work / "memory.ome.tif").unlink()
                (work / "stream.ome.tif").unlink()
                shutil.rmtree(src) if src.is_dir() else src.unlink()
                rows.append(row)
                _report(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tree_sums(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): _sha(f) for f in sorted(root.rglob("*")) if f.is_file()}


def _bundle_row(work: Path, src: Path, size: int, fmt: str, gen_s: float, info: dict,
                args: argparse.Namespace) -> dict[str, object]:
    mpx = size**2 / 1e6
    st = _sub("bundle-stream", src, work / "b-stream", args.compression, args.memory_limit)
    row: dict[str, object] = {"size": size, "format": fmt, "generate_s": round(gen_s, 1),
                              **info, "stream": st}
    line = (f"{size:>6}^2 {fmt:<4} objects {st['objects']:>9,}  bundle by tiles "
            f"(memory_limit {args.memory_limit}): {st['total_s']:6.1f} s = "
            f"{mpx / st['total_s']:5.1f} Mpx/s, peak RSS {st['peak_rss_mib']:7.0f} MiB "
            f"(imports {st['base_rss_mib']:.0f})")
    if size <= args.in_memory_max:
        mem = _sub("bundle-memory", src, work / "b-memory", args.compression)
        row["memory"] = mem
        row["identical_bytes"] = _tree_sums(work / "b-stream") == _tree_sums(work / "b-memory")
        line += (f" | in memory: {mem['total_s']:6.1f} s = {mpx / mem['total_s']:5.1f} Mpx/s,"
                 f" peak RSS {mem['peak_rss_mib']:7.0f} MiB; time ratio "
                 f"{st['total_s'] / mem['total_s']:.2f}, RSS ratio "
                 f"{st['peak_rss_mib'] / mem['peak_rss_mib']:.2f}; same bytes: "
                 f"{row['identical_bytes']}")
        shutil.rmtree(work / "b-memory")
    shutil.rmtree(work / "b-stream")
    print(line, flush=True)
    return row


def _report(row: dict) -> None:
    mpx = row["size"] ** 2 / 1e6
    s = row["stream"]
    line = (f"{row['size']:>6}^2 {row['format']:<4} objects {s['objects']:>9,}  stream: unique "
            f"{s['unique_s']:6.1f} s + write {s['write_s']:6.1f} s = "
            f"{mpx / s['total_s']:5.1f} Mpx/s (write alone {mpx / s['write_s']:5.1f}), peak RSS "
            f"{s['peak_rss_mib']:7.0f} MiB (imports {s['base_rss_mib']:.0f})")
    if "memory" in row:
        m = row["memory"]
        line += (f" | in memory: read {m['read_s']:5.1f} s + relabel/write {m['write_s']:6.1f} s,"
                 f" {mpx / m['write_s']:5.1f} Mpx/s, peak RSS {m['peak_rss_mib']:7.0f} MiB;"
                 f" same bytes: {row['identical_bytes']}")
    print(line, flush=True)


if __name__ == "__main__":
    main()
