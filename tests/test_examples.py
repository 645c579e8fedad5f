"""The shipped examples run and write valid bundles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, expect_reference


def test_python_example(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "examples/python_quickstart.py"), str(tmp_path)],
                   check=True, capture_output=True)
    assert (tmp_path / "segmentation-metadata.tsv").is_file()
    expect_reference(tmp_path / "tissue-1")


def test_cli_example(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "maskbundle").exists() or shutil.which("bash") is None:
        pytest.skip("the maskbundle console script is not installed next to this python")
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", str(REPO / "examples/cli_quickstart.sh"), str(tmp_path)], check=True,
                   capture_output=True, env=env)
    expect_reference(tmp_path / "upload/dataset-1")


def test_3d_example(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "examples/example_3d.py"),
                             str(tmp_path / "ex3d")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validate_bundle: OK" in result.stdout
    expect_reference(tmp_path / "ex3d")


def test_whole_slide_example(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "examples/whole_slide.py"),
                             str(tmp_path), "--size", "1024", "--memory-limit", "32MiB"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validate_bundle: OK" in result.stdout
    expect_reference(tmp_path / "slide-1")
