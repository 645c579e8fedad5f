"""Stage 2 of the writer by tiles: the streaming twin of :func:`.compute.compute_mask`.

:func:`compute_mask_tiled` returns the same :class:`~.compute.MaskResult` as the
in-memory stage, bitwise, without holding the mask: pass 1 is
:func:`maskbundle.measure.tiled.measure_tiled` (relabel map, feature table, centroids,
linkage), the objects table is assembled from its feature table and centroids by
:func:`.compute.assemble_table`, the centroid graph comes from its centroids and the
linkage table from its merged frame. Pass 2 (relabel tile by tile into the OME-TIFF) is
:func:`.write.write_label_image`'s streaming branch.

The result's ``mask.labels`` is an empty placeholder of the mask's dimensionality:
everything downstream that needs pixels reads ``plan.labels`` (the source) instead.

Meshes (3D): zmesh needs each object whole, so the relabelled mask is read into memory
when ``MESH_FACTOR`` x its label bytes fit ``memory_limit`` (default 1 GiB), and refused
with :class:`~maskbundle.errors.OptionError` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..io.sources import LabelSource, open_label_source
from ..io.spill import SpilledFrame
from ..labels.relabel import TileRelabel, label_dtype
from ..measure.features import FeatureTable
from ..measure.tiled import TiledMeasurement, measure_tiled, trim_heap
from ..mesh.labels import ObjectMesh
from ..model import RelabelledMask
from .adjacency import ADJACENCY_KINDS, AdjacencyKind, centroid_frame
from .compute import (
    MaskResult,
    Relabelled,
    assemble_table,
    features_table,
)
from .meshes import mesh_objects
from .plan import BundlePlan, MaskPlan

__all__ = ["MESH_FACTOR", "compute_mask_tiled", "label_source"]

Advance = Callable[[str], None]
TileDone = Callable[[int, int, int], None]

#: Bytes held while meshing a whole mask, per label byte (the source block, its relabelled
#: copy and zmesh's working set).
MESH_FACTOR = 4
_DEFAULT_MEMORY = 1 << 30


def label_source(mp: MaskPlan) -> LabelSource:
    """The mask's labels as a window reader (a numpy array is wrapped, not copied)."""
    if isinstance(mp.labels, LabelSource):
        return mp.labels
    return open_label_source(mp.labels, name=mp.name)


def _measure(plan: BundlePlan, src: LabelSource, tile_done: TileDone | None,
             scratch: Path) -> TiledMeasurement:
    f = plan.features
    opts = plan.adjacency_options
    return measure_tiled(
        src,
        physical_size=plan.physical_size,
        intensity=f.intensity if f.statistics else None,
        marker_names=f.marker_names if f.statistics else None,
        alternative_ids=(dict(f.alternative_ids) if isinstance(f.alternative_ids, Mapping)
                         else f.alternative_ids) if f.statistics else None,
        statistics=f.statistics or ("mean",),
        features=f.with_features,
        morphology=f.morphology,
        linkage="linkage" in plan.adjacency,
        # linkage_adjacency's defaults when the option is not given
        max_gap=float(opts.get("max_gap", 0.0) or 0.0),
        contact=bool(opts.get("contact", False)),
        memory_limit=plan.memory_limit,
        tile=plan.tile,
        client=plan.client,
        progress=tile_done,
        park=lambda frame: SpilledFrame(frame, scratch).load,
    )


def _centroid_graph(plan: BundlePlan, ndim: int, cents: np.ndarray) -> pd.DataFrame:
    # the centroids are given, so the labels only say 2D or 3D
    shape_only = np.zeros((1,) * ndim, np.uint8)
    return centroid_frame(shape_only, plan.physical_size, plan.adjacency_options, cents)


def _meshes(plan: BundlePlan, src: LabelSource, mask: RelabelledMask) -> list[ObjectMesh] | None:
    if mask.name not in plan.meshes:
        return None
    limit = plan.memory_limit if plan.memory_limit is not None else _DEFAULT_MEMORY
    need = math.prod(src.shape) * max(src.dtype.itemsize, 4) * MESH_FACTOR
    if need > limit:
        raise OptionError(
            f"mask {mask.name!r}: meshes need the whole mask in memory (about {need} bytes), "
            f"above memory_limit={limit}; raise memory_limit or mesh a cropped mask "
            "(maskbundle mesh)",
            cli=f"mask {mask.name!r}: meshes need about {need} bytes, above --memory-limit; "
                "raise it or drop --meshes")
    relabel = TileRelabel(mask.original_ids, label_dtype(mask.n_objects), name=mask.name)
    labels = relabel(src.read(tuple(slice(0, n) for n in src.shape)))
    return mesh_objects(labels, plan.physical_size, plan.mesh_options)


def compute_mask_tiled(
    plan: BundlePlan, mp: MaskPlan, advance: Advance, tile_done: TileDone | None = None,
    scratch: Path | None = None,
) -> MaskResult:
    """:func:`.compute.compute_mask` by tiles (same result; ``input_sha256`` is filled by
    the OME-TIFF pass, which reads every pixel anyway: see :mod:`.write`).

    ``scratch`` holds the parked tables (default: beside the target); the writer passes
    its staging directory, so a killed run's files go with the stale stage.

    Per-object memory, in order: pass 1 frees its sums once the feature table is built;
    the centroid graph (~400 bytes per object for the Delaunay triangulation) runs while
    the feature and linkage tables wait on disk
    (:class:`~maskbundle.io.spill.SpilledFrame`); the objects table is assembled after.
    """
    src = label_source(mp)
    scratch = plan.target.parent if scratch is None else scratch
    tm = _measure(plan, src, tile_done, scratch)
    n = int(tm.original_ids.size)
    ndim, linkage = tm.ndim, tm.linkage
    entire = int(tm.counts.sum()) == math.prod(src.shape) > 0
    features = tm.features
    # the same doubles as the feature table's centroid columns (that the in-memory path
    # takes): both are the exact integer sum over the count, one rounding
    cents = tm.centroids
    mask = RelabelledMask(mp.name, np.zeros((0,) * ndim, label_dtype(n)), tm.original_ids)
    del tm
    given: Any = mp.labels
    # input_sha256 "": the OME-TIFF pass hashes the pixels as it reads them (write stage)
    relabelled = Relabelled(mask, "", str(given.dtype if isinstance(given, np.ndarray)
                                          else src.dtype))
    adjacency: dict[AdjacencyKind, pd.DataFrame] = {}
    if "centroid" in plan.adjacency:
        # the tables wait on disk while the triangulation runs
        parked: list[SpilledFrame | None] = []
        specs = features.specs if features is not None else {}
        try:
            for frame in (features.frame if features is not None else None, linkage):
                parked.append(None if frame is None else SpilledFrame(frame, scratch))
            features = linkage = frame = None
            adjacency["centroid"] = _centroid_graph(plan, ndim, cents)
        except BaseException:
            for p in parked:
                if p is not None:
                    p.close()
            raise
        trim_heap()  # Triangle's pools
        if parked[0] is not None:
            features = FeatureTable(parked[0].load(), specs)
        if parked[1] is not None:
            linkage = parked[1].load()
    if features is not None:
        del cents  # features_table takes them from the table's columns again
        objects = features_table(plan, mp, mask, features)
        del features
    else:
        objects = assemble_table(plan, mp, mask, None, cents)
    trim_heap()
    advance(f"{mask.name} table")
    if "linkage" in plan.adjacency:
        assert linkage is not None
        adjacency["linkage"] = linkage
    del linkage
    adjacency = {k: adjacency[k] for k in ADJACENCY_KINDS if k in adjacency}
    for kind in adjacency:
        advance(f"{mask.name} {kind} adjacency")
    meshes = _meshes(plan, src, mask)
    if meshes is not None:
        advance(f"{mask.name} meshes")
    return MaskResult(
        plan=mp, relabelled=relabelled, table=objects, entire_image_masked=entire,
        adjacency=adjacency, meshes=meshes,
    )
