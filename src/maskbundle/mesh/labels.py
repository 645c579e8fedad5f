"""Label volume -> one closed triangle mesh per object, in micrometres (pure, no I/O).

Convention (tested in ``tests/test_mesh.py``):

- vertices are (x, y, z) in micrometres; the centre of voxel ``labels[z, y, x]`` is at
  ``(x * px, y * py, z * pz)``, the same origin as the objects table's centroids. The
  surface of an object runs half a voxel outside its outermost voxel centres;
- every surface is closed, including where an object touches the volume border (the
  volume is padded with one voxel of background for meshing and the shift is undone);
- triangles wind counter-clockwise seen from outside (outward normals, positive volume);
- ``normals`` are unit, area-weighted vertex normals computed in physical space (so they
  are right for anisotropic voxels).

zmesh's multi-label marching cubes meshes every object in one pass; the main thread takes
each object's triangles out of zmesh (which holds the GIL) while two worker threads convert,
simplify and compute normals in compiled code without the GIL, batch by batch, results
collected in order (threads, not numba's OpenMP runtime, which aborts fork()ed children).
Simplification is
ours (:mod:`maskbundle.mesh.simplify`), not zmesh's: ``Mesher.get(..., reduction_factor=)``
reuses simplifier state between calls (the same object simplified twice gives 244 then
238 triangles), ``Mesher.simplify`` is deterministic but ran at ~0.3 M triangles/s here
and bounds an area-weighted quadric in voxel units, and fast-simplification (fqmr) opened
~15 % of the surfaces (no link-condition check).
"""

from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ..errors import LabelError, OptionError
from ..labels.checks import check_label_array
from ..model import PhysicalSize
from .simplify import simplify_one

__all__ = [
    "DEFAULT_ERROR_VOXELS",
    "DEFAULT_REDUCTION",
    "ObjectMesh",
    "default_max_error",
    "mesh_labels",
    "vertex_normals",
]

# Upper limit of the simplification factor by default: the error bound decides first.
DEFAULT_REDUCTION = 100
# Default max_error in largest voxel edges. The bound limits the *sum* of squared distances
# to the planes merged into a vertex, so real deviations are far smaller: at 3 voxels, on
# the benchmark volume (voxel 0.5 x 0.5 x 1 um), full-resolution vertices lie a median
# 0.17 um and a 99th percentile 0.47 um (about one x/y voxel) from the simplified surface,
# and the glb is ~18x smaller than at full resolution (~29 MB for ~5,000 cells).
DEFAULT_ERROR_VOXELS = 3.0
_BATCH_FACES = 1 << 18  # full-resolution triangles handed to a worker thread at once
# Worker threads run the compiled (nogil) part; zmesh holds the GIL in the main thread.
# Threads, not numba's parallel runtime: its OpenMP pool makes fork()ed children abort.
_WORKERS = max(1, min(2, os.cpu_count() or 1))
_IN_FLIGHT = 2  # batches submitted per worker before the main thread waits for the oldest


@dataclass(frozen=True, eq=False)
class ObjectMesh:
    """The closed surface of one object.

    Attributes
    ----------
    object_id : int
        The object's label (its Object ID in the objects table).
    vertices : ndarray of shape (n, 3), float32
        (x, y, z) in micrometres; voxel centres at integer indices times the voxel size.
    faces : ndarray of shape (m, 3), uint32
        Vertex indices, counter-clockwise seen from outside.
    normals : ndarray of shape (n, 3), float32
        Unit outward vertex normals.
    """

    object_id: int
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray


def _physical_zyx(physical_size: PhysicalSize | tuple[float, ...] | list[float]) -> np.ndarray:
    ps = PhysicalSize.coerce(physical_size)
    if ps.z is None:
        raise OptionError(
            "meshes need the z step: pass physical_size=(x, y, z) in micrometres per voxel"
        )
    return np.array(ps.um_zyx(), dtype=np.float64)


def default_max_error(physical_size: PhysicalSize | tuple[float, ...] | list[float]) -> float:
    """The default simplification bound: ``DEFAULT_ERROR_VOXELS`` largest voxel edges.

    Parameters
    ----------
    physical_size : PhysicalSize or (x, y, z)
        Micrometres per voxel; z is required.

    Returns
    -------
    float
        Micrometres (3 um for a 0.5 x 0.5 x 1 um voxel).
    """
    return DEFAULT_ERROR_VOXELS * float(np.max(_physical_zyx(physical_size)))


def _as_mesher_input(labels: np.ndarray) -> np.ndarray:
    """A C-contiguous unsigned view of ``labels``; refuse what cannot be a 3D mask."""
    if np.ndim(labels) != 3:
        raise LabelError(
            f"meshes need a 3D (Z, Y, X) label volume; got an array of shape "
            f"{np.shape(labels)}. 2D masks have no meshes: request meshes only for 3D masks"
        )
    arr = check_label_array(None, labels, what="meshes", ndim=(3,), floats=False)
    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind == "i":  # checked non-negative: same values
        arr = arr.view(arr.dtype.str.replace("i", "u"))
    return arr


def _border_is_empty(arr: np.ndarray) -> bool:
    return not any(
        np.any(face)
        for face in (arr[0], arr[-1], arr[:, 0], arr[:, -1], arr[:, :, 0], arr[:, :, -1])
    )


@numba.njit(cache=True, nogil=True)
def _normals_into(vertices: np.ndarray, faces: np.ndarray, out: np.ndarray) -> None:
    """Area-weighted unit vertex normals of ``vertices`` (any float, read as float64)."""
    n = vertices.shape[0]
    acc = np.zeros((n, 3), dtype=np.float64)
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        ax = np.float64(vertices[a, 0])
        ay = np.float64(vertices[a, 1])
        az = np.float64(vertices[a, 2])
        ux = np.float64(vertices[b, 0]) - ax
        uy = np.float64(vertices[b, 1]) - ay
        uz = np.float64(vertices[b, 2]) - az
        vx = np.float64(vertices[c, 0]) - ax
        vy = np.float64(vertices[c, 1]) - ay
        vz = np.float64(vertices[c, 2]) - az
        nx = uy * vz - uz * vy  # |n| = 2 * triangle area: area weighting
        ny = uz * vx - ux * vz
        nz = ux * vy - uy * vx
        for v in (a, b, c):
            acc[v, 0] += nx
            acc[v, 1] += ny
            acc[v, 2] += nz
    for i in range(n):
        length = np.sqrt(acc[i, 0] ** 2 + acc[i, 1] ** 2 + acc[i, 2] ** 2)
        if length > 0:
            for k in range(3):
                out[i, k] = acc[i, k] / length
        else:  # an unreferenced vertex: any unit vector keeps the accessor valid
            out[i, 0] = 0.0
            out[i, 1] = 0.0
            out[i, 2] = 1.0


@numba.njit(cache=True, nogil=True)
def _vertex_normals_kernel(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    out = np.empty((vertices.shape[0], 3), dtype=np.float32)
    _normals_into(vertices, faces, out)
    return out


@numba.njit(cache=True, nogil=True)
def _finish_batch(
    verts: np.ndarray,
    faces: np.ndarray,
    voff: np.ndarray,
    foff: np.ndarray,
    shift: float,
    scale_xyz: np.ndarray,
    simplify: bool,
    max_error: float,
    reduction: int,
    out_v: np.ndarray,
    out_f: np.ndarray,
    out_n: np.ndarray,
    counts: np.ndarray,
) -> None:
    """zmesh output (voxel units, (z, y, x), zmesh winding) -> final meshes, per object.

    Object k's input is ``verts[voff[k]:voff[k+1]]`` / ``faces[foff[k]:foff[k+1]]``; its
    output is written at the same offsets of ``out_*`` (never longer than the input) and
    its vertex and face counts to ``counts[k]``. Objects are independent of each other.
    """
    for k in range(voff.shape[0] - 1):
        zyx = verts[voff[k] : voff[k + 1]]
        fin = faces[foff[k] : foff[k + 1]]
        nv, nf = zyx.shape[0], fin.shape[0]
        if not simplify:  # straight into the output arrays
            ov = out_v[voff[k] : voff[k] + nv]
            of = out_f[foff[k] : foff[k] + nf]
            for i in range(nv):
                for j in range(3):
                    ov[i, j] = (np.float64(zyx[i, 2 - j]) - shift) * scale_xyz[j]
            # reversing the axes mirrors the mesh: swap two corners to keep outward winding
            for t in range(nf):
                of[t, 0], of[t, 1], of[t, 2] = fin[t, 0], fin[t, 2], fin[t, 1]
            _normals_into(ov, of, out_n[voff[k] : voff[k] + nv])
            counts[k, 0], counts[k, 1] = nv, nf
            continue
        xyz = np.empty((nv, 3), dtype=np.float64)
        for i in range(nv):
            for j in range(3):
                xyz[i, j] = (np.float64(zyx[i, 2 - j]) - shift) * scale_xyz[j]
        tri = np.empty((nf, 3), dtype=np.int64)
        for t in range(nf):
            tri[t, 0], tri[t, 1], tri[t, 2] = fin[t, 0], fin[t, 2], fin[t, 1]
        a, b = simplify_one(xyz, tri, max_error, reduction)
        # (inside the box of the object's full-resolution surface: simplify_one clips)
        out_v[voff[k] : voff[k] + a.shape[0]] = a
        _normals_into(a, b, out_n[voff[k] : voff[k] + a.shape[0]])
        out_f[foff[k] : foff[k] + b.shape[0]] = b
        counts[k, 0] = a.shape[0]
        counts[k, 1] = b.shape[0]


@dataclass
class _Batch:
    """One batch handed to a worker: zmesh's arrays gathered, outputs allocated.

    Everything but the compiled call happens in the main thread: a worker that needs the
    GIL while the main thread runs zmesh waits up to the interpreter's switch interval
    each time (numpy's copies release and retake it per array), which starved workers.
    Allocating in the main thread also lets glibc reuse the memory zmesh frees object by
    object (a worker thread's allocations come from another arena and add to the peak).
    """

    ids: list[int]
    voff: np.ndarray
    foff: np.ndarray
    out_v: np.ndarray
    out_f: np.ndarray
    out_n: np.ndarray
    counts: np.ndarray
    done: Future[None]

    def meshes(self) -> list[ObjectMesh]:
        self.done.result()

        def part(arr: np.ndarray, start: int, count: int) -> np.ndarray:
            # a copy per object: small enough for glibc to place it in the heap memory
            # zmesh frees object by object (the batch arrays are mmap()ed and go back to
            # the system whole); views would keep the whole batch alive
            return arr[start : start + count].copy()

        return [
            ObjectMesh(
                oid,
                part(self.out_v, int(self.voff[k]), int(self.counts[k, 0])),
                part(self.out_f, int(self.foff[k]), int(self.counts[k, 1])),
                part(self.out_n, int(self.voff[k]), int(self.counts[k, 0])),
            )
            for k, oid in enumerate(self.ids)
        ]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals.

    Parameters
    ----------
    vertices : ndarray of shape (n, 3), float
    faces : ndarray of shape (m, 3), integer indices into ``vertices``

    Returns
    -------
    ndarray of shape (n, 3), float32
        Outward for counter-clockwise faces; (0, 0, 1) for a vertex no face uses.
    """
    return _vertex_normals_kernel(  # type: ignore[no-any-return]
        np.ascontiguousarray(vertices, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64),
    )


def mesh_labels(
    labels: np.ndarray,
    *,
    physical_size: PhysicalSize | tuple[float, ...] | list[float],
    simplify: bool = True,
    max_error: float | None = None,
    reduction: int | None = None,
) -> list[ObjectMesh]:
    """Mesh every object of a 3D label volume in one pass.

    Parameters
    ----------
    labels : ndarray of shape (P, M, N), non-negative integers (plane, row, column)
        0 is background; each other value is one object.
    physical_size : PhysicalSize or (x, y, z)
        Micrometres per voxel along column, row and plane; z is required.
    simplify : bool
        Reduce the triangle count by quadric edge collapses (every surface stays closed
        and manifold; deterministic); see :func:`maskbundle.mesh.simplify.simplify_mesh`.
    max_error : float, optional
        Simplification bound in micrometres (default :func:`default_max_error`: three
        times the largest voxel edge): every vertex of a simplified mesh lies within
        ``max_error`` of the plane of each full-resolution triangle merged into it (the
        collapses use 95 % of it, a common offset along the vertex normals that restores
        the full-resolution volume at most 5 %); vertices then stay inside the object's
        full-resolution bounding box. 0 merges only coplanar triangles.
    reduction : int, optional
        Upper limit of the triangle reduction factor per object (>= 2; default 100, i.e.
        the error bound decides).

    Returns
    -------
    list of ObjectMesh
        One per object present, ascending by object id; empty for an empty volume.

    Raises
    ------
    LabelError
        ``labels`` is not 3D or not a non-negative integer array.
    OptionError
        Bad physical size (z missing), ``max_error`` or ``reduction``.

    Notes
    -----
    Memory beyond the meshes: at most one padded copy of the volume (only when objects
    touch the border), zmesh's triangle lists (freed object by object) and one batch of
    about a million full-resolution triangles awaiting simplification (each object is
    simplified on its own: the batch does not change the result).
    """
    import zmesh

    zyx = _physical_zyx(physical_size)
    arr = _as_mesher_input(labels)
    if max_error is None:
        max_error = DEFAULT_ERROR_VOXELS * float(np.max(zyx))
    if not (isinstance(max_error, int | float) and math.isfinite(max_error) and max_error >= 0):
        raise OptionError(
            f"max_error must be a finite number >= 0 (micrometres), got {max_error!r}"
        )
    if reduction is None:
        reduction = DEFAULT_REDUCTION
    if isinstance(reduction, bool) or not isinstance(reduction, int | np.integer) or reduction < 2:
        raise OptionError(
            f"reduction must be an integer >= 2 (triangle reduction factor), got {reduction!r}"
        )
    if arr.size == 0:
        return []

    close = not _border_is_empty(arr)
    # zmesh works in voxel units (exact half-integers); the physical scale comes after
    mesher: Any = zmesh.Mesher((1.0, 1.0, 1.0))
    mesher.mesh(arr, close=close)
    ids = sorted(int(i) for i in mesher.ids())
    shift = 1.0 if close else 0.0  # undo the one-voxel pad of close=True
    scale_xyz = np.ascontiguousarray(zyx[::-1])

    # The main thread pulls each object's triangles out of zmesh (which holds the GIL);
    # worker threads convert, simplify and compute normals batch by batch in compiled
    # code without the GIL. Each object is processed on its own and batches are
    # collected in submission order, so the result does not depend on the threads.
    out: list[ObjectMesh] = []
    pending: list[tuple[int, np.ndarray, np.ndarray]] = []
    pending_faces = 0
    running: deque[_Batch] = deque()
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:

        def start(batch: list[tuple[int, np.ndarray, np.ndarray]]) -> _Batch:
            voff = np.cumsum([0] + [len(v) for _, v, _ in batch], dtype=np.int64)
            foff = np.cumsum([0] + [len(f) for _, _, f in batch], dtype=np.int64)
            verts = np.concatenate([v for _, v, _ in batch])
            faces = np.concatenate([f for _, _, f in batch])
            out_v = np.empty((len(verts), 3), dtype=np.float32)
            out_f = np.empty((len(faces), 3), dtype=np.uint32)
            out_n = np.empty((len(verts), 3), dtype=np.float32)
            counts = np.empty((len(batch), 2), dtype=np.int64)
            done = pool.submit(
                _finish_batch, verts, faces, voff, foff, shift, scale_xyz, bool(simplify),
                float(max_error), int(reduction), out_v, out_f, out_n, counts,
            )  # fmt: skip
            ids = [oid for oid, _, _ in batch]
            return _Batch(ids, voff, foff, out_v, out_f, out_n, counts, done)

        try:
            for oid in ids:
                m = mesher.get(oid, normals=False, reduction_factor=0)
                mesher.erase(oid)
                if m.faces is None or len(m.faces) == 0:
                    continue
                pending.append((oid, m.vertices, m.faces))
                pending_faces += len(m.faces)
                if pending_faces >= _BATCH_FACES:
                    running.append(start(pending))
                    pending, pending_faces = [], 0
                    # bounded memory: two batches (~0.5 M triangles) queued per worker
                    while len(running) > _IN_FLIGHT * _WORKERS:
                        out.extend(running.popleft().meshes())
            if pending:
                running.append(start(pending))
            while running:
                out.extend(running.popleft().meshes())
        finally:
            for batch in running:
                batch.done.cancel()
    return out
