"""Label image to polygons: the pixel-edge outline of every object, holes and parts included.

Each object becomes a multi-polygon whose rings run along pixel edges (vertices at
integer pixel corners, ``x`` = column, ``y`` = row, origin at the top-left corner of the
image), which is how QuPath itself traces label images. Pixel centres ``(c + 0.5,
r + 0.5)`` never lie on such an outline, so the pixel-centre rule (a pixel belongs to the
polygon whose interior holds its centre) gives back exactly the object's pixels.

Parts are 4-connected: two pixels of one object that touch only at a corner are traced
as two parts (the outline turns towards the object at such a corner). A hole is a
4-connected region of other pixels enclosed by one part; holes may touch their exterior
or each other at a single corner (valid OGC polygons), no ring touches itself.

One compiled pass over the image walks every boundary edge once (the outline keeps the
object on its right-hand side on screen, i.e. exterior rings run counter-clockwise in the
``x``/``y`` numbers, as RFC 7946 asks, and holes clockwise); only the corners are kept.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import LabelError

__all__ = ["ObjectOutline", "label_outlines"]

# Side s of pixel (r, c): 0 top, 1 right, 2 bottom, 3 left. Travelling along side s keeps
# the pixel on the right-hand side (screen coordinates, y down).
_NR = np.array([-1, 0, 1, 0], dtype=np.int64)  # neighbour across side s
_NC = np.array([0, 1, 0, -1], dtype=np.int64)
_DR = np.array([0, 1, 0, -1], dtype=np.int64)  # direction of travel along side s
_DC = np.array([1, 0, -1, 0], dtype=np.int64)
_SX = np.array([0, 1, 1, 0], dtype=np.int64)  # start corner of side s, relative to (c, r)
_SY = np.array([0, 0, 1, 1], dtype=np.int64)


@numba.njit(cache=True)
def _at(lab: np.ndarray, r: int, c: int) -> np.uint64:
    if r < 0 or c < 0 or r >= lab.shape[0] or c >= lab.shape[1]:
        return np.uint64(0)
    return np.uint64(lab[r, c])


@numba.njit(cache=True)
def _trace(
    lab: np.ndarray,
    nr_: np.ndarray,
    nc_: np.ndarray,
    dr_: np.ndarray,
    dc_: np.ndarray,
    sx_: np.ndarray,
    sy_: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(corners (K, 2) as x, y; ring offsets (R + 1,); label and saddle flag of each ring).

    A ring is flagged when it turned right at a saddle (two diagonal pixels of its object
    with the other two not): only such a ring can pass one corner twice.
    """
    h, w = lab.shape
    visited = np.zeros((h, w), dtype=np.uint8)
    cap = 1024
    xy = np.empty((cap, 2), dtype=np.int64)
    n = 0
    offsets = [0]
    ring_labels = []
    ring_saddles = []
    for r in range(h):
        for c in range(w):
            lv = np.uint64(lab[r, c])
            if lv == 0 or visited[r, c] == 15:
                continue
            if (
                0 < r < h - 1
                and 0 < c < w - 1
                and lab[r - 1, c] == lab[r, c]
                and lab[r + 1, c] == lab[r, c]
                and lab[r, c - 1] == lab[r, c]
                and lab[r, c + 1] == lab[r, c]
            ):
                continue  # inside an object: no boundary side (the common case)
            for s in range(4):
                if visited[r, c] & (1 << s):
                    continue
                if _at(lab, r + nr_[s], c + nc_[s]) == lv:
                    continue  # not a boundary side
                start = n
                saddle = False
                pr, pc, ps = r, c, s
                while True:
                    visited[pr, pc] |= np.uint8(1 << ps)
                    qr, qc = pr + dr_[ps], pc + dc_[ps]
                    if _at(lab, qr, qc) != lv:  # turn right, around this pixel
                        nr, nc, ns = pr, pc, (ps + 1) % 4
                        if _at(lab, qr + nr_[ps], qc + nc_[ps]) == lv:
                            saddle = True
                    elif _at(lab, qr + nr_[ps], qc + nc_[ps]) != lv:  # straight on
                        nr, nc, ns = qr, qc, ps
                    else:  # turn left, around a concave corner
                        nr, nc, ns = qr + nr_[ps], qc + nc_[ps], (ps + 3) % 4
                    closing = nr == r and nc == c and ns == s
                    if ns != ps and not (closing and ps == s):
                        if n == cap:
                            cap *= 2
                            grown = np.empty((cap, 2), dtype=np.int64)
                            grown[:n] = xy[:n]
                            xy = grown
                        xy[n, 0] = nc + sx_[ns]
                        xy[n, 1] = nr + sy_[ns]
                        n += 1
                    if closing:
                        break
                    pr, pc, ps = nr, nc, ns
                if n > start:
                    # the corner reached last closes the ring where it started; put it first
                    last_x, last_y = xy[n - 1, 0], xy[n - 1, 1]
                    for k in range(n - 1, start, -1):
                        xy[k, 0] = xy[k - 1, 0]
                        xy[k, 1] = xy[k - 1, 1]
                    xy[start, 0] = last_x
                    xy[start, 1] = last_y
                offsets.append(n)
                ring_labels.append(lv)
                ring_saddles.append(saddle)
    out_offsets = np.array(offsets, dtype=np.int64)
    out_labels = np.empty(len(ring_labels), dtype=np.uint64)
    out_saddles = np.zeros(len(ring_labels), dtype=np.bool_)
    for i in range(len(ring_labels)):
        out_labels[i] = ring_labels[i]
        out_saddles[i] = ring_saddles[i]
    return xy[:n].copy(), out_offsets, out_labels, out_saddles


def _simple_loops(ring: np.ndarray) -> list[np.ndarray]:
    """Split a ring that passes a corner twice into loops that pass each corner once.

    Such a ring goes round background that reaches the outside (or another hole) only
    through a corner; the loop cut off is that background as a hole touching the ring at
    one point, which OGC (and JTS, QuPath's geometry library) accepts, where a ring
    touching itself is invalid. Parity of every pixel centre is unchanged.
    """
    loops: list[np.ndarray] = []
    path: list[tuple[int, int]] = []
    where: dict[tuple[int, int], int] = {}
    for x, y in ring.tolist():
        v = (x, y)
        i = where.get(v)
        if i is not None:
            loop = path[i:]
            for u in loop[1:]:
                del where[u]
            del path[i + 1 :]
            loops.append(np.array(loop, dtype=np.int64))
        else:
            where[v] = len(path)
            path.append(v)
    loops.append(np.array(path, dtype=np.int64))
    return loops


def _signed_area2(ring: np.ndarray) -> int:
    """Twice the shoelace area of a closed ring given without its repeated first vertex."""
    x = ring[:, 0]
    y = ring[:, 1]
    return int(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inside(ring: np.ndarray, px: float, py: float) -> bool:
    """Even-odd test of a point that lies on no edge of ``ring``."""
    x = ring[:, 0].astype(np.float64)
    y = ring[:, 1].astype(np.float64)
    x2 = np.roll(x, -1)
    y2 = np.roll(y, -1)
    crosses = (y > py) != (y2 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x + (py - y) * (x2 - x) / (y2 - y)
    return bool(np.count_nonzero(crosses & (px < xi)) % 2)


# One object: its parts, each a list of rings (exterior first, then holes); a ring is an
# (n, 2) int64 array of (x, y) corners, not closed (the first vertex is not repeated).
ObjectOutline = list[list[np.ndarray]]


def _assemble(rings: list[np.ndarray]) -> ObjectOutline:
    if len(rings) == 1:
        return [rings]
    areas = [_signed_area2(r) for r in rings]
    shells = [i for i, a in enumerate(areas) if a > 0]
    holes = [i for i, a in enumerate(areas) if a < 0]
    parts: dict[int, list[np.ndarray]] = {i: [rings[i]] for i in shells}
    for h in holes:
        ring = rings[h]
        # a point half-way along the hole's first edge lies on no other ring
        step = np.sign(ring[1] - ring[0])
        px, py = ring[0, 0] + 0.5 * step[0], ring[0, 1] + 0.5 * step[1]
        owner = min(
            (i for i in shells if _inside(rings[i], px, py)), key=lambda i: areas[i], default=None
        )
        if owner is None:  # cannot happen for a traced label image; keep the data visible
            raise LabelError("outline tracing found a hole outside every part of its object")
        parts[owner].append(ring)
    return [parts[i] for i in shells]


def label_outlines(labels: np.ndarray) -> dict[int, ObjectOutline]:
    """Pixel-edge multi-polygons of every object of a 2D label image.

    Parameters
    ----------
    labels : ndarray of shape (Y, X), unsigned or non-negative integer
        0 is background.

    Returns
    -------
    dict of int to list of parts
        Object label (ascending) -> its parts in the order their top-left pixel comes in
        raster order; each part is ``[exterior, hole, hole, ...]``, each ring an (n, 2)
        int64 array of ``(x, y)`` corners without the closing repeat.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise LabelError(f"outlines are traced on 2D label images; got shape {lab.shape}")
    if lab.dtype.kind not in "ui":
        raise LabelError(f"labels must be integers to trace outlines, got {lab.dtype}")
    if lab.dtype.kind == "i":
        if lab.size and int(lab.min()) < 0:
            raise LabelError("labels must be non-negative to trace outlines")
        lab = lab.astype(np.uint64)
    xy, offsets, ring_labels, saddles = _trace(
        np.ascontiguousarray(lab), _NR, _NC, _DR, _DC, _SX, _SY
    )
    by_label: dict[int, list[np.ndarray]] = {}
    for k, lv in enumerate(ring_labels.tolist()):
        ring = xy[offsets[k] : offsets[k + 1]]
        rings = by_label.setdefault(int(lv), [])
        if saddles[k]:
            rings.extend(_simple_loops(ring))
        else:
            rings.append(ring)
    return {lv: _assemble(by_label[lv]) for lv in sorted(by_label)}
