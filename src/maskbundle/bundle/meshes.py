"""The mesh stage of a bundle: ``<mask>-mesh.glb`` for 3D masks (SPEC section 7).

Used by :func:`~maskbundle.bundle.build.write_segmentation_bundle` (``meshes=True``) and by
:func:`add_meshes` for an existing bundle (through :mod:`.amend`). Meshes come from the relabelled labels, so node
names are the Object IDs of the objects table.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError, OptionError
from ..io.glb import read_glb_summary, write_glb
from ..mesh.labels import DEFAULT_ERROR_VOXELS, DEFAULT_REDUCTION, ObjectMesh, mesh_labels
from ..model import PhysicalSize
from . import layout
from .amend import (
    AmendFile,
    commit_amendment,
    locate_bundle,
    read_masks,
    refuse_existing_targets,
    renamed_keyword,
)
from .result import BundleResult

__all__ = [
    "CONVENTION",
    "add_meshes",
    "check_mesh_file",
    "mesh_objects",
    "mesh_provenance",
    "resolve_mesh_options",
    "select_mesh_masks",
    "write_mesh_file",
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
            "drop meshes=... (or --only) for a 2D bundle"
        )
    return chosen


def mesh_objects(
    labels: np.ndarray, physical_size: PhysicalSize, options: Mapping[str, Any]
) -> list[ObjectMesh]:
    """The meshes of one relabelled 3D mask, one per object (none for an empty mask)."""
    return mesh_labels(
        labels,
        physical_size=physical_size,
        simplify=options["simplify"],
        max_error=options["max_error"],
        reduction=options["reduction"],
    )


def write_mesh_file(path: Path, name: str, meshes: Sequence[ObjectMesh]) -> dict[str, Any]:
    """Write ``<mask>-mesh.glb`` to ``path`` (a staging path) and return its provenance entry.

    An empty mask gets no file and the ``"empty mask"`` note.
    """
    if not meshes:
        return dict(_EMPTY)
    write_glb(path, meshes, mask=name, overwrite=True)
    return {
        "file": layout.mesh_path(name).name,
        "objects": len(meshes),
        "triangles": int(sum(len(m.faces) for m in meshes)),
        "vertices": int(sum(len(m.vertices) for m in meshes)),
        "bytes": path.stat().st_size,
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


def _merge_meshes(options: Mapping[str, Any]) -> Callable[[Any, Mapping[Path, Any]], Any]:
    def merge(old: Any, entries: Mapping[Path, Any]) -> dict[str, Any]:
        masks = dict(old.get("masks") or {}) if isinstance(old, dict) else {}
        masks.update(dict(entries.values()))
        return mesh_provenance(options, masks)

    return merge


def _mesh_writer(
    name: str, labels: np.ndarray, physical_size: PhysicalSize, options: Mapping[str, Any]
) -> Callable[[Path], tuple[str, dict[str, Any]]]:
    def write(path: Path) -> tuple[str, dict[str, Any]]:
        # meshed here, one mask at a time, so only one mask's meshes are in memory
        return name, write_mesh_file(path, name, mesh_objects(labels, physical_size, options))

    return write


def add_meshes(
    path: str | Path,
    *,
    meshes: bool | Sequence[str] = True,
    mesh_options: Mapping[str, Any] | None = None,
    masks: Sequence[str] | None = None,
    overwrite: bool = False,
    validate: bool = True,
    **deprecated: Any,
) -> BundleResult:
    """Add ``<mask>-mesh.glb`` files to an existing 3D bundle.

    Parameters
    ----------
    path : str or Path
        The dataset directory written by ``write_segmentation_bundle``.
    meshes : bool or sequence of str
        Which masks to mesh, as in :func:`~maskbundle.write_segmentation_bundle`: True
        (default) every mask, or the named masks.
    mesh_options : mapping, optional
        ``simplify``, ``max_error``, ``reduction``, as in
        :func:`~maskbundle.write_segmentation_bundle`.
    masks : sequence of str, optional
        Only these masks (channels); the same selection as a list given as ``meshes``.
    overwrite : bool
        Replace existing mesh files (otherwise OutputExistsError, and nothing is written).
    validate : bool
        Reread each mesh file written (node names against the mask's Object IDs) before
        it moves into place (``result.report``); a failure raises BundleInvalidError and
        nothing moves.

    Returns
    -------
    BundleResult
        The dataset directory; ``meshes`` maps each requested mask to its file (None for
        an empty mask: no file, a note in provenance), ``provenance["meshes"]`` is the
        new provenance entry.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle import write_segmentation_bundle, add_meshes
    >>> labels = np.zeros((6, 16, 16), np.uint16)
    >>> labels[1:4, 2:7, 2:7], labels[2:5, 9:14, 8:13] = 1, 2
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> bundle = write_segmentation_bundle(tmp / "vol", {"nuclei": labels},
    ...     physical_size=(0.5, 0.5, 1.0), protocol_doi="10.17504/protocols.io.example")
    >>> result = add_meshes(bundle, mesh_options={"simplify": False})
    >>> result.meshes["nuclei"].name
    'nuclei-mesh.glb'
    >>> result.provenance["meshes"]["masks"]["nuclei"]["objects"]
    2
    """
    mesh_options = _deprecated_keywords(mesh_options, deprecated)
    dataset = Path(path)
    found = read_masks(locate_bundle(dataset))
    requested: bool | Sequence[str] = meshes if masks is None else list(masks)
    chosen = select_mesh_masks(requested, found.names, is_3d=found.is_3d)
    ps = found.physical_size
    if ps is None or ps.z is None:
        raise CorruptInputError(
            f"{dataset}: the OME-TIFF has no PhysicalSizeX/Y/Z; meshes need them"
        )
    options = resolve_mesh_options(mesh_options, ps)
    targets = {name: dataset / layout.mesh_path(name) for name in chosen}
    refuse_existing_targets(list(targets.values()), overwrite)
    files = []
    for name in chosen:
        labels = found.labels[found.names.index(name)]
        ids = range(1, int(labels.max(initial=0)) + 1)  # relabelled: Object IDs 1..N
        files.append(AmendFile(
            targets[name], _mesh_writer(name, labels, ps, options),
            check=functools.partial(check_mesh_file, object_ids=ids, mask=name),
            code="mesh.nodes"))
    entries, report = commit_amendment(
        dataset, files, section="meshes", merge=_merge_meshes(options), validate=validate)
    written = {name: targets[name] if entry["file"] else None
               for name, entry in entries.values()}
    return BundleResult(
        dataset, tuple(p for p in written.values() if p is not None),
        {"meshes": mesh_provenance(options, dict(entries.values()))}, written, report)


def _deprecated_keywords(
    mesh_options: Mapping[str, Any] | None, deprecated: dict[str, Any]
) -> Mapping[str, Any] | None:
    """``simplify=``, ``max_error=``, ``reduction=`` of maskbundle <= 0.1, with a warning."""
    unknown = sorted(set(deprecated) - set(_OPTION_KEYS))
    if unknown:
        raise OptionError(f"add_meshes() got unexpected keyword(s) {unknown}")
    if not deprecated:
        return mesh_options
    renamed_keyword("add_meshes", ", ".join(sorted(deprecated)), "mesh_options={...}")
    given = {k: v for k, v in deprecated.items() if v is not None}
    return {**given, **dict(mesh_options or {})}
