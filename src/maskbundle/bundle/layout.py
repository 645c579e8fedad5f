"""Paths of a Segmentation Mask dataset directory (SPEC section 1), as data.

Every path a writer or the validator uses comes from here, so the layout is stated once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from ..errors import CorruptInputError
from ..names import check_mask_name

__all__ = [
    "ALLOWED_PATTERNS",
    "CONTRIBUTORS",
    "DERIVED_EXTRAS",
    "MANIFEST",
    "MANIFEST_COLUMNS",
    "PROVENANCE",
    "SEG_DIR",
    "centroid_adjacency_path",
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


def path_allowed(rel: str) -> bool:
    return any(re.fullmatch(rx, rel) for rx, _ in ALLOWED_PATTERNS)


def ome_tiff_path(stem: str) -> Path:
    return SEG_DIR / f"{stem}{OME_SUFFIX}"


def objects_path(mask: str, fmt: Literal["tsv", "xlsx"]) -> Path:
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
