"""`import maskbundle` is light: public names load their modules on first use."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import maskbundle

INIT = Path(maskbundle.__file__)


def _type_checking_imports() -> dict[str, str]:
    """name -> absolute module of the imports under ``if TYPE_CHECKING:`` in __init__."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                for alias in imp.names:
                    found[alias.name] = f"maskbundle.{imp.module}"
    return found


def test_lazy_table_matches_the_static_imports_and_all() -> None:
    # the static imports are what mypy and the layering test see; the table is what runs
    assert maskbundle._LAZY == _type_checking_imports()
    assert set(maskbundle.__all__) == set(maskbundle._LAZY) | {"__version__"}


def test_every_public_name_resolves_to_its_module() -> None:
    for name, module in maskbundle._LAZY.items():
        value = getattr(maskbundle, name)
        assert sys.modules[module].__dict__[name] is value, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        maskbundle.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_and_cli_help_do_not_load_the_heavy_dependencies() -> None:
    code = (
        "import sys, maskbundle, maskbundle.cli\n"
        "heavy = ['pandas', 'numba', 'ome_types', 'scipy', 'skimage', 'dask', 'tifffile']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
