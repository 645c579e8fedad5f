"""Optional dependencies, imported only when their feature is used."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from ..errors import MissingDependencyError

__all__ = ["require"]

# modules a package imports lazily later (and would warn then): imported up front
_ALSO: dict[str, tuple[str, ...]] = {"spatialdata": ("spatialdata._io",)}


def require(module: str, extra: str, feature: str) -> Any:
    """Import ``module`` or raise MissingDependencyError naming the extra that installs it.

    Deprecation warnings raised while a dependency imports its own dependencies (ome-zarr
    under spatialdata) are not the user's to act on and are silenced.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            mod = importlib.import_module(module)
            for sub in _ALSO.get(module, ()):
                importlib.import_module(sub)
            return mod
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'maskbundle[{extra}]'"
        ) from exc
