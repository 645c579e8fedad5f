"""maskbundle: segmentation masks to HuBMAP Segmentation Mask bundles, written and checked."""

from __future__ import annotations

from .errors import (
    BundleInvalidError,
    CorruptInputError,
    Finding,
    LabelError,
    MaskBundleError,
    MaskNameError,
    MissingDependencyError,
    OptionError,
    OutputExistsError,
    Report,
    ShapeMismatchError,
    TableFormatError,
)
from .model import ColumnSpec, Mask, ParentImage, PhysicalSize, RelabelledMask, Segmentation

__version__ = "0.1.0"

__all__ = [
    "BundleInvalidError",
    "ColumnSpec",
    "CorruptInputError",
    "Finding",
    "LabelError",
    "Mask",
    "MaskBundleError",
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
]
