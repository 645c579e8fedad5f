"""The mesh stage of a bundle: ``<mask>-mesh.glb`` for 3D masks (SPEC section 7).

Used by :func:`~maskbundle.bundle.build.write_segmentation_bundle` (``meshes=True``) and by
:func:`add_meshes` for an existing bundle. Meshes come from the relabelled labels, so node
names are the Object IDs of the objects table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleInvalidError, CorruptInputError, OptionError, OutputExistsError
from ..io.glb import read_glb_summary, write_glb
from ..io.ometiff import read_label_ome_tiff
from ..io.staging import clear_stale_stages, staged_files
from ..io.tables import write_json
from ..mesh.labels import DEFAULT_ERROR_VOXELS, DEFAULT_REDUCTION, mesh_labels
from ..model import PhysicalSize
from . import layout

__all__ = [
    "CONVENTION",
    "add_meshes",
    "check_mesh_file",
    "mesh_mask",
    "mesh_provenance",
    "resolve_mesh_options",
    "select_mesh_masks",
]

CONVENTION = (
    "vertices (x, y, z) in micrometres; voxel centre of labels[z, y, x] at "
    "(x * PhysicalSizeX, y * PhysicalSizeY, z * PhysicalSizeZ) as in the objects table; "
    "surfaces closed at the volume border; counter-clockwise outward faces; unit "
    "area-weighted vertex normals; one node per object named by its Object ID"
)
_OPTION_KEYS = ("simplify", "max_error", "reduction")
_EMPTY = {"file": None, "objects": 0, "note": "empty mask: no objects, so no mesh file"}


def resolve_mesh_options(
    options: Mapping[str, Any] | None, physical_size: PhysicalSize
) -> dict[str, Any]:
    """Check ``mesh_options`` and fill in defaults (recorded in provenance).

    Keys: ``simplify`` (bool, default True), ``max_error`` (micrometres, default
    :func:`maskbundle.mesh.default_max_error`: three times the largest voxel edge),
    ``reduction`` (int >= 2, default 100).
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(_OPTION_KEYS))
    if unknown:
        raise OptionError(f"unknown mesh option(s) {unknown}; use {list(_OPTION_KEYS)}")
    simplify = opts.get("simplify", True)
    if not isinstance(simplify, bool):
        raise OptionError(f"mesh option simplify must be True or False, got {simplify!r}")
    max_error = opts.get("max_error")
    if max_error is None:
        max_error = DEFAULT_ERROR_VOXELS * float(max(physical_size.um_zyx()))
    if isinstance(max_error, bool) or not isinstance(max_error, int | float):
        raise OptionError(
            f"mesh option max_error must be a number (micrometres), got {max_error!r}"
        )
    if not (math.isfinite(max_error) and max_error >= 0):
        raise OptionError(f"mesh option max_error must be finite and >= 0, got {max_error!r}")
    reduction = opts.get("reduction")
    reduction = DEFAULT_REDUCTION if reduction is None else reduction
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 2:
        raise OptionError(f"mesh option reduction must be an integer >= 2, got {reduction!r}")
    return {"simplify": simplify, "max_error": float(max_error), "reduction": int(reduction)}


def select_mesh_masks(
    requested: bool | Sequence[str] | None, names: Sequence[str], *, is_3d: bool
) -> list[str]:
    """Which masks get meshes: ``True`` -> every mask, a list -> those; 2D is refused."""
    if requested is None or requested is False:
        return []
    chosen = list(names) if requested is True else list(requested)
    if isinstance(requested, str):
        chosen = [requested]
    missing = [n for n in chosen if n not in names]
    if missing:
        raise OptionError(
            f"meshes requested for {missing}, which are not masks of the bundle {list(names)}"
        )
    if chosen and not is_3d:
        raise OptionError(
            f"meshes requested for 2D masks {chosen}: meshes need 3D (Z, Y, X) masks; "
            "drop meshes=... (or --mask) for a 2D bundle"
        )
    return chosen


def mesh_mask(
    dataset: Path,
    name: str,
    labels: np.ndarray,
    physical_size: PhysicalSize,
    options: Mapping[str, Any],
) -> tuple[Path | None, dict[str, Any]]:
    """Mesh one relabelled 3D mask and write ``<dataset>/<mesh_path(name)>``.

    Returns the file written (None for an empty mask, which gets no file) and the
    provenance entry of the mask.
    """
    meshes = mesh_labels(
        labels,
        physical_size=physical_size,
        simplify=options["simplify"],
        max_error=options["max_error"],
        reduction=options["reduction"],
    )
    rel = layout.mesh_path(name)
    if not meshes:
        return None, dict(_EMPTY)
    target = dataset / rel
    write_glb(target, meshes, mask=name, overwrite=True)
    return target, {
        "file": rel.name,
        "objects": len(meshes),
        "triangles": int(sum(len(m.faces) for m in meshes)),
        "vertices": int(sum(len(m.vertices) for m in meshes)),
        "bytes": target.stat().st_size,
    }


def mesh_provenance(options: Mapping[str, Any], masks: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"meshes"`` entry of provenance.json."""
    return {
        "convention": CONVENTION,
        "mesher": "zmesh multi-label marching cubes; maskbundle quadric edge collapse "
        "(link condition, unweighted plane quadrics: vertices within max_error um of the "
        "planes of the triangles they replace; a common offset along the vertex normals, within "
        "that bound, restores each object's full-resolution volume)",
        "options": dict(options),
        "masks": dict(masks),
    }


def check_mesh_file(path: Path, object_ids: Sequence[int], mask: str) -> list[str]:
    """Problems of a ``<mask>-mesh.glb`` against the mask's Object IDs (empty when fine).

    Reads the file back with the validator's reader (:func:`read_glb_summary`): every
    node must name an Object ID of the mask, at most once, with extras naming it and
    the mask.
    """
    try:
        summary = read_glb_summary(path)
    except CorruptInputError as exc:
        return [str(exc)]
    problems: list[str] = []
    ids = {int(i) for i in object_ids}
    seen: set[int] = set()
    for k, name in enumerate(summary.node_names):
        if not name.isdigit() or int(name) not in ids:
            problems.append(f"{path.name}: node {k} name {name!r} is not an Object ID of {mask!r}")
            continue
        oid = int(name)
        if oid in seen:
            problems.append(f"{path.name}: Object ID {oid} has two nodes")
        seen.add(oid)
        extras = summary.node_extras.get(name, {})
        if not isinstance(extras, dict) or extras.get("object_id") != oid or extras.get("mask") != mask:
            problems.append(
                f"{path.name}: node {oid} extras {extras!r} do not name it and {mask!r}"
            )
    return problems


def _find_ome_tiff(dataset: Path) -> Path:
    found = sorted((dataset / layout.SEG_DIR).glob(f"*{layout.OME_SUFFIX}"))
    if len(found) != 1:
        raise CorruptInputError(
            f"{dataset} is not a bundle: expected exactly one {layout.SEG_DIR}/*{layout.OME_SUFFIX}, "
            f"found {len(found)}"
        )
    return found[0]


def add_meshes(
    path: str | Path,
    *,
    masks: Sequence[str] | None = None,
    overwrite: bool = False,
    simplify: bool = True,
    max_error: float | None = None,
    reduction: int | None = None,
) -> dict[str, Path | None]:
    """Add ``<mask>-mesh.glb`` files to an existing bundle.

    Parameters
    ----------
    path : str or Path
        The dataset directory written by ``write_segmentation_bundle``.
    masks : sequence of str, optional
        Masks (channels) to mesh; default every mask. The bundle must be 3D.
    overwrite : bool
        Replace existing mesh files (otherwise OutputExistsError, and nothing is written).
    simplify, max_error, reduction
        As in :func:`maskbundle.mesh.mesh_labels`.

    Returns
    -------
    dict of str to Path or None
        The mesh file of each requested mask; None for an empty mask (no file, noted in
        provenance).

    Notes
    -----
    All files are staged beside their targets and moved into place only after every mesh
    has been written and reread (node names against the channel's labels); provenance.json
    gains (or updates) its ``"meshes"`` entry. Afterwards the bundle is validated and any
    failed mesh rule raises BundleInvalidError.
    """
    dataset = Path(path)
    clear_stale_stages(dataset / layout.DERIVED_EXTRAS)  # finish a killed run first
    image = read_label_ome_tiff(_find_ome_tiff(dataset))
    names = list(image.channel_names)
    requested: bool | Sequence[str] = True if masks is None else list(masks)
    chosen = select_mesh_masks(requested, names, is_3d=image.is_3d)
    if image.physical_size is None or image.physical_size.z is None:
        raise CorruptInputError(
            f"{dataset}: the OME-TIFF has no PhysicalSizeX/Y/Z; meshes need them"
        )
    options = resolve_mesh_options(
        {"simplify": simplify, "max_error": max_error, "reduction": reduction}, image.physical_size
    )
    for name in chosen:
        target = dataset / layout.mesh_path(name)
        if target.exists() and not overwrite:
            raise OutputExistsError(
                f"{target} already exists; pass overwrite=True to replace it",
                cli=f"{target} already exists; add --overwrite to replace it",
            )
    prov_path = dataset / layout.PROVENANCE
    provenance: dict[str, Any] = layout.read_provenance(prov_path) if prov_path.is_file() else {}
    old = (
        provenance.get("meshes", {}).get("masks", {})
        if isinstance(provenance.get("meshes"), dict)
        else {}
    )
    entries = dict(old)
    written: dict[str, Path | None] = {}
    with staged_files(dataset / layout.DERIVED_EXTRAS) as stage:
        for name in chosen:
            c = names.index(name)
            labels = image.labels[c]
            meshes = mesh_labels(labels, physical_size=image.physical_size, **options)
            if not meshes:
                entries[name] = dict(_EMPTY)
                written[name] = None
                continue
            staged = stage.path(dataset / layout.mesh_path(name))
            write_glb(staged, meshes, mask=name)
            ids = np.unique(labels)
            problems = check_mesh_file(staged, ids[ids != 0].tolist(), name)
            if problems:
                raise BundleInvalidError("; ".join(problems))
            entries[name] = {
                "file": layout.mesh_path(name).name,
                "objects": len(meshes),
                "triangles": int(sum(len(m.faces) for m in meshes)),
                "vertices": int(sum(len(m.vertices) for m in meshes)),
                "bytes": staged.stat().st_size,
            }
            written[name] = dataset / layout.mesh_path(name)
            del meshes
        provenance["meshes"] = mesh_provenance(options, entries)
        write_json(stage.path(prov_path), provenance)
    # the files are in place: the validator's mesh rules must pass
    from .validate import validate_bundle

    failed = [f for f in validate_bundle(dataset).errors if f.code.startswith("mesh.")]
    if failed:
        raise BundleInvalidError(
            "the meshes written fail validation: "
            + "; ".join(f"{f.location}: {f.code} {f.message}" for f in failed[:5])
        )
    return written
