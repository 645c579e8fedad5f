"""Imports run only downward, and no module takes another's private names.

The package's own imports are read with ``ast`` (nothing is imported), so a lazy import
inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "maskbundle"

# The layers, lowest first: a module may import its own layer and the ones below it.
# A unit is a top-level module or subpackage of maskbundle; "" is the package root.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"_version", "errors"}),
    frozenset({"rules"}),
    frozenset({"model", "names", "progress", "columns"}),
    frozenset({"labels", "measure", "mesh", "synthetic"}),
    frozenset({"io"}),
    frozenset({"bundle", "convert", "export", "viewers", "demo"}),
    frozenset({"cli", ""}),
)

# Known exceptions to the layering (none: keep it that way; a stale entry fails below).
ALLOWED: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    unit = _unit(module)
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"{module}: unit {unit!r} is in no layer; add it to LAYERS")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _private_module_outside(target: str, importer: str) -> str | None:
    """The first private module in ``target`` whose package ``importer`` is not inside."""
    parts = target.split(".")
    for i in range(1, len(parts)):
        if _is_private(parts[i]):
            package = ".".join(parts[:i])
            if importer != package and not importer.startswith(package + "."):
                return ".".join(parts[: i + 1])
    return None


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("maskbundle")
        ):
            out.append((f"hidden {node.args[0].value}", []))
    return [(t, n) for t, n in out if t.removeprefix("hidden ").split(".")[0] == "maskbundle"]


def _findings() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _module_name(path)
        for target, names in _imports(path):
            if target.startswith("hidden "):
                found.append((importer, target))
                continue
            if _layer(target) > _layer(importer):
                found.append((importer, f"upward {target}"))
            private_module = _private_module_outside(target, importer)
            if private_module:
                found.append((importer, f"private {private_module}"))
            for name in names:
                if not _is_private(name):
                    continue
                if _is_module(f"{target}.{name}"):  # `from . import _sub`: a module
                    private_module = _private_module_outside(f"{target}.{name}", importer)
                    if private_module:
                        found.append((importer, f"private {private_module}"))
                elif target != importer:
                    found.append((importer, f"private {target}.{name}"))
    return found


def test_every_unit_has_a_layer() -> None:
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    missing = sorted(u for u in units if not any(u in layer for layer in LAYERS))
    assert not missing, f"add {missing} to LAYERS"


def test_imports_run_downward_and_take_no_private_names() -> None:
    found = [f for f in _findings() if f not in ALLOWED]
    assert not found, "\n".join(f"{importer}: {what}" for importer, what in found)


def test_allowlist_holds_only_live_findings() -> None:
    # an allowlisted finding that is gone must leave the list, so it cannot hide a new one
    stale = sorted(ALLOWED - set(_findings()))
    assert not stale, f"remove {stale} from ALLOWED"


@pytest.mark.parametrize(
    ("source", "importer", "expected"),
    [
        ("from ..io.tables import write_tsv\n", "measure/x.py", "upward maskbundle.io.tables"),
        ("from .ometiff import _to_czyx\n", "io/x.py", "private maskbundle.io.ometiff._to_czyx"),
        ("from ..convert._common import f\n", "bundle/x.py", "private maskbundle.convert._common"),
        ("from .. import __version__\n", "io/x.py", "upward maskbundle"),
    ],
)
def test_the_checker_sees_each_kind_of_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, importer: str, expected: str
) -> None:
    # a fake package with one offending module: the check must report it
    root = tmp_path / "maskbundle"
    for rel in ("__init__.py", "io/__init__.py", "io/tables.py", "io/ometiff.py",
                "measure/__init__.py", "bundle/__init__.py", "convert/__init__.py",
                "convert/_common.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    (root / importer).write_text(source)
    monkeypatch.setitem(globals(), "PACKAGE", root)
    module = "maskbundle." + importer.removesuffix(".py").replace("/", ".")
    assert (module, expected) in _findings()
