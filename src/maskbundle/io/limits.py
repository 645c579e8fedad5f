"""Size checks made before a hostile file can make us allocate or inflate anything.

A file may declare any size in a few bytes (an ``.npy`` header, TIFF tags, a zip
directory). Each reader compares what is declared with what the file can hold and with
the memory available, and raises :class:`CorruptInputError` naming both numbers.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile

from ..errors import CorruptInputError

# tifffile logs a warning per damaged tag; with no logging configured Python prints them
# to stderr beside our one-line error. A NullHandler keeps them out of the terminal and
# still lets an application that configures logging see them.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

__all__ = [
    "MAX_INFLATE_RATIO",
    "MAX_OME_XML",
    "MAX_TILE_BYTES",
    "MAX_ZIP_RATIO",
    "available_memory",
    "check_allocation",
    "check_zip_member",
]

# Sheet XML deflates 5-30:1 (every cell spells its own reference); far more is a bomb.
# (Not used for .npz: an all-zero label array deflates ~1020:1 legitimately.)
MAX_ZIP_RATIO = 200
# any TIFF codec we decode (zstd blocks, LZW, deflate, packbits) inflates less than this
MAX_INFLATE_RATIO = 100_000
# a zip member (an .npz array, an .xlsx sheet) is never larger than this
MAX_ZIP_MEMBER = 4 << 30
# characters of OME-XML parsed into objects (one TiffData per plane: ~100 bytes each, so
# this leaves room for 500,000 planes); longer text is refused before any parser sees it
MAX_OME_XML = 64 << 20


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_allocation(nbytes: int, stored: int, what: str) -> None:
    """Refuse to allocate ``nbytes`` decoded from ``stored`` bytes of a file.

    Raises when more than the available memory is asked for, or when ``stored`` bytes
    cannot inflate to ``nbytes`` with any codec (over :data:`MAX_INFLATE_RATIO`:1).
    """
    if nbytes > available_memory():
        raise CorruptInputError(
            f"{what}: declares {nbytes} bytes of pixels, more than the "
            f"{available_memory()} bytes of memory available; the header is damaged or the "
            "image must be read in tiles"
        )
    if nbytes > (1 << 20) and nbytes > MAX_INFLATE_RATIO * max(stored, 1):
        raise CorruptInputError(
            f"{what}: declares {nbytes} bytes of pixels but stores only {stored} bytes; "
            "the header is damaged (no codec compresses that much)"
        )


def check_zip_member(
    info: zipfile.ZipInfo,
    what: str,
    *,
    limit: int = MAX_ZIP_MEMBER,
    max_ratio: float | None = MAX_ZIP_RATIO,
) -> None:
    """Refuse a zip member that inflates beyond ``limit`` bytes (or the memory available)
    or by more than ``max_ratio``:1. zipfile stops reading a member at the size its
    directory entry gives, so checking that size bounds what is inflated."""
    limit = min(limit, available_memory())
    if info.file_size > limit:
        raise CorruptInputError(
            f"{what}: inflates to {info.file_size} bytes, more than the {limit}-byte limit"
        )
    if (
        max_ratio is not None
        and info.file_size > (1 << 20)
        and info.file_size > max_ratio * max(info.compress_size, 1)
    ):
        raise CorruptInputError(
            f"{what}: {info.compress_size} compressed bytes inflate to {info.file_size} "
            f"(over {max_ratio:g}:1): a zip bomb, not a table"
        )


def prod(shape: tuple[int, ...]) -> int:
    return math.prod(int(n) for n in shape)


def check_tiff_pages(pages: list[object], file_size: int, what: str) -> None:
    """Refuse TIFF pages whose declared pixels cannot come from the file (see
    :func:`check_allocation`); ``pages`` are tifffile pages (or keyframes) to be decoded."""
    nbytes = 0
    stored = 0
    for page in pages:
        shape = tuple(getattr(page, "shape", ()))
        itemsize = int(getattr(getattr(page, "dtype", None), "itemsize", 1) or 1)
        nbytes += prod(shape) * itemsize
        stored += sum(int(n) for n in (getattr(page, "databytecounts", None) or ()))
    check_allocation(nbytes, min(stored, file_size), what)


def check_tiff_level0(series: object, path: str | os.PathLike[str], what: str) -> None:
    """:func:`check_tiff_pages` for level 0 of a tifffile series, before ``asarray``."""
    levels = getattr(series, "levels", None) or [series]
    pages = [p for p in getattr(levels[0], "pages", []) if p is not None]
    check_tiff_pages(pages, os.path.getsize(path), what)


MAX_IFDS = 1_000_000
# one stored tile/chunk larger than this is refused: decoding it alone could exhaust memory
MAX_TILE_BYTES = 1 << 30


def check_tiff_structure(path: str | os.PathLike[str], what: str) -> None:
    """Walk the chain of image file directories before tifffile does, refusing a chain
    that loops (a damaged next-IFD offset pointing back made tifffile read the same page
    for ever) or that is longer than :data:`MAX_IFDS`. Anything else is left to tifffile."""
    import struct

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(16)
            if len(head) < 8 or head[:2] not in (b"II", b"MM"):
                return  # not a TIFF: tifffile says so in its own words
            e = "<" if head[:2] == b"II" else ">"
            version = struct.unpack(e + "H", head[2:4])[0]
            if version == 43:
                if len(head) < 16:
                    return
                count_fmt, count_size, entry, off_fmt = "Q", 8, 20, "Q"
                offset = struct.unpack(e + "Q", head[8:16])[0]
            else:
                count_fmt, count_size, entry, off_fmt = "H", 2, 12, "I"
                offset = struct.unpack(e + "I", head[4:8])[0]
            seen: set[int] = set()
            while 0 < offset < size:
                if offset in seen:
                    raise CorruptInputError(
                        f"{what}: the TIFF's chain of image directories loops back to offset "
                        f"{offset}; the file is damaged"
                    )
                if len(seen) >= MAX_IFDS:
                    raise CorruptInputError(f"{what}: more than {MAX_IFDS} image directories")
                seen.add(offset)
                fh.seek(offset)
                raw = fh.read(count_size)
                if len(raw) < count_size:
                    return
                n = struct.unpack(e + count_fmt, raw)[0]
                fh.seek(offset + count_size + n * entry)
                raw = fh.read(struct.calcsize(off_fmt))
                if len(raw) < struct.calcsize(off_fmt):
                    return
                offset = struct.unpack(e + off_fmt, raw)[0]
    except OSError as exc:
        raise CorruptInputError(f"{what}: cannot be read ({exc})") from exc


def check_npy_file(path: str | os.PathLike[str], what: str) -> None:
    """Refuse a plain ``.npy`` whose header declares more (or fewer) bytes than follow it,
    before ``np.load`` allocates the declared array."""
    from numpy.lib import format as npformat

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            version = npformat.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = npformat.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = npformat.read_array_header_2_0(fh)
            else:
                return  # np.load names the version it cannot read
            start = fh.tell()
    except Exception as exc:  # ValueError, SyntaxError, tokenize.TokenError ...
        raise CorruptInputError(f"{what}: not a readable .npy file ({exc})"[:400]) from exc
    if dtype.hasobject:
        return  # np.load(allow_pickle=False) refuses it without allocating
    need = prod(tuple(shape)) * dtype.itemsize
    if need != size - start:
        raise CorruptInputError(
            f"{what}: the .npy header declares shape {tuple(shape)} of {dtype} ({need} "
            f"bytes) but the file holds {size - start} bytes of data; the file is truncated "
            "or its header is damaged"
        )
