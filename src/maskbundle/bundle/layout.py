"""Paths of a Segmentation Mask dataset directory (SPEC section 1), as data.

Every path a writer or the validator uses comes from here, so the layout is stated once.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import CorruptInputError, UnsafeOverwriteError
from ..io.staging import is_stage_dir
from ..names import check_mask_name
from ..rules import ObjectsFormat

__all__ = [
    "ALLOWED_PATTERNS",
    "CONTRIBUTORS",
    "DERIVED_EXTRAS",
    "MANIFEST",
    "MANIFEST_COLUMNS",
    "PROVENANCE",
    "SEG_DIR",
    "centroid_adjacency_path",
    "check_replaceable",
    "label_map_path",
    "linkage_adjacency_path",
    "mesh_path",
    "objects_path",
    "ome_tiff_path",
    "read_provenance",
]

SEG_DIR = Path("derived/segmentation_masks")
DERIVED_EXTRAS = Path("derived/extras")
CONTRIBUTORS = Path("extras/contributors.tsv")
PROVENANCE = DERIVED_EXTRAS / "provenance.json"
MANIFEST = SEG_DIR / "segmentation-masks.csv"
OME_SUFFIX = ".segmentations.ome.tiff"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "Channel number",
    "Mask name",
    "Source file",
    "Ontology abbreviation",
    "Ontology ID",
    "Protocol",
    "Is entire image masked",
    "Num objects",
)

# (regex over the path relative to the dataset directory, required) of directory schema 2.7
ALLOWED_PATTERNS: tuple[tuple[str, bool], ...] = (
    (r"extras/.*", True),
    (r"derived/extras/.*", True),
    (r"derived/segmentation_masks/[^/]+\.segmentations\.ome\.tiff", True),
    (r"derived/segmentation_masks/[^/]+-objects\.(?:xlsx|tsv)", True),
    (r"derived/segmentation_masks/[^/]+-centroid-adjacency\.csv", False),
    (r"derived/segmentation_masks/[^/]+-linkage-adjacency\.csv", False),
    (r"derived/segmentation_masks/[^/]+-mesh\.glb", False),
    (r"derived/segmentation_masks/transformations/.*", False),
    (r"derived/segmentation_masks/segmentation-masks\.csv", False),
)


# Every file write_segmentation_bundle, add_adjacency and add_meshes write: a directory
# holding only these (and a provenance.json of ours) may be replaced with overwrite=True.
WRITTEN_PATTERNS: tuple[str, ...] = (
    r"extras/contributors\.tsv",
    r"derived/extras/provenance\.json",
    r"derived/extras/[^/]+-label-map\.csv",
    r"derived/segmentation_masks/[^/]+\.segmentations\.ome\.tiff",
    r"derived/segmentation_masks/[^/]+-objects\.(?:xlsx|tsv)",
    r"derived/segmentation_masks/[^/]+-(?:centroid|linkage)-adjacency\.csv",
    r"derived/segmentation_masks/[^/]+-mesh\.glb",
    r"derived/segmentation_masks/segmentation-masks\.csv",
)


def check_replaceable(target: Path) -> None:
    """Refuse to replace ``target`` unless it is a bundle this tool wrote (or empty).

    A bundle of ours has a provenance.json naming a maskbundle version and no file
    outside :data:`WRITTEN_PATTERNS` (our own stage directories aside); anything else
    the user may have put there would be lost.
    """
    def refuse(why: str) -> UnsafeOverwriteError:
        return UnsafeOverwriteError(
            f"{target} exists and is not a bundle written by maskbundle ({why}); maskbundle "
            "replaces only its own bundles: choose a new directory"
        )

    if target.is_symlink() or not target.is_dir():
        raise refuse("it is not a directory")
    found_any = False
    for root, dirs, files in os.walk(target):
        base = Path(root)
        for d in list(dirs):
            if (base / d).is_symlink():
                raise refuse(f"it holds the link {(base / d).relative_to(target).as_posix()!r}")
            if is_stage_dir(base / d):
                dirs.remove(d)  # a stage of a killed run of ours
        for f in files:
            rel = (base / f).relative_to(target).as_posix()
            if (base / f).is_symlink() or not any(re.fullmatch(rx, rel) for rx in WRITTEN_PATTERNS):
                raise refuse(f"it holds {rel!r}")
            found_any = True
    if not found_any:
        return  # nothing to lose
    try:
        prov = json.loads((target / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        prov = None
    if not isinstance(prov, dict) or "maskbundle_version" not in prov:
        raise refuse(f"no {PROVENANCE.as_posix()} of maskbundle")


def path_allowed(rel: str) -> bool:
    return any(re.fullmatch(rx, rel) for rx, _ in ALLOWED_PATTERNS)


def ome_tiff_path(stem: str) -> Path:
    return SEG_DIR / f"{stem}{OME_SUFFIX}"


def objects_path(mask: str, fmt: ObjectsFormat) -> Path:
    return SEG_DIR / f"{check_mask_name(mask)}-objects.{fmt}"


def centroid_adjacency_path(mask: str) -> Path:
    return SEG_DIR / f"{check_mask_name(mask)}-centroid-adjacency.csv"


def linkage_adjacency_path(mask: str) -> Path:
    return SEG_DIR / f"{check_mask_name(mask)}-linkage-adjacency.csv"


def mesh_path(mask: str) -> Path:
    return SEG_DIR / f"{check_mask_name(mask)}-mesh.glb"


def label_map_path(mask: str) -> Path:
    return DERIVED_EXTRAS / f"{check_mask_name(mask)}-label-map.csv"


def read_provenance(path: Path) -> dict[str, Any]:
    """``derived/extras/provenance.json`` of a bundle as a dict.

    Raises :class:`CorruptInputError` when the file is not UTF-8 JSON holding an object
    (a hand-edited or truncated file), naming the file and the first problem.
    """
    try:
        doc = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as exc:
        raise CorruptInputError(f"{path}: cannot be read ({exc})") from exc
    except RecursionError as exc:
        raise CorruptInputError(f"{path}: JSON nested too deeply to be provenance") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CorruptInputError(
            f"{path}: not valid JSON ({str(exc)[:200]}); restore it from the bundle's "
            "original or delete it and rewrite the bundle"
        ) from exc
    if not isinstance(doc, dict):
        raise CorruptInputError(
            f"{path}: holds a JSON {type(doc).__name__}, not the object maskbundle writes"
        )
    return doc
