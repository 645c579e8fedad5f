"""``write_segmentation_bundle``: masks in, a complete dataset directory out.

Three stages, one module each:

1. :mod:`.plan` -- :func:`~.plan.plan_bundle` resolves and checks every option into
   one frozen :class:`~.plan.BundlePlan` (one :class:`~.plan.MaskPlan` per mask)
   before any pixel is read;
2. :mod:`.compute` -- :func:`~.compute.compute_mask` runs the per-mask stages over
   arrays (relabel, objects table + centroid array, adjacency, meshes) and returns a
   :class:`~.compute.MaskResult`; no disk I/O;
3. :mod:`.write` -- :func:`~.write.bundle_stage` stages the dataset directory and
   :func:`~.write.write_bundle` writes every file through io/; the directory moves into
   place when every file is written.

The stage is opened before the compute stage so that an existing target is refused
before any pixel work, and so that a streaming pass can write into it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..io.sources import LabelSource
from ..model import ColumnSpec, PhysicalSize, Segmentation
from ..progress import stage_progress, tile_progress
from ..rules import ObjectsFormat
from .compute import compute_mask
from .plan import DEFAULT_MASK_IDS, array_checksum, normalise_doi, plan_bundle
from .result import BundleResult
from .tiles import compute_mask_tiled
from .write import bundle_stage, write_bundle

__all__ = [
    "DEFAULT_MASK_IDS",
    "BundleResult",
    "array_checksum",
    "normalise_doi",
    "write_segmentation_bundle",
]


def write_segmentation_bundle(
    path: str | Path,
    masks: Mapping[str, Any] | Segmentation,
    *,
    physical_size: PhysicalSize | tuple[float, ...] | float | None = None,
    mask_ids: Mapping[str, str] | None = None,
    protocol_doi: str | None = None,
    parent_image: str | Path | None = None,
    stem: str | None = None,
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
    name: str | None = None,
    memory_limit: int | str | None = None,
    streaming: bool | None = None,
    tile: int | None = None,
    client: Any = None,
) -> BundleResult:
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
    stem : str, optional
        Stem of ``<stem>.segmentations.ome.tiff``; default from the directory name.
        (``name=`` is the deprecated spelling: "name" is a mask's name elsewhere.)
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
        Show a progress bar of the stages on stderr (the CLI turns it on at a terminal);
        on the streaming path also one per tile of pass 1 and per band of the OME-TIFF.
    memory_limit : int or str, optional
        Bytes (or text: ``"4GiB"``, ``"512MB"``) for the pixel working set. Numpy masks
        whose in-memory run would need more (``IN_MEMORY_FACTOR`` = 4 x their label bytes)
        are streamed; on the streaming path it sets the tile size
        (:func:`maskbundle.measure.tiled.plan_tiles`, default 1 GiB). Per-object state
        comes on top: :func:`maskbundle.measure.tiled.bytes_per_object` (about 640 B per
        object plus 64 B per intensity column).
    streaming : bool, optional
        None (default): stream when a mask is lazy (a path to a TIFF/OME-TIFF, zarr /
        OME-Zarr directory or ``.npy``; a dask or zarr array) or too big for
        ``memory_limit``. True forces the tile passes, False the in-memory path. The
        bundle is byte-identical either way; 3D meshes on the streaming path read the
        whole mask, so it must fit ``memory_limit`` (4 x its label bytes, else
        ``OptionError``).
    tile : int, optional
        Force the tile edge of the streaming path (pixels, a multiple of 512).
    client : dask.distributed.Client, optional
        Run the per-tile tasks of pass 1 on its workers (a lazy input must be readable
        there); merging, pass 2 and the final move run here. Same bytes.

    Returns
    -------
    BundleResult
        Stands for the dataset directory (``os.PathLike``, ``==`` a ``Path`` of it,
        ``result / "derived"``) and lists the files written and the provenance.

    Warns
    -----
    HubmapConversionWarning
        For each table with antibody/gene/IMS columns (marker intensities): valid, but
        HuBMAP's current post-ingest conversion cannot carry them (docs/hubmap-ingest.md).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle import write_segmentation_bundle, validate_bundle
    >>> cells = np.zeros((32, 32), np.uint16)
    >>> cells[2:10, 2:10], cells[2:10, 10:18], cells[20:30, 5:15] = 5, 9, 12
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> result = write_segmentation_bundle(tmp / "ds", {"cells": cells},
    ...     physical_size=(0.5, 0.5), protocol_doi="10.17504/protocols.io.example")
    >>> result == tmp / "ds"
    True
    >>> sorted(p.name for p in (result / "derived/segmentation_masks").iterdir())
    ['cells-objects.tsv', 'ds.segmentations.ome.tiff', 'segmentation-masks.csv']
    >>> result.provenance["masks"]["cells"]["objects"]
    3
    >>> validate_bundle(result).ok
    True
    """
    options = dict(locals())  # every keyword above, by name
    del options["path"], options["masks"], options["name"]
    if name is not None:
        if stem is not None:
            raise OptionError("give stem= only (name= is its deprecated spelling)")
        warnings.warn("write_segmentation_bundle(name=...) is deprecated; use stem= (the "
                      "OME-TIFF's file-name stem)", DeprecationWarning, stacklevel=2)
        options["stem"] = name
    plan = plan_bundle(path, masks, **options)
    try:
        with bundle_stage(plan) as stage, stage_progress(
            plan.n_stages, enabled=plan.progress, desc=f"writing {plan.target.name}"
        ) as advance:
            results = []
            for mp in plan.masks:
                if not plan.streaming:
                    results.append(compute_mask(plan, mp, advance))
                    continue
                with tile_progress(int(np.prod(plan.shape)), enabled=plan.progress,
                                   desc=f"{mp.name} tiles") as tile_done:
                    results.append(compute_mask_tiled(plan, mp, advance, tile_done, stage))
            return write_bundle(stage, plan, results, advance)
    finally:
        for mp in plan.masks:
            if isinstance(mp.labels, LabelSource):
                mp.labels.close()
