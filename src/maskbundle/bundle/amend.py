"""One way to amend an existing bundle: locate, stage, check, merge provenance, commit.

``add_adjacency`` and ``add_meshes`` (and whatever adds files next) do the same five
steps through this module:

1. :func:`locate_bundle` -- the dataset directory and its one OME-TIFF; stages left by
   a killed amend are finished (or removed) first;
2. :func:`read_masks` -- the masks' relabelled labels and pixel size, read once;
3. the caller computes its new files in memory and describes each as an
   :class:`AmendFile` (target, writer, check);
4. :func:`commit_amendment` -- refuses existing targets unless ``overwrite``, writes
   every file into one stage, runs each file's check on the *staged* file (only what
   changed is re-validated: the checks get the Object IDs already in memory, no second
   pass over the pixels), merges the caller's provenance section into
   ``derived/extras/provenance.json`` and moves everything into place together (a kill
   during the moves is finished by the next run: :mod:`maskbundle.io.staging`);
5. the caller returns a :class:`~.result.BundleResult`.

A failed check raises :class:`~maskbundle.errors.BundleInvalidError` and nothing moves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleInvalidError, CorruptInputError, OptionError, OutputExistsError, Report
from ..io.ometiff import read_label_ome_tiff
from ..io.staging import clear_stale_stages, staged_files
from ..io.tables import write_json
from ..model import PhysicalSize
from . import layout

__all__ = [
    "AmendFile",
    "BundleMasks",
    "commit_amendment",
    "locate_bundle",
    "read_masks",
    "refuse_existing_targets",
    "renamed_keyword",
    "select_masks",
]


def locate_bundle(path: str | Path) -> Path:
    """The OME-TIFF of the bundle at ``path``; finishes a killed amend of it first."""
    root = Path(path)
    clear_stale_stages(root / layout.DERIVED_EXTRAS)
    seg_dir = root / layout.SEG_DIR
    found = sorted(seg_dir.glob(f"*{layout.OME_SUFFIX}")) if seg_dir.is_dir() else []
    if len(found) != 1:
        raise CorruptInputError(
            f"{root} is not a bundle dataset directory: expected exactly one "
            f"{layout.SEG_DIR}/*{layout.OME_SUFFIX}, found {len(found)}"
        )
    return found[0]


@dataclass(frozen=True)
class BundleMasks:
    """The masks of a bundle (or label file) as an amend needs them."""

    names: list[str]
    labels: list[np.ndarray]  # (Y, X) or (Z, Y, X) per mask, relabelled 1..N
    physical_size: PhysicalSize | None
    is_3d: bool


def read_masks(image_path: Path) -> BundleMasks:
    """Every channel of a bundle's OME-TIFF, read once."""
    image = read_label_ome_tiff(image_path)
    arrays = [lab[0] if lab.shape[0] == 1 else lab for lab in image.labels]
    return BundleMasks(list(image.channel_names), arrays, image.physical_size, image.is_3d)


def select_masks(
    names: Sequence[str], masks: str | Sequence[str] | None, where: Path
) -> list[tuple[int, str]]:
    """(channel, name) of the requested masks, default every mask, in request order."""
    if masks is None:
        return list(enumerate(names))
    wanted = [masks] if isinstance(masks, str) else list(masks)
    out = []
    for m in wanted:
        if m not in names:
            raise OptionError(f"mask {m!r} is not a channel of {where}; its masks are {list(names)}")
        out.append((list(names).index(m), m))
    return out


@dataclass(frozen=True)
class AmendFile:
    """One file an amend adds or replaces.

    ``write(path)`` writes the content to ``path`` (a staging path) and may return a
    provenance entry; ``check(path)`` returns the problems of the written file (empty
    when it is fine) under the validator code ``code``.
    """

    target: Path
    write: Callable[[Path], Any]
    check: Callable[[Path], list[str]] | None = None
    code: str = ""


def refuse_existing_targets(targets: Sequence[Path], overwrite: bool) -> None:
    """Refuse the whole amend when one target exists and ``overwrite`` is False."""
    for target in targets:
        if target.exists() and not overwrite:
            raise OutputExistsError(
                f"{target} already exists; pass overwrite=True to replace it",
                cli=f"{target} already exists; add --overwrite to replace it",
            )


def _check_staged(
    files: Sequence[AmendFile], staged: Mapping[Path, Path], root: Path, report: Report
) -> None:
    for f in files:
        if f.check is None or not staged[f.target].exists():
            continue
        location = f.target.relative_to(root).as_posix() if f.target.is_relative_to(
            root) else f.target.name
        problems = f.check(staged[f.target])
        for p in problems:
            report.add(location, f.code, p)
        if not problems:
            report.passed(location, f.code, "the file written passes its rules")
    if not report.ok:
        raise BundleInvalidError(
            "the files written fail validation, nothing was changed: "
            + "; ".join(f"{e.location}: {e.code} {e.message}" for e in report.errors[:5])
        )


def commit_amendment(
    root: Path,
    files: Sequence[AmendFile],
    *,
    section: str | None,
    merge: Callable[[Any, Mapping[Path, Any]], Any] | None = None,
    stage_dir: Path | None = None,
    validate: bool = True,
) -> tuple[dict[Path, Any], Report | None]:
    """Write ``files`` into one stage, check them, merge provenance, move all into place.

    ``merge(old_section, entries)`` returns the new ``section`` of provenance.json from
    its old value and what each ``write`` returned (by target). Without ``section``
    (files beside a label file) provenance is left alone. Returns the entries and the
    report of the checks (None when ``validate`` is False).
    """
    entries: dict[Path, Any] = {}
    report = Report(str(root)) if validate else None
    with staged_files(stage_dir or root / layout.DERIVED_EXTRAS) as stage:
        staged = {f.target: stage.path(f.target) for f in files}
        for f in files:
            entries[f.target] = f.write(staged[f.target])
        if report is not None:
            _check_staged(files, staged, root, report)
        if section is not None and merge is not None:
            prov_path = root / layout.PROVENANCE
            provenance: dict[str, Any] = (
                layout.read_provenance(prov_path) if prov_path.is_file() else {})
            provenance[section] = merge(provenance.get(section), entries)
            write_json(stage.path(prov_path), provenance)
        for f in files:  # nothing written (an empty mask's mesh): nothing to move
            if not staged[f.target].exists():
                stage.targets.pop(f.target)
    return entries, report


def renamed_keyword(function: str, old: str, new: str) -> None:
    """Warn once per call that ``old`` keyword(s) of ``function`` are now ``new``."""
    warnings.warn(
        f"{function}({old}=...) is deprecated; use {new} (the name write_segmentation_bundle "
        "uses)", DeprecationWarning, stacklevel=4,
    )
