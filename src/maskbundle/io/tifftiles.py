"""Level 0 of a tiled TIFF read tile by tile: positioned reads and libdeflate/zstd decoding.

tifffile's zarr view of a TIFF decodes deflate tiles with zlib through zarr's async
machinery; for a whole-slide mask read twice by the streaming path that was most of the
reading time. :class:`TiffTiles` reads the same pixels directly: ``os.pread`` of each
stored tile (thread-safe, no shared file position) and imagecodecs' libdeflate decoder
(about 3.5x faster than zlib on label tiles), on two threads for a read that spans many
tiles.

Only the common layout is served here (tiled pages of one sample, integer pixels (or
floating point without a predictor), compression none/deflate/zstd, predictor none or
horizontal); :func:`tiff_tiles` returns
None for anything else and the caller keeps tifffile's own reader. Every tile must decode
to exactly one tile of pixels: a damaged, truncated or oversized tile is a
:class:`~maskbundle.errors.CorruptInputError`, never a partial or wrapped read.
"""

from __future__ import annotations

import itertools
import math
import os
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import CorruptInputError
from .limits import MAX_TILE_BYTES

__all__ = ["TiffTiles", "tiff_tiles"]

_NONE, _DEFLATE, _DEFLATE_OLD, _ZSTD = 1, 8, 32946, 50000
_THREADS = 2
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_THREADS, thread_name_prefix="maskbundle-tiff-read")
    return _POOL


def _forget_pool() -> None:
    # a forked child has the parent's pool object but none of its threads: start afresh
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def _decoder(compression: int) -> Callable[[bytes, memoryview], Any] | None:
    import imagecodecs

    if compression == _NONE:
        return None
    if compression in (_DEFLATE, _DEFLATE_OLD):  # both are zlib streams in TIFF
        return lambda data, out: imagecodecs.deflate_decode(data, out=out)
    if compression == _ZSTD:
        return lambda data, out: imagecodecs.zstd_decode(data, out=out)
    raise ValueError(compression)


class TiffTiles:
    """A read-only array over the pages of a tiled TIFF series (leading axes, Y, X).

    ``arr[key]`` takes an int or a step-1 slice per axis and returns a new native-order
    array of ``dtype``. ``close()`` closes the file.
    """

    def __init__(
        self,
        path: str,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        tile: tuple[int, int],
        compression: int,
        predictor: int,
        offsets: np.ndarray,
        counts: np.ndarray,
        byteorder: str,
    ) -> None:
        self.shape = shape
        self.dtype = dtype
        self._stored = dtype.newbyteorder(">" if byteorder == ">" else "<")  # the file's order
        self.ndim = len(shape)
        self._tile = tile
        self._tile_bytes = tile[0] * tile[1] * dtype.itemsize
        self._decode = _decoder(compression)
        self._predictor = predictor
        self._offsets = offsets  # (pages, tiles down * tiles across)
        self._counts = counts
        self._across = -(-shape[-1] // tile[1])
        self._name = os.path.basename(path)
        self._args = (path, shape, dtype, tile, compression, predictor, offsets, counts,
                      byteorder)
        self._fd: int | None = os.open(path, os.O_RDONLY)
        # closed when closed explicitly, or when the object goes (no descriptor leaks)
        self._closer = weakref.finalize(self, os.close, self._fd)

    def close(self) -> None:
        self._closer()
        self._fd = None

    def __reduce__(self) -> tuple[Any, ...]:
        # a Dask task on another process reopens the file there
        return (TiffTiles, self._args)

    def __getitem__(self, key: Sequence[int | slice]) -> np.ndarray:
        if len(key) != self.ndim:
            raise IndexError(f"{len(key)} indices for {self.ndim} axes")
        lead_ranges: list[range] = []
        for k, n in zip(key[:-2], self.shape[:-2], strict=True):
            lead_ranges.append(range(n)[k] if isinstance(k, slice) else range(k, k + 1))
        ys, xs = (range(n)[k] if isinstance(k, slice) else range(k, k + 1)
                  for k, n in zip(key[-2:], self.shape[-2:], strict=True))
        if ys.step != 1 or xs.step != 1:
            raise IndexError("only step-1 slices are served")
        planes = [int(np.ravel_multi_index(idx, self.shape[:-2])) if idx else 0
                  for idx in itertools.product(*lead_ranges)]
        out = np.empty((len(planes), len(ys), len(xs)), self.dtype)  # every pixel is set below
        th, tw = self._tile
        jobs = [
            (i, page, ty, tx)
            for i, page in enumerate(planes)
            for ty in range(ys.start // th, -(-ys.stop // th)) if ys
            for tx in range(xs.start // tw, -(-xs.stop // tw)) if xs
        ]

        def one(job: tuple[int, int, int, int]) -> None:
            i, page, ty, tx = job
            tile = self._read_tile(page, ty, tx)
            y0, x0 = ty * th, tx * tw
            sy = slice(max(ys.start, y0), min(ys.stop, y0 + th))
            sx = slice(max(xs.start, x0), min(xs.stop, x0 + tw))
            out[i, sy.start - ys.start : sy.stop - ys.start,
                sx.start - xs.start : sx.stop - xs.start] = tile[
                sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]

        if len(jobs) >= 4:
            list(_pool().map(one, jobs))
        else:
            for job in jobs:
                one(job)
        squeeze = tuple(a for a, k in enumerate(key) if not isinstance(k, slice))
        shape = [len(r) for r in lead_ranges] + [len(ys), len(xs)]
        return out.reshape(shape).squeeze(axis=squeeze) if squeeze else out.reshape(shape)

    def _read_tile(self, page: int, ty: int, tx: int) -> np.ndarray:
        th, tw = self._tile
        index = ty * self._across + tx
        offset, count = int(self._offsets[page, index]), int(self._counts[page, index])
        if count == 0:  # a tile never written reads as background, as tifffile does
            return np.zeros(self._tile, self.dtype)
        if self._fd is None:
            raise CorruptInputError(f"{self._name}: read after close")
        data = os.pread(self._fd, count, offset)
        where = f"{self._name}: stored tile {index} of page {page}"
        if len(data) != count:
            raise CorruptInputError(f"{where} runs past the end of the file; the file is truncated")
        buf = np.empty(self._tile_bytes, np.uint8)
        if self._decode is None:
            got = np.frombuffer(data, np.uint8)[: self._tile_bytes]
            buf[: got.size] = got
            size = got.size
        else:
            try:
                size = len(self._decode(data, buf.data))
            except Exception as exc:  # imagecodecs raises its own codec errors
                raise CorruptInputError(f"{where} cannot be decoded ({exc}); the file is damaged") from exc
        if size != self._tile_bytes:
            raise CorruptInputError(
                f"{where} decodes to {size} bytes, a tile is {self._tile_bytes}; the file is damaged"
            )
        tile = buf.view(self._stored).reshape(th, tw)
        if self._predictor == 2:  # horizontal differencing, per row of the tile
            tile = np.cumsum(tile, axis=1, dtype=tile.dtype)
        return tile


def tiff_tiles(path: str, level: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> TiffTiles | None:
    """A :class:`TiffTiles` over ``level`` (a tifffile series or level) when its layout is
    the common one, else None (the caller keeps tifffile's reader)."""
    pages = list(level.pages)
    if not pages or any(p is None for p in pages) or len(shape) < 2:
        return None
    key = pages[0].keyframe
    if (
        not key.is_tiled
        or key.samplesperpixel != 1
        or key.imagedepth != 1
        or key.tiledepth != 1
        or key.compression not in (_NONE, _DEFLATE, _DEFLATE_OLD, _ZSTD)
        or key.predictor not in (1, 2)
        or key.fillorder != 1
        or dtype.kind not in ("iuf" if key.predictor == 1 else "iu")
        or np.dtype(key.dtype) != dtype
        or (int(key.imagelength), int(key.imagewidth)) != shape[-2:]
        or len(pages) != math.prod(shape[:-2])
    ):
        return None
    tile = (int(key.tilelength), int(key.tilewidth))
    if tile[0] * tile[1] * dtype.itemsize > MAX_TILE_BYTES:
        return None  # the caller's own checks refuse it with their message
    n_tiles = -(-shape[-2] // tile[0]) * -(-shape[-1] // tile[1])
    offsets = np.zeros((len(pages), n_tiles), np.int64)
    counts = np.zeros((len(pages), n_tiles), np.int64)
    for i, page in enumerate(pages):
        if page.keyframe is not key and (
            page.keyframe.compression != key.compression or page.keyframe.predictor != key.predictor
        ):
            return None
        o, c = page.dataoffsets, page.databytecounts
        if len(o) != n_tiles or len(c) != n_tiles:
            return None
        offsets[i], counts[i] = o, c
    byteorder = pages[0].parent.byteorder
    return TiffTiles(path, shape, dtype.newbyteorder("="), tile, int(key.compression),
                     int(key.predictor), offsets, counts, byteorder)
