"""Test helpers importable from every test module (tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared relative to the repo root; MASKBUNDLE_SHARED points elsewhere (worktrees)
CHECKER = Path(os.environ.get("MASKBUNDLE_SHARED", REPO.parent / "shared")) / "tools" / "check_bundle.py"
DOI = "10.17504/protocols.io.example"


def run_reference_checker(dataset: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ../shared/tools/check_bundle.py on ``dataset``; skip the test when it is absent."""
    if not CHECKER.is_file():
        pytest.skip("reference checker ../shared/tools/check_bundle.py not present")
    return subprocess.run(
        [sys.executable, str(CHECKER), str(dataset), "--quiet", *extra],
        capture_output=True,
        text=True,
        check=False,
    )
