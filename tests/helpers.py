"""Test helpers importable from every test module (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# ../shared relative to the repo root; MASKBUNDLE_SHARED points elsewhere (worktrees)
CHECKER = Path(os.environ.get("MASKBUNDLE_SHARED", REPO.parent / "shared")) / "tools" / "check_bundle.py"
DOI = "10.17504/protocols.io.example"
# Comparisons with the reference checker that could not run in the current test. The
# test's own assertions still run; conftest reports the test as skipped at teardown.
NOT_COMPARED: list[str] = []


def reference_missing(what: str) -> None:
    """Record a comparison that needs ../shared (the test goes on with its own checks)."""
    NOT_COMPARED.append(what)


def run_reference_checker(
    dataset: Path, *extra: str
) -> subprocess.CompletedProcess[str] | None:
    """Run ../shared/tools/check_bundle.py on ``dataset``; None (recorded) when absent."""
    if not CHECKER.is_file():
        reference_missing(f"check_bundle.py on {Path(dataset).name}")
        return None
    return subprocess.run(
        [sys.executable, str(CHECKER), str(dataset), "--quiet", *extra],
        capture_output=True,
        text=True,
        check=False,
    )


def expect_reference(dataset: Path, *extra: str, ok: bool = True) -> None:
    """The reference checker passes (``ok``) or fails ``dataset``; recorded when absent."""
    res = run_reference_checker(dataset, *extra)
    if res is not None:
        assert (res.returncode == 0) == ok, res.stdout + res.stderr


def expect_verdict(verdict: bool | None, ok: bool) -> None:
    """A verdict computed earlier (None when the checker is absent: recorded)."""
    if verdict is None:
        reference_missing("check_bundle.py verdict")
        return
    assert verdict is ok


def fill_disk_after(monkeypatch: Any, n_writes: int) -> list[int]:
    """Make tifffile's ``n_writes``-th file write fail as a full disk (ENOSPC).

    Returns the list that grows by one per write, so a test can check the failure was
    reached."""
    import tifffile

    real = tifffile.FileHandle.write
    count: list[int] = []

    def full(self: Any, data: Any) -> Any:
        count.append(1)
        if len(count) == n_writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(tifffile.FileHandle, "write", full)
    return count
