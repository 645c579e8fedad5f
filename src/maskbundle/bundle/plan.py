"""Stage 1 of the writer: every option of ``write_segmentation_bundle`` resolved and checked.

:func:`plan_bundle` turns the keyword arguments into one frozen :class:`BundlePlan`
before any pixel is read: the target and stem, the physical size, the parent image,
the DOI, and per mask a :class:`MaskPlan` (name, mask id, object types, extra
columns, label source). Only array *shapes* are looked at here; the labels themselves
are first read by :mod:`.compute`. Input files named by options (parent OME-TIFF,
intensity image) are opened here because their sizes decide what is valid.

Whole-slide input: ``MaskPlan.labels`` is the label *source*. In memory it is a numpy
array; paths and dask/zarr arrays are opened as a lazy
:class:`~maskbundle.io.sources.LabelSource` (only ``shape`` and ``dtype`` read here).
``BundlePlan.streaming`` says whether :mod:`.tiles` runs instead of :mod:`.compute`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import LabelError, OptionError, ShapeMismatchError
from ..io.checksum import sha256_file
from ..io.intensity import open_intensity_tiles, read_intensity_image
from ..io.ometiff import read_parent_image
from ..io.sources import BandChecksum, LabelSource, open_label_source
from ..labels.checks import check_label_array
from ..measure.features import STATISTICS
from ..model import ColumnSpec, Mask, ParentImage, PhysicalSize, Segmentation
from ..names import check_mask_names, safe_stem
from ..rules import OBJECTS_FORMATS, ObjectsFormat, check_obo_id, normalise_doi
from . import layout
from .adjacency import AdjacencyKind, check_adjacency_request
from .contributors import contributor_rows
from .meshes import resolve_mesh_options, select_mesh_masks

__all__ = [
    "DEFAULT_MASK_IDS",
    "IN_MEMORY_FACTOR",
    "BundlePlan",
    "FeaturePlan",
    "MaskPlan",
    "array_checksum",
    "normalise_doi",
    "parse_memory_limit",
    "plan_bundle",
]

Compression = Literal["zlib", "zstd"]

# Mask ids used when none is given for these common names (recorded in provenance).
DEFAULT_MASK_IDS = {
    "cells": "CL:0000000",
    "cell": "CL:0000000",
    "nuclei": "GO:0005634",
    "nucleus": "GO:0005634",
}
def array_checksum(array: np.ndarray) -> str:
    """sha256 over dtype, shape and the C-ordered bytes of ``array``."""
    h = hashlib.sha256()
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def _on_a_thread(fn: Callable[..., str], *args: Any) -> Future[str]:
    """``fn(*args)`` started on its own thread (hashlib and file reads release the GIL)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="maskbundle-sha256")
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)


def _is_lazy_array(x: Any) -> bool:
    """A dask or zarr array (shape, dtype, slicing) that is not numpy."""
    return (not isinstance(x, np.ndarray | str | Path) and hasattr(x, "shape")
            and hasattr(x, "dtype") and hasattr(x, "__getitem__"))


def lazy_array_checksum(array: Any, band_rows: int = 512) -> str:
    """:func:`array_checksum` of a dask/zarr array, read in C order by bands of rows, so
    memory stays at one band."""
    shape = tuple(int(n) for n in array.shape)
    sums = BandChecksum(shape, np.dtype(array.dtype))
    for lead in np.ndindex(*shape[:-2]):
        for y0 in range(0, shape[-2], band_rows):
            band = array[(*lead, slice(y0, min(shape[-2], y0 + band_rows)), slice(None))]
            sums.update(np.asarray(band))
    return sums.hexdigest()


@dataclass(frozen=True)
class MaskPlan:
    """One mask as planned: its name, class and options, and its label source."""

    name: str
    channel: int
    mask_id: str
    labels: Any  # ndarray in memory, a lazy LabelSource otherwise (shape and dtype read here)
    source: Mask  # as given (features, feature_specs, object_types, source provenance)
    object_types: Any  # the object_types option of this mask, else the Mask's own
    extra_columns: tuple[pd.DataFrame, Mapping[str, ColumnSpec]] | None
    source_provenance: Any  # the Mask's source record without input paths


@dataclass(frozen=True)
class FeaturePlan:
    """Which objects-table columns to compute, and the intensity image they need."""

    morphology: bool
    statistics: tuple[str, ...]  # intensity statistics actually computed (empty without image)
    requested_statistics: tuple[str, ...]
    # numpy; on the streaming path a tiled TIFF read by windows (io.intensity.IntensityTiles)
    intensity: Any
    marker_names: list[str] | None
    alternative_ids: Mapping[str, str] | Sequence[str] | None
    intensity_source: str | None  # file name, "array" or None (provenance)
    # the intensity image's sha256, still being computed: read it with intensity_checksum()
    intensity_sha256: Future[str] | None

    def intensity_checksum(self) -> str | None:
        """The intensity image's sha256 (waits for its thread; raises what it raised)."""
        return None if self.intensity_sha256 is None else self.intensity_sha256.result()
    with_features: bool  # any column beyond the required ones is computed


@dataclass(frozen=True)
class BundlePlan:
    """Every option of one ``write_segmentation_bundle`` call, resolved and checked."""

    target: Path
    stem: str
    shape: tuple[int, ...]  # (Y, X) or (Z, Y, X), every mask
    physical_size: PhysicalSize
    parent: ParentImage | None
    parent_sha256: str | None
    protocol_doi: str
    annotation_tool: str
    masks: tuple[MaskPlan, ...]
    features: FeaturePlan
    adjacency: tuple[AdjacencyKind, ...]
    adjacency_options: Mapping[str, Any]
    meshes: tuple[str, ...]  # names of the masks to mesh
    mesh_options: Mapping[str, Any]
    contributors: tuple[Any, ...]  # rows of extras/contributors.tsv
    objects_format: ObjectsFormat
    compression: Compression
    overwrite: bool
    progress: bool
    inputs: tuple[str, ...]  # input paths the target must not hold (overwrite check)
    source_provenance: Any  # the Segmentation's source record without input paths
    streaming: bool = False  # tile passes (measure.tiled) instead of whole arrays
    memory_limit: int | None = None  # bytes for the tiles in flight (None: 1 GiB default)
    tile: int | None = None  # forced tile edge (tests, benchmarks)
    client: Any = None  # dask.distributed Client for the tile passes

    @property
    def zyx(self) -> tuple[int, int, int]:
        s = self.shape
        return (s[0], s[1], s[2]) if len(s) == 3 else (1, s[0], s[1])

    @property
    def tiff_rel(self) -> Path:
        """The OME-TIFF's path inside the dataset directory."""
        return layout.ome_tiff_path(self.stem)

    @property
    def source_file(self) -> str:
        """The OME-TIFF's file name (the ``Source file`` column and the manifest)."""
        return self.tiff_rel.name

    @property
    def n_stages(self) -> int:
        """Progress steps: a table and each adjacency per mask, each mesh, the OME-TIFF."""
        return len(self.masks) * (1 + len(self.adjacency)) + len(self.meshes) + 1


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
    if not isinstance(o["path"], str | os.PathLike):
        raise fail("path", "a directory path (str or pathlib.Path)")
    for key in ("overwrite", "progress"):
        if not isinstance(o[key], bool | np.bool_):
            raise fail(key, "True or False")
    for key in ("stem", "protocol_doi"):
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
            o["intensity_image"], str | Path | np.ndarray) and not _is_lazy_array(
            o["intensity_image"]):
        raise fail("intensity_image", "a numpy, dask or zarr array (C, Y, X) / (C, Z, Y, X) "
                   "or a file path")
    for key in ("mask_ids", "object_types", "extra_columns", "adjacency_options",
                "mesh_options"):
        if o[key] is not None and not isinstance(o[key], Mapping):
            raise fail(key, "a mapping (dict)")
    _check_mapping_options(o)
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


def _check_mapping_options(o: Mapping[str, Any]) -> None:
    """The per-mask mappings: mask_ids, object_types, extra_columns."""
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


def _as_masks(
    masks: Mapping[str, Any] | Segmentation, inputs: list[str]
) -> tuple[dict[str, Mask], Segmentation | None]:
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
        if _is_lazy(value):
            if isinstance(value, str | os.PathLike):
                inputs.append(str(value))  # the overwrite check must know the input file
            # opened, not read: the streaming path reads it by tiles
            out[name] = Mask(labels=open_label_source(value, name=name))  # type: ignore[arg-type]
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


def _is_lazy(value: Any) -> bool:
    """A label source read by windows: a path, a LabelSource, a dask or zarr array."""
    if isinstance(value, str | os.PathLike | LabelSource):
        return True
    if isinstance(value, np.ndarray):
        return False
    module = type(value).__module__.split(".")[0]
    return module in ("dask", "zarr") and hasattr(value, "shape") and hasattr(value, "dtype")


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory_limit(value: Any) -> int | None:
    """Bytes from ``memory_limit``: an int, or text such as ``"4GiB"``, ``"512MB"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise OptionError(f"memory_limit={value!r}: give bytes (int) or text like '4GiB'",
                          cli=f"--memory-limit {value!r}: give bytes or e.g. 4GiB")
    if isinstance(value, int | np.integer):
        n = int(value)
    else:
        import re

        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([KMGT]i?B|B)?\s*", str(value), re.I)
        if m is None:
            raise OptionError(
                f"memory_limit={value!r}: give bytes (int) or text like '4GiB' or '512MB'",
                cli=f"--memory-limit {value!r}: give bytes or a size like 4GiB or 512MB")
        n = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])
    if n <= 0:
        raise OptionError(f"memory_limit must be positive, got {value!r}",
                          cli=f"--memory-limit {value!r}: must be positive")
    return n


# Peak bytes of the in-memory path per label pixel (measured: 3.3 GiB for a 1 GiB uint32
# mask with features and both adjacencies), counted in label-image bytes.
IN_MEMORY_FACTOR = 4


def _choose_streaming(streaming: Any, masks: Sequence[MaskPlan], memory_limit: int | None,
                      shape: tuple[int, ...], client: Any = None) -> bool:
    """Stream when asked, when a mask is lazy, with a Dask client, or when the in-memory
    path would need more than ``memory_limit`` (IN_MEMORY_FACTOR x the label bytes of
    every mask)."""
    if streaming is not None and not isinstance(streaming, bool | np.bool_):
        raise OptionError(f"streaming={streaming!r}: give True, False or None (automatic)")
    lazy = [m.name for m in masks if isinstance(m.labels, LabelSource)]
    if streaming is False and client is not None:
        raise OptionError("client= runs the tile passes on a cluster; drop streaming=False",
                          cli="--scheduler runs the tile passes; drop --no-streaming")
    if client is not None:
        return True
    if streaming is False:
        if lazy:
            raise OptionError(
                f"streaming=False but masks {lazy} are lazy sources; read them into numpy "
                "arrays first or leave streaming=None",
                cli="the masks are read by tiles here; drop --no-streaming")
        return False
    if streaming or lazy:
        return True
    if memory_limit is None:
        return False
    need = sum(int(np.prod(shape)) * np.dtype(m.labels.dtype).itemsize for m in masks)
    return bool(need * IN_MEMORY_FACTOR > memory_limit)


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
    ps.warn_if_implausible(stacklevel=6)
    if ndim == 2 and ps.z is not None and parent is None:
        ps = PhysicalSize(ps.x, ps.y, None, ps.unit_x, ps.unit_y, ps.unit_z)
    return ps


def _check_shapes(
    shapes: Mapping[str, tuple[int, ...]], parent: ParentImage | None
) -> tuple[int, ...]:
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
    streaming: bool,
) -> tuple[Any, list[str] | None, str | None]:
    """The intensity array for masks of ``shape`` (on the streaming path, a tiled TIFF
    opened for reading by windows instead), marker names, and its source."""
    if intensity_image is None:
        if marker_names is not None:
            raise OptionError("marker_names given without an intensity_image")
        return None, None, None
    if _is_lazy_array(intensity_image):
        # dask / zarr: read by the windows of pass 1 when streaming, whole otherwise
        names = None if marker_names is None else list(marker_names)
        return (intensity_image if streaming else np.asarray(intensity_image)), names, "array"
    if isinstance(intensity_image, str | Path):
        tiles = open_intensity_tiles(intensity_image, shape) if streaming else None
        if tiles is not None:
            names = list(marker_names) if marker_names is not None else tiles.channel_names
            return tiles, names, Path(intensity_image).name
        image = read_intensity_image(intensity_image)
        names = list(marker_names) if marker_names is not None else image.channel_names
        return image.for_masks(shape), names, Path(intensity_image).name
    return np.asarray(intensity_image), None if marker_names is None else list(marker_names), \
        "array"


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


def _mask_plans(
    given: Mapping[str, Mask], options: Mapping[str, Any], inputs: list[str]
) -> tuple[MaskPlan, ...]:
    """One MaskPlan per mask, in the given order; refuses options naming no mask."""
    mask_ids = dict(options["mask_ids"] or {})
    object_types = dict(options["object_types"] or {})
    extra_columns = dict(options["extra_columns"] or {})
    for key in [*mask_ids, *object_types, *extra_columns]:
        if key not in given:
            raise OptionError(
                f"option names mask {key!r}, which is not among {list(given)}",
                cli=f"--mask-id/--object-type name mask {key!r}, which is not among "
                f"{list(given)}",
            )
    plans = []
    for channel, (name, m) in enumerate(given.items()):
        mid = mask_ids.get(name) or m.mask_id or DEFAULT_MASK_IDS.get(name)
        if mid is None:
            raise OptionError(
                f"mask {name!r} needs an OBO id: pass mask_ids={{{name!r}: 'UBERON:0000074'}} "
                "(for example) naming the class of its objects",
                cli=f"mask {name!r} needs an OBO id: give --mask-id {name}=UBERON:0000074 "
                "(for example) naming the class of its objects",
            )
        check_obo_id(mid, f"mask id of {name!r}")
        labels: Any = m.labels
        if _is_lazy(labels) and not isinstance(labels, LabelSource):
            labels = open_label_source(labels, name=name)  # a Mask holding a zarr/dask array
        elif not isinstance(labels, LabelSource):
            labels = np.asarray(labels)
        if not isinstance(labels, LabelSource) and labels.ndim not in (2, 3):
            check_label_array(name, labels)  # refuses it, with the label rules' message
        plans.append(MaskPlan(
            name=name, channel=channel, mask_id=mid, labels=labels, source=m,
            object_types=object_types.get(name, m.object_types),
            extra_columns=extra_columns.get(name),
            source_provenance=_without_paths(m.source, inputs),
        ))
    return tuple(plans)


def _plan_features(
    options: Mapping[str, Any], shape: tuple[int, ...], streaming: bool
) -> FeaturePlan:
    morphology, statistics = _feature_plan(options["features"])
    image = options["intensity_image"]
    intensity, markers, source = _intensity(image, options["marker_names"], shape, streaming)
    if intensity is not None and not statistics:
        raise OptionError(
            "an intensity image was given but features select no intensity statistic; "
            "add e.g. 'mean' to features"
        )
    if statistics and intensity is None and options["features"] is not True:
        raise OptionError(
            f"features {list(statistics)} need an intensity image: pass intensity_image=",
            cli=f"features {list(statistics)} need an intensity image: give --intensity FILE",
        )
    # hashed on a thread while the masks are measured (a pass over every marker pixel)
    sha: Future[str] | None
    if isinstance(image, str | Path):
        sha = _on_a_thread(sha256_file, image)
    elif intensity is None:
        sha = None
    elif isinstance(intensity, np.ndarray):
        sha = _on_a_thread(array_checksum, intensity)
    else:  # a dask / zarr array left lazy: one pass by bands, not the whole at once
        sha = _on_a_thread(lazy_array_checksum, image)
    return FeaturePlan(
        morphology=morphology,
        statistics=statistics if intensity is not None else (),
        requested_statistics=statistics,
        intensity=intensity,
        marker_names=markers,
        alternative_ids=options["alternative_ids"],
        intensity_source=source,
        intensity_sha256=sha,
        with_features=morphology or intensity is not None or bool(options["extra_columns"]),
    )


def _close_sources(given: Mapping[str, Mask]) -> None:
    for m in given.values():
        if isinstance(m.labels, LabelSource):
            m.labels.close()


def plan_bundle(path: str | os.PathLike[str], masks: Any, **options: Any) -> BundlePlan:
    """Resolve and check every option of ``write_segmentation_bundle`` (same keywords).

    Raises the error a bad option deserves (OptionError, MaskNameError, LabelError for
    an array that is not 2D/3D, ShapeMismatchError) before any pixel is read.
    """
    _check_option_types({"path": path, **options})
    o = options
    target = Path(path)
    if o["objects_format"] not in OBJECTS_FORMATS:
        raise OptionError(f"objects_format must be 'tsv' or 'xlsx', got {o['objects_format']!r}")
    if o["compression"] not in ("zlib", "zstd"):
        raise OptionError(f"compression must be 'zlib' or 'zstd', got {o['compression']!r}")
    doi = normalise_doi(o["protocol_doi"])
    adj_kinds, adj_opts = check_adjacency_request(o["adjacency"], o["adjacency_options"])
    inputs: list[str] = []
    given, seg = _as_masks(masks, inputs)
    parent = read_parent_image(o["parent_image"]) if o["parent_image"] is not None else None
    rows = contributor_rows(o["contributors"])
    _feature_plan(o["features"])  # unknown feature names before the masks' own checks
    seg_source = _without_paths(dict(seg.source) if seg is not None else {}, inputs)
    try:
        return _finish_plan(target, given, seg, seg_source, parent, rows, doi, adj_kinds,
                            adj_opts, inputs, o)
    except BaseException:
        _close_sources(given)
        raise


def _finish_plan(target: Path, given: dict[str, Mask], seg: Segmentation | None,
                 seg_source: Any, parent: ParentImage | None, rows: list[Any], doi: str,
                 adj_kinds: tuple[AdjacencyKind, ...], adj_opts: dict[str, Any],
                 inputs: list[str], o: Mapping[str, Any]) -> BundlePlan:
    """plan_bundle once the masks are known (their lazy sources closed on any error)."""
    mask_plans = _mask_plans(given, o, inputs)
    inputs += [str(x) for x in (o["parent_image"], o["intensity_image"])
               if isinstance(x, str | Path)]
    shape = _check_shapes({m.name: tuple(m.labels.shape) for m in mask_plans}, parent)
    ps = _resolve_physical_size(o["physical_size"], parent, seg, len(shape))
    mesh_names = select_mesh_masks(o["meshes"], [m.name for m in mask_plans],
                                   is_3d=len(shape) == 3)
    if o["mesh_options"] is not None and not mesh_names:
        raise OptionError("mesh_options given but no meshes requested: pass meshes=True as well")
    memory_limit = parse_memory_limit(o.get("memory_limit"))
    streaming = _choose_streaming(o.get("streaming"), mask_plans, memory_limit, shape,
                                  o.get("client"))
    if streaming:
        _check_streamable(o.get("tile"))
    features = _plan_features(o, shape, streaming)
    return BundlePlan(
        target=target,
        stem=safe_stem(o["stem"] if o["stem"] is not None else target.name),
        shape=shape, physical_size=ps, parent=parent,
        parent_sha256=None if parent is None else sha256_file(parent.path),
        protocol_doi=doi, annotation_tool=o["annotation_tool"], masks=mask_plans,
        features=features, adjacency=adj_kinds, adjacency_options=adj_opts,
        meshes=tuple(mesh_names),
        mesh_options=resolve_mesh_options(o["mesh_options"], ps) if mesh_names else {},
        contributors=tuple(rows), objects_format=o["objects_format"],
        compression=o["compression"], overwrite=bool(o["overwrite"]),
        progress=bool(o["progress"]), inputs=tuple(inputs), source_provenance=seg_source,
        streaming=streaming, memory_limit=memory_limit, tile=o.get("tile"),
        client=o.get("client"),
    )


def _check_streamable(tile: Any) -> None:
    """The tile edge, checked before any pixel is read."""
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise OptionError(f"tile must be a positive integer (pixels), got {tile!r}")
