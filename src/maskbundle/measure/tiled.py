"""Pass 1 of the streaming path: everything measured from pixels, tile by tile.

:func:`measure_tiled` reads a label image (and its intensities) in (Y, X) tiles with the
whole Z, never holding more than a few tiles, and returns what the in-memory path
computes from the whole array, bitwise identical:

- the relabel map (original ids ascending -> 1..N, as :func:`~maskbundle.labels.relabel.relabel`),
- the objects-table features (:func:`~maskbundle.measure.features.compute_features`),
- pixel counts and centroids (:func:`~maskbundle.measure.centroids.object_centroids`),
- the linkage adjacency (:func:`~maskbundle.measure.adjacency.linkage_adjacency`);
  the centroid adjacency follows from the centroids with ``centroid_adjacency(...,
  centroids=result.centroids_um(physical_size))``.

How (and why it is exact)
-------------------------
One read per tile. A tile is read with a halo (2 pixels for the perimeter weights, more
for a linkage gap), renumbered to local ids 1..n (``fastremap.renumber``; the original
ids are kept), and accumulated with the same kernels as the in-memory path, its core
split at the in-memory path's band edge and merged the same way. Accumulating by
local id and remapping the partials after the merge costs one read and one renumber per
tile; the alternative (a first pass for the unique ids, then a second read of every tile
relabelled to global ids) reads every pixel twice and adds a global remap per pixel.
Measured on a 3584^2 tile of synthetic tissue from uncompressed zarr: read 0.13 s,
unique 0.10 s, local table remap 0.13 s (a hash renumber took 1.0 s), so a second
sub-pass would add about 40 % to the ~0.9 s that the kernels take per tile.

Objects inside one tile get bitwise the in-memory values from that tile: their pixels
are folded in the same raster order. Objects that cross tiles (found when the partials
are merged: they appear in more than one tile) have floating-point sums (perimeter,
intensity sums and moments) whose rounding depends on the order of the pixels, so they
are recomputed in a second, smaller pass: rows in raster order, each window covering
only the column ranges of crossing objects, other labels masked out, with the sums
carried from window to window (:func:`~maskbundle.measure._accumulate.accumulate_into`)
- the same fold as the in-memory scan. Their convex hulls come from the same windows
(per-row extremes, :func:`~maskbundle.measure._accumulate.hull_rows_into`). Coordinate
sums, counts, bounding boxes and linkage pairs are exact integers (or minima) and merge
exactly.

Median intensities: objects inside a tile take theirs from the tile; the values of the
crossing objects are gathered in raster order by the same windows (float64 per pixel
and marker; refused with ``OptionError`` above ``memory_limit``). Meshes are not
computed here: a 3D object crossing tiles would need its own bounding-box window for
zmesh (:mod:`maskbundle.mesh`), which this pass does not read.

Seams for the writer
--------------------
- :func:`plan_tiles` -> :class:`TilePlan` (tile size from ``memory_limit``),
- :func:`tile_tasks` / :func:`measure_tile` (picklable; one per tile, runnable on a
  Dask worker) -> :class:`TilePartial`,
- :func:`merge_partials` (in the caller) -> :class:`Pass1`,
- :func:`measure_tiled` runs all of it (``client=`` for Dask, ``progress=`` per tile).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import fastremap
import numba
import numpy as np
import pandas as pd

from ..errors import LabelError, OptionError, ShapeMismatchError
from ..labels.relabel import label_dtype
from ..model import PhysicalSize
from ..rules import TILE_SIZE
from ._accumulate import (
    Accumulator,
    accumulate,
    accumulate_into,
    convex_pixel_counts,
    fill_values,
    grouped_medians,
    hull_rows,
    hull_rows_into,
    medians_of,
    merge,
)
from .adjacency import LinkagePartial, linkage_halo, linkage_tile, merge_linkage
from .features import (
    N_BANDS,
    NATIVE_INTENSITY,
    FeatureTable,
    resolve_alternative_ids,
    resolve_marker_names,
    resolve_statistics,
    table_from_accumulator,
)

__all__ = [
    "OME_TILE",
    "Pass1",
    "TilePartial",
    "TilePlan",
    "TileTask",
    "TiledMeasurement",
    "WindowReader",
    "as_reader",
    "bytes_per_object",
    "measure_tile",
    "measure_tiled",
    "merge_partials",
    "plan_tiles",
    "tile_tasks",
    "trim_heap",
]

OME_TILE = TILE_SIZE
"""Tile edges are multiples of the OME-TIFF tile, so pass 2 can write whole tiles."""

#: Halo for the accumulation kernels (perimeter weights look at neighbours' neighbours).
_FEATURE_HALO = 2
_DEFAULT_MEMORY = 1 << 30
_STRIP_ROWS = 128

Window = tuple[slice, ...]
Park = Callable[[pd.DataFrame], Callable[[], pd.DataFrame]]
"""``park(frame) -> load``: hold ``frame`` elsewhere (on disk) until ``load()``."""
Progress = Callable[[int, int, int], None]
"""``progress(tiles_done, tiles_total, pixels_in_this_tile)``, called once per tile."""


# ------------------------------------------------------------------------------ input


@runtime_checkable
class WindowReader(Protocol):
    """A lazy image: ``shape``, ``dtype`` and ``read(window) -> numpy array``."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    def read(self, window: Window) -> np.ndarray: ...


@dataclass(frozen=True)
class _Sliceable:
    """A sliceable array (numpy, zarr, dask, h5py) seen as a :class:`WindowReader`."""

    array: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        dt: np.dtype[Any] = np.dtype(self.array.dtype)
        return dt

    def read(self, window: Window) -> np.ndarray:
        out = self.array[window]
        if hasattr(out, "compute"):  # dask
            out = out.compute()
        return np.asarray(out)


@dataclass(frozen=True)
class _OffsetBlock:
    """A numpy block cut from a larger image, read with the image's coordinates."""

    data: np.ndarray
    start: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    def read(self, window: Window) -> np.ndarray:
        return self.data[tuple(
            slice(sl.start - o if sl.start is not None else None,
                  sl.stop - o if sl.stop is not None else None)
            for sl, o in zip(window, self.start, strict=True)
        )]

    @classmethod
    def cut(cls, src: Any, block: tuple[int, int, int, int, int, int], ndim: int, *,
            channels: bool) -> _OffsetBlock:
        arr = _read3(src, block, ndim, channels=channels)
        z0, _, y0, _, x0, _ = block
        if ndim == 2:
            arr = arr[:, 0] if channels else arr[0]
        start = (y0, x0) if ndim == 2 else (z0, y0, x0)
        if channels:
            start = (0, *start)
        return cls(np.ascontiguousarray(arr), start)


def as_reader(source: Any) -> WindowReader:
    """``source`` itself when it has ``read(window)``, else a view over its slicing."""
    if isinstance(source, WindowReader) and callable(getattr(source, "read", None)):
        return source
    if not hasattr(source, "shape") or not hasattr(source, "dtype"):
        raise OptionError(
            f"cannot read windows of a {type(source).__name__}: give an array (numpy, zarr, "
            "dask) or an object with shape, dtype and read(window)"
        )
    return _Sliceable(source)


# ------------------------------------------------------------------------------ memory

_LIBC: Any = None


def trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    The tile partials are many arrays of a few MB, below glibc's mmap threshold, so they
    live on the heap; freed, their pages stay resident (and count in the peak RSS) until
    trimmed. Measured at 65536^2 (10.3 million objects): without a trim after the merge
    the peak RSS was 7.8 GiB, the traced allocations ~5 GiB.
    """
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _LIBC = False
    trim = getattr(_LIBC, "malloc_trim", None) if _LIBC else None
    if trim is not None:
        trim(0)


# ------------------------------------------------------------------------------- plan


def bytes_per_object(n_intensity_columns: int = 0) -> int:
    """Peak bytes per object on top of ``memory_limit`` and the imports (measured, with
    a margin), for the whole streamed bundle (pass 1, centroid graph, tables, OME-TIFF).

    Measured with tracemalloc on 16384^2 synthetic tissue (646,065 objects, morphology
    and both adjacencies, no intensities), bytes per object at each stage's peak:

    - tiles: their partial sums (~270 B, kept until the merge) beside the tile working
      set that ``memory_limit`` bounds;
    - merge 379 (partials released field by field while the merged sums grow), linkage
      merge 418, feature table 455 (merged sums ~160 B, the table's 18 columns and its
      temporaries; the linkage table waits on disk);
    - centroid graph 482 (centroids held, the feature and linkage tables on disk; the
      Delaunay triangulation, its edges and the edge table ~340-400 B per point);
    - writing: adjacency CSVs 483 (every table held), objects table 420 (its 28 columns,
      8 B each: constant text columns hold one shared string; adjacency released);
    - OME-TIFF pass ~100 (every table released) beside its own working set.

    The largest (~490 B) plus heap overhead gives 640 B; intensity columns add their
    accumulators (up to 48 B per marker) and a column each: 64 B per column.
    """
    return 640 + 64 * int(n_intensity_columns)


@dataclass(frozen=True)
class TilePlan:
    """Tiles over (Y, X) with the whole Z.

    ``tile`` is the (Y, X) edge (a multiple of :data:`OME_TILE` unless the image is
    smaller), ``halo`` the pixels read around every tile, ``bytes_per_pixel`` the working
    set of one tile per pixel of its block, ``tile_bytes`` the working set of one tile.
    """

    shape: tuple[int, int, int]
    tile: tuple[int, int]
    halo: int
    bytes_per_pixel: int
    tile_bytes: int
    memory_limit: int

    @property
    def grid(self) -> tuple[int, int]:
        return (-(-self.shape[1] // self.tile[0]), -(-self.shape[2] // self.tile[1]))

    def cores(self, split_rows: Sequence[int] = ()) -> list[tuple[int, int, int, int]]:
        """(y0, y1, x0, x1) of every tile in raster order; rows also cut at ``split_rows``."""
        _, ny, nx = self.shape
        ty, tx = self.tile
        ys = sorted({*range(0, ny, ty), *(r for r in split_rows if 0 < r < ny)})
        out = []
        for y0, y1 in itertools.pairwise([*ys, ny]):
            for x0 in range(0, nx, tx):
                out.append((y0, y1, x0, min(x0 + tx, nx)))
        return out


def tile_bytes_per_pixel(
    label_dtype: np.dtype[Any] | str, *, n_channels: int = 0,
    intensity_dtype: np.dtype[Any] | str | None = None,
) -> int:
    """Working-set bytes per pixel of a tile block.

    The block as read, its renumbered copy (at most uint32) plus the uint16/uint32 copy
    the kernels read, one intensity block (plus its float64 copy when the dtype is not
    one the kernel reads), and 8 bytes of kernel temporaries (hull rows, linkage buffers
    and the mask of the crossing-object pass are each smaller).
    """
    lab = np.dtype(label_dtype).itemsize
    per = lab + 4 + 4 + 8
    if n_channels:
        idt = np.dtype(intensity_dtype if intensity_dtype is not None else np.float64)
        per += n_channels * idt.itemsize
        if idt not in NATIVE_INTENSITY:
            per += n_channels * 8
    return per


def plan_tiles(
    shape: Sequence[int],
    label_dtype: np.dtype[Any] | str,
    *,
    n_channels: int = 0,
    intensity_dtype: np.dtype[Any] | str | None = None,
    memory_limit: int | None = None,
    halo: int = _FEATURE_HALO,
    workers: int = 1,
    tile: int | None = None,
) -> TilePlan:
    """Choose the tile so that ``workers`` tiles in flight fit in ``memory_limit`` bytes.

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X)
    label_dtype, n_channels, intensity_dtype
        What one tile holds (see :func:`tile_bytes_per_pixel`).
    memory_limit : int, optional
        Bytes for the tile working sets (default 1 GiB). The per-object state grows on
        top of it (:func:`bytes_per_object`).
    halo : int
        Pixels read around each tile.
    workers : int
        Tiles processed at the same time.
    tile : int, optional
        Force this tile edge (a multiple of 512 keeps tiles aligned with the OME-TIFF
        tiles); ``memory_limit`` is then only checked.

    Raises
    ------
    OptionError
        The limit is too small for one 512 x 512 tile with its halo.
    """
    shp = tuple(int(s) for s in shape)
    if len(shp) == 2:
        shp = (1, *shp)
    if len(shp) != 3 or min(shp) < 1:
        raise OptionError(f"cannot tile an image of shape {tuple(shape)}; give (Y, X) or (Z, Y, X)")
    limit = _DEFAULT_MEMORY if memory_limit is None else int(memory_limit)
    per = tile_bytes_per_pixel(label_dtype, n_channels=n_channels, intensity_dtype=intensity_dtype)
    nz = shp[0]

    def cost(t: int) -> int:
        by = min(t, shp[1]) + 2 * halo
        bx = min(t, shp[2]) + 2 * halo
        return by * bx * nz * per * max(1, workers)

    if tile is not None:
        # any edge works for pass 1; the writer wants multiples of OME_TILE
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
            raise OptionError(f"tile must be a positive integer (pixels), got {tile!r}")
        t = tile
    else:
        t = OME_TILE
        biggest = max(shp[1], shp[2])
        while t < biggest and cost(t + OME_TILE) <= limit:
            t += OME_TILE
    if cost(t) > limit:
        raise OptionError(
            f"memory_limit={limit} bytes is below the {cost(t)} bytes of "
            f"{max(1, workers)} tile(s) of {t} x {t} x {nz} pixels; raise memory_limit "
            f"(at least {cost(OME_TILE)}) or use fewer workers"
        )
    return TilePlan(shp, (t, t), halo, per, cost(t) // max(1, workers), limit)


# ------------------------------------------------------------------------------ tasks


@dataclass(frozen=True)
class _Options:
    n_markers: int
    medians: bool
    moments: bool
    extremes: bool
    morphology: bool
    linkage: bool
    physical_size: PhysicalSize
    max_gap: float
    ndim: int


@dataclass(frozen=True)
class TileTask:
    """One tile of pass 1: picklable (it carries readers, or the windows themselves).

    ``labels`` / ``intensity`` are :class:`WindowReader` objects read at ``block``, or
    the numpy blocks already cut (for in-memory input sent to a Dask worker).
    ``block`` and ``core`` are global (z0, z1, y0, y1, x0, x1); ``image_shape`` (Z, Y, X).
    """

    index: int
    labels: Any
    intensity: Any
    block: tuple[int, int, int, int, int, int]
    core: tuple[int, int, int, int, int, int]
    image_shape: tuple[int, int, int]
    band_edges: tuple[int, ...]
    band_axis: int
    options: _Options


@dataclass
class TilePartial:
    """Per-object partial results of one tile, keyed by local id 1..n.

    ``ids`` (n,) the original labels of local ids 1..n (halo labels included, with count
    0); ``acc`` the sums over the tile's core; ``convex`` (n + 1,) the convex-hull pixel
    counts of the tile's pixels of each object (2D morphology); ``link`` the linkage
    pairs owned by the core, in local ids.
    """

    index: int
    ids: np.ndarray
    acc: Accumulator
    convex: np.ndarray | None
    medians: np.ndarray | None
    link: LinkagePartial | None
    pixels: int


def _read3(
    src: Any, window: tuple[int, int, int, int, int, int], ndim: int,
    channels: bool = False,
) -> np.ndarray:
    z0, z1, y0, y1, x0, x1 = window
    sl: tuple[slice, ...] = (slice(y0, y1), slice(x0, x1))
    if ndim == 3:
        sl = (slice(z0, z1), *sl)
    if channels:
        sl = (slice(None), *sl)
    arr = src[sl] if isinstance(src, np.ndarray) else as_reader(src).read(sl)
    arr = np.asarray(arr)
    if ndim == 2:
        arr = arr[:, np.newaxis] if channels else arr[np.newaxis]
    return arr


def _check_block(block: np.ndarray) -> np.ndarray:
    if block.dtype.kind not in "ui":
        raise LabelError(
            f"labels must be an integer array, got dtype {block.dtype}; convert the mask to "
            "integer labels first"
        )
    if block.dtype.kind == "i" and block.size and int(block.min()) < 0:
        raise LabelError("labels hold negative values; object ids must be >= 0 (0 = background)")
    if not block.dtype.isnative:
        block = block.astype(block.dtype.newbyteorder("="))
    return block


def _intensity_block(arr: np.ndarray) -> np.ndarray:
    """As ``features._check_intensity`` converts the whole image, per window."""
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    elif arr.dtype not in NATIVE_INTENSITY:
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


@numba.njit(cache=True, nogil=True)
def _lut_kernel(block: np.ndarray, lo: Any, lut: np.ndarray, out: np.ndarray) -> None:
    flat = block.ravel()
    res = out.ravel()
    if flat.size == 0:
        return
    prev = flat[0]
    cur = lut[0] * 0
    if prev != 0:
        cur = lut[prev - lo]
    for i in range(flat.size):
        v = flat[i]
        if v != prev:  # runs of one label: one look-up per run
            prev = v
            cur = lut[0] * 0
            if v != 0:
                cur = lut[v - lo]
        res[i] = cur


def _local_ids(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block renumbered to 1..n in ascending order of the original ids (uint16 / uint32)
    and the original id of each local id."""
    uniq = fastremap.unique(block)
    ids = uniq[uniq != 0]
    n = int(ids.size)
    dt = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
    out = np.zeros(block.shape, dt)
    if n:
        lo, hi = int(ids[0]), int(ids[-1])
        if hi - lo < max(4 * block.size, 1 << 20):
            # a table over the tile's id range: ~10x faster than a hash renumber
            lut = np.zeros(hi - lo + 1, dt)
            lut[(ids - ids[0]).astype(np.int64)] = np.arange(1, n + 1, dtype=dt)
            _lut_kernel(np.ascontiguousarray(block), block.dtype.type(lo), lut, out)
        else:  # ids spread wider than the tile: a hash map
            mapping = dict(zip(ids.tolist(), range(1, n + 1), strict=True))
            mapping[0] = 0
            out = np.ascontiguousarray(fastremap.remap(block, mapping), dtype=dt)
    return out, ids.astype(np.uint64 if block.dtype == np.uint64 else np.int64)


def _band_cores(
    core: tuple[int, int, int, int, int, int], block: tuple[int, int, int, int, int, int],
    band_axis: int, band_edges: tuple[int, ...],
) -> list[tuple[int, int, int, int, int, int]]:
    """The core (block coordinates) cut at the in-memory path's band edges, in order."""
    rel = [core[i] - block[2 * (i // 2)] for i in range(6)]
    a, b = core[2 * band_axis], core[2 * band_axis + 1]
    cuts = [e for e in band_edges if a < e < b]
    out = []
    for lo, hi in itertools.pairwise([a, *cuts, b]):
        c = list(rel)
        off = block[2 * band_axis]
        c[2 * band_axis], c[2 * band_axis + 1] = lo - off, hi - off
        out.append((c[0], c[1], c[2], c[3], c[4], c[5]))
    return out


def measure_tile(task: TileTask) -> TilePartial:
    """Pass 1 on one tile (runs on a worker; reads its own window)."""
    opt = task.options
    block = _check_block(_read3(task.labels, task.block, opt.ndim))
    local, ids = _local_ids(block)
    inten = None
    if opt.n_markers:
        inten = _intensity_block(_read3(task.intensity, task.block, opt.ndim, channels=True))
    z0, _, y0, _, x0, _ = task.block
    is3d = opt.ndim == 3
    acc: Accumulator | None = None
    for core in _band_cores(task.core, task.block, task.band_axis, task.band_edges):
        part = accumulate(
            local, inten, n_objects=ids.size, moments=opt.moments, extremes=opt.extremes,
            perimeter=opt.morphology and not is3d, faces=opt.morphology and is3d,
            core=core, origin=(z0, y0, x0), image_shape=task.image_shape,
        )
        acc = part if acc is None else merge(acc, part)
    assert acc is not None
    if not (opt.morphology and is3d):
        acc.faces = _RELEASED  # zeros unless 3D morphology: 24 bytes per object less
    c = task.core
    rel = (c[2] - y0, c[3] - y0, c[4] - x0, c[5] - x0)
    convex = None
    if opt.morphology and not is3d:
        core2d = local[0, rel[0] : rel[1], rel[2] : rel[3]]
        row_offset, row_lo, row_hi = hull_rows(core2d, acc, y_origin=c[2], x_origin=c[4])
        convex = convex_pixel_counts(row_offset, acc, row_lo, row_hi)
    medians = None
    if opt.medians and inten is not None:
        zs = slice(c[0] - z0, c[1] - z0)
        ys, xs = slice(rel[0], rel[1]), slice(rel[2], rel[3])
        medians = grouped_medians(local[zs, ys, xs], inten[:, zs, ys, xs], acc.count)
    link = None
    if opt.linkage:
        lab = local[0] if opt.ndim == 2 else local
        zc = (slice(c[0] - z0, c[1] - z0),) if opt.ndim == 3 else ()
        link = linkage_tile(
            lab, physical_size=opt.physical_size, max_gap=opt.max_gap,
            core=(*zc, slice(rel[0], rel[1]), slice(rel[2], rel[3])),
        )
    pixels = (c[1] - c[0]) * (c[3] - c[2]) * (c[5] - c[4])
    return TilePartial(task.index, ids, acc, convex, medians, link, pixels)


# ------------------------------------------------------------------------------ merge


@dataclass
class Pass1:
    """Pass-1 partials merged: the relabel map and per-object sums by Object ID.

    ``crossing`` (M,) are the Object IDs found in more than one tile; their sums in
    ``acc`` are still to be recomputed (only their bounding boxes and counts are final)
    and their ``convex`` counts (0) and ``medians`` (NaN) too.
    """

    original_ids: np.ndarray
    acc: Accumulator
    convex: np.ndarray | None
    medians: np.ndarray | None
    crossing: np.ndarray
    linkage: list[LinkagePartial]


def _rows_of(global_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.searchsorted(global_ids, ids).astype(np.int64) + 1


_RELEASED = np.empty(0)
_FIELDS = ("count", "ref", "s1", "s2", "lo", "hi", "border", "perimeter", "faces", "isum",
           "iref", "is1", "is2", "imin", "imax")


def merge_partials(
    partials: Iterable[TilePartial], *, n_markers: int, moments: bool, extremes: bool,
    morphology: bool, ndim: int, medians: bool = False,
) -> Pass1:
    """Merge tile partials (any order) into the global relabel map and sums."""
    parts = sorted(partials, key=lambda p: p.index)
    present = [p.acc.count[1:] > 0 for p in parts]
    if parts:
        all_ids = np.concatenate([p.ids[m] for p, m in zip(parts, present, strict=True)])
    else:
        all_ids = np.empty(0, np.int64)
    global_ids = np.unique(all_ids)
    del all_ids
    n = int(global_ids.size)
    label_dtype(n)  # refuses more objects than uint32 can number
    seen = np.zeros(n + 1, np.int32)
    rows = []
    for p, m in zip(parts, present, strict=True):
        r = _rows_of(global_ids, p.ids)
        rows.append(r)
        seen[r[m]] += 1  # ids are unique within a tile
    where = []
    for m, r in zip(present, rows, strict=True):
        rp = r[m]
        single = seen[rp] == 1
        src = np.flatnonzero(m) + 1
        where.append((rp[single], src[single], rp[~single], src[~single]))
    # field by field, releasing each partial's copy as it is merged: the peak is the
    # partials plus one global field, not the partials plus the whole global state
    template = Accumulator.empty(0, n_markers, moments=moments, extremes=extremes)
    merged: dict[str, np.ndarray] = {}
    for f in _FIELDS:
        row0 = getattr(template, f)
        if f == "faces" and not (morphology and ndim == 3):
            # never counted (measure_tile releases it): read-only zeros, no memory
            merged[f] = np.broadcast_to(row0[:1], (n + 1, *row0.shape[1:]))
            for p in parts:
                p.acc.faces = _RELEASED
            continue
        out = np.empty((n + 1, *row0.shape[1:]), row0.dtype)
        out[...] = row0[0]
        for p, (dst, src, cr, cs) in zip(parts, where, strict=True):
            part = getattr(p.acc, f)
            out[dst] = part[src]
            if f == "count" and cr.size:
                np.add.at(out, cr, part[cs])
            elif f == "lo" and cr.size:
                np.minimum.at(out, cr, part[cs])
            elif f == "hi" and cr.size:
                np.maximum.at(out, cr, part[cs])
            setattr(p.acc, f, _RELEASED)
        merged[f] = out
        trim_heap()  # the partials' field just released: give its pages back now
    acc = Accumulator(**merged)
    convex = np.zeros(n + 1, np.int64) if morphology and ndim == 2 else None
    med = np.full((n + 1, n_markers), np.nan) if medians else None
    links: list[LinkagePartial] = []
    for p, (dst, src, _, _), r in zip(parts, where, rows, strict=True):
        if convex is not None and p.convex is not None:
            convex[dst] = p.convex[src]
        if med is not None and p.medians is not None:
            med[dst] = p.medians[src]
        p.convex = p.medians = None
        if p.link is not None:
            links.append(_global_link(p.link, r))
            p.link = None
    trim_heap()
    crossing = np.flatnonzero(seen > 1)
    return Pass1(global_ids, acc, convex, med, crossing, links)


def _global_link(part: LinkagePartial, rows: np.ndarray) -> LinkagePartial:
    """Local-id pairs of one tile as Object ID pairs, sorted."""
    a = (part.keys >> np.uint64(32)).astype(np.int64)
    b = (part.keys & np.uint64(2**32 - 1)).astype(np.int64)
    ga, gb = rows[a - 1], rows[b - 1]
    keys = (np.minimum(ga, gb).astype(np.uint64) << np.uint64(32)) | np.maximum(ga, gb).astype(
        np.uint64
    )
    order = np.argsort(keys, kind="stable")
    return LinkagePartial(
        keys[order], part.gap[order], part.faces[order], part.ndim, part.spacing_zyx,
        part.max_gap,
    )


# ------------------------------------------------------------- objects across tiles


def _intervals(lo: np.ndarray, hi: np.ndarray) -> list[tuple[int, int]]:
    """Union of the inclusive intervals [lo, hi] as sorted disjoint intervals."""
    order = np.argsort(lo, kind="stable")
    out: list[tuple[int, int]] = []
    for a, b in zip(lo[order].tolist(), hi[order].tolist(), strict=True):
        if out and a <= out[-1][1] + 1:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _recompute_crossing(
    labels: Any, intensity: Any, p1: Pass1, *, image_shape: tuple[int, int, int],
    ndim: int, opt: _Options, band_axis: int, band_edges: tuple[int, ...], strip: int,
    memory_limit: int,
) -> None:
    """Recompute the sums (and hulls) of the objects in ``p1.crossing`` in raster order.

    Windows: per band, per row strip (per plane in 3D), the column ranges of the crossing
    objects active there, other labels masked to 0; sums carried across windows, so each
    object is folded exactly as the in-memory scan folds it. Updates ``p1`` in place.
    """
    cross = p1.crossing
    m = int(cross.size)
    if m == 0:
        return
    nz, ny, nx = image_shape
    is3d = ndim == 3
    orig = p1.original_ids[cross - 1]  # ascending
    lo = p1.acc.lo[cross]
    hi = p1.acc.hi[cross]
    h = _FEATURE_HALO
    want_hull = opt.morphology and not is3d
    if want_hull:
        heights = hi[:, 1] - lo[:, 1] + 1
        row_offset = np.zeros(m + 2, np.int64)
        np.cumsum(heights, out=row_offset[2:])
        ylo = np.concatenate([[0], lo[:, 1]]).astype(np.int64)
        row_lo = np.full(int(row_offset[-1]), np.iinfo(np.int32).max, np.int32)
        row_hi = np.full(int(row_offset[-1]), -1, np.int32)
    cdt = np.uint16 if m <= np.iinfo(np.uint16).max else np.uint32
    want_medians = p1.medians is not None and opt.n_markers > 0
    if want_medians:
        counts = p1.acc.count[cross]
        offsets = np.zeros(m + 2, np.int64)
        np.cumsum(counts, out=offsets[2:])
        need = int(offsets[-1]) * opt.n_markers * 8
        if need > memory_limit:
            raise OptionError(
                f"median intensity of the {m} objects crossing tiles needs {need} bytes "
                f"(all their pixels' values), above memory_limit={memory_limit}; raise "
                "memory_limit or drop 'median' from statistics"
            )
        fill = offsets[:-1].copy()
        values = np.empty((opt.n_markers, int(offsets[-1])), np.float64)
    bands: list[Accumulator] = []
    edges = [0, *band_edges, image_shape[band_axis]]
    for b0, b1 in itertools.pairwise(edges):
        if b1 <= b0:
            continue
        acc = Accumulator.empty(m, opt.n_markers, moments=opt.moments, extremes=opt.extremes)
        planes: list[tuple[int, int]] = (
            [(z, z + 1) for z in range(b0, b1)] if band_axis == 0 else [(0, nz)]
        )
        row_ranges = [(0, ny)] if band_axis == 0 else [(b0, b1)]
        for zc0, zc1 in planes:
            for r0, r1 in row_ranges:
                for y0 in range(r0, r1, strip):
                    y1 = min(y0 + strip, r1)
                    act = (lo[:, 1] < y1) & (hi[:, 1] >= y0) & (lo[:, 0] < zc1) & (hi[:, 0] >= zc0)
                    if not act.any():
                        continue
                    alo, ahi = lo[act], hi[act]
                    for xa, xb in _intervals(alo[:, 2], ahi[:, 2]):
                        # rows of this strip that the interval's objects occupy
                        inside = (alo[:, 2] >= xa) & (ahi[:, 2] <= xb)
                        ya = max(y0, int(alo[inside, 1].min()))
                        yb = min(y1, int(ahi[inside, 1].max()) + 1)
                        win = (
                            max(zc0 - 1, 0), min(zc1 + 1, nz), max(ya - h, 0),
                            min(yb + h, ny), max(xa - h, 0), min(xb + 1 + h, nx),
                        )
                        block = _check_block(_read3(labels, win, ndim))
                        idx = np.searchsorted(orig, block)
                        np.minimum(idx, m - 1, out=idx)
                        hit = orig[idx] == block
                        compact = np.where(hit, idx + 1, 0).astype(cdt)
                        del block, idx, hit
                        inten = None
                        if opt.n_markers:
                            inten = _intensity_block(_read3(intensity, win, ndim, channels=True))
                        core = (
                            zc0 - win[0], zc1 - win[0], ya - win[2], yb - win[2],
                            xa - win[4], xb + 1 - win[4],
                        )
                        accumulate_into(
                            acc, compact, inten, perimeter=opt.morphology and not is3d,
                            faces=opt.morphology and is3d, core=core,
                            origin=(win[0], win[2], win[4]), image_shape=image_shape,
                        )
                        if want_medians:
                            assert inten is not None
                            fill_values(compact, inten, core, fill, values)
                        if want_hull:
                            hull_rows_into(
                                compact[0, core[2] : core[3], core[4] : core[5]],
                                row_offset, ylo, row_lo,
                                row_hi, y_origin=ya, x_origin=xa,
                            )
        bands.append(acc)
    total = bands[0]
    for part in bands[1:]:
        total = merge(total, part)
    for f in _FIELDS:
        if f == "faces" and not (opt.morphology and is3d):
            continue  # the read-only zeros of merge_partials
        getattr(p1.acc, f)[cross] = getattr(total, f)[1:]
    if want_hull:
        assert p1.convex is not None
        conv = convex_pixel_counts(row_offset, total, row_lo, row_hi)
        p1.convex[cross] = conv[1:]
    if want_medians:
        assert p1.medians is not None
        p1.medians[cross] = medians_of(values, offsets)[1:]


# ------------------------------------------------------------------------------- run


@dataclass(frozen=True)
class TiledMeasurement:
    """What pass 1 measured, as the in-memory path would give it.

    ``original_ids`` (N,) as :func:`~maskbundle.labels.relabel.relabel` returns them;
    ``features`` as :func:`~maskbundle.measure.features.compute_features` on the
    relabelled mask (None when not asked); ``counts`` (N,) and ``centroids`` (N, 3)
    (plane, row, column) as :func:`~maskbundle.measure.centroids.object_centroids`;
    ``linkage`` as :func:`~maskbundle.measure.adjacency.linkage_adjacency` (None when
    not asked); ``crossing`` the Object IDs that crossed tiles; ``plan`` the tiling.
    """

    original_ids: np.ndarray
    features: FeatureTable | None
    counts: np.ndarray
    centroids: np.ndarray
    linkage: pd.DataFrame | None
    crossing: np.ndarray
    plan: TilePlan
    ndim: int

    def centroids_um(self, physical_size: PhysicalSize | tuple[float, ...] | float
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, points)`` as :func:`~maskbundle.measure.adjacency.centroids_um` returns
        them, for ``centroid_adjacency(..., centroids=...)``."""
        ps = PhysicalSize.coerce(physical_size)
        ndim = self.ndim
        spacing = np.asarray(ps.um_zyx())
        ids = np.flatnonzero(self.counts) + 1
        pts = self.centroids[ids - 1] * spacing
        if ndim == 2:
            pts = pts[:, 1:]
        return ids.astype(np.int64), np.ascontiguousarray(pts)


def _band_split(image_shape: tuple[int, int, int]) -> tuple[int, tuple[int, ...]]:
    """Axis and inner edges of the in-memory path's bands (features._run)."""
    nz = image_shape[0]
    axis = 0 if nz >= N_BANDS else 1
    size = image_shape[axis]
    edges = np.linspace(0, size, min(N_BANDS, size) + 1).astype(int)
    return axis, tuple(int(e) for e in edges[1:-1])


def tile_tasks(
    labels: Any, intensity: Any, plan: TilePlan, options: _Options, *, send_blocks: bool,
) -> list[TileTask]:
    """One :class:`TileTask` per tile, in raster order (tiles also cut at the band edge).

    With ``send_blocks`` (in-memory input on a cluster) each task carries its own numpy
    blocks; otherwise it carries the readers and reads its window where it runs.
    """
    nz, ny, nx = plan.shape
    axis, edges = _band_split(plan.shape)
    halo = plan.halo
    tasks = []
    for i, (y0, y1, x0, x1) in enumerate(plan.cores(edges if axis == 1 else ())):
        block = (0, nz, max(y0 - halo, 0), min(y1 + halo, ny), max(x0 - halo, 0),
                 min(x1 + halo, nx))
        lab_src, int_src = labels, intensity
        if send_blocks:  # the task carries its own pixels, not the whole array
            lab_src = _OffsetBlock.cut(labels, block, options.ndim, channels=False)
            if intensity is not None:
                int_src = _OffsetBlock.cut(intensity, block, options.ndim, channels=True)
        tasks.append(TileTask(i, lab_src, int_src, block, (0, nz, y0, y1, x0, x1), plan.shape,
                              edges, axis, options))
    return tasks


def _check_intensity_source(
    intensity: Any, spatial: tuple[int, ...]
) -> tuple[Any, int, np.dtype[Any]]:
    """Reader, channel count and dtype of the intensity image (CYX / YX, CZYX / ZYX)."""
    src = intensity if isinstance(intensity, np.ndarray) else as_reader(intensity)
    shp = tuple(int(v) for v in src.shape)
    dt = np.dtype(src.dtype)
    if len(shp) == len(spatial) and shp == spatial:
        # one channel without its axis: give the readers a channel axis
        src = src[np.newaxis] if isinstance(src, np.ndarray) else _AddChannel(as_reader(src))
        shp = (1, *shp)
    if len(shp) != len(spatial) + 1 or shp[1:] != spatial:
        axes = "CYX or YX" if len(spatial) == 2 else "CZYX or ZYX"
        raise ShapeMismatchError(
            f"intensity image shape {tuple(intensity.shape)} does not match the mask shape "
            f"{spatial}; expected {axes} with the same spatial size"
        )
    if dt.kind not in "uifb":
        raise OptionError(f"intensity image must be real numbers, got dtype {dt}")
    return src, shp[0], dt


@dataclass(frozen=True)
class _AddChannel:
    """A single-channel reader seen with a leading channel axis of length 1."""

    inner: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return (1, *self.inner.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        dt: np.dtype[Any] = np.dtype(self.inner.dtype)
        return dt

    def read(self, window: Window) -> np.ndarray:
        return np.asarray(self.inner.read(tuple(window[1:])))[np.newaxis]


def measure_tiled(
    labels: Any,
    *,
    physical_size: PhysicalSize | tuple[float, ...] | float,
    intensity: Any = None,
    marker_names: Sequence[str] | None = None,
    alternative_ids: Sequence[str] | dict[str, str] | None = None,
    statistics: Sequence[str] = ("mean",),
    features: bool = True,
    morphology: bool = True,
    linkage: bool = True,
    max_gap: float = 0.0,
    contact: bool = False,
    memory_limit: int | None = None,
    tile: int | None = None,
    client: Any = None,
    workers: int = 2,
    progress: Progress | None = None,
    park: Park | None = None,
) -> TiledMeasurement:
    """Pass 1 by tiles: relabel map, features, centroids and linkage of one mask.

    Parameters
    ----------
    labels : array-like (Y, X) or (Z, Y, X), integer
        The mask with its ORIGINAL ids (any non-negative integers; 0 = background): a
        numpy / zarr / dask array or an object with ``shape``, ``dtype`` and
        ``read(window) -> ndarray`` (window = tuple of slices). Relabelled on the fly,
        ascending by original id, as :func:`~maskbundle.labels.relabel.relabel` does.
    physical_size, intensity, marker_names, alternative_ids, statistics, morphology
        As :func:`~maskbundle.measure.features.compute_features` (``intensity`` may be
        lazy like ``labels``); ``"median"`` is refused (``OptionError``).
    features : bool
        Build the features table (False: only counts, centroids and linkage).
    linkage, max_gap, contact
        Linkage adjacency as :func:`~maskbundle.measure.adjacency.linkage_adjacency`.
    memory_limit : int, optional
        Bytes for the tiles in flight (default 1 GiB); sets the tile size
        (:func:`plan_tiles`). Per-object state comes on top (:func:`bytes_per_object`).
    tile : int, optional
        Force the tile edge (a multiple of 512).
    client : dask.distributed.Client, optional
        Run the tiles as tasks on its workers (each reads its own window, so a lazy
        input must be readable there; numpy input is cut into blocks up front, one
        extra copy of the image while the tasks run). Merge and the crossing-object
        pass run here and read ``labels`` / ``intensity`` again.
    workers : int
        Without a client: tiles measured at the same time on threads (the kernels
        release the GIL); the memory plan counts them.
    progress : callable, optional
        ``progress(tiles_done, tiles_total, tile_pixels)`` after every tile
        (:func:`maskbundle.progress.tile_progress` draws a bar from it).
    park : callable, optional
        ``park(frame) -> load``: move a frame out of memory while the feature table is
        built (the largest per-object peak of this pass); ``load()`` returns it. The
        writer parks the linkage table on disk (:class:`maskbundle.io.spill.SpilledFrame`).

    Returns
    -------
    TiledMeasurement
        Bitwise equal to the in-memory functions on the relabelled whole array.
    """
    lab_src = labels if isinstance(labels, np.ndarray) else as_reader(labels)
    shape = tuple(int(v) for v in lab_src.shape)
    ldt = np.dtype(lab_src.dtype)
    if len(shape) not in (2, 3) or min(shape, default=0) < 1:
        raise LabelError(
            f"labels must be a non-empty (Y, X) or (Z, Y, X) array, got shape {shape}; "
            "pass one mask (channel) at a time"
        )
    if ldt.kind not in "ui":
        raise LabelError(
            f"labels must be an integer array, got {ldt}; convert the mask to integer labels"
        )
    ndim = len(shape)
    ps = PhysicalSize.coerce(physical_size)
    if ndim == 3 and ps.z is None:
        raise OptionError("a 3D mask needs a z pixel size: physical_size=(x, y, z) in micrometres")
    stats = resolve_statistics(statistics)
    int_src = None
    n_markers = 0
    idt: np.dtype[Any] | None = None
    markers: list[str] = []
    alt: list[str] = []
    if intensity is not None:
        int_src, n_markers, idt = _check_intensity_source(intensity, shape)
        markers = resolve_marker_names(marker_names, n_markers)
        alt = resolve_alternative_ids(alternative_ids, markers)
    elif marker_names is not None:
        raise OptionError("marker_names given without an intensity_image")
    image_shape: tuple[int, int, int] = (
        (1, shape[0], shape[1]) if ndim == 2 else (shape[0], shape[1], shape[2])
    )
    halo = _FEATURE_HALO
    if linkage:
        halo = max(halo, *linkage_halo(ps, max_gap=max_gap, ndim=ndim)[-2:])
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers must be an integer >= 1, got {workers!r}")
    if client is not None:
        # tiles in flight on the cluster; each worker holds its own, the caller none
        workers = 1
    plan = plan_tiles(image_shape, ldt, n_channels=n_markers, intensity_dtype=idt,
                      memory_limit=memory_limit, halo=halo, workers=workers, tile=tile)
    opt = _Options(
        n_markers=n_markers, medians="median" in stats and n_markers > 0, moments="std" in stats,
        extremes="min" in stats or "max" in stats, morphology=morphology and features,
        linkage=linkage, physical_size=ps, max_gap=float(max_gap), ndim=ndim,
    )
    in_memory = isinstance(labels, np.ndarray)
    tasks = tile_tasks(lab_src, int_src, plan, opt, send_blocks=client is not None and in_memory)
    total = len(tasks)
    partials: list[TilePartial] = []
    if client is not None:
        from distributed import as_completed  # type: ignore[import-untyped,unused-ignore]

        futures = client.map(measure_tile, tasks, pure=False)
        for done, fut in enumerate(as_completed(futures), 1):  # type: ignore[no-untyped-call]
            part = fut.result()
            partials.append(part)
            if progress is not None:
                progress(done, total, part.pixels)
        del futures
    elif workers == 1:
        for done, task in enumerate(tasks, 1):
            part = measure_tile(task)
            partials.append(part)
            if progress is not None:
                progress(done, total, part.pixels)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: set[Future[TilePartial]] = set()
            queue = iter(tasks)
            done = 0
            for task in itertools.islice(queue, workers):
                pending.add(pool.submit(measure_tile, task))
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    part = fut.result()
                    partials.append(part)
                    done += 1
                    if progress is not None:
                        progress(done, total, part.pixels)
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(measure_tile, nxt))
    del tasks
    p1 = merge_partials(partials, n_markers=n_markers, moments=opt.moments,
                        extremes=opt.extremes, morphology=opt.morphology, ndim=ndim,
                        medians=opt.medians)
    del partials
    trim_heap()
    # rows per strip of the crossing-object pass: short strips keep its windows close to
    # the seams; never more than a full-width strip within the budget
    strip = max(1, plan.memory_limit // max(1, (shape[-1] + 2 * halo) * image_shape[0]
                                            * plan.bytes_per_pixel) - 2 * halo)
    strip = min(strip, _STRIP_ROWS)
    _recompute_crossing(lab_src, int_src, p1, image_shape=image_shape, ndim=ndim, opt=opt,
                        band_axis=_band_split(image_shape)[0],
                        band_edges=_band_split(image_shape)[1], strip=min(strip, shape[-2]),
                        memory_limit=plan.memory_limit)
    # per-object state is freed as soon as it is used (at 10 million objects every
    # 8 bytes per object is 80 MB): the linkage partials first, then the sums
    link = merge_linkage(p1.linkage, contact=contact) if linkage else None
    p1.linkage = []
    trim_heap()
    acc = p1.acc
    table = None
    if features:  # the largest per-object peak after the tiles: built before the centroids
        load = None
        if park is not None and link is not None:
            load, link = park(link), None
        try:
            table = table_from_accumulator(
                acc, is3d=ndim == 3, um=ps.um_zyx(), stats=stats, markers=markers,
                alt=alt, morphology=morphology, convex=p1.convex, medians=p1.medians,
            )
        finally:  # back from the disk (and the scratch files gone) whatever happened
            if load is not None:
                link = load()
    p1.convex = p1.medians = None
    counts = acc.count[1:].copy()
    # exact integer coordinate sums, as object_centroids' float64 sums (exact below 2**53)
    cents = (acc.ref[1:] * counts[:, None] + acc.s1[1:]).astype(np.float64)
    del acc
    p1.acc = None  # type: ignore[assignment]
    with np.errstate(invalid="ignore", divide="ignore"):
        cents /= counts[:, np.newaxis]
    crossing = p1.crossing
    ids = p1.original_ids
    del p1
    keep_unsigned = ids.dtype == np.uint64 and ids.size and int(ids[-1]) > 2**63 - 1
    ids = ids.astype(np.uint64 if keep_unsigned else np.int64)
    trim_heap()
    return TiledMeasurement(ids, table, counts, cents, link, crossing, plan, ndim)
