"""The typed contract between the stages: masks as read, physical sizes, column headers.

Readers (``maskbundle.convert``) return these objects; ``write_segmentation_bundle`` takes
them (or plain arrays). Nothing here reads or writes files.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import OptionError, PlausibilityWarning
from .rules import ColumnType, ColumnUnit, FeatureClass, RequirementLevel

__all__ = [
    "ColumnSpec",
    "Mask",
    "ParentImage",
    "PhysicalSize",
    "RelabelledMask",
    "Segmentation",
]

# Conversion of OME length units to micrometres (the units our tables and CSVs use).
UM_PER_UNIT: dict[str, float] = {
    "µm": 1.0,
    "um": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
    "pm": 1e-6,
    "Å": 1e-4,
}


# Refused outright: no imaging pixel is smaller than a picometre or larger than a metre,
# and such values underflow or overflow areas and volumes.
HARD_RANGE_UM = (1e-6, 1e6)
# Pixel sizes seen in practice (electron microscopy ~0.01 um to tissue scans ~100 um);
# outside it a value is written but warned about: likely a nm/um/mm slip.
PLAUSIBLE_RANGE_UM = (0.01, 100.0)


def _is_real(value: Any) -> bool:
    """A real number: Python or numpy, never a bool, string or complex."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _positive(value: Any, what: str) -> float:
    if not _is_real(value):
        raise OptionError(
            f"{what} must be a number (micrometres per pixel), got {type(value).__name__} "
            f"{value!r}",
            cli=f"{what} must be a number: --physical-size X Y [Z] in micrometres per pixel",
        )
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise OptionError(f"{what} must be a finite number > 0, got {value!r}")
    return v


@dataclass(frozen=True)
class PhysicalSize:
    """Size of one pixel (voxel): x = column, y = row, z = plane; values in ``unit_*``.

    Examples
    --------
    >>> from maskbundle import PhysicalSize
    >>> PhysicalSize.coerce((0.5, 0.5, 2.0)).um_zyx()
    (2.0, 0.5, 0.5)
    >>> PhysicalSize(500.0, 500.0, unit_x="nm", unit_y="nm").um_zyx()
    (1.0, 0.5, 0.5)
    """

    x: float
    y: float
    z: float | None = None
    unit_x: str = "µm"
    unit_y: str = "µm"
    unit_z: str = "µm"

    def __post_init__(self) -> None:
        _positive(self.x, "physical size x")
        _positive(self.y, "physical size y")
        if self.z is not None:
            _positive(self.z, "physical size z")
        for u in (self.unit_x, self.unit_y, self.unit_z):
            if not isinstance(u, str) or u not in UM_PER_UNIT:
                raise OptionError(
                    f"physical size unit {u!r} is not supported; use one of {sorted(UM_PER_UNIT)}"
                )
        lo, hi = HARD_RANGE_UM
        for axis, v, u in self._axes():
            um = float(v) * UM_PER_UNIT[u]
            if not lo <= um <= hi:
                raise OptionError(
                    f"physical size {axis} = {v!r} {u} is {um:g} um per pixel, outside "
                    f"{lo:g}-{hi:g} um; give micrometres per pixel"
                )

    def _axes(self) -> list[tuple[str, float, str]]:
        out = [("x", self.x, self.unit_x), ("y", self.y, self.unit_y)]
        if self.z is not None:
            out.append(("z", self.z, self.unit_z))
        return out

    def warn_if_implausible(self, stacklevel: int = 3) -> None:
        """Warn (:class:`PlausibilityWarning`) about sizes outside PLAUSIBLE_RANGE_UM."""
        lo, hi = PLAUSIBLE_RANGE_UM
        odd = [
            f"{axis} = {float(v) * UM_PER_UNIT[u]:g} um"
            for axis, v, u in self._axes()
            if not lo <= float(v) * UM_PER_UNIT[u] <= hi
        ]
        if odd:
            warnings.warn(
                f"physical size {', '.join(odd)} per pixel is outside the usual {lo:g}-{hi:g} "
                "um; check it is micrometres (not nanometres or millimetres)",
                PlausibilityWarning,
                stacklevel=stacklevel,
            )

    @classmethod
    def coerce(cls, value: PhysicalSize | tuple[float, ...] | list[float] | float) -> PhysicalSize:
        """Accept ``(x, y)``, ``(x, y, z)`` in micrometres, one number (or 1-tuple) for x = y."""
        if isinstance(value, PhysicalSize):
            return value
        shape_hint = "(x, y) or (x, y, z) in micrometres per pixel"
        cli = "give --physical-size X Y [Z] in micrometres per pixel"
        if _is_real(value):
            return cls(float(value), float(value))  # type: ignore[arg-type]
        if isinstance(value, np.ndarray) and value.ndim == 0:
            return cls.coerce(value.item())
        if isinstance(value, str | bytes | Mapping) or not isinstance(
            value, tuple | list | np.ndarray
        ):
            raise OptionError(
                f"physical_size must be {shape_hint}, got {type(value).__name__} {value!r}",
                cli=f"physical size {value!r} is not numbers: {cli}",
            )
        vals = tuple(value.tolist() if isinstance(value, np.ndarray) else value)
        for v in vals:
            if not _is_real(v):
                raise OptionError(
                    f"physical_size must be {shape_hint}, got {value!r} (holds "
                    f"{type(v).__name__} {v!r})",
                    cli=f"physical size {value!r} is not numbers: {cli}",
                )
        if len(vals) == 1:
            return cls(float(vals[0]), float(vals[0]))
        if len(vals) == 2:
            return cls(float(vals[0]), float(vals[1]))
        if len(vals) == 3:
            return cls(float(vals[0]), float(vals[1]), float(vals[2]))
        raise OptionError(
            f"physical_size must be {shape_hint}, got {value!r}",
            cli=f"{len(vals)} physical size values given: {cli}",
        )

    def um_zyx(self) -> tuple[float, float, float]:
        """(z, y, x) in micrometres; z = 1.0 when unknown (2D)."""
        z = 1.0 if self.z is None else self.z * UM_PER_UNIT[self.unit_z]
        return (z, self.y * UM_PER_UNIT[self.unit_y], self.x * UM_PER_UNIT[self.unit_x])


@dataclass(frozen=True)
class ParentImage:
    """What the masks must agree with: the parent OME-TIFF's sizes and physical sizes.

    Examples
    --------
    Usually read from the parent OME-TIFF; the masks must have its sizes:

    >>> from maskbundle import ParentImage, PhysicalSize
    >>> parent = ParentImage("parent.ome.tiff", size_x=64, size_y=48, size_z=1,
    ...                      physical_size=PhysicalSize(0.5, 0.5))
    >>> (parent.size_y, parent.size_x)
    (48, 64)
    """

    path: str
    size_x: int
    size_y: int
    size_z: int
    physical_size: PhysicalSize
    # The exact OME values as written in the parent (copied verbatim to our OME-XML).
    ome_pixels_attrs: Mapping[str, Any] = field(default_factory=dict)


ObjectTypes = str | Mapping[int, str]


@dataclass
class Mask:
    """One mask as read from a source, before any checks or relabelling.

    ``labels`` is the integer label array (Y, X) or (Z, Y, X); 0 is background.
    ``object_types`` is one obo id for all objects or a mapping original label -> obo id.
    ``features`` is an optional DataFrame of extra columns indexed by original label,
    with ``feature_specs`` giving their header cells by column name.
    ``source`` records where the mask came from (file, checksum, tool metadata) for
    provenance.

    Examples
    --------
    >>> import numpy as np
    >>> from maskbundle import Mask
    >>> mask = Mask(np.array([[0, 4], [9, 9]], np.uint16), mask_id="CL:0000000",
    ...             object_types={9: "CL:0000084"})
    >>> int(mask.labels.max()), mask.object_types[9]
    (9, 'CL:0000084')
    """

    labels: np.ndarray
    mask_id: str | None = None
    object_types: ObjectTypes | None = None
    features: pd.DataFrame | None = None
    feature_specs: Mapping[str, ColumnSpec] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Segmentation:
    """Several masks on one image, as a reader returns them.

    Examples
    --------
    What the readers return, and what ``write_segmentation_bundle`` takes:

    >>> import numpy as np
    >>> from maskbundle import Mask, PhysicalSize, Segmentation
    >>> seg = Segmentation(masks={"cells": Mask(np.eye(4, dtype=np.uint8))},
    ...                    physical_size=PhysicalSize(0.5, 0.5))
    >>> list(seg.masks), seg.physical_size.x
    (['cells'], 0.5)
    """

    masks: dict[str, Mask]
    physical_size: PhysicalSize | None = None
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RelabelledMask:
    """A checked mask numbered 1..N. ``original_ids[k - 1]`` is the input label of Object ID k.

    Examples
    --------
    >>> import numpy as np
    >>> from maskbundle.labels.relabel import relabel_mask
    >>> mask = relabel_mask("cells", np.array([[0, 7], [30, 30]], np.uint16))
    >>> mask.labels.tolist(), mask.original_ids.tolist(), mask.n_objects, mask.changed
    ([[0, 1], [2, 2]], [7, 30], 2, True)
    """

    name: str
    labels: np.ndarray
    original_ids: np.ndarray

    @property
    def n_objects(self) -> int:
        return int(self.original_ids.size)

    @property
    def changed(self) -> bool:
        """True when some Object ID differs from its original label."""
        return not np.array_equal(self.original_ids, np.arange(1, self.n_objects + 1))


@dataclass(frozen=True)
class ColumnSpec:
    """The eight header cells of one objects-table column (SPEC section 5).

    Each cell takes only the published values (``maskbundle.rules``).

    Examples
    --------
    >>> from maskbundle import ColumnSpec
    >>> spec = ColumnSpec("Nucleus area", "float", "morphology", "Area of the nucleus",
    ...                   unit="square micrometer")
    >>> spec.header_cells()
    ['float', 'square micrometer', 'morphology', 'Area of the nucleus', '', '', '', 'OPTIONAL']
    """

    name: str
    type: ColumnType
    feature_class: FeatureClass
    description: str
    unit: ColumnUnit = ""
    protocol_doi: str = ""
    alternative_id: str = ""
    permissible_values: tuple[str, ...] = ()
    requirement: RequirementLevel = "OPTIONAL"

    def header_cells(self) -> list[str]:
        """Rows 1-8 of this column, in order."""
        return [
            self.type,
            self.unit,
            self.feature_class,
            self.description,
            self.protocol_doi,
            self.alternative_id,
            " | ".join(self.permissible_values),
            self.requirement,
        ]
