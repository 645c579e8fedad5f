"""Seeded mutation fuzzing of the readers, run in a child process so a crash is caught.

``python _fuzz.py KIND WORKDIR SEED COUNT SECONDS`` writes one valid input of ``KIND``
(made with tifffile, imagecodecs, numpy, roifile, openpyxl or plain text, not with
maskbundle's writers, except the bundle for the validator), then reads ``COUNT``
mutations of it (1-8 random bytes set, or a truncation, or a few bytes inserted or
deleted) until ``SECONDS`` have passed. Each outcome is printed as one JSON line
``{"i": index, "outcome": "ok" | <MaskBundleError subclass> | "FOREIGN <type>: <message>"}``
*before* the next mutation runs, so the parent knows how far the child got when it dies
of a signal. The last line is ``{"done": n}``.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHAPE = (32, 40)


def _labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint16)
    lab[2:9, 3:12] = 1
    lab[10:20, 5:15] = 2
    lab[4:16, 20:33] = 3
    lab[22:30, 8:36] = 4
    return lab


def _seg_npy(work: Path) -> Path:
    lab = _labels()
    dat = {
        "outlines": lab * 0,
        "masks": lab,
        "chan_choose": [0, 0],
        "ismanual": np.zeros(4, bool),
        "filename": "img.tif",
        "flows": [np.zeros((1, *SHAPE, 3), np.uint8), np.zeros((3, *SHAPE), np.float32)],
        "diameter": np.float64(12.5),
        "est_diam": np.nan,
    }
    path = work / "base_seg.npy"
    np.save(path, dat)  # type: ignore[arg-type]
    return path


def _npz(work: Path) -> Path:
    path = work / "base.npz"
    np.savez_compressed(path, cells=_labels(), nuclei=(_labels() > 0).astype(np.uint8))
    return path


def _details_npz(work: Path) -> Path:
    rng = np.random.default_rng(0)
    n, rays = 6, 8
    centre = rng.uniform(6, 26, size=(n, 2, 1))
    angles = np.linspace(0, 2 * np.pi, rays, endpoint=False)
    radius = rng.uniform(2, 6, size=(n, 1, 1))
    coord = centre + radius * np.stack([np.sin(angles), np.cos(angles)])[None]
    path = work / "details.npz"
    np.savez(path, coord=coord.astype(np.float32), points=centre[:, :, 0], prob=rng.random(n))
    return path


def _tiff(work: Path) -> Path:
    import tifffile

    path = work / "base.ome.tif"
    stack = np.stack([_labels(), (_labels() > 0).astype(np.uint16)])
    tifffile.imwrite(
        path, stack, ome=True, tile=(16, 16), compression="zlib",
        metadata={"axes": "CYX", "Channel": {"Name": ["cells", "nuclei"]},
                  "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    return path


def _png(work: Path) -> Path:
    import imagecodecs

    path = work / "base.png"
    path.write_bytes(imagecodecs.png_encode(_labels()))
    return path


def _geojson(work: Path) -> Path:
    feats = []
    for k, (x, y) in enumerate([(5, 5), (20, 8), (30, 20), (10, 24)]):
        ring = [[x, y], [x + 6, y], [x + 6, y + 5], [x, y + 5], [x, y]]
        nuc = [[x + 2, y + 1], [x + 4, y + 1], [x + 4, y + 3], [x + 2, y + 3], [x + 2, y + 1]]
        feats.append({
            "type": "Feature", "id": f"id-{k}",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "nucleusGeometry": {"type": "Polygon", "coordinates": [nuc]},
            "properties": {"objectType": "cell", "classification": {"name": "Tumor"},
                           "measurements": {"Cell: Area µm^2": 30.0 + k, "Nucleus: Area": 4}},
        })
    path = work / "base.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def _roi_zip(work: Path) -> Path:
    import roifile

    path = work / "base.zip"
    rois = []
    for x, y in [(3, 3), (15, 6), (25, 18)]:
        roi = roifile.ImagejRoi.frompoints(np.array([[x, y], [x + 7, y], [x + 7, y + 6], [x, y + 6]]))
        roi.name = f"roi-{x}"
        rois.append(roi)
    roifile.roiwrite(path, rois)
    return path


def _table_grid() -> list[list[str]]:
    return [["Type", "integer", "text"], ["Unit", "", ""], [""] * 3,
            ["Object ID", "Area", "Name"], ["1", "63", "a"], ["2", "100", "b"]]


def _tsv(work: Path) -> Path:
    path = work / "cells-objects.tsv"
    path.write_text("".join("\t".join(r) + "\n" for r in _table_grid()), encoding="utf-8")
    return path


def _xlsx(work: Path) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "MAIN"
    for row in _table_grid():
        ws.append(row)
    path = work / "cells-objects.xlsx"
    wb.save(path)
    return path


def _bundle(work: Path, fmt: str = "tsv") -> Path:
    from maskbundle import write_segmentation_bundle

    root = work / f"bundle-{fmt}"
    lab = _labels()
    write_segmentation_bundle(
        root, {"cells": lab}, physical_size=(0.5, 0.5), protocol_doi="10.17504/protocols.io.x",
        mask_ids={"cells": "CL:0000000"}, objects_format=fmt,  # type: ignore[arg-type]
        adjacency="linkage", features=False,
    )
    return root


def _seg_file(root: Path, pattern: str) -> Path:
    return next((root / "derived" / "segmentation_masks").glob(pattern))


def _readers(work: Path) -> dict[str, Callable[[], tuple[Path, Callable[[Path], Any]]]]:
    """KIND -> (base file, function reading one mutated copy of it)."""
    from maskbundle.bundle.validate import validate_bundle
    from maskbundle.convert import read_cellpose, read_labels, read_qupath, read_stardist
    from maskbundle.io.readers import read_tsv_grid, read_xlsx_grid

    def validate(path: Path) -> Any:
        # the mutated copy replaces the bundle's file; validate_bundle must never raise
        root = path.parents[2]
        report = validate_bundle(root)
        assert report.findings
        return report

    kinds: dict[str, Callable[[], tuple[Path, Callable[[Path], Any]]]] = {
        "seg_npy": lambda: (_seg_npy(work), read_cellpose),
        "npz": lambda: (_npz(work), read_labels),
        "details_npz": lambda: (_details_npz(work), lambda p: read_stardist(p, shape=SHAPE)),
        "tiff": lambda: (_tiff(work), read_labels),
        "png": lambda: (_png(work), read_labels),
        "geojson": lambda: (_geojson(work), lambda p: read_qupath(p, shape=SHAPE)),
        "roi_zip": lambda: (_roi_zip(work), lambda p: read_stardist(p, shape=SHAPE)),
        "tsv": lambda: (_tsv(work), read_tsv_grid),
        "xlsx": lambda: (_xlsx(work), read_xlsx_grid),
        "bundle_tiff": lambda: (_seg_file(_bundle(work), "*.ome.tif*"), validate),
        "bundle_tsv": lambda: (_seg_file(_bundle(work), "*-objects.tsv"), validate),
        "bundle_xlsx": lambda: (_seg_file(_bundle(work, "xlsx"), "*-objects.xlsx"), validate),
        "bundle_csv": lambda: (_seg_file(_bundle(work), "*-linkage-adjacency.csv"), validate),
    }
    return kinds  # each built only when main() asks for it


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One seeded mutation: bytes set at random, a truncation, or an insertion/deletion."""
    b = bytearray(data)
    how = rng.random()
    if how < 0.7:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif how < 0.85:
        del b[rng.randrange(len(b)) :]
    elif how < 0.93:
        at = rng.randrange(len(b))
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        at = rng.randrange(len(b))
        del b[at : at + rng.randint(1, 16)]
    return bytes(b)


def main(kind: str, work: Path, seed: int, count: int, seconds: float) -> None:
    from maskbundle.errors import MaskBundleError

    make = _readers(work)[kind]
    base, read = make()
    data = base.read_bytes()
    stop = time.monotonic() + seconds
    n = 0
    for i in range(count):
        if time.monotonic() > stop:
            break
        base.write_bytes(mutate(data, random.Random(seed * 1_000_003 + i)))
        try:
            read(base)
            outcome = "ok"
        except MaskBundleError as exc:
            outcome = type(exc).__name__
        except Exception as exc:  # what the test forbids: reported, not raised
            outcome = f"FOREIGN {type(exc).__name__}: {str(exc)[:300]}"
        print(json.dumps({"i": i, "outcome": outcome}), flush=True)
        n += 1
    print(json.dumps({"done": n}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
