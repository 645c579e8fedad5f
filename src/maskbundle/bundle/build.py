"""``write_segmentation_bundle``: masks in, a complete dataset directory out.

Stages: resolve options -> check and relabel each mask -> per-mask tables -> write all
files into a staging directory -> move it into place. Nothing touches the target until
every file has been written.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._version import __version__
from ..errors import (
    HubmapConversionWarning,
    LabelError,
    OptionError,
    ShapeMismatchError,
    TableFormatError,
)
from ..io.adjacency_csv import write_adjacency_csv
from ..io.checksum import sha256_file
from ..io.intensity import read_intensity_image
from ..io.ometiff import build_ome_xml, read_parent_image, write_label_ome_tiff
from ..io.staging import staged_path
from ..io.tables import write_csv, write_json, write_objects_table, write_tsv
from ..labels.relabel import label_dtype, relabel_mask
from ..measure.centroids import object_centroids
from ..measure.features import (
    CENTROID_COLUMNS,
    STATISTICS,
    FeatureTable,
    compute_features,
    user_columns,
)
from ..model import ColumnSpec, Mask, ParentImage, PhysicalSize, RelabelledMask, Segmentation
from ..names import check_mask_names, safe_stem
from ..progress import stage_progress
from ..rules import EXCEL_MAX_OBJECTS, check_obo_id
from . import layout
from .adjacency import check_adjacency_request, mask_adjacency, provenance_entry
from .contributors import CONTRIBUTOR_COLUMNS, contributor_rows
from .hubmap import conversion_problem
from .meshes import mesh_mask, mesh_provenance, resolve_mesh_options, select_mesh_masks
from .objects import (
    object_type_values,
    objects_frame,
    ontology_abbreviation,
    required_specs,
)

__all__ = ["DEFAULT_MASK_IDS", "write_segmentation_bundle"]

ObjectsFormat = Literal["tsv", "xlsx"]

# Mask ids used when none is given for these common names (recorded in provenance).
DEFAULT_MASK_IDS = {
    "cells": "CL:0000000",
    "cell": "CL:0000000",
    "nuclei": "GO:0005634",
    "nucleus": "GO:0005634",
}
_DOI_URL = re.compile(r"^(?:https?://)?(?:dx\.)?doi\.org/", re.IGNORECASE)
_DOI_RE = re.compile(r"^10\.\d{4,9}/[-._;()/:a-zA-Z0-9]+$")


def normalise_doi(value: object) -> str:
    """A bare DOI from a DOI or a doi.org URL; anything else is refused."""
    if not isinstance(value, str) or not value.strip():
        raise OptionError(
            "protocol_doi is required: the DOI of the protocol that made the masks, "
            "e.g. '10.17504/protocols.io.xxxx' (register one at protocols.io)"
        )
    doi = _DOI_URL.sub("", value.strip())
    if not _DOI_RE.fullmatch(doi):
        raise OptionError(f"protocol_doi {value!r} is not a DOI like 10.17504/protocols.io.xxxx")
    return doi


def array_checksum(array: np.ndarray) -> str:
    """sha256 over dtype, shape and the C-ordered bytes of ``array``."""
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def _without_paths(source: Any, found: list[str]) -> Any:
    """``source`` without the absolute ``path`` of input files (collected into ``found``).

    Provenance records file names and checksums only, so identical inputs in another
    folder give identical bytes; the paths still serve the overwrite check.
    """
    if isinstance(source, Mapping):
        out = {}
        for key, value in source.items():
            if key == "path" and isinstance(value, str) and "sha256" in source:
                found.append(value)
                continue
            out[key] = _without_paths(value, found)
        return out
    if isinstance(source, list | tuple):
        return [_without_paths(v, found) for v in source]
    return source


@dataclass
class _Prepared:
    """One mask after checks and relabelling, with what its files need."""

    mask: RelabelledMask
    source: Mask
    mask_id: str
    checksum: str
    input_dtype: str


def _kind(value: Any) -> str:
    return type(value).__name__


def _check_option_types(options: Mapping[str, Any]) -> None:
    """Refuse wrongly typed options of write_segmentation_bundle, one message each.

    Values are checked further where they are used; this catches what would otherwise
    be split into characters, silently truthy or a bare TypeError deep inside.
    """
    def fail(key: str, want: str, cli: str | None = None) -> OptionError:
        v = options[key]
        return OptionError(
            f"{key}={v!r} ({_kind(v)}): {key} must be {want}",
            cli=None if cli is None else f"{cli} {v!r}: must be {want}",
        )

    def is_str_seq(v: Any) -> bool:
        return isinstance(v, Sequence) and not isinstance(v, str | bytes) and all(
            isinstance(x, str) for x in v)

    o = options
    if not isinstance(o["path"], str | Path):
        raise fail("path", "a directory path (str or pathlib.Path)")
    for key in ("overwrite", "progress"):
        if not isinstance(o[key], bool | np.bool_):
            raise fail(key, "True or False")
    for key in ("name", "protocol_doi"):
        if o[key] is not None and not isinstance(o[key], str):
            raise fail(key, "text")
    if not isinstance(o["annotation_tool"], str):
        raise fail("annotation_tool", "one of the annotation tool names (text)",
                   "--annotation-tool")
    for key in ("objects_format", "compression"):
        if not isinstance(o[key], str):
            raise fail(key, "text")
    for key in ("parent_image",):
        if o[key] is not None and not isinstance(o[key], str | Path):
            raise fail(key, "a file path")
    if o["intensity_image"] is not None and not isinstance(
            o["intensity_image"], str | Path | np.ndarray):
        raise fail("intensity_image", "a numpy array (C, Y, X) / (C, Z, Y, X) or a file path")
    for key in ("mask_ids", "object_types", "extra_columns", "adjacency_options",
                "mesh_options"):
        if o[key] is not None and not isinstance(o[key], Mapping):
            raise fail(key, "a mapping (dict)")
    for key, value in (o["mask_ids"] or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise OptionError(
                f"mask_ids must map mask names to OBO ids (text), got {key!r}: {value!r}",
                cli=f"--mask-id {key}={value!r}: give NAME=OBO, e.g. cells=CL:0000000",
            )
    for key, value in (o["object_types"] or {}).items():
        if not isinstance(value, str | Mapping):
            raise OptionError(
                f"object_types[{key!r}] is a {_kind(value)}; give one OBO id (text) or a "
                "mapping {original label: OBO id}",
                cli=f"--object-type {key}={value!r}: give NAME=OBO",
            )
    for key, value in (o["extra_columns"] or {}).items():
        if not (isinstance(value, tuple) and len(value) == 2
                and isinstance(value[0], pd.DataFrame) and isinstance(value[1], Mapping)):
            raise OptionError(
                f"extra_columns[{key!r}] must be a (DataFrame, {{column: ColumnSpec}}) pair"
            )
    if o["marker_names"] is not None and not is_str_seq(o["marker_names"]):
        raise fail("marker_names", "a list of names (text), one per channel", "--marker")
    alt = o["alternative_ids"]
    if alt is not None and not (isinstance(alt, Mapping) or is_str_seq(alt)):
        raise fail("alternative_ids", "a mapping marker -> id or a list of ids")
    feats = o["features"]
    if not (isinstance(feats, bool | str) or feats is None or is_str_seq(feats)):
        raise fail("features", "True, False or a list of feature names", "--features")
    adj = o["adjacency"]
    if not (adj is None or isinstance(adj, str) or is_str_seq(adj)):
        raise fail("adjacency", "'centroid', 'linkage', a list of them or None", "--adjacency")
    meshes = o["meshes"]
    if not (isinstance(meshes, bool | np.bool_) or is_str_seq(meshes)):
        raise fail("meshes", "True, False or a list of mask names", "--meshes")
    contributors = o["contributors"]
    if contributors is not None and (isinstance(contributors, str | bytes | Mapping)
                                     or not isinstance(contributors, Sequence)):
        raise fail("contributors", "a list of records (dicts), one per person")


def _as_masks(masks: Mapping[str, Any] | Segmentation) -> tuple[dict[str, Mask], Segmentation | None]:
    seg = masks if isinstance(masks, Segmentation) else None
    items = seg.masks if seg is not None else masks
    if not isinstance(items, Mapping):
        raise OptionError(
            "masks must be a mapping of mask name -> label array, e.g. {'cells': labels}"
        )
    names = check_mask_names(items.keys())
    out = {}
    for name in names:
        value = items[name]
        if isinstance(value, Mask):
            out[name] = value
            continue
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise LabelError(
                f"mask {name!r}: cannot be read as one array ({exc}); pass a 2D or 3D "
                "integer numpy array"
            ) from exc
        out[name] = Mask(labels=arr)
    return out, seg


def _resolve_physical_size(
    physical_size: Any, parent: ParentImage | None, seg: Segmentation | None, ndim: int
) -> PhysicalSize:
    if parent is not None:
        ps = parent.physical_size
    elif physical_size is not None:
        ps = PhysicalSize.coerce(physical_size)
    elif seg is not None and seg.physical_size is not None:
        ps = seg.physical_size
    else:
        raise OptionError(
            "physical_size is required: micrometres per pixel as (x, y) or (x, y, z), "
            "or pass parent_image= to copy it from the parent OME-TIFF",
            cli="the pixel size is required: give --physical-size X Y [Z] in micrometres "
            "per pixel, or --parent to copy it from the parent OME-TIFF",
        )
    if ndim == 3 and ps.z is None:
        raise OptionError(
            "3D masks need a z step: pass physical_size=(x, y, z) in micrometres "
            "(or a parent image with PhysicalSizeZ)",
            cli="3D masks need a z step: give --physical-size X Y Z in micrometres "
            "(or --parent with PhysicalSizeZ)",
        )
    ps.warn_if_implausible(stacklevel=4)
    if ndim == 2 and ps.z is not None and parent is None:
        ps = PhysicalSize(ps.x, ps.y, None, ps.unit_x, ps.unit_y, ps.unit_z)
    return ps


def _check_shapes(prepared: Sequence[_Prepared], parent: ParentImage | None) -> tuple[int, ...]:
    shapes = {p.mask.name: p.mask.labels.shape for p in prepared}
    first_name, shape = next(iter(shapes.items()))
    for name, other in shapes.items():
        if other != shape:
            raise ShapeMismatchError(
                f"mask {name!r} has shape {other} but mask {first_name!r} has {shape}; all masks "
                "of a bundle must be drawn on the same image"
            )
    if parent is not None:
        want = (parent.size_y, parent.size_x) if len(shape) == 2 else (
            parent.size_z, parent.size_y, parent.size_x)
        if len(shape) == 2 and parent.size_z != 1:
            want = (parent.size_z, parent.size_y, parent.size_x)
        if tuple(shape) != want:
            raise ShapeMismatchError(
                f"masks have shape {shape} but the parent image {parent.path} is {want} "
                "(Z, Y, X); masks must be drawn on the parent image at full resolution"
            )
    return tuple(shape)


def _feature_plan(features: bool | str | Sequence[str]) -> tuple[bool, tuple[str, ...]]:
    """(morphology?, intensity statistics) from the ``features`` option."""
    if features is True:
        return True, ("mean",)
    if features is False or features is None:
        return False, ()
    items = [features] if isinstance(features, str) else list(features)
    allowed = ("morphology", *STATISTICS)
    bad = [f for f in items if f not in allowed]
    if bad:
        raise OptionError(
            f"features {bad} unknown; choose from {list(allowed)}, True (morphology and mean "
            "intensities) or False (required columns only)"
        )
    return "morphology" in items, tuple(f for f in STATISTICS if f in items)


def _intensity(
    intensity_image: np.ndarray | str | Path | None,
    marker_names: Sequence[str] | None,
    shape: tuple[int, ...],
) -> tuple[np.ndarray | None, list[str] | None, str | None]:
    """The intensity array for masks of ``shape``, marker names, and its source."""
    if intensity_image is None:
        if marker_names is not None:
            raise OptionError("marker_names given without an intensity_image")
        return None, None, None
    if isinstance(intensity_image, str | Path):
        image = read_intensity_image(intensity_image)
        names = list(marker_names) if marker_names is not None else image.channel_names
        return image.for_masks(shape), names, Path(intensity_image).name
    return np.asarray(intensity_image), None if marker_names is None else list(marker_names), \
        "array"


def _mask_features(
    p: _Prepared,
    *,
    physical_size: PhysicalSize,
    morphology: bool,
    statistics: tuple[str, ...],
    intensity: np.ndarray | None,
    marker_names: list[str] | None,
    alternative_ids: Mapping[str, str] | Sequence[str] | None,
    extra: tuple[pd.DataFrame, Mapping[str, ColumnSpec]] | None,
) -> FeatureTable:
    """Computed features, then the ``extra_columns`` of this mask, indexed by Object ID."""
    table = compute_features(
        p.mask.labels,
        physical_size=physical_size,
        intensity_image=intensity if statistics else None,
        marker_names=marker_names if statistics else None,
        alternative_ids=alternative_ids if statistics else None,
        statistics=statistics or ("mean",),
        morphology=morphology,
    )
    if extra is not None:
        table = table.join(user_columns(extra[0], extra[1], p.mask.original_ids))
    return table


def _feature_columns(p: _Prepared, reserved: set[str]) -> list[tuple[ColumnSpec, np.ndarray]]:
    """Extra table columns from ``Mask.features`` (indexed by original label), in Object ID order."""
    feats = p.source.features
    if feats is None or not len(feats.columns):
        return []
    name = p.mask.name
    index = np.asarray(feats.index)
    if index.dtype.kind not in "iu" or pd.Index(index).has_duplicates:
        raise OptionError(
            f"mask {name!r}: features must be indexed by unique integer labels of the mask"
        )
    stray = np.setdiff1d(index.astype(np.int64), p.mask.original_ids.astype(np.int64))
    if stray.size:
        raise OptionError(
            f"mask {name!r}: features name label {int(stray[0])}, which is not in the mask "
            f"({stray.size} such label(s)); drop those rows"
        )
    frame = feats.reindex(p.mask.original_ids.astype(np.int64))
    out: list[tuple[ColumnSpec, np.ndarray]] = []
    for col in frame.columns:
        spec = p.source.feature_specs.get(col)
        if spec is None or spec.name != col:
            raise OptionError(
                f"mask {name!r}: feature column {col!r} has no ColumnSpec in feature_specs"
            )
        if col in reserved:
            raise OptionError(
                f"mask {name!r}: feature column {col!r} would replace a required column; rename it"
            )
        values = frame[col].to_numpy()
        if spec.type == "integer":
            if pd.isna(values).any():
                raise OptionError(
                    f"mask {name!r}: integer feature column {col!r} has no value for some "
                    "objects; integer columns must be filled"
                )
            whole_floats = values.dtype.kind == "f" and bool(
                np.all(values == np.round(values)))
            if values.dtype.kind in "iu" or whole_floats:
                values = values.astype(np.int64)
            # anything else (1.5, "x", True) is left for the table check to refuse: a
            # cast here would truncate it silently
        elif spec.type != "float":
            values = np.array(["" if pd.isna(v) else v for v in values], dtype=object)
        out.append((spec, values))
    return out


def _check_extra_names(mask: str, names: list[str], reserved: set[str]) -> None:
    """Computed, converter and user columns must not repeat or shadow a required column."""
    for i, name in enumerate(names):
        if name in reserved:
            raise TableFormatError(
                f"mask {mask!r}: column {name!r} has the name of a required column; rename it"
            )
        if name in names[:i]:
            raise TableFormatError(
                f"mask {mask!r}: column {name!r} occurs twice (computed features, Mask.features "
                "and extra_columns share one table); rename one of them"
            )


def _entire_image_masked(labels: np.ndarray) -> str:
    return "Yes" if labels.size and bool(np.all(labels != 0)) else "No"


@dataclass(frozen=True)
class _TablePlan:
    """Everything an objects table needs besides the mask itself."""

    source_file: str
    protocol_doi: str
    annotation_tool: str
    physical_size: PhysicalSize
    with_features: bool
    morphology: bool
    statistics: tuple[str, ...]
    intensity: np.ndarray | None
    marker_names: list[str] | None
    alternative_ids: Mapping[str, str] | Sequence[str] | None
    extra_columns: Mapping[str, tuple[pd.DataFrame, Mapping[str, ColumnSpec]]]
    object_types: Mapping[str, Any]


def _objects_table(
    p: _Prepared, plan: _TablePlan
) -> tuple[list[ColumnSpec], pd.DataFrame, np.ndarray]:
    """Specs and rows of one mask's objects table, and the exact (z, y, x) centroids."""
    extra_specs: list[tuple[ColumnSpec, np.ndarray]] = []
    if plan.with_features:
        table = _mask_features(
            p, physical_size=plan.physical_size, morphology=plan.morphology,
            statistics=plan.statistics, intensity=plan.intensity,
            marker_names=plan.marker_names, alternative_ids=plan.alternative_ids,
            extra=plan.extra_columns.get(p.mask.name),
        )
        f = table.frame
        cents = np.stack([
            f[CENTROID_COLUMNS["z"]].to_numpy() if CENTROID_COLUMNS["z"] in f
            else np.zeros(len(f)),
            f[CENTROID_COLUMNS["y"]].to_numpy(),
            f[CENTROID_COLUMNS["x"]].to_numpy(),
        ], axis=1)
        extra_specs = [(spec, f[name].to_numpy()) for name, spec in table.specs.items()]
    else:
        _, cents = object_centroids(p.mask.labels, p.mask.n_objects)
    reserved = {"Object ID", *(s.name for s in required_specs(plan.annotation_tool))}
    extra_specs += _feature_columns(p, reserved)
    _check_extra_names(p.mask.name, [spec.name for spec, _ in extra_specs], reserved)
    types = object_type_values(
        p.mask, plan.object_types.get(p.mask.name, p.source.object_types), p.mask_id)
    specs, frame = objects_frame(
        p.mask,
        source_file=plan.source_file,
        mask_id=p.mask_id,
        protocol_doi=plan.protocol_doi,
        annotation_tool=plan.annotation_tool,
        centroids_zyx=cents,
        object_types=types,
        extra=extra_specs,
    )
    return specs, frame, cents


def write_segmentation_bundle(
    path: str | Path,
    masks: Mapping[str, Any] | Segmentation,
    *,
    physical_size: PhysicalSize | tuple[float, ...] | float | None = None,
    mask_ids: Mapping[str, str] | None = None,
    protocol_doi: str | None = None,
    parent_image: str | Path | None = None,
    name: str | None = None,
    annotation_tool: str = "In-house",
    object_types: Mapping[str, Any] | None = None,
    objects_format: ObjectsFormat = "tsv",
    contributors: Sequence[Mapping[str, Any]] | None = None,
    compression: Literal["zlib", "zstd"] = "zlib",
    intensity_image: np.ndarray | str | Path | None = None,
    marker_names: Sequence[str] | None = None,
    alternative_ids: Mapping[str, str] | Sequence[str] | None = None,
    features: bool | Sequence[str] = True,
    extra_columns: Mapping[str, tuple[pd.DataFrame, Mapping[str, ColumnSpec]]] | None = None,
    adjacency: str | Sequence[str] | None = None,
    adjacency_options: Mapping[str, Any] | None = None,
    meshes: bool | Sequence[str] = False,
    mesh_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a HuBMAP Segmentation Mask dataset directory and return its path.

    Parameters
    ----------
    path : str or Path
        The dataset directory to create (it holds ``extras/`` and ``derived/``).
    masks : mapping of str to array_like of shape (M, N) or (P, M, N), or Segmentation
        Mask name -> integer labels (0 = background), or :class:`~maskbundle.Mask` objects
        as returned by the readers in :mod:`maskbundle.convert`. Names must be lower case
        and digit-free (``cells``, ``nuclei``, ``glomeruli``).
    physical_size : (x, y) or (x, y, z)
        Micrometres per pixel (column, row, plane). Not needed with ``parent_image``.
    mask_ids : mapping of str to str
        OBO id of each mask's class (``CL:0000000`` cells, ``GO:0005634`` nuclei, which
        are also the defaults for masks named ``cells`` and ``nuclei``).
    protocol_doi : str
        DOI of the protocol that produced the masks (required; a doi.org URL is accepted
        and stored bare).
    parent_image : path, optional
        Parent OME-TIFF: its SizeX/Y/Z, physical sizes and units are copied verbatim and
        masks of another shape are refused.
    name : str, optional
        Stem of ``<name>.segmentations.ome.tiff``; default from the directory name.
    annotation_tool : str
        One of Azimuth, STELLAR, FUSION, In-house, Manual, Not applicable.
    object_types : mapping of mask name to an obo id or {original label: obo id}
        The ``Object type`` column; objects without one get the mask's own id
        (``mask_ids``), so the column is filled on every row as HuBMAP's conversion needs.
    objects_format : {"tsv", "xlsx"}
        Tables beyond Excel's row limit are written as TSV with a warning.
    contributors : sequence of mappings
        Rows of ``extras/contributors.tsv`` (fields as in SPEC section 1).
    compression : {"zlib", "zstd"}
        OME-TIFF tile compression; zstd is faster but fewer readers decode it.
    intensity_image : array of shape (C, Y, X) / (C, Z, Y, X), or a path, optional
        Marker intensities on the masks' pixel grid (an OME-TIFF's channel names become
        the marker names); adds per-marker intensity columns to every objects table.
    marker_names : sequence of str, optional
        One name per intensity channel (default: the OME channel names, else
        ``Channel 0``, ``Channel 1``, ...). Column names are case-folded
        (``dapi mean intensity``), the marker's spelling is kept in the Description.
    alternative_ids : mapping marker -> str or sequence, optional
        ``Alternative ID`` header cell of each marker's columns (for example an RRID),
        written verbatim; markers without one get their own name there.

    Warns
    -----
    HubmapConversionWarning
        For each table with antibody/gene/IMS columns (marker intensities): valid, but
        HuBMAP's current post-ingest conversion cannot carry them (docs/hubmap-ingest.md).
    features : bool or sequence of str
        Feature columns (see :func:`maskbundle.measure.features.compute_features`):
        True (default) = morphology plus mean intensity per marker; False = only the
        required columns; or a selection of ``"morphology"``, ``"mean"``, ``"median"``,
        ``"std"``, ``"min"``, ``"max"``, ``"sum"``.
    extra_columns : mapping of mask name to (DataFrame, {column: ColumnSpec}), optional
        User columns per mask, indexed by ORIGINAL label, exactly one row per object
        (checked by :func:`maskbundle.measure.features.user_columns`); a ``Mask``'s own
        ``features`` are written after them.
    adjacency : "centroid", "linkage", both, or None
        Also write ``<mask>-centroid-adjacency.csv`` / ``<mask>-linkage-adjacency.csv``
        for every mask (SPEC section 6); definitions and parameters are recorded in
        provenance.json under ``"adjacency"``.
    adjacency_options : mapping, optional
        ``method``, ``max_distance``, ``k``, ``radius`` (centroid) and ``max_gap``,
        ``contact`` (linkage); see :mod:`maskbundle.measure.adjacency`.
    meshes : bool or sequence of str
        Write ``<mask>-mesh.glb`` for every mask (True) or for the named masks; the masks
        must be 3D. An empty mask gets no file and a note under "meshes" in provenance.
    mesh_options : mapping, optional
        ``simplify`` (default True), ``max_error`` (micrometres, default three times the
        largest voxel edge), ``reduction`` (default 100); see
        :func:`maskbundle.mesh.mesh_labels`.
    overwrite : bool
        Replace an existing bundle at ``path``: only one maskbundle wrote (its
        provenance.json and nothing but maskbundle's files), never one holding an input,
        the working directory or a parent of it (:class:`UnsafeOverwriteError`). The swap
        is atomic on Linux; elsewhere a run killed during it is finished by the next one.
    progress : bool
        Show a progress bar of the stages on stderr (the CLI turns it on at a terminal).

    Returns
    -------
    Path
        The dataset directory.
    """
    _check_option_types(locals())
    target = Path(path)
    if objects_format not in ("tsv", "xlsx"):
        raise OptionError(f"objects_format must be 'tsv' or 'xlsx', got {objects_format!r}")
    if compression not in ("zlib", "zstd"):
        raise OptionError(f"compression must be 'zlib' or 'zstd', got {compression!r}")
    doi = normalise_doi(protocol_doi)
    adj_kinds, adj_opts = check_adjacency_request(adjacency, adjacency_options)
    given, seg = _as_masks(masks)
    parent = read_parent_image(parent_image) if parent_image is not None else None
    rows = contributor_rows(contributors)
    mask_ids = dict(mask_ids or {})
    object_types = dict(object_types or {})
    extra_columns = dict(extra_columns or {})
    morphology, statistics = _feature_plan(features)
    for key in [*mask_ids, *object_types, *extra_columns]:
        if key not in given:
            raise OptionError(
                f"option names mask {key!r}, which is not among {list(given)}",
                cli=f"--mask-id/--object-type name mask {key!r}, which is not among "
                f"{list(given)}",
            )

    prepared: list[_Prepared] = []
    for mname, m in given.items():
        mid = mask_ids.get(mname) or m.mask_id or DEFAULT_MASK_IDS.get(mname)
        if mid is None:
            raise OptionError(
                f"mask {mname!r} needs an OBO id: pass mask_ids={{{mname!r}: 'UBERON:0000074'}} "
                "(for example) naming the class of its objects",
                cli=f"mask {mname!r} needs an OBO id: give --mask-id {mname}=UBERON:0000074 "
                "(for example) naming the class of its objects",
            )
        check_obo_id(mid, f"mask id of {mname!r}")
        raw = np.asarray(m.labels)
        relabelled = relabel_mask(mname, raw)
        prepared.append(_Prepared(relabelled, m, mid, array_checksum(raw), str(raw.dtype)))
    shape = _check_shapes(prepared, parent)
    ps = _resolve_physical_size(physical_size, parent, seg, len(shape))
    intensity, markers, intensity_source = _intensity(intensity_image, marker_names, shape)
    if intensity is not None and not statistics:
        raise OptionError(
            "an intensity image was given but features select no intensity statistic; "
            "add e.g. 'mean' to features"
        )
    if statistics and intensity is None and features is not True:
        raise OptionError(
            f"features {list(statistics)} need an intensity image: pass intensity_image=",
            cli=f"features {list(statistics)} need an intensity image: give --intensity FILE",
        )
    with_features = morphology or intensity is not None or bool(extra_columns)
    mesh_names = select_mesh_masks(meshes, [p.mask.name for p in prepared], is_3d=len(shape) == 3)
    if mesh_options is not None and not mesh_names:
        raise OptionError("mesh_options given but no meshes requested: pass meshes=True as well")
    mesh_opts = resolve_mesh_options(mesh_options, ps) if mesh_names else {}

    stem = safe_stem(name if name is not None else target.name)
    tiff_rel = layout.ome_tiff_path(stem)
    source_file = tiff_rel.name
    dtype = label_dtype(max(p.mask.n_objects for p in prepared))
    zyx = shape if len(shape) == 3 else (1, *shape)

    fmt: ObjectsFormat = objects_format
    too_many = [p.mask.name for p in prepared if p.mask.n_objects > EXCEL_MAX_OBJECTS]
    if fmt == "xlsx" and too_many:
        warnings.warn(
            f"masks {too_many} have more objects than Excel's row limit; their tables are "
            "written as TSV (HuBMAP's online table check reads only xlsx)",
            stacklevel=2,
        )

    provenance: dict[str, Any] = {
        "maskbundle_version": __version__,
        "options": {
            "physical_size_um_zyx": list(ps.um_zyx()),
            "physical_size": {"x": ps.x, "y": ps.y, "z": ps.z, "unit_x": ps.unit_x,
                              "unit_y": ps.unit_y, "unit_z": ps.unit_z},
            "parent_image": None if parent is None else Path(parent.path).name,
            "parent_image_sha256": None if parent is None else sha256_file(parent.path),
            "protocol_doi": doi,
            "annotation_tool": annotation_tool,
            "objects_format": objects_format,
            "compression": compression,
            "name": stem,
        },
        "features": {
            "morphology": morphology,
            "intensity_statistics": list(statistics) if intensity is not None else [],
            "intensity_image": intensity_source,
            "intensity_image_sha256": sha256_file(intensity_image)
            if isinstance(intensity_image, str | Path) else (
                None if intensity is None else array_checksum(np.asarray(intensity_image))),
            "definitions": "scikit-image regionprops with spacing = pixel size, except where "
                           "a column's Description says otherwise",
        },
        "relabel": "ascending by original label to 1..N; 0 stays background",
        "masks": {},
        "source": dict(seg.source) if seg is not None else {},
    }

    inputs: list[str] = []
    provenance["source"] = _without_paths(provenance["source"], inputs)
    for p in prepared:
        p_source = _without_paths(p.source.source, inputs)
        provenance["masks"].setdefault(p.mask.name, {})["source"] = p_source
    inputs += [str(x) for x in (parent_image, intensity_image) if isinstance(x, str | Path)]

    n_stages = len(prepared) * (1 + len(adj_kinds)) + len(mesh_names) + 1
    with staged_path(
        target, overwrite=overwrite, guard=layout.check_replaceable, inputs=inputs
    ) as stage, stage_progress(
        n_stages, enabled=progress, desc=f"writing {target.name}"
    ) as advance:
        seg_dir = stage / layout.SEG_DIR
        seg_dir.mkdir(parents=True)
        (stage / layout.DERIVED_EXTRAS).mkdir(parents=True)
        (stage / layout.CONTRIBUTORS).parent.mkdir(parents=True)

        stack = np.empty((len(prepared), *zyx), dtype=dtype)
        plan = _TablePlan(
            source_file=source_file, protocol_doi=doi, annotation_tool=annotation_tool,
            physical_size=ps, with_features=with_features, morphology=morphology,
            statistics=statistics if intensity is not None else (), intensity=intensity,
            marker_names=markers, alternative_ids=alternative_ids,
            extra_columns=extra_columns, object_types=object_types,
        )
        manifest = []
        for c, p in enumerate(prepared):
            stack[c] = p.mask.labels.reshape(zyx)
            specs, frame, cents = _objects_table(p, plan)
            mfmt: ObjectsFormat = "tsv" if p.mask.name in too_many else fmt
            write_objects_table(stage / layout.objects_path(p.mask.name, mfmt), specs, frame)
            problem = conversion_problem([s.name for s in specs], [s.feature_class for s in specs])
            if problem:
                warnings.warn(HubmapConversionWarning(
                    f"{layout.objects_path(p.mask.name, mfmt).name}: {problem}"), stacklevel=2)
            advance(f"{p.mask.name} table")
            if p.mask.changed:
                write_csv(
                    stage / layout.label_map_path(p.mask.name),
                    ("Original label", "Object ID"),
                    zip(p.mask.original_ids.tolist(), range(1, p.mask.n_objects + 1), strict=True),
                )
            manifest.append(
                (c, p.mask.name, source_file, ontology_abbreviation(p.mask_id), p.mask_id, doi,
                 _entire_image_masked(p.mask.labels), p.mask.n_objects)
            )
            if adj_kinds:
                frames = mask_adjacency(
                    p.mask.labels, physical_size=ps, kinds=adj_kinds, options=adj_opts,
                    centroids_px=cents,
                )
                for kind, adj in frames.items():
                    entry = provenance_entry(p.mask.name, kind, adj)
                    write_adjacency_csv(seg_dir / entry["file"], adj)
                    advance(f"{p.mask.name} {kind} adjacency")
                    adj_prov = provenance.setdefault("adjacency", {})
                    adj_prov.setdefault(p.mask.name, {})[kind] = entry
            provenance["masks"][p.mask.name] = {
                **provenance["masks"][p.mask.name],
                "channel": c,
                "objects": p.mask.n_objects,
                "mask_id": p.mask_id,
                "input_sha256": p.checksum,
                "input_dtype": p.input_dtype,
                "shape": list(p.mask.labels.shape),
                "relabelled": p.mask.changed,
                "objects_table": layout.objects_path(p.mask.name, mfmt).name,
            }

        if mesh_names:
            mesh_entries = {}
            for p in prepared:
                if p.mask.name in mesh_names:
                    _, mesh_entries[p.mask.name] = mesh_mask(
                        stage, p.mask.name, p.mask.labels, ps, mesh_opts
                    )
                    advance(f"{p.mask.name} meshes")
            provenance["meshes"] = mesh_provenance(mesh_opts, mesh_entries)

        xml = build_ome_xml(
            channel_names=[p.mask.name for p in prepared],
            shape_zyx=zyx,  # type: ignore[arg-type]
            dtype=dtype,
            physical_size=ps,
            image_name=stem,
            parent=parent,
        )
        levels = write_label_ome_tiff(stage / tiff_rel, stack, ome_xml=xml, compression=compression)
        advance("OME-TIFF")
        del stack
        provenance["ome_tiff"] = {"file": source_file, "dtype": str(dtype), "levels": levels,
                                  "tile": 512, "downsampling": "stride: level[k] = level0[..., ::2**k, ::2**k]"}
        write_csv(stage / layout.MANIFEST, layout.MANIFEST_COLUMNS, manifest)
        write_tsv(stage / layout.CONTRIBUTORS, CONTRIBUTOR_COLUMNS, rows)
        write_json(stage / layout.PROVENANCE, provenance)
    return target
