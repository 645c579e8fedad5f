"""The numpydoc Examples of the public API run as doctests: a broken example fails here."""

from __future__ import annotations

import doctest
import importlib
import shutil
import tempfile
from pathlib import Path

import pytest

# modules whose public functions carry an Examples section
MODULES = [
    "maskbundle.bundle.build",
    "maskbundle.bundle.adjacency",
    "maskbundle.bundle.meshes",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the examples write into tempfile.mkdtemp(): keep those inside pytest's tmp_path
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module) if t.examples]
    assert tests, f"{name} has no Examples to run"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"
    shutil.rmtree(tmp_path, ignore_errors=True)
