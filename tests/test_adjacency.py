"""Adjacency against independent references: neighbour-scanning loops, scipy's Delaunay
simplices, per-object distance transforms, brute-force distance matrices."""

from __future__ import annotations

import io
import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from maskbundle.errors import LabelError, OptionError, TableFormatError
from maskbundle.io.adjacency_csv import format_adjacency_csv, write_adjacency_csv
from maskbundle.measure.adjacency import (
    CONTACT_AREA,
    CONTACT_LENGTH,
    _delaunay_index_pairs,
    centroid_adjacency,
    centroids_um,
    linkage_adjacency,
    linkage_halo,
    linkage_tile,
    merge_linkage,
)
from maskbundle.model import PhysicalSize
from maskbundle.rules import ADJACENCY_COLUMNS
from maskbundle.synthetic import synthetic_nuclei_3d, synthetic_tissue

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# (x, y[, z]) micrometres per pixel; anisotropic on purpose
SIZES_2D = [(1.0, 1.0), (0.5, 0.8), (0.65, 0.3)]
SIZES_3D = [(1.0, 1.0, 1.0), (0.5, 0.7, 2.0), (0.3, 0.3, 1.1)]
GAPS = [0.37, 0.93, 1.41, 2.27]


# ----------------------------------------------------------------------------- strategies


@st.composite
def label_images(draw: st.DrawFn, ndim: int | None = None) -> np.ndarray:
    """Small label images 1..N (compacted) with 0 background, 2D or 3D."""
    nd = draw(st.sampled_from([2, 3])) if ndim is None else ndim
    if nd == 2:
        shape = (draw(st.integers(2, 11)), draw(st.integers(2, 11)))
    else:
        shape = (draw(st.integers(1, 4)), draw(st.integers(2, 7)), draw(st.integers(2, 7)))
    n = draw(st.integers(1, 9))
    size = int(np.prod(shape))
    style = draw(st.sampled_from(["noise", "blobs"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if style == "noise":
        arr = rng.integers(0, n + 1, size=size).reshape(shape)
    else:
        # Voronoi blobs with background holes: more realistic shapes, real gaps
        pts = rng.random((n, nd)) * np.array(shape)
        grid = np.stack(np.indices(shape), -1).reshape(-1, nd)
        d = ((grid[:, None, :] - pts[None]) ** 2).sum(-1)
        arr = (np.argmin(d, axis=1) + 1).reshape(shape)
        arr[rng.random(shape) < draw(st.sampled_from([0.0, 0.2, 0.5]))] = 0
    _, inv = np.unique(arr, return_inverse=True)
    # compact to 0..N keeping 0 as background
    uniq = np.unique(arr)
    out = inv.reshape(shape)
    if uniq[0] != 0:
        out = out + 1
    return out.astype(draw(st.sampled_from([np.uint16, np.uint32, np.int32, np.uint8])))


def size_for(labels: np.ndarray, k: int) -> tuple[float, ...]:
    return SIZES_2D[k % 3] if labels.ndim == 2 else SIZES_3D[k % 3]


def spacing_zyx(size: tuple[float, ...]) -> np.ndarray:
    return np.array(size[::-1], float)  # (y, x) or (z, y, x)


# ----------------------------------------------------------------------------- references


def brute_faces(labels: np.ndarray) -> dict[tuple[int, int], list[int]]:
    """Shared faces per pair and axis by scanning every pixel's forward neighbours."""
    out: dict[tuple[int, int], list[int]] = {}
    nd = labels.ndim
    for idx in itertools.product(*(range(s) for s in labels.shape)):
        a = int(labels[idx])
        if a == 0:
            continue
        for ax in range(nd):
            q = list(idx)
            q[ax] += 1
            if q[ax] >= labels.shape[ax]:
                continue
            b = int(labels[tuple(q)])
            if b and b != a:
                key = (min(a, b), max(a, b))
                out.setdefault(key, [0] * nd)[ax] += 1
    return out


def brute_gaps(labels: np.ndarray, spacing: np.ndarray) -> dict[tuple[int, int], float]:
    """Gap of every pair by a per-object distance transform.

    The gap between pixel boxes equals the centre distance to the object dilated by one
    full 3x3(x3) box, so: dilate object A, distance transform its complement with the
    pixel spacing, take the minimum over the pixels of B.
    """
    ids = [int(v) for v in np.unique(labels) if v]
    box = np.ones((3,) * labels.ndim, bool)
    out: dict[tuple[int, int], float] = {}
    for a in ids:
        grown = ndimage.binary_dilation(labels == a, structure=box)
        edt = ndimage.distance_transform_edt(~grown, sampling=spacing)
        for b in ids:
            if b > a:
                out[(a, b)] = float(edt[labels == b].min())
    return out


def brute_centroids(labels: np.ndarray, spacing: np.ndarray) -> tuple[list[int], np.ndarray]:
    ids = [int(v) for v in np.unique(labels) if v]
    pts = np.array([np.argwhere(labels == i).mean(axis=0) * spacing for i in ids])
    return ids, pts.reshape(len(ids), labels.ndim)


def edges_of(frame: pd.DataFrame) -> dict[tuple[int, int], float]:
    return {
        (int(a), int(b)): float(d)
        for a, b, d in zip(
            frame["Object ID 1"], frame["Object ID 2"], frame["Distance (micrometer)"],
            strict=True,
        )
    }


def check_graph(frame: pd.DataFrame) -> None:
    """Undirected, id1 < id2, sorted, unique, no self edges, int ids, float distances."""
    assert list(frame.columns[:3]) == list(ADJACENCY_COLUMNS)
    a = frame["Object ID 1"].to_numpy()
    b = frame["Object ID 2"].to_numpy()
    assert frame["Object ID 1"].dtype == np.int64 and frame["Object ID 2"].dtype == np.int64
    assert frame["Distance (micrometer)"].dtype == np.float64
    assert np.all(a < b)
    if a.size > 1:
        assert np.all((a[1:] > a[:-1]) | ((a[1:] == a[:-1]) & (b[1:] > b[:-1])))
    assert np.all(frame["Distance (micrometer)"].to_numpy() >= 0)


# ------------------------------------------------------------------------------- linkage


@SETTINGS
@given(label_images(), st.integers(0, 2))
def test_linkage_faces_equal_neighbour_scan(labels: np.ndarray, k: int) -> None:
    size = size_for(labels, k)
    frame = linkage_adjacency(labels, physical_size=size, contact=True)
    check_graph(frame)
    ref = brute_faces(labels)
    assert set(edges_of(frame)) == set(ref)
    assert np.all(frame["Distance (micrometer)"] == 0)
    # contact: faces along axis i have the measure of the other axes' pixel sizes
    sp = spacing_zyx(size)
    col = CONTACT_LENGTH if labels.ndim == 2 else CONTACT_AREA
    for (a, b), faces in ref.items():
        want = sum(n * np.prod(np.delete(sp, ax)) for ax, n in enumerate(faces))
        got = frame.loc[(frame["Object ID 1"] == a) & (frame["Object ID 2"] == b), col]
        assert got.item() == pytest.approx(want, rel=1e-12)


@SETTINGS
@given(label_images(), st.integers(0, 2), st.sampled_from(GAPS))
def test_linkage_gap_equals_distance_transform(
    labels: np.ndarray, k: int, max_gap: float
) -> None:
    size = size_for(labels, k)
    sp = spacing_zyx(size)
    ref = brute_gaps(labels, sp)
    assume(all(abs(g - max_gap) > 1e-9 for g in ref.values()))
    faces = brute_faces(labels)
    want = {p: (0.0 if p in faces else g) for p, g in ref.items() if g <= max_gap}
    frame = linkage_adjacency(labels, physical_size=size, max_gap=max_gap)
    check_graph(frame)
    got = edges_of(frame)
    assert set(got) == set(want)
    for p, g in want.items():
        assert got[p] == pytest.approx(g, abs=1e-9)


def test_linkage_gap_hand_example() -> None:
    # 1 and 2 separated by one background column, 3 touches 2 only at a corner
    labels = np.array(
        [
            [1, 0, 2, 0],
            [1, 0, 0, 3],
            [0, 0, 0, 0],
        ],
        np.uint16,
    )
    frame = linkage_adjacency(labels, physical_size=(0.5, 2.0))
    assert len(frame) == 0  # no shared face
    frame = linkage_adjacency(labels, physical_size=(0.5, 2.0), max_gap=0.6)
    assert edges_of(frame) == {(1, 2): 0.5, (2, 3): 0.0}
    frame = linkage_adjacency(labels, physical_size=(0.5, 2.0), max_gap=1.0)
    assert edges_of(frame) == {(1, 2): 0.5, (2, 3): 0.0, (1, 3): 1.0}


@SETTINGS
@given(
    label_images(),
    st.integers(0, 2),
    st.sampled_from([0.0, *GAPS]),
    st.integers(1, 5),
    st.integers(1, 5),
)
def test_linkage_tilewise_equals_whole(
    labels: np.ndarray, k: int, max_gap: float, ty: int, tx: int
) -> None:
    size = size_for(labels, k)
    whole = linkage_adjacency(labels, physical_size=size, max_gap=max_gap, contact=True)
    halo = linkage_halo(size, max_gap=max_gap, ndim=labels.ndim)
    tiles = [ty, tx] if labels.ndim == 2 else [1, ty, tx]
    parts = []
    starts = [range(0, s, t) for s, t in zip(labels.shape, tiles, strict=True)]
    for origin in itertools.product(*starts):
        lo = [max(o - h, 0) for o, h in zip(origin, halo, strict=True)]
        hi = [
            min(o + t + h, s)
            for o, t, h, s in zip(origin, tiles, halo, labels.shape, strict=True)
        ]
        block = labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
        core = tuple(
            slice(o - a, min(o + t, s) - a)
            for o, a, t, s in zip(origin, lo, tiles, labels.shape, strict=True)
        )
        parts.append(linkage_tile(block, physical_size=size, max_gap=max_gap, core=core))
    merged = merge_linkage(parts, contact=True)
    pd.testing.assert_frame_equal(merged, whole, check_exact=True)


def test_linkage_one_pixel_halo_is_enough() -> None:
    assert linkage_halo((0.5, 0.5)) == (1, 1)
    assert linkage_halo((0.5, 0.5, 2.0), ndim=3) == (1, 1, 1)
    assert linkage_halo((0.5, 0.25), max_gap=1.0) == (5, 3)


def test_linkage_synthetic_tissue_matches_shift_pairs() -> None:
    cells, _ = synthetic_tissue((300, 400), seed=3)
    frame = linkage_adjacency(cells, physical_size=0.5)
    check_graph(frame)
    pairs = set()
    for a, b in ((cells[1:], cells[:-1]), (cells[:, 1:], cells[:, :-1])):
        m = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[m], b[m]).astype(np.int64)
        hi = np.maximum(a[m], b[m]).astype(np.int64)
        pairs |= set(zip(lo.tolist(), hi.tolist(), strict=True))
    assert set(edges_of(frame)) == pairs
    assert len(pairs) > 300


def test_linkage_3d_synthetic_nuclei_gap() -> None:
    vol = synthetic_nuclei_3d((12, 40, 40), n_objects=12, seed=1)
    size = (0.5, 0.5, 1.0)
    frame = linkage_adjacency(vol, physical_size=size, max_gap=1.3)
    want = {p: g for p, g in brute_gaps(vol, spacing_zyx(size)).items() if g <= 1.3}
    faces = brute_faces(vol)
    want = {p: 0.0 if p in faces else g for p, g in want.items()}
    got = edges_of(frame)
    assert set(got) == set(want)
    for p in want:
        assert got[p] == pytest.approx(want[p], abs=1e-9)


# ------------------------------------------------------------------------------ centroid


def delaunay_reference(pts: np.ndarray) -> set[tuple[int, int]] | None:
    """Edges of scipy's Delaunay simplices (indices), None when Qhull cannot triangulate."""
    try:
        tri = Delaunay(pts)
    except (QhullError, ValueError):
        return None
    if tri.coplanar.size:
        return None
    edges = set()
    for simplex in tri.simplices:
        for i, j in itertools.combinations(sorted(int(v) for v in simplex), 2):
            edges.add((i, j))
    return edges


def _incircle(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> Fraction:
    """Exact in-circle determinant of d against triangle abc (0: on the circle)."""
    rows = [[Fraction(float(p[0])) - Fraction(float(d[0])),
             Fraction(float(p[1])) - Fraction(float(d[1]))] for p in (a, b, c)]
    m = [[x, y, x * x + y * y] for x, y in rows]
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def _orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Fraction:
    """Exact orientation of abc (> 0 counter-clockwise, 0 on one line)."""
    ax, ay, bx, by, cx, cy = (Fraction(float(v)) for v in (a[0], a[1], b[0], b[1], c[0], c[1]))
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)


def _on_a_line_with_a_third(pts: np.ndarray, i: int, j: int) -> bool:
    """Whether some other point lies on the line through i and j up to rounding."""
    if pts.shape[1] != 2:
        return False
    d = pts[j] - pts[i]
    rel = pts - pts[i]
    cross = np.abs(d[0] * rel[:, 1] - d[1] * rel[:, 0])
    scale = float(np.dot(d, d)) + float(np.max(np.abs(rel)) ** 2)
    near = cross <= 1e-9 * scale
    near[[i, j]] = False
    return bool(near.any())


def strict_delaunay_edges(pts: np.ndarray, ref: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Edges of scipy's triangulation that every Delaunay triangulation has (exact test).

    In 2D an interior edge is in every triangulation when the far point of its second
    triangle lies strictly outside the circle of its first (exact arithmetic). An edge
    whose four points lie on one circle is optional; one whose far point lies strictly
    inside is Qhull's floating-point mistake (no Delaunay triangulation has it). In 3D
    (not checked exactly here) every edge counts.
    """
    if pts.shape[1] != 2:
        return set(ref)
    tri = Delaunay(pts)
    out = set()
    for s, simplex in enumerate(tri.simplices):
        for k in range(3):
            i, j = sorted(int(v) for v in np.delete(simplex, k))
            other = tri.neighbors[s][k]
            if other == -1:
                out.add((i, j))
                continue
            d = next(int(v) for v in tri.simplices[other] if v not in (i, j))
            c = int(simplex[k])
            if _incircle(pts[i], pts[j], pts[c], pts[d]) * _orient(pts[i], pts[j], pts[c]) < 0:
                out.add((i, j))
    return out


@SETTINGS
@given(label_images(), st.integers(0, 2))
@example(np.array([[1, 3, 7], [1, 1, 6], [2, 2, 4], [2, 5, 4]], dtype=np.uint16), 2)
# four centroids on one line: Qhull keeps a sliver edge across one of them, Triangle another
@example(np.array([[7, 5, 5, 7], [4, 6, 6, 1], [0, 2, 2, 6], [7, 0, 3, 6], [1, 6, 0, 3],
                   [6, 2, 2, 2], [5, 2, 7, 3]], dtype=np.uint16), 0)
def test_delaunay_equals_scipy_simplices(labels: np.ndarray, k: int) -> None:
    size = size_for(labels, k)
    ids, pts = brute_centroids(labels, spacing_zyx(size))
    assume(len(ids) >= labels.ndim + 2)
    got_ids, got_pts = centroids_um(labels, physical_size=size)
    assert got_ids.tolist() == ids
    np.testing.assert_allclose(got_pts, pts, rtol=1e-12, atol=1e-12)
    # triangulate the very same coordinates: Qhull's choice among equally valid
    # triangulations of cospherical points may flip on a last-bit difference
    pts = got_pts
    ref = delaunay_reference(pts)
    assume(ref is not None)
    assert ref is not None
    full = centroid_adjacency(labels, physical_size=size, max_distance=math.inf)
    check_graph(full)
    want = {
        (ids[i], ids[j]): float(np.linalg.norm(pts[i] - pts[j])) for i, j in ref
    }
    got = edges_of(full)
    # where points lie on one circle (sphere) several triangulations are equally valid:
    # only edges that Qhull's triangulation has strictly (not on such a circle) must match
    strict = {(ids[i], ids[j]) for i, j in strict_delaunay_edges(pts, ref)}
    assert strict <= set(got)
    # Triangle decides exactly, Qhull in floating point: points off a hull line by a
    # rounding error give Triangle a sliver triangle (one more edge) that Qhull flattens
    # rounding off a line of three or more points can give either side such a sliver
    def slivers_of(edges: set[tuple[int, int]]) -> set[tuple[int, int]]:
        return {p for p in edges if _on_a_line_with_a_third(pts, ids.index(p[0]),
                                                            ids.index(p[1]))}

    extra, missing = slivers_of(set(got) - set(want)), slivers_of(set(want) - set(got))
    assert len(got) - len(extra) == len(want) - len(missing)
    assert all(p not in strict for p in (set(want) ^ set(got)) - extra - missing)
    for p in got:
        i, j = ids.index(p[0]), ids.index(p[1])
        assert got[p] == pytest.approx(float(np.linalg.norm(pts[i] - pts[j])), rel=1e-12)
    # default: edges longer than 3 x the median edge length are dropped
    bound = 3 * float(np.median(list(got.values())))
    default = centroid_adjacency(labels, physical_size=size)
    assert set(edges_of(default)) == {p for p, d in got.items() if d <= bound}
    assert default.attrs["adjacency"]["max_distance"] == pytest.approx(bound)


@SETTINGS
@given(label_images(), st.integers(0, 2), st.integers(1, 4))
def test_knn_equals_brute_force(labels: np.ndarray, k: int, kk: int) -> None:
    size = size_for(labels, k)
    ids, pts = brute_centroids(labels, spacing_zyx(size))
    n = len(ids)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    want: set[tuple[int, int]] = set()
    ke = min(kk, n - 1)
    for i in range(n):
        others = sorted((d[i, j], j) for j in range(n) if j != i)
        # skip ties at the k-th place, where "the k nearest" is ambiguous
        if ke < len(others):
            assume(others[ke][0] - others[ke - 1][0] > 1e-9)
        for _, j in others[:ke]:
            want.add((min(ids[i], ids[j]), max(ids[i], ids[j])))
    frame = centroid_adjacency(labels, physical_size=size, method="knn", k=kk)
    check_graph(frame)
    assert set(edges_of(frame)) == want
    for (a, b), dist in edges_of(frame).items():
        assert dist == pytest.approx(d[ids.index(a), ids.index(b)], rel=1e-12)


@SETTINGS
@given(label_images(), st.integers(0, 2), st.sampled_from([0.5, 1.3, 2.9, 5.0]))
def test_radius_equals_brute_force(labels: np.ndarray, k: int, r: float) -> None:
    size = size_for(labels, k)
    ids, pts = brute_centroids(labels, spacing_zyx(size))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    assume(np.all(np.abs(d - r) > 1e-9))
    want = {
        (ids[i], ids[j])
        for i in range(len(ids))
        for j in range(i + 1, len(ids))
        if d[i, j] <= r
    }
    frame = centroid_adjacency(labels, physical_size=size, method="radius", radius=r)
    check_graph(frame)
    assert set(edges_of(frame)) == want


@SETTINGS
@given(label_images(), st.integers(0, 2), st.randoms(use_true_random=False))
def test_invariant_under_relabelling(labels: np.ndarray, k: int, rnd: object) -> None:
    size = size_for(labels, k)
    n = int(labels.max())
    perm = np.arange(1, n + 1)
    rnd.shuffle(perm)  # type: ignore[attr-defined]
    lut = np.zeros(n + 1, np.int64)
    lut[1:] = perm
    relabelled = lut[labels].astype(np.uint32)
    back = np.zeros(n + 1, np.int64)
    back[perm] = np.arange(1, n + 1)

    def mapped(frame: pd.DataFrame) -> dict[tuple[int, int], float]:
        out = {}
        for (a, b), dist in edges_of(frame).items():
            x, y = int(back[a]), int(back[b])
            out[(min(x, y), max(x, y))] = dist
        return out

    for fn in (
        lambda lab: linkage_adjacency(lab, physical_size=size, max_gap=0.93),
        lambda lab: linkage_adjacency(lab, physical_size=size),
        lambda lab: centroid_adjacency(lab, physical_size=size, method="radius", radius=2.0),
    ):
        ref = edges_of(fn(labels))
        got = mapped(fn(relabelled))
        assert set(got) == set(ref)
        for p in ref:
            assert got[p] == pytest.approx(ref[p], abs=1e-9)


# -------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("ndim", [2, 3])
def test_zero_or_one_object_gives_header_only(n: int, ndim: int) -> None:
    labels = np.zeros((4,) * ndim, np.uint16)
    if n:
        labels[(1,) * ndim] = 1
    size = (1.0, 1.0, 1.0) if ndim == 3 else (1.0, 1.0)
    for method in ("delaunay", "knn"):
        frame = centroid_adjacency(
            labels, physical_size=size, method=method  # type: ignore[arg-type]
        )
        assert list(frame.columns) == list(ADJACENCY_COLUMNS) and len(frame) == 0
    frame = centroid_adjacency(labels, physical_size=size, method="radius", radius=3.0)
    assert len(frame) == 0
    frame = linkage_adjacency(labels, physical_size=size, max_gap=2.0, contact=True)
    assert len(frame) == 0 and frame.shape[1] == 4


def test_two_objects_one_edge() -> None:
    labels = np.zeros((5, 9), np.uint8)
    labels[2, 1] = 1
    labels[2, 7] = 2
    frame = centroid_adjacency(labels, physical_size=(0.5, 1.0))
    assert edges_of(frame) == {(1, 2): 3.0}


def test_collinear_centroids_form_a_chain() -> None:
    labels = np.zeros((3, 20), np.uint16)
    xs = [1, 4, 5, 9, 15, 18]
    for i, x in enumerate(xs, start=1):
        labels[1, x] = i
    frame = centroid_adjacency(labels, physical_size=(1.0, 1.0), max_distance=math.inf)
    assert edges_of(frame) == {
        (i, i + 1): float(xs[i] - xs[i - 1]) for i in range(1, len(xs))
    }


def test_coplanar_3d_centroids_triangulated_in_their_plane() -> None:
    vol = np.zeros((3, 10, 10), np.uint16)
    rng = np.random.default_rng(5)
    cells = rng.permutation(100)[:8]
    for i, c in enumerate(cells, start=1):
        vol[1, c // 10, c % 10] = i
    frame = centroid_adjacency(vol, physical_size=(1.0, 1.0, 2.0), max_distance=math.inf)
    plane = vol[1]
    ids, pts = brute_centroids(plane, np.array([1.0, 1.0]))
    ref = delaunay_reference(pts)
    assert ref is not None
    assert set(edges_of(frame)) == {(ids[i], ids[j]) for i, j in ref}


def test_duplicate_centroids_linked_at_zero() -> None:
    # a ring (2) around a disc (1) share the centroid; 3 and 4 elsewhere
    labels = np.zeros((9, 20), np.uint16)
    labels[3:6, 3:6] = 2
    labels[4, 4] = 1
    labels[1, 15] = 3
    labels[7, 12] = 4
    frame = centroid_adjacency(labels, physical_size=(1.0, 1.0), max_distance=math.inf)
    got = edges_of(frame)
    assert got[(1, 2)] == 0.0
    # both twins inherit the twin point's Delaunay edges
    assert {(1, 3), (2, 3), (1, 4), (2, 4), (3, 4)} <= set(got)


def test_anisotropic_3d_distances() -> None:
    vol = np.zeros((5, 4, 4), np.uint16)
    vol[0, 1, 1] = 1
    vol[2, 1, 1] = 2
    vol[0, 1, 3] = 3
    frame = centroid_adjacency(vol, physical_size=(0.5, 0.5, 2.0), max_distance=math.inf)
    got = edges_of(frame)
    assert got[(1, 2)] == pytest.approx(4.0)
    assert got[(1, 3)] == pytest.approx(1.0)
    assert got[(2, 3)] == pytest.approx(math.hypot(4.0, 1.0))


def test_physical_size_object_and_units() -> None:
    labels = np.zeros((4, 8), np.uint16)
    labels[1, 1] = 1
    labels[1, 5] = 2
    ps = PhysicalSize(500.0, 500.0, unit_x="nm", unit_y="nm")
    frame = centroid_adjacency(labels, physical_size=ps)
    assert edges_of(frame) == {(1, 2): 2.0}


def test_parameters_recorded() -> None:
    cells, _ = synthetic_tissue((128, 128))
    frame = centroid_adjacency(cells, physical_size=0.5, method="knn", k=4)
    params = frame.attrs["adjacency"]
    assert params["kind"] == "centroid" and params["method"] == "knn" and params["k"] == 4
    frame = linkage_adjacency(cells, physical_size=0.5, max_gap=1.0)
    assert frame.attrs["adjacency"]["max_gap"] == 1.0
    assert "definition" in frame.attrs["adjacency"]


def test_deterministic() -> None:
    cells, _ = synthetic_tissue((256, 256), seed=2)
    for fn in (
        lambda: centroid_adjacency(cells, physical_size=0.5),
        lambda: linkage_adjacency(cells, physical_size=0.5, max_gap=1.0, contact=True),
    ):
        a, b = fn(), fn()
        pd.testing.assert_frame_equal(a, b, check_exact=True)


# ------------------------------------------------------------------------------ errors


def test_bad_inputs_raise_named_errors() -> None:
    good = np.ones((3, 3), np.uint16)
    with pytest.raises(LabelError, match="integer"):
        linkage_adjacency(good.astype(float), physical_size=1.0)
    with pytest.raises(LabelError, match="negative"):
        centroid_adjacency(-good.astype(np.int32), physical_size=1.0)
    with pytest.raises(LabelError, match="shape"):
        linkage_adjacency(np.ones((2, 2, 2, 2), np.uint8), physical_size=1.0)
    with pytest.raises(LabelError, match="2\\*\\*32"):
        linkage_adjacency(good.astype(np.uint64) * np.uint64(2**33), physical_size=1.0)
    with pytest.raises(LabelError, match="relabel"):
        centroid_adjacency(good.astype(np.uint32) * 1000, physical_size=1.0)
    with pytest.raises(OptionError, match="z"):
        linkage_adjacency(np.ones((2, 2, 2), np.uint8), physical_size=(1.0, 1.0))
    with pytest.raises(OptionError, match="method"):
        centroid_adjacency(good, physical_size=1.0, method="voronoi")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="radius"):
        centroid_adjacency(good, physical_size=1.0, method="radius")
    with pytest.raises(OptionError, match="k must"):
        centroid_adjacency(good, physical_size=1.0, method="knn", k=0)
    with pytest.raises(OptionError, match="max_gap"):
        linkage_adjacency(good, physical_size=1.0, max_gap=-1)
    with pytest.raises(OptionError, match="max_distance"):
        centroid_adjacency(good, physical_size=1.0, max_distance=float("nan"))
    with pytest.raises(OptionError, match="physical size"):
        linkage_adjacency(good, physical_size=(0.0, 1.0))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("first", [1, 2])
def test_gap_between_slabs_exposed_on_one_side_only(axis: int, first: int) -> None:
    # each slab's only non-object neighbour lies along one axis on one side, so every
    # boundary-pixel test direction must be right for the gap to be found
    vol = np.zeros((4, 4, 4), np.uint16)
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[axis] = slice(0, 1)
    hi[axis] = slice(3, 4)
    vol[tuple(lo)] = first
    vol[tuple(hi)] = 3 - first
    size = (0.5, 0.7, 1.1)
    sp = spacing_zyx(size)
    frame = linkage_adjacency(vol, physical_size=size, max_gap=2.5)
    assert edges_of(frame) == pytest.approx(brute_gaps(vol, sp))
    assert edges_of(frame)[(1, 2)] == pytest.approx(2 * sp[axis])
    flat = vol[0] if axis else vol[:, 0]
    frame = linkage_adjacency(flat, physical_size=size[:2] if axis else size[::2], max_gap=2.5)
    assert len(frame) == 1


# ---------------------------------------------------------------------------- CSV writer


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.floats(0, 1e9, allow_nan=False),
            st.floats(-1e6, 1e6, allow_nan=False),
        ),
        max_size=30,
    )
)
def test_adjacency_csv_formats_like_python(rows: list[tuple[int, int, float, float]]) -> None:
    frame = pd.DataFrame(
        {
            "Object ID 1": np.array([r[0] for r in rows], np.int64),
            "Object ID 2": np.array([r[1] for r in rows], np.uint32),
            "Distance (micrometer)": np.array([r[2] for r in rows], np.float64),
            "Contact length (micrometer)": np.array([r[3] for r in rows], np.float64),
        }
    )

    def py(v: float) -> str:  # Python's own decimal formatting, then trailing zeros dropped
        text = f"{round(v * 1e6) / 1e6:.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text

    want = ",".join(frame.columns) + "\n" + "".join(
        f"{a},{b},{py(c)},{py(d)}\n" for a, b, c, d in rows
    )
    got = format_adjacency_csv(frame).decode("ascii")
    assert got == want
    back = pd.read_csv(io.StringIO(got))
    assert list(back.columns) == list(frame.columns)
    if rows:
        np.testing.assert_allclose(back.iloc[:, 2:], frame.iloc[:, 2:], atol=5.1e-7, rtol=1e-14)
        assert back.iloc[:, :2].to_numpy().tolist() == frame.iloc[:, :2].to_numpy().tolist()


def test_adjacency_csv_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    ok = {"Object ID 1": [1], "Object ID 2": [2]}
    with pytest.raises(TableFormatError, match="finite"):
        format_adjacency_csv(pd.DataFrame({**ok, "Distance (micrometer)": [math.inf]}))
    with pytest.raises(TableFormatError, match="integers"):
        format_adjacency_csv(pd.DataFrame({"Object ID 1": [1.5], "Object ID 2": [2]}))
    with pytest.raises(TableFormatError, match="negative"):
        format_adjacency_csv(pd.DataFrame({"Object ID 1": [-1], "Object ID 2": [2]}))
    with pytest.raises(TableFormatError, match="header"):
        format_adjacency_csv(pd.DataFrame({**ok, "a,b": [0.0]}))
    write_adjacency_csv(tmp_path / "x.csv", pd.DataFrame({**ok, "Distance (micrometer)": [0.0]}))
    assert (tmp_path / "x.csv").read_bytes() == (
        b"Object ID 1,Object ID 2,Distance (micrometer)\n1,2,0\n"
    )


def test_duplicate_centroids_in_a_larger_image() -> None:
    # rings around discs (same centroid) among ordinary cells; every ring/disc pair is an
    # edge at distance 0 and each twin has the Delaunay edges of the shared point
    cells, _ = synthetic_tissue((200, 200), seed=4)
    labels = cells.astype(np.uint32)
    n = int(labels.max())
    extra = np.zeros_like(labels)
    for k, (y, x) in enumerate([(5, 5), (100, 190), (190, 60)]):
        extra[y - 1 : y + 2, x - 1 : x + 2] = n + 2 * k + 1
        extra[y, x] = n + 2 * k + 2
    labels = np.where(extra > 0, extra, labels)
    _, inv = np.unique(labels, return_inverse=True)
    labels = inv.reshape(labels.shape).astype(np.uint32)  # compact (0 stays 0)
    ids, pts = centroids_um(labels, physical_size=1.0)
    got = edges_of(centroid_adjacency(labels, physical_size=1.0, max_distance=math.inf))
    uniq, inverse = np.unique(pts, axis=0, return_inverse=True)
    assert uniq.shape[0] == ids.size - 3
    ref_u = delaunay_reference(uniq)
    assert ref_u is not None
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(inverse.reshape(-1)):
        groups.setdefault(int(g), []).append(int(ids[i]))
    want = set()
    for a, b in ref_u:
        for x in groups[a]:
            for y in groups[b]:
                want.add((min(x, y), max(x, y)))
    for members in groups.values():
        for x, y in itertools.combinations(sorted(members), 2):
            want.add((x, y))
            assert got[(x, y)] == 0.0
    assert set(got) == want


def test_three_objects_with_one_centroid() -> None:
    labels = np.zeros((11, 24), np.uint16)
    labels[1:8, 1:8] = 3  # ring of rings around a disc, all centred on (4, 4)
    labels[2:7, 2:7] = 2
    labels[3:6, 3:6] = 1
    labels[4, 4] = 4
    labels[9, 20] = 5
    labels[2, 16] = 6
    frame = centroid_adjacency(labels, physical_size=(1.0, 1.0), max_distance=math.inf)
    got = edges_of(frame)
    for x, y in itertools.combinations([1, 2, 3, 4], 2):
        assert got[(x, y)] == 0.0
    for x in (1, 2, 3, 4):
        assert (x, 5) in got and (x, 6) in got
    assert (5, 6) in got and len(got) == 6 + 8 + 1


def test_tile_api_refusals() -> None:
    lab = np.ones((4, 4), np.uint16)
    with pytest.raises(OptionError, match="2 slices"):
        linkage_tile(lab, physical_size=1.0, core=(slice(0, 2),))
    with pytest.raises(OptionError, match="step 1"):
        linkage_tile(lab, physical_size=1.0, core=(slice(0, 4, 2), slice(0, 4)))
    a = linkage_tile(lab, physical_size=1.0)
    b = linkage_tile(lab, physical_size=1.0, max_gap=0.5)
    with pytest.raises(OptionError, match="different parameters"):
        merge_linkage([a, b])
    with pytest.raises(OptionError, match="at least one"):
        merge_linkage([])
    with pytest.raises(OptionError, match="finite"):
        linkage_halo(1.0, max_gap=math.inf)


# -------------------------------------------------------------- 2D Delaunay (Triangle)


def _qhull_edges(pts: np.ndarray) -> set[tuple[int, int]]:
    tri = Delaunay(pts)
    assert tri.coplanar.size == 0
    return {(min(a, b), max(a, b)) for s in tri.simplices.tolist()
            for a, b in itertools.combinations(s, 2)}


def _edge_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs.tolist()}


@pytest.mark.parametrize("n", [3, 4, 5, 50, 3000])
@pytest.mark.parametrize("seed", [0, 1])
def test_planar_delaunay_equals_qhull_on_random_points(n: int, seed: int) -> None:
    pytest.importorskip("triangle")
    pts = np.random.default_rng(seed).random((n, 2)) * 1000
    assert _edge_set(_delaunay_index_pairs(pts)) == _qhull_edges(pts)


def test_planar_delaunay_without_triangle_uses_qhull(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_triangle(name: str, *args: object, **kw: object) -> object:
        if name == "triangle":
            raise ImportError("no triangle")
        return real(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_triangle)
    pts = np.random.default_rng(3).random((400, 2))
    assert _edge_set(_delaunay_index_pairs(pts)) == _qhull_edges(pts)


def test_planar_delaunay_on_a_grid_is_a_valid_triangulation() -> None:
    # every unit square has four cocircular corners: either diagonal is Delaunay; defined:
    # all grid edges, exactly one diagonal per square (whichever), like Qhull
    pytest.importorskip("triangle")
    ny, nx = 13, 17
    g = np.stack(np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float)), -1)
    pts = g.reshape(-1, 2)
    got = _edge_set(_delaunay_index_pairs(pts))
    qh = _qhull_edges(pts)
    strict = strict_delaunay_edges(pts, qh)
    assert strict <= got and len(got) == len(qh)
    for y in range(ny - 1):
        for x in range(nx - 1):
            a, b, c, d = y * nx + x, y * nx + x + 1, (y + 1) * nx + x, (y + 1) * nx + x + 1
            assert {(a, b), (a, c), (b, d), (c, d)} <= got
            assert ((a, d) in got) + ((b, c) in got) == 1
    # deterministic for the same input
    assert _edge_set(_delaunay_index_pairs(pts)) == got


def test_planar_delaunay_with_duplicates_links_every_twin() -> None:
    pytest.importorskip("triangle")
    rng = np.random.default_rng(5)
    base = rng.random((300, 2)) * 100
    pts = np.concatenate([base, base[:20], base[:3]])
    order = rng.permutation(len(pts))
    pts = pts[order]
    uniq, inverse = np.unique(pts, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(inverse.tolist()):
        groups.setdefault(g, []).append(i)
    want = set()
    for a, b in _qhull_edges(uniq):
        want |= {(min(x, y), max(x, y)) for x in groups[a] for y in groups[b]}
    for members in groups.values():
        want |= set(itertools.combinations(sorted(members), 2))
    got = _edge_set(_delaunay_index_pairs(pts))
    assert got == want


def test_planar_delaunay_collinear_points_form_a_chain() -> None:
    t = np.random.default_rng(2).permutation(40).astype(float)
    pts = np.stack([t * 0.5 + 3, t * 2.0 - 1], -1)
    got = _edge_set(_delaunay_index_pairs(pts))
    order = np.argsort(t)
    assert got == {(min(a, b), max(a, b)) for a, b in itertools.pairwise(order)}


@pytest.mark.parametrize("parts", [1, 3])
def test_linkage_parts_on_threads_give_the_same_table(
    parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskbundle.measure import adjacency as adj

    cells, _ = synthetic_tissue((160, 150))
    vol = synthetic_nuclei_3d((6, 40, 40))
    cases = [(cells, 0.5, 0.0), (cells, (0.5, 0.7), 1.3), (vol, (0.5, 0.5, 1.0), 1.1)]
    two = [linkage_adjacency(a, physical_size=ps, max_gap=g, contact=True) for a, ps, g in cases]
    monkeypatch.setattr(adj, "_LINKAGE_PARTS", parts)
    for (a, ps, g), ref in zip(cases, two, strict=True):
        got = linkage_adjacency(a, physical_size=ps, max_gap=g, contact=True)
        pd.testing.assert_frame_equal(got, ref)
        assert got.attrs == ref.attrs


def test_lex_order_is_numpys_lexsort() -> None:
    from maskbundle.measure.adjacency import _lex_order

    rng = np.random.default_rng(7)
    for t in range(60):
        m = int(rng.integers(1, 300))
        # few distinct values: long runs of ties in the first column, twins, -0.0 == 0.0
        p = rng.integers(-3, int(rng.integers(1, 12)), (m, 2)).astype(np.float64) * 0.5
        p[rng.integers(0, m, 2)] = -0.0
        if t % 5 == 0:
            p[rng.integers(0, m, 2), 0] = np.nan
        assert np.array_equal(_lex_order(p), np.lexsort((p[:, 1], p[:, 0])))


def test_kept_edge_rows_are_the_sorted_masked_rows() -> None:
    from maskbundle.measure.adjacency import _edge_frame, _kept_edge_frame

    rng = np.random.default_rng(8)
    for t in range(60):
        m = int(rng.integers(2, 50))
        e = int(rng.integers(0, 150))
        pairs = rng.integers(0, m, (e, 2))  # either order, repeats allowed
        dist = rng.random(e)
        if e:
            dist[rng.integers(0, e, 2)] = np.nan
        ids = np.cumsum(rng.integers(1, 4, m))
        bound = (0.5, math.inf, 0.0)[t % 3]
        keep = dist <= bound
        want = _edge_frame(ids, pairs[keep], dist[keep])
        pd.testing.assert_frame_equal(_kept_edge_frame(ids, pairs, dist, bound), want)


def test_adjacency_csv_in_blocks_is_the_row_by_row_text(tmp_path: Path) -> None:
    # enough rows for the formatter's two threads; the text of every row on its own
    n = 100_003
    rng = np.random.default_rng(9)
    a = np.arange(1, n + 1, dtype=np.int64)
    d = np.round(rng.random(n) * 50, 3)
    frame = pd.DataFrame({"Object ID 1": a, "Object ID 2": a + 1, "Distance (micrometer)": d})
    want = "Object ID 1,Object ID 2,Distance (micrometer)\n" + "".join(
        f"{x},{x + 1},{repr(v).rstrip('0').rstrip('.')}\n" for x, v in zip(a.tolist(), d.tolist(), strict=True))
    assert format_adjacency_csv(frame).decode("ascii") == want
    write_adjacency_csv(tmp_path / "e.csv", frame)
    assert (tmp_path / "e.csv").read_text("ascii") == want
