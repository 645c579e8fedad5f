"""Declared dependencies are the ones imported: none unused, none missing.

Imports are read with ``ast``; an import name is mapped to its distribution through the
installed metadata (``importlib.metadata.packages_distributions``).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# needed although never imported by name: nbclient starts the ipykernel kernel to run
# the notebooks, napari finds our plugin manifest through npe2; the rest are tools run
# from the command line
NOT_IMPORTED = {"ipykernel", "npe2", "mypy", "ruff", "pandas-stubs"}


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _declared() -> tuple[set[str], set[str]]:
    """(runtime dependencies, every dependency of an extra), normalised names."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(reqs: list[str]) -> set[str]:
        return {_norm(re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0]) for r in reqs}

    extras: set[str] = set()
    for reqs in project["optional-dependencies"].values():
        extras |= names(reqs)
    extras.discard("maskbundle")
    return names(project["dependencies"]), extras


def _imported(folder: str) -> set[str]:
    """Top-level names of third-party modules imported anywhere in ``folder``."""
    found: set[str] = set()
    for path in (REPO / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (  # export/_optional.py: require("anndata", ...) imports on demand
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "require"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(str(node.args[0].value).split(".")[0])
    local = {p.stem for p in (REPO / folder).glob("*.py")} | {"maskbundle"}
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    dists = packages_distributions()
    return {m: {_norm(d) for d in dists.get(m, [])} for m in modules}


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    runtime, _ = _declared()
    used = set().union(*_distributions(_imported("src")).values())
    assert runtime - used == set(), f"declared but never imported: {sorted(runtime - used)}"


def test_every_import_is_declared() -> None:
    runtime, extras = _declared()
    for folder, allowed in (("src", runtime | extras), ("tests", runtime | extras)):
        for module, dists in _distributions(_imported(folder)).items():
            assert dists, f"{folder}: {module} is imported but not installed"
            assert dists & allowed, f"{folder}: {module} ({sorted(dists)}) is not declared"


def test_every_extra_dependency_is_used() -> None:
    _, extras = _declared()
    used = set().union(*_distributions(_imported("src") | _imported("tests")).values())
    unused = extras - used - NOT_IMPORTED
    assert not unused, f"declared in an extra but never imported: {sorted(unused)}"
