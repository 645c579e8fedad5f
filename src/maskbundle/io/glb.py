"""Binary glTF 2.0 (``.glb``) writer for per-object meshes (SPEC section 7).

Layout, written directly (no scene-graph library in between):

- one buffer (the BIN chunk) holding three runs: every object's POSITION (float32 VEC3),
  then every NORMAL (float32 VEC3), then every object's indices (SCALAR, uint16 when the
  object has fewer than 65536 vertices, else uint32; each object's indices padded to 4
  bytes); three bufferViews cover the runs (the vertex views with byteStride 12, which the
  validator requires when several accessors share a view), with targets ARRAY_BUFFER
  and ELEMENT_ARRAY_BUFFER;
- per object three accessors (POSITION with min/max, NORMAL, indices), one mesh with one
  triangle primitive, and one node named by the Object ID with
  ``extras = {"object_id": id, "mask": name}``;
- one scene listing every node; ``asset = {"version": "2.0", "generator": "maskbundle ..."}``.

Every run is a multiple of 4 bytes long, so all offsets are 4-byte aligned. The JSON is
serialised with sorted keys and no spaces: the same meshes give the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numba
import numpy as np

from .._version import __version__
from ..errors import CorruptInputError, MissingDependencyError, OptionError
from .staging import staged_path

__all__ = [
    "GlbSummary",
    "MeshLike",
    "glb_bytes",
    "glb_document",
    "load_glb_scene",
    "read_glb_summary",
    "write_glb",
]


class MeshLike(Protocol):
    """One object's triangle mesh as the writer takes it (``maskbundle.mesh.ObjectMesh``).

    ``vertices`` float32 (n, 3), ``normals`` float32 (n, 3), ``faces`` uint32 (m, 3).
    """

    @property
    def object_id(self) -> int: ...
    @property
    def vertices(self) -> np.ndarray: ...
    @property
    def normals(self) -> np.ndarray: ...
    @property
    def faces(self) -> np.ndarray: ...

_MAGIC = 0x46546C67  # "glTF"
_JSON = 0x4E4F534A  # "JSON"
_BIN = 0x004E4942  # "BIN\0"
_FLOAT = 5126
_UINT = 5125
_USHORT = 5123
_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_TRIANGLES = 4
_MAX_GLB = 2**32 - 1


@numba.njit(cache=True, nogil=True)
def _scan(v: np.ndarray, f: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[bool, int]:
    """One pass: per-axis min/max of ``v`` (into lo, hi), all finite?, largest index."""
    finite = True
    for j in range(3):
        lo[j] = v[0, j]
        hi[j] = v[0, j]
    for i in range(v.shape[0]):
        for j in range(3):
            x = v[i, j]
            if not np.isfinite(x):
                finite = False
            if x < lo[j]:
                lo[j] = x
            if x > hi[j]:
                hi[j] = x
    top = 0
    for t in range(f.shape[0]):
        for j in range(3):
            if f[t, j] > top:
                top = f[t, j]
    return finite, int(top)


def _check(meshes: Sequence[MeshLike]) -> list[tuple[list[float], list[float]]]:
    """Refuse malformed meshes; return each mesh's vertex (min, max) per axis."""
    seen: set[int] = set()
    bounds: list[tuple[list[float], list[float]]] = []
    for m in meshes:
        v, f, n = m.vertices, m.faces, m.normals
        if v.dtype != np.float32 or v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
            raise OptionError(
                f"object {m.object_id}: vertices must be a non-empty float32 (n, 3) array"
            )
        if n.dtype != np.float32 or n.shape != v.shape:
            raise OptionError(
                f"object {m.object_id}: normals must be float32 with the shape of vertices"
            )
        if f.dtype != np.uint32 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise OptionError(
                f"object {m.object_id}: faces must be a non-empty uint32 (m, 3) array"
            )
        lo = np.empty(3, dtype=np.float32)
        hi = np.empty(3, dtype=np.float32)
        finite, top = _scan(v, f, lo, hi)
        if top >= len(v):
            raise OptionError(
                f"object {m.object_id}: a face refers to a vertex that does not exist"
            )
        if not finite:
            raise OptionError(f"object {m.object_id}: vertices must be finite")
        if m.object_id in seen:
            raise OptionError(f"object {m.object_id} appears twice; one mesh per Object ID")
        seen.add(m.object_id)
        bounds.append((lo.tolist(), hi.tolist()))
    return bounds


def _index_bytes(n_faces: int, short: bool) -> int:
    return (6 * n_faces + 3) // 4 * 4 if short else 12 * n_faces


def _object_accessors(
    nv: int, nf: int, bounds: tuple[list[float], list[float]], voff: int, foff: int, short: bool
) -> list[dict[str, Any]]:
    """Positions, normals and indices of one object (accessors 3k, 3k + 1, 3k + 2)."""
    return [
        {"bufferView": 0, "byteOffset": voff, "componentType": _FLOAT, "count": nv,
         "type": "VEC3", "min": bounds[0], "max": bounds[1]},
        {"bufferView": 1, "byteOffset": voff, "componentType": _FLOAT, "count": nv,
         "type": "VEC3"},
        {"bufferView": 2, "byteOffset": foff, "componentType": _USHORT if short else _UINT,
         "count": 3 * nf, "type": "SCALAR"},
    ]


def _buffer_views(pos_len: int, idx_len: int) -> list[dict[str, Any]]:
    """The three views of the BIN chunk: positions, normals (stride 12), then indices."""
    return [
        {"buffer": 0, "byteOffset": 0, "byteLength": pos_len, "byteStride": 12,
         "target": _ARRAY_BUFFER},
        {"buffer": 0, "byteOffset": pos_len, "byteLength": pos_len, "byteStride": 12,
         "target": _ARRAY_BUFFER},
        {"buffer": 0, "byteOffset": 2 * pos_len, "byteLength": idx_len,
         "target": _ELEMENT_ARRAY_BUFFER},
    ]


def glb_document(meshes: Sequence[MeshLike], *, mask: str) -> tuple[dict[str, Any], int]:
    """The glTF JSON document for ``meshes`` and the length of its binary buffer.

    Parameters
    ----------
    meshes : sequence of ObjectMesh
        Written in the given order (node k is ``meshes[k]``).
    mask : str
        Mask name, recorded in every node's extras and as the scene name.

    Returns
    -------
    document : dict
        The JSON chunk's content.
    byte_length : int
        Bytes of the BIN chunk (positions, then normals, then indices).
    """
    bounds = _check(meshes)
    n_vert = [len(m.vertices) for m in meshes]
    n_face = [len(m.faces) for m in meshes]
    pos_len = 12 * sum(n_vert)
    # indices as uint16 when the object has < 65536 vertices (a quarter of a typical file),
    # else uint32; every object's run is padded to 4 bytes so all offsets stay aligned
    short = [nv < 65536 for nv in n_vert]
    idx_bytes = [_index_bytes(nf, sh) for nf, sh in zip(n_face, short, strict=True)]
    idx_len = sum(idx_bytes)
    accessors: list[dict[str, Any]] = []
    gl_meshes: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    voff = 0
    foff = 0
    for k, m in enumerate(meshes):
        accessors += _object_accessors(n_vert[k], n_face[k], bounds[k], voff, foff, short[k])
        gl_meshes.append({
            "name": str(m.object_id),
            "primitives": [{"attributes": {"POSITION": 3 * k, "NORMAL": 3 * k + 1},
                            "indices": 3 * k + 2, "mode": _TRIANGLES}],
        })
        nodes.append({"name": str(m.object_id), "mesh": k,
                      "extras": {"object_id": int(m.object_id), "mask": mask}})
        voff += 12 * n_vert[k]
        foff += idx_bytes[k]
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": f"maskbundle {__version__}"},
        "scene": 0,
        "scenes": [{"name": mask, "nodes": list(range(len(meshes)))}],
        "nodes": nodes,
        "meshes": gl_meshes,
        "accessors": accessors,
        "bufferViews": _buffer_views(pos_len, idx_len),
        "buffers": [{"byteLength": 2 * pos_len + idx_len}],
    }
    if not meshes:  # a valid, empty asset: no views over an empty buffer
        for key in ("nodes", "meshes", "accessors", "bufferViews", "buffers"):
            del doc[key]
        del doc["scenes"][0]["nodes"]
    return doc, 2 * pos_len + idx_len


def _write_glb(out: BinaryIO, meshes: Sequence[MeshLike], mask: str) -> int:
    doc, bin_len = glb_document(meshes, mask=mask)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + (8 + bin_len if bin_len else 0)
    if total > _MAX_GLB:
        raise OptionError(
            f"the meshes need {total} bytes, beyond the 4 GiB limit of a glb file; "
            "simplify them (a larger max_error) or split the mask"
        )
    out.write(struct.pack("<III", _MAGIC, 2, total))
    out.write(struct.pack("<II", len(text), _JSON))
    out.write(text)
    if bin_len:
        out.write(struct.pack("<II", bin_len, _BIN))
        for attr in ("vertices", "normals"):
            for m in meshes:
                out.write(np.ascontiguousarray(getattr(m, attr), dtype="<f4").data)
        for m in meshes:
            if len(m.vertices) < 65536:
                out.write(np.ascontiguousarray(m.faces, dtype="<u2").data)
                if len(m.faces) % 2:
                    out.write(b"\0\0")
            else:
                out.write(np.ascontiguousarray(m.faces, dtype="<u4").data)
    return total


def glb_bytes(meshes: Sequence[MeshLike], *, mask: str) -> bytes:
    """The ``.glb`` file content for ``meshes`` (see the module docstring for the layout)."""
    buf = io.BytesIO()
    _write_glb(buf, meshes, mask)
    return buf.getvalue()


def write_glb(
    path: str | Path, meshes: Sequence[MeshLike], *, mask: str, overwrite: bool = False
) -> Path:
    """Write ``meshes`` to ``path`` atomically (staged beside it, then moved into place).

    Parameters
    ----------
    path : str or Path
        Target file, normally ``derived/segmentation_masks/<mask>-mesh.glb``.
    meshes : sequence of ObjectMesh
        One node per mesh, in this order.
    mask : str
        Mask name stored in each node's extras.
    overwrite : bool
        Replace an existing file (otherwise OutputExistsError).

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    with staged_path(target, overwrite=overwrite) as stage, open(stage, "wb") as fh:
        _write_glb(fh, meshes, mask)
    return target


def load_glb_scene(path: str | Path) -> Any:
    """A ``.glb`` as a ``trimesh.Scene`` (one geometry node per object, named by Object ID)."""
    try:
        import trimesh
    except ImportError as exc:  # pragma: no cover - trimesh is a dependency
        raise MissingDependencyError(
            "reading .glb meshes needs trimesh: pip install trimesh"
        ) from exc
    try:
        return trimesh.load(Path(path), force="scene")
    except Exception as exc:  # trimesh raises many types on broken files
        raise CorruptInputError(f"{Path(path).name}: not a loadable glTF binary ({exc})") from exc


@dataclass(frozen=True)
class GlbSummary:
    """What the checks need from a ``.glb``: node names, their extras, the scene bounds.

    ``bounds`` is ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` in the file's units, or
    ``None`` for an empty scene.
    """

    node_names: list[str]
    node_extras: dict[str, Any] = field(default_factory=dict)
    bounds: np.ndarray | None = None


def read_glb_summary(path: str | Path) -> GlbSummary:
    """The one reader of ``.glb`` files: load with trimesh and summarise the mesh nodes.

    Used by the validator and by ``add_meshes`` to check what it wrote. A file trimesh
    cannot load raises :class:`CorruptInputError`.

    Examples
    --------
    >>> import tempfile
    >>> from maskbundle.mesh.labels import mesh_labels
    >>> labels = np.zeros((4, 6, 6), np.uint8); labels[1:3, 1:4, 2:5] = 7
    >>> path = Path(tempfile.mkdtemp()) / "cells-mesh.glb"
    >>> _ = write_glb(path, mesh_labels(labels, physical_size=(1.0, 1.0, 1.0)), mask="cells")
    >>> summary = read_glb_summary(path)
    >>> summary.node_names, summary.node_extras["7"]
    (['7'], {'mask': 'cells', 'object_id': 7})
    """
    scene = load_glb_scene(path)
    names = [str(n) for n in scene.graph.nodes_geometry]
    extras: dict[str, Any] = {}
    wanted = set(names)
    # trimesh keeps a node's glTF "extras" as the "metadata" of the edge leading to it
    for (_parent, child), data in scene.graph.transforms.edge_data.items():
        if child in wanted and isinstance(data, dict) and "metadata" in data:
            extras[str(child)] = data["metadata"]
    bounds = None
    if names:
        b = np.asarray(scene.bounds, dtype=np.float64)
        if b.shape == (2, 3) and all(math.isfinite(v) for v in b.ravel()):
            bounds = b
    return GlbSummary(names, extras, bounds)
