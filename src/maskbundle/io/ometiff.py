"""The label OME-TIFF: one Image, one channel per mask, tiled, SubIFD pyramid; and readers.

Planes are stored channel-major (CZYX): for 2D masks the OME DimensionOrder is XYCZT,
for 3D masks XYZCT, so that the stored plane order and the declared order agree and every
reader (tifffile, Bio-Formats) sees (C, Z, Y, X).
"""

from __future__ import annotations

import errno
import math
import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
from ome_types import from_xml, to_xml
from ome_types.model import OME, Channel, Image, Pixels, Pixels_DimensionOrder, PixelType, TiffData

from ..errors import CorruptInputError, LabelError, MaskBundleError
from ..labels.pyramid import pyramid_level, pyramid_level_count
from ..model import ParentImage, PhysicalSize
from ..rules import TILE_SIZE
from .limits import MAX_OME_XML, check_tiff_level0, check_tiff_structure
from .sources import BandChecksum
from .staging import remove_path, write_error

__all__ = [
    "LabelImage",
    "LabelPyramid",
    "OmeMetadata",
    "StreamChannel",
    "StreamedTiff",
    "WriteCancelled",
    "build_ome_xml",
    "ome_metadata",
    "open_label_pyramid",
    "parse_ome_xml",
    "read_label_ome_tiff",
    "read_ome_metadata",
    "read_ome_xml",
    "read_parent_image",
    "to_czyx",
    "write_label_ome_tiff",
    "write_label_ome_tiff_streaming",
]

# the OME Pixels attributes copied verbatim from a parent image (HuBMAP compares them exactly)
PHYSICAL_SIZE_KEYS = (
    "physical_size_x",
    "physical_size_x_unit",
    "physical_size_y",
    "physical_size_y_unit",
    "physical_size_z",
    "physical_size_z_unit",
)
Compression = Literal["zlib", "zstd"]
# errno values by which a file system refuses a write (reported as OutputWriteError)
_REFUSED_WRITE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def build_ome_xml(
    *,
    channel_names: Sequence[str],
    shape_zyx: tuple[int, int, int],
    dtype: np.dtype[Any],
    physical_size: PhysicalSize,
    image_name: str,
    parent: ParentImage | None = None,
) -> bytes:
    """OME-XML (2016-06, valid against the XSD) for the label image, as UTF-8 bytes."""
    size_z, size_y, size_x = shape_zyx
    n_c = len(channel_names)
    pixel_attrs: dict[str, Any] = {
        "physical_size_x": physical_size.x,
        "physical_size_x_unit": physical_size.unit_x,
        "physical_size_y": physical_size.y,
        "physical_size_y_unit": physical_size.unit_y,
    }
    if physical_size.z is not None:
        pixel_attrs["physical_size_z"] = physical_size.z
        pixel_attrs["physical_size_z_unit"] = physical_size.unit_z
    if parent is not None:
        pixel_attrs = dict(parent.ome_pixels_attrs)  # verbatim: HuBMAP compares exactly
    planes = [
        TiffData(ifd=c * size_z + z, first_c=c, first_z=z, first_t=0, plane_count=1)
        for c in range(n_c)
        for z in range(size_z)
    ]
    pixels = Pixels(
        id="Pixels:0",
        dimension_order=Pixels_DimensionOrder("XYZCT" if size_z > 1 else "XYCZT"),
        type=PixelType(str(dtype)),
        size_x=size_x,
        size_y=size_y,
        size_z=size_z,
        size_c=n_c,
        size_t=1,
        big_endian=False,
        channels=[
            Channel(id=f"Channel:0:{i}", name=name, samples_per_pixel=1)
            for i, name in enumerate(channel_names)
        ],
        tiff_data_blocks=planes,
        **pixel_attrs,
    )
    ome = OME(
        images=[Image(id="Image:0", name=image_name, pixels=pixels)],
        creator="maskbundle",
    )
    return to_xml(ome).encode("utf-8")


def write_label_ome_tiff(
    path: Path,
    labels_czyx: np.ndarray | Sequence[np.ndarray],
    *,
    ome_xml: bytes,
    compression: Compression = "zlib",
    workers: int = 2,
    dtype: np.dtype[Any] | type | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Write (C, Z, Y, X) labels as a tiled pyramidal OME-TIFF; returns the level count.

    ``labels_czyx`` is one (C, Z, Y, X) array or one array per channel ((Z, Y, X) or
    (Y, X), same shape): the channels are never stacked (a stack of a whole-slide mask is
    a second copy of it, and its first touch alone costs seconds). Tiles are cut from each
    channel in tifffile's order and cast to ``dtype`` (default: the channels' common
    dtype; only a widening cast is allowed) one tile at a time, so the file is the one
    tifffile writes from the stacked array, byte for byte.

    Reduced levels are SubIFDs of each full-resolution plane, made by stride
    (``level[k] = level0[..., ::2**k, ::2**k]``), until the smaller side fits one tile.
    BigTIFF is used when the uncompressed data exceed 2 GiB (compressed size is unknown
    up front, and classic TIFF offsets stop at 4 GiB).

    ``cancel``: when set (from another thread), the write stops before the next tile
    with :class:`WriteCancelled`. On any error the partial file is removed; a refused
    write (disk full ...) raises :class:`OutputWriteError`.
    """
    path = Path(path)
    channels = _channel_arrays(labels_czyx)
    zyx = channels[0].shape
    out_dtype = _common_dtype(channels, dtype)
    n_c = len(channels)
    h, w = zyx[-2:]
    n_levels = pyramid_level_count(h, w, TILE_SIZE)
    bigtiff = n_c * math.prod(zyx) * out_dtype.itemsize * 4 // 3 > 2**31
    options = _tiff_options(compression, workers)
    # tiles are views, or one-tile copies when cast: at most this many bytes of them wait
    # for the compression threads at once (the default, 512 MiB, would hold that many casts)
    options["buffersize"] = _TILES_IN_FLIGHT
    with _removed_on_error(path), tifffile.TiffWriter(path, bigtiff=bigtiff, ome=False) as tif:
        for k in range(n_levels + 1):
            hk, wk = -(-h // 2**k), -(-w // 2**k)
            tiles = _array_tiles([pyramid_level(ch, k) for ch in channels], out_dtype, cancel)
            if k == 0:
                tif.write(tiles, shape=(n_c, *zyx), dtype=out_dtype, subifds=n_levels,
                          description=ome_xml, **options)
            else:
                tif.write(tiles, shape=(n_c, zyx[0], hk, wk), dtype=out_dtype, subfiletype=1,
                          **options)
    return n_levels + 1


class WriteCancelled(Exception):
    """The label OME-TIFF write was stopped through its ``cancel`` event."""


# bytes of tiles handed to tifffile's compression threads at once (bounded memory)
_TILES_IN_FLIGHT = 32 << 20


def _channel_arrays(labels: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One (Z, Y, X) view per channel of a (C, Z, Y, X) array or of a list of channels."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 4:
            raise LabelError(f"labels have shape {labels.shape}; expected (C, Z, Y, X)")
        channels = list(labels)
    else:
        channels = [np.asarray(ch) for ch in labels]
        channels = [ch[np.newaxis] if ch.ndim == 2 else ch for ch in channels]
    if not channels:
        raise ValueError("no channels to write")
    shapes = {ch.shape for ch in channels}
    if len(shapes) != 1 or len(channels[0].shape) != 3:
        raise LabelError(
            f"channels have shapes {sorted(shapes)}; every mask must be (Y, X) or (Z, Y, X) "
            "of one shape"
        )
    return channels


def _common_dtype(channels: Sequence[np.ndarray], dtype: np.dtype[Any] | type | None) -> np.dtype[Any]:
    """The stored dtype: ``dtype`` or the channels' common one; every channel must cast to
    it without loss (labels are never narrowed here)."""
    out = np.dtype(dtype) if dtype is not None else np.result_type(*channels)
    for c, ch in enumerate(channels):
        if ch.dtype.kind not in "iu" or not np.can_cast(ch.dtype, out, "safe"):
            raise LabelError(
                f"channel {c} holds {ch.dtype} labels, which {out} cannot store exactly; "
                "relabel the masks (maskbundle.labels.relabel) before writing"
            )
    return out.newbyteorder("=")


def _array_tiles(
    levels: Sequence[np.ndarray], dtype: np.dtype[Any], cancel: threading.Event | None
) -> Iterator[np.ndarray]:
    """Tiles of one pyramid level in tifffile's order (channel, plane, tile row, tile
    column): views, cast one tile at a time when a channel has a narrower dtype. Edge
    tiles stay short: tifffile pads them with zeros, as it pads an array's edge tiles."""
    for level in levels:
        for plane in level:
            for y in range(0, plane.shape[0], TILE_SIZE):
                for x in range(0, plane.shape[1], TILE_SIZE):
                    if cancel is not None and cancel.is_set():
                        raise WriteCancelled("the label OME-TIFF write was cancelled")
                    tile = plane[y : y + TILE_SIZE, x : x + TILE_SIZE]
                    yield tile if tile.dtype == dtype else tile.astype(dtype)


@contextmanager
def _removed_on_error(path: Path) -> Iterator[None]:
    """Remove the partial file at ``path`` on any error; a write the file system refused
    becomes :class:`OutputWriteError`."""
    try:
        yield
    except BaseException as exc:
        remove_path(path)
        if isinstance(exc, OSError) and not isinstance(exc, MaskBundleError):
            if exc.errno in _REFUSED_WRITE:
                raise write_error(exc, path) from exc
        raise


def _tiff_options(compression: Compression, workers: int) -> dict[str, Any]:
    options: dict[str, Any] = {
        "photometric": "minisblack",
        "tile": (TILE_SIZE, TILE_SIZE),
        "compression": compression,
        "maxworkers": workers,
        "metadata": None,
        "software": "maskbundle",
    }
    if compression == "zlib":
        options["compressionargs"] = {"level": 6}
    return options


@dataclass(frozen=True)
class StreamChannel:
    """One channel of a streamed label OME-TIFF.

    ``source`` has ``shape`` ((Y, X) or (Z, Y, X)), ``dtype`` and ``read(window)`` (a
    :class:`~maskbundle.io.sources.LabelSource`); ``relabel`` maps a block of raw labels
    to the output dtype (a :class:`~maskbundle.labels.relabel.TileRelabel`, or ``None``
    when the source already holds 1..N in the output dtype).
    """

    source: Any
    relabel: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class StreamedTiff:
    """What :func:`write_label_ome_tiff_streaming` wrote: the level count (as
    :func:`write_label_ome_tiff` returns) and, per channel, ``array_checksum`` of its
    source computed from the pixels read for the write (no separate pass)."""

    levels: int
    input_sha256: list[str]


def _band_rows(source: Any, width: int, itemsize: int, band_bytes: int) -> int:
    """Rows read at once: whole tile rows, covering the source's stored chunk height (so
    each stored chunk is decoded once), within ``band_bytes`` when the chunks allow it."""
    chunks = getattr(source, "chunks", None)
    chunk_rows = int(chunks[-2]) if chunks else TILE_SIZE
    rows = TILE_SIZE * max(1, -(-chunk_rows // TILE_SIZE))
    while rows > TILE_SIZE and rows * width * itemsize > band_bytes and rows - TILE_SIZE >= chunk_rows:
        rows -= TILE_SIZE
    return rows


def _level0_tiles(
    channels: Sequence[StreamChannel],
    zyx: tuple[int, int, int],
    dtype: np.dtype[Any],
    spills: list[Any],
    sums: list[BandChecksum],
    band_bytes: int,
    progress: Callable[[int], None] | None,
) -> Iterator[np.ndarray]:
    """Level-0 tiles in tifffile's order (channel, plane, tile row, tile column); as each
    band of rows passes, its stride samples for every lower level are appended to that
    level's spill file, in the order the level will be written."""
    n_z, h, w = zyx
    for c, ch in enumerate(channels):
        src = ch.source
        is_3d = len(src.shape) == 3
        band = _band_rows(src, w, max(dtype.itemsize, src.dtype.itemsize), band_bytes)
        for z in range(n_z):
            for y0 in range(0, h, band):
                y1 = min(h, y0 + band)
                window = (slice(y0, y1), slice(0, w))
                raw = src.read((slice(z, z + 1), *window) if is_3d else window)
                if raw.dtype.kind != src.dtype.kind or raw.dtype.itemsize != src.dtype.itemsize:
                    raise LabelError(
                        f"channel {c}: rows {y0}-{y1} of plane {z} hold {raw.dtype} labels, "
                        f"the source declares {src.dtype}; a mask must have one dtype throughout"
                    )
                raw = raw.reshape(y1 - y0, w)
                sums[c].update(raw)
                lab = raw if ch.relabel is None else ch.relabel(raw)
                if lab.dtype != dtype or lab.shape != raw.shape:
                    raise LabelError(
                        f"channel {c}: rows {y0}-{y1} of plane {z} became {lab.dtype} "
                        f"{lab.shape} after relabelling, the image is {dtype}; relabel every "
                        "tile with the same map and output dtype"
                    )
                for k, fh in enumerate(spills, start=1):
                    f = 2**k
                    part = lab[(-y0) % f :: f, ::f]
                    if part.size:
                        fh.write(np.ascontiguousarray(part).data)
                for ty in range(0, y1 - y0, TILE_SIZE):
                    for tx in range(0, w, TILE_SIZE):
                        yield lab[ty : ty + TILE_SIZE, tx : tx + TILE_SIZE]
                del raw
                if progress is not None:
                    progress((y1 - y0) * w)


def _spilled_tiles(
    fh: Any, planes: int, h: int, w: int, dtype: np.dtype[Any]
) -> Iterator[np.ndarray]:
    """Tiles of one reduced level, read back band by band from its spill file."""
    fh.seek(0)
    for _ in range(planes):
        for y0 in range(0, h, TILE_SIZE):
            rows = min(TILE_SIZE, h - y0)
            band = np.fromfile(fh, dtype=dtype, count=rows * w)
            if band.size != rows * w:
                raise OSError(errno.EIO, "a pyramid spill file is shorter than written")
            band = band.reshape(rows, w)
            for tx in range(0, w, TILE_SIZE):
                yield band[:, tx : tx + TILE_SIZE]


def write_label_ome_tiff_streaming(
    path: Path,
    channels: Sequence[StreamChannel],
    *,
    ome_xml: bytes,
    dtype: np.dtype[Any] | type,
    compression: Compression = "zlib",
    workers: int = 2,
    band_bytes: int = 256 << 20,
    scratch: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> StreamedTiff:
    """Write the label OME-TIFF of :func:`write_label_ome_tiff` from sources read by bands.

    The file is byte-identical to ``write_label_ome_tiff(path, stack, ...)`` where
    ``stack[c]`` is channel ``c``'s source relabelled. Memory stays bounded by one band
    of rows (a multiple of 512 rows, at most ``band_bytes`` unless the source's stored
    chunks are taller) plus tifffile's compression buffer: level 0 is read once, and the
    stride samples of every lower level go to uncompressed spill files (a third of level
    0's size in all) in ``scratch`` (default: beside ``path``), deleted on return.

    ``progress(n)`` is called with the level-0 pixels done after each band.
    A source that fails to read raises its own named error, a relabel that gives another
    dtype :class:`LabelError`, a refused write (disk full ...) :class:`OutputWriteError`;
    the partial file is removed in every case.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if not channels:
        raise ValueError("no channels to write")
    shapes = {tuple(int(n) for n in ch.source.shape) for ch in channels}
    if len(shapes) != 1:
        raise LabelError(f"channels differ in shape: {sorted(shapes)}; masks must share one shape")
    shape = shapes.pop()
    if len(shape) not in (2, 3):
        raise LabelError(f"channels have shape {shape}; expected (Y, X) or (Z, Y, X)")
    n_z, h, w = shape if len(shape) == 3 else (1, *shape)
    zyx = (n_z, h, w)
    n_c = len(channels)
    n_levels = pyramid_level_count(h, w, TILE_SIZE)
    # the same rule as write_label_ome_tiff, from the shape instead of an array
    bigtiff = n_c * math.prod(zyx) * dtype.itemsize * 4 // 3 > 2**31
    options = _tiff_options(compression, workers)
    # tifffile hands its compression threads up to 512 MiB of tiles at a time; our tiles
    # are views of bands, so that would keep that many bands alive (bytes are unchanged)
    options["buffersize"] = max(8 << 20, min(band_bytes, 64 << 20))
    sums = [BandChecksum(tuple(ch.source.shape), ch.source.dtype) for ch in channels]
    with _removed_on_error(path):
        with tempfile.TemporaryDirectory(
            dir=scratch if scratch is not None else path.parent, prefix=".pyramid-spill-"
        ) as tmp:
            spills = [open(Path(tmp) / f"level{k}.raw", "w+b") for k in range(1, n_levels + 1)]
            try:
                with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=False) as tif:
                    tif.write(
                        _level0_tiles(channels, zyx, dtype, spills, sums, band_bytes, progress),
                        shape=(n_c, *zyx), dtype=dtype, subifds=n_levels,
                        description=ome_xml, **options,
                    )
                    for k, fh in enumerate(spills, start=1):
                        fh.flush()
                        hk, wk = -(-h // 2**k), -(-w // 2**k)
                        tif.write(
                            _spilled_tiles(fh, n_c * n_z, hk, wk, dtype),
                            shape=(n_c, *zyx[:1], hk, wk), dtype=dtype, subfiletype=1,
                            **options,
                        )
            finally:
                for fh in spills:
                    fh.close()
    known = [getattr(ch.source, "input_sha256", None) for ch in channels]
    return StreamedTiff(
        levels=n_levels + 1,
        input_sha256=[k if k is not None else s.hexdigest() for k, s in zip(known, sums, strict=True)],
    )


@dataclass(frozen=True)
class LabelImage:
    """A label OME-TIFF read back: (C, Z, Y, X) level-0 labels, names and physical size."""

    labels: np.ndarray
    channel_names: list[str]
    physical_size: PhysicalSize | None
    n_levels: int

    @property
    def is_3d(self) -> bool:
        return int(self.labels.shape[1]) > 1


def _physical_size(pixels: Pixels) -> PhysicalSize | None:
    if pixels.physical_size_x is None or pixels.physical_size_y is None:
        return None

    def unit(u: Any) -> str:
        return str(getattr(u, "value", u) or "µm")

    z = pixels.physical_size_z if pixels.size_z > 1 else None
    return PhysicalSize(
        float(pixels.physical_size_x),
        float(pixels.physical_size_y),
        None if z is None else float(z),
        unit(pixels.physical_size_x_unit),
        unit(pixels.physical_size_y_unit),
        unit(pixels.physical_size_z_unit),
    )


# A DTD is never part of OME-XML; refusing one keeps entity expansion (billion laughs) and
# external entities (reading local files) out of every parser the text reaches.
_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True)
class OmeMetadata:
    """The OME-XML of a TIFF, parsed once: the text, the model, and what readers use.

    ``pixels`` is the Pixels of the first Image; ``channel_names`` has one entry per
    Channel (``""`` for an unnamed one); ``dimension_order`` is e.g. ``"XYCZT"``.
    """

    xml: str
    ome: OME
    what: str

    @property
    def n_images(self) -> int:
        return len(self.ome.images)

    @property
    def pixels(self) -> Pixels:
        if not self.ome.images:
            raise CorruptInputError(f"{self.what}: its OME-XML holds no Image")
        return self.ome.images[0].pixels

    @property
    def channel_names(self) -> list[str]:
        return [ch.name or "" for ch in self.pixels.channels]

    def names_for(self, n_channels: int) -> list[str] | None:
        """The channel names when there is one non-empty name per channel, else None."""
        names = self.channel_names
        return names if len(names) == n_channels and all(names) else None

    @property
    def dimension_order(self) -> str:
        order = self.pixels.dimension_order
        return str(getattr(order, "value", order))

    @property
    def physical_size(self) -> PhysicalSize | None:
        """PhysicalSizeX/Y (and Z for a 3D image) with units; None when X or Y is absent.

        Raises :class:`CorruptInputError` when the values cannot be used."""
        try:
            return _physical_size(self.pixels)
        except CorruptInputError:
            raise
        except MaskBundleError as exc:
            raise CorruptInputError(
                f"{self.what}: unusable physical pixel size in its OME-XML ({exc})"
            ) from exc


def parse_ome_xml(xml: str, what: str) -> OmeMetadata:
    """Parse OME-XML safely (the one parser of OME-XML in maskbundle).

    Text beyond :data:`~maskbundle.io.limits.MAX_OME_XML` characters, a DTD or entity
    declaration, damaged XML and out-of-range values (a negative or NaN PhysicalSizeX,
    which ome-types refuses) raise :class:`CorruptInputError` naming ``what``; the parser's
    own exception is its ``__cause__``.
    """
    if len(xml) > MAX_OME_XML:
        raise CorruptInputError(
            f"{what}: its OME-XML is {len(xml)} characters long, beyond the {MAX_OME_XML} "
            "this reader accepts; the file is damaged or not an image maskbundle reads"
        )
    if _DTD.search(xml):
        raise CorruptInputError(
            f"{what}: its OME-XML declares a DTD or entities, which OME-XML never needs "
            "(entity expansion can exhaust memory or read local files); remove them"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ome = from_xml(xml, validate=False)
    except Exception as exc:  # lxml / pydantic raise their own types
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:3])[:300]
        raise CorruptInputError(
            f"{what}: its OME-XML cannot be used ({type(exc).__name__}: {detail}); "
            "PhysicalSizeX/Y/Z must be numbers > 0"
        ) from exc
    return OmeMetadata(xml, ome, what)


def ome_metadata(tf: tifffile.TiffFile, what: str) -> OmeMetadata | None:
    """The parsed OME-XML of an open TIFF, or None when it has none."""
    try:
        xml = tf.ome_metadata
    except Exception as exc:  # tifffile raises struct.error, UnicodeDecodeError ... on damage
        raise CorruptInputError(f"{what}: its OME-XML cannot be read ({exc})") from exc
    return parse_ome_xml(xml, what) if xml else None


def read_ome_xml(path: Path | str, what: str | None = None) -> str | None:
    """The OME-XML text of the TIFF at ``path`` (None when it has none), unparsed."""
    path = Path(path)
    check_tiff_structure(path, str(path) if what is None else what)
    try:
        with tifffile.TiffFile(path) as tf:
            xml: str | None = tf.ome_metadata
            return xml
    except Exception as exc:  # tifffile raises struct.error, TypeError ... on damage
        raise CorruptInputError(f"{path}: cannot be read as a TIFF ({exc})") from exc


def read_ome_metadata(path: Path | str, what: str | None = None) -> OmeMetadata | None:
    """The parsed OME-XML of the TIFF at ``path`` (None when it has none).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from maskbundle.model import PhysicalSize
    >>> d = Path(tempfile.mkdtemp())
    >>> xml = build_ome_xml(channel_names=["cells"], shape_zyx=(1, 8, 8),
    ...     dtype=np.dtype("uint8"), physical_size=PhysicalSize(0.5, 0.5), image_name="x")
    >>> _ = write_label_ome_tiff(d / "x.ome.tiff", np.ones((1, 1, 8, 8), np.uint8), ome_xml=xml)
    >>> meta = read_ome_metadata(d / "x.ome.tiff")
    >>> meta.channel_names, meta.physical_size.x, meta.dimension_order
    (['cells'], 0.5, 'XYCZT')
    """
    xml = read_ome_xml(path, what)
    return parse_ome_xml(xml, str(path) if what is None else what) if xml else None


def to_czyx(data: np.ndarray, axes: str, what: str = "label image") -> np.ndarray:
    """Reorder a tifffile series array with ``axes`` to (C, Z, Y, X).

    Examples
    --------
    >>> to_czyx(np.zeros((4, 3, 2)), "YXC").shape
    (2, 1, 4, 3)
    """
    if "Z" not in axes:  # a plain multi-page TIFF: tifffile names the page axis Q or I
        for generic in ("Q", "I"):
            if generic in axes:
                axes = axes.replace(generic, "Z", 1)
                break
    for ax, n in zip(axes, data.shape, strict=True):
        if ax not in "CZYX" and n != 1:
            raise CorruptInputError(
                f"{what} has {n} positions along axis {ax!r} (axes {axes}); expected "
                "(C, Z, Y, X): save one time point and one sample per pixel"
            )
    keep = [ax for ax in axes if ax in "CZYX"]
    data = data.reshape([n for n, ax in zip(data.shape, axes, strict=True) if ax in "CZYX"])
    for ax in "CZ":
        if ax not in keep:
            data = data[np.newaxis]
            keep.insert(0, ax)
    return np.transpose(data, [keep.index(ax) for ax in "CZYX"])


def read_label_ome_tiff(path: Path | str) -> LabelImage:
    """Read level 0 of a label (OME-)TIFF as (C, Z, Y, X) with its channel names."""
    path = Path(path)
    check_tiff_structure(path, str(path))
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            check_tiff_level0(series, path, str(path))
            data = series.asarray(level=0)
            axes = series.axes
            n_levels = len(series.levels)
            meta = ome_metadata(tf, str(path))
    except MaskBundleError:
        raise
    except Exception as exc:  # tifffile raises struct.error, TypeError ... on damage
        raise CorruptInputError(f"{path}: not a readable TIFF ({exc})") from exc
    labels = to_czyx(data, axes)
    names = [f"channel-{chr(ord('a') + i)}" for i in range(labels.shape[0])]
    physical = None
    if meta is not None:
        names = meta.names_for(labels.shape[0]) or names
        physical = meta.physical_size
    return LabelImage(labels=labels, channel_names=names, physical_size=physical, n_levels=n_levels)


def read_parent_image(path: Path | str) -> ParentImage:
    """Sizes and physical sizes of a parent OME-TIFF, with the exact OME attribute values."""
    path = Path(path)
    check_tiff_structure(path, f"parent image {path}")
    try:
        with tifffile.TiffFile(path) as tf:
            meta = ome_metadata(tf, f"parent image {path}")
    except MaskBundleError:
        raise
    except Exception as exc:  # tifffile raises struct.error, TypeError ... on damage
        raise CorruptInputError(f"parent image {path}: not a readable TIFF ({exc})") from exc
    if meta is None:
        raise CorruptInputError(
            f"parent image {path} has no OME-XML; pass an OME-TIFF or give physical_size="
        )
    pixels = meta.pixels
    physical = meta.physical_size
    if physical is None:
        raise CorruptInputError(
            f"parent image {path} has no PhysicalSizeX/PhysicalSizeY; HuBMAP needs them: "
            "fix the parent's OME-XML or give physical_size="
        )
    attrs = {
        key: getattr(pixels, key) for key in PHYSICAL_SIZE_KEYS if getattr(pixels, key) is not None
    }
    if pixels.size_z <= 1:
        attrs = {k: v for k, v in attrs.items() if not k.startswith("physical_size_z")}
    return ParentImage(
        path=str(path),
        size_x=int(pixels.size_x),
        size_y=int(pixels.size_y),
        size_z=int(pixels.size_z),
        physical_size=physical,
        ome_pixels_attrs=attrs,
    )


@dataclass(frozen=True)
class LabelPyramid:
    """A label OME-TIFF opened lazily: one zarr array per pyramid level, nothing read yet.

    ``levels[k]`` is tifffile's zarr view of level ``k`` with tifffile's ``axes`` (e.g.
    ``CYX`` or ``CZYX``); a slice decodes only the tiles it touches. Close it when done.
    """

    levels: list[Any]
    axes: str
    channel_names: list[str]
    physical_size: PhysicalSize | None
    store: Any

    def close(self) -> None:
        self.store.close()


def open_label_pyramid(path: Path | str) -> LabelPyramid:
    """Open every pyramid level of a label OME-TIFF through tifffile's zarr store."""
    import zarr

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            axes = series.axes
            n_levels = len(series.levels)
            meta = ome_metadata(tf, str(path))
        store = tifffile.imread(path, aszarr=True)
    except MaskBundleError:
        raise
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise CorruptInputError(f"{path}: not a readable TIFF ({exc})") from exc
    try:
        node: Any = zarr.open(store, mode="r")
        # one level: tifffile exposes a bare array instead of a multiscale group
        levels = [node] if n_levels == 1 and hasattr(node, "shape") else [
            node[str(k)] for k in range(n_levels)
        ]
    except Exception as exc:  # zarr raises its own types on stores it cannot map
        store.close()
        raise CorruptInputError(f"{path}: pyramid levels cannot be opened ({exc})") from exc
    n_c = int(levels[0].shape[axes.index("C")]) if "C" in axes else 1
    names = [f"channel-{i}" for i in range(n_c)]
    physical = None
    if meta is not None:
        try:
            names = meta.names_for(n_c) or names
            physical = meta.physical_size
        except MaskBundleError:
            store.close()
            raise
    return LabelPyramid(levels, axes, names, physical, store)
