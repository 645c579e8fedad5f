"""The one result type of the bundle writers: :class:`BundleResult`.

``write_segmentation_bundle``, ``add_adjacency`` and ``add_meshes`` all return it. It
stands for the directory written (``os.PathLike``: ``open``, ``Path(result)``,
``result / "derived"``, ``result == Path(...)`` and the read-only ``Path`` API such as
``result.name`` or ``result.rglob("*")`` all work), so code that took the ``Path``
``write_segmentation_bundle`` used to return keeps working, and it carries what the
call wrote: the files, the provenance sections and, for an amend, the validation of
what changed.

Why not a ``Path`` subclass: pathlib's subclassing hooks differ between Python 3.11
(private ``_from_parts``) and 3.12+ (``with_segments``); every derived path
(``result / "x"``, ``glob``) would be a ``BundleResult`` without its fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Report

__all__ = ["BundleResult"]


@dataclass(frozen=True, eq=False)
class BundleResult(os.PathLike[str]):
    """What a bundle writer wrote; behaves as the path of the directory it wrote into.

    Attributes
    ----------
    path : Path
        The dataset directory (for adjacency of a label file: the output directory).
    written : tuple of Path
        Every file this call wrote, in the order written.
    provenance : mapping
        The provenance.json sections this call wrote: everything for a new bundle,
        ``{"adjacency": {mask: {kind: entry}}}`` or ``{"meshes": {...}}`` for an amend.
    meshes : mapping of str to Path or None
        The mesh file of each meshed mask; None for an empty mask (no file, a note in
        provenance).
    report : Report or None
        Validation of what the call changed (amends), None when not validated.

    Examples
    --------
    >>> from maskbundle.demo import example_bundle
    >>> import pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> ds = example_bundle(tmp / "ds")  # three cells in 32 x 32 pixels
    >>> ds == tmp / "ds", ds.name
    (True, 'ds')
    >>> sorted(p.name for p in ds.written)[:2]
    ['cells-objects.tsv', 'contributors.tsv']
    >>> ds.report is None  # a new bundle is validated by validate_bundle, not here
    True
    """

    path: Path
    written: tuple[Path, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    meshes: Mapping[str, Path | None] = field(default_factory=dict)
    report: Report | None = None

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return self.path / other

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BundleResult):
            return self.path == other.path
        if isinstance(other, os.PathLike):
            return self.path == Path(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        edges = {f"{m}/{k}": e.get("n_edges")
                 for m, ks in dict(self.provenance.get("adjacency") or {}).items()
                 for k, e in dict(ks).items() if isinstance(e, Mapping)}
        return (f"BundleResult({str(self.path)!r}, written={len(self.written)} files"
                f"{f', edges={edges}' if edges else ''}, report={self.report!r})")

    def __getattr__(self, name: str) -> Any:
        # the read-only Path API (name, exists, rglob, read_bytes ...) of the directory
        if name.startswith("_"):
            raise AttributeError(name)
        path = vars(self).get("path")
        if path is None:
            raise AttributeError(name)
        return getattr(path, name)
