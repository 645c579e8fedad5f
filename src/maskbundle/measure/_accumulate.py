"""Per-object accumulation over label images: numba kernels plus a tile merge.

Everything here works on labels already numbered 1..N (0 = background) and keeps one
row per object (row 0 is the background and stays unused), so memory is proportional
to the number of objects, never to the largest raw label.

The image is always seen as (Z, Y, X) (a 2D image has Z = 1) and the intensities as
(C, Z, Y, X). A kernel call covers one *block* of the image and accumulates only the
pixels of its *core* window; neighbour look-ups may read the halo around the core.
Blocks of a tiled image therefore need a halo of 2 pixels (perimeter weights look at
the neighbours' neighbours) on every side that is not an image edge; outside a block
counts as "not this object", which is right only at the image edge.

Sums of coordinates are kept relative to the first pixel seen of each object
(``ref``), in int64, so the centroid and the second moments are exact integers until
the final division, and two partial results merge exactly (:func:`merge`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

__all__ = [
    "Accumulator",
    "accumulate",
    "accumulate_into",
    "convex_pixel_counts",
    "fill_values",
    "grouped_medians",
    "hull_rows",
    "hull_rows_into",
    "medians_of",
    "merge",
    "merge_into",
]

# Weights of skimage.measure.perimeter (neighborhood 4): index = 1 + 2 * (4-connected
# border neighbours) + 10 * (diagonal border neighbours) of a border pixel.
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0

# second-moment components, in this order
MOMENT_PAIRS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


@dataclass
class Accumulator:
    """Per-object partial sums of one block (row k = Object ID k; row 0 unused).

    Attributes
    ----------
    count : int64 (N + 1,)
        Pixels (voxels) of the object.
    ref : int64 (N + 1, 3)
        Global (z, y, x) of the first pixel seen; the origin of ``s1`` and ``s2``.
    s1 : int64 (N + 1, 3)
        Sum of (coordinate - ref) per axis z, y, x.
    s2 : int64 (N + 1, 6)
        Sum of products of (coordinate - ref) for the pairs in ``MOMENT_PAIRS``.
    lo, hi : int64 (N + 1, 3)
        Inclusive bounding box, global coordinates.
    border : bool (N + 1,)
        True when a pixel lies on the image edge (Z edges only for 3D images).
    perimeter : float64 (N + 1,)
        Sum of the scikit-image perimeter weights (2D only; pixels as unit).
    faces : int64 (N + 1, 3)
        Exposed pixel faces normal to z, y and x.
    isum : float64 (N + 1, C)
        Sum of the intensities per marker.
    iref, is1, is2 : float64 (N + 1, C) or (N + 1, 0)
        First intensity seen, sum and sum of squares of (value - iref) (for the std).
    imin, imax : float64 (N + 1, C) or (N + 1, 0)
        Smallest and largest intensity.
    """

    count: np.ndarray
    ref: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    border: np.ndarray
    perimeter: np.ndarray
    faces: np.ndarray
    isum: np.ndarray
    iref: np.ndarray
    is1: np.ndarray
    is2: np.ndarray
    imin: np.ndarray
    imax: np.ndarray

    @classmethod
    def empty(
        cls, n_objects: int, n_markers: int, *, moments: bool, extremes: bool
    ) -> Accumulator:
        """Zeroed accumulators for ``n_objects`` objects and ``n_markers`` markers."""
        n = n_objects + 1
        cm = n_markers if moments else 0
        ce = n_markers if extremes else 0
        big = np.iinfo(np.int64).max
        return cls(
            count=np.zeros(n, np.int64),
            ref=np.zeros((n, 3), np.int64),
            s1=np.zeros((n, 3), np.int64),
            s2=np.zeros((n, 6), np.int64),
            lo=np.full((n, 3), big, np.int64),
            hi=np.full((n, 3), -1, np.int64),
            border=np.zeros(n, np.bool_),
            perimeter=np.zeros(n, np.float64),
            faces=np.zeros((n, 3), np.int64),
            isum=np.zeros((n, n_markers), np.float64),
            iref=np.zeros((n, cm), np.float64),
            is1=np.zeros((n, cm), np.float64),
            is2=np.zeros((n, cm), np.float64),
            imin=np.full((n, ce), np.inf, np.float64),
            imax=np.full((n, ce), -np.inf, np.float64),
        )


@numba.njit(cache=True, nogil=True, inline="always")
def _sum_squares(m: int) -> int:
    """0^2 + 1^2 + ... + m^2, as a polynomial valid for every integer m (f(m) - f(m-1) = m^2)."""
    return m * (m + 1) * (2 * m + 1) // 6


@numba.njit(cache=True, nogil=True, inline="always")
def _is_border(labels: np.ndarray, z: int, y: int, x: int, lab: int) -> bool:
    """A pixel of ``lab`` with a 4-neighbour of another label or outside the block."""
    ny = labels.shape[1]
    nx = labels.shape[2]
    return (
        y == 0
        or y == ny - 1
        or x == 0
        or x == nx - 1
        or labels[z, y - 1, x] != lab
        or labels[z, y + 1, x] != lab
        or labels[z, y, x - 1] != lab
        or labels[z, y, x + 1] != lab
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _border_nb(labels: np.ndarray, z: int, y: int, x: int, lab: int) -> int:
    """1 when (z, y, x) is a border pixel of ``lab`` (caller keeps y, x >= 1 from edges)."""
    return int(
        (labels[z, y, x] == lab)
        & (
            (labels[z, y - 1, x] != lab)
            | (labels[z, y + 1, x] != lab)
            | (labels[z, y, x - 1] != lab)
            | (labels[z, y, x + 1] != lab)
        )
    )


@numba.njit(cache=True, nogil=True)
def _accumulate_kernel(
    labels: np.ndarray,
    inten: np.ndarray,
    core: np.ndarray,
    origin: np.ndarray,
    image_shape: np.ndarray,
    perimeter_weights: np.ndarray,
    want_perimeter: bool,
    want_faces: bool,
    count: np.ndarray,
    ref: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    border: np.ndarray,
    perimeter: np.ndarray,
    faces: np.ndarray,
    isum: np.ndarray,
    iref: np.ndarray,
    is1: np.ndarray,
    is2: np.ndarray,
    imin: np.ndarray,
    imax: np.ndarray,
) -> None:
    # Rows are scanned as runs of one label: coordinate sums of a run have closed forms,
    # so the per-object arrays are touched once per run, not once per pixel.
    nz, ny, nx = labels.shape
    n_markers = isum.shape[1]
    want_moments = is1.shape[1] > 0
    want_extremes = imin.shape[1] > 0
    is3d = image_shape[0] > 1
    gz_last = image_shape[0] - 1
    gy_last = image_shape[1] - 1
    gx_last = image_shape[2] - 1
    x_begin = core[4]
    x_end = core[5]
    for z in range(core[0], core[1]):
        gz = z + origin[0]
        z_edge = is3d and (gz == 0 or gz == gz_last)
        for y in range(core[2], core[3]):
            gy = y + origin[1]
            y_edge = gy == 0 or gy == gy_last
            x = x_begin
            while x < x_end:
                lab = labels[z, y, x]
                if lab == 0:
                    x += 1
                    continue
                xs = x
                while x + 1 < x_end and labels[z, y, x + 1] == lab:
                    x += 1
                xe = x
                x += 1
                run = xe - xs + 1
                gxs = xs + origin[2]
                gxe = xe + origin[2]
                first = count[lab] == 0
                if first:
                    ref[lab, 0] = gz
                    ref[lab, 1] = gy
                    ref[lab, 2] = gxs
                count[lab] += run
                dz = gz - ref[lab, 0]
                dy = gy - ref[lab, 1]
                dx0 = gxs - ref[lab, 2]
                dx1 = gxe - ref[lab, 2]
                sdx = (dx0 + dx1) * run // 2
                s1[lab, 0] += run * dz
                s1[lab, 1] += run * dy
                s1[lab, 2] += sdx
                s2[lab, 0] += run * dz * dz
                s2[lab, 1] += run * dy * dy
                s2[lab, 2] += _sum_squares(dx1) - _sum_squares(dx0 - 1)
                s2[lab, 3] += run * dz * dy
                s2[lab, 4] += dz * sdx
                s2[lab, 5] += dy * sdx
                if gz < lo[lab, 0]:
                    lo[lab, 0] = gz
                if gy < lo[lab, 1]:
                    lo[lab, 1] = gy
                if gxs < lo[lab, 2]:
                    lo[lab, 2] = gxs
                if gz > hi[lab, 0]:
                    hi[lab, 0] = gz
                if gy > hi[lab, 1]:
                    hi[lab, 1] = gy
                if gxe > hi[lab, 2]:
                    hi[lab, 2] = gxe
                if y_edge or z_edge or gxs == 0 or gxe == gx_last:
                    border[lab] = True
                # exposed faces: the run's two ends, and per pixel above / below
                left_open = xs == 0 or labels[z, y, xs - 1] != lab
                right_open = xe == nx - 1 or labels[z, y, xe + 1] != lab
                faces[lab, 2] += left_open + right_open
                exposed_y = 0
                for xx in range(xs, xe + 1 if want_faces or want_perimeter else xs):
                    up_open = y == 0 or labels[z, y - 1, xx] != lab
                    down_open = y == ny - 1 or labels[z, y + 1, xx] != lab
                    exposed_y += up_open + down_open
                    if is3d:
                        faces[lab, 0] += (z == 0 or labels[z - 1, y, xx] != lab) + (
                            z == nz - 1 or labels[z + 1, y, xx] != lab
                        )
                    if want_perimeter and (
                        up_open
                        or down_open
                        or (xx == xs and left_open)
                        or (xx == xe and right_open)
                    ):
                        # a border pixel (4-connectivity); weight by its border neighbours
                        if 2 <= y < ny - 2 and 2 <= xx < nx - 2:
                            # interior fast path: no bounds checks, no data-dependent branches
                            code = 1 + 2 * (
                                _border_nb(labels, z, y - 1, xx, lab)
                                + _border_nb(labels, z, y + 1, xx, lab)
                                + _border_nb(labels, z, y, xx - 1, lab)
                                + _border_nb(labels, z, y, xx + 1, lab)
                            ) + 10 * (
                                _border_nb(labels, z, y - 1, xx - 1, lab)
                                + _border_nb(labels, z, y - 1, xx + 1, lab)
                                + _border_nb(labels, z, y + 1, xx - 1, lab)
                                + _border_nb(labels, z, y + 1, xx + 1, lab)
                            )
                        else:
                            code = 1
                            for oy in range(-1, 2):
                                yy = y + oy
                                if yy < 0 or yy >= ny:
                                    continue
                                for ox in range(-1, 2):
                                    if oy == 0 and ox == 0:
                                        continue
                                    xn = xx + ox
                                    if xn < 0 or xn >= nx or labels[z, yy, xn] != lab:
                                        continue
                                    if _is_border(labels, z, yy, xn, lab):
                                        code += 2 if (oy == 0 or ox == 0) else 10
                        perimeter[lab] += perimeter_weights[code]
                faces[lab, 1] += exposed_y
                for c in range(n_markers):
                    total = 0.0
                    if want_moments:
                        if first:
                            iref[lab, c] = np.float64(inten[c, z, y, xs])
                        r = iref[lab, c]
                        m1 = 0.0
                        m2 = 0.0
                        for xx in range(xs, xe + 1):
                            v = np.float64(inten[c, z, y, xx])
                            total += v
                            m1 += v - r
                            m2 += (v - r) * (v - r)
                        is1[lab, c] += m1
                        is2[lab, c] += m2
                    else:
                        for xx in range(xs, xe + 1):
                            total += np.float64(inten[c, z, y, xx])
                    isum[lab, c] += total
                    if want_extremes:
                        vmin = imin[lab, c]
                        vmax = imax[lab, c]
                        for xx in range(xs, xe + 1):
                            v = np.float64(inten[c, z, y, xx])
                            if v < vmin:
                                vmin = v
                            if v > vmax:
                                vmax = v
                        imin[lab, c] = vmin
                        imax[lab, c] = vmax


def accumulate(
    labels: np.ndarray,
    intensity: np.ndarray | None,
    *,
    n_objects: int,
    moments: bool = False,
    extremes: bool = False,
    perimeter: bool = True,
    faces: bool = True,
    core: tuple[int, int, int, int, int, int] | None = None,
    origin: tuple[int, int, int] = (0, 0, 0),
    image_shape: tuple[int, int, int] | None = None,
) -> Accumulator:
    """One pass over a block of labels (and intensities) into per-object sums.

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X), uint16 or uint32
        A block of the label image, values 0..``n_objects``.
    intensity : ndarray of shape (C, Z, Y, X) or None
        The same block of the intensity image (any real dtype).
    n_objects : int
        N of the whole image (rows of the result minus one).
    moments, extremes : bool
        Also accumulate the intensity sums for the std (``moments``) and min / max.
    perimeter : bool
        Accumulate the scikit-image perimeter weights (2D images only).
    faces : bool
        Count the exposed faces normal to y (and z); x faces are always counted.
    core : (z0, z1, y0, y1, x0, x1), optional
        Window of the block whose pixels are counted (default: the whole block); the
        rest is halo, read only by neighbour look-ups.
    origin : (z, y, x)
        Global coordinates of ``labels[0, 0, 0]``.
    image_shape : (Z, Y, X), optional
        Shape of the whole image (default: the block's shape).
    """
    if intensity is None:
        intensity = np.zeros((0, 1, 1, 1), dtype=np.float32)
    acc = Accumulator.empty(
        n_objects, intensity.shape[0], moments=moments, extremes=extremes
    )
    accumulate_into(
        acc, labels, intensity, perimeter=perimeter, faces=faces, core=core, origin=origin,
        image_shape=image_shape,
    )
    return acc


def accumulate_into(
    acc: Accumulator,
    labels: np.ndarray,
    intensity: np.ndarray | None,
    *,
    perimeter: bool = True,
    faces: bool = True,
    core: tuple[int, int, int, int, int, int] | None = None,
    origin: tuple[int, int, int] = (0, 0, 0),
    image_shape: tuple[int, int, int] | None = None,
) -> None:
    """Like :func:`accumulate`, but continue the sums already in ``acc`` (in place).

    Calling it on consecutive windows of one raster scan (rows in order, each object
    inside one window per call) folds every sum in exactly the order a single call over
    the whole image would, so floating-point sums come out bitwise the same; this is how
    the tiled measurement recomputes the objects that cross tiles.
    """
    nz, ny, nx = labels.shape
    if core is None:
        core = (0, nz, 0, ny, 0, nx)
    if image_shape is None:
        image_shape = (nz, ny, nx)
    if intensity is None:
        intensity = np.zeros((0, 1, 1, 1), dtype=np.float32)
    _accumulate_kernel(
        labels,
        intensity,
        np.asarray(core, np.int64),
        np.asarray(origin, np.int64),
        np.asarray(image_shape, np.int64),
        _PERIMETER_WEIGHTS,
        bool(perimeter and image_shape[0] == 1),
        bool(faces),
        acc.count,
        acc.ref,
        acc.s1,
        acc.s2,
        acc.lo,
        acc.hi,
        acc.border,
        acc.perimeter,
        acc.faces,
        acc.isum,
        acc.iref,
        acc.is1,
        acc.is2,
        acc.imin,
        acc.imax,
    )


@numba.njit(cache=True, nogil=True)
def _merge_kernel(
    a_count: np.ndarray, a_ref: np.ndarray, a_s1: np.ndarray, a_s2: np.ndarray,
    a_iref: np.ndarray, a_is1: np.ndarray, a_is2: np.ndarray,
    b_count: np.ndarray, b_ref: np.ndarray, b_s1: np.ndarray, b_s2: np.ndarray,
    b_iref: np.ndarray, b_is1: np.ndarray, b_is2: np.ndarray,
) -> None:
    """Add b's moment sums into a's (in place), re-expressed about a's reference."""
    n_markers = a_is1.shape[1]
    for k in range(a_count.size):
        nb = b_count[k]
        if nb == 0:
            continue
        if a_count[k] == 0:  # a has none of this object: take b's reference
            for i in range(3):
                a_ref[k, i] = b_ref[k, i]
            for c in range(n_markers):
                a_iref[k, c] = b_iref[k, c]
        d0 = b_ref[k, 0] - a_ref[k, 0]
        d1 = b_ref[k, 1] - a_ref[k, 1]
        d2 = b_ref[k, 2] - a_ref[k, 2]
        t0 = b_s1[k, 0]
        t1 = b_s1[k, 1]
        t2 = b_s1[k, 2]
        # sum (u + d)(v + d') = sum uv + d' sum u + d sum v + n d d'  (pairs as MOMENT_PAIRS)
        a_s2[k, 0] += b_s2[k, 0] + 2 * d0 * t0 + nb * d0 * d0
        a_s2[k, 1] += b_s2[k, 1] + 2 * d1 * t1 + nb * d1 * d1
        a_s2[k, 2] += b_s2[k, 2] + 2 * d2 * t2 + nb * d2 * d2
        a_s2[k, 3] += b_s2[k, 3] + d0 * t1 + d1 * t0 + nb * d0 * d1
        a_s2[k, 4] += b_s2[k, 4] + d0 * t2 + d2 * t0 + nb * d0 * d2
        a_s2[k, 5] += b_s2[k, 5] + d1 * t2 + d2 * t1 + nb * d1 * d2
        a_s1[k, 0] += t0 + nb * d0
        a_s1[k, 1] += t1 + nb * d1
        a_s1[k, 2] += t2 + nb * d2
        for c in range(n_markers):
            di = b_iref[k, c] - a_iref[k, c]
            a_is2[k, c] += b_is2[k, c] + 2.0 * di * b_is1[k, c] + nb * di * di
            a_is1[k, c] += b_is1[k, c] + nb * di
        a_count[k] += nb


def merge(a: Accumulator, b: Accumulator) -> Accumulator:
    """Combine the accumulators of two disjoint pixel sets (for example two tiles).

    Coordinate sums are exact (int64), so a tiled run merges to exactly the result of a
    single pass; intensity sums agree to floating-point rounding. Neither input changes.
    """
    out = Accumulator(**{f: getattr(a, f).copy() for f in a.__dataclass_fields__})
    merge_into(out, b)
    return out


def merge_into(a: Accumulator, b: Accumulator) -> None:
    """:func:`merge` into ``a`` itself (same values): for an accumulator the caller owns,
    it saves a fresh copy of every array (about 130 MB at 650,000 objects, which cost
    more in page faults than the merge itself)."""
    np.minimum(a.lo, b.lo, out=a.lo)
    np.maximum(a.hi, b.hi, out=a.hi)
    np.bitwise_or(a.border, b.border, out=a.border)
    np.add(a.perimeter, b.perimeter, out=a.perimeter)
    np.add(a.faces, b.faces, out=a.faces)
    np.add(a.isum, b.isum, out=a.isum)
    np.minimum(a.imin, b.imin, out=a.imin)
    np.maximum(a.imax, b.imax, out=a.imax)
    _merge_kernel(a.count, a.ref, a.s1, a.s2, a.iref, a.is1, a.is2,
                  b.count, b.ref, b.s1, b.s2, b.iref, b.is1, b.is2)


@numba.njit(cache=True, nogil=True)
def _hull_rows_at_kernel(
    labels: np.ndarray,
    y_origin: int,
    x_origin: int,
    row_offset: np.ndarray,
    ylo: np.ndarray,
    row_lo: np.ndarray,
    row_hi: np.ndarray,
) -> None:
    ny, nx = labels.shape
    for y in range(ny):
        gy = y + y_origin
        x = 0
        while x < nx:
            lab = labels[y, x]
            if lab == 0:
                x += 1
                continue
            start = x
            while x + 1 < nx and labels[y, x + 1] == lab:
                x += 1
            k = row_offset[lab] + gy - ylo[lab]
            if start + x_origin < row_lo[k]:
                row_lo[k] = start + x_origin
            if x + x_origin > row_hi[k]:
                row_hi[k] = x + x_origin
            x += 1


def hull_rows_into(
    labels2d: np.ndarray,
    row_offset: np.ndarray,
    ylo: np.ndarray,
    row_lo: np.ndarray,
    row_hi: np.ndarray,
    *,
    y_origin: int,
    x_origin: int,
) -> None:
    """Merge one window's per-row extremes into ``row_lo`` / ``row_hi`` (global columns).

    The arrays are laid out as :func:`hull_rows` returns them (``row_offset`` and ``ylo``
    from the objects' bounding boxes over the whole image); windows may come in any order
    and overlap (minimum / maximum), but every labelled pixel of ``labels2d`` must lie in
    its object's bounding box.
    """
    _hull_rows_at_kernel(
        np.ascontiguousarray(labels2d), int(y_origin), int(x_origin), row_offset,
        np.ascontiguousarray(ylo), row_lo, row_hi,
    )


def hull_rows(
    labels2d: np.ndarray, acc: Accumulator, *, y_origin: int = 0, x_origin: int = 0,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leftmost and rightmost column of every object in every row of its bounding box.

    Parameters
    ----------
    labels2d : ndarray of shape (Y, X)
        A block of rows (and columns) of the label image starting at global
        (``y_origin``, ``x_origin``); tiles merge with ``np.minimum`` / ``np.maximum``.
    acc : Accumulator
        The merged accumulator of the whole image (for the bounding boxes).
    threads : int
        Row bands scanned in parallel (they write disjoint rows, so no merge is needed).

    Returns
    -------
    row_offset : int64 (N + 2,)
        Rows of object k are ``row_offset[k]:row_offset[k + 1]``.
    row_lo, row_hi : int32 (sum of bounding-box heights,)
        Global columns; ``row_lo > row_hi`` for a row the object does not occupy.
    """
    heights = np.where(acc.count > 0, acc.hi[:, 1] - acc.lo[:, 1] + 1, 0)
    row_offset = np.zeros(heights.size + 1, np.int64)
    np.cumsum(heights, out=row_offset[1:])
    total = int(row_offset[-1])
    row_lo = np.empty(total, np.int32)
    row_hi = np.empty(total, np.int32)
    ylo = np.ascontiguousarray(acc.lo[:, 1])
    edges = np.linspace(0, labels2d.shape[0], max(1, threads) + 1).astype(int)
    parts = np.linspace(0, total, max(1, threads) + 1).astype(int)

    def fill(i: int) -> None:
        # the fresh pages are first touched here, on every thread (numpy's fill releases
        # the GIL): a serial np.full spent ~0.2 s in page faults at 650,000 objects
        a, b = int(parts[i]), int(parts[i + 1])
        row_lo[a:b] = np.iinfo(np.int32).max
        row_hi[a:b] = -1

    def band(i: int) -> None:
        a, b = int(edges[i]), int(edges[i + 1])
        _hull_rows_at_kernel(labels2d[a:b], y_origin + a, 0, row_offset, ylo, row_lo, row_hi)

    _parallel(fill, len(parts) - 1)
    _parallel(band, len(edges) - 1)
    if x_origin:
        seen = row_hi >= 0
        row_lo[seen] += x_origin
        row_hi[seen] += x_origin
    return row_offset, row_lo, row_hi


def _parallel(fn: Callable[[int], None], n: int) -> None:
    """Run ``fn(0) .. fn(n - 1)`` on ``n`` threads (the kernels release the GIL)."""
    if n == 1:
        fn(0)
        return
    with ThreadPoolExecutor(max_workers=n) as pool:
        for _ in pool.map(fn, range(n)):
            pass


@numba.njit(cache=True, nogil=True)
def _convex_counts_kernel(
    k_begin: int,
    k_end: int,
    row_offset: np.ndarray,
    ylo: np.ndarray,
    row_lo: np.ndarray,
    row_hi: np.ndarray,
    out: np.ndarray,
) -> None:
    max_h = 0
    for k in range(k_begin, k_end):
        max_h = max(max_h, row_offset[k + 1] - row_offset[k])
    # candidate hull points: at most 2 per half-row level (3 levels per row)
    py = np.empty(6 * max_h + 6, np.float64)
    px = np.empty(6 * max_h + 6, np.float64)
    hy = np.empty(6 * max_h + 6, np.float64)
    hx = np.empty(6 * max_h + 6, np.float64)
    lo_x = np.empty(max_h + 1, np.float64)
    hi_x = np.empty(max_h + 1, np.float64)
    for k in range(k_begin, k_end):
        h = row_offset[k + 1] - row_offset[k]
        if h == 0:
            continue
        base = row_offset[k]
        # points sorted by (y, x): per pixel row the diamond points of its extreme
        # pixels, i.e. (y - 0.5, xl), (y - 0.5, xr), (y, xl - 0.5), (y, xr + 0.5),
        # (y + 0.5, xl), (y + 0.5, xr), merging the shared half-levels of rows.
        m = 0
        for r in range(h + 1):
            # level r - 0.5: bottoms of row r - 1 and tops of row r
            a = np.inf
            b = -np.inf
            if r > 0 and row_hi[base + r - 1] >= 0:
                a = min(a, row_lo[base + r - 1])
                b = max(b, row_hi[base + r - 1])
            if r < h and row_hi[base + r] >= 0:
                a = min(a, row_lo[base + r])
                b = max(b, row_hi[base + r])
            if a <= b:
                py[m] = r - 0.5
                px[m] = a
                m += 1
                if b > a:
                    py[m] = r - 0.5
                    px[m] = b
                    m += 1
            if r < h and row_hi[base + r] >= 0:
                py[m] = r
                px[m] = row_lo[base + r] - 0.5
                m += 1
                py[m] = r
                px[m] = row_hi[base + r] + 0.5
                m += 1
        # Andrew's monotone chain (points already sorted by y, then x)
        nh = 0
        for i in range(m):  # lower chain
            while nh >= 2 and (
                (hx[nh - 1] - hx[nh - 2]) * (py[i] - hy[nh - 2])
                - (hy[nh - 1] - hy[nh - 2]) * (px[i] - hx[nh - 2])
            ) <= 0:
                nh -= 1
            hy[nh] = py[i]
            hx[nh] = px[i]
            nh += 1
        lower = nh + 1
        for i in range(m - 2, -1, -1):  # upper chain
            while nh >= lower and (
                (hx[nh - 1] - hx[nh - 2]) * (py[i] - hy[nh - 2])
                - (hy[nh - 1] - hy[nh - 2]) * (px[i] - hx[nh - 2])
            ) <= 0:
                nh -= 1
            hy[nh] = py[i]
            hx[nh] = px[i]
            nh += 1
        nh -= 1  # the last point repeats the first
        # x range of the hull on every integer row 0..h-1 (pixel centres)
        for r in range(h):
            lo_x[r] = np.inf
            hi_x[r] = -np.inf
        for i in range(nh):
            y0 = hy[i]
            x0 = hx[i]
            y1 = hy[(i + 1) % nh]
            x1 = hx[(i + 1) % nh]
            ya = min(y0, y1)
            yb = max(y0, y1)
            r0 = max(0, int(np.ceil(ya - 1e-9)))
            r1 = min(h - 1, int(np.floor(yb + 1e-9)))
            for r in range(r0, r1 + 1):
                if y1 == y0:
                    xa = min(x0, x1)
                    xb = max(x0, x1)
                else:
                    t = x0 + (r - y0) * (x1 - x0) / (y1 - y0)
                    xa = t
                    xb = t
                if xa < lo_x[r]:
                    lo_x[r] = xa
                if xb > hi_x[r]:
                    hi_x[r] = xb
        total = 0
        for r in range(h):
            if hi_x[r] >= lo_x[r]:
                total += int(np.floor(hi_x[r] + 1e-9)) - int(np.ceil(lo_x[r] - 1e-9)) + 1
        out[k] = total


def convex_pixel_counts(
    row_offset: np.ndarray, acc: Accumulator, row_lo: np.ndarray, row_hi: np.ndarray,
    *, threads: int = 1,
) -> np.ndarray:
    """Pixels whose centre lies in or on the convex hull of each object (int64, N + 1).

    The hull is that of scikit-image's ``convex_hull_image``: the convex hull of the
    four edge midpoints of every object pixel; pixels on the hull's boundary count.
    """
    out = np.zeros(row_offset.size - 1, np.int64)
    ylo = np.ascontiguousarray(acc.lo[:, 1])
    # objects split into ranges of equal work (rows), one per thread; disjoint outputs
    cuts = np.searchsorted(row_offset, np.linspace(0, row_offset[-1], max(1, threads) + 1))
    cuts[0], cuts[-1] = 1, out.size

    def part(i: int) -> None:
        _convex_counts_kernel(
            int(cuts[i]), int(max(cuts[i], cuts[i + 1])), row_offset, ylo, row_lo, row_hi, out
        )

    _parallel(part, len(cuts) - 1)
    return out


@numba.njit(cache=True, nogil=True)
def _medians_kernel(
    labels: np.ndarray, inten: np.ndarray, offsets: np.ndarray, out: np.ndarray
) -> None:
    n = offsets.size - 1
    n_markers = inten.shape[0]
    flat = labels.ravel()
    fill = np.empty(n, np.int64)
    values = np.empty(offsets[n], np.float64)
    for c in range(n_markers):
        plane = inten[c].ravel()
        for k in range(n):
            fill[k] = offsets[k]
        for i in range(flat.size):
            lab = flat[i]
            if lab != 0:
                values[fill[lab]] = plane[i]
                fill[lab] += 1
        for k in range(1, n):
            if offsets[k + 1] > offsets[k]:
                out[k, c] = np.median(values[offsets[k] : offsets[k + 1]])


def grouped_medians(
    labels: np.ndarray, intensity: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Median intensity per object and marker, float64 (N + 1, C).

    Needs all pixels of an object at once (no tile merge) and a float64 buffer of one
    value per foreground pixel, reused for every marker.
    """
    offsets = np.zeros(count.size + 1, np.int64)
    np.cumsum(count, out=offsets[1:])
    out = np.full((count.size, intensity.shape[0]), np.nan, np.float64)
    _medians_kernel(
        np.ascontiguousarray(labels), np.ascontiguousarray(intensity), offsets, out
    )
    return out


@numba.njit(cache=True, nogil=True)
def _fill_values_kernel(
    labels: np.ndarray, inten: np.ndarray, core: np.ndarray, fill: np.ndarray,
    values: np.ndarray,
) -> None:
    for z in range(core[0], core[1]):
        for y in range(core[2], core[3]):
            for x in range(core[4], core[5]):
                lab = labels[z, y, x]
                if lab != 0:
                    for c in range(inten.shape[0]):
                        values[c, fill[lab]] = inten[c, z, y, x]
                    fill[lab] += 1


def fill_values(
    labels: np.ndarray, intensity: np.ndarray, core: tuple[int, int, int, int, int, int],
    fill: np.ndarray, values: np.ndarray,
) -> None:
    """Append the intensities of each object's pixels of ``core`` (raster order) to
    ``values[:, fill[k]:]`` and advance ``fill[k]`` (in place): windows of one raster
    scan gather every object's values in the order :func:`grouped_medians` does."""
    _fill_values_kernel(labels, intensity, np.asarray(core, np.int64), fill, values)


@numba.njit(cache=True, nogil=True)
def _medians_of_kernel(values: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    for c in range(values.shape[0]):
        for k in range(1, offsets.size - 1):
            if offsets[k + 1] > offsets[k]:
                out[k, c] = np.median(values[c, offsets[k] : offsets[k + 1]])


def medians_of(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Median per object of values gathered by :func:`fill_values`, float64 (N + 1, C)."""
    out = np.full((offsets.size - 1, values.shape[0]), np.nan, np.float64)
    _medians_of_kernel(values, offsets, out)
    return out
