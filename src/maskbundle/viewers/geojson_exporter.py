"""``maskbundle export BUNDLE --to geojson``: the QuPath export in the export registry.

Imported by the CLI for its side effect (registering the format); the outline tracing
(numba) is imported only when the format is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..export import Exporter, register

if TYPE_CHECKING:
    from ..bundle.read import Bundle

__all__: list[str] = []


def _write(bundle: Bundle, path: Path, masks: Sequence[str] | None) -> None:
    from .qupath import export_geojson

    export_geojson(bundle, path, masks=masks)


register(Exporter(
    "geojson",
    "objects as QuPath GeoJSON (cells with their nuclei when they match; File > Import "
    "objects in QuPath)",
    _write,
))
