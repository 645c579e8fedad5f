"""maskbundle: segmentation masks to HuBMAP Segmentation Mask bundles, written and checked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .bundle.adjacency import add_adjacency
    from .bundle.build import write_segmentation_bundle
    from .bundle.meshes import add_meshes
    from .bundle.metadata import write_upload_metadata
    from .bundle.read import Bundle, LabelArray, read_bundle
    from .bundle.result import BundleResult
    from .bundle.validate import validate_bundle
    from .convert import (
        match_masks,
        read_cellpose,
        read_labels,
        read_mesmer,
        read_qupath,
        read_stardist,
    )
    from .errors import (
        BundleInvalidError,
        CorruptInputError,
        Finding,
        HubmapConversionWarning,
        LabelError,
        MaskBundleError,
        MaskBundleWarning,
        MaskNameError,
        MissingDependencyError,
        OptionError,
        OutputExistsError,
        Report,
        ShapeMismatchError,
        TableFormatError,
    )
    from .measure.features import FeatureTable, compute_features
    from .model import ColumnSpec, Mask, ParentImage, PhysicalSize, RelabelledMask, Segmentation

# Public names and the module each comes from. They are imported on first use (PEP 562),
# so `import maskbundle` and `maskbundle --help` stay fast: the writer's dependencies
# (pandas, numba, ome-types) load only when a name that needs them is used.
_LAZY: dict[str, str] = {
    "add_adjacency": "maskbundle.bundle.adjacency",
    "add_meshes": "maskbundle.bundle.meshes",
    "Bundle": "maskbundle.bundle.read",
    "BundleInvalidError": "maskbundle.errors",
    "BundleResult": "maskbundle.bundle.result",
    "ColumnSpec": "maskbundle.model",
    "compute_features": "maskbundle.measure.features",
    "CorruptInputError": "maskbundle.errors",
    "FeatureTable": "maskbundle.measure.features",
    "Finding": "maskbundle.errors",
    "HubmapConversionWarning": "maskbundle.errors",
    "LabelArray": "maskbundle.bundle.read",
    "LabelError": "maskbundle.errors",
    "Mask": "maskbundle.model",
    "MaskBundleError": "maskbundle.errors",
    "MaskBundleWarning": "maskbundle.errors",
    "MaskNameError": "maskbundle.errors",
    "match_masks": "maskbundle.convert",
    "MissingDependencyError": "maskbundle.errors",
    "OptionError": "maskbundle.errors",
    "OutputExistsError": "maskbundle.errors",
    "ParentImage": "maskbundle.model",
    "PhysicalSize": "maskbundle.model",
    "read_bundle": "maskbundle.bundle.read",
    "read_cellpose": "maskbundle.convert",
    "read_labels": "maskbundle.convert",
    "read_mesmer": "maskbundle.convert",
    "read_qupath": "maskbundle.convert",
    "read_stardist": "maskbundle.convert",
    "RelabelledMask": "maskbundle.model",
    "Report": "maskbundle.errors",
    "Segmentation": "maskbundle.model",
    "ShapeMismatchError": "maskbundle.errors",
    "TableFormatError": "maskbundle.errors",
    "validate_bundle": "maskbundle.bundle.validate",
    "write_segmentation_bundle": "maskbundle.bundle.build",
    "write_upload_metadata": "maskbundle.bundle.metadata",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maskbundle' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Bundle",
    "BundleInvalidError",
    "BundleResult",
    "ColumnSpec",
    "CorruptInputError",
    "FeatureTable",
    "Finding",
    "HubmapConversionWarning",
    "LabelArray",
    "LabelError",
    "Mask",
    "MaskBundleError",
    "MaskBundleWarning",
    "MaskNameError",
    "MissingDependencyError",
    "OptionError",
    "OutputExistsError",
    "ParentImage",
    "PhysicalSize",
    "RelabelledMask",
    "Report",
    "Segmentation",
    "ShapeMismatchError",
    "TableFormatError",
    "__version__",
    "add_adjacency",
    "add_meshes",
    "compute_features",
    "match_masks",
    "read_bundle",
    "read_cellpose",
    "read_labels",
    "read_mesmer",
    "read_qupath",
    "read_stardist",
    "validate_bundle",
    "write_segmentation_bundle",
    "write_upload_metadata",
]
