"""maskbundle: segmentation masks to HuBMAP Segmentation Mask bundles, written and checked."""

from __future__ import annotations

from ._version import __version__
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
