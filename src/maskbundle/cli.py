"""The ``maskbundle`` command: thin wrappers that parse arguments and call the library.

Every MaskBundleError becomes a one-line message on stderr and exit status 2; a failed
validation is exit status 1.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from ._version import __version__
from .errors import (
    CorruptInputError,
    MaskBundleError,
    MaskBundleWarning,
    OptionError,
    UnsafeOverwriteError,
)
from .rules import OBJECTS_FORMATS
from .viewers import geojson_exporter  # noqa: F401  (registers `export --to geojson`)

F = TypeVar("F", bound=Callable[..., Any])


class _OneLineUsageError(click.UsageError):
    """Click's usage errors as one line, like ours (click prints usage, hint and message)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {' '.join(self.format_message().split())} (see --help)", err=True)


class _Command(click.Command):
    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _OneLineUsageError(exc.format_message(), exc.ctx) from exc


class _Group(_Command, click.Group):
    command_class = _Command
    group_class = type  # sub-groups are _Group too

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:  # "No such command"
            raise _OneLineUsageError(exc.format_message(), exc.ctx) from exc


def handle_errors(func: F) -> F:
    """Map library errors to a clear message and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                _print_our_warnings()
                return func(*args, **kwargs)
        except MaskBundleError as exc:
            click.echo(f"error: {exc.cli_message}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _print_our_warnings() -> None:
    """Inside a ``catch_warnings`` block: print maskbundle's warnings as ``warning: ...``."""
    original = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, MaskBundleWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", MaskBundleWarning)


def only_option(help: str) -> Callable[[F], F]:
    """``--only MASK`` (repeat): the mask filter of a command, passed on as ``masks``.

    ``--mask NAME`` was its old spelling; it still works, hidden from ``--help``, because
    ``--mask`` now means ``NAME=FILE`` only (``maskbundle bundle``).
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def merged(*args: Any, only: tuple[str, ...], old_mask: tuple[str, ...],
                   **kwargs: Any) -> Any:
            return func(*args, masks=only + old_mask, **kwargs)

        with_old = click.option("--mask", "old_mask", multiple=True, hidden=True)(merged)
        return click.option("--only", "only", multiple=True, metavar="MASK", help=help)(
            with_old)  # type: ignore[return-value]

    return decorate


def parse_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` options to a dict (``--mask cells=cells.tif``)."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise OptionError(f"{what} {item!r} must look like NAME=VALUE, e.g. cells=cells.tif")
        if key in out:
            raise OptionError(
                f"{what} {key}= is given twice ({out[key]!r} and {value!r}); give each name once"
            )
        out[key] = value
    return out


def bundle_options(func: F) -> F:
    """Options shared by every command that writes a bundle (bundle, convert)."""
    decorators = [
        click.option("--physical-size", "physical_size", type=float, multiple=True,
                     help="Micrometres per pixel: X Y [Z] (repeat the option or give 2-3 values)."),
        click.option("--parent", "parent", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), help="Parent OME-TIFF: copy sizes and physical sizes."),
        click.option("--mask-id", "mask_id", multiple=True, metavar="MASK=OBO",
                     help="OBO id of a mask's class, e.g. cells=CL:0000000."),
        click.option("--object-type", "object_type", multiple=True, metavar="MASK=OBO",
                     help="One OBO id for every object of a mask."),
        click.option("--protocol-doi", required=True, help="DOI of the segmentation protocol."),
        click.option("--stem", "--name", "stem", default=None,
                     help="Stem of <stem>.segmentations.ome.tiff (--name is the old spelling)."),
        click.option("--annotation-tool", default="In-house", show_default=True),
        click.option("--objects-format", type=click.Choice(OBJECTS_FORMATS), default="tsv",
                     show_default=True),
        click.option("--compression", type=click.Choice(["zlib", "zstd"]), default="zlib",
                     show_default=True),
        click.option("--intensity", "intensity", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), help="Marker image (OME-TIFF CYX/CZYX, TIFF or NPY) on the "
                     "masks' grid; adds intensity columns per marker."),
        click.option("--marker", "markers", multiple=True, metavar="NAME",
                     help="Marker name of each intensity channel, in order (default: the "
                     "OME channel names)."),
        click.option("--features", "features", default=None, metavar="LIST",
                     help="Comma-separated: morphology, mean, median, std, min, max, sum; "
                     "'none' for the required columns only [default: morphology,mean]."),
        click.option("--adjacency", "adjacency", multiple=True,
                     type=click.Choice(["centroid", "linkage"]),
                     help="Also write <mask>-<kind>-adjacency.csv (repeat for both)."),
        click.option("--max-distance", type=float, default=None,
                     help="Centroid adjacency: drop edges longer than this (um) [default: "
                     "3 x the median Delaunay edge]."),
        click.option("--max-gap", type=float, default=None,
                     help="Linkage adjacency: also link objects within this gap (um)."),
        click.option("--meshes", is_flag=True,
                     help="Also write <mask>-mesh.glb for every mask (3D masks only)."),
        click.option("--contributors", "contributors", type=click.Path(
                     exists=True, dir_okay=False, path_type=Path),
                     help="contributors.tsv to copy into extras/ (HuBMAP columns, checked)."),
        click.option("--overwrite", is_flag=True, help="Replace an existing output directory."),
        click.option("--memory-limit", "memory_limit", default=None, metavar="SIZE",
                     help="Bytes for the pixel working set, e.g. 4GiB: masks needing more "
                     "in memory are streamed by tiles sized to it (about 640 bytes per object "
                     "comes on top)."),
        click.option("--streaming/--no-streaming", "streaming", default=None,
                     help="Force the tile path (or the in-memory path) [default: automatic: "
                     "zarr directories and masks above --memory-limit stream]."),
        click.option("--scheduler", "scheduler", default=None, metavar="ADDRESS",
                     help="dask.distributed scheduler (tcp://host:8786): run the per-tile "
                     "passes on its workers (inputs and output on a shared filesystem)."),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return func


def bundle_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of write_segmentation_bundle from the shared CLI options."""
    ps = tuple(opts["physical_size"]) or None
    return {
        "physical_size": ps,
        "parent_image": opts["parent"],
        "mask_ids": parse_pairs(opts["mask_id"], "--mask-id"),
        "object_types": parse_pairs(opts["object_type"], "--object-type"),
        "protocol_doi": opts["protocol_doi"],
        "stem": opts["stem"],
        "annotation_tool": opts["annotation_tool"],
        "objects_format": opts["objects_format"],
        "compression": opts["compression"],
        "intensity_image": opts.get("intensity"),
        "marker_names": list(opts["markers"]) if opts.get("markers") else None,
        "features": parse_features(opts.get("features")),
        "adjacency": tuple(opts.get("adjacency") or ()) or None,
        "adjacency_options": {"max_distance": opts.get("max_distance"),
                              "max_gap": opts.get("max_gap")},
        "meshes": bool(opts.get("meshes")),
        "contributors": read_contributors(opts["contributors"]) if opts.get("contributors")
        else None,
        "overwrite": opts["overwrite"],
        "progress": sys.stderr.isatty(),
        "memory_limit": opts.get("memory_limit"),
        "streaming": opts.get("streaming"),
    }


@contextmanager
def scheduler_client(address: str | None) -> Iterator[Any]:
    """A ``dask.distributed`` Client of ``--scheduler`` (None without it), closed after."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise OptionError("--scheduler needs dask.distributed: pip install 'maskbundle[dask]'"
                          ) from exc
    try:
        client = Client(address, timeout="20s")  # type: ignore[no-untyped-call,unused-ignore]
    except (OSError, TimeoutError) as exc:
        raise OptionError(f"--scheduler {address}: cannot connect ({exc}); start the "
                          "scheduler or check the address") from exc
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call,unused-ignore]


def _write_bundle(out: Path, masks: Any, opts: dict[str, Any]) -> Any:
    from .bundle.build import write_segmentation_bundle

    with scheduler_client(opts.get("scheduler")) as client:
        return write_segmentation_bundle(out, masks, **bundle_kwargs(opts), client=client)


# label files read by tiles when they are this big (4 x this in memory otherwise)
_STREAM_FILE_BYTES = 1 << 30


def _lazy_mask(name: str, file: str, opts: dict[str, Any]) -> Any:
    """The mask as a lazily opened source when it should stream, else None (read it)."""
    from .bundle.plan import IN_MEMORY_FACTOR, parse_memory_limit
    from .io.sources import open_label_source
    from .model import Mask

    path = Path(file)
    lower = path.name.lower()
    if opts.get("streaming") is False or not (
            path.is_dir() or lower.endswith((".tif", ".tiff", ".npy", ".zarr"))):
        return None
    forced = bool(opts.get("streaming"))
    try:
        src = open_label_source(path, name=name)
    except MaskBundleError:
        if forced:
            raise
        return None  # not one label image (channels, label groups): read_labels decides
    limit = parse_memory_limit(opts.get("memory_limit"))
    big = src.nbytes * IN_MEMORY_FACTOR > limit if limit is not None \
        else src.nbytes > _STREAM_FILE_BYTES
    if forced or big or path.is_dir():
        return Mask(labels=src, source=dict(src.provenance))  # type: ignore[arg-type]
    src.close()
    return None


def _lazy_segmentation(name: str, path: Path, opts: dict[str, Any]) -> Any:
    """The file as a one-mask Segmentation read by tiles, with the pixel size of its OME-XML
    if any; None when it should be read whole (small, or not one label image)."""
    from .io.ometiff import read_ome_metadata
    from .model import Segmentation

    mask = _lazy_mask(name, str(path), opts)
    if mask is None:
        return None
    tiff = path.is_file() and path.name.lower().endswith((".tif", ".tiff"))
    meta = read_ome_metadata(path) if tiff else None
    return Segmentation(masks={name: mask}, physical_size=meta.physical_size if meta else None,
                        source=dict(mask.source))


def _convert_lazily(path: Path, name: str | None, opts: dict[str, Any]) -> Any:
    """`convert labels` of one big file by tiles (see _lazy_segmentation), or None.

    Without --mask-name the mask is named as read_labels names it: "cells" for a file that
    carries no name; files that may name their masks (OME channel names, OME-Zarr label
    groups) and --match (which needs every pixel) are left to read_labels."""
    from .io.ometiff import read_ome_metadata

    if opts["match"]:
        return None
    if name is None:
        if path.is_dir():
            return None
        if path.name.lower().endswith((".tif", ".tiff")):
            meta = read_ome_metadata(path)
            if meta is not None and any(meta.channel_names):
                return None
        name = "cells"
    seg = _lazy_segmentation(name, path, opts)
    if seg is not None:
        mask = seg.masks[name]
        seg.masks[name] = dataclasses.replace(mask, source={**mask.source, "tool": "labels"})
    return seg


def read_contributors(path: Path) -> list[dict[str, str]]:
    """Rows of a contributors TSV as dicts (checked later by write_segmentation_bundle)."""
    from .io.tables import read_table_cells

    try:
        rows = read_table_cells(path)
    except UnicodeDecodeError as exc:
        raise CorruptInputError(
            f"{path} is not UTF-8 text (byte {exc.start}); save the contributors table as UTF-8"
        ) from exc
    if not rows:
        raise OptionError(f"{path} is empty; it needs the contributors.tsv header row")
    header = rows[0]
    return [
        dict(zip(header, row, strict=False))
        for row in rows[1:]
        if any(cell.strip() for cell in row)
    ]


def parse_features(value: str | None) -> bool | tuple[str, ...]:
    """``--features morphology,mean,std`` / ``none``; None keeps the default (True)."""
    if value is None:
        return True
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if items in ((), ("none",)):
        return False
    return items


def _physical_size_args(args: list[str]) -> list[str]:
    """Let ``--physical-size 0.5 0.5 [2]`` take several values (click takes one per flag)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] == "--physical-size":
            j = i + 1
            vals: list[str] = []
            while j < len(args) and len(vals) < 3 and _is_number(args[j]):
                vals.append(args[j])
                j += 1
            if vals:
                out.append(vals[0])
                for v in vals[1:]:
                    out += ["--physical-size", v]
                i = j
                continue
        i += 1
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maskbundle")
def main() -> None:
    """Write and check HuBMAP Segmentation Mask bundles."""


@main.command("bundle")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--mask", "masks", multiple=True, required=True, metavar="NAME=FILE",
              help="A mask and its label file (TIFF/OME-TIFF, NPY, NPZ, PNG, zarr/OME-Zarr "
              "directory); repeat per mask. Zarr directories and big files stream by tiles.")
@bundle_options
@handle_errors
def bundle_command(out: Path, masks: tuple[str, ...], **opts: Any) -> None:
    """Build a bundle in OUT from label files (one mask per file)."""
    from .convert import read_labels
    from .model import Segmentation

    files = parse_pairs(masks, "--mask")
    combined = Segmentation(masks={})
    for name, file in files.items():
        lazy = _lazy_segmentation(name, Path(file), opts)
        if lazy is not None:  # read by tiles
            combined.masks[name] = lazy.masks[name]
            if combined.physical_size is None:
                combined.physical_size = lazy.physical_size
            continue
        seg = read_labels(file, mask_names=name)
        if len(seg.masks) != 1:
            raise OptionError(
                f"{file} holds {len(seg.masks)} label arrays; give one mask per file, or use "
                "'maskbundle convert labels' to take every channel of it"
            )
        combined.masks[name] = next(iter(seg.masks.values()))
        if combined.physical_size is None:
            combined.physical_size = seg.physical_size
    written = _write_bundle(out, combined, opts)
    click.echo(f"wrote {written}")


@main.command("demo")
@click.argument("out", type=click.Path(path_type=Path), default=Path("out/demo"))
@click.option("--overwrite", is_flag=True)
@handle_errors
def demo_command(out: Path, overwrite: bool) -> None:
    """Segment scikit-image's IHC image, write a two-mask bundle to OUT and validate it."""
    import numpy as np

    from .bundle.build import write_segmentation_bundle
    from .bundle.validate import validate_bundle
    from .demo import DEMO_MARKERS, DEMO_PHYSICAL_SIZE, demo_markers, demo_masks

    rgb, masks = demo_masks()
    path = write_segmentation_bundle(
        out,
        masks,
        physical_size=DEMO_PHYSICAL_SIZE,
        intensity_image=demo_markers(rgb),
        marker_names=list(DEMO_MARKERS),
        mask_ids={"cells": "CL:0000000", "nuclei": "GO:0005634"},
        protocol_doi="10.17504/protocols.io.example",
        overwrite=overwrite,
    )
    click.echo(f"wrote {path}")
    for name, labels in masks.items():
        click.echo(f"  {name}: {np.unique(labels).size - 1} objects")
    report = validate_bundle(path.path)
    click.echo(report.format())
    sys.exit(0 if report.ok else 1)


@main.group("convert")
def convert_group() -> None:
    """Convert a segmentation tool's output (Cellpose, StarDist, QuPath, Mesmer, label files)."""


def convert_options(func: F) -> F:
    """INPUT... -o OUT, mask naming, cross-mask matching and the bundle options."""
    decorators = [
        click.argument("inputs", nargs=-1, required=True,
                       type=click.Path(exists=True, path_type=Path)),
        click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path),
                     help="Dataset directory to write."),
        click.option("--mask-name", "mask_names", multiple=True, metavar="NAME",
                     help="Name of each mask, in input order (repeat per mask)."),
        click.option("--match", "match", multiple=True, metavar="CHILD=PARENT",
                     help="Give CHILD objects the id of the PARENT object containing most "
                          "of each, e.g. nuclei=cells."),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return bundle_options(func)


def _shape_option(func: F) -> F:
    return click.option(
        "--shape", "shape", type=int, nargs=2, default=None, metavar="Y X",
        help="Image rows and columns at full resolution (default: from --parent).")(func)


def _image_shape(opts: dict[str, Any]) -> tuple[int, int] | None:
    if opts.get("shape"):
        return (int(opts["shape"][0]), int(opts["shape"][1]))
    if opts.get("parent") is not None:
        from .io.ometiff import read_parent_image

        parent = read_parent_image(opts["parent"])
        return (parent.size_y, parent.size_x)
    return None


def _one_mask_names(inputs: Sequence[Path], opts: dict[str, Any], default: str) -> list[str]:
    """Mask names for readers that give one mask per file: --mask-name per input."""
    names = list(opts["mask_names"])
    if not names:
        if len(inputs) > 1:
            raise OptionError(
                f"{len(inputs)} inputs: name each mask with --mask-name (e.g. --mask-name "
                "cells --mask-name nuclei), in input order"
            )
        return [default]
    if len(names) != len(inputs):
        raise OptionError(f"{len(names)} --mask-name for {len(inputs)} inputs; give one per input")
    return names


def _write_converted(segs: list[Any], opts: dict[str, Any], *, rename: bool = True) -> None:
    from .convert import match_masks
    from .convert.combine import combine_segmentations, rename_masks

    if rename and opts["mask_names"]:
        names = list(opts["mask_names"])
        total = sum(len(s.masks) for s in segs)
        if len(names) != total:
            raise OptionError(
                f"{len(names)} --mask-name for {total} masks "
                f"{[n for s in segs for n in s.masks]}; give one per mask, in input order"
            )
        renamed = []
        for s in segs:
            renamed.append(rename_masks(s, names[: len(s.masks)]))
            names = names[len(s.masks) :]
        segs = renamed
    seg = combine_segmentations(segs)
    pairs = parse_pairs(opts["match"], "--match")
    if pairs:
        seg = match_masks(seg, pairs)
    path = _write_bundle(opts["out"], seg, opts)
    for name, mask in seg.masks.items():
        click.echo(f"  {name}: from {mask.source.get('file', '?')} ({mask.source.get('tool', '?')})"
                   f"{_dropped(mask.source, name)}")
    click.echo(f"wrote {path}")


def _dropped(source: Any, name: str) -> str:
    """What a polygon reader dropped or cut for mask ``name`` (always said, even 0)."""
    meta = source.get("tool_metadata") if isinstance(source, dict) else None
    masks = meta.get("masks") if isinstance(meta, dict) else None
    info = masks.get(name) if isinstance(masks, dict) else None
    if not isinstance(info, dict) or "objects" not in info:
        return ""
    counts = meta.get("counts") if isinstance(meta, dict) else None
    beyond = counts.get("objects_beyond_shape", 0) if isinstance(counts, dict) else 0
    return (f"; {info['objects']} object(s) read, {info.get('objects_without_pixels', 0)} "
            f"dropped (no pixel inside the image), {beyond} reaching beyond the image in the "
            "file")


@convert_group.command("cellpose")
@convert_options
@handle_errors
def convert_cellpose(inputs: tuple[Path, ...], **opts: Any) -> None:
    """Cellpose *_seg.npy (read without running pickled code) or *_cp_masks.png/.tif."""
    from .convert import read_cellpose

    names = _one_mask_names(inputs, opts, "cells")
    _write_converted([read_cellpose(p, mask_name=n) for p, n in zip(inputs, names, strict=True)],
                     opts, rename=False)


@convert_group.command("stardist")
@convert_options
@_shape_option
@handle_errors
def convert_stardist(inputs: tuple[Path, ...], **opts: Any) -> None:
    """StarDist label TIFF, predict_instances details (.npz) or ImageJ ROI zip."""
    from .convert import read_stardist

    shape = _image_shape(opts)
    names = _one_mask_names(inputs, opts, "nuclei")
    _write_converted([read_stardist(p, shape=shape, mask_name=n)
                      for p, n in zip(inputs, names, strict=True)], opts, rename=False)


@convert_group.command("qupath")
@convert_options
@_shape_option
@click.option("--class-type", "class_types", multiple=True, metavar="CLASS=OBO",
              help="Object type of a QuPath classification, e.g. Tumor=CL:0001064.")
@click.option("--annotation", "annotations", multiple=True, metavar="CLASS=MASK",
              help="Annotations of CLASS become the tissue-unit mask MASK, e.g. "
                   "Glomerulus=glomeruli.")
@click.option("--detection-mask", default="cells", show_default=True,
              help="Mask of detection objects.")
@click.option("--no-measurements", is_flag=True, help="Leave QuPath's measurements out.")
@click.option("--clip", is_flag=True,
              help="Cut objects reaching beyond --shape at the image edge (default: refuse).")
@click.option("--allow-empty", is_flag=True,
              help="Accept a file without cells or selected annotations (empty mask).")
@handle_errors
def convert_qupath(inputs: tuple[Path, ...], **opts: Any) -> None:
    """QuPath GeoJSON export: cells and nuclei (matched ids), detections, annotations."""
    from .convert import read_qupath

    shape = _image_shape(opts)
    if shape is None:
        raise OptionError("QuPath polygons need the image size: give --shape Y X or --parent")
    segs = [
        read_qupath(p, shape=shape,
                    class_types=parse_pairs(opts["class_types"], "--class-type"),
                    annotations=parse_pairs(opts["annotations"], "--annotation"),
                    detection_mask=opts["detection_mask"],
                    measurements=not opts["no_measurements"],
                    clip=opts["clip"], allow_empty=opts["allow_empty"])
        for p in inputs
    ]
    _write_converted(segs, opts)


@convert_group.command("mesmer")
@convert_options
@click.option("--no-match", is_flag=True, help="Keep Mesmer's own nucleus ids.")
@click.option("--min-fraction", type=float, default=0.5, show_default=True,
              help="Fraction of a nucleus its cell must cover (more than) to match.")
@handle_errors
def convert_mesmer(inputs: tuple[Path, ...], **opts: Any) -> None:
    """Mesmer / DeepCell labels (1, Y, X, 2): whole-cell and nuclear, nuclei matched to cells."""
    from .convert import read_mesmer

    _write_converted([read_mesmer(p, match=not opts["no_match"],
                                  min_fraction=opts["min_fraction"]) for p in inputs], opts)


@convert_group.command("labels")
@convert_options
@handle_errors
def convert_labels(inputs: tuple[Path, ...], **opts: Any) -> None:
    """Label TIFF / OME-TIFF, NPY / NPZ, PNG, zarr / OME-Zarr, or a bundle's OME-TIFF.

    A big single-mask TIFF, NPY or zarr file is read by tiles (see bundle --streaming)."""
    from .convert import read_labels

    names = list(opts["mask_names"])
    per_input = len(names) == len(inputs)
    segs = []
    for i, p in enumerate(inputs):
        lazy = _convert_lazily(p, names[i] if per_input else None, opts)
        segs.append(lazy if lazy is not None else read_labels(p))
    _write_converted(segs, opts)


@main.command("metadata")
@click.argument("tsv", type=click.Path(path_type=Path))
@click.argument("datasets", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False,
                path_type=Path))
@click.option("--parent-dataset-id", required=True, help="HuBMAP ID(s) of the parent dataset.")
@click.option("--lab-id", default="")
@click.option("--program-url", default="")
@click.option("--overwrite", is_flag=True)
@handle_errors
def metadata_command(tsv: Path, datasets: tuple[Path, ...], parent_dataset_id: str, lab_id: str,
                     program_url: str, overwrite: bool) -> None:
    """Write the upload-level metadata TSV for one or more bundle DATASETS."""
    from .bundle.metadata import write_upload_metadata

    write_upload_metadata(tsv, datasets, parent_dataset_id=parent_dataset_id, lab_id=lab_id,
                          program_url=program_url, overwrite=overwrite)
    click.echo(f"wrote {tsv}")


@main.command("adjacency")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--adjacency", "kinds", multiple=True, type=click.Choice(["centroid", "linkage"]),
              help="Which file(s); repeat for both (default: both).")
@click.option("--kind", "old_kinds", multiple=True, type=click.Choice(["centroid", "linkage"]),
              hidden=True)  # the old spelling of --adjacency
@only_option("Only this mask (channel); repeat for several (default: every mask).")
@click.option("--overwrite", is_flag=True, help="Replace existing adjacency files.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the CSVs when PATH is a label file.")
@click.option("--physical-size", "physical_size", type=float, multiple=True,
              help="Micrometres per pixel X Y [Z] (overrides the OME-XML).")
@click.option("--mask-name", "--name", "mask_names", multiple=True, metavar="NAME",
              help="Mask name per array of a label file, in file order (--name is the "
              "old spelling).")
@click.option("--method", type=click.Choice(["delaunay", "knn", "radius"]), default=None,
              help="Centroid neighbours: Delaunay (default), k nearest, or within a radius.")
@click.option("--max-distance", type=float, default=None,
              help="Drop centroid edges longer than this (um); Delaunay default 3x median.")
@click.option("-k", "k", type=int, default=None, help="Neighbours per object for --method knn.")
@click.option("--radius", type=float, default=None, help="Radius (um) for --method radius.")
@click.option("--max-gap", type=float, default=None,
              help="Also link objects whose gap is at most this (um); default 0 (contact).")
@click.option("--contact", is_flag=True, default=None,
              help="Add the contact length (2D) / area (3D) column to the linkage file.")
@handle_errors
def adjacency_command(path: Path, kinds: tuple[str, ...], old_kinds: tuple[str, ...],
                      masks: tuple[str, ...], overwrite: bool, output_dir: Path | None,
                      physical_size: tuple[float, ...], mask_names: tuple[str, ...],
                      **options: Any) -> None:
    """Add centroid/linkage adjacency CSVs to the bundle directory PATH (each file checked
    before it moves in), or write them for a label file PATH (OME-TIFF/TIFF, PNG, NPY, NPZ,
    zarr) into -o DIR."""
    from .bundle.adjacency import ADJACENCY_KINDS, add_adjacency

    result = add_adjacency(
        path,
        adjacency=(kinds + old_kinds) or ADJACENCY_KINDS,
        adjacency_options=options,
        masks=list(masks) or None,
        overwrite=overwrite,
        output_dir=output_dir,
        physical_size=tuple(physical_size) or None,
        mask_names=list(mask_names) or None,
    )
    for written in result.written:
        click.echo(f"wrote {written}")
    for mask, entries in result.provenance["adjacency"].items():
        for kind, entry in entries.items():
            click.echo(f"  {mask} {kind}: {entry['n_edges']} edges; {entry['definition']}")
    if result.report is not None:
        click.echo(result.report.format())
        if not result.report.ok:
            sys.exit(1)


@main.command("mesh")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@only_option("Mesh only this mask (repeat); default every mask of the 3D bundle.")
@click.option("--overwrite", is_flag=True, help="Replace existing <mask>-mesh.glb files.")
@click.option("--max-error", type=float, default=None, metavar="UM",
              help="Simplification tolerance in micrometres "
              "(default: three times the largest voxel edge).")
@click.option("--reduction", type=int, default=None,
              help="Upper limit of the triangle reduction factor (default 100).")
@click.option("--no-simplify", is_flag=True, help="Keep the full-resolution surfaces.")
@handle_errors
def mesh_command(path: Path, masks: tuple[str, ...], overwrite: bool, max_error: float | None,
                 reduction: int | None, no_simplify: bool) -> None:
    """Add <mask>-mesh.glb files (one node per object) to the 3D bundle at PATH."""
    from .bundle.meshes import add_meshes

    result = add_meshes(path, masks=list(masks) or None, overwrite=overwrite,
                        mesh_options={"simplify": not no_simplify, "max_error": max_error,
                                      "reduction": reduction})
    for name, file in result.meshes.items():
        click.echo(f"{name}: {file}" if file is not None else f"{name}: empty mask, no mesh file")


@main.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--parent", "parent", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Parent OME-TIFF whose sizes and physical sizes the masks must equal.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every finding to this JSON file.")
@click.option("--verbose", "-v", is_flag=True, help="Print passed and not-applicable checks too.")
def validate_command(path: Path, parent: Path | None, json_out: Path | None, verbose: bool) -> None:
    """Check the dataset directory PATH against the Segmentation Mask format.

    Exit status 0 when no error was found (warnings allowed), 1 otherwise.
    """
    from .bundle.validate import validate_bundle
    from .io.staging import staged_path, write_error
    from .io.tables import write_json

    report = validate_bundle(path, parent_image=parent, progress=sys.stderr.isatty())
    click.echo(report.format(verbose=verbose))
    if json_out is not None:
        try:
            with staged_path(json_out, overwrite=True, guard=_not_a_directory) as stage:
                write_json(stage, report.to_dict())
        except MaskBundleError as exc:
            click.echo(f"error: {exc.cli_message}", err=True)
            sys.exit(2)
        except OSError as exc:
            click.echo(f"error: {write_error(exc, json_out).cli_message}", err=True)
            sys.exit(2)
    sys.exit(0 if report.ok else 1)


def _not_a_directory(path: Path) -> None:
    if path.is_dir():
        raise UnsafeOverwriteError(f"--json {path} is a directory; give a file name")


def _export_formats() -> list[str]:
    from .export import EXPORTERS

    return sorted(EXPORTERS)


def _export_help() -> str:
    from .export import EXPORTERS

    return "; ".join(f"{e.name}: {e.help}" for e in EXPORTERS.values())


@main.command("export")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--to", "to", required=True, type=click.Choice(_export_formats()),
              help=f"Output format ({_export_help()}).")
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path),
              help="File or directory to write (refused when it exists, unless --overwrite).")
@only_option("Export only this mask (repeat; h5ad takes exactly one).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--no-validate", is_flag=True,
              help="Skip validating BUNDLE first (faster on whole-slide masks).")
@handle_errors
def export_command(bundle: Path, to: str, out: Path, masks: tuple[str, ...], overwrite: bool,
                   no_validate: bool) -> None:
    """Write the bundle BUNDLE in a format analysis tools load (AnnData, MuData, SpatialData)."""
    from .bundle.read import read_bundle

    with read_bundle(bundle, validate=not no_validate) as b:
        written = b.export(out, to=to, masks=list(masks) or None, overwrite=overwrite)
    click.echo(f"wrote {written}")


def run() -> None:
    """Console entry point with multi-value --physical-size."""
    main(args=_physical_size_args(sys.argv[1:]), prog_name="maskbundle")
