"""Polygons to a label image: every polygon painted by one compiled scanline pass.

The pixel rule is scikit-image's ``skimage.draw.polygon`` (which StarDist's
``polygons_to_label`` uses): pixel ``(r, c)`` belongs to a ring when the point ``(r, c)``
lies inside it or on its boundary (O'Rourke's crossing test with a 1e-12 vertex
tolerance, in float64). A polygon is its exterior ring minus its holes (a pixel inside or
on a hole is removed); a multi-polygon is the union of its parts. Parts are painted in
the order given, so a later part wins where parts of different objects overlap.

``skimage.draw.polygon`` tests every pixel of the bounding box against every edge and is
called once per object from Python; here each row of the bounding box sorts its edge
crossings once and fills spans, and all objects are painted in one call.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import CorruptInputError

__all__ = ["PolygonSet", "paint_polygons"]

_EPS = 1e-12


class PolygonSet:
    """Polygons packed into flat arrays, ready for :func:`paint_polygons`.

    Parameters
    ----------
    coords : ndarray of shape (V, 2), float64
        Vertices as (row, column) of every ring, concatenated. Rings need not be closed
        (a repeated first vertex is harmless).
    ring_offsets : ndarray of shape (R + 1,), int64
        Ring ``k`` is ``coords[ring_offsets[k]:ring_offsets[k + 1]]``.
    part_offsets : ndarray of shape (P + 1,), int64
        Part ``p`` is rings ``part_offsets[p]:part_offsets[p + 1]``; its first ring is the
        exterior, the others are holes.
    values : ndarray of shape (P,), uint64
        Label painted for each part (several parts may share a label: a multi-polygon).
    planes : ndarray of shape (P,), int64
        Plane (Z index) of each part; all 0 for 2D.
    """

    def __init__(self) -> None:
        self._coords: list[np.ndarray] = []
        self._ring_sizes: list[int] = []
        self._part_sizes: list[int] = []
        self._values: list[int] = []
        self._planes: list[int] = []
        self._packed: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._values) if self._packed is None else int(self._packed[3].size)

    @classmethod
    def from_rings(cls, rings: np.ndarray, values: np.ndarray) -> PolygonSet:
        """Polygons without holes that all have the same number of vertices, vectorised.

        ``rings`` is (N, n_vertices, 2) (row, col); ``values`` (N,) the labels, painted in
        this order.
        """
        r = np.ascontiguousarray(rings, dtype=np.float64)
        if r.ndim != 3 or r.shape[2] != 2:
            raise CorruptInputError(f"polygon array has shape {r.shape}; expected (N, n, 2)")
        if not np.isfinite(r).all():
            bad = int(np.argwhere(~np.isfinite(r))[0][0])
            raise CorruptInputError(f"polygon {bad} has a NaN or infinite vertex coordinate")
        n, nv = r.shape[0], r.shape[1]
        out = cls()
        out._packed = (
            r.reshape(n * nv, 2),
            np.arange(n + 1, dtype=np.int64) * nv,
            np.arange(n + 1, dtype=np.int64),
            np.asarray(values, dtype=np.uint64).reshape(n),
            np.zeros(n, dtype=np.int64),
        )
        return out

    def add(self, rings: list[np.ndarray], value: int, plane: int = 0) -> None:
        """Add one polygon part: ``rings[0]`` the exterior, the rest holes, each (n, 2) (row, col)."""
        if self._packed is not None:
            raise CorruptInputError("a PolygonSet made by from_rings cannot take more parts")
        kept = []
        for ring in rings:
            r = np.asarray(ring, dtype=np.float64)
            if r.ndim != 2 or r.shape[1] != 2:
                raise CorruptInputError(
                    f"polygon ring has shape {r.shape}; expected (n, 2) vertex coordinates"
                )
            if not np.isfinite(r).all():
                raise CorruptInputError(
                    f"polygon of object {value} has a NaN or infinite vertex coordinate"
                )
            if r.shape[0] >= 1:
                kept.append(r)
        if not kept or kept[0].shape[0] < 1:
            return
        self._coords.extend(kept)
        self._ring_sizes.extend(r.shape[0] for r in kept)
        self._part_sizes.append(len(kept))
        self._values.append(int(value))
        self._planes.append(int(plane))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(coords, ring_offsets, part_offsets, values, planes) as described above."""
        if self._packed is not None:
            return self._packed
        coords = (
            np.concatenate(self._coords) if self._coords else np.zeros((0, 2), dtype=np.float64)
        )
        ring_offsets = np.zeros(len(self._ring_sizes) + 1, dtype=np.int64)
        np.cumsum(self._ring_sizes, out=ring_offsets[1:])
        part_offsets = np.zeros(len(self._part_sizes) + 1, dtype=np.int64)
        np.cumsum(self._part_sizes, out=part_offsets[1:])
        values = np.asarray(self._values, dtype=np.uint64)
        planes = np.asarray(self._planes, dtype=np.int64)
        return coords, ring_offsets, part_offsets, values, planes


@numba.njit(cache=True)
def _insertion_sort(a: np.ndarray, n: int) -> None:
    """Sort ``a[:n]`` in place (a row crosses a ring a few times: n is small)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@numba.njit(cache=True)
def _ring_row(
    coords: np.ndarray,
    start: int,
    stop: int,
    y: float,
    minc: int,
    flags: np.ndarray,
    xr: np.ndarray,
    xl: np.ndarray,
) -> None:
    """Set ``flags[c - minc] = 1`` for every column c of row y inside or on the ring.

    ``xr`` and ``xl`` are scratch buffers of at least ``stop - start`` values.
    """
    n = stop - start
    if n == 0:
        return
    nr = 0
    nl = 0
    width = flags.shape[0]
    ya = coords[stop - 1, 0]
    xa = coords[stop - 1, 1]
    for i in range(start, stop):
        yb = coords[i, 0]
        xb = coords[i, 1]
        # vertex within tolerance of a pixel of this row
        if abs(yb - y) < _EPS:
            c = math.floor(xb + 0.5)
            if abs(xb - c) < _EPS and minc <= c < minc + width:
                flags[c - minc] = 1
        rb = yb - y
        ra = ya - y
        if (rb > 0) != (ra > 0) or (rb < 0) != (ra < 0):
            xi = xb + (y - yb) * (xa - xb) / (ya - yb)
            if (rb > 0) != (ra > 0):
                xr[nr] = xi
                nr += 1
            if (rb < 0) != (ra < 0):
                xl[nl] = xi
                nl += 1
        ya = yb
        xa = xb
    if nr == 0 and nl == 0:
        return
    if nr <= 32 and nl <= 32:
        _insertion_sort(xr, nr)
        _insertion_sort(xl, nl)
        xr_s = xr
        xl_s = xl
    else:  # many crossings (a long, wiggly annotation outline)
        xr_s = np.sort(xr[:nr])
        xl_s = np.sort(xl[:nl])
    pr = 0  # number of right crossings <= c
    pl = 0  # number of left crossings < c
    for k in range(width):
        c = float(minc + k)
        while pr < nr and xr_s[pr] <= c:
            pr += 1
        while pl < nl and xl_s[pl] < c:
            pl += 1
        if ((nr - pr) & 1) or (pl & 1):
            flags[k] = 1


@numba.njit(cache=True)
def _paint(
    labels: np.ndarray,
    coords: np.ndarray,
    ring_offsets: np.ndarray,
    part_offsets: np.ndarray,
    values: np.ndarray,
    planes: np.ndarray,
) -> int:
    """Paint every part into ``labels`` (Z, Y, X); return the number of pixels overwritten."""
    nz, ny, nx = labels.shape
    overwritten = 0
    inside_buf = np.zeros(64, dtype=np.uint8)
    hole_buf = np.zeros(64, dtype=np.uint8)
    xr = np.empty(64, dtype=np.float64)
    xl = np.empty(64, dtype=np.float64)
    for p in range(values.shape[0]):
        z = planes[p]
        if z < 0 or z >= nz:
            continue
        r_ext = part_offsets[p]
        s0 = ring_offsets[r_ext]
        s1 = ring_offsets[r_ext + 1]
        rmin = coords[s0, 0]
        rmax = coords[s0, 0]
        cmin = coords[s0, 1]
        cmax = coords[s0, 1]
        for i in range(s0, s1):
            rmin = min(rmin, coords[i, 0])
            rmax = max(rmax, coords[i, 0])
            cmin = min(cmin, coords[i, 1])
            cmax = max(cmax, coords[i, 1])
        minr = int(max(0.0, rmin))
        maxr = min(ny - 1, math.ceil(rmax))
        minc = int(max(0.0, cmin))
        maxc = min(nx - 1, math.ceil(cmax))
        if maxr < minr or maxc < minc:
            continue
        width = maxc - minc + 1
        longest = 0
        for h in range(r_ext, part_offsets[p + 1]):
            longest = max(longest, ring_offsets[h + 1] - ring_offsets[h])
        if inside_buf.shape[0] < width:
            inside_buf = np.zeros(2 * width, dtype=np.uint8)
            hole_buf = np.zeros(2 * width, dtype=np.uint8)
        if xr.shape[0] < longest:
            xr = np.empty(2 * longest, dtype=np.float64)
            xl = np.empty(2 * longest, dtype=np.float64)
        inside = inside_buf[:width]
        hole = hole_buf[:width]
        value = values[p]
        for r in range(minr, maxr + 1):
            inside[:] = 0
            _ring_row(coords, s0, s1, float(r), minc, inside, xr, xl)
            for h in range(r_ext + 1, part_offsets[p + 1]):
                hole[:] = 0
                _ring_row(coords, ring_offsets[h], ring_offsets[h + 1], float(r), minc, hole,
                          xr, xl)
                for k in range(width):
                    if hole[k]:
                        inside[k] = 0
            for k in range(width):
                if inside[k]:
                    old = labels[z, r, minc + k]
                    if old != 0 and old != value:
                        overwritten += 1
                    labels[z, r, minc + k] = value
    return overwritten


def paint_polygons(
    polygons: PolygonSet, shape: tuple[int, ...], *, dtype: type[np.unsignedinteger] | None = None
) -> tuple[np.ndarray, int]:
    """Rasterise packed polygons into a new label image.

    Parameters
    ----------
    polygons : PolygonSet
        Parts in painting order (later parts win where they overlap earlier ones).
    shape : tuple of int
        ``(Y, X)`` or ``(Z, Y, X)``; vertices outside it are clipped (only pixels of the
        image are painted).
    dtype : unsigned integer type, optional
        Output type; by default uint32 when the largest value fits, else uint64.

    Returns
    -------
    labels : ndarray of shape ``shape``
        0 = background.
    overwritten : int
        Pixels of one object painted over by a later, different object.
    """
    coords, ring_offsets, part_offsets, values, planes = polygons.arrays()
    vmax = int(values.max()) if values.size else 0
    if dtype is None:
        dtype = np.uint32 if vmax <= np.iinfo(np.uint32).max else np.uint64
    if vmax > np.iinfo(dtype).max:
        raise CorruptInputError(f"object number {vmax} does not fit the label type {dtype}")
    shape3 = (1, *shape) if len(shape) == 2 else tuple(shape)
    labels = np.zeros(shape3, dtype=dtype)
    overwritten = 0
    if values.size:
        overwritten = int(
            _paint(labels, coords, ring_offsets, part_offsets, values.astype(dtype), planes)
        )
    return labels.reshape(shape), overwritten
