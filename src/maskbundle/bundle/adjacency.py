"""Adjacency files of a bundle: options, per-mask tables, and adding them to what exists.

``write_segmentation_bundle(..., adjacency=...)`` calls :func:`mask_adjacency` for each
mask (:mod:`.compute`). :func:`add_adjacency` adds the CSVs to an existing bundle
directory (or writes them beside a label (OME-)TIFF) through :mod:`.amend`: every file
is staged, checked and moved into place only after all of them have been written, and
the definitions go to ``derived/extras/provenance.json`` under ``"adjacency"``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import CorruptInputError, OptionError
from ..io.adjacency_csv import adjacency_header_ok, judge_edge_rows, write_adjacency_csv
from ..io.readers import read_csv_rows
from ..measure.adjacency import centroid_adjacency, linkage_adjacency
from ..model import PhysicalSize
from ..names import check_mask_name
from ..rules import ADJACENCY_COLUMNS
from . import layout
from .amend import (
    AmendFile,
    BundleMasks,
    commit_amendment,
    locate_bundle,
    read_masks,
    refuse_existing_targets,
    renamed_keyword,
    select_masks,
)
from .result import BundleResult

__all__ = [
    "ADJACENCY_KINDS",
    "add_adjacency",
    "centroid_frame",
    "check_adjacency_file",
    "check_adjacency_request",
    "mask_adjacency",
    "provenance_entry",
]

AdjacencyKind = Literal["centroid", "linkage"]
ADJACENCY_KINDS: tuple[AdjacencyKind, ...] = ("centroid", "linkage")
CENTROID_OPTIONS = ("method", "max_distance", "k", "radius")
LINKAGE_OPTIONS = ("max_gap", "contact")


def check_adjacency_request(
    kinds: str | Sequence[str] | None, options: Mapping[str, Any] | None
) -> tuple[tuple[AdjacencyKind, ...], dict[str, Any]]:
    """Normalise the requested kinds and refuse unknown options before any work is done.

    ``kinds`` is ``"centroid"``, ``"linkage"``, a sequence of them, or None / empty for
    none. ``options`` may hold ``method``, ``max_distance``, ``k``, ``radius`` (centroid)
    and ``max_gap``, ``contact`` (linkage); None values are dropped.
    """
    if kinds is None:
        wanted: list[str] = []
    elif isinstance(kinds, str):
        wanted = [kinds]
    else:
        wanted = list(kinds)
    out: list[AdjacencyKind] = []
    for k in wanted:
        if k not in ADJACENCY_KINDS:
            raise OptionError(
                f"adjacency kind {k!r} is unknown; use 'centroid' and/or 'linkage'"
            )
        if k not in out:
            out.append(k)  # type: ignore[arg-type]
    opts = {k: v for k, v in dict(options or {}).items() if v is not None}
    unknown = sorted(set(opts) - set(CENTROID_OPTIONS) - set(LINKAGE_OPTIONS))
    if unknown:
        raise OptionError(
            f"unknown adjacency option(s) {unknown}; centroid takes {list(CENTROID_OPTIONS)}, "
            f"linkage takes {list(LINKAGE_OPTIONS)}"
        )
    for key, kind in [(k, "centroid") for k in CENTROID_OPTIONS] + [
        (k, "linkage") for k in LINKAGE_OPTIONS
    ]:
        if key in opts and kind not in out:
            raise OptionError(
                f"adjacency option {key!r} applies to {kind} adjacency, which was not requested"
            )
    _check_option_types(opts)
    return tuple(sorted(out, key=ADJACENCY_KINDS.index)), opts


def _check_option_types(opts: Mapping[str, Any]) -> None:
    """One message per wrongly typed option, before any work (``contact="yes"`` ...)."""
    for key, value in opts.items():
        if key == "method":
            ok = isinstance(value, str) and value in ("delaunay", "knn", "radius")
            want = "one of 'delaunay', 'knn', 'radius'"
        elif key == "contact":
            ok = isinstance(value, bool | np.bool_)
            want = "True or False"
        elif key == "k":
            ok = bool(isinstance(value, int | np.integer) and not isinstance(value, bool) and value > 0)
            want = "a whole number > 0"
        else:  # max_distance, radius, max_gap: micrometres
            ok = (
                isinstance(value, int | float | np.integer | np.floating)
                and not isinstance(value, bool)
                and math.isfinite(float(value))
                and float(value) >= 0
            )
            want = "a finite number >= 0 (micrometres)"
        if not ok:
            raise OptionError(
                f"adjacency option {key}={value!r} ({type(value).__name__}) must be {want}",
                cli=f"--{key.replace('_', '-')} {value!r} must be {want}",
            )


def mask_adjacency(
    labels: np.ndarray,
    *,
    physical_size: PhysicalSize | tuple[float, ...] | float,
    kinds: Sequence[AdjacencyKind],
    options: Mapping[str, Any] | None = None,
    centroids_px: np.ndarray | None = None,
) -> dict[AdjacencyKind, pd.DataFrame]:
    """The adjacency tables of one mask.

    Parameters
    ----------
    labels : ndarray of shape (Y, X) or (Z, Y, X)
        Relabelled mask (1..N).
    physical_size : PhysicalSize or (x, y[, z]) micrometres
    kinds : sequence of {"centroid", "linkage"}
    options : mapping
        Checked options (:func:`check_adjacency_request`).
    centroids_px : ndarray of shape (N, 3) or None
        Centroids of objects 1..N as (plane, row, column) pixels when already computed
        (the objects table has them); saves a pass over the pixels.

    Returns
    -------
    dict kind -> DataFrame (``frame.attrs["adjacency"]`` holds definition and parameters)
    """
    opts = dict(options or {})
    out: dict[AdjacencyKind, pd.DataFrame] = {}
    linkage_job: Future[pd.DataFrame] | None = None
    pool: ThreadPoolExecutor | None = None
    if "linkage" in kinds:
        lopts = {k: opts[k] for k in LINKAGE_OPTIONS if k in opts}
        if "centroid" in kinds:
            # the linkage kernel releases the GIL (numba nogil) and so does Qhull: run the
            # two graphs side by side; each is deterministic on its own
            pool = ThreadPoolExecutor(max_workers=1)
            linkage_job = pool.submit(
                linkage_adjacency, labels, physical_size=physical_size, **lopts
            )
        else:
            out["linkage"] = linkage_adjacency(labels, physical_size=physical_size, **lopts)
    try:
        if "centroid" in kinds:
            out["centroid"] = centroid_frame(labels, physical_size, opts, centroids_px)
    finally:
        if linkage_job is not None and pool is not None:
            try:
                out["linkage"] = linkage_job.result()
            finally:
                pool.shutdown()
    return {k: out[k] for k in ADJACENCY_KINDS if k in out}


def centroid_frame(
    labels: np.ndarray,
    physical_size: PhysicalSize | tuple[float, ...] | float,
    opts: Mapping[str, Any],
    centroids_px: np.ndarray | None,
) -> pd.DataFrame:
    """Centroid adjacency, from the objects table's centroids when given."""
    copts = {k: opts[k] for k in CENTROID_OPTIONS if k in opts}
    given = None
    if centroids_px is not None:
        ps = PhysicalSize.coerce(physical_size)
        pts = np.asarray(centroids_px, np.float64) * np.asarray(ps.um_zyx())
        if labels.ndim == 2:
            pts = pts[:, 1:]
        ids = np.arange(1, pts.shape[0] + 1, dtype=np.int64)
        keep = np.all(np.isfinite(pts), axis=1)  # absent ids have NaN centroids
        given = (ids[keep], np.ascontiguousarray(pts[keep]))
    return centroid_adjacency(labels, physical_size=physical_size, centroids=given, **copts)


def _adjacency_rel(mask: str, kind: AdjacencyKind) -> Path:
    if kind == "centroid":
        return layout.centroid_adjacency_path(mask)
    return layout.linkage_adjacency_path(mask)


def provenance_entry(mask: str, kind: AdjacencyKind, frame: pd.DataFrame) -> dict[str, Any]:
    params = dict(frame.attrs.get("adjacency", {}))
    params["file"] = _adjacency_rel(mask, kind).name
    return {k: _jsonable(v) for k, v in params.items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def check_adjacency_file(path: Path, n_objects: int) -> list[str]:
    """Problems of a written adjacency CSV against Object IDs 1..``n_objects``.

    Reads the file back independently of the writer and applies the validator's own
    rules (``adjacency.header``, ``adjacency.edges``, ``adjacency.duplicates``: one
    function, :func:`~maskbundle.io.adjacency_csv.judge_edge_rows`), so a file staged
    from a label file, which no bundle validation sees, is held to the same rule.
    """
    rows = read_csv_rows(path)
    if not adjacency_header_ok(rows):
        return [f"{path.name}: header does not start {','.join(ADJACENCY_COLUMNS)}"]
    edges = judge_edge_rows(rows[1:], np.arange(1, n_objects + 1, dtype=np.int64))
    problems = [f"{path.name}: {reason}" for reason in edges.reasons(5)]
    problems += [f"{path.name}: edge {dup} occurs more than once" for dup in edges.duplicates()]
    return problems


def _adjacency_sources(
    src: Path, output_dir: str | Path | None, physical_size: Any, mask_names: Any
) -> tuple[bool, Path, BundleMasks]:
    """(is a bundle, where the CSVs go, the masks) for a bundle or a label file."""
    is_bundle = src.is_dir() and not src.name.lower().endswith(".zarr")
    if is_bundle:
        image_path = locate_bundle(src)
        if output_dir is not None:
            raise OptionError(
                f"{src} is a bundle directory: its adjacency files go into it; drop output_dir"
            )
        if mask_names is not None:
            raise OptionError("mask_names= renames the masks of a label file, not of a bundle")
        found = read_masks(image_path)
        ps = PhysicalSize.coerce(physical_size) if physical_size is not None else (
            found.physical_size)
        return True, src, BundleMasks(found.names, found.labels, ps, found.is_3d)
    if not src.exists():
        raise CorruptInputError(f"{src} does not exist")
    if output_dir is None:
        raise OptionError(f"{src} is a label file: give output_dir (-o DIR) for its adjacency CSVs")
    from ..convert.generic import read_labels  # convert/ is a sibling input adapter

    seg = read_labels(src, mask_names=list(mask_names) if mask_names is not None else None,
                      physical_size=physical_size)
    arrays = [m.labels for m in seg.masks.values()]
    return False, Path(output_dir), BundleMasks(
        list(seg.masks), arrays, seg.physical_size, bool(arrays) and arrays[0].ndim == 3)


def _merge_adjacency(old: Any, entries: Mapping[Path, Any]) -> dict[str, Any]:
    merged = dict(old or {})
    for mask, kind, entry in entries.values():
        merged[mask] = {**dict(merged.get(mask) or {}), kind: entry}
    return merged


def add_adjacency(
    path: str | Path,
    *,
    adjacency: str | Sequence[str] = ADJACENCY_KINDS,
    adjacency_options: Mapping[str, Any] | None = None,
    masks: str | Sequence[str] | None = None,
    overwrite: bool = False,
    validate: bool = True,
    output_dir: str | Path | None = None,
    physical_size: PhysicalSize | tuple[float, ...] | float | None = None,
    mask_names: Sequence[str] | None = None,
    **deprecated: Any,
) -> BundleResult:
    """Add centroid and/or linkage adjacency CSVs to masks that already exist.

    Parameters
    ----------
    path : str or Path
        A bundle dataset directory (holding ``derived/segmentation_masks/``) or a label
        file that :func:`maskbundle.convert.read_labels` reads (TIFF/OME-TIFF, PNG, NPY,
        NPZ, zarr).
    adjacency : "centroid", "linkage" or both (default)
        As in :func:`~maskbundle.write_segmentation_bundle`.
    adjacency_options : mapping, optional
        ``method``, ``max_distance``, ``k``, ``radius`` (centroid); ``max_gap``,
        ``contact`` (linkage); as in :func:`~maskbundle.write_segmentation_bundle`.
    masks : mask name(s) or None
        Only these masks (channels); default every mask.
    overwrite : bool
        Replace existing adjacency files (otherwise :class:`OutputExistsError`, and nothing
        is written).
    validate : bool
        Check each file written against the masks' Object IDs before it moves into place
        (``result.report``); a failure raises :class:`BundleInvalidError`, nothing moves.
    output_dir : path
        Where the CSVs go for a label file (required there; not allowed for a bundle).
    physical_size : (x, y[, z]) micrometres, optional
        Overrides the OME-XML physical sizes; required when the file has none.
    mask_names : sequence of str, optional
        Mask names for the arrays of a label file, in file order (default: the channel
        names made valid, or ``cells`` for one unnamed array).

    Returns
    -------
    BundleResult
        The dataset (or output) directory; ``written`` lists the CSVs,
        ``provenance["adjacency"]`` their entries (mask -> kind -> definition and
        parameters), ``report`` the checks of what was written.

    Examples
    --------
    >>> from maskbundle import add_adjacency
    >>> from maskbundle.demo import example_bundle
    >>> bundle = example_bundle()  # three cells in 32 x 32 pixels
    >>> result = add_adjacency(bundle, adjacency="linkage")
    >>> [p.name for p in result.written]
    ['cells-linkage-adjacency.csv']
    >>> result.provenance["adjacency"]["cells"]["linkage"]["n_edges"]
    1
    >>> result.report.ok
    True
    """
    adjacency, adjacency_options, mask_names = _deprecated_keywords(
        adjacency, adjacency_options, mask_names, deprecated)
    src = Path(path)
    kinds, opts = check_adjacency_request(adjacency, adjacency_options)
    if not kinds:
        raise OptionError("no adjacency kind requested; use 'centroid' and/or 'linkage'")
    is_bundle, base, found = _adjacency_sources(src, output_dir, physical_size, mask_names)
    if found.physical_size is None:
        raise OptionError(
            f"{src} has no physical pixel size; pass physical_size=(x, y[, z])",
            cli=f"{src} has no physical pixel size; give --physical-size X Y [Z]",
        )
    selected = select_masks(found.names, masks, src)
    for _, name in selected:
        check_mask_name(name)

    def target_of(name: str, kind: AdjacencyKind) -> Path:
        rel = _adjacency_rel(name, kind)
        return base / rel if is_bundle else base / rel.name

    refuse_existing_targets([target_of(n, k) for _, n in selected for k in kinds], overwrite)
    files = []
    for c, name in selected:  # compute everything before writing anything
        frames = mask_adjacency(found.labels[c], physical_size=found.physical_size,
                                kinds=kinds, options=opts)
        n = int(found.labels[c].max(initial=0))
        for kind in kinds:
            files.append(AmendFile(
                target_of(name, kind), _csv_writer(name, kind, frames[kind]),
                check=functools.partial(check_adjacency_file, n_objects=n),
                code="adjacency.edges"))
    entries, report = commit_amendment(
        base, files, section="adjacency" if is_bundle else None, merge=_merge_adjacency,
        stage_dir=None if is_bundle else base, validate=validate and is_bundle,
    )
    by_mask: dict[str, dict[str, Any]] = {}
    for mask, kind, entry in entries.values():
        by_mask.setdefault(mask, {})[kind] = entry
    return BundleResult(base, tuple(f.target for f in files), {"adjacency": by_mask},
                        report=report)


def _csv_writer(
    mask: str, kind: AdjacencyKind, frame: pd.DataFrame
) -> Callable[[Path], tuple[str, AdjacencyKind, dict[str, Any]]]:
    def write(path: Path) -> tuple[str, AdjacencyKind, dict[str, Any]]:
        write_adjacency_csv(path, frame)
        return mask, kind, provenance_entry(mask, kind, frame)

    return write


def _deprecated_keywords(
    adjacency: Any, adjacency_options: Any, mask_names: Any, deprecated: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """``kinds=``, ``names=`` and option keywords of maskbundle <= 0.1, with a warning."""
    if "kinds" in deprecated:
        renamed_keyword("add_adjacency", "kinds", "adjacency")
        adjacency = deprecated.pop("kinds")
    if "names" in deprecated:
        renamed_keyword("add_adjacency", "names", "mask_names")
        mask_names = deprecated.pop("names")
    if deprecated:
        unknown = sorted(set(deprecated) - set(CENTROID_OPTIONS) - set(LINKAGE_OPTIONS))
        if unknown:  # same message as an unknown key of adjacency_options
            check_adjacency_request(adjacency, {**deprecated, **dict(adjacency_options or {})})
        renamed_keyword("add_adjacency", ", ".join(sorted(deprecated)),
                        "adjacency_options={...}")
        adjacency_options = {**deprecated, **dict(adjacency_options or {})}
    return adjacency, adjacency_options, mask_names
