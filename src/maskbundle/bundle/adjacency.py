"""Adjacency files of a bundle: options, per-mask tables, and adding them to what exists.

``write_segmentation_bundle(..., adjacency=...)`` calls :func:`mask_adjacency` for each
mask inside its staging directory. :func:`add_adjacency` adds the CSVs to an existing
bundle directory (or writes them beside a label (OME-)TIFF): every file is staged and
moved into place only after all of them have been written, the definitions go to
``derived/extras/provenance.json`` under ``"adjacency"``, and the bundle is re-validated
when the validator is available.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import CorruptInputError, OptionError, OutputExistsError, Report
from ..io.adjacency_csv import write_adjacency_csv
from ..io.ometiff import read_label_ome_tiff
from ..io.staging import clear_stale_stages, staged_files
from ..io.tables import write_json
from ..measure.adjacency import centroid_adjacency, linkage_adjacency
from ..model import PhysicalSize
from ..names import check_mask_name
from . import layout

__all__ = [
    "ADJACENCY_KINDS",
    "AdjacencyResult",
    "add_adjacency",
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
            out["centroid"] = _centroid_frame(labels, physical_size, opts, centroids_px)
    finally:
        if linkage_job is not None and pool is not None:
            try:
                out["linkage"] = linkage_job.result()
            finally:
                pool.shutdown()
    return {k: out[k] for k in ADJACENCY_KINDS if k in out}


def _centroid_frame(
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


@dataclass
class AdjacencyResult:
    """What :func:`add_adjacency` wrote: the files, the provenance entries, the report."""

    written: list[Path] = field(default_factory=list)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: Report | None = None

    def __repr__(self) -> str:
        edges = {f"{m}/{k}": e.get("n_edges") for m, ks in self.provenance.items()
                 for k, e in ks.items()}
        return (f"AdjacencyResult(written={[p.name for p in self.written]}, edges={edges}, "
                f"report={self.report!r})")


def _validate(path: Path) -> Report | None:
    try:
        mod = importlib.import_module("maskbundle.bundle.validate")
    except ImportError:
        return None
    fn = getattr(mod, "validate_bundle", None)
    if fn is None:
        return None
    report = fn(path)
    return report if isinstance(report, Report) else None


def _select(
    names: list[str], masks: str | Sequence[str] | None, where: Path
) -> list[tuple[int, str]]:
    if masks is None:
        return list(enumerate(names))
    wanted = [masks] if isinstance(masks, str) else list(masks)
    out = []
    for m in wanted:
        if m not in names:
            raise OptionError(f"mask {m!r} is not a channel of {where}; its masks are {names}")
        out.append((names.index(m), m))
    return out


def add_adjacency(
    path: str | Path,
    *,
    kinds: str | Sequence[str] = ADJACENCY_KINDS,
    masks: str | Sequence[str] | None = None,
    overwrite: bool = False,
    output_dir: str | Path | None = None,
    physical_size: PhysicalSize | tuple[float, ...] | float | None = None,
    names: Sequence[str] | None = None,
    validate: bool = True,
    **options: Any,
) -> AdjacencyResult:
    """Add centroid and/or linkage adjacency CSVs to masks that already exist.

    Parameters
    ----------
    path : str or Path
        A bundle dataset directory (holding ``derived/segmentation_masks/``) or a label
        file that :func:`maskbundle.convert.read_labels` reads (TIFF/OME-TIFF, PNG, NPY,
        NPZ, zarr).
    kinds : "centroid", "linkage" or both (default)
    masks : mask name(s) or None
        Only these masks (channels); default every mask.
    overwrite : bool
        Replace existing adjacency files (otherwise :class:`OutputExistsError`, and nothing
        is written).
    output_dir : path
        Where the CSVs go for a TIFF input (required there; not allowed for a bundle).
    physical_size : (x, y[, z]) micrometres, optional
        Overrides the OME-XML physical sizes; required when the file has none.
    names : sequence of str, optional
        Mask names for the arrays of a label file, in file order (default: the channel
        names made valid, or ``cells`` for one unnamed array).
    validate : bool
        Re-validate a bundle afterwards (``result.report``) when the validator exists.
    **options
        ``method``, ``max_distance``, ``k``, ``radius`` (centroid); ``max_gap``,
        ``contact`` (linkage); see :mod:`maskbundle.measure.adjacency`.

    Returns
    -------
    AdjacencyResult
    """
    src = Path(path)
    kinds_t, opts = check_adjacency_request(kinds, options)
    if not kinds_t:
        raise OptionError("no adjacency kind requested; use 'centroid' and/or 'linkage'")
    is_bundle = src.is_dir() and not src.name.lower().endswith(".zarr")
    if is_bundle:
        clear_stale_stages(src / layout.DERIVED_EXTRAS)  # finish a killed run first
        if output_dir is not None:
            raise OptionError(
                f"{src} is a bundle directory: its adjacency files go into it; drop output_dir"
            )
        seg_dir = src / layout.SEG_DIR
        tiffs = sorted(seg_dir.glob(f"*{layout.OME_SUFFIX}")) if seg_dir.is_dir() else []
        if len(tiffs) != 1:
            raise CorruptInputError(
                f"{src} is not a bundle dataset directory: expected exactly one "
                f"{layout.SEG_DIR}/*{layout.OME_SUFFIX}, found {len(tiffs)}"
            )
        image_path = tiffs[0]
        base = src
    else:
        if not src.exists():
            raise CorruptInputError(f"{src} does not exist")
        if output_dir is None:
            raise OptionError(
                f"{src} is a label file: give output_dir (-o DIR) for its adjacency CSVs"
            )
        image_path = src
        base = Path(output_dir)
    arrays: list[np.ndarray]
    if is_bundle:
        if names is not None:
            raise OptionError("names= renames the masks of a label file, not of a bundle")
        image = read_label_ome_tiff(image_path)
        channel_names = list(image.channel_names)
        arrays = [lab[0] if lab.shape[0] == 1 else lab for lab in image.labels]
        ps = PhysicalSize.coerce(physical_size) if physical_size is not None else (
            image.physical_size
        )
    else:
        from ..convert.generic import read_labels

        seg = read_labels(
            image_path,
            name=list(names) if names is not None else None,
            physical_size=physical_size,
        )
        channel_names = list(seg.masks)
        arrays = [m.labels for m in seg.masks.values()]
        ps = seg.physical_size
    if ps is None:
        raise OptionError(
            f"{image_path} has no physical pixel size; pass physical_size=(x, y[, z])",
            cli=f"{image_path} has no physical pixel size; give --physical-size X Y [Z]",
        )
    selected = _select(channel_names, masks, src)
    for _, name in selected:
        check_mask_name(name)

    def target_of(name: str, kind: AdjacencyKind) -> Path:
        rel = _adjacency_rel(name, kind)
        return base / rel if is_bundle else base / rel.name

    for _, name in selected:
        for kind in kinds_t:
            if target_of(name, kind).exists() and not overwrite:
                raise OutputExistsError(
                    f"{target_of(name, kind)} already exists; pass overwrite=True to "
                    "replace it",
                    cli=f"{target_of(name, kind)} already exists; add --overwrite to replace it",
                )
    # compute everything before writing anything
    targets: list[tuple[Path, pd.DataFrame, str, AdjacencyKind]] = []
    for c, name in selected:
        frames = mask_adjacency(arrays[c], physical_size=ps, kinds=kinds_t, options=opts)
        for kind in kinds_t:
            targets.append((target_of(name, kind), frames[kind], name, kind))
    result = AdjacencyResult()
    for _, frame, name, kind in targets:
        result.provenance.setdefault(name, {})[kind] = provenance_entry(name, kind, frame)
    # every file goes to one stage; the moves happen together (and a kill during them is
    # finished by the next run), so the bundle never lacks its provenance.json
    stage_dir = src / layout.DERIVED_EXTRAS if is_bundle else base
    with staged_files(stage_dir) as stage:
        for target, frame, _, _ in targets:
            write_adjacency_csv(stage.path(target), frame)
        if is_bundle:
            prov_path = src / layout.PROVENANCE
            prov: dict[str, Any] = {}
            if prov_path.is_file():
                prov = layout.read_provenance(prov_path)
            merged = dict(prov.get("adjacency") or {})
            for name, entries in result.provenance.items():
                merged[name] = {**dict(merged.get(name) or {}), **entries}
            prov["adjacency"] = merged
            write_json(stage.path(prov_path), prov)
    result.written = [t for t, _, _, _ in targets]
    if is_bundle and validate:
        result.report = _validate(src)
    return result
