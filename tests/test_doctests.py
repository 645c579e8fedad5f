"""The numpydoc Examples of the public API run as doctests: a broken example fails here.

Every function and class in ``maskbundle.__all__`` must carry an Examples section (the
test below fails for the next public name that skips it), and the module defining it
must be listed in MODULES so that its examples run.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re
import shutil
import tempfile
from pathlib import Path

import pytest

import maskbundle

# modules whose public functions and classes carry an Examples section
MODULES = [
    "maskbundle.bundle.build",
    "maskbundle.bundle.adjacency",
    "maskbundle.bundle.meshes",
    "maskbundle.bundle.metadata",
    "maskbundle.bundle.read",
    "maskbundle.bundle.result",
    "maskbundle.bundle.validate",
    "maskbundle.convert.cellpose",
    "maskbundle.convert.generic",
    "maskbundle.convert.match",
    "maskbundle.convert.mesmer",
    "maskbundle.convert.qupath",
    "maskbundle.convert.stardist",
    "maskbundle.demo",
    "maskbundle.errors",
    "maskbundle.export",
    "maskbundle.io.glb",
    "maskbundle.io.ometiff",
    "maskbundle.io.readers",
    "maskbundle.labels.checks",
    "maskbundle.measure.features",
    "maskbundle.model",
    "maskbundle.rules",
    "maskbundle.synthetic",
]

# the public entry points of the subpackages, beyond maskbundle.__all__
ENTRY_POINTS = [
    "maskbundle.convert.match_labels",
    "maskbundle.export.export_bundle",
    "maskbundle.export.register",
    "maskbundle.export.Exporter",
    "maskbundle.rules.normalise_doi",
    "maskbundle.rules.check_obo_id",
]

_EXAMPLES = re.compile(r"^Examples\n--------\n(?:.*\n)*?>>> ", re.MULTILINE)


def _public_api() -> list[tuple[str, object]]:
    out = []
    for name in maskbundle.__all__:
        obj = getattr(maskbundle, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            out.append((f"maskbundle.{name}", obj))
    for dotted in ENTRY_POINTS:
        module, _, name = dotted.rpartition(".")
        out.append((dotted, getattr(importlib.import_module(module), name)))
    return out


@pytest.mark.parametrize("name,obj", _public_api(), ids=lambda v: v if isinstance(v, str) else "")
def test_public_api_has_examples(name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    assert _EXAMPLES.search(doc + "\n"), (
        f"{name} has no numpydoc Examples section with a >>> line; add one (it runs here)"
    )
    assert obj.__module__ in MODULES, f"{name} is defined in {obj.__module__}: add it to MODULES"


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
