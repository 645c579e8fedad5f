"""Staged writes: build outputs in a stage directory, move them into place only when complete.

A stage is a hidden directory ``.<label>.staging-<pid>-<token>`` holding a marker
``stage.json`` (owner pid and host, creation time, state, targets) and the new files
under ``new/``. Nothing touches a target until every file is written. Then the marker
is switched to ``committing`` (one atomic rename) and the files are moved:

- a file replaces its target with one ``os.replace`` (atomic, no moment without it);
- a directory is swapped with ``renameat2(RENAME_EXCHANGE)`` where Linux offers it
  (atomic); elsewhere the old directory is moved into the stage and the new one moved in.

A killed run leaves its stage behind. The next staged write into the same directory
finds stages whose owner is gone (same host and a dead pid, or older than
:data:`STALE_AFTER_S`), finishes the moves of a ``committing`` one (roll forward: every
file was complete) and deletes the rest. Only directories with our name pattern and a
valid marker are touched.

An existing target is refused unless ``overwrite=True``; callers that replace
directories pass a ``guard`` that refuses anything they did not write.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MaskBundleError, OutputExistsError, OutputWriteError, UnsafeOverwriteError

__all__ = [
    "STALE_AFTER_S",
    "Stage",
    "clear_stale_stages",
    "is_stage_dir",
    "refuse_unsafe_target",
    "remove_path",
    "staged_files",
    "staged_path",
]

MARKER = "stage.json"
STALE_AFTER_S = 2 * 24 * 3600  # a stage this old is stale whatever its pid says
_STAGE_RE = re.compile(r"^\.(?P<label>.*)\.staging-(?P<pid>\d+)-(?P<token>[0-9a-f]{12})$")
NAME_MAX = 255  # bytes of one path component on the usual file systems
# errno values that mean "the file system refused the write", mapped to one-line errors
_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file is larger than the file system allows (or the disk is full)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "a file name is longer than the file system allows (255 bytes)",
    errno.ENOTDIR: "a parent of the path is a file, not a directory",
    errno.EISDIR: "it is a directory",
}


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree; a missing path is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_error(exc: OSError, where: Path | str) -> OutputWriteError:
    """One-line error for a write the file system refused (disk full, read-only ...)."""
    why = _WRITE_ERRNOS.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputWriteError(f"cannot write {where}: {why}; nothing was written there")


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def refuse_existing(target: Path, overwrite: bool, *, cli_flag: str = "--overwrite") -> None:
    if _exists(target) and not overwrite:
        raise OutputExistsError(
            f"{target} already exists; choose another path or pass overwrite=True to replace it",
            cli=f"{target} already exists; choose another path or add {cli_flag} to replace it",
        )


def refuse_unsafe_target(target: Path, inputs: Sequence[Path | str] = ()) -> None:
    """Refuse a target whose replacement would delete the working directory, one of its
    parents, the home directory or file system root, or one of ``inputs``."""
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    try:
        home: Path | None = Path.home().resolve()
    except (RuntimeError, KeyError):  # no home directory known
        home = None
    if resolved == cwd or resolved in cwd.parents or resolved in (home, Path(resolved.anchor)):
        raise UnsafeOverwriteError(
            f"{target} is the working directory, one of its parents, the home directory or "
            "the root; write the output into a new directory instead"
        )
    for item in inputs:
        p = Path(item).resolve()
        if p == resolved or resolved in p.parents:
            raise UnsafeOverwriteError(
                f"{target} holds the input {item}; write the output to another path "
                "(replacing it would delete the input)"
            )


def check_name_length(target: Path) -> None:
    if len(target.name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise OutputWriteError(
            f"the output name {target.name[:40]}... is {len(target.name.encode())} bytes; file "
            f"systems allow {NAME_MAX}: choose a shorter name"
        )


# --- atomic directory exchange -------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when the platform or file system cannot."""
    if _RENAMEAT2 is None:
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _between_moves() -> None:
    """Hook between moving an old directory aside and moving the new one in (tests kill here)."""


# --- stages ----------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _write_marker(stage: Path, data: dict[str, Any]) -> None:
    tmp = stage / (MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, stage / MARKER)  # the state changes in one step


def _read_marker(stage: Path) -> dict[str, Any] | None:
    """The marker of a stage directory of ours, or None when it is not one."""
    if not _STAGE_RE.match(stage.name) or stage.is_symlink() or not stage.is_dir():
        return None
    try:
        data = json.loads((stage / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("maskbundle_stage") != 1:
        return None
    return data


def is_stage_dir(path: Path) -> bool:
    """True for a stage directory written by maskbundle (name pattern and marker)."""
    return _read_marker(path) is not None


def _safe_rel(rel: Any, *, payload: bool = False) -> bool:
    """What a marker may name: payloads inside the stage; targets beside the stage or in a
    sibling directory (``../segmentation_masks/x.csv`` from ``derived/extras``), never
    further: a marker in a downloaded folder must not move files anywhere else."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or "\\" in rel:
        return False
    parts = Path(rel).parts
    if payload:
        return ".." not in parts and "." not in parts
    if len(parts) == 1:
        return parts[0] not in ("..", ".")
    return len(parts) == 3 and parts[0] == ".." and parts[1] not in ("..", ".") and parts[
        2] not in ("..", ".")


class Stage:
    """A stage directory: ``path(target)`` gives where to write each target's new content."""

    def __init__(self, parent: Path, label: str) -> None:
        # the directory name must stay within NAME_MAX bytes whatever the target's name
        label = label.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
        token = uuid.uuid4().hex[:12]
        self.dir = parent / f".{label}.staging-{os.getpid()}-{token}"
        self.targets: dict[Path, Path] = {}  # target -> payload path
        self.dir.mkdir(parents=False)
        self._marker: dict[str, Any] = {
            "maskbundle_stage": 1,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "created": time.time(),
            "state": "writing",
            "targets": [],
        }
        _write_marker(self.dir, self._marker)

    def path(self, target: Path) -> Path:
        """The path to write ``target``'s new content to (same name, inside the stage)."""
        if target in self.targets:
            return self.targets[target]
        check_name_length(target)
        slot = self.dir / "new" / str(len(self.targets))
        slot.mkdir(parents=True)
        payload = slot / target.name
        self.targets[target] = payload
        return payload

    def commit(self, before: Callable[[], None] | None = None) -> None:
        """Record the moves, then move every payload to its target."""
        entries = []
        for target, payload in self.targets.items():
            if not _exists(payload):
                raise FileNotFoundError(f"nothing was written to the staging path {payload}")
            st = payload.lstat()
            entries.append({
                "rel": os.path.relpath(target, self.dir.parent),
                "payload": os.path.relpath(payload, self.dir),
                "ino": [st.st_dev, st.st_ino],
            })
        if before is not None:
            before()
        self._marker.update(state="committing", targets=entries)
        _write_marker(self.dir, self._marker)
        _roll_forward(self.dir, self._marker)

    def discard(self) -> None:
        remove_path(self.dir)


def _move_into_place(payload: Path, target: Path, old: Path, ino: list[int] | None) -> None:
    """Move ``payload`` to ``target``; a directory target is swapped (old one into ``old``)."""
    if not _exists(payload):
        return  # already moved
    st = payload.lstat()
    if ino is not None and [st.st_dev, st.st_ino] != list(ino):
        return  # the exchange happened: this is the old directory
    if payload.is_dir() and not payload.is_symlink() and _exists(target):
        if target.is_dir() and not target.is_symlink() and _exchange(payload, target):
            return
        old.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, old)
        _between_moves()
        try:
            os.replace(payload, target)
        except BaseException:
            os.replace(old, target)  # the stage is deleted next: never with the old inside
            raise
        return
    os.replace(payload, target)


def _roll_forward(stage: Path, marker: dict[str, Any]) -> None:
    for i, entry in enumerate(marker.get("targets") or []):
        if not isinstance(entry, dict):
            continue
        rel, payload_rel = entry.get("rel"), entry.get("payload")
        if not (_safe_rel(rel) and _safe_rel(payload_rel, payload=True)):
            continue
        ino = entry.get("ino")
        _move_into_place(
            stage / str(payload_rel), stage.parent / str(rel), stage / "old" / str(i) / "x",
            ino if isinstance(ino, list) else None,
        )
    remove_path(stage)


def clear_stale_stages(directory: Path) -> list[Path]:
    """Finish or delete the stages in ``directory`` left by killed runs; return them."""
    cleared: list[Path] = []
    try:
        entries = list(directory.iterdir()) if directory.is_dir() else []
    except OSError:
        return cleared
    host = socket.gethostname()
    for entry in entries:
        marker = _read_marker(entry)
        if marker is None:
            continue
        pid, created = marker.get("pid"), marker.get("created")
        if not isinstance(pid, int) or not isinstance(created, int | float):
            continue
        dead = marker.get("host") == host and not _pid_alive(pid)
        if not (dead or time.time() - created > STALE_AFTER_S):
            continue
        if marker.get("state") == "committing":
            _roll_forward(entry, marker)
        else:
            remove_path(entry)
        cleared.append(entry)
    return cleared


def _map_os_errors(where: Path) -> contextlib.AbstractContextManager[None]:
    @contextmanager
    def cm() -> Iterator[None]:
        try:
            yield
        except MaskBundleError:
            raise
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS:
                raise write_error(exc, where) from exc
            raise

    return cm()


@contextmanager
def staged_files(directory: Path | str, *, label: str = "maskbundle") -> Iterator[Stage]:
    """One stage in ``directory`` for several targets that move into place together.

    Write each target's content to ``stage.path(target)``; on leaving the block every
    file is moved (targets lie in ``directory`` or up to two levels above it). A kill
    during the moves is finished by the next run (:func:`clear_stale_stages`).
    """
    directory = Path(directory)
    with _map_os_errors(directory):
        directory.mkdir(parents=True, exist_ok=True)
        clear_stale_stages(directory)
        stage = Stage(directory, label)
        try:
            yield stage
            stage.commit()
        finally:
            stage.discard()


@contextmanager
def staged_path(
    target: Path | str,
    *,
    overwrite: bool = False,
    guard: Callable[[Path], None] | None = None,
    inputs: Sequence[Path | str] = (),
) -> Iterator[Path]:
    """Yield a fresh path for ``target``'s content; on success move it to ``target``.

    ``guard(target)`` runs before anything is written and again just before the move
    when the target exists; it raises to refuse replacing what is there. ``inputs`` are
    paths the output must not hold or be (see :func:`refuse_unsafe_target`).
    """
    target = Path(target)
    check_name_length(target)
    with _map_os_errors(target):
        clear_stale_stages(target.parent)  # may finish a killed swap of this very target
    if _exists(target):
        refuse_unsafe_target(target, inputs)
        if guard is not None:
            guard(target)
    refuse_existing(target, overwrite)

    def recheck() -> None:
        if _exists(target):  # it may have appeared meanwhile
            refuse_unsafe_target(target, inputs)
            if guard is not None:
                guard(target)
            refuse_existing(target, overwrite)

    with _map_os_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Stage(target.parent, target.name)
        try:
            yield stage.path(target)
            stage.commit(before=recheck)
        finally:
            stage.discard()
