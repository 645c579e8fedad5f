"""Stage 2 of the writer: per-mask computations over arrays, no disk I/O.

For each :class:`~.plan.MaskPlan`, :func:`compute_mask` runs the stages in order and
returns one :class:`MaskResult`:

1. :func:`relabel_stage` -- labels -> checked and relabelled 1..N (original ids kept
   as the relabel map), plus the input's checksum and dtype for provenance;
2. :func:`objects_stage` -- the objects table (column specs + one array per column)
   and the exact centroids as an (N, 3) array in (plane, row, column) pixels;
3. :func:`adjacency_stage` -- the adjacency tables, from the centroid array;
4. :func:`mesh_stage` -- the object meshes of a 3D mask (in memory).

Whole-slide input: :mod:`.tiles` (:func:`~.tiles.compute_mask_tiled`) returns the same
MaskResult from tile passes; it shares :func:`assemble_table` / :func:`features_table`
(the O(objects) part of the objects stage) with this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import OptionError, TableFormatError
from ..labels.relabel import relabel_mask
from ..measure.centroids import object_centroids
from ..measure.features import CENTROID_COLUMNS, FeatureTable, compute_features, user_columns
from ..mesh.labels import ObjectMesh
from ..model import ColumnSpec, Mask, RelabelledMask
from ..rules import OBJECT_ID
from .adjacency import AdjacencyKind, mask_adjacency
from .meshes import mesh_objects
from .objects import object_type_values, objects_frame, required_specs
from .plan import BundlePlan, MaskPlan, array_checksum

__all__ = [
    "MaskResult",
    "adjacency_stage",
    "assemble_table",
    "compute_mask",
    "features_table",
    "mesh_stage",
    "objects_stage",
    "relabel_stage",
]

Advance = Callable[[str], None]


@dataclass(frozen=True)
class Relabelled:
    """What :func:`relabel_stage` returns: the relabelled mask and its input's fingerprint."""

    mask: RelabelledMask  # labels 1..N, original_ids = the relabel map, n_objects, changed
    input_sha256: str
    input_dtype: str


@dataclass(frozen=True)
class ObjectsTable:
    """What :func:`objects_stage` returns: the table and the centroids it holds."""

    specs: list[ColumnSpec]
    frame: pd.DataFrame
    centroids_zyx: np.ndarray  # (N, 3) float64 pixels (plane, row, column); plane 0 in 2D


@dataclass(frozen=True)
class MaskResult:
    """Everything the write stage needs of one mask."""

    plan: MaskPlan
    relabelled: Relabelled
    table: ObjectsTable
    entire_image_masked: bool
    adjacency: Mapping[AdjacencyKind, pd.DataFrame]
    meshes: list[ObjectMesh] | None  # None: no meshes requested for this mask

    @property
    def mask(self) -> RelabelledMask:
        return self.relabelled.mask


def relabel_stage(mp: MaskPlan) -> Relabelled:
    """Check the labels of ``mp`` and relabel them 1..N, ascending by original label."""
    raw = np.asarray(mp.labels)
    mask = relabel_mask(mp.name, raw)
    return Relabelled(mask, array_checksum(raw), str(raw.dtype))


def _computed_features(plan: BundlePlan, mask: RelabelledMask) -> FeatureTable:
    """The computed features of one relabelled mask."""
    f = plan.features
    return compute_features(
        mask.labels,
        physical_size=plan.physical_size,
        intensity_image=f.intensity if f.statistics else None,
        marker_names=f.marker_names if f.statistics else None,
        alternative_ids=f.alternative_ids if f.statistics else None,
        statistics=f.statistics or ("mean",),
        morphology=f.morphology,
    )


def _with_extra_columns(mp: MaskPlan, mask: RelabelledMask, table: FeatureTable) -> FeatureTable:
    """``table`` then the ``extra_columns`` of this mask, indexed by Object ID."""
    if mp.extra_columns is not None:
        frame, specs = mp.extra_columns
        table = table.join(user_columns(frame, specs, mask.original_ids))
    return table


def _centroid_array(table: FeatureTable) -> np.ndarray:
    """The exact centroids of a feature table as (N, 3) (plane, row, column) pixels.

    The one place centroids cross from a table back to an array: compute_features
    returns columns only (a measure/ API that returned the array would remove this).
    """
    f = table.frame
    z = CENTROID_COLUMNS["z"]
    return np.stack([
        f[z].to_numpy() if z in f else np.zeros(len(f)),
        f[CENTROID_COLUMNS["y"]].to_numpy(),
        f[CENTROID_COLUMNS["x"]].to_numpy(),
    ], axis=1)


def objects_stage(plan: BundlePlan, mp: MaskPlan, mask: RelabelledMask) -> ObjectsTable:
    """Specs and rows of one mask's objects table, and the exact (z, y, x) centroids."""
    if plan.features.with_features:
        return features_table(plan, mp, mask, _computed_features(plan, mask))
    _, cents = object_centroids(mask.labels, mask.n_objects)
    return assemble_table(plan, mp, mask, None, cents)


def features_table(
    plan: BundlePlan, mp: MaskPlan, mask: RelabelledMask, table: FeatureTable
) -> ObjectsTable:
    """The objects table from computed features (in memory or merged from tiles): the
    ``extra_columns`` joined, centroids taken from the table's own columns."""
    table = _with_extra_columns(mp, mask, table)
    return assemble_table(plan, mp, mask, table, _centroid_array(table))


def assemble_table(
    plan: BundlePlan, mp: MaskPlan, mask: RelabelledMask, table: FeatureTable | None,
    cents: np.ndarray,
) -> ObjectsTable:
    """The objects table from a feature table (or None) and the (N, 3) centroids: the
    part of :func:`objects_stage` shared with the tile passes (O(objects), no pixels)."""
    extra: list[tuple[ColumnSpec, np.ndarray]] = []
    if table is not None:
        extra = [(spec, table.frame[name].to_numpy()) for name, spec in table.specs.items()]
    reserved = {OBJECT_ID, *(s.name for s in required_specs(plan.annotation_tool))}
    extra += _feature_columns(mp.source, mask, reserved)
    _check_extra_names(mask.name, [spec.name for spec, _ in extra], reserved)
    specs, frame = objects_frame(
        mask,
        source_file=plan.source_file,
        mask_id=mp.mask_id,
        protocol_doi=plan.protocol_doi,
        annotation_tool=plan.annotation_tool,
        centroids_zyx=cents,
        object_types=object_type_values(mask, mp.object_types, mp.mask_id),
        extra=extra,
    )
    return ObjectsTable(specs, frame, cents)


def adjacency_stage(
    plan: BundlePlan, mask: RelabelledMask, centroids_zyx: np.ndarray
) -> dict[AdjacencyKind, pd.DataFrame]:
    """The requested adjacency tables of one mask (empty when none was requested)."""
    if not plan.adjacency:
        return {}
    return mask_adjacency(
        mask.labels, physical_size=plan.physical_size, kinds=plan.adjacency,
        options=plan.adjacency_options, centroids_px=centroids_zyx,
    )


def mesh_stage(plan: BundlePlan, mask: RelabelledMask) -> list[ObjectMesh] | None:
    """The meshes of one mask when requested (an empty list for an empty mask)."""
    if mask.name not in plan.meshes:
        return None
    return mesh_objects(mask.labels, plan.physical_size, plan.mesh_options)


def compute_mask(plan: BundlePlan, mp: MaskPlan, advance: Advance) -> MaskResult:
    """Every per-mask stage, in order; ``advance`` ticks the progress bar after each.

    The input's checksum (a full pass over the pixels; hashlib releases the GIL) runs on
    a thread beside the stages: what :func:`relabel_stage` returns, without the wait.
    """
    raw = np.asarray(mp.labels)
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(array_checksum, raw)
        mask = relabel_mask(mp.name, raw)
        table = objects_stage(plan, mp, mask)
        advance(f"{mask.name} table")
        adjacency = adjacency_stage(plan, mask, table.centroids_zyx)
        for kind in adjacency:
            advance(f"{mask.name} {kind} adjacency")
        meshes = mesh_stage(plan, mask)
        if meshes is not None:
            advance(f"{mask.name} meshes")
        relabelled = Relabelled(mask, digest.result(), str(raw.dtype))
    return MaskResult(
        plan=mp, relabelled=relabelled, table=table,
        # labels are 0..N: no zero pixel exactly when the smallest is not 0 (no bool copy)
        entire_image_masked=bool(mask.labels.size) and int(mask.labels.min()) != 0,
        adjacency=adjacency, meshes=meshes,
    )


def _feature_columns(
    source: Mask, mask: RelabelledMask, reserved: set[str]
) -> list[tuple[ColumnSpec, np.ndarray]]:
    """Extra table columns from ``Mask.features`` (indexed by original label), in Object ID order."""
    feats = source.features
    if feats is None or not len(feats.columns):
        return []
    name = mask.name
    index = np.asarray(feats.index)
    if index.dtype.kind not in "iu" or pd.Index(index).has_duplicates:
        raise OptionError(
            f"mask {name!r}: features must be indexed by unique integer labels of the mask"
        )
    stray = np.setdiff1d(index.astype(np.int64), mask.original_ids.astype(np.int64))
    if stray.size:
        raise OptionError(
            f"mask {name!r}: features name label {int(stray[0])}, which is not in the mask "
            f"({stray.size} such label(s)); drop those rows"
        )
    frame = feats.reindex(mask.original_ids.astype(np.int64))
    out: list[tuple[ColumnSpec, np.ndarray]] = []
    for col in frame.columns:
        spec = source.feature_specs.get(col)
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
