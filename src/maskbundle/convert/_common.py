"""Helpers shared by the readers: file checksums, provenance records, shapes, names.

Nothing here writes files.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..io.checksum import sha256_file
from ..model import PhysicalSize

__all__ = [
    "ascii_safe",
    "check_shape",
    "file_source",
    "image_shape",
    "jsonable",
    "renamed_keywords",
]

# Characters that do not survive ASCII-folding but have an obvious spelling.
_ASCII_SPELLING = {
    "µ": "u",
    "μ": "u",
    "²": "^2",
    "³": "^3",
    "°": "deg",
    "±": "+/-",
    "×": "x",
    "–": "-",
    "—": "-",
}


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of metadata: numpy scalars to Python, NaN/inf to None, arrays summarised.

    Small 1-D arrays (at most 64 items) become lists; larger arrays become a description
    ``{"shape": [...], "dtype": "..."}`` so provenance stays small.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    if isinstance(value, np.ndarray):
        if value.ndim <= 1 and value.size <= 64 and value.dtype.kind in "biufU":
            return [jsonable(v) for v in value.tolist()]
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return repr(value)


def file_source(
    path: str | os.PathLike[str], *, tool: str, fmt: str, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The provenance record of one input file: name, absolute path, size, SHA-256, tool."""
    p = Path(path)
    size = (
        sum(q.stat().st_size for q in p.rglob("*") if q.is_file()) if p.is_dir() else p.stat().st_size
    )
    return {
        "file": p.name,
        "path": str(p.resolve()),
        "size_bytes": size,
        "sha256": sha256_file(p),
        "tool": tool,
        "format": fmt,
        "tool_metadata": jsonable(dict(metadata or {})),
    }


def check_shape(shape: object, *, what: str) -> tuple[int, ...]:
    """Validate an image shape ``(Y, X)`` or ``(Z, Y, X)`` given by the user."""
    if shape is None:
        raise OptionError(
            f"{what}: the image shape is needed to rasterise polygons; pass shape=(Y, X) "
            "(rows, columns of the full-resolution image) or parent_image=",
            cli=f"{what}: the image shape is needed to rasterise polygons; give --shape Y X "
            "(rows, columns of the full-resolution image) or --parent IMAGE",
        )
    try:
        dims = tuple(int(s) for s in shape)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise OptionError(f"{what}: shape must be a tuple of integers, got {shape!r}") from None
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise OptionError(f"{what}: shape must be (Y, X) or (Z, Y, X) with sizes >= 1, got {shape!r}")
    return dims


def image_shape(
    shape: object, parent_image: str | os.PathLike[str] | None, *, what: str
) -> tuple[tuple[int, ...], PhysicalSize | None]:
    """The image shape from ``shape=`` or else the parent OME-TIFF (with its pixel size)."""
    if shape is None and parent_image is not None:
        from ..io.ometiff import read_parent_image

        parent = read_parent_image(Path(parent_image))
        dims: tuple[int, ...] = (parent.size_y, parent.size_x)
        if parent.size_z > 1:
            dims = (parent.size_z, *dims)
        return dims, parent.physical_size
    return check_shape(shape, what=what), None


def ascii_safe(text: str) -> str:
    """ASCII spelling of free text for table cells: µ -> u, ² -> ^2, accents dropped.

    Tabs and newlines become spaces, other control characters are removed, and a leading
    ``=``, ``+``, ``-`` or ``@`` (which spreadsheets run as a formula) is spelled out as a
    word (``-x`` -> ``minus x``).
    """
    s = "".join(_ASCII_SPELLING.get(ch, ch) for ch in text)
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")
    s = re.sub(r"[\t\r\n]+", " ", s)
    s = "".join(ch for ch in s if ch.isprintable())
    s = re.sub(r" {2,}", " ", s).strip()
    lead = {"=": "equals ", "+": "plus ", "-": "minus ", "@": "at "}
    while s and s[0] in lead:
        s = lead[s[0]] + s[1:].lstrip()
    return s


def renamed_keywords(
    function: str, given: dict[str, Any], renames: Mapping[str, tuple[str, Any, Any]]
) -> dict[str, Any]:
    """The values of old keyword spellings in ``given``, keyed by their new names.

    ``renames`` maps each old keyword to ``(new keyword, its value, its default)``. Each
    old keyword used warns (DeprecationWarning); giving both spellings (the new one not
    at its default), or a keyword that was never a parameter, raises TypeError as Python
    would.
    """
    out: dict[str, Any] = {}
    for old, (new, new_value, default) in renames.items():
        if old not in given:
            continue
        if new_value != default:
            raise TypeError(f"{function}() got {new}= and its old spelling {old}=; give {new}=")
        warnings.warn(f"{function}({old}=...) is deprecated; use {new}=", DeprecationWarning,
                      stacklevel=3)
        out[new] = given.pop(old)
    if given:
        raise TypeError(f"{function}() got an unexpected keyword argument {next(iter(given))!r}")
    return out
