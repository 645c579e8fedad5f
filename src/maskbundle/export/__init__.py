"""Exports of a read bundle to the formats analysis tools load, behind one registry.

``EXPORTERS`` maps a format name (the CLI's ``--to`` value) to an :class:`Exporter`; a new
format registers itself with :func:`register` and appears in ``maskbundle export --to``.
Optional dependencies are imported only when their format is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OptionError
from ..io.staging import staged_path

if TYPE_CHECKING:
    from ..bundle.read import Bundle

__all__ = ["EXPORTERS", "Exporter", "export_bundle", "register"]


@dataclass(frozen=True)
class Exporter:
    """One export format.

    ``write(bundle, path, masks)`` creates the file or directory ``path`` (a staging path;
    it is moved into place afterwards). ``masks`` is None for every mask.

    Examples
    --------
    >>> from maskbundle.export import EXPORTERS
    >>> EXPORTERS["h5ad"].one_mask, EXPORTERS["h5mu"].one_mask
    (True, False)
    """

    name: str
    help: str
    write: Callable[[Bundle, Path, Sequence[str] | None], None]
    one_mask: bool = False


EXPORTERS: dict[str, Exporter] = {}


def register(exporter: Exporter) -> Exporter:
    """Add a format (its name must be new).

    Examples
    --------
    A new format registers itself and ``maskbundle export --to`` offers it:

    >>> from maskbundle.export import EXPORTERS, Exporter, register
    >>> def write_ids(bundle, path, masks):
    ...     path.write_text(" ".join(bundle.mask_names))
    >>> _ = register(Exporter("mask-list", "the mask names, one a line", write_ids))
    >>> "mask-list" in EXPORTERS
    True
    >>> del EXPORTERS["mask-list"]
    """
    if exporter.name in EXPORTERS:
        raise OptionError(f"export format {exporter.name!r} is registered twice")
    EXPORTERS[exporter.name] = exporter
    return exporter


def _write_h5ad(bundle: Bundle, path: Path, masks: Sequence[str] | None) -> None:
    from .scverse import to_anndata

    to_anndata(bundle, masks[0] if masks else None).write_h5ad(path)


def _write_h5mu(bundle: Bundle, path: Path, masks: Sequence[str] | None) -> None:
    from .scverse import mudata_writing, to_mudata

    mdata = to_mudata(bundle, masks)
    with mudata_writing():
        mdata.write_h5mu(path)


def _write_spatialdata(bundle: Bundle, path: Path, masks: Sequence[str] | None) -> None:
    from .scverse import mudata_writing
    from .spatial import to_spatialdata

    sdata = to_spatialdata(bundle, masks)
    with mudata_writing():
        sdata.write(path)


register(Exporter("h5ad", "one mask's table as AnnData (.h5ad; needs maskbundle[anndata])",
                  _write_h5ad, one_mask=True))
register(Exporter("h5mu", "every mask's table as MuData in HuBMAP's layout (.h5mu; needs "
                  "maskbundle[anndata])", _write_h5mu))
register(Exporter("spatialdata", "labels and tables as a SpatialData zarr store (needs "
                  "maskbundle[spatialdata])", _write_spatialdata))


def export_bundle(
    bundle: Bundle,
    out: str | Path,
    *,
    to: str,
    masks: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``bundle`` as format ``to`` at ``out`` (staged, moved into place when complete).

    Raises OutputExistsError when ``out`` exists and ``overwrite`` is false, OptionError
    for an unknown format or mask, MissingDependencyError when the format's extra is not
    installed.

    Examples
    --------
    >>> from maskbundle.demo import example_bundle
    >>> import pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> ds = example_bundle(tmp / "ds")  # three cells in 32 x 32 pixels
    >>> import anndata
    >>> from maskbundle import read_bundle
    >>> from maskbundle.export import export_bundle
    >>> with read_bundle(ds) as bundle:
    ...     out = export_bundle(bundle, tmp / "cells.h5ad", to="h5ad")
    >>> anndata.read_h5ad(out).obs_names.tolist()
    ['cells-1', 'cells-2', 'cells-3']
    """
    exporter = EXPORTERS.get(to)
    if exporter is None:
        raise OptionError(f"unknown export format {to!r}; choose one of {sorted(EXPORTERS)}")
    chosen = list(masks) if masks else None
    for m in chosen or []:
        if m not in bundle.mask_names:
            raise OptionError(f"no mask {m!r} in {bundle.path}; masks: {list(bundle.mask_names)}")
    if exporter.one_mask and len(chosen or bundle.mask_names) != 1:
        raise OptionError(
            f"--to {to} holds one mask; {bundle.path} has {list(bundle.mask_names)}: "
            "name one with masks= / --only (or export all with --to h5mu)"
        )
    target = Path(out)
    with staged_path(target, overwrite=overwrite) as stage:
        exporter.write(bundle, stage, chosen)
    return target
