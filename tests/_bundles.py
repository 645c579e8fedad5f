"""Hand-built Segmentation Mask bundles for the validator tests, independent of the writer.

``build_bundle`` writes a small compliant bundle with tifffile, ome-types, openpyxl and
plain text, computing every derived value (centroids, areas, adjacency) with scipy or a
brute-force loop, never with maskbundle. ``edit_*`` helpers then break one thing.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from ome_types import to_xml
from ome_types.model import OME, Channel, Image, Pixels, TiffData
from scipy import ndimage
from scipy.spatial import Delaunay

REPO = Path(__file__).resolve().parents[1]
SEG = Path("derived/segmentation_masks")
DOI = "10.17504/protocols.io.example"
TOOLS = "Azimuth | STELLAR | FUSION | In-house | Manual | Not applicable"


def checker_path() -> Path | None:
    """../shared/tools/check_bundle.py relative to the repo root (or $MASKBUNDLE_SHARED)."""
    from helpers import CHECKER  # one definition of where the checker lives

    return CHECKER if CHECKER.is_file() else None


_DRIVER = """
import contextlib, importlib.util, io, json, sys
spec = importlib.util.spec_from_file_location("check_bundle", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
verdicts = {}
for ds in sys.argv[2:]:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            rc = mod.main([ds, "--quiet"])
    except Exception:  # the checker crashed: as a command it would exit 1
        rc = 1
    verdicts[ds] = rc == 0
print(json.dumps(verdicts))
"""


def reference_verdicts(datasets: list[Path]) -> dict[Path, bool]:
    """Reference verdicts of many bundles from ONE subprocess (imports paid once)."""
    checker = checker_path()
    if checker is None:
        pytest.skip("reference checker ../shared/tools/check_bundle.py not present")
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(checker), *map(str, datasets)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {Path(k): bool(v) for k, v in got.items()}


def two_masks(shape: tuple[int, int] = (48, 64), seed: int = 1) -> dict[str, np.ndarray]:
    """Small 2D cells (touching) and nuclei, labels 1..N."""
    from maskbundle.synthetic import synthetic_tissue

    cells, nuclei = synthetic_tissue(shape, cell_spacing=14.0, seed=seed)
    return {"cells": _sequential(cells), "nuclei": _sequential(nuclei)}


def _sequential(a: np.ndarray) -> np.ndarray:
    ids = np.unique(a)
    ids = ids[ids != 0]
    lut = np.zeros(int(a.max()) + 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    return lut[a]


# -- pixels --------------------------------------------------------------------------------


def downsample(base: np.ndarray, k: int, how: str) -> np.ndarray:
    """Level k of (..., Y, X): 'stride', 'mode' (bottom-right pixel of each block) or 'mean'."""
    f = 2**k
    if how == "stride":
        return base[..., ::f, ::f]
    h, w = base.shape[-2:]
    hh, ww = -(-h // f), -(-w // f)
    pad = np.pad(base, [(0, 0)] * (base.ndim - 2) + [(0, hh * f - h), (0, ww * f - w)], mode="edge")
    blocks = pad.reshape(*base.shape[:-2], hh, f, ww, f)
    if how == "mode":
        return blocks[..., :, f - 1, :, f - 1].copy()
    return np.round(blocks.astype(np.float64).mean(axis=(-3, -1))).astype(base.dtype)


def write_ome_tiff(
    path: Path,
    masks: dict[str, np.ndarray],
    *,
    physical_size: tuple[float, ...] = (0.5, 0.5),
    names: list[str] | None = None,
    drop_physical_x: bool = False,
    pyramid: str = "stride",
    tile: int = 32,
    dtype: Any = np.uint16,
    compression: str = "zlib",
    dimension_order: str | None = None,
) -> None:
    """All masks as channels of one OME-TIFF (CZYX planes), SubIFD pyramid to one 512 tile."""
    arrays = [m if m.ndim == 3 else m[np.newaxis] for m in masks.values()]
    data = np.stack(arrays).astype(dtype)  # (C, Z, Y, X)
    c, z, y, x = data.shape
    names = names if names is not None else list(masks)
    attrs: dict[str, Any] = {"physical_size_y": physical_size[1]}
    if not drop_physical_x:
        attrs["physical_size_x"] = physical_size[0]
    if len(physical_size) > 2:
        attrs["physical_size_z"] = physical_size[2]
    pixels = Pixels(
        dimension_order=dimension_order or ("XYZCT" if z > 1 else "XYCZT"),
        type=np.dtype(dtype).name,
        size_x=x,
        size_y=y,
        size_z=z,
        size_c=c,
        size_t=1,
        channels=[Channel(name=n, samples_per_pixel=1) for n in names],
        tiff_data_blocks=[TiffData(plane_count=c * z)],
        **attrs,
    )
    xml = to_xml(OME(images=[Image(name="test", pixels=pixels)])).encode()
    n_sub = 0
    while pyramid != "none" and min(-(-y // 2**n_sub), -(-x // 2**n_sub)) > 512:
        n_sub += 1
    planes = data.reshape(c * z, y, x)
    opts: dict[str, Any] = {
        "photometric": "minisblack",
        "compression": compression,
        "metadata": None,
    }
    if tile:
        opts["tile"] = (tile, tile)
    with tifffile.TiffWriter(path, ome=False) as tw:
        tw.write(planes, subifds=n_sub or None, description=xml, **opts)
        for k in range(1, n_sub + 1):
            tw.write(downsample(planes, k, pyramid), subfiletype=1, **opts)


# -- objects tables ------------------------------------------------------------------------

REQUIRED = [
    # name, type, unit, feature class, description, requirement
    ("Object ID", "", "", "", "", ""),
    ("Source file", "text", "", "mask", "OME-TIFF holding the mask", "REQUIRED"),
    ("Mask name", "text", "", "mask", "Channel name of the mask", "REQUIRED"),
    ("Mask ID", "obo id", "", "ontology", "Class of the mask", "REQUIRED"),
    ("Protocol for mask creation (DOI)", "doi", "", "mask", "Segmentation protocol", "REQUIRED"),
    ("Annotation tool", "text", "", "mask", "Tool that drew the mask", "REQUIRED"),
    ("Object type", "obo id", "", "ontology", "Class of the object", "OPTIONAL"),
    ("X", "integer", "pixel", "spatial", "Centroid column", "REQUIRED"),
    ("Y", "integer", "pixel", "spatial", "Centroid row", "REQUIRED"),
    ("Z", "integer", "pixel", "spatial", "Centroid plane", "REQUIRED"),
    ("Area", "integer", "pixel", "morphology", "Pixels of the object", "OPTIONAL"),
    ("Label", "text", "", "mask", "Free text note", "OPTIONAL"),
]


def objects_grid(name: str, labels: np.ndarray, source_file: str) -> list[list[str]]:
    """The objects table of one mask as rows of cell strings (SPEC section 5)."""
    lab = labels if labels.ndim == 3 else labels[np.newaxis]
    ids = np.arange(1, int(lab.max()) + 1)
    cents = np.array(ndimage.center_of_mass(np.ones_like(lab), lab, ids)).reshape(-1, 3)
    area = ndimage.sum_labels(np.ones_like(lab), lab, ids).astype(int)
    head = [
        ["Type", *[c[1] for c in REQUIRED[1:]]],
        ["Unit", *[c[2] for c in REQUIRED[1:]]],
        ["Feature class", *[c[3] for c in REQUIRED[1:]]],
        ["Description", *[c[4] for c in REQUIRED[1:]]],
        ["Protocol used to derive this feature value (DOI)", *[""] * (len(REQUIRED) - 1)],
        ["Alternative ID", *[""] * (len(REQUIRED) - 1)],
        ["Permissible values", *[TOOLS if c[0] == "Annotation tool" else "" for c in REQUIRED[1:]]],
        ["Requirement level", *[c[5] for c in REQUIRED[1:]]],
        [""] * len(REQUIRED),
        [c[0] for c in REQUIRED],
    ]
    rows = [
        [
            str(i),
            source_file,
            name,
            "CL:0000000",
            DOI,
            "In-house",
            "CL:0000000",
            str(round(cz[2])),
            str(round(cz[1])),
            str(round(cz[0])),
            str(a),
            "ok",
        ]
        for i, cz, a in zip(ids, cents, area, strict=True)
    ]
    return head + rows


def write_tsv(path: Path, grid: list[list[str]]) -> None:
    path.write_bytes("".join("\t".join(r) + "\n" for r in grid).encode())


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().split("\n")[:-1]]


def write_xlsx(path: Path, grid: list[list[str]], sheet: str = "MAIN") -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = sheet
    for r in grid:
        ws.append([int(v) if v.isdigit() else (v or None) for v in r])
    wb.save(path)


# -- adjacency and meshes ------------------------------------------------------------------


def centroids_zyx(labels: np.ndarray) -> np.ndarray:
    lab = labels if labels.ndim == 3 else labels[np.newaxis]
    ids = np.arange(1, int(lab.max()) + 1)
    return np.array(ndimage.center_of_mass(np.ones_like(lab), lab, ids)).reshape(-1, 3)


def centroid_edges(labels: np.ndarray, um_zyx: tuple[float, float, float]) -> list[list[str]]:
    """Delaunay neighbours of the 2D centroids with exact distances in micrometres."""
    c = centroids_zyx(labels)
    tri = Delaunay(c[:, 1:])
    pairs = set()
    for s in tri.simplices:
        for i in range(3):
            for j in range(i + 1, 3):
                a, b = sorted((int(s[i]) + 1, int(s[j]) + 1))
                pairs.add((a, b))
    um = np.array(um_zyx)
    return [
        [str(a), str(b), repr(float(np.sqrt((((c[a - 1] - c[b - 1]) * um) ** 2).sum())))]
        for a, b in sorted(pairs)
    ]


def touching_edges(labels: np.ndarray) -> list[list[str]]:
    """Pairs sharing an edge (4-connected), found by a plain loop over pixels."""
    pairs = set()
    h, w = labels.shape
    for yy in range(h):
        for xx in range(w):
            a = int(labels[yy, xx])
            for dy, dx in ((0, 1), (1, 0)):
                if yy + dy < h and xx + dx < w:
                    b = int(labels[yy + dy, xx + dx])
                    if a and b and a != b:
                        pairs.add((min(a, b), max(a, b)))
    return [[str(a), str(b), "0"] for a, b in sorted(pairs)]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")


def write_glb(
    path: Path, labels: np.ndarray, um_zyx: tuple[float, float, float], *, extras: bool = True
) -> None:
    """One box per object (its bounding box in micrometres), node named by its Object ID."""
    import trimesh

    scene = trimesh.Scene()
    um = np.array(um_zyx)
    labels = labels if labels.ndim == 3 else labels[np.newaxis]
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        lo = np.array([s.start for s in sl]) * um
        hi = np.array([s.stop for s in sl]) * um
        box = trimesh.creation.box(extents=(hi - lo)[::-1])
        box.apply_translation(((lo + hi) / 2)[::-1])
        scene.add_geometry(box, node_name=str(i), geom_name=f"object-{i}")
    raw = scene.export(file_type="glb")
    if extras:
        raw = _set_node_extras(raw)
    path.write_bytes(raw)


def _set_node_extras(glb: bytes) -> bytes:
    n = struct.unpack("<I", glb[12:16])[0]
    doc = json.loads(glb[20 : 20 + n])
    for node in doc["nodes"]:
        if "mesh" in node:
            node["extras"] = {"Object ID": int(node["name"])}
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    rest = glb[20 + n :]
    body = struct.pack("<I", len(js)) + b"JSON" + js + rest
    return glb[:8] + struct.pack("<I", 12 + len(body)) + body


# -- the whole bundle ----------------------------------------------------------------------

MANIFEST = [
    "Channel number",
    "Mask name",
    "Source file",
    "Ontology abbreviation",
    "Ontology ID",
    "Protocol",
    "Is entire image masked",
    "Num objects",
]


def build_bundle(
    root: Path,
    masks: dict[str, np.ndarray] | None = None,
    *,
    physical_size: tuple[float, ...] = (0.5, 0.5),
    fmt: str = "tsv",
    adjacency: bool = True,
    meshes: bool = False,
    mesh_extras: bool = True,
    tiff: Callable[..., None] | None = None,
    **tiff_options: Any,
) -> Path:
    """Write a compliant bundle of ``masks`` (default: :func:`two_masks`) into ``root``."""
    masks = two_masks() if masks is None else masks
    seg = root / SEG
    seg.mkdir(parents=True)
    (root / "extras").mkdir()
    (root / "derived" / "extras").mkdir()
    (root / "extras" / "contributors.tsv").write_text(
        "first_name\tlast_name\taffiliation\torcid\nAda\tLovelace\tNowhere\t0000-0002-1825-0097\n"
    )
    (root / "derived" / "extras" / "provenance.json").write_text("{}\n")
    source = "test.segmentations.ome.tiff"
    (tiff or write_ome_tiff)(seg / source, masks, physical_size=physical_size, **tiff_options)
    um = (physical_size[2] if len(physical_size) > 2 else 1.0, physical_size[1], physical_size[0])
    manifest = []
    for i, (name, lab) in enumerate(masks.items()):
        grid = objects_grid(name, lab, source)
        if fmt == "tsv":
            write_tsv(seg / f"{name}-objects.tsv", grid)
        else:
            write_xlsx(seg / f"{name}-objects.xlsx", grid)
        n = int(lab.max())
        manifest.append([str(i), name, source, "CL", "CL:0000000", DOI, "No", str(n)])
        if adjacency and lab.ndim == 2:
            header = ["Object ID 1", "Object ID 2", "Distance (micrometer)"]
            write_csv(seg / f"{name}-centroid-adjacency.csv", header, centroid_edges(lab, um))
            write_csv(seg / f"{name}-linkage-adjacency.csv", header, touching_edges(lab))
        if meshes:
            write_glb(seg / f"{name}-mesh.glb", lab, um, extras=mesh_extras)
    write_csv(seg / "segmentation-masks.csv", MANIFEST, manifest)
    return root


def edit_cell(path: Path, row: int, column: str, value: str) -> None:
    """Set one cell of a TSV objects table (row is 1-based as in a spreadsheet)."""
    grid = read_tsv(path)
    grid[row - 1][grid[9].index(column)] = value
    write_tsv(path, grid)


def edit_header(path: Path, label: str, column: str, value: str) -> None:
    grid = read_tsv(path)
    row = [r[0] for r in grid[:8]].index(label)
    grid[row][grid[9].index(column)] = value
    write_tsv(path, grid)
