"""Label images opened lazily: numpy, dask and zarr arrays, tiled (OME-)TIFF, (OME-)Zarr, .npy.

:func:`open_label_source` reads no pixels. The object it returns knows the shape
``(Y, X)`` or ``(Z, Y, X)`` and the dtype, reads any window as a numpy array
(:meth:`LabelSource.read`), says which tile shape reads cheapest (:attr:`LabelSource.chunks`)
and carries a provenance record (file name, format, bytes on disk: cheap to get).

The input checksum is not computed here: hashing a 16 GiB file is a pass of its own.
:class:`BandChecksum` gives the value of ``bundle.build.array_checksum`` (sha256 over
dtype, shape and the C-ordered bytes) from full-width bands of rows fed in C order,
which is the order in which the streaming OME-TIFF writer reads its sources anyway.

Axes: singleton C/T (and S) axes are dropped; C, T or S with more than one position is
refused (:class:`LabelError`), since a label image is one mask. Only integer labels are
streamed; booleans and non-numbers are refused with the message of
:func:`~maskbundle.labels.checks.check_label_array`; floats too, except for an in-memory
numpy array, which that checker converts exactly as the in-memory path does.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError, LabelError
from ..labels.checks import check_label_array, first_position
from .limits import MAX_INFLATE_RATIO, MAX_TILE_BYTES, check_npy_file, check_tiff_structure
from .tifftiles import tiff_tiles

__all__ = [
    "MAX_TILE_BYTES",
    "BandChecksum",
    "LabelSource",
    "SourceReadError",
    "open_label_source",
]

_DROPPABLE = "CTSQI"  # axes that may be dropped when they hold one position


class SourceReadError(CorruptInputError):
    """A window of a lazily opened label image could not be read (damaged tile, I/O error)."""


@dataclass
class LabelSource:
    """A label image opened without reading pixels.

    ``shape`` is ``(Y, X)`` or ``(Z, Y, X)``; ``chunks`` the stored tile shape over the same
    axes (reads aligned to it decode each tile once); ``provenance`` a JSON-ready record.
    ``read(window)`` takes one slice per axis of ``shape`` (step 1 or None) and returns a
    native-order numpy array of exactly that window, in ``dtype``'s kind and size.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    chunks: tuple[int, ...]
    provenance: dict[str, Any]
    _array: Any = field(repr=False)
    _index: tuple[int | None, ...] = field(repr=False)  # None: a kept axis; int: fixed
    _order: tuple[int, ...] = field(repr=False)  # kept source axes in (Z,)Y,X order
    _close: Any = field(default=None, repr=False)
    # set when the pixels served differ from the input's own bytes (an in-memory float or
    # big-endian array converted by the checker): array_checksum of the input as given
    input_sha256: str | None = None
    # the path it was opened from: pickling (a Dask task on another process) reopens it
    # there instead of copying open file handles
    origin: str | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self, window: Sequence[slice]) -> np.ndarray:
        """The pixels of ``window`` (one slice per axis) as a native-order numpy array."""
        if len(window) != self.ndim:
            raise ValueError(f"window {window} has {len(window)} slices for shape {self.shape}")
        bounds = [s.indices(n) for s, n in zip(window, self.shape, strict=True)]
        if any(step != 1 for _, _, step in bounds):
            raise ValueError("read() takes windows with step 1")
        src_slices: list[int | slice] = []
        kept = iter(self._order_slices(bounds))
        for fixed in self._index:
            src_slices.append(fixed if fixed is not None else next(kept))
        try:
            data = np.asarray(self._array[tuple(src_slices)])
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # codecs, zarr, dask and the OS raise their own types
            where = tuple(b[0] for b in bounds)
            raise SourceReadError(
                f"mask {self.name!r}: the window starting at {where} of "
                f"{self.provenance.get('file', 'the array')} cannot be read "
                f"({type(exc).__name__}: {str(exc)[:200]}); the file is damaged or unreadable"
            ) from exc
        if data.ndim != len(self._order):
            data = data.reshape([b[1] - b[0] for b in self._order_bounds(bounds)])
        if self._order != tuple(sorted(self._order)):
            data = np.transpose(data, self._order)
        want = tuple(stop - start for start, stop, _ in bounds)
        if data.shape != want:
            raise SourceReadError(
                f"mask {self.name!r}: reading a {want} window gave {data.shape} pixels; "
                "the source is damaged or changed while being read"
            )
        if data.dtype.kind != self.dtype.kind or data.dtype.itemsize != self.dtype.itemsize:
            raise SourceReadError(
                f"mask {self.name!r}: the window at {tuple(b[0] for b in bounds)} holds "
                f"{data.dtype} pixels, the source declares {self.dtype}; a source must have "
                "one dtype throughout"
            )
        if not data.dtype.isnative:
            data = data.astype(data.dtype.newbyteorder("="))
        if data.dtype.kind == "i" and data.size:
            neg = data < 0
            if neg.any():
                pos = tuple(
                    int(p) + b[0] for p, b in zip(first_position(neg), bounds, strict=True)
                )
                raise LabelError(
                    f"mask {self.name!r}: negative label value(s), first at {pos}; labels "
                    "must be >= 0 (0 = background): fix the source or add an offset"
                )
        return data

    def _order_slices(self, bounds: list[tuple[int, int, int]]) -> list[slice]:
        # bounds are in (Z,)Y,X order; the source stores the kept axes in its own order
        by_out = [slice(b[0], b[1]) for b in bounds]
        return [by_out[self._order.index(i)] for i in sorted(self._order)]

    def _order_bounds(self, bounds: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        return [bounds[self._order.index(i)] for i in sorted(self._order)]

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self.origin is not None:
            return (_reopen, (self.origin, self.name))
        return super().__reduce__()

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> LabelSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BandChecksum:
    """``array_checksum`` of a source computed from bands read in C order.

    Feed full-width bands of rows (``(rows, X)`` or, in 3D, ``(rows, X)`` of one plane, or
    whole ``(planes, Y, X)`` blocks) in C order with :meth:`update`; :meth:`hexdigest`
    equals ``bundle.build.array_checksum(whole_array)`` once every pixel was fed, and
    raises otherwise. Bands are hashed in the source's own dtype (byte order included),
    as the in-memory path hashes the array it was given.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self._h = hashlib.sha256()
        self._h.update(f"{self.dtype.str}{self.shape}".encode())
        self._fed = 0
        self._total = math.prod(self.shape)

    def update(self, band: np.ndarray) -> None:
        if band.shape[-1] != self.shape[-1]:
            raise ValueError(f"a band of shape {band.shape} is not full-width for {self.shape}")
        self._h.update(np.ascontiguousarray(band, dtype=self.dtype).data)
        self._fed += band.size

    def hexdigest(self) -> str:
        if self._fed != self._total:
            raise ValueError(f"checksum fed {self._fed} of {self._total} pixels")
        return self._h.hexdigest()


def _check_dtype(name: str, dtype: np.dtype[Any], ndim: int) -> np.dtype[Any]:
    """Refuse what check_label_array refuses for the dtype alone; floats are refused too."""
    probe = np.empty((0,) * max(ndim, 2), dtype=dtype)
    check_label_array(name, probe)  # bool, complex, strings, objects: its own messages
    if dtype.kind not in "iu":
        raise LabelError(
            f"mask {name!r}: {dtype} labels cannot be streamed from a file or a lazy array; "
            "save the labels with an integer dtype (uint16/uint32), or pass them as an "
            "in-memory numpy array"
        )
    return dtype


def _axes_plan(name: str, shape: tuple[int, ...], axes: str | None) -> tuple[
    tuple[int | None, ...], tuple[int, ...], tuple[int, ...]
]:
    """Which source axes are kept (and in which output order) and which are fixed at 0."""
    if axes is None:
        # a bare array: 2D or 3D as given; leading singleton axes of a 4D+ array dropped
        extra = len(shape) - 3 if len(shape) > 3 else 0
        if len(shape) < 2 or any(n != 1 for n in shape[:extra]):
            raise LabelError(
                f"mask {name!r}: labels must be 2D (Y, X) or 3D (Z, Y, X), got shape "
                f"{shape}; squeeze singleton axes or pass one mask per channel"
            )
        index: tuple[int | None, ...] = (0,) * extra + (None,) * (len(shape) - extra)
        kept = tuple(range(len(shape) - extra))
        return index, kept, shape[extra:]
    axes = axes.upper()
    if "Z" not in axes:  # tifffile names a plain page stack Q or I
        for generic in ("Q", "I"):
            if generic in axes and shape[axes.index(generic)] > 1:
                axes = axes.replace(generic, "Z", 1)
                break
    if "Y" not in axes or "X" not in axes:
        raise LabelError(f"mask {name!r}: axes {axes!r} have no Y and X")
    index_l: list[int | None] = []
    kept_axes: list[str] = []
    for ax, n in zip(axes, shape, strict=True):
        if ax in "ZYX":
            index_l.append(None)
            kept_axes.append(ax)
        elif ax in _DROPPABLE and n == 1:
            index_l.append(0)
        else:
            raise LabelError(
                f"mask {name!r}: axis {ax!r} has {n} positions (axes {axes}, shape {shape}); "
                "a label image is one mask: pass one channel and one time point per mask"
            )
    out_axes = [ax for ax in "ZYX" if ax in kept_axes]
    # order[i] = position among the kept source axes of output axis i
    order = tuple(kept_axes.index(ax) for ax in out_axes)
    out_shape = tuple(shape[axes.index(ax)] for ax in out_axes)
    return tuple(index_l), order, out_shape


def _source(
    name: str, array: Any, axes: str | None, chunks: Sequence[int] | None,
    provenance: dict[str, Any], close: Any = None,
) -> LabelSource:
    shape = tuple(int(n) for n in array.shape)
    index, order, out_shape = _axes_plan(name, shape, axes)
    dtype = _check_dtype(name, np.dtype(array.dtype), len(out_shape))
    kept_src = [i for i, fixed in enumerate(index) if fixed is None]
    if chunks is None:  # in memory: any window is cheap; bands of 512 full-width rows
        chunk_out = (*(1,) * (len(out_shape) - 2), min(512, out_shape[-2]), out_shape[-1])
    else:
        chunk_src = [int(chunks[i]) for i in kept_src]
        chunk_out = tuple(chunk_src[o] for o in order)
    if math.prod(chunk_out) * dtype.itemsize > MAX_TILE_BYTES and chunks is not None:
        raise CorruptInputError(
            f"mask {name!r}: one stored tile of {chunk_out} pixels is larger than "
            f"{MAX_TILE_BYTES} bytes; re-save the image tiled (e.g. 512 x 512 tiles)"
        )
    prov = {**provenance, "shape": list(out_shape), "dtype": str(dtype)}
    return LabelSource(name, out_shape, dtype, chunk_out, prov, array, index, order, close)


def _numpy_source(name: str, arr: np.ndarray, prov: dict[str, Any]) -> LabelSource:
    if arr.ndim > 3:
        return _source(name, arr, None, None, prov)
    # in memory: the one checker converts floats and checks negatives as today
    checked = check_label_array(name, arr)
    src = _source(name, checked, None, None, prov)
    if checked.dtype != arr.dtype:
        band = BandChecksum(arr.shape, arr.dtype)
        band.update(arr.reshape(-1, arr.shape[-1]) if arr.ndim == 3 else arr)
        src.input_sha256 = band.hexdigest()
    return src


def _file_record(path: Path, fmt: str) -> dict[str, Any]:
    if path.is_dir():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    else:
        size = path.stat().st_size
    # file name and bytes on disk only: a checksum of the bytes is a pass of its own
    return {"file": path.name, "format": fmt, "bytes_on_disk": size}


def _open_tiff(name: str, path: Path) -> LabelSource:
    import tifffile
    import zarr

    check_tiff_structure(path, str(path))
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            level = series.levels[0] if series.levels else series
            axes = level.axes
            shape = tuple(int(n) for n in level.shape)
            dtype = np.dtype(level.dtype)
            page: Any = level.pages[0] if level.pages else None
            tiled = bool(page is not None and getattr(page, "is_tiled", False))
            tile = (int(page.tilelength), int(page.tilewidth)) if tiled else None
            rows = int(page.rowsperstrip) if page is not None and not tiled else None
            stored = sum(
                sum(int(n) for n in (getattr(p, "databytecounts", None) or ()))
                for p in level.pages if p is not None
            )
            declared = math.prod(shape) * dtype.itemsize
            if declared > (1 << 20) and declared > MAX_INFLATE_RATIO * max(stored, 1):
                raise CorruptInputError(
                    f"{path}: declares {declared} bytes of pixels but stores only {stored} "
                    "bytes; the header is damaged (no codec compresses that much)"
                )
            chunks = _chunk_by_axis(axes, shape, tile, rows)
            # the common layout (tiled, deflate/zstd/none) is read by positioned reads and
            # libdeflate; anything else by tifffile's zarr view
            tiles = tiff_tiles(str(path), level, shape, dtype)
            if tiles is not None:
                record = {**_file_record(path, "tiff"), "axes": axes}
                return _source(name, tiles, axes, chunks, record, close=tiles.close)
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
    except CorruptInputError:
        raise
    except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as exc:
        raise CorruptInputError(f"{path}: not a readable TIFF ({exc})"[:400]) from exc
    try:
        arr: Any = zarr.open_array(store, mode="r")
    except Exception as exc:  # zarr raises its own types on stores it cannot map
        store.close()
        raise CorruptInputError(f"{path}: its level 0 cannot be opened ({exc})"[:400]) from exc
    return _source(
        name, arr, axes, chunks, {**_file_record(path, "tiff"), "axes": axes}, close=store.close
    )


def _chunk_by_axis(
    axes: str, shape: tuple[int, ...], tile: tuple[int, int] | None, rows: int | None
) -> list[int]:
    out = []
    for ax, n in zip(axes, shape, strict=True):
        if ax == "Y":
            out.append(tile[0] if tile else min(rows or n, n))
        elif ax == "X":
            out.append(tile[1] if tile else n)
        else:
            out.append(1)
    return out


def _safe_child(root: Path, rel: Any, what: str) -> Path:
    """``root / rel`` for a relative name from metadata, refusing escapes (.., absolute)."""
    if not isinstance(rel, str) or not rel or rel.startswith(("/", "\\")) or any(
        part in ("..", "") for part in rel.replace("\\", "/").split("/")
    ):
        raise CorruptInputError(f"{what}: dataset path {rel!r} is not a plain relative name")
    child = (root / rel).resolve()
    if not child.is_relative_to(root.resolve()):
        raise CorruptInputError(f"{what}: dataset path {rel!r} leaves the zarr directory")
    return child


def _ome_multiscale(attrs: Any) -> dict[str, Any] | None:
    attrs = dict(attrs)
    if isinstance(attrs.get("ome"), dict):  # OME-Zarr 0.5 keeps its metadata under "ome"
        attrs = attrs["ome"]
    ms = attrs.get("multiscales")
    if isinstance(ms, list) and ms and isinstance(ms[0], dict):
        return ms[0]
    return None


def _open_zarr(name: str, path: Path) -> LabelSource:
    import zarr

    what = str(path)
    try:
        node: Any = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises its own types on damaged metadata
        raise CorruptInputError(f"{what}: not a readable zarr store ({exc})"[:400]) from exc
    axes: str | None = None
    if not hasattr(node, "shape"):
        ms = _ome_multiscale(node.attrs)
        datasets = ms.get("datasets") if ms else None
        if not datasets or not isinstance(datasets[0], dict):
            raise CorruptInputError(
                f"{what}: a zarr group without OME multiscales metadata; pass the path of "
                "the label array inside it"
            )
        rel = datasets[0].get("path")
        _safe_child(path, rel, what)
        raw_axes = ms.get("axes") if ms else None
        if isinstance(raw_axes, list) and raw_axes:
            names = [a.get("name") if isinstance(a, dict) else a for a in raw_axes]
            if all(isinstance(n, str) and len(n) == 1 for n in names):
                axes = "".join(str(n) for n in names).upper()
        try:
            node = node[rel]
        except Exception as exc:  # missing or damaged array metadata
            raise CorruptInputError(f"{what}: its level {rel!r} cannot be opened ({exc})"[:400]) from exc
        if not hasattr(node, "shape"):
            raise CorruptInputError(f"{what}: {rel!r} is not an array")
    if axes is not None and len(axes) != len(node.shape):
        raise CorruptInputError(f"{what}: {len(axes)} axes declared for a {len(node.shape)}-D array")
    prov = {**_file_record(path, "zarr"), **({"axes": axes} if axes else {})}
    return _source(name, node, axes, tuple(int(c) for c in node.chunks), prov)


def _open_npy(name: str, path: Path) -> LabelSource:
    check_npy_file(path, str(path))
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CorruptInputError(f"{path}: not a readable .npy file ({exc})"[:400]) from exc
    # memory-mapped: rows are contiguous, so full-width bands read cheapest
    chunks = [1] * arr.ndim
    chunks[-2:] = [min(512, arr.shape[-2]) if arr.ndim >= 2 else 1, arr.shape[-1]]
    return _source(name, arr, None, chunks, _file_record(path, "npy"))


def _reopen(origin: str, name: str) -> LabelSource:
    return open_label_source(origin, name=name)


def open_label_source(x: Any, *, name: str = "mask") -> LabelSource:
    """Open a label image without reading its pixels.

    ``x`` is a numpy array, a dask array, a zarr array, or a path to a tiled (OME-)TIFF
    (level 0 of its first series), a zarr / OME-Zarr directory (level 0 of its first
    multiscale) or a ``.npy`` file (memory-mapped). Raises :class:`LabelError` for axes or
    dtypes that are not one label image, :class:`CorruptInputError` for unreadable files.
    """
    if isinstance(x, str | os.PathLike):
        path = Path(x)
        if not path.exists():
            raise CorruptInputError(f"mask {name!r}: {path} does not exist")
        suffix = path.name.lower()
        opened = None
        if path.is_dir() or suffix.endswith((".zarr", ".zarr/")):
            opened = _open_zarr(name, path)
        elif suffix.endswith((".tif", ".tiff", ".btf", ".tf8", ".tf2")):
            opened = _open_tiff(name, path)
        elif suffix.endswith(".npy"):
            opened = _open_npy(name, path)
        if opened is not None:
            opened.origin = str(path.resolve())
            return opened
        raise CorruptInputError(
            f"mask {name!r}: {path.name} is not a TIFF, zarr directory or .npy file"
        )
    if isinstance(x, np.ndarray):
        return _numpy_source(name, x, {"format": "numpy"})
    if hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__"):
        kind = type(x).__module__.split(".")[0]
        chunks = getattr(x, "chunks", None)
        if chunks is not None and chunks and isinstance(chunks[0], tuple):
            chunks = tuple(int(c[0]) for c in chunks)  # dask: chunk sizes per axis
        return _source(name, x, None, chunks, {"format": kind})
    raise LabelError(
        f"mask {name!r}: {type(x).__name__} is not a label image; pass a numpy, dask or zarr "
        "array or the path of a TIFF, zarr directory or .npy file"
    )
