"""Staged writes: build an output beside its target, move it into place only when complete.

On any error the staging path is removed, so nothing is left at the target or beside it.
An existing target is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputExistsError

__all__ = ["remove_path", "staged_path"]


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree; a missing path is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def refuse_existing(target: Path, overwrite: bool) -> None:
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputExistsError(
            f"{target} already exists; choose another path or pass overwrite=True "
            "(--overwrite on the command line) to replace it"
        )


@contextmanager
def staged_path(target: Path | str, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh path beside ``target``; on success move it to ``target``.

    The caller creates a file or a directory at the yielded path. The final move is an
    atomic rename on the same file system; a replaced target is renamed aside first and
    removed only after the new one is in place.
    """
    target = Path(target)
    refuse_existing(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    stage = target.with_name(f".{target.name}.staging-{token}")
    try:
        yield stage
        if not stage.exists():
            raise FileNotFoundError(f"nothing was written to the staging path {stage}")
        refuse_existing(target, overwrite)  # it may have appeared meanwhile
        old = target.with_name(f".{target.name}.replaced-{token}")
        if target.exists() or target.is_symlink():
            os.replace(target, old)
        try:
            os.replace(stage, target)
        except BaseException:
            if old.exists():
                os.replace(old, target)
            raise
        remove_path(old)
    finally:
        remove_path(stage)
