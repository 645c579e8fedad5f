"""Per-object features of a relabelled mask: morphology, position and marker intensities.

:func:`compute_features` turns a label image numbered 1..N into a :class:`FeatureTable`
(a DataFrame indexed by Object ID plus the eight header cells of every column). It reads
the pixels in one pass (numba; all markers fused) plus, in 2D, a second pass over the
labels for the convex hulls, so it is much faster than ``skimage.measure.regionprops``
and never allocates in proportion to the largest label value.

:func:`user_columns` checks user-given extra columns against the header rules and aligns
them to the Object IDs.

Definitions follow ``skimage.measure.regionprops`` (with ``spacing`` = the physical
pixel size) unless a column's Description says otherwise:

- 2D perimeter: regionprops ``perimeter`` (4-connectivity border-pixel weights), times
  the pixel size; for anisotropic pixels (where regionprops refuses) times the
  geometric mean of the x and y pixel sizes.
- 3D surface area (not in regionprops): the area of the exposed voxel faces.
- Bounding boxes are inclusive (first and last pixel), not half-open as in regionprops.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..columns import check_objects_table, check_spec
from ..errors import LabelError, OptionError, ShapeMismatchError, TableFormatError
from ..labels.checks import check_label_array
from ..model import ColumnSpec, PhysicalSize
from ..rules import MAX_OBJECTS, OBJECT_ID, check_ascii_text, check_text_cell
from ._accumulate import (
    Accumulator,
    accumulate,
    convex_pixel_counts,
    grouped_medians,
    hull_rows,
    merge_into,
)

__all__ = [
    "CENTROID_COLUMNS",
    "STATISTICS",
    "FeatureTable",
    "compute_features",
    "table_from_accumulator",
    "user_columns",
]

STATISTICS: tuple[str, ...] = ("mean", "median", "std", "min", "max", "sum")
"""Intensity statistics ``compute_features`` knows, in the order columns appear."""

CENTROID_COLUMNS: dict[str, str] = {"x": "Centroid X", "y": "Centroid Y", "z": "Centroid Z"}
"""Names of the exact (float, pixel) centroid columns; ``Centroid Z`` only for 3D."""

INDEX_NAME = OBJECT_ID
_STAT_LABEL = {
    "mean": "mean intensity",
    "median": "median intensity",
    "std": "intensity standard deviation",
    "min": "min intensity",
    "max": "max intensity",
    "sum": "total intensity",
}
_STAT_DESCRIPTION = {
    "mean": "Mean of the {m} intensity over the object's pixels.",
    "median": "Median of the {m} intensity over the object's pixels.",
    "std": "Standard deviation (population, ddof 0) of the {m} intensity over the object's"
    " pixels.",
    "min": "Smallest {m} intensity among the object's pixels.",
    "max": "Largest {m} intensity among the object's pixels.",
    "sum": "Sum of the {m} intensity over the object's pixels (integrated intensity).",
}
# Dtypes the kernel reads directly; others are converted to float64 first.
NATIVE_INTENSITY = {np.dtype(t) for t in ("uint8", "uint16", "uint32", "int8", "int16",
                                           "int32", "float32", "float64")}
# Bands of the in-memory run: a fixed number (not the core count), run on threads and
# merged in a fixed order, so the result is byte-identical on every machine.
N_BANDS = 2


@dataclass(frozen=True)
class FeatureTable:
    """Objects-table columns: values plus their header cells.

    Attributes
    ----------
    frame : DataFrame
        One row per object, index = Object ID 1..N (named ``"Object ID"``), one column per
        feature.
    specs : dict of str to ColumnSpec
        The header cells of every column of ``frame``, in the same order.

    Examples
    --------
    >>> import pandas as pd
    >>> from maskbundle import ColumnSpec, FeatureTable
    >>> frame = pd.DataFrame({"Score": [0.5, 0.9]}, index=pd.Index([1, 2], name="Object ID"))
    >>> table = FeatureTable(frame, {"Score": ColumnSpec("Score", "float", "mask", "Classifier score")})
    >>> table.specs["Score"].header_cells()[:3]
    ['float', '', 'mask']
    """

    frame: pd.DataFrame
    specs: dict[str, ColumnSpec]

    def __post_init__(self) -> None:
        if list(self.frame.columns) != list(self.specs):
            raise TableFormatError(
                f"feature columns {list(self.frame.columns)} and header specs "
                f"{list(self.specs)} differ; give one ColumnSpec per column, in order"
            )

    def join(self, other: FeatureTable) -> FeatureTable:
        """Columns of both tables side by side (same Object IDs; names must not repeat)."""
        clash = sorted(set(self.specs) & set(other.specs))
        if clash:
            raise TableFormatError(f"column names occur twice: {clash}; rename one of them")
        if not self.frame.index.equals(other.frame.index):
            raise TableFormatError("feature tables cover different Object IDs")
        return FeatureTable(
            pd.concat([self.frame, other.frame], axis=1), {**self.specs, **other.specs}
        )


# ---------------------------------------------------------------------------- checks


def _check_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels as (Z, Y, X) uint16/uint32 and N; refuse anything that is not 1..N-like."""
    arr = check_label_array(None, labels, floats=False)  # the one label check
    if arr.size == 0:
        raise LabelError(f"labels of shape {arr.shape} hold no pixels")
    n = int(arr.max())
    if n > arr.size or n > MAX_OBJECTS:
        raise LabelError(
            f"labels are not numbered 1..N: the largest label {n} exceeds the number of "
            f"pixels {arr.size}; relabel the mask first (relabel_mask)"
        )
    if arr.dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        arr = arr.astype(np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    return np.ascontiguousarray(arr), n


def _check_intensity(
    intensity_image: np.ndarray, labels_shape: tuple[int, ...]
) -> np.ndarray:
    """Intensities as (C, Z, Y, X) in a dtype the kernel reads."""
    arr = np.asarray(intensity_image)
    spatial = tuple(labels_shape)
    if arr.ndim == len(spatial):
        arr = arr[np.newaxis]
    if arr.ndim != len(spatial) + 1 or arr.shape[1:] != spatial:
        axes = "CYX or YX" if len(spatial) == 2 else "CZYX or ZYX"
        raise ShapeMismatchError(
            f"intensity image shape {tuple(np.shape(intensity_image))} does not match the "
            f"mask shape {spatial}; expected {axes} with the same spatial size"
        )
    if not arr.dtype.isnative:  # big-endian TIFF data: same type, native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    elif arr.dtype.kind not in "uif":
        raise OptionError(f"intensity image must be real numbers, got dtype {arr.dtype}")
    elif arr.dtype not in NATIVE_INTENSITY:
        arr = arr.astype(np.float64)
    if len(spatial) == 2:
        arr = arr[:, np.newaxis]
    return np.ascontiguousarray(arr)


def _check_text(value: str, what: str, *, error: type[Exception] = OptionError) -> str:
    if not isinstance(value, str) or not value.strip():
        raise error(f"{what} must be a non-empty string, got {value!r}")
    check_ascii_text(value, what, error)  # the one ASCII rule (maskbundle.rules)
    check_text_cell(value, what, error)  # the one text-cell rule (maskbundle.rules)
    return value


def resolve_marker_names(marker_names: Sequence[str] | None, n_markers: int) -> list[str]:
    if marker_names is None:
        return [f"Channel {c}" for c in range(n_markers)]
    names = list(marker_names)
    if len(names) != n_markers:
        raise OptionError(
            f"{len(names)} marker names for {n_markers} intensity channels; give one name "
            "per channel"
        )
    seen: dict[str, str] = {}
    for name in names:
        _check_text(name, "marker name")
        if name.strip().casefold() in seen:
            raise OptionError(f"marker name {name!r} occurs twice; marker names must be unique")
        seen[name.strip().casefold()] = name
    return [n.strip() for n in names]


def resolve_alternative_ids(
    alternative_ids: Sequence[str] | Mapping[str, str] | None, markers: list[str]
) -> list[str]:
    if alternative_ids is None:
        return [""] * len(markers)
    if isinstance(alternative_ids, Mapping):
        unknown = sorted(set(alternative_ids) - set(markers))
        if unknown:
            raise OptionError(
                f"alternative IDs given for unknown markers {unknown}; markers are {markers}"
            )
        ids = [alternative_ids.get(m, "") for m in markers]
    else:
        ids = list(alternative_ids)
        if len(ids) != len(markers):
            raise OptionError(
                f"{len(ids)} alternative IDs for {len(markers)} markers; give one per marker "
                "('' for none) or a mapping marker -> ID"
            )
    for m, i in zip(markers, ids, strict=True):
        if i:
            _check_text(i, f"alternative ID of marker {m!r}")
    return ids


def resolve_statistics(statistics: Sequence[str]) -> list[str]:
    if isinstance(statistics, str):
        statistics = (statistics,)
    stats = list(statistics)
    bad = [s for s in stats if s not in STATISTICS]
    if bad:
        raise OptionError(f"unknown intensity statistics {bad}; choose from {list(STATISTICS)}")
    if len(set(stats)) != len(stats):
        raise OptionError(f"intensity statistics repeat: {stats}")
    return [s for s in STATISTICS if s in stats]


# --------------------------------------------------------------------------- compute


def _run(
    labels: np.ndarray,
    intensity: np.ndarray | None,
    n: int,
    *,
    moments: bool,
    extremes: bool,
    perimeter: bool,
    faces: bool,
) -> Accumulator:
    """Accumulate the whole image in ``N_BANDS`` row bands on threads, merged in order."""
    nz, ny, nx = labels.shape
    # bands split along the slowest axis that has room for them
    axis = 0 if nz >= N_BANDS else 1
    size = labels.shape[axis]
    edges = np.linspace(0, size, min(N_BANDS, size) + 1).astype(int)
    cores = []
    for a, b in itertools.pairwise(edges):
        core = [0, nz, 0, ny, 0, nx]
        core[2 * axis], core[2 * axis + 1] = int(a), int(b)
        cores.append(tuple(core))

    def one(core: tuple[int, ...]) -> Accumulator:
        return accumulate(
            labels,
            intensity,
            n_objects=n,
            moments=moments,
            extremes=extremes,
            perimeter=perimeter,
            faces=faces,
            core=core,  # type: ignore[arg-type]
        )

    if len(cores) == 1:
        return one(cores[0])
    with ThreadPoolExecutor(max_workers=len(cores)) as pool:
        parts = list(pool.map(one, cores))
    acc = parts[0]  # ours: the other bands merge into it in place, in order
    for part in parts[1:]:
        merge_into(acc, part)
    return acc


def _spec(
    name: str, type_: str, feature_class: str, description: str, unit: str = "",
    alternative_id: str = "",
) -> ColumnSpec:
    return ColumnSpec(
        name=name,
        type=type_,  # type: ignore[arg-type]
        feature_class=feature_class,  # type: ignore[arg-type]
        description=description,
        unit=unit,  # type: ignore[arg-type]
        alternative_id=alternative_id,
    )


def _covariances(acc: Accumulator) -> tuple[np.ndarray, np.ndarray]:
    """Exact centroids (N, 3) in pixels and central second moments / n (N, 6), pixels²."""
    n = acc.count[1:]
    nf = n.astype(np.float64)
    # centroid = (n * ref + sum(coordinate - ref)) / n: one rounding, like np.mean
    centroid = (acc.ref[1:] * n[:, None] + acc.s1[1:]).astype(np.float64) / nf[:, None]
    s1 = acc.s1[1:].astype(np.float64)
    s2 = acc.s2[1:].astype(np.float64)
    cov = np.empty_like(s2)
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    for k, (i, j) in enumerate(pairs):
        cov[:, k] = (s2[:, k] * nf - s1[:, i] * s1[:, j]) / (nf * nf)
    return centroid, cov


def _convex_counts(labels: np.ndarray, acc: Accumulator) -> np.ndarray:
    """Convex-hull pixel counts (N + 1,) of a whole 2D image (labels as (1, Y, X))."""
    row_offset, row_lo, row_hi = hull_rows(labels[0], acc, threads=N_BANDS)
    return convex_pixel_counts(row_offset, acc, row_lo, row_hi, threads=N_BANDS)


def _morphology_2d(
    acc: Accumulator, cov: np.ndarray, convex_counts: np.ndarray,
    um: tuple[float, float, float],
) -> tuple[dict[str, np.ndarray], dict[str, ColumnSpec]]:
    _, sy, sx = um
    n = acc.count[1:].astype(np.float64)
    # inertia tensor of regionprops (spacing = pixel size): [[a, b], [b, c]]
    a = cov[:, 2] * sx * sx  # variance along x (columns)
    c = cov[:, 1] * sy * sy  # variance along y (rows)
    b = -cov[:, 5] * sy * sx
    half = (a + c) / 2.0
    root = np.sqrt(((a - c) / 2.0) ** 2 + b * b)
    l1 = np.clip(half + root, 0.0, None)
    l2 = np.clip(half - root, 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        ecc = np.where(l1 == 0, 0.0, np.sqrt(np.clip(1.0 - l2 / l1, 0.0, None)))
    orientation = np.where(
        a - c == 0,
        np.where(b < 0, math.pi / 4.0, -math.pi / 4.0),
        0.5 * np.arctan2(-2.0 * b, c - a),
    )
    pixel_area = sy * sx
    area = n * pixel_area
    convex = convex_counts[1:]
    bbox = (acc.hi[1:, 1:] - acc.lo[1:, 1:] + 1).prod(axis=1)
    length = sx if sx == sy else math.sqrt(sx * sy)
    values = {
        "Area (square micrometer)": area,
        "Perimeter (micrometer)": acc.perimeter[1:] * length,
        "Convex area (square micrometer)": convex * pixel_area,
        "Equivalent diameter (micrometer)": np.sqrt(4.0 * area / math.pi),
        "Major axis length (micrometer)": 4.0 * np.sqrt(l1),
        "Minor axis length (micrometer)": 4.0 * np.sqrt(l2),
        "Eccentricity": ecc,
        "Orientation (radian)": orientation,
        "Solidity": n / convex,
        "Extent": n / bbox,
    }
    specs = [
        _spec("Area (square micrometer)", "float", "morphology",
              "Pixel count times the pixel area (x size times y size).",
              "square micrometer"),
        _spec("Perimeter (micrometer)", "float", "morphology",
              "Boundary length in micrometres, as scikit-image regionprops 'perimeter': "
              "4-connected border pixels weighted 1, sqrt(2) or (1+sqrt(2))/2 by their "
              "border neighbours, times the pixel size (geometric mean of x and y sizes "
              "when pixels are not square)."),
        _spec("Convex area (square micrometer)", "float", "morphology",
              "Pixels whose centre lies in or on the convex hull of the object's pixels "
              "(hull of their edge midpoints, as scikit-image convex_hull_image) times the "
              "pixel area.", "square micrometer"),
        _spec("Equivalent diameter (micrometer)", "float", "morphology",
              "Diameter in micrometres of the circle with the same area: sqrt(4 * area / pi)."),
        _spec("Major axis length (micrometer)", "float", "morphology",
              "Length in micrometres of the major axis of the ellipse with the same second "
              "central moments (4 * sqrt of the larger inertia eigenvalue, as regionprops)."),
        _spec("Minor axis length (micrometer)", "float", "morphology",
              "Length in micrometres of the minor axis of the ellipse with the same second "
              "central moments (4 * sqrt of the smaller inertia eigenvalue, as regionprops)."),
        _spec("Eccentricity", "float", "morphology",
              "Eccentricity of the ellipse with the same second central moments, 0 (circle) "
              "to 1 (line); dimensionless."),
        _spec("Orientation (radian)", "float", "morphology",
              "Angle in radians (-pi/2 to pi/2) between the row axis (y) and the major axis "
              "of the same-moments ellipse, as scikit-image regionprops 'orientation'."),
        _spec("Solidity", "float", "morphology",
              "Pixel count divided by the convex-hull pixel count; dimensionless."),
        _spec("Extent", "float", "morphology",
              "Pixel count divided by the pixel count of the bounding box; dimensionless."),
    ]
    return values, {s.name: s for s in specs}


def _morphology_3d(
    acc: Accumulator, cov: np.ndarray, um: tuple[float, float, float]
) -> tuple[dict[str, np.ndarray], dict[str, ColumnSpec]]:
    sz, sy, sx = um
    n = acc.count[1:].astype(np.float64)
    s = (sz, sy, sx)
    cphys = np.empty((n.size, 3, 3))
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    for k, (i, j) in enumerate(pairs):
        cphys[:, i, j] = cphys[:, j, i] = cov[:, k] * s[i] * s[j]
    # regionprops' inertia tensor: trace(C) * I - C
    trace = np.trace(cphys, axis1=1, axis2=2)
    inertia = -cphys
    inertia[:, [0, 1, 2], [0, 1, 2]] += trace[:, None]
    ev = np.clip(np.linalg.eigvalsh(inertia), 0.0, None)[:, ::-1]  # descending
    major = np.sqrt(np.clip(10.0 * (ev[:, 0] + ev[:, 1] - ev[:, 2]), 0.0, None))
    minor = np.sqrt(np.clip(10.0 * (-ev[:, 0] + ev[:, 1] + ev[:, 2]), 0.0, None))
    volume = n * sz * sy * sx
    faces = acc.faces[1:].astype(np.float64)
    surface = faces[:, 0] * sy * sx + faces[:, 1] * sz * sx + faces[:, 2] * sz * sy
    values = {
        "Volume (cubic micrometer)": volume,
        "Surface area (square micrometer)": surface,
        "Equivalent diameter (micrometer)": np.cbrt(6.0 * volume / math.pi),
        "Major axis length (micrometer)": major,
        "Minor axis length (micrometer)": minor,
    }
    specs = [
        _spec("Volume (cubic micrometer)", "float", "morphology",
              "Volume in cubic micrometres: voxel count times the voxel volume."),
        _spec("Surface area (square micrometer)", "float", "morphology",
              "Total area of the exposed voxel faces (faces next to another label, the "
              "background or the image edge); a voxel surface, about 1.5 times the area of "
              "the smooth surface of a sphere.", "square micrometer"),
        _spec("Equivalent diameter (micrometer)", "float", "morphology",
              "Diameter in micrometres of the sphere with the same volume: "
              "cbrt(6 * volume / pi)."),
        _spec("Major axis length (micrometer)", "float", "morphology",
              "Length in micrometres of the major axis of the ellipsoid with the same second "
              "central moments (as scikit-image regionprops 'axis_major_length')."),
        _spec("Minor axis length (micrometer)", "float", "morphology",
              "Length in micrometres of the minor axis of the ellipsoid with the same second "
              "central moments (as scikit-image regionprops 'axis_minor_length')."),
    ]
    return values, {s.name: s for s in specs}


def compute_features(
    labels: np.ndarray,
    *,
    physical_size: PhysicalSize | tuple[float, ...] | float,
    intensity_image: np.ndarray | None = None,
    marker_names: Sequence[str] | None = None,
    alternative_ids: Sequence[str] | Mapping[str, str] | None = None,
    statistics: Sequence[str] = ("mean",),
    morphology: bool = True,
) -> FeatureTable:
    """Per-object features of a mask numbered 1..N.

    Parameters
    ----------
    labels : ndarray of shape (Y, X) or (Z, Y, X), unsigned integer
        One mask, relabelled so that its objects are 1..N without gaps (0 = background),
        as ``relabel_mask`` returns it.
    physical_size : PhysicalSize or (x, y) or (x, y, z) in micrometres
        Pixel (voxel) size; z is required for a 3D mask.
    intensity_image : ndarray of shape (C, Y, X) / (Y, X) for 2D labels, (C, Z, Y, X) /
        (Z, Y, X) for 3D labels, optional
        Marker intensities on the same pixel grid; any real dtype.
    marker_names : sequence of str, optional
        One name per channel (default ``Channel 0``, ``Channel 1``, ...); ASCII, unique
        ignoring case, not starting with ``= + - @``. Column names are case-folded
        (``dapi mean intensity``) because HuBMAP's conversion looks them up case-folded;
        the marker's own spelling is kept in the Description (and the Alternative ID).
    alternative_ids : sequence of str or mapping marker -> str, optional
        Alternative ID per marker (for example an RRID), written verbatim to that header
        row so it stays resolvable; a marker without one gets its own name there.
    statistics : sequence of {"mean", "median", "std", "min", "max", "sum"}
        Intensity statistics per marker (default: mean).
    morphology : bool
        Include the shape columns (area, perimeter, axes, ... / volume, surface ...).
        Centroids, pixel counts, bounding boxes and border contact are always included.

    Returns
    -------
    FeatureTable
        ``frame`` indexed by Object ID 1..N. Columns (2D): Centroid X, Centroid Y (exact
        mean pixel coordinates, float), Pixel count, morphology columns, bounding box
        (inclusive, pixels), Touches image border, then ``<marker> <statistic>`` columns
        per marker. 3D adds Centroid Z and Z bounding box and uses Voxel count, volume,
        surface area and axis lengths.

    Raises
    ------
    LabelError
        Labels are not integers numbered 1..N (relabel first).
    ShapeMismatchError
        The intensity image does not match the mask's shape (both shapes are named).
    OptionError
        Bad physical size, marker names, alternative IDs or statistics.

    Notes
    -----
    One numba pass reads every pixel once (row runs of equal labels; all markers fused),
    in two row bands on two threads whose sums are merged in a fixed order, so results
    are identical on any machine. 2D morphology adds one pass over the labels for the
    per-row extents that the convex hulls need. Memory is O(N) plus, in 2D, the sum of
    the objects' bounding-box heights; the median alone keeps a float64 copy of the
    foreground pixels of one marker. NaN intensities propagate into mean, std, sum and
    median; min and max skip them. The per-block accumulation and its merge are in
    :mod:`maskbundle.measure._accumulate` (blocks need a 2-pixel halo).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> labels = np.zeros((32, 32), np.uint16)
    >>> labels[2:10, 2:10], labels[2:10, 10:18], labels[20:30, 5:15] = 1, 2, 3
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> from maskbundle import compute_features
    >>> table = compute_features(labels, physical_size=0.5)
    >>> table.frame.index.tolist()
    [1, 2, 3]
    >>> table.frame["Area (square micrometer)"].tolist()  # 64, 64, 100 pixels of 0.25 um^2
    [16.0, 16.0, 25.0]
    >>> spec = table.specs["Area (square micrometer)"]
    >>> spec.type, spec.unit, spec.feature_class
    ('float', 'square micrometer', 'morphology')
    """
    lab, n = _check_labels(labels)
    is3d = np.ndim(labels) == 3
    ps = PhysicalSize.coerce(physical_size)
    if is3d and ps.z is None:
        raise OptionError(
            "a 3D mask needs a z pixel size: physical_size=(x, y, z) in micrometres"
        )
    um = ps.um_zyx()
    stats = resolve_statistics(statistics)
    inten = None
    markers: list[str] = []
    alt: list[str] = []
    if intensity_image is not None:
        inten = _check_intensity(intensity_image, tuple(np.shape(labels)))
        markers = resolve_marker_names(marker_names, inten.shape[0])
        alt = resolve_alternative_ids(alternative_ids, markers)
    elif marker_names is not None:
        raise OptionError("marker_names given without an intensity_image")
    acc = _run(
        lab,
        inten,
        n,
        moments="std" in stats,
        extremes="min" in stats or "max" in stats,
        perimeter=morphology and not is3d,
        faces=morphology and is3d,
    )
    if n and int(acc.count[1:].min()) == 0:
        missing = int(np.flatnonzero(acc.count[1:] == 0)[0]) + 1
        raise LabelError(
            f"labels are not numbered 1..N: label {missing} is absent (largest {n}); "
            "relabel the mask first (relabel_mask)"
        )
    convex = _convex_counts(lab, acc) if morphology and not is3d else None
    medians = (
        grouped_medians(lab, inten, acc.count)
        if inten is not None and "median" in stats else None
    )
    return table_from_accumulator(
        acc, is3d=is3d, um=um, stats=stats, markers=markers, alt=alt,
        morphology=morphology, convex=convex, medians=medians,
    )


def table_from_accumulator(
    acc: Accumulator,
    *,
    is3d: bool,
    um: tuple[float, float, float],
    stats: Sequence[str],
    markers: Sequence[str],
    alt: Sequence[str],
    morphology: bool,
    convex: np.ndarray | None,
    medians: np.ndarray | None,
) -> FeatureTable:
    """The feature table from merged per-object sums (the seam of the tiled path).

    ``acc`` covers the whole image (rows 1..N all present); ``convex`` (N + 1,) are the
    convex-hull pixel counts (2D morphology only) and ``medians`` (N + 1, C) the median
    intensities (only when ``"median"`` is in ``stats``). ``stats``, ``markers`` and
    ``alt`` are already checked (see :func:`compute_features`).
    """
    n = acc.count.size - 1
    has_intensity = bool(markers)
    values: dict[str, Any] = {}
    specs: dict[str, ColumnSpec] = {}

    def add(v: np.ndarray, spec: ColumnSpec) -> None:
        values[spec.name] = v
        specs[spec.name] = spec

    centroid, cov = _covariances(acc)
    axes = ("z", "y", "x")
    for ax in ("x", "y", "z") if is3d else ("x", "y"):
        i = axes.index(ax)
        what = {"x": "column", "y": "row", "z": "plane"}[ax]
        add(centroid[:, i], _spec(
            CENTROID_COLUMNS[ax], "float", "spatial",
            f"Exact centroid {ax.upper()}: mean {what} index of the object's pixels "
            "(origin top-left, pixel centres at integers).", "pixel"))
    count_name = "Voxel count" if is3d else "Pixel count"
    add(acc.count[1:].copy(), _spec(
        count_name, "integer", "morphology",
        f"Number of {'voxels' if is3d else 'pixels'} of the object.", "count"))
    if morphology:
        if is3d:
            mv, ms = _morphology_3d(acc, cov, um)
        else:
            assert convex is not None
            mv, ms = _morphology_2d(acc, cov, convex, um)
        for name, v in mv.items():
            add(v, ms[name])
    for ax in ("x", "y", "z") if is3d else ("x", "y"):
        i = axes.index(ax)
        for end, arr in (("min", acc.lo), ("max", acc.hi)):
            first = "first" if end == "min" else "last"
            add(arr[1:, i].copy(), _spec(
                f"Bounding box {ax.upper()} {end}", "integer", "spatial",
                f"Index of the {first} {'plane' if ax == 'z' else 'row' if ax == 'y' else 'column'}"
                " the object occupies (inclusive bounding box).", "pixel"))
    # integer 0/1, not boolean: HuBMAP's MuData conversion cannot write boolean columns
    add(acc.border[1:].astype(np.int64), _spec(
        "Touches image border", "integer", "spatial",
        "1 when some pixel of the object lies on the edge of the image, else 0"
        + (" (first or last plane, row or column)." if is3d else " (first or last row or column).")))
    if has_intensity:
        nf = acc.count[1:].astype(np.float64)[:, None]
        per_stat: dict[str, np.ndarray] = {}
        if "mean" in stats:
            per_stat["mean"] = acc.isum[1:] / nf
        if "median" in stats:
            assert medians is not None
            per_stat["median"] = medians[1:]
        if "std" in stats:
            var = (acc.is2[1:] - acc.is1[1:] ** 2 / nf) / nf
            per_stat["std"] = np.sqrt(np.clip(var, 0.0, None))
        if "min" in stats:
            per_stat["min"] = acc.imin[1:]
        if "max" in stats:
            per_stat["max"] = acc.imax[1:]
        if "sum" in stats:
            per_stat["sum"] = acc.isum[1:]
        for c, (marker, alt_id) in enumerate(zip(markers, alt, strict=True)):
            for st in stats:
                # names equal to their case-fold: HuBMAP's conversion looks antibody
                # columns up case-folded (docs/hubmap-ingest.md); the marker's own spelling
                # stays in the Description and, unless an id is given, the Alternative ID
                name = f"{marker} {_STAT_LABEL[st]}".casefold()
                if name in specs:
                    raise OptionError(f"marker column {name!r} clashes with a feature column")
                add(per_stat[st][:, c].copy(), _spec(
                    name, "float", "antibody", _STAT_DESCRIPTION[st].format(m=marker),
                    "intensity", alternative_id=alt_id or marker))
    index = pd.RangeIndex(1, n + 1, name=INDEX_NAME)
    # copy=False: one block per column, no consolidation copy of every column (0.5 s at
    # 650,000 objects x 27 columns); the arrays are fresh and owned by the frame
    frame = pd.DataFrame(values, index=index, copy=False)
    return FeatureTable(frame, specs)


# ----------------------------------------------------------------- user-given columns


def user_columns(
    frame: pd.DataFrame, specs: Mapping[str, ColumnSpec], original_ids: np.ndarray
) -> FeatureTable:
    """Extra columns given by the user, checked and re-indexed to Object ID.

    Parameters
    ----------
    frame : DataFrame
        One row per object, indexed by ORIGINAL label (the label in the input mask).
    specs : mapping of column name to ColumnSpec
        The header cells of every column of ``frame``.
    original_ids : ndarray of shape (N,)
        ``original_ids[k - 1]`` is the input label of Object ID k.

    Returns
    -------
    FeatureTable indexed by Object ID 1..N.

    Raises
    ------
    TableFormatError
        Rows do not cover exactly the mask's objects (missing / extra labels named),
        a column lacks a spec, or a header cell breaks the SPEC lists (type, unit,
        feature class, requirement level, non-empty ASCII description).
    """
    ids = np.asarray(original_ids).astype(np.int64)
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise TableFormatError(f"user column names repeat: {columns}")
    missing_specs = [c for c in columns if c not in specs]
    if missing_specs:
        raise TableFormatError(
            f"no header cells (ColumnSpec) for user columns {missing_specs}; give one per column"
        )
    extra_specs = [c for c in specs if c not in columns]
    if extra_specs:
        raise TableFormatError(f"header cells given for absent columns {extra_specs}")
    for name in columns:
        if specs[name].name != name:
            raise TableFormatError(
                f"ColumnSpec name {specs[name].name!r} differs from its column {name!r}"
            )
        check_spec(specs[name])
    given = pd.Index(frame.index)
    if given.dtype.kind not in "iu":
        raise TableFormatError(
            f"user columns must be indexed by the original integer labels of the mask, got an "
            f"index of dtype {given.dtype}; use frame.set_index(<label column>)"
        )
    index = given.astype(np.int64)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise TableFormatError(f"user columns repeat labels {dup}; give one row per object")
    missing = np.setdiff1d(ids, index.to_numpy())
    extra = np.setdiff1d(index.to_numpy(), ids)
    if missing.size or extra.size:
        parts = []
        if missing.size:
            parts.append(
                f"{missing.size} object(s) of the mask have no row, e.g. {missing[:5].tolist()}"
            )
        if extra.size:
            parts.append(
                f"{extra.size} row(s) are not objects of the mask, e.g. {extra[:5].tolist()}"
            )
        raise TableFormatError(
            "user columns must have exactly one row per object of the mask: " + "; ".join(parts)
        )
    out = frame.set_axis(index, axis=0).reindex(ids)
    out.index = pd.RangeIndex(1, ids.size + 1, name=INDEX_NAME)
    out.columns = columns
    ordered = [specs[c] for c in columns]
    check_objects_table(ordered, out.reset_index())
    return FeatureTable(out, {s.name: s for s in ordered})
