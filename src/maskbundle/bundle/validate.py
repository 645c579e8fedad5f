"""Validate a Segmentation Mask dataset directory against SPEC.md; return every finding.

``validate_bundle(path)`` never raises on a problem with the bundle: each rule adds a
:class:`~maskbundle.errors.Finding` that is *passed*, *failed* (severity ``error`` or
``warning``) or *not applicable*. ``report.ok`` is true when no error was found.

Names read from a file (channel names) are checked with the mask-name rule before any
path is built from them, and files that link outside the dataset are never read, so a
report never quotes a file from outside the bundle.

Finding codes (``location`` is the path relative to the dataset directory):

- ``bundle.directory``; ``layout.outside-links``, ``layout.pattern``, ``layout.unknown-file`` (warning),
  ``layout.required``, ``layout.extras-empty`` (warning), ``layout.extras-transformations``,
  ``layout.stray-objects``, ``extras.contributors`` (warning), ``extras.contributors-cells``
  (the text-cell rule of :mod:`maskbundle.rules`, as ``objects.formula`` and
  ``objects.header-formula`` for the tables)
- ``tiff.count``, ``tiff.read``, ``tiff.ome-xml``, ``tiff.xsd``, ``tiff.namespace``,
  ``tiff.image-count``, ``tiff.dimension-order`` (warning), ``tiff.size-t``, ``tiff.channel-names``,
  ``tiff.channel-names-unique``, ``tiff.mask-names``, ``tiff.channel-count``,
  ``tiff.pixel-type``, ``tiff.physical-size``, ``tiff.physical-size-z`` (warning),
  ``tiff.physical-size-recorded`` (against provenance.json),
  ``tiff.tiled`` (warning), ``tiff.compression``, ``tiff.parent``
- ``pixels.labels``; ``pyramid.present``, ``pyramid.depth`` (warning), ``pyramid.shape``,
  ``pyramid.downsample`` (warning for a mode-like level, error for invented values)
- ``manifest.present`` (warning), ``manifest.columns``, ``manifest.mask-names``,
  ``manifest.channel-numbers``, ``manifest.source-file``, ``manifest.num-objects``
- ``objects.one-file``, ``objects.tsv-only`` (warning), ``objects.prefix``,
  ``objects.readable``, ``objects.sheet`` (warning) and the cell rules of
  :mod:`maskbundle.bundle._tables` (``objects.header-block`` ... ``objects.centroids``,
  ``objects.size-columns``; ``objects.hubmap-conversion`` (warning): antibody/gene/IMS
  columns, which HuBMAP's current MuData conversion cannot carry, see
  docs/hubmap-ingest.md)
- ``adjacency.header``, ``adjacency.mask``, ``adjacency.edges``, ``adjacency.duplicates``,
  ``adjacency.distances``, ``adjacency.pixel-size``, ``adjacency.has-edges`` (warning), ``adjacency.face-pairs``,
  ``adjacency.touching``
- ``mesh.3d`` (warning), ``mesh.loads``, ``mesh.node-count``, ``mesh.node-names``,
  ``mesh.extras`` (warning), ``mesh.bounds``
"""

from __future__ import annotations

import re
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import CorruptInputError, MaskBundleError, Report
from ..io.adjacency_csv import adjacency_header_ok, judge_edge_rows
from ..io.glb import read_glb_summary
from ..io.ometiff import PHYSICAL_SIZE_KEYS, OmeMetadata, parse_ome_xml, read_ome_xml
from ..io.readers import (
    LabelTiffReader,
    TableGrid,
    list_tree,
    read_csv_rows,
    read_table_grid,
)
from ..model import UM_PER_UNIT
from ..progress import stage_progress
from ..rules import (
    ADJACENCY_COLUMNS,
    HEADER_ROWS,
    MASK_NAME_RE,
    MAX_NAME_LENGTH,
    OBJECTS_FORMATS,
    OME_NS,
    PIXEL_TYPES,
    TILE_SIZE,
    XLSX_SHEET,
    ObjectsFormat,
    text_cell_problem,
)
from . import layout
from ._pixels import LabelStats, compare_level, contact_pairs, label_stats, pair_keys
from ._tables import (
    SHOW,
    TableTruth,
    check_objects_rows,
    check_objects_table,
    first_items,
    record_rule,
)

__all__ = ["validate_bundle"]

TILE = TILE_SIZE
LOSSLESS = frozenset({"NONE", "ADOBE_DEFLATE", "DEFLATE", "LZW", "ZSTD"})
# Directory schema 2.7 also allows anything under these two folders; we warn on such files.
CATCH_ALL = (r"derived/.*", r"derived/segmentation_masks/.*")
MANIFEST_COLUMNS = list(layout.MANIFEST_COLUMNS)


@dataclass
class _Tiff:
    """What the rest of the checks need from the OME-TIFF."""

    path: Path
    names: list[str]
    size_zyx: tuple[int, int, int]
    um_zyx: tuple[float, float, float]
    stats: dict[str, LabelStats] = field(default_factory=dict)

    @property
    def is_3d(self) -> bool:
        return self.size_zyx[0] > 1


class _Run:
    """One validation run: the report plus helpers that add one finding per rule."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.report = Report(str(root))
        # objects tables being read on a second thread (see _prefetch_tables)
        self.tables: dict[Path, Future[TableGrid]] = {}

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def inside(self, path: Path) -> bool:
        """True when ``path`` resolves to a place inside the dataset directory."""
        try:
            return path.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError):  # a symlink loop
            return False

    def rule(
        self,
        location: str,
        code: str,
        offenders: list[Any],
        what: str,
        *,
        fix: str = "",
        severity: Literal["error", "warning"] = "error",
    ) -> bool:
        return record_rule(self.report, location, code, offenders, what, fix=fix,
                           severity=severity)

    def fail(
        self,
        location: str,
        code: str,
        message: str,
        severity: Literal["error", "warning"] = "error",
    ) -> None:
        self.report.add(location, code, message, severity)

    def not_applicable(self, location: str, code: str, why: str) -> None:
        self.report.add(location, code, why, "info", "not applicable")


def validate_bundle(
    path: str | Path, *, parent_image: str | Path | None = None, progress: bool = False
) -> Report:
    """Check a Segmentation Mask dataset directory against every SPEC rule that applies.

    Parameters
    ----------
    path : the dataset directory (the one holding ``extras/`` and ``derived/``).
    parent_image : optional path of the parent OME-TIFF; its SizeX/Y/Z, physical sizes and
        units must equal the mask's.
    progress : show a bar of the stages on stderr (the CLI turns it on at a terminal).

    Returns
    -------
    Report
        Every finding; ``report.ok`` is false when any error was found. Problems with the
        bundle never raise.

    Examples
    --------
    >>> from maskbundle.demo import example_bundle
    >>> ds = example_bundle()  # three cells in 32 x 32 pixels
    >>> from maskbundle import validate_bundle
    >>> validate_bundle(ds).ok
    True
    >>> (ds / "derived/segmentation_masks/cells-objects.tsv").unlink()
    >>> report = validate_bundle(ds)
    >>> report.ok, sorted({f.code for f in report.errors})
    (False, ['layout.required', 'objects.one-file'])
    """
    root = Path(path)
    run = _Run(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        run.fail(
            str(root),
            "bundle.directory",
            f"{root} {what}; pass the dataset directory that holds extras/ and derived/",
        )
        return run.report
    _check_layout(run)
    seg = root / layout.SEG_DIR
    tiffs = [p for p in sorted(seg.glob("*.ome.tif*")) if run.inside(p)] if seg.is_dir() else []
    run.rule(
        layout.SEG_DIR.as_posix(),
        "tiff.count",
        []
        if len(tiffs) == 1
        else [f"{len(tiffs)} found" + (f" ({', '.join(t.name for t in tiffs)})" if tiffs else "")],
        "exactly one OME-TIFF holds all masks as channels",
    )
    parent = Path(parent_image) if parent_image is not None else None
    with (
        stage_progress(5, enabled=progress, desc=f"validating {root.name}") as advance,
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="maskbundle-tables") as pool,
    ):
        _prefetch_tables(run, seg, pool)
        try:
            tiff = _check_tiff(run, tiffs[0], parent) if tiffs else None
            advance("OME-TIFF")
            counts = _check_objects(run, seg, tiff)
            advance("objects tables")
        finally:  # tables no channel asked for: drop what has not started
            pool.shutdown(wait=True, cancel_futures=True)
            run.tables.clear()
        _check_manifest(run, seg, tiff, counts)
        advance("manifest")
        if tiff is not None:
            _check_adjacency(run, seg, tiff)
            advance("adjacency")
            _check_meshes(run, seg, tiff)
            advance("meshes")
    return run.report


# -- layout -------------------------------------------------------------------------------


def _is_mask_name(name: str) -> bool:
    """The mask-name rule (SPEC section 2), checked before any path is built from a name."""
    return bool(MASK_NAME_RE.fullmatch(name)) and len(name) <= MAX_NAME_LENGTH


def _check_links(run: _Run) -> None:
    """Files that resolve outside the dataset (symbolic links) are reported, never read."""
    outside = []
    for p in sorted(run.root.rglob("*")):
        if p.is_symlink() and not run.inside(p):
            outside.append(run.rel(p))
    run.rule(
        ".",
        "layout.outside-links",
        outside,
        "no file links outside the dataset directory (such files are not read)",
        fix="copy the file into the dataset instead of linking it",
    )


def _check_layout(run: _Run) -> None:
    _check_links(run)
    paths = list_tree(run.root)
    known = [rx for rx, _ in layout.ALLOWED_PATTERNS]
    stray: list[str] = []
    unknown: list[str] = []
    for p in paths:
        if any(re.fullmatch(rx, p) for rx in known):
            continue
        (unknown if any(re.fullmatch(rx, p) for rx in CATCH_ALL) else stray).append(p)
    run.rule(
        ".",
        "layout.pattern",
        stray,
        "every path matches a directory schema 2.7 pattern",
        fix="only extras/ and derived/ belong in a dataset directory",
    )
    run.rule(
        ".",
        "layout.unknown-file",
        unknown,
        "files under derived/ are bundle files or lab files in derived/extras/",
        fix="move lab files to derived/extras/",
        severity="warning",
    )
    for rx, required in layout.ALLOWED_PATTERNS:
        if required:
            run.rule(
                ".",
                "layout.required",
                [] if any(re.fullmatch(rx, p) for p in paths) else [f"nothing matches {rx}"],
                f"a path matches {rx}",
            )
    for sub in ("extras", layout.DERIVED_EXTRAS.as_posix()):
        files = [p for p in paths if p.startswith(sub + "/") and not p.endswith("/")]
        run.rule(
            sub,
            "layout.extras-empty",
            [] if files else ["no files"],
            f"{sub}/ holds at least one file (zip and git drop empty folders)",
            severity="warning",
        )
    run.rule(
        "extras/transformations",
        "layout.extras-transformations",
        ["present"] if (run.root / "extras" / "transformations").exists() else [],
        "no extras/transformations/ (HuBMAP's pipeline treats it as already processed)",
    )
    objects_rx = r"derived/segmentation_masks/[^/]+-objects\.(?:xlsx|tsv)"
    bad = [
        p
        for p in paths
        if (re.search(r"objects[^/]*\.xlsx$", p) or p.endswith("-objects.tsv"))
        and not re.fullmatch(objects_rx, p)
    ]
    run.rule(
        ".",
        "layout.stray-objects",
        bad,
        "no objects tables outside derived/segmentation_masks/ (HuBMAP would ingest them)",
    )
    contributors = run.root / layout.CONTRIBUTORS
    rows = 0
    unsafe: list[str] = []
    if contributors.is_file() and run.inside(contributors):
        try:
            grid = read_table_grid(contributors).rows
        except MaskBundleError:
            grid = []
        rows = len([ln for ln in grid[1:] if any(c.strip() for c in ln)])
        unsafe = [f"row {i + 1}: {c!r}" for i, ln in enumerate(grid) for c in ln
                  if text_cell_problem(c)]
        run.rule(
            layout.CONTRIBUTORS.as_posix(),
            "extras.contributors-cells",
            unsafe[:5],
            "no cell is a formula or holds |, control characters, or text starting with "
            "= + - @ (maskbundle.rules)",
            fix="rephrase those cells",
        )
    run.rule(
        layout.CONTRIBUTORS.as_posix(),
        "extras.contributors",
        [] if rows else ["missing" if not contributors.is_file() else "no contributor rows"],
        "contributors are listed",
        fix="add one row per contributor",
        severity="warning",
    )


# -- OME-TIFF -----------------------------------------------------------------------------


def _um(value: float | None, unit: Any) -> float | None:
    if value is None:
        return None
    u = str(getattr(unit, "value", unit) or "µm")
    return float(value) * UM_PER_UNIT.get(u, float("nan"))


def _check_tiff(run: _Run, path: Path, parent: Path | None) -> _Tiff | None:
    """The OME-TIFF rules; a file too damaged to answer one of them is one ``tiff.read``
    error (tifffile's own exceptions are turned into CorruptInputError by the reader)."""
    try:
        return _check_tiff_rules(run, path, parent)
    except MaskBundleError as exc:
        run.fail(run.rel(path), "tiff.read", str(exc))
        return None


def _check_tiff_rules(run: _Run, path: Path, parent: Path | None) -> _Tiff | None:
    loc = run.rel(path)
    try:
        reader = LabelTiffReader(path)
    except MaskBundleError as exc:
        run.fail(loc, "tiff.read", str(exc))
        return None
    with reader:
        xml = reader.ome_xml
        if not run.rule(
            loc,
            "tiff.ome-xml",
            [] if xml else ["no OME-XML in the first IFD"],
            "the TIFF carries OME-XML",
        ):
            return None
        assert xml is not None
        import ome_types

        meta: OmeMetadata | CorruptInputError
        try:
            meta = parse_ome_xml(xml, loc)
        except CorruptInputError as exc:
            meta = exc
            if exc.__cause__ is None:  # refused before parsing (a DTD, too long)
                run.fail(loc, "tiff.ome-xml", str(exc))
                return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ome_types.validate_xml(xml, warn_on_schema_update=False)
            run.report.passed(loc, "tiff.xsd", "OME-XML valid against the OME 2016-06 XSD")
        except Exception as exc:  # the XSD validator raises its own types
            run.fail(loc, "tiff.xsd", f"OME-XML invalid against the OME 2016-06 XSD: {exc}"[:600])
        run.rule(
            loc,
            "tiff.namespace",
            [] if OME_NS in xml else ["other namespace"],
            f"OME namespace {OME_NS}",
        )
        if isinstance(meta, CorruptInputError):  # unparsable XML: the parser's words
            run.fail(loc, "tiff.ome-xml", f"OME-XML cannot be parsed: {meta.__cause__}"[:600])
            return None
        ome = meta.ome
        if not run.rule(
            loc,
            "tiff.image-count",
            [] if len(ome.images) == 1 else [f"{len(ome.images)} images"],
            "exactly one Image",
        ):
            if not ome.images:
                return None
        px = ome.images[0].pixels
        size_zyx = (int(px.size_z), int(px.size_y), int(px.size_x))
        order = str(getattr(px.dimension_order, "value", px.dimension_order))
        # XYZCT stores planes channel-major (CZYX), what 3D masks use; readers follow the
        # declared order, so another order still reads correctly: a warning, not an error
        ok_orders = {"XYCZT", "XYZCT"} if size_zyx[0] > 1 else {"XYCZT"}
        run.rule(
            loc,
            "tiff.dimension-order",
            [] if order in ok_orders else [order],
            "DimensionOrder XYCZT" + (" (or XYZCT for CZYX planes)" if size_zyx[0] > 1 else ""),
            fix="SPEC section 3 asks for XYCZT",
            severity="warning",
        )
        run.rule(loc, "tiff.size-t", [] if px.size_t == 1 else [f"SizeT={px.size_t}"], "SizeT is 1")
        names = [c.name or "" for c in px.channels]
        run.rule(
            loc,
            "tiff.channel-names",
            []
            if len(names) == px.size_c and all(names)
            else [f"{len(px.channels)} channels, SizeC={px.size_c}, names {names}"],
            "one named Channel per mask",
        )
        run.rule(
            loc,
            "tiff.channel-names-unique",
            sorted({n for n in names if names.count(n) > 1}),
            "channel names are unique",
        )
        run.rule(
            loc,
            "tiff.mask-names",
            [
                repr(n)
                for n in names
                if not (MASK_NAME_RE.fullmatch(n) and len(n) <= MAX_NAME_LENGTH)
            ],
            "channel names are valid mask names (lower case, digit-free)",
            fix="rename, e.g. 'Cells' -> 'cells'",
        )
        ptype = str(getattr(px.type, "value", px.type))
        run.rule(
            loc,
            "tiff.pixel-type",
            [] if ptype in PIXEL_TYPES else [ptype],
            "pixel type uint8, uint16 or uint32",
        )
        run.rule(
            loc,
            "tiff.physical-size",
            [
                a
                for a in ("PhysicalSizeX", "PhysicalSizeY")
                if getattr(px, "physical_size_" + a[-1].lower()) is None
            ],
            "PhysicalSizeX and PhysicalSizeY present (HuBMAP's field validator)",
            fix="copy them from the parent image or pass physical_size",
        )
        if size_zyx[0] > 1:
            run.rule(
                loc,
                "tiff.physical-size-z",
                [] if px.physical_size_z is not None else ["PhysicalSizeZ missing"],
                "PhysicalSizeZ present for a 3D mask",
                severity="warning",
            )
        else:
            run.not_applicable(loc, "tiff.physical-size-z", "2D mask")
        um = (
            _um(px.physical_size_z, px.physical_size_z_unit) or 1.0,
            _um(px.physical_size_y, px.physical_size_y_unit) or 1.0,
            _um(px.physical_size_x, px.physical_size_x_unit) or 1.0,
        )
        run.rule(
            loc,
            "tiff.tiled",
            [] if reader.is_tiled else ["stored in strips"],
            "planes are tiled (fast panning in viewers)",
            severity="warning",
        )
        run.rule(
            loc,
            "tiff.compression",
            [] if reader.compression in LOSSLESS else [reader.compression],
            "lossless compression every reader decodes",
            fix="use zlib (deflate)",
        )
        _check_parent(run, loc, px, parent)
        _check_recorded_size(run, loc, um, size_zyx[0] > 1)
        tiff = _Tiff(path, names, size_zyx, um)
        if not run.rule(
            loc,
            "tiff.channel-count",
            []
            if reader.n_channels == len(names)
            else [f"{reader.n_channels} channels stored, {len(names)} named"],
            "stored channels match the named channels",
        ):
            return tiff
        try:
            _check_pixels(run, loc, reader, tiff)
        except MaskBundleError as exc:
            run.fail(loc, "tiff.read", str(exc))
    return tiff


def _check_recorded_size(
    run: _Run, loc: str, um: tuple[float, float, float], is_3d: bool
) -> None:
    """The OME-TIFF's pixel size (in micrometres, units applied) equals the one
    provenance.json recorded when the bundle was written (an edited PhysicalSizeX or
    unit is caught even when no table or adjacency file depends on it)."""
    prov_path = run.root / layout.PROVENANCE
    code = "tiff.physical-size-recorded"
    if not prov_path.is_file() or not run.inside(prov_path):
        run.not_applicable(loc, code, "no provenance.json")
        return
    try:
        prov = layout.read_provenance(prov_path)
    except MaskBundleError as exc:
        run.fail(layout.PROVENANCE.as_posix(), code, str(exc), "warning")
        return
    options = prov.get("options")
    rec = options.get("physical_size_um_zyx") if isinstance(options, dict) else None
    if not (
        isinstance(rec, list)
        and len(rec) == 3
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in rec)
    ):
        run.not_applicable(loc, code, "provenance.json records no physical_size_um_zyx")
        return
    axes = ("Z", "Y", "X") if is_3d else ("Y", "X")
    got = dict(zip(("Z", "Y", "X"), um, strict=True))
    want = dict(zip(("Z", "Y", "X"), (float(v) for v in rec), strict=True))
    run.rule(
        loc,
        code,
        [
            f"PhysicalSize{a} = {got[a]:g} um, provenance.json recorded {want[a]:g} um"
            for a in axes
            if not abs(got[a] - want[a]) <= 1e-9 * max(abs(want[a]), 1e-12)
        ],
        "the pixel size (with its unit) is the one the bundle was written with",
        fix="restore PhysicalSizeX/Y/Z and their units, or rewrite the bundle",
    )


def _check_parent(run: _Run, loc: str, px: Any, parent: Path | None) -> None:
    if parent is None:
        run.not_applicable(loc, "tiff.parent", "no parent image given")
        return
    try:
        xml = read_ome_xml(parent)
    except MaskBundleError as exc:
        run.fail(loc, "tiff.parent", f"parent image unreadable: {exc}")
        return
    if not xml:
        run.fail(loc, "tiff.parent", f"parent image {parent} has no OME-XML to compare with")
        return
    try:
        pp = parse_ome_xml(xml, f"parent image {parent}").pixels
    except CorruptInputError as exc:  # unparsable parent XML: the parser's words
        run.fail(loc, "tiff.parent", f"parent OME-XML cannot be parsed: {exc.__cause__ or exc}"[:600])
        return
    keys = ["size_x", "size_y", "size_z", *PHYSICAL_SIZE_KEYS]
    diff = [
        f"{k}: {getattr(px, k)} vs parent {getattr(pp, k)}"
        for k in keys
        if getattr(px, k) != getattr(pp, k)
    ]
    run.rule(
        loc,
        "tiff.parent",
        diff,
        "sizes and physical sizes equal the parent image's",
        fix="write the bundle with parent_image= so they are copied",
    )


def _check_pixels(run: _Run, loc: str, reader: LabelTiffReader, tiff: _Tiff) -> None:
    """Labels 1..N per channel and every pyramid level, one channel and level at a time."""
    _, _, h, w = reader.level_shape(0)
    n_levels = reader.level_count
    needed = min(h, w) > TILE
    if needed or n_levels > 1:
        run.rule(
            loc,
            "pyramid.present",
            [] if n_levels > 1 else [f"1 level of {h} x {w} pixels"],
            f"reduced levels when larger than one {TILE} tile",
            fix="write SubIFD levels by stride ::2",
        )
        _, _, hl, wl = reader.level_shape(n_levels - 1)
        run.rule(
            loc,
            "pyramid.depth",
            [] if min(hl, wl) <= TILE else [f"smallest level {hl} x {wl}"],
            "levels continue until one tile holds the smaller side",
            severity="warning",
        )
    else:
        run.not_applicable(loc, "pyramid.present", f"{h} x {w} fits one {TILE} tile")
    verdicts: dict[int, list[str]] = {k: [] for k in range(1, n_levels)}
    shapes: list[str] = []
    for c, name in enumerate(tiff.names):
        base = reader.read(0, c)
        stats = label_stats(base)
        tiff.stats[name] = stats
        run.rule(
            f"{loc}#{name}",
            "pixels.labels",
            []
            if stats.contiguous
            else [
                f"N={stats.n}, largest={int(stats.ids[-1])}, first gap at {_first_gap(stats.ids)}"
            ],
            "labels are exactly 1..N",
            fix="relabel sequentially (maskbundle does on write)",
        )
        for k in range(1, n_levels):
            verdict, count = compare_level(base, reader.read(k, c), k)
            if verdict == "shape":
                shapes.append(f"level {k} of {name!r}")
            elif verdict != "stride":
                verdicts[k].append(f"{verdict}:{name}:{count}")
    run.rule(loc, "pyramid.shape", shapes, "level k has shape ceil(level0 / 2**k)")
    for k, found in verdicts.items():
        invented = [v.split(":", 1)[1] for v in found if v.startswith("invented")]
        mode = [v.split(":", 1)[1] for v in found if v.startswith("mode")]
        where = f"{loc}#level{k}"
        if invented:
            run.fail(
                where,
                "pyramid.downsample",
                f"level {k} holds labels absent from their "
                f"{2**k}x{2**k} block (averaged or interpolated): channel:pixels "
                f"{first_items(invented)}; downsample labels by stride ::2",
            )
        elif mode:
            run.fail(
                where,
                "pyramid.downsample",
                f"level {k} is not level0[..., ::{2**k}, "
                f"::{2**k}] but label-safe (mode-like): channel:pixels {first_items(mode)}",
                "warning",
            )
        else:
            run.report.passed(
                where, "pyramid.downsample", f"level {k} == level0[..., ::{2**k}, ::{2**k}]"
            )


def _first_gap(ids: np.ndarray) -> int:
    want = np.arange(1, ids.size + 1)
    diff = np.flatnonzero(ids != want)
    return int(want[diff[0]]) if diff.size else int(ids.size + 1)


# -- manifest -----------------------------------------------------------------------------


def _check_manifest(run: _Run, seg: Path, tiff: _Tiff | None, counts: dict[str, int]) -> None:
    path = run.root / layout.MANIFEST
    loc = layout.MANIFEST.as_posix()
    if not run.rule(
        loc,
        "manifest.present",
        [] if path.is_file() and run.inside(path) else ["missing"],
        "segmentation-masks.csv lists the channels",
        severity="warning",
    ):
        return
    try:
        rows = read_csv_rows(path)
    except MaskBundleError as exc:
        run.fail(loc, "manifest.columns", str(exc))
        return
    run.rule(
        loc,
        "manifest.columns",
        [] if rows and rows[0] == MANIFEST_COLUMNS else [rows[0] if rows else "empty file"],
        f"columns exactly {','.join(MANIFEST_COLUMNS)}",
    )
    body = [r + [""] * (len(MANIFEST_COLUMNS) - len(r)) for r in rows[1:]]
    run.rule(
        loc,
        "manifest.channel-numbers",
        [f"row {i + 2}: {r[0]!r}" for i, r in enumerate(body) if r[0] != str(i)],
        "Channel number is 0..C-1 in order",
    )
    if tiff is None:
        for code in ("manifest.mask-names", "manifest.source-file", "manifest.num-objects"):
            run.not_applicable(loc, code, "no readable OME-TIFF to compare with")
        return
    got = [r[1] for r in body]
    run.rule(
        loc,
        "manifest.mask-names",
        [] if got == tiff.names else [f"{got} vs channels {tiff.names}"],
        "Mask name rows == channel names, in order",
    )
    run.rule(
        loc,
        "manifest.source-file",
        [f"row {i + 2}: {r[2]!r}" for i, r in enumerate(body) if r[2] != tiff.path.name],
        f"Source file == {tiff.path.name}",
    )
    bad = []
    for i, r in enumerate(body):
        truth = tiff.stats.get(r[1])
        n = truth.n if truth is not None else counts.get(r[1])
        if n is not None and r[7] != str(n):
            bad.append(f"row {i + 2} {r[1]!r}: {r[7]!r}, want {n}")
    run.rule(loc, "manifest.num-objects", bad, "Num objects == objects of that mask")


# -- objects tables -----------------------------------------------------------------------


def _check_objects(run: _Run, seg: Path, tiff: _Tiff | None) -> dict[str, int]:
    """Check every channel's objects table; return the data-row count per mask."""
    counts: dict[str, int] = {}
    names = (
        tiff.names
        if tiff is not None
        else sorted(
            {p.name.rsplit("-objects.", 1)[0] for p in seg.glob("*-objects.*")}
            if seg.is_dir()
            else set()
        )
    )
    for name in names:
        loc = f"{layout.SEG_DIR.as_posix()}/{name}-objects.*"
        if tiff is not None and not _is_mask_name(name):
            # a channel name is data, never a path: '../../x' must not lead outside
            run.not_applicable(
                f"{layout.SEG_DIR.as_posix()}/<channel {name[:40]!r}>-objects.*",
                "objects.one-file",
                "the channel name is not a valid mask name (see tiff.mask-names); no file "
                "name is built from it",
            )
            continue
        found = [
            p
            for ext in OBJECTS_FORMATS
            if (p := seg / f"{name}-objects.{ext}").is_file() and run.inside(p)
        ]
        run.rule(
            loc,
            "objects.one-file",
            []
            if len(found) == 1
            else [
                f"{len(found)} found" + (f": {', '.join(p.name for p in found)}" if found else "")
            ],
            f"exactly one of {name}-objects.tsv / {name}-objects.xlsx",
        )
        if [p.suffix for p in found] == [".tsv"]:
            run.fail(
                run.rel(found[0]),
                "objects.tsv-only",
                "HuBMAP's online object-table check "
                "reads .xlsx files only; .tsv is fine for tables beyond Excel's row limit",
                "warning",
            )
        for p in found:
            truth = None
            if tiff is not None:
                truth = TableTruth(
                    name, tiff.path.name, tiff.stats.get(name), tiff.um_zyx, tiff.is_3d
                )
            n = _check_one_table(run, p, truth)
            if n is not None:
                counts[name] = n
    if tiff is not None and seg.is_dir():
        for p in sorted(seg.glob("*-objects.*")):
            stem = p.name.rsplit("-objects.", 1)[0]
            run.rule(
                run.rel(p),
                "objects.prefix",
                [] if stem in tiff.names else [stem],
                "the table's prefix is a channel name",
            )
    return counts


def _prefetch_tables(run: _Run, seg: Path, pool: ThreadPoolExecutor) -> None:
    """Start reading the .xlsx objects tables on two worker threads while the main one
    checks the OME-TIFF: calamine's parse (the largest single cost) and zlib release the
    GIL, and so do most of the pixel checks, so the work spreads over the cores.

    Only files a channel could ask for are read (a valid mask name, inside the dataset);
    the findings come out in the same order, as :func:`_check_one_table` takes the result.
    """
    if not seg.is_dir():
        return
    for p in sorted(seg.glob("*-objects.xlsx")):
        if _is_mask_name(p.name.rsplit("-objects.", 1)[0]) and p.is_file() and run.inside(p):
            run.tables[p] = pool.submit(_read_objects_table, p)


def _read_objects_table(path: Path) -> TableGrid:
    return read_table_grid(path, typed_body_after=HEADER_ROWS)


def _check_one_table(run: _Run, path: Path, truth: TableTruth | None) -> int | None:
    loc = run.rel(path)
    fmt: ObjectsFormat = "xlsx" if path.suffix == ".xlsx" else "tsv"
    try:
        pending = run.tables.pop(path, None)
        grid = pending.result() if pending is not None else _read_objects_table(path)
        rows = grid.rows
        if grid.sheet_names is not None:
            run.rule(
                loc,
                "objects.sheet",
                [] if grid.sheet_names == [XLSX_SHEET] else [str(grid.sheet_names)],
                "one sheet named MAIN (as in the template)",
                severity="warning",
            )
    except MaskBundleError as exc:
        run.fail(loc, "objects.readable", str(exc))
        return None
    run.report.passed(loc, "objects.readable", f"{fmt} table readable")
    if grid.columns is not None:  # an .xlsx read with its numbers as numbers
        return check_objects_table(rows, grid.columns, grid.n_body, location=loc, fmt=fmt,
                                   report=run.report, truth=truth)
    return check_objects_rows(rows, location=loc, fmt=fmt, report=run.report, truth=truth)


# -- adjacency ----------------------------------------------------------------------------


def _check_adjacency(run: _Run, seg: Path, tiff: _Tiff) -> None:
    files = [
        (kind, p)
        for kind in ("centroid", "linkage")
        for p in sorted(seg.glob(f"*-{kind}-adjacency.csv"))
        if run.inside(p)
    ]
    if not files:
        run.not_applicable(layout.SEG_DIR.as_posix(), "adjacency.header", "no adjacency files")
    for kind, path in files:
        loc = run.rel(path)
        name = path.name[: -len(f"-{kind}-adjacency.csv")]
        try:
            rows = read_csv_rows(path)
        except MaskBundleError as exc:
            run.fail(loc, "adjacency.header", str(exc))
            continue
        if not run.rule(
            loc,
            "adjacency.header",
            [] if adjacency_header_ok(rows) else [rows[0] if rows else "empty file"],
            f"header starts {','.join(ADJACENCY_COLUMNS)}",
        ):
            continue
        stats = tiff.stats.get(name)
        if not run.rule(
            loc,
            "adjacency.mask",
            [] if stats is not None else [name],
            "the file's prefix is a channel with readable pixels",
        ):
            continue
        assert stats is not None
        edges = judge_edge_rows(rows[1:], stats.ids)
        a, b, d, parsed = edges.a, edges.b, edges.d, edges.parsed
        known_a, known_b = edges.known_a, edges.known_b
        n_bad = int(np.count_nonzero(~edges.good))
        run.rule(
            loc,
            "adjacency.edges",
            edges.reasons(SHOW) + ([f"({n_bad} in all)"] if n_bad > SHOW else []),
            "edges are 'id1 < id2', known Object IDs, finite distance >= 0",
        )
        keys = pair_keys(a[parsed], b[parsed]) if parsed.any() else np.zeros(0, np.uint64)
        run.rule(loc, "adjacency.duplicates", edges.duplicates(), "no duplicate edges")
        usable = parsed & known_a & known_b
        if kind == "centroid":
            _check_centroid_distances(run, loc, stats, a[usable], b[usable], d[usable], tiff)
        else:
            _check_linkage(run, loc, name, tiff, keys, a[usable], b[usable], d[usable])


def _check_centroid_distances(
    run: _Run,
    loc: str,
    stats: LabelStats,
    a: np.ndarray,
    b: np.ndarray,
    d: np.ndarray,
    tiff: _Tiff,
) -> None:
    ca = stats.centroids[np.searchsorted(stats.ids, a)]
    cb = stats.centroids[np.searchsorted(stats.ids, b)]
    true = np.sqrt((((ca - cb) * np.asarray(tiff.um_zyx)) ** 2).sum(axis=1))
    with np.errstate(invalid="ignore"):
        off = ~(np.abs(true - d) <= 1e-3 * np.maximum(1.0, true) + 1e-3)
    run.rule(
        loc,
        "adjacency.distances",
        [f"{a[i]},{b[i]}: {d[i]} vs {true[i]:.4f}" for i in np.flatnonzero(off)],
        "distances are exact centroid distances in micrometres",
    )
    if off.any():
        _name_pixel_size(run, loc, ca - cb, d, tiff)
    run.rule(
        loc,
        "adjacency.has-edges",
        [] if a.size or stats.n < 2 else ["no edges"],
        "a mask with objects has neighbours",
        severity="warning",
    )


def _name_pixel_size(
    run: _Run, loc: str, delta_zyx: np.ndarray, d: np.ndarray, tiff: _Tiff
) -> None:
    """When the distances are exact for *another* pixel size, say so by name.

    ``d**2 = sum((delta_i * s_i)**2)`` is linear in the squared sizes ``s_i**2``; a least
    squares fit that reproduces every distance means the file was computed with that
    pixel size, so the OME-TIFF's PhysicalSize (or its unit) was edited afterwards.
    """
    axes = [0, 1, 2] if tiff.is_3d else [1, 2]
    a = (delta_zyx[:, axes] ** 2).astype(np.float64)
    ok = np.isfinite(d) & np.all(np.isfinite(a), axis=1)
    a, d2 = a[ok], d[ok].astype(np.float64) ** 2
    if a.shape[0] < len(axes) or np.linalg.matrix_rank(a) < len(axes):
        return
    sq, *_ = np.linalg.lstsq(a, d2, rcond=None)
    if not np.all(sq > 0):
        return
    fit = np.sqrt(sq)
    if not np.allclose(np.sqrt(a @ sq), np.sqrt(d2), rtol=1e-4, atol=1e-6):
        return  # not one consistent pixel size: the distances themselves are wrong
    names = ["PhysicalSizeZ", "PhysicalSizeY", "PhysicalSizeX"]
    declared = dict(zip(names, tiff.um_zyx, strict=True))
    fitted = {names[i]: float(v) for i, v in zip(axes, fit, strict=True)}
    run.rule(
        loc,
        "adjacency.pixel-size",
        [
            f"{k}: distances fit {v:.6g} um, the OME-TIFF declares {declared[k]:g} um"
            for k, v in fitted.items()
            if not np.isclose(v, declared[k], rtol=1e-4)
        ],
        "the distances were computed with the OME-TIFF's pixel size",
        fix="PhysicalSizeX/Y/Z or their unit were edited after the adjacency was written; "
        "restore them or recompute the adjacency",
    )


def _check_linkage(
    run: _Run,
    loc: str,
    name: str,
    tiff: _Tiff,
    keys: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    d: np.ndarray,
) -> None:
    with LabelTiffReader(tiff.path) as reader:
        lab = reader.read(0, tiff.names.index(name))
    if not tiff.is_3d:
        lab = lab[0]
    face = contact_pairs(lab, diagonal=False)
    missing = np.setdiff1d(face, keys)
    run.rule(
        loc,
        "adjacency.face-pairs",
        [f"{int(k) >> 32},{int(k) & 0xFFFFFFFF}" for k in missing],
        "every pair of objects sharing a face is listed",
    )
    touching = contact_pairs(lab, diagonal=True)
    zero = d == 0
    zk = pair_keys(a[zero], b[zero])
    wrong = zk[~np.isin(zk, touching)]
    run.rule(
        loc,
        "adjacency.touching",
        [f"{int(k) >> 32},{int(k) & 0xFFFFFFFF}" for k in wrong],
        "distance-0 edges really touch",
    )


# -- meshes -------------------------------------------------------------------------------


def _extras_hold_id(extras: Any, object_id: str) -> bool:
    """True when a node's extras (a JSON object) has a value equal to its Object ID."""
    return isinstance(extras, dict) and any(str(v) == object_id for v in extras.values())


def _check_meshes(run: _Run, seg: Path, tiff: _Tiff) -> None:
    for path in sorted(seg.glob("*-mesh.glb")):
        if not run.inside(path):
            continue
        loc = run.rel(path)
        name = path.name[: -len("-mesh.glb")]
        run.rule(
            loc,
            "mesh.3d",
            [] if tiff.is_3d else ["2D mask"],
            "meshes belong to 3D masks",
            severity="warning",
        )
        try:
            glb = read_glb_summary(path)
        except MaskBundleError as exc:
            run.fail(loc, "mesh.loads", str(exc))
            continue
        run.report.passed(loc, "mesh.loads", "loads as glTF binary")
        stats = tiff.stats.get(name)
        want = [str(int(i)) for i in stats.ids] if stats is not None else []
        run.rule(
            loc,
            "mesh.node-count",
            []
            if stats is not None and len(glb.node_names) == stats.n
            else [f"{len(glb.node_names)} nodes, {len(want)} objects"],
            "one mesh node per object",
        )
        run.rule(
            loc,
            "mesh.node-names",
            []
            if sorted(glb.node_names) == sorted(want)
            else [
                f"extra {first_items(sorted(set(glb.node_names) - set(want)))}; missing "
                f"{first_items(sorted(set(want) - set(glb.node_names)))}"
            ],
            "node names are the Object IDs",
        )
        no_extras = [n for n in glb.node_names if not _extras_hold_id(glb.node_extras.get(n), n)]
        run.rule(
            loc,
            "mesh.extras",
            no_extras,
            "each node carries its Object ID in extras",
            severity="warning",
        )
        if glb.bounds is None or not want:
            run.not_applicable(loc, "mesh.bounds", "no mesh vertices")
            continue
        z, y, x = tiff.size_zyx
        zum, yum, xum = tiff.um_zyx
        ext = np.array([x * xum, y * yum, z * zum])
        tol = max(xum, yum, zum)
        lo, hi = glb.bounds
        inside = bool((lo >= -1e-6 - tol).all() and (hi <= ext + tol).all())
        run.rule(
            loc,
            "mesh.bounds",
            [] if inside else [f"bounds {lo} .. {hi}, image {ext}"],
            "vertices lie inside the image in micrometres (x, y, z)",
        )
