"""File checksums for provenance: the SHA-256 of an input file or directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["sha256_file"]


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (streamed; constant memory).

    For a directory (a zarr store): SHA-256 over ``relative/path NUL sha256(file) LF``
    of every file, in sorted path order.
    """
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{sha256_file(f)}\n".encode())
        return h.hexdigest()
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
