"""Neighbour graphs of the objects of one mask: centroid adjacency and linkage adjacency.

Pure functions over label arrays of shape (Y, X) or (Z, Y, X) (0 = background, objects
numbered 1..N as after :func:`maskbundle.labels.relabel.relabel_mask`). They return
DataFrames in the layout of SPEC section 6::

    Object ID 1,Object ID 2,Distance (micrometer)

one undirected edge per row, ``Object ID 1 < Object ID 2``, sorted, unique, no self
edges. The definition and every parameter used are recorded in ``frame.attrs["adjacency"]``
(a JSON-serialisable dict) so a bundle's provenance can state them.

Definitions
-----------
Centroid adjacency
    Centroids are the exact (unrounded) means of the pixel-centre coordinates of each
    object, converted to micrometres with the physical pixel size (anisotropic Z
    included); distance is centroid to centroid in micrometres. ``method="delaunay"``
    (default) keeps the edges of the Delaunay triangulation of the centroids (in
    micrometres) that are at most ``max_distance`` long; when ``max_distance`` is None the
    bound is data driven: ``3 x`` the median Delaunay edge length (raw Delaunay joins
    objects across empty tissue). ``method="knn"`` links every object to its ``k``
    nearest objects, made symmetric (an edge when either end is among the other's
    ``k`` nearest). ``method="radius"`` links every pair within ``radius`` micrometres (a
    k-d tree, never an N x N matrix). For ``knn`` and ``radius`` ``max_distance`` is an
    optional extra cut (None = no cut). Degenerate sets never raise: zero or one object
    gives no edge, two objects one edge, centroids on a line are joined in order along
    it, coplanar 3D centroids are triangulated in their plane, and objects sharing one
    centroid (a ring around a disc) are joined at distance 0 and share that point's edges.
Linkage adjacency
    Every pair of objects that share a face (4-connected in 2D, 6-connected in 3D) is an
    edge with distance 0. With ``max_gap > 0`` (micrometres), every pair whose *gap* is at
    most ``max_gap`` is an edge too. The gap between two objects is the smallest
    Euclidean distance between their pixels taken as boxes of the physical pixel size:
    for pixels whose index offset is ``d`` it is
    ``sqrt(sum_i (max(|d_i| - 1, 0) * s_i) ** 2)``, so objects touching at a face or a
    corner have gap 0 and objects separated by one background pixel along x have gap
    ``s_x``. (With ``max_gap == 0`` only face contacts are listed; pairs that touch only
    at a corner appear, with distance 0, once ``max_gap > 0``.) The optional contact
    column is the number of shared faces times the face length (2D, micrometre) or face
    area (3D, square micrometre).

Linkage is one compiled pass over the pixels (plus, with a gap, a scan of the few offsets
within reach of each boundary pixel); pairs are packed into uint64 keys in a small hash
table, so memory grows with the number of edges, never with the largest label. It can run
tile by tile: :func:`linkage_tile` processes one tile plus a halo of
:func:`linkage_halo` pixels (one pixel without a gap) and :func:`merge_linkage` merges the
partial results into exactly the whole-image table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd

from ..errors import LabelError, OptionError
from ..labels.checks import check_label_array
from ..model import PhysicalSize
from ..rules import ADJACENCY_COLUMNS, MAX_OBJECTS
from .centroids import object_centroids

__all__ = [
    "CONTACT_AREA",
    "CONTACT_LENGTH",
    "LinkagePartial",
    "centroid_adjacency",
    "centroids_um",
    "linkage_adjacency",
    "linkage_halo",
    "linkage_tile",
    "merge_linkage",
]

ID1, ID2, DISTANCE = ADJACENCY_COLUMNS
CONTACT_LENGTH = "Contact length (micrometer)"
CONTACT_AREA = "Contact area (square micrometer)"

#: Default data-driven bound for Delaunay edges: this many times the median edge length.
AUTO_MAX_DISTANCE_FACTOR = 3.0

CentroidMethod = Literal["delaunay", "knn", "radius"]
PhysicalSizeLike = PhysicalSize | tuple[float, ...] | list[float] | float

_U32_MAX = 2**32 - 1
#: Parts of a whole-image linkage pass run on threads (any count gives the same table).
_LINKAGE_PARTS = 2


# --------------------------------------------------------------------------- input checks


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    """Return ``labels`` viewed as unsigned (Z, Y, X) after the one label check."""
    if not isinstance(labels, np.ndarray):
        raise LabelError(f"{what}: labels must be a numpy array, got {type(labels).__name__}")
    labels = check_label_array(None, labels, what=what, floats=False, max_label=MAX_OBJECTS)
    if labels.dtype.kind == "i":
        # checked non-negative: the unsigned view has the same values and halves the number
        # of compiled kernel variants
        labels = labels.view(np.dtype(f"u{labels.dtype.itemsize}"))
    return labels if labels.ndim == 3 else labels[np.newaxis]


def _spacing_zyx(physical_size: PhysicalSizeLike, ndim: int, what: str) -> tuple[float, ...]:
    """Pixel size in micrometres per axis (z, y, x); z is 1.0 (unused) for 2D labels."""
    ps = PhysicalSize.coerce(physical_size)
    if ndim == 3 and ps.z is None:
        raise OptionError(
            f"{what}: labels are 3D (Z, Y, X) but the physical size has no z; "
            "give physical_size=(x, y, z) in micrometres"
        )
    return ps.um_zyx()


def _finite_nonneg(value: float, name: str) -> float:
    v = float(value)
    if not (v >= 0 and not math.isnan(v)):
        raise OptionError(f"{name} must be a number >= 0 (micrometres), got {value!r}")
    return v


# ------------------------------------------------------------------------------ centroids


def centroids_um(
    labels: np.ndarray, *, physical_size: PhysicalSizeLike
) -> tuple[np.ndarray, np.ndarray]:
    """Exact centroids of every object, in micrometres.

    Parameters
    ----------
    labels : ndarray of shape (Y, X) or (Z, Y, X), unsigned or non-negative integers
        0 is background. The largest label must not exceed the number of pixels (relabel
        to 1..N first); labels missing from the image are skipped.
    physical_size : PhysicalSize, (x, y) or (x, y, z) in micrometres, or one number

    Returns
    -------
    ids : ndarray of shape (N,), int64
        The labels present, ascending.
    points : ndarray of shape (N, ndim), float64
        Centroids in micrometres, axes (y, x) or (z, y, x): the mean pixel index times the
        pixel size (pixel centres at integer indices, origin at the first pixel's centre).
    """
    lab3 = _check_labels(labels, "centroid adjacency")
    spacing = _spacing_zyx(physical_size, labels.ndim, "centroid adjacency")
    hi = int(lab3.max()) if lab3.size else 0
    if hi > lab3.size:
        raise LabelError(
            f"centroid adjacency: largest label {hi} exceeds the number of pixels "
            f"({lab3.size}); relabel the mask to 1..N first (relabel_mask)"
        )
    counts, cents = object_centroids(lab3, hi)
    ids = np.flatnonzero(counts) + 1
    pts = cents[ids - 1] * np.asarray(spacing)
    if labels.ndim == 2:
        pts = pts[:, 1:]
    return ids.astype(np.int64), np.ascontiguousarray(pts)


def _pack(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    lo = np.minimum(i, j).astype(np.uint64)
    hi = np.maximum(i, j).astype(np.uint64)
    out: np.ndarray = (lo << np.uint64(32)) | hi
    return out


def _unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = (keys >> np.uint64(32)).astype(np.int64)
    b = (keys & np.uint64(_U32_MAX)).astype(np.int64)
    return a, b


def _delaunay_index_pairs(points: np.ndarray) -> np.ndarray:
    """Unique index pairs (i < j) of the Delaunay edges of ``points`` (M, d), any rank.

    Degenerate inputs: fewer than three points give their one pair (or none); points on a
    line are joined in order along it; points on a plane in 3D are triangulated in that
    plane; points Qhull leaves out of the triangulation (duplicates, or points closer to a
    vertex than its precision) are linked to their nearest vertex, to that vertex's
    neighbours and to each other, so twins with one centroid share its edges (distance 0
    between them).
    """
    from scipy.spatial import Delaunay, QhullError

    m, d = points.shape
    if m < 2:
        return np.empty((0, 2), np.int64)
    if m == 2:
        return np.array([[0, 1]], np.int64)
    centred = points - points.mean(axis=0)
    # the rank from the singular values alone (no (M, d) U: a third of the cost at
    # 650,000 points); the axes only where points are projected or ordered along a line
    sv = np.linalg.svd(centred, compute_uv=False)
    scale = float(sv[0])
    rank = int(np.sum(sv > scale * 1e-9)) if scale > 0 else 0
    if rank < d:
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        scale = float(sv[0])
        rank = int(np.sum(sv > scale * 1e-9)) if scale > 0 else 0
    if rank <= 1:
        # on a line (or all equal): the Delaunay graph joins consecutive points
        t = centred @ vt[0]
        o = np.argsort(t, kind="stable")
        return _sorted_pairs(o[:-1], o[1:])
    # triangulate the given points in their given order: Qhull's choice among equally
    # valid triangulations of cospherical points depends on the order
    proj = centred @ vt[:rank].T if rank < d else points
    if rank == 2:
        planar = _planar_delaunay_pairs(np.ascontiguousarray(proj, dtype=np.float64))
        if planar is not None:
            return planar
    try:
        tri = Delaunay(proj)
    except QhullError:
        tri = Delaunay(proj, qhull_options="QJ")
    indptr, indices = tri.vertex_neighbor_vertices
    src = np.repeat(np.arange(m, dtype=np.int64), np.diff(indptr))
    dst = indices.astype(np.int64)
    keep = src < dst
    if tri.coplanar.shape[0] == 0:
        return np.stack([src[keep], dst[keep]], -1)
    extra_a: list[np.ndarray] = [src[keep]]
    extra_b: list[np.ndarray] = [dst[keep]]
    left_out = tri.coplanar[:, 0].astype(np.int64)
    nearest = tri.coplanar[:, 2].astype(np.int64)
    for p, v in zip(left_out.tolist(), nearest.tolist(), strict=True):
        nbrs = indices[indptr[v] : indptr[v + 1]].astype(np.int64)
        extra_a.append(np.full(nbrs.size + 1, p, np.int64))
        extra_b.append(np.concatenate([[v], nbrs]))
    order = np.argsort(nearest, kind="stable")
    for grp in np.split(left_out[order], np.flatnonzero(np.diff(nearest[order])) + 1):
        ii, jj = np.triu_indices(grp.size, 1)
        extra_a.append(grp[ii])
        extra_b.append(grp[jj])
    return _sorted_pairs(np.concatenate(extra_a), np.concatenate(extra_b))


def _triangle_installed() -> bool:
    """Whether the optional ``triangle`` package (extra ``fast``) can be imported."""
    import importlib.util

    return importlib.util.find_spec("triangle") is not None


def _planar_delaunay_pairs(points: np.ndarray) -> np.ndarray | None:
    """Delaunay edges of 2D ``points`` (not all on a line) with Shewchuk's Triangle.

    About ten times faster than Qhull (divide and conquer, exact predicates). ``None``
    when the optional ``triangle`` package is missing. Equal points are triangulated once
    and are interchangeable: each joins all members of the neighbouring points' groups and
    its own twins (Qhull links only the left-out twins, so its graph is a subset). Where four or more points lie on one circle (grids) any of
    the equally valid triangulations may come back, as with Qhull: which diagonal of such
    a cell is kept is fixed for a given input but may differ from Qhull's.
    """
    try:
        import triangle
    except ImportError:
        return None
    m = points.shape[0]
    order = _lex_order(points)
    sp = points[order]
    first = np.ones(m, dtype=bool)
    first[1:] = np.any(sp[1:] != sp[:-1], axis=1)
    starts = np.flatnonzero(first)  # group g: order[starts[g]:starts[g] + size[g]]
    size = np.diff(np.append(starts, m))
    reps = order[starts]  # the first of each group of equal points, in input order
    sub = points[reps]
    # e: the edges; E, N, B: no triangles, vertices or markers back (a third of its time
    # went to building and copying those); vertices keep their input numbers
    result = triangle.triangulate({"vertices": sub}, "QzeENB")
    edges = np.asarray(result["edges"])  # between groups (int32 from Triangle)
    if edges.size and int(edges.max()) >= reps.size:
        return None  # pragma: no cover - Triangle adds no points without switches asking it
    if reps.size == m:
        return _ordered_pairs(reps, edges)
    # equal points are interchangeable: every member of a group joins every member of the
    # groups next to it, and the other members of its own group (distance 0)
    single = (size[edges[:, 0]] == 1) & (size[edges[:, 1]] == 1)
    a_parts = [reps[edges[single, 0]]]
    b_parts = [reps[edges[single, 1]]]
    for gu, gv in edges[~single].tolist():
        mu = order[starts[gu] : starts[gu] + size[gu]]
        mv = order[starts[gv] : starts[gv] + size[gv]]
        a_parts.append(np.repeat(mu, mv.size))
        b_parts.append(np.tile(mv, mu.size))
    for g in np.flatnonzero(size > 1).tolist():
        grp = order[starts[g] : starts[g] + size[g]]
        ii, jj = np.triu_indices(grp.size, 1)
        a_parts.append(grp[ii])
        b_parts.append(grp[jj])
    return _sorted_pairs(np.concatenate(a_parts), np.concatenate(b_parts))


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _lex_ties_kernel(first: np.ndarray, second: np.ndarray, order: np.ndarray) -> None:  # pragma: no cover
    """Within each run of ``order`` whose ``first`` keys are equal, sort by ``second``
    (stable insertion sort: runs are a few points long)."""
    m = order.size
    i = 0
    while i < m:
        j = i + 1
        while j < m and first[order[j]] == first[order[i]]:
            j += 1
        for u in range(i + 1, j):
            o = order[u]
            v = u
            while v > i and second[order[v - 1]] > second[o]:
                order[v] = order[v - 1]
                v -= 1
            order[v] = o
        i = j


def _lex_order(points: np.ndarray) -> np.ndarray:
    """``np.lexsort((points[:, 1], points[:, 0]))`` of (M, 2) float64 points: one
    stable argsort of the first column, then its ties ordered by the second (4x faster
    than lexsort's two passes at 650,000 points; the same permutation)."""
    if not np.isfinite(points).all():  # NaN breaks the runs: numpy's own order
        return np.lexsort((points[:, 1], points[:, 0]))
    first = np.ascontiguousarray(points[:, 0])
    order = np.argsort(first, kind="stable")
    _lex_ties_kernel(first, np.ascontiguousarray(points[:, 1]), order)
    return order


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _ordered_pairs_kernel(reps: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    for k in range(edges.shape[0]):
        a = reps[edges[k, 0]]
        b = reps[edges[k, 1]]
        out[k, 0] = min(a, b)
        out[k, 1] = max(a, b)


def _ordered_pairs(reps: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``reps[edges]`` with each row as (smaller, larger), int64 (M, 2); one compiled pass
    (numpy's min / max along an axis of length 2 took 5x longer than the triangulation's
    own output conversion at 650,000 points)."""
    out = np.empty((edges.shape[0], 2), np.int64)
    _ordered_pairs_kernel(
        np.ascontiguousarray(reps, np.int64), np.ascontiguousarray(edges, np.int32), out
    )
    return out


def _sorted_pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Unique (lo, hi) index pairs, lo < hi, sorted."""
    keys = np.unique(_pack(i, j))
    a, b = _unpack(keys)
    keep = a != b
    return np.stack([a[keep], b[keep]], -1)


def _edge_frame(ids: np.ndarray, pairs: np.ndarray, dist: np.ndarray) -> pd.DataFrame:
    a = ids[pairs[:, 0]] if pairs.size else np.empty(0, np.int64)
    b = ids[pairs[:, 1]] if pairs.size else np.empty(0, np.int64)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    order = np.argsort(_pack(lo, hi), kind="stable")
    return pd.DataFrame(
        {
            ID1: lo[order].astype(np.int64),
            ID2: hi[order].astype(np.int64),
            DISTANCE: np.asarray(dist, np.float64)[order],
        },
        copy=False,
    )


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _kept_edges_kernel(
    ids: np.ndarray, pairs: np.ndarray, dist: np.ndarray, bound: float,
    start: np.ndarray, other: np.ndarray, id1: np.ndarray, id2: np.ndarray,
    out_d: np.ndarray,
) -> int:  # pragma: no cover
    """Edges with ``dist <= bound`` as rows sorted by (smaller, larger) index, written
    as ids (ascending ``ids``); a counting sort on the smaller index, then a stable
    insertion sort of each bucket (a point has a handful of neighbours). Returns the
    row count. ``start`` (M + 1,) zeros and ``other`` are work space (allocated by the
    caller: allocations inside a kernel cost compile time)."""
    m = ids.size
    for k in range(pairs.shape[0]):
        if dist[k] <= bound:
            start[min(pairs[k, 0], pairs[k, 1]) + 1] += 1
    for i in range(m):
        start[i + 1] += start[i]
    for k in range(pairs.shape[0]):  # start[lo] walks from lo's first row to its end
        if dist[k] <= bound:
            lo = min(pairs[k, 0], pairs[k, 1])
            pos = start[lo]
            start[lo] += 1
            other[pos] = max(pairs[k, 0], pairs[k, 1])
            out_d[pos] = dist[k]
    begin = 0
    for lo in range(m):
        end = start[lo]
        for u in range(begin + 1, end):
            o = other[u]
            d = out_d[u]
            v = u
            while v > begin and other[v - 1] > o:
                other[v] = other[v - 1]
                out_d[v] = out_d[v - 1]
                v -= 1
            other[v] = o
            out_d[v] = d
        for u in range(begin, end):
            id1[u] = ids[lo]
            id2[u] = ids[other[u]]
        begin = end
    return int(begin)


def _kept_edge_frame(
    ids: np.ndarray, pairs: np.ndarray, dist: np.ndarray, bound: float
) -> pd.DataFrame:
    """``_edge_frame(ids, pairs[keep], dist[keep])`` with ``keep = dist <= bound``: one
    compiled pass in O(edges) when ``ids`` ascend (they always do here), instead of the
    masks' copies and an argsort of the packed pairs (0.6 s at 2 million edges)."""
    if pairs.size == 0 or ids.size < 2 or not bool(np.all(ids[1:] > ids[:-1])):
        keep = dist <= bound
        return _edge_frame(ids, pairs[keep], dist[keep])
    rows = pairs.shape[0]
    id1 = np.empty(rows, np.int64)
    id2 = np.empty(rows, np.int64)
    out_d = np.empty(rows, np.float64)
    n = _kept_edges_kernel(
        np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(pairs, np.int64),
        np.ascontiguousarray(dist, np.float64), float(bound),
        np.zeros(ids.size + 1, np.int64), np.empty(rows, np.int64), id1, id2, out_d,
    )
    return pd.DataFrame({ID1: id1[:n], ID2: id2[:n], DISTANCE: out_d[:n]}, copy=False)


def centroid_adjacency(
    labels: np.ndarray,
    *,
    physical_size: PhysicalSizeLike,
    method: CentroidMethod = "delaunay",
    max_distance: float | None = None,
    k: int = 6,
    radius: float | None = None,
    centroids: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Neighbours by centroid position (SPEC section 6, ``<mask>-centroid-adjacency.csv``).

    Parameters
    ----------
    labels : ndarray of shape (Y, X) or (Z, Y, X), integer
        Relabelled mask, 0 = background, objects 1..N.
    physical_size : PhysicalSize, (x, y) or (x, y, z) in micrometres, or one number
        Pixel (voxel) size; a z size is required for 3D labels.
    method : {"delaunay", "knn", "radius"}
        Delaunay triangulation of the centroids (default), the ``k`` nearest neighbours
        made symmetric, or every pair within ``radius`` micrometres.
    max_distance : float or None
        Edges longer than this (micrometres) are dropped. None: for ``delaunay`` the
        data-driven bound ``3 x median Delaunay edge length``; for ``knn``/``radius`` no
        cut. ``math.inf`` keeps every Delaunay edge.
    k : int
        Neighbours per object for ``knn`` (capped at N - 1).
    radius : float
        Radius in micrometres for ``radius`` (required there).
    centroids : (ids, points) or None
        Precomputed output of :func:`centroids_um` (skips the pass over the pixels).

    Returns
    -------
    DataFrame with columns ``Object ID 1`` (int64), ``Object ID 2`` (int64) and
    ``Distance (micrometer)`` (float64), one row per undirected edge, ``Object ID 1 <
    Object ID 2``, sorted. ``frame.attrs["adjacency"]`` holds the definition and the
    parameters used (including the resolved ``max_distance``). Zero or one object gives
    an empty (header-only) frame.

    Raises
    ------
    LabelError
        Non-integer, negative or not-relabelled labels.
    OptionError
        Unknown method, bad k / radius / max_distance, 3D labels without a z size.
    """
    if method not in ("delaunay", "knn", "radius"):
        raise OptionError(
            f"centroid adjacency method must be 'delaunay', 'knn' or 'radius', got {method!r}"
        )
    if max_distance is not None:
        max_distance = _finite_nonneg(max_distance, "max_distance")
    if method == "knn" and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise OptionError(f"k must be an integer >= 1 for method='knn', got {k!r}")
    if method == "radius":
        if radius is None:
            raise OptionError("method='radius' needs radius=<micrometres>")
        radius = _finite_nonneg(radius, "radius")
        if math.isinf(radius):
            raise OptionError("radius must be finite; use method='delaunay' for all neighbours")
    if centroids is None:
        ids, pts = centroids_um(labels, physical_size=physical_size)
    else:
        _check_labels(labels, "centroid adjacency")
        ids = np.asarray(centroids[0], np.int64)
        pts = np.asarray(centroids[1], np.float64)
    spacing = _spacing_zyx(physical_size, labels.ndim, "centroid adjacency")
    n = ids.size
    params: dict[str, Any] = {
        "kind": "centroid",
        "method": method,
        "centroids": "exact mean of pixel-centre coordinates times the pixel size",
        "distance": "centroid to centroid, micrometre",
        "physical_size_um_zyx" if labels.ndim == 3 else "physical_size_um_yx": list(
            spacing if labels.ndim == 3 else spacing[1:]
        ),
        "n_objects": int(n),
    }
    pairs: np.ndarray
    if method == "delaunay":
        pairs = _delaunay_index_pairs(pts)
        # which triangulator ran: on cocircular points (grids) and equal points the two
        # may keep different, equally valid edges, so the bytes depend on it
        params["triangulator"] = (
            "Triangle (Shewchuk)" if pts.shape[1] == 2 and _triangle_installed()
            else "scipy.spatial.Delaunay (Qhull)"
        )
        dist = _pair_dist(pts, pairs)
        if max_distance is None:
            bound = AUTO_MAX_DISTANCE_FACTOR * float(np.median(dist)) if dist.size else math.inf
            params["max_distance_rule"] = (
                f"{AUTO_MAX_DISTANCE_FACTOR:g} x median Delaunay edge length"
            )
        else:
            bound = max_distance
            params["max_distance_rule"] = "given"
        params["max_distance"] = None if math.isinf(bound) else bound
        params["definition"] = (
            "edges of the Delaunay triangulation of the object centroids (micrometres), "
            "edges longer than max_distance dropped"
        )
    else:
        from scipy.spatial import cKDTree

        if method == "knn":
            k_eff = min(int(k), max(n - 1, 0))
            params["k"] = int(k)
            params["definition"] = (
                "each object linked to its k nearest objects by centroid distance, "
                "made symmetric (union)"
            )
            if k_eff == 0:
                pairs = np.empty((0, 2), np.int64)
            else:
                tree = cKDTree(pts)
                _, nb = tree.query(pts, k=min(k_eff + 1, n))
                nb = np.asarray(nb, np.int64).reshape(n, -1)
                me = np.arange(n, dtype=np.int64)[:, None]
                # drop self; with duplicate centroids self may sit anywhere among the ties
                notself = nb != me
                rank = np.cumsum(notself, axis=1)
                take = notself & (rank <= k_eff)
                src = np.broadcast_to(me, nb.shape)[take]
                dst = nb[take]
                keys = np.unique(_pack(src, dst))
                a, b = _unpack(keys)
                pairs = np.stack([a, b], -1)
        else:
            assert radius is not None
            params["radius"] = radius
            params["definition"] = "every pair of objects whose centroids lie within radius"
            if n < 2:
                pairs = np.empty((0, 2), np.int64)
            else:
                tree = cKDTree(pts)
                pairs = np.asarray(tree.query_pairs(radius, output_type="ndarray"), np.int64)
                pairs = pairs.reshape(-1, 2)
        dist = _pair_dist(pts, pairs)
        bound = math.inf if max_distance is None else max_distance
        params["max_distance"] = None if math.isinf(bound) else bound
    frame = _kept_edge_frame(ids, pairs, dist, bound)
    params["n_edges"] = len(frame)
    frame.attrs["adjacency"] = params
    return frame


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _pair_dist_2d(points: np.ndarray, pairs: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    for k in range(pairs.shape[0]):
        i = pairs[k, 0]
        j = pairs[k, 1]
        d0 = points[i, 0] - points[j, 0]
        d1 = points[i, 1] - points[j, 1]
        # the numpy expression's operations in its order (no fused multiply-add)
        out[k] = np.sqrt(d0 * d0 + d1 * d1)


def _pair_dist(points: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    if pairs.size == 0:
        return np.empty(0, np.float64)
    if points.shape[1] == 2 and points.dtype == np.float64 and pairs.dtype == np.int64:
        out = np.empty(pairs.shape[0], np.float64)
        _pair_dist_2d(np.ascontiguousarray(points), np.ascontiguousarray(pairs), out)
        return out
    diff = points[pairs[:, 0]] - points[pairs[:, 1]]
    return np.asarray(np.sqrt(np.sum(diff * diff, axis=1)), np.float64)


# -------------------------------------------------------------------------------- linkage



@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _slot(key: np.uint64, keys: np.ndarray) -> np.int64:  # pragma: no cover
    mask = np.int64(keys.size - 1)
    # splitmix64 finaliser: neighbouring objects have neighbouring ids, so the keys are
    # highly structured and a weak hash clusters them under linear probing
    h = key
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    h = h ^ (h >> np.uint64(31))
    i = np.int64(h & np.uint64(mask))
    while True:
        k = keys[i]
        if k == key or k == np.uint64(0):
            return i
        i = (i + np.int64(1)) & mask


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _grow(
    keys: np.ndarray, gap: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    cap = keys.size * 2
    nk = np.zeros(cap, np.uint64)
    ng = np.full(cap, np.inf)
    nf = np.zeros((cap, 3), np.int64)
    for i in range(keys.size):
        if keys[i] != np.uint64(0):
            j = _slot(keys[i], nk)
            nk[j] = keys[i]
            ng[j] = gap[i]
            nf[j, 0] = faces[i, 0]
            nf[j, 1] = faces[i, 1]
            nf[j, 2] = faces[i, 2]
    return nk, ng, nf


_CACHE_BITS = 13
_CACHE_SIZE = 1 << _CACHE_BITS
_CACHE_SHIFT = 64 - _CACHE_BITS


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _merge_entry(
    keys: np.ndarray,
    gap: np.ndarray,
    faces: np.ndarray,
    used: int,
    key: np.uint64,
    g: float,
    f0: int,
    f1: int,
    f2: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:  # pragma: no cover
    """Merge one pair (smallest gap, face counts) into the open-addressing table."""
    s = _slot(key, keys)
    if keys[s] == np.uint64(0):
        if 2 * (used + 1) > keys.size:
            keys, gap, faces = _grow(keys, gap, faces)
            s = _slot(key, keys)
        keys[s] = key
        used += 1
    if g < gap[s]:
        gap[s] = g
    faces[s, 0] += f0
    faces[s, 1] += f1
    faces[s, 2] += f2
    return keys, gap, faces, used


@numba.njit(cache=True, nogil=True, inline="always")  # type: ignore[misc]
def _cache_put(
    ckey: np.ndarray,
    cgap: np.ndarray,
    cfaces: np.ndarray,
    ua: np.uint64,
    ub: np.uint64,
    g: float,
    axis: int,
) -> tuple[np.uint64, float, int, int, int]:  # pragma: no cover
    """Record pair (ua, ub) with gap ``g`` (and one face along ``axis`` when >= 0) in the
    direct-mapped cache; return the entry it evicted (key 0 when none)."""
    if ua < ub:
        key = (ua << np.uint64(32)) | ub
    else:
        key = (ub << np.uint64(32)) | ua
    c = np.int64((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(_CACHE_SHIFT))
    ek = np.uint64(0)
    eg = np.inf
    e0 = 0
    e1 = 0
    e2 = 0
    if ckey[c] != key:
        ek = ckey[c]
        eg = cgap[c]
        e0 = cfaces[c, 0]
        e1 = cfaces[c, 1]
        e2 = cfaces[c, 2]
        ckey[c] = key
        cgap[c] = np.inf
        cfaces[c, 0] = 0
        cfaces[c, 1] = 0
        cfaces[c, 2] = 0
    if g < cgap[c]:
        cgap[c] = g
    if axis >= 0:
        cfaces[c, axis] += 1
    return ek, eg, e0, e1, e2


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _faces_row(
    lab: np.ndarray,
    z: int,
    y: int,
    x0: int,
    x1: int,
    ckey: np.ndarray,
    cgap: np.ndarray,
    cfaces: np.ndarray,
    bk: np.ndarray,
    bg: np.ndarray,
    bf: np.ndarray,
) -> int:  # pragma: no cover
    """Face contacts of row (z, y), columns x0..x1, each pixel against its next pixel per
    axis; entries evicted from the cache go to the buffers (bk, bg, bf); returns their
    count (at most 3 per pixel)."""
    nz, ny, nx = lab.shape
    below = z + 1 < nz
    down = y + 1 < ny
    n = 0
    for x in range(x0, x1):
        a = lab[z, y, x]
        if a == 0:
            continue
        for axis in range(3):
            if axis == 0:
                if not below:
                    continue
                b = lab[z + 1, y, x]
            elif axis == 1:
                if not down:
                    continue
                b = lab[z, y + 1, x]
            else:
                if x + 1 >= nx:
                    continue
                b = lab[z, y, x + 1]
            if b != a and b != 0:
                ek, eg, e0, e1, e2 = _cache_put(
                    ckey, cgap, cfaces, np.uint64(a), np.uint64(b), 0.0, axis
                )
                if ek != np.uint64(0):
                    bk[n] = ek
                    bg[n] = eg
                    bf[n, 0] = e0
                    bf[n, 1] = e1
                    bf[n, 2] = e2
                    n += 1
    return n


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _offsets_row(
    lab: np.ndarray,
    z: int,
    y: int,
    x0: int,
    x1: int,
    offsets: np.ndarray,
    odist: np.ndarray,
    oaxis: np.ndarray,
    ckey: np.ndarray,
    cgap: np.ndarray,
    cfaces: np.ndarray,
    bk: np.ndarray,
    bg: np.ndarray,
    bf: np.ndarray,
) -> int:  # pragma: no cover
    """Pairs of row (z, y) within the given offsets, from boundary pixels only (a pixel
    with a face neighbour of another label); evictions as in :func:`_faces_row` (at most
    one per pixel and offset)."""
    nz, ny, nx = lab.shape
    nof = offsets.shape[0]
    n = 0
    for x in range(x0, x1):
        a = lab[z, y, x]
        if a == 0:
            continue
        edge = False
        if x > 0 and lab[z, y, x - 1] != a:
            edge = True
        elif x + 1 < nx and lab[z, y, x + 1] != a:
            edge = True
        elif y > 0 and lab[z, y - 1, x] != a:
            edge = True
        elif y + 1 < ny and lab[z, y + 1, x] != a:
            edge = True
        elif z > 0 and lab[z - 1, y, x] != a:
            edge = True
        elif z + 1 < nz and lab[z + 1, y, x] != a:
            edge = True
        if not edge:
            continue
        ua = np.uint64(a)
        for o in range(nof):
            qz = z + offsets[o, 0]
            qy = y + offsets[o, 1]
            qx = x + offsets[o, 2]
            if qz < 0 or qz >= nz or qy < 0 or qy >= ny or qx < 0 or qx >= nx:
                continue
            b = lab[qz, qy, qx]
            if b == 0 or b == a:
                continue
            ek, eg, e0, e1, e2 = _cache_put(
                ckey, cgap, cfaces, ua, np.uint64(b), odist[o], oaxis[o]
            )
            if ek != np.uint64(0):
                bk[n] = ek
                bg[n] = eg
                bf[n, 0] = e0
                bf[n, 1] = e1
                bf[n, 2] = e2
                n += 1
    return n


@numba.njit(cache=True, nogil=True)  # type: ignore[misc]
def _linkage_kernel(
    lab: np.ndarray,
    z0: int,
    z1: int,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    offsets: np.ndarray,
    odist: np.ndarray,
    oaxis: np.ndarray,
    faces_only: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """Pairs owned by the core box [z0, z1) x [y0, y1) x [x0, x1) of ``lab`` (Z, Y, X).

    Returns the hash table: keys (0 = empty slot), smallest gap and face counts per axis
    (the caller sorts in numpy: a sort inside the kernel doubled its compile time). The
    row functions feed a
    small write-back cache (consecutive rows meet mostly the same pairs); what it evicts
    is merged here, row by row, into an open-addressing table keyed by the packed pair.
    (The table arrays are rebound only in this outer loop: rebinding them inside the
    pixel loop made numba's reference counting dominate the run time.)
    """
    keys = np.zeros(1024, np.uint64)
    gap = np.full(1024, np.inf)
    faces = np.zeros((1024, 3), np.int64)
    used: Any = np.int64(0)  # not the literal 0: that compiled _merge_entry twice
    ckey = np.zeros(_CACHE_SIZE, np.uint64)
    cgap = np.full(_CACHE_SIZE, np.inf)
    cfaces = np.zeros((_CACHE_SIZE, 3), np.int64)
    width = max(x1 - x0, 0)
    cap = width * (3 if faces_only else offsets.shape[0]) + 1
    bk = np.zeros(cap, np.uint64)
    bg = np.zeros(cap)
    bf = np.zeros((cap, 3), np.int64)
    for z in range(z0, z1):
        for y in range(y0, y1):
            if faces_only:
                n = _faces_row(lab, z, y, x0, x1, ckey, cgap, cfaces, bk, bg, bf)
            else:
                n = _offsets_row(
                    lab, z, y, x0, x1, offsets, odist, oaxis, ckey, cgap, cfaces, bk, bg, bf
                )
            for i in range(n):
                keys, gap, faces, used = _merge_entry(
                    keys, gap, faces, used, bk[i], bg[i], bf[i, 0], bf[i, 1], bf[i, 2]
                )
    for c in range(ckey.size):
        if ckey[c] != np.uint64(0):
            keys, gap, faces, used = _merge_entry(
                keys, gap, faces, used, ckey[c], cgap[c], cfaces[c, 0], cfaces[c, 1], cfaces[c, 2]
            )
    return keys, gap, faces


def _reach(max_gap: float, s: float) -> int:
    """Largest index offset along an axis of pixel size ``s`` whose gap can be <= max_gap.

    Slightly generous (a relative 1e-9) so rounding never loses an offset; offsets beyond
    the gap are filtered out exactly afterwards. Capped at 2**40 (a gap of 1e300 is
    finite but its pixel count is not an int)."""
    r = max_gap / s * (1 + 1e-9)
    return 2**40 if not r < 2**40 else math.floor(r) + 1


def linkage_halo(
    physical_size: PhysicalSizeLike, *, max_gap: float = 0.0, ndim: int = 2
) -> tuple[int, ...]:
    """Halo width per axis (pixels) a tile needs for :func:`linkage_tile`.

    One pixel without a gap; ``floor(max_gap / s_i) + 1`` pixels along axis ``i`` with one.
    Returns a tuple of length ``ndim``, axes (y, x) or (z, y, x).
    """
    spacing = _spacing_zyx(physical_size, ndim, "linkage adjacency")
    g = _finite_nonneg(max_gap, "max_gap")
    if math.isinf(g):
        raise OptionError("max_gap must be finite (micrometres)")
    reach = tuple(_reach(g, s) for s in spacing)
    return reach[3 - ndim :]


def _offsets(
    spacing: tuple[float, ...], max_gap: float, ndim: int, extent: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lexicographically positive offsets (dz, dy, dx) with gap <= max_gap, their gaps and
    face axes (-1 for non-face offsets).

    The reach along each axis is capped at the block's extent - 1: a longer offset never
    lands inside the block, so a huge ``max_gap`` (1e6 on a 32 x 32 mask) costs what the
    whole image does, not what the gap does, and gives the same pairs.
    """
    if max_gap == 0:
        offs = np.array([(0, 0, 1), (0, 1, 0)] + ([(1, 0, 0)] if ndim == 3 else []))
    else:
        rz, ry, rx = (
            min(_reach(max_gap, s), max(int(n) - 1, 0))
            for s, n in zip(spacing, extent, strict=True)
        )
        if ndim == 2:
            rz = 0
        grid = np.stack(
            np.meshgrid(
                np.arange(0, rz + 1), np.arange(-ry, ry + 1), np.arange(-rx, rx + 1),
                indexing="ij",
            ),
            axis=-1,
        ).reshape(-1, 3)
        # lexicographically positive: (dz, dy, dx) > (0, 0, 0)
        dz, dy, dx = grid[:, 0], grid[:, 1], grid[:, 2]
        positive = (dz > 0) | ((dz == 0) & ((dy > 0) | ((dy == 0) & (dx > 0))))
        offs = grid[positive]
    arr = np.asarray(offs, np.int64).reshape(-1, 3)
    sp = np.asarray(spacing, np.float64)
    g = np.sqrt(np.sum((np.maximum(np.abs(arr) - 1, 0) * sp) ** 2, axis=1))
    keep = g <= max_gap
    arr, g = arr[keep], g[keep]
    nonzero = np.abs(arr).sum(axis=1)
    axis = np.where(nonzero == 1, np.argmax(np.abs(arr), axis=1), -1).astype(np.int64)
    return np.ascontiguousarray(arr), np.ascontiguousarray(g), axis


@dataclass(frozen=True)
class LinkagePartial:
    """Linkage pairs found in one tile (or the whole image), before merging.

    ``keys`` (M,) uint64 sorted: ``(id1 << 32) | id2`` with id1 < id2; ``gap`` (M,)
    float64: smallest gap in micrometres found for the pair; ``faces`` (M, 3) int64: shared
    faces whose normal lies along z, y, x.
    """

    keys: np.ndarray
    gap: np.ndarray
    faces: np.ndarray
    ndim: int
    spacing_zyx: tuple[float, float, float]
    max_gap: float


def linkage_tile(
    block: np.ndarray,
    *,
    physical_size: PhysicalSizeLike,
    max_gap: float = 0.0,
    core: Sequence[slice] | None = None,
) -> LinkagePartial:
    """Linkage pairs owned by one tile.

    Parameters
    ----------
    block : ndarray of shape (Y, X) or (Z, Y, X), integer
        The tile plus a halo of :func:`linkage_halo` pixels on every side that has image
        beyond it (no halo at the image border). Labels must be the global ids.
    physical_size : PhysicalSize, (x, y) or (x, y, z) in micrometres, or one number
    max_gap : float
        Gap in micrometres (see the module docstring); 0 = face contact only.
    core : sequence of slices or None
        The pixels of ``block`` this tile owns (block coordinates, step 1). Every pair of
        pixels is counted by the tile that owns its lexicographically first pixel, so tiles
        whose cores partition the image give partial results that :func:`merge_linkage`
        turns into exactly the whole-image table. None: the whole block.

    Returns
    -------
    LinkagePartial
    """
    lab3 = _check_labels(block, "linkage adjacency")
    ndim = block.ndim
    spacing = _spacing_zyx(physical_size, ndim, "linkage adjacency")
    g = _finite_nonneg(max_gap, "max_gap")
    if math.isinf(g):
        raise OptionError("max_gap must be finite (micrometres)")
    if core is None:
        bounds = [(0, s) for s in lab3.shape]
    else:
        core = tuple(core)
        if len(core) != ndim:
            raise OptionError(f"core must have {ndim} slices, got {len(core)}")
        bounds = []
        for sl, size in zip(core, block.shape, strict=True):
            start, stop, step = sl.indices(size)
            if step != 1:
                raise OptionError("core slices must have step 1")
            bounds.append((start, max(start, stop)))
        if ndim == 2:
            bounds = [(0, 1), *bounds]
    offs, odist, oaxis = _offsets(spacing, g, ndim, lab3.shape)
    keys, gap, faces = _linkage_kernel(
        lab3,
        bounds[0][0],
        bounds[0][1],
        bounds[1][0],
        bounds[1][1],
        bounds[2][0],
        bounds[2][1],
        offs,
        odist,
        oaxis,
        g == 0,
    )
    sel = np.flatnonzero(keys != np.uint64(0))
    sel = sel[np.argsort(keys[sel])]
    keys, gap, faces = keys[sel], gap[sel], faces[sel]
    sz, sy, sx = spacing
    return LinkagePartial(keys, gap, faces, ndim, (sz, sy, sx), g)


def merge_linkage(
    parts: Iterable[LinkagePartial], *, contact: bool = False
) -> pd.DataFrame:
    """Merge partial linkage results (tiles) into the adjacency table.

    Gaps merge by minimum, face counts by sum. Returns the same frame as
    :func:`linkage_adjacency` on the whole image.
    """
    plist = list(parts)
    if not plist:
        raise OptionError("merge_linkage needs at least one partial result")
    first = plist[0]
    for p in plist[1:]:
        if (p.ndim, p.spacing_zyx, p.max_gap) != (first.ndim, first.spacing_zyx, first.max_gap):
            raise OptionError("partial linkage results computed with different parameters")
    keys = np.concatenate([p.keys for p in plist])
    gap = np.concatenate([p.gap for p in plist])
    faces = np.concatenate([p.faces for p in plist])
    if len(plist) > 1 and keys.size:
        order = np.argsort(keys, kind="stable")
        keys, gap, faces = keys[order], gap[order], faces[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        keys = keys[starts]
        gap = np.minimum.reduceat(gap, starts)
        faces = np.add.reduceat(faces, starts, axis=0)
    return _linkage_frame(keys, gap, faces, first, contact)


def _linkage_frame(
    keys: np.ndarray, gap: np.ndarray, faces: np.ndarray, p: LinkagePartial, contact: bool
) -> pd.DataFrame:
    a, b = _unpack(keys)
    sz, sy, sx = p.spacing_zyx
    dist = np.where(faces.sum(axis=1) > 0, 0.0, gap).astype(np.float64)
    frame = pd.DataFrame({ID1: a, ID2: b, DISTANCE: dist}, copy=False)
    params: dict[str, Any] = {
        "kind": "linkage",
        "connectivity": "faces (6-connected)" if p.ndim == 3 else "faces (4-connected)",
        "max_gap": p.max_gap,
        "definition": (
            "pairs sharing a face (distance 0); with max_gap > 0 also pairs whose gap "
            "(smallest distance between their pixels taken as boxes of the physical pixel "
            "size) is <= max_gap micrometres, distance = that gap"
        ),
        "physical_size_um_zyx" if p.ndim == 3 else "physical_size_um_yx": list(
            p.spacing_zyx if p.ndim == 3 else p.spacing_zyx[1:]
        ),
    }
    if contact:
        if p.ndim == 3:
            measure = faces[:, 0] * (sy * sx) + faces[:, 1] * (sz * sx) + faces[:, 2] * (sz * sy)
            frame[CONTACT_AREA] = measure.astype(np.float64)
            params["contact"] = "shared faces times face area, square micrometre"
        else:
            measure = faces[:, 1] * sx + faces[:, 2] * sy
            frame[CONTACT_LENGTH] = measure.astype(np.float64)
            params["contact"] = "shared faces times face length, micrometre"
    params["n_edges"] = len(frame)
    frame.attrs["adjacency"] = params
    return frame


def linkage_adjacency(
    labels: np.ndarray,
    *,
    physical_size: PhysicalSizeLike,
    max_gap: float = 0.0,
    contact: bool = False,
) -> pd.DataFrame:
    """Neighbours by contact (SPEC section 6, ``<mask>-linkage-adjacency.csv``).

    Parameters
    ----------
    labels : ndarray of shape (Y, X) or (Z, Y, X), integer
        Mask, 0 = background; ids up to 2**32 - 1 (no allocation grows with the ids).
    physical_size : PhysicalSize, (x, y) or (x, y, z) in micrometres, or one number
    max_gap : float
        0 (default): pairs sharing a face (4-connected 2D, 6-connected 3D), distance 0.
        > 0: also pairs whose gap is at most ``max_gap`` micrometres (module docstring).
    contact : bool
        Add ``Contact length (micrometer)`` (2D) or ``Contact area (square micrometer)``
        (3D): shared faces times face length / area.

    Returns
    -------
    DataFrame with ``Object ID 1``, ``Object ID 2`` (int64), ``Distance (micrometer)``
    (float64) and optionally the contact column; sorted, id1 < id2, unique.
    ``frame.attrs["adjacency"]`` records the definition and parameters.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim not in (2, 3):
        part = linkage_tile(labels, physical_size=physical_size, max_gap=max_gap)
        return merge_linkage([part], contact=contact)
    # the slowest axis with room cut into parts, one per thread (the kernel releases the
    # GIL): each pair belongs to the part of its first pixel and merges exactly (integer
    # face counts, smallest gap), so the table does not depend on the cut
    axis = 0 if labels.ndim == 2 or labels.shape[0] >= _LINKAGE_PARTS else 1
    edges = np.linspace(0, labels.shape[axis], _LINKAGE_PARTS + 1).astype(int).tolist()
    cores: list[tuple[slice, ...]] = []
    for a, b in itertools.pairwise(edges):
        if b > a or len(cores) == 0:
            core = [slice(None)] * labels.ndim
            core[axis] = slice(a, b)
            cores.append(tuple(core))
    if len(cores) == 1:
        parts = [linkage_tile(labels, physical_size=physical_size, max_gap=max_gap)]
    else:
        with ThreadPoolExecutor(max_workers=len(cores)) as pool:
            parts = list(pool.map(
                lambda core: linkage_tile(
                    labels, physical_size=physical_size, max_gap=max_gap, core=core
                ),
                cores,
            ))
    return merge_linkage(parts, contact=contact)
