"""Stage 3 of the writer: every file of a new bundle, staged and moved into place.

:func:`bundle_stage` opens the staging directory (refusing an existing target unless
``overwrite``, before any pixel work) and moves the finished dataset into place when
its block ends; :func:`write_bundle` writes every file into it through io/: objects
tables, label maps, adjacency CSVs, meshes, the OME-TIFF, manifest, contributors and
provenance, and returns the :class:`~.result.BundleResult`.

Seam for whole-slide output: the OME-TIFF pixels go through one function,
:func:`write_label_image` ``(path, plan, results) -> levels``. It gets, per mask, the
label *source* (``results[c].plan.labels``) and the relabel map
(``results[c].mask.original_ids``). In memory it hands the relabelled arrays
(``results[c].mask.labels``) to the writer unstacked, on a thread beside the table
writes; on the streaming path (``plan.streaming``) it relabels the source band by band
(``write_label_ome_tiff_streaming``) and returns the input checksums hashed on the way,
which replace the empty ones in provenance. Everything else written here is O(objects),
not O(pixels).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import HubmapConversionWarning
from ..io.ometiff import (
    StreamChannel,
    build_ome_xml,
    write_label_ome_tiff,
    write_label_ome_tiff_streaming,
)
from ..io.staging import staged_path
from ..io.tables import (
    write_adjacency_rows,
    write_csv,
    write_json,
    write_objects_table,
    write_tsv,
)
from ..labels.relabel import TileRelabel, label_dtype
from ..measure.tiled import trim_heap
from ..progress import pixel_progress
from ..rules import EXCEL_MAX_OBJECTS, OBJECT_ID, TILE_SIZE, ObjectsFormat
from . import layout
from .adjacency import provenance_entry
from .compute import MaskResult
from .contributors import CONTRIBUTOR_COLUMNS
from .hubmap import conversion_problem
from .meshes import mesh_provenance, write_mesh_file
from .objects import ontology_abbreviation
from .plan import BundlePlan
from .result import BundleResult
from .tiles import label_source

__all__ = ["bundle_stage", "write_bundle", "write_label_image"]

Advance = Callable[[str], None]


@contextmanager
def bundle_stage(plan: BundlePlan) -> Iterator[Path]:
    """A staging directory for ``plan.target``; moved into place when the block ends."""
    with staged_path(
        plan.target, overwrite=plan.overwrite, guard=layout.check_replaceable,
        inputs=plan.inputs,
    ) as stage:
        (stage / layout.SEG_DIR).mkdir(parents=True)
        (stage / layout.DERIVED_EXTRAS).mkdir(parents=True)
        (stage / layout.CONTRIBUTORS).parent.mkdir(parents=True)
        yield stage


def objects_formats(plan: BundlePlan, results: Sequence[MaskResult]) -> dict[str, ObjectsFormat]:
    """Each mask's table format: xlsx when asked and within Excel's row limit, else tsv."""
    too_many = [r.mask.name for r in results if r.mask.n_objects > EXCEL_MAX_OBJECTS]
    if plan.objects_format == "xlsx" and too_many:
        warnings.warn(
            f"masks {too_many} have more objects than Excel's row limit; their tables are "
            "written as TSV (HuBMAP's online table check reads only xlsx)",
            stacklevel=4,
        )
    return {r.mask.name: "tsv" if r.mask.name in too_many else plan.objects_format
            for r in results}


def write_label_image(
    path: Path, plan: BundlePlan, results: Sequence[MaskResult],
    cancel: threading.Event | None = None,
) -> tuple[int, list[str] | None]:
    """The OME-TIFF of every mask's relabelled labels (one channel each); returns the
    number of pyramid levels and, on the streaming path, each mask's input checksum
    (hashed from the pixels read for the write), else None. In memory the masks go to
    the writer as they are (one view per channel, never stacked); ``cancel`` stops it
    between tiles."""
    dtype = label_dtype(max(r.mask.n_objects for r in results))
    xml = _ome_xml(plan, results, dtype)
    if plan.streaming:
        channels = [StreamChannel(label_source(r.plan), TileRelabel(
            r.mask.original_ids, dtype, name=r.mask.name)) for r in results]
        total = len(results) * int(np.prod(plan.zyx))
        with pixel_progress(total, enabled=plan.progress, desc="OME-TIFF") as done:
            streamed = write_label_ome_tiff_streaming(
                path, channels, ome_xml=xml, dtype=dtype, compression=plan.compression,
                progress=done)
        return streamed.levels, streamed.input_sha256
    levels = write_label_ome_tiff(
        path, [r.mask.labels.reshape(plan.zyx) for r in results], ome_xml=xml,
        compression=plan.compression, dtype=dtype, cancel=cancel)
    return levels, None


@contextmanager
def _label_image_beside(
    path: Path, plan: BundlePlan, results: Sequence[MaskResult]
) -> Iterator[Callable[[], tuple[int, list[str] | None]]]:
    """Write the in-memory OME-TIFF on a thread while the block writes the tables: its
    compression threads fill the core the single-threaded table formatting leaves idle.
    Yields the join (which re-raises the writer's error); an error in the block stops
    the writer before the next tile and waits for it, so nothing writes into the stage
    after it is discarded. The streaming path writes in the join, in order (its bands
    and progress bar are not meant to share the machine)."""
    if plan.streaming:

        def wait_for_label_image() -> tuple[int, list[str] | None]:
            return write_label_image(path, plan, results)

        yield wait_for_label_image
        return
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskbundle-ome-tiff") as pool:
        future = pool.submit(write_label_image, path, plan, results, cancel)

        def wait_for_label_image() -> tuple[int, list[str] | None]:  # named for profiles
            return future.result()

        try:
            yield wait_for_label_image
        except BaseException:
            cancel.set()
            raise


def _ome_xml(plan: BundlePlan, results: Sequence[MaskResult], dtype: np.dtype[Any]) -> bytes:
    return build_ome_xml(
        channel_names=[r.mask.name for r in results],
        shape_zyx=plan.zyx,
        dtype=dtype,
        physical_size=plan.physical_size,
        image_name=plan.stem,
        parent=plan.parent,
    )


def _write_mask_files(
    stage: Path, plan: BundlePlan, r: MaskResult, fmt: ObjectsFormat, written: list[Path]
) -> dict[str, Any]:
    """Objects table, label map and adjacency CSVs of one mask; its adjacency provenance.

    On the streaming path every table is released as soon as it is written (its columns
    are not read again): the adjacency tables first, so the objects table's write (the
    largest per-object peak of this stage) does not hold them, and the OME-TIFF pass
    that follows holds none (~400 bytes per object, 4 GB at 10 million objects).
    """
    name = r.mask.name
    release = plan.streaming
    entries: dict[str, Any] = {}
    adjacency_rel = []
    for kind, frame in r.adjacency.items():
        entry = provenance_entry(name, kind, frame)
        write_adjacency_rows(stage / layout.SEG_DIR / entry["file"], frame)
        adjacency_rel.append(layout.SEG_DIR / entry["file"])
        entries[kind] = entry
        if release:
            frame.drop(columns=list(frame.columns), inplace=True)
    table_rel = layout.objects_path(name, fmt)
    specs = r.table.specs
    write_objects_table(stage / table_rel, specs, r.table.frame)
    if release:
        r.table.frame.drop(columns=list(r.table.frame.columns), inplace=True)
        trim_heap()
    written.append(table_rel)
    problem = conversion_problem([s.name for s in specs], [s.feature_class for s in specs])
    if problem:
        warnings.warn(HubmapConversionWarning(f"{table_rel.name}: {problem}"), stacklevel=4)
    if r.mask.changed:
        ids = r.mask.original_ids
        # row blocks: a Python int per object for the whole map is ~40 bytes per object
        block = 1 << 16
        write_csv(
            stage / layout.label_map_path(name),
            ("Original label", OBJECT_ID),
            (row for a in range(0, ids.size, block) for row in zip(
                ids[a : a + block].tolist(), range(a + 1, min(a + block, ids.size) + 1),
                strict=True)),
        )
        written.append(layout.label_map_path(name))
    written += adjacency_rel
    return entries


def _provenance(plan: BundlePlan) -> dict[str, Any]:
    """provenance.json without the per-mask and per-file parts."""
    ps, f = plan.physical_size, plan.features
    return {
        "maskbundle_version": __version__,
        "options": {
            "physical_size_um_zyx": list(ps.um_zyx()),
            "physical_size": {"x": ps.x, "y": ps.y, "z": ps.z, "unit_x": ps.unit_x,
                              "unit_y": ps.unit_y, "unit_z": ps.unit_z},
            "parent_image": None if plan.parent is None else Path(plan.parent.path).name,
            "parent_image_sha256": plan.parent_sha256,
            "protocol_doi": plan.protocol_doi,
            "annotation_tool": plan.annotation_tool,
            "objects_format": plan.objects_format,
            "compression": plan.compression,
            "name": plan.stem,
        },
        "features": {
            "morphology": f.morphology,
            "intensity_statistics": list(f.statistics),
            "intensity_image": f.intensity_source,
            "intensity_image_sha256": f.intensity_checksum(),
            "definitions": "scikit-image regionprops with spacing = pixel size, except where "
                           "a column's Description says otherwise",
        },
        "relabel": "ascending by original label to 1..N; 0 stays background",
        "masks": {},
        "source": plan.source_provenance,
    }


def _mask_provenance(
    plan: BundlePlan, r: MaskResult, c: int, table_file: str
) -> dict[str, Any]:
    return {
        "source": r.plan.source_provenance,
        "channel": c,
        "objects": r.mask.n_objects,
        "mask_id": r.plan.mask_id,
        "input_sha256": r.relabelled.input_sha256,
        "input_dtype": r.relabelled.input_dtype,
        "shape": list(plan.shape),  # every mask's (checked in the plan); no pixels here
        "relabelled": r.mask.changed,
        "objects_table": table_file,
    }


def write_bundle(
    stage: Path, plan: BundlePlan, results: Sequence[MaskResult], advance: Advance
) -> BundleResult:
    """Write every file of the bundle into ``stage`` (see :func:`bundle_stage`)."""
    formats = objects_formats(plan, results)
    with _label_image_beside(stage / plan.tiff_rel, plan, results) as label_image:
        provenance = _provenance(plan)
        written: list[Path] = []
        manifest = []
        for c, r in enumerate(results):
            name = r.mask.name
            adjacency = _write_mask_files(stage, plan, r, formats[name], written)
            if adjacency:
                provenance.setdefault("adjacency", {})[name] = adjacency
            manifest.append((c, name, plan.source_file, ontology_abbreviation(r.plan.mask_id),
                             r.plan.mask_id, plan.protocol_doi,
                             "Yes" if r.entire_image_masked else "No", r.mask.n_objects))
            provenance["masks"][name] = _mask_provenance(
                plan, r, c, layout.objects_path(name, formats[name]).name)
        meshes: dict[str, Path | None] = {}
        if plan.meshes:
            entries = {}
            for r in results:
                if r.meshes is not None:
                    rel = layout.mesh_path(r.mask.name)
                    entries[r.mask.name] = write_mesh_file(stage / rel, r.mask.name, r.meshes)
                    meshes[r.mask.name] = plan.target / rel if r.meshes else None
                    written += [rel] if r.meshes else []
            provenance["meshes"] = mesh_provenance(plan.mesh_options, entries)
        levels, input_sums = label_image()
        for r, sha in zip(results, input_sums or (), strict=False):
            provenance["masks"][r.mask.name]["input_sha256"] = sha  # same key, same place
        written.append(plan.tiff_rel)
        advance("OME-TIFF")
        dtype = label_dtype(max(r.mask.n_objects for r in results))
        provenance["ome_tiff"] = {"file": plan.source_file, "dtype": str(dtype), "levels": levels,
                                  "tile": TILE_SIZE, "downsampling": "stride: level[k] = "
                                  "level0[..., ::2**k, ::2**k]"}
        write_csv(stage / layout.MANIFEST, layout.MANIFEST_COLUMNS, manifest)
        write_tsv(stage / layout.CONTRIBUTORS, CONTRIBUTOR_COLUMNS, plan.contributors)
        write_json(stage / layout.PROVENANCE, provenance)
        written += [layout.MANIFEST, layout.CONTRIBUTORS]
        return BundleResult(plan.target, tuple(plan.target / rel for rel in written), provenance,
                            meshes)
