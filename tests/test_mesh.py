"""Meshes of 3D masks: geometry against voxel counts and coordinates, glb against trimesh,
a hand parse of the container and (when node is installed) the Khronos glTF validator."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from scipy.spatial import cKDTree

from maskbundle.errors import LabelError, OptionError
from maskbundle.io.glb import glb_bytes, write_glb
from maskbundle.mesh import ObjectMesh, mesh_labels
from maskbundle.synthetic import synthetic_nuclei_3d

PS = (0.4, 0.5, 1.3)  # x, y, z micrometres: anisotropic, all different
SCALE_XYZ = np.array(PS)


@cache
def nuclei() -> np.ndarray:
    vol = synthetic_nuclei_3d(
        (24, 80, 80), n_objects=14, radius=(6.0, 12.0), anisotropy=2.6, seed=4
    )
    vol.setflags(write=False)
    return vol


BOUND = float(max(PS))  # the fixture's simplification bound: one largest voxel edge


@cache
def meshed(simplify: bool) -> tuple[ObjectMesh, ...]:
    # these small nuclei (60 to 200 triangles each at one voxel) test geometry at a
    # moderate bound; the default (three voxels) has tests of its own below
    return tuple(mesh_labels(nuclei(), physical_size=PS, simplify=simplify, max_error=BOUND))


def tm(m: ObjectMesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(m.vertices.astype(np.float64), m.faces, process=False)


# ---------------------------------------------------------------- geometry and convention


def test_box_bounds_follow_the_voxel_centre_convention() -> None:
    vol = np.zeros((7, 9, 11), np.uint16)
    vol[2:5, 3:8, 4:10] = 5  # z 2..4, y 3..7, x 4..9
    for simplify in (False, True):
        (m,) = mesh_labels(vol, physical_size=PS, simplify=simplify)
        assert m.object_id == 5
        assert m.vertices.dtype == np.float32 and m.faces.dtype == np.uint32
        assert m.normals.dtype == np.float32 and m.normals.shape == m.vertices.shape
        # voxel centres at index * size; the surface half a voxel outside them
        lo = (np.array([4, 3, 2]) - 0.5) * SCALE_XYZ
        hi = (np.array([9, 7, 4]) + 0.5) * SCALE_XYZ
        if simplify:  # corners may be cut, never grown: within one voxel inside the box
            assert np.all(m.vertices.min(0) >= lo - 1e-5)
            assert np.all(m.vertices.min(0) <= lo + SCALE_XYZ)
            assert np.all(m.vertices.max(0) <= hi + 1e-5)
            assert np.all(m.vertices.max(0) >= hi - SCALE_XYZ)
        else:
            np.testing.assert_allclose(m.vertices.min(0), lo, atol=1e-5)
            np.testing.assert_allclose(m.vertices.max(0), hi, atol=1e-5)
        mesh = tm(m)
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert mesh.volume > 0  # counter-clockwise from outside


@pytest.mark.parametrize("simplify", [False, True])
def test_volume_within_5_percent_of_voxel_volume(simplify: bool) -> None:
    counts = np.bincount(nuclei().ravel())
    voxel = float(np.prod(SCALE_XYZ))
    big = 0
    for m in meshed(simplify):
        n = int(counts[m.object_id])
        if n >= 1000:
            big += 1
            assert tm(m).volume == pytest.approx(n * voxel, rel=0.05), m.object_id
    assert big >= 5


@pytest.mark.parametrize("simplify", [False, True])
def test_every_mesh_is_watertight_outward_and_has_unit_outward_normals(simplify: bool) -> None:
    ids = [m.object_id for m in meshed(simplify)]
    assert ids == sorted(np.unique(nuclei())[1:].tolist())
    for m in meshed(simplify):
        mesh = tm(m)
        assert mesh.is_watertight, m.object_id
        assert mesh.volume > 0
        np.testing.assert_allclose(np.linalg.norm(m.normals, axis=1), 1.0, atol=1e-5)
        # trimesh's own (angle-weighted) vertex normals point the same way
        agree = np.einsum("ij,ij->i", mesh.vertex_normals, m.normals)
        assert np.mean(agree > 0.5) > 0.98


@pytest.mark.parametrize("simplify", [False, True])
def test_mesh_position_matches_voxel_coordinates(simplify: bool) -> None:
    vol = nuclei()
    objs = ndimage.find_objects(vol)
    centres = ndimage.center_of_mass(np.ones_like(vol), vol, range(1, len(objs) + 1))
    for m in meshed(simplify):
        sl = objs[m.object_id - 1]
        assert sl is not None
        lo = (np.array([s.start for s in sl][::-1]) - 0.5) * SCALE_XYZ
        hi = (np.array([s.stop - 1 for s in sl][::-1]) + 0.5) * SCALE_XYZ
        tol = 1e-4 if not simplify else BOUND
        assert np.all(m.vertices.min(0) >= lo - tol) and np.all(m.vertices.max(0) <= hi + tol)
        if not simplify:  # the unsimplified box reaches the extent exactly
            np.testing.assert_allclose(m.vertices.min(0), lo, atol=1e-4)
            np.testing.assert_allclose(m.vertices.max(0), hi, atol=1e-4)
        want = np.array(centres[m.object_id - 1])[::-1] * SCALE_XYZ  # (x, y, z) um
        got = tm(m).center_mass
        assert np.all(np.abs(got - want) <= 0.25 * SCALE_XYZ), (m.object_id, got, want)


def test_objects_touching_the_border_are_closed() -> None:
    vol = np.zeros((5, 6, 7), np.uint8)
    vol[:, :, :3] = 1  # touches five faces of the volume
    vol[0, 4:, 4:] = 2  # a corner slab
    full = np.full((3, 4, 5), 9, np.uint32)  # the whole volume is one object
    for v in (vol, full):
        for simplify in (False, True):
            for m in mesh_labels(v, physical_size=PS, simplify=simplify):
                mesh = tm(m)
                assert mesh.is_watertight and mesh.volume > 0
                n = int(np.count_nonzero(v == m.object_id))
                if not simplify:
                    zz, yy, xx = np.nonzero(v == m.object_id)
                    lo = (np.array([xx.min(), yy.min(), zz.min()]) - 0.5) * SCALE_XYZ
                    np.testing.assert_allclose(m.vertices.min(0), lo, atol=1e-5)
                    assert mesh.volume <= n * np.prod(SCALE_XYZ) + 1e-6
    (m,) = mesh_labels(full, physical_size=PS, simplify=False)
    np.testing.assert_allclose(
        m.vertices.max(0), (np.array([4, 3, 2]) + 0.5) * SCALE_XYZ, atol=1e-5
    )


def test_an_object_meshes_the_same_alone_and_among_others() -> None:
    vol = nuclei()
    alone = np.where(vol == 3, vol, 0)
    for simplify in (False, True):
        a = next(m for m in meshed(simplify) if m.object_id == 3)
        (b,) = mesh_labels(alone, physical_size=PS, simplify=simplify, max_error=BOUND)
        assert a.vertices.tobytes() == b.vertices.tobytes()
        assert a.faces.tobytes() == b.faces.tobytes()


def test_simplification_reduces_triangles_within_the_error_bound() -> None:
    full = {m.object_id: m for m in meshed(False)}
    simple = {m.object_id: m for m in meshed(True)}
    n_full = sum(len(m.faces) for m in full.values())
    n_simple = sum(len(m.faces) for m in simple.values())
    assert n_simple < n_full / 3
    for oid, m in simple.items():
        dist, _ = cKDTree(full[oid].vertices).query(m.vertices)
        assert dist.max() <= BOUND, oid
    tight = mesh_labels(nuclei(), physical_size=PS, max_error=0.3)
    assert n_simple < sum(len(m.faces) for m in tight) < n_full
    default = mesh_labels(nuclei(), physical_size=PS)
    assert sum(len(m.faces) for m in default) < n_simple
    loose = mesh_labels(nuclei(), physical_size=PS, max_error=5.0)
    capped = mesh_labels(nuclei(), physical_size=PS, max_error=5.0, reduction=2)
    assert sum(len(m.faces) for m in capped) > sum(len(m.faces) for m in loose)
    # max_error=0 allows only exact (coplanar) collapses: the enclosed volume is unchanged
    lossless = mesh_labels(nuclei(), physical_size=PS, max_error=0)
    assert sum(len(m.faces) for m in lossless) < n_full
    for m in lossless:
        assert tm(m).volume == pytest.approx(tm(full[m.object_id]).volume, rel=1e-5)


@pytest.mark.parametrize("max_error", [0.005, 0.02, 0.05])
def test_simplified_sphere_stays_closed_and_within_the_bound(max_error: float) -> None:
    """An independent mesh with known geometry: trimesh's unit icosphere (5120 faces)."""
    from maskbundle.mesh.simplify import simplify_mesh

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    v, f = simplify_mesh(sphere.vertices, sphere.faces, max_error=max_error)
    out = trimesh.Trimesh(v, f, process=False)
    assert out.is_watertight and out.is_winding_consistent and out.volume > 0
    assert len(f) < len(sphere.faces)
    # every new vertex is within max_error of the tangent planes it replaced, so within
    # about max_error of the sphere (the chords of the input sag by up to 0.0012)
    radius = np.linalg.norm(v.astype(np.float64), axis=1)
    assert np.all(np.abs(radius - 1.0) <= max_error + 0.0013)
    assert out.volume == pytest.approx(sphere.volume, rel=1e-4)  # restored by the offset
    assert np.all(np.abs(v) <= np.abs(sphere.vertices).max(0))
    again = simplify_mesh(sphere.vertices, sphere.faces, max_error=max_error)
    assert again[0].tobytes() == v.tobytes() and again[1].tobytes() == f.tobytes()


def test_default_bound_is_three_largest_voxel_edges_and_keeps_the_volume() -> None:
    from maskbundle.mesh import default_max_error

    assert default_max_error(PS) == pytest.approx(3 * max(PS))
    default = mesh_labels(nuclei(), physical_size=PS)
    explicit = mesh_labels(nuclei(), physical_size=PS, max_error=3 * max(PS))
    assert glb_bytes(default, mask="n") == glb_bytes(explicit, mask="n")
    full = {m.object_id: m for m in meshed(False)}
    assert sum(len(m.faces) for m in default) < sum(len(m.faces) for m in full.values()) / 8
    counts = np.bincount(nuclei().ravel())
    voxel = float(np.prod(SCALE_XYZ))
    for m in default:
        mesh, ref = tm(m), tm(full[m.object_id])
        assert mesh.is_watertight and mesh.is_winding_consistent
        # the volume-restoring offset: the full-resolution volume, not just within 5 %
        assert mesh.volume == pytest.approx(ref.volume, rel=1e-4), m.object_id
        if counts[m.object_id] >= 1000:
            assert mesh.volume == pytest.approx(counts[m.object_id] * voxel, rel=0.05)
        # never outside the full-resolution surface's box
        assert np.all(m.vertices.min(0) >= ref.vertices.min(0) - 1e-6)
        assert np.all(m.vertices.max(0) <= ref.vertices.max(0) + 1e-6)


def test_simplified_box_keeps_its_volume_inside_its_box() -> None:
    """Flat faces pin vertices to the box; the offset still restores the volume."""
    vol = np.zeros((12, 20, 24), np.uint8)
    vol[2:10, 3:17, 4:20] = 1
    (full,) = mesh_labels(vol, physical_size=PS, simplify=False)
    for max_error in (0.5, 1.3, 3.9):
        (m,) = mesh_labels(vol, physical_size=PS, max_error=max_error)
        assert len(m.faces) < len(full.faces) / 10
        assert tm(m).is_watertight
        # most vertices are pinned to the box and the offset is capped at 5 % of
        # max_error: the volume comes back to within 0.1 % (collapses alone lose ~1 % at
        # max_error 1.3 here)
        assert tm(m).volume == pytest.approx(tm(full).volume, rel=1e-3)
        assert np.all(m.vertices.min(0) >= full.vertices.min(0))
        assert np.all(m.vertices.max(0) <= full.vertices.max(0))


@pytest.mark.parametrize("simplify", [False, True])
def test_threads_and_batches_do_not_change_the_result(
    simplify: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import maskbundle.mesh.labels as labels_module

    want = glb_bytes(mesh_labels(nuclei(), physical_size=PS, simplify=simplify), mask="n")
    for workers, batch in ((1, 1 << 18), (1, 1), (2, 1), (3, 500)):
        monkeypatch.setattr(labels_module, "_WORKERS", workers)
        monkeypatch.setattr(labels_module, "_BATCH_FACES", batch)
        got = mesh_labels(nuclei(), physical_size=PS, simplify=simplify)
        assert glb_bytes(got, mask="n") == want, (workers, batch)


def test_batched_simplification_equals_one_by_one() -> None:
    from maskbundle.mesh.simplify import simplify_batch, simplify_mesh

    full = [(m.vertices.astype(np.float64), m.faces) for m in meshed(False)]
    one = [simplify_mesh(v, f, max_error=0.7) for v, f in full]
    batch = simplify_batch(full, max_error=0.7)
    for (v1, f1), (v2, f2) in zip(one, batch, strict=True):
        assert v1.tobytes() == v2.tobytes() and f1.tobytes() == f2.tobytes()


_FORK_SCRIPT = """
import multiprocessing as mp
import numpy as np
from maskbundle.mesh import mesh_labels
vol = np.zeros((6, 12, 12), np.uint8)
vol[1:5, 2:10, 2:10] = 1
n = len(mesh_labels(vol, physical_size=(0.5, 0.5, 1.0))[0].faces)
def child(_):
    return len(mesh_labels(vol, physical_size=(0.5, 0.5, 1.0))[0].faces)
if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(child, range(2)) == [n, n]
    print("ok")
"""


def test_meshing_survives_fork(tmp_path: Path) -> None:
    """multiprocessing's default on Linux forks: no OpenMP state may be alive by then."""
    script = tmp_path / "fork.py"
    script.write_text(_FORK_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    run = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-500:]


def test_meshing_and_glb_are_deterministic() -> None:
    for simplify in (False, True):
        a = glb_bytes(mesh_labels(nuclei(), physical_size=PS, simplify=simplify), mask="nuclei")
        b = glb_bytes(mesh_labels(nuclei(), physical_size=PS, simplify=simplify), mask="nuclei")
        assert a == b


def test_refusals_and_empty_volumes() -> None:
    with pytest.raises(LabelError, match="3D"):
        mesh_labels(np.ones((5, 5), np.uint8), physical_size=PS)
    with pytest.raises(LabelError, match="integers"):
        mesh_labels(np.ones((3, 5, 5), np.float32), physical_size=PS)
    with pytest.raises(LabelError, match=">= 0"):
        mesh_labels(-np.ones((3, 5, 5), np.int16), physical_size=PS)
    with pytest.raises(OptionError, match="z step"):
        mesh_labels(np.ones((3, 5, 5), np.uint8), physical_size=(0.5, 0.5))
    with pytest.raises(OptionError, match="max_error"):
        mesh_labels(np.ones((3, 5, 5), np.uint8), physical_size=PS, max_error=-1)
    with pytest.raises(OptionError, match="reduction"):
        mesh_labels(np.ones((3, 5, 5), np.uint8), physical_size=PS, reduction=1)
    assert mesh_labels(np.zeros((4, 5, 6), np.uint32), physical_size=PS) == []
    assert mesh_labels(np.zeros((0, 5, 6), np.uint32), physical_size=PS) == []
    signed = mesh_labels(nuclei().astype(np.int32), physical_size=PS, simplify=False)
    assert [m.vertices.tobytes() for m in signed] == [m.vertices.tobytes() for m in meshed(False)]


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(*(st.integers(2, 7),) * 3), elements=st.integers(0, 3)))
def test_any_small_volume_gives_closed_meshes_inside_the_objects_extent(vol: np.ndarray) -> None:
    ids = np.unique(vol)
    for m in mesh_labels(vol, physical_size=PS, simplify=True, max_error=0.4):
        mesh = tm(m)
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    meshes = mesh_labels(vol, physical_size=PS, simplify=False)
    assert [m.object_id for m in meshes] == [int(i) for i in ids if i]
    for m in meshes:
        mesh = tm(m)
        assert mesh.is_watertight and mesh.volume > 0
        zz, yy, xx = np.nonzero(vol == m.object_id)
        lo = (np.array([xx.min(), yy.min(), zz.min()]) - 0.5) * SCALE_XYZ
        hi = (np.array([xx.max(), yy.max(), zz.max()]) + 0.5) * SCALE_XYZ
        np.testing.assert_allclose(m.vertices.min(0), lo, atol=1e-5)
        np.testing.assert_allclose(m.vertices.max(0), hi, atol=1e-5)


# ---------------------------------------------------------------- the glb container


def parse_glb(data: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    """A minimal independent reader of the glb container (spec section 4.4)."""
    magic, version, length = struct.unpack_from("<III", data, 0)
    assert magic == 0x46546C67 and version == 2 and length == len(data)
    jlen, jtype = struct.unpack_from("<II", data, 12)
    assert jtype == 0x4E4F534A and jlen % 4 == 0
    doc = json.loads(data[20 : 20 + jlen])
    rest = data[20 + jlen :]
    if not rest:
        return doc, b""
    blen, btype = struct.unpack_from("<II", rest, 0)
    assert btype == 0x004E4942 and blen % 4 == 0 and len(rest) == 8 + blen
    return doc, rest[8:]


def test_glb_nodes_are_object_ids_with_extras_and_exact_arrays() -> None:
    meshes = meshed(True)
    doc, blob = parse_glb(glb_bytes(meshes, mask="nuclei"))
    assert doc["asset"]["version"] == "2.0" and doc["asset"]["generator"].startswith("maskbundle")
    assert doc["scenes"][doc["scene"]]["nodes"] == list(range(len(meshes)))
    assert [n["name"] for n in doc["nodes"]] == [str(m.object_id) for m in meshes]
    assert [n["extras"] for n in doc["nodes"]] == [
        {"object_id": m.object_id, "mask": "nuclei"} for m in meshes
    ]
    for node, m in zip(doc["nodes"], meshes, strict=True):
        prim = doc["meshes"][node["mesh"]]["primitives"][0]
        got = {}
        for key, acc_i in (*prim["attributes"].items(), ("indices", prim["indices"])):
            acc = doc["accessors"][acc_i]
            view = doc["bufferViews"][acc["bufferView"]]
            start = view["byteOffset"] + acc["byteOffset"]
            assert start % 4 == 0
            dtype = {5126: "<f4", 5125: "<u4", 5123: "<u2"}[acc["componentType"]]
            ncomp = {"VEC3": 3, "SCALAR": 1}[acc["type"]]
            got[key] = np.frombuffer(blob, dtype, acc["count"] * ncomp, start)
            if key == "POSITION":
                assert acc["min"] == m.vertices.min(0).tolist()
                assert acc["max"] == m.vertices.max(0).tolist()
        assert got["POSITION"].tobytes() == m.vertices.tobytes()
        assert got["NORMAL"].tobytes() == m.normals.tobytes()
        assert np.array_equal(got["indices"].reshape(-1, 3), m.faces)
        assert prim["mode"] == 4 and len(m.vertices) < 65536  # small objects: uint16 indices


def test_glb_reloads_in_trimesh_with_the_same_names_and_vertices(tmp_path: Path) -> None:
    meshes = meshed(False)
    path = write_glb(tmp_path / "nuclei-mesh.glb", meshes, mask="nuclei")
    scene = trimesh.load(path, file_type="glb", process=False)
    assert sorted(scene.graph.nodes_geometry, key=int) == [str(m.object_id) for m in meshes]
    for m in meshes:
        _, geom_name = scene.graph[str(m.object_id)]
        geom = scene.geometry[geom_name]
        np.testing.assert_array_equal(np.asarray(geom.vertices, np.float32), m.vertices)
        np.testing.assert_array_equal(geom.faces, m.faces)
        assert geom.is_watertight
    with pytest.raises(FileExistsError):
        write_glb(tmp_path / "nuclei-mesh.glb", meshes, mask="nuclei")
    write_glb(path, meshes[:2], mask="nuclei", overwrite=True)
    assert len(trimesh.load(path, file_type="glb").graph.nodes_geometry) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nuclei-mesh.glb"]


def test_glb_writer_refuses_malformed_meshes() -> None:
    (m,) = mesh_labels(np.ones((2, 2, 2), np.uint8), physical_size=PS, simplify=False)
    bad_faces = ObjectMesh(1, m.vertices, m.faces + np.uint32(len(m.vertices)), m.normals)
    with pytest.raises(OptionError, match="vertex that does not exist"):
        glb_bytes([bad_faces], mask="x")
    with pytest.raises(OptionError, match="twice"):
        glb_bytes([m, m], mask="x")
    with pytest.raises(OptionError, match="float32"):
        glb_bytes([ObjectMesh(1, m.vertices.astype(np.float64), m.faces, m.normals)], mask="x")


# ---------------------------------------------------------------- Khronos glTF validator

_VALIDATE_JS = """
const v = require('gltf-validator');
const fs = require('fs');
v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))
  .then((r) => console.log(JSON.stringify(r.issues)))
  .catch((e) => { console.error(String(e)); process.exit(3); });
"""


@cache
def validator_dir() -> Path | None:
    """gltf-validator installed once into <venv>/npm (npm registry only); None if impossible."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    prefix = Path(sys.prefix) / "npm"
    if not (prefix / "node_modules" / "gltf-validator").is_dir():
        try:
            subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(prefix),
                    "gltf-validator",
                ],
                capture_output=True,
                check=True,
                timeout=180,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    (prefix / "validate.js").write_text(_VALIDATE_JS)
    return prefix


def khronos_issues(data: bytes, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    prefix = validator_dir()
    if prefix is None:
        pytest.skip("node/npm or the gltf-validator npm package is not available")
    path = tmp_path / "x.glb"
    path.write_bytes(data)
    run = subprocess.run(
        ["node", str(prefix / "validate.js"), str(path)],
        capture_output=True,
        text=True,
        cwd=prefix,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("simplify", [False, True])
def test_khronos_validator_finds_no_errors_or_warnings(simplify: bool, tmp_path: Path) -> None:
    issues = khronos_issues(glb_bytes(meshed(simplify), mask="nuclei"), tmp_path)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]


def test_large_objects_use_uint32_indices_and_mixed_runs_stay_aligned(tmp_path: Path) -> None:
    from maskbundle.mesh.labels import vertex_normals

    big = trimesh.creation.icosphere(subdivisions=7, radius=50.0)  # 163,842 vertices
    bv = big.vertices.astype(np.float32)
    bf = big.faces.astype(np.uint32)
    meshes = [
        meshed(True)[0],
        ObjectMesh(1000, bv, bf, vertex_normals(bv, bf)),
        meshed(True)[1],
    ]
    data = glb_bytes(meshes, mask="nuclei")
    doc, blob = parse_glb(data)
    types = [doc["accessors"][3 * k + 2]["componentType"] for k in range(3)]
    assert types == [5123, 5125, 5123]
    for k, m in enumerate(meshes):
        acc = doc["accessors"][3 * k + 2]
        start = doc["bufferViews"][2]["byteOffset"] + acc["byteOffset"]
        assert start % 4 == 0
        dtype = "<u2" if acc["componentType"] == 5123 else "<u4"
        got = np.frombuffer(blob, dtype, acc["count"], start).reshape(-1, 3)
        assert np.array_equal(got, m.faces)
    scene = trimesh.load(io.BytesIO(data), file_type="glb", process=False)
    np.testing.assert_array_equal(scene.geometry[scene.graph["1000"][1]].faces, bf)
    issues = khronos_issues(data, tmp_path)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:5]


def test_khronos_validator_sees_a_broken_file(tmp_path: Path) -> None:
    """The harness itself can fail: corrupt the POSITION max and the validator objects."""
    data = bytearray(glb_bytes(meshed(True)[:1], mask="nuclei"))
    doc, blob = parse_glb(bytes(data))
    doc["accessors"][0]["max"][0] += 1.0
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(blob), 0x004E4942) + blob
    broken = struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body
    issues = khronos_issues(broken, tmp_path)
    assert issues["numErrors"] >= 1


def test_empty_glb_is_valid(tmp_path: Path) -> None:
    data = glb_bytes([], mask="nuclei")
    doc, blob = parse_glb(data)
    assert blob == b"" and "nodes" not in doc
    assert khronos_issues(data, tmp_path)["numErrors"] == 0


def test_trimesh_reads_the_glb_from_bytes() -> None:
    scene = trimesh.load(io.BytesIO(glb_bytes(meshed(True), mask="nuclei")), file_type="glb")
    assert len(scene.geometry) == len(meshed(True))


# ---------------------------------------------------------------- bundles: build, add, CLI

SEG = Path("derived/segmentation_masks")


def write_3d_bundle(path: Path, **kw: object) -> Path:
    from helpers import DOI
    from maskbundle import write_segmentation_bundle

    vol = nuclei()
    masks = kw.pop("masks", None) or {"nuclei": vol * 3}  # ids 3, 6, ... -> relabelled 1..N
    return write_segmentation_bundle(
        path,
        masks,
        physical_size=PS,
        protocol_doi=DOI,
        **kw,  # type: ignore[arg-type]
    )


def table_ids(path: Path) -> list[int]:
    """Object IDs read straight from the TSV (rows after the 'Object ID' header row)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Object ID\t")) + 1
    return [int(line.split("\t")[0]) for line in lines[start:]]


def test_bundle_with_meshes_names_nodes_by_the_table_ids(tmp_path: Path, checker) -> None:  # type: ignore[no-untyped-def]
    out = write_3d_bundle(tmp_path / "b", meshes=True, mesh_options={"max_error": BOUND})
    glb = out / SEG / "nuclei-mesh.glb"
    ids = table_ids(out / SEG / "nuclei-objects.tsv")
    assert ids == list(range(1, len(meshed(True)) + 1))
    doc, _ = parse_glb(glb.read_bytes())
    assert [int(n["name"]) for n in doc["nodes"]] == ids
    # the relabelled object k is original label 3k: same geometry as meshing the input
    assert glb.read_bytes() == glb_bytes(
        [ObjectMesh(k + 1, m.vertices, m.faces, m.normals) for k, m in enumerate(meshed(True))],
        mask="nuclei",
    )
    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    assert prov["meshes"]["masks"]["nuclei"]["file"] == "nuclei-mesh.glb"
    assert prov["meshes"]["options"] == {"simplify": True, "max_error": 1.3, "reduction": 100}
    from maskbundle.bundle.validate import validate_bundle

    report = validate_bundle(out)
    assert report.ok, report.errors
    passed = {f.code for f in report.findings if f.status == "passed"}
    assert {"mesh.loads", "mesh.node-count", "mesh.node-names", "mesh.bounds"} <= passed
    checker(out)


def test_meshes_for_2d_masks_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    from helpers import DOI
    from maskbundle import write_segmentation_bundle

    with pytest.raises(OptionError, match="3D"):
        write_segmentation_bundle(
            tmp_path / "flat",
            {"cells": np.eye(8, dtype=np.uint8)},
            physical_size=(0.5, 0.5),
            protocol_doi=DOI,
            meshes=True,
        )
    with pytest.raises(OptionError, match="not masks"):
        write_3d_bundle(tmp_path / "x", meshes=["cells"])
    with pytest.raises(OptionError, match="unknown mesh option"):
        write_3d_bundle(tmp_path / "y", meshes=True, mesh_options={"tolerance": 1})
    assert list(tmp_path.iterdir()) == []


def test_empty_mask_gets_no_file_and_a_note(tmp_path: Path) -> None:
    masks = {"nuclei": nuclei(), "cells": np.zeros_like(nuclei())}
    out = write_3d_bundle(
        tmp_path / "b",
        masks=masks,
        mesh_options={"simplify": False},
        meshes=True,
        mask_ids={"cells": "CL:0000000"},
    )
    assert (out / SEG / "nuclei-mesh.glb").is_file()
    assert not (out / SEG / "cells-mesh.glb").exists()
    note = json.loads((out / "derived/extras/provenance.json").read_text())["meshes"]["masks"]
    assert note["cells"]["file"] is None and "empty" in note["cells"]["note"]
    from maskbundle.bundle.meshes import add_meshes

    plain = write_3d_bundle(tmp_path / "p", masks=masks, mask_ids={"cells": "CL:0000000"})
    assert add_meshes(plain, masks=["cells"]).meshes == {"cells": None}
    assert not list((plain / SEG).glob("*-mesh.glb"))
    prov = json.loads((plain / "derived/extras/provenance.json").read_text())
    assert prov["meshes"]["masks"]["cells"]["file"] is None


def test_add_meshes_matches_build_and_is_atomic(tmp_path: Path) -> None:
    from maskbundle.bundle.meshes import add_meshes

    built = write_3d_bundle(tmp_path / "built", meshes=True)
    plain = write_3d_bundle(tmp_path / "plain")
    assert not (plain / SEG / "nuclei-mesh.glb").exists()
    written = add_meshes(plain).meshes
    assert written == {"nuclei": plain / SEG / "nuclei-mesh.glb"}
    assert written["nuclei"].read_bytes() == (built / SEG / "nuclei-mesh.glb").read_bytes()
    prov = json.loads((plain / "derived/extras/provenance.json").read_text())
    assert prov["meshes"]["masks"]["nuclei"]["objects"] == len(meshed(True))
    before = sorted(p.name for p in (plain / SEG).iterdir())
    with pytest.raises(FileExistsError):
        add_meshes(plain, mesh_options={"max_error": 2.0})
    add_meshes(plain, overwrite=True, mesh_options={"simplify": False})
    doc, _ = parse_glb(written["nuclei"].read_bytes())
    assert len(doc["nodes"]) == len(meshed(False))
    assert sorted(p.name for p in (plain / SEG).iterdir()) == before  # no staging leftovers
    with pytest.raises(OptionError, match="not masks"):
        add_meshes(plain, masks=["cells"], overwrite=True)


def test_cli_bundle_with_meshes(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from helpers import DOI
    from maskbundle.cli import main

    np.save(tmp_path / "nuclei.npy", nuclei())
    args = [
        "bundle",
        str(tmp_path / "out"),
        "--mask",
        f"nuclei={tmp_path / 'nuclei.npy'}",
        "--physical-size",
        "0.4",
        "--physical-size",
        "0.5",
        "--physical-size",
        "1.3",
        "--protocol-doi",
        DOI,
        "--meshes",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    glb = tmp_path / "out" / SEG / "nuclei-mesh.glb"
    # the default bound (three largest voxel edges), as mesh_labels' default
    assert glb.read_bytes() == glb_bytes(mesh_labels(nuclei(), physical_size=PS), mask="nuclei")


def test_cli_mesh_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from helpers import DOI
    from maskbundle import write_segmentation_bundle
    from maskbundle.cli import main

    out = write_3d_bundle(tmp_path / "b")
    run = CliRunner().invoke(main, ["mesh", str(out), "--max-error", "0.5"])
    assert run.exit_code == 0, run.output
    assert (out / SEG / "nuclei-mesh.glb").is_file()
    again = CliRunner().invoke(main, ["mesh", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    flat = write_segmentation_bundle(
        tmp_path / "flat",
        {"cells": np.eye(8, dtype=np.uint8)},
        physical_size=(0.5, 0.5),
        protocol_doi=DOI,
    )
    refused = CliRunner().invoke(main, ["mesh", str(flat)])
    assert refused.exit_code == 2 and "3D" in refused.output


def test_exact_collapses_on_staircases_stay_on_the_full_resolution_surface() -> None:
    """max_error=0 on irregular voxel blobs (many passes of coplanar collapses, edge errors
    computed when each pass's scan reaches a triangle): were an error stale, a collapse would
    move a vertex off the surface or change the volume. Checked against trimesh volumes and
    the full-resolution vertices."""
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.random((24, 40, 40)), 2.0)
    blobs, n = ndimage.label(field > np.quantile(field, 0.7))
    assert n >= 3
    full = {m.object_id: m for m in mesh_labels(blobs, physical_size=PS, simplify=False)}
    exact = mesh_labels(blobs, physical_size=PS, max_error=0)
    assert sum(len(m.faces) for m in exact) < sum(len(m.faces) for m in full.values()) / 2
    for m in exact:
        ref = full[m.object_id]
        out = tm(m)
        assert out.is_watertight and out.is_winding_consistent
        assert out.volume == pytest.approx(tm(ref).volume, rel=1e-6)
        assert _surface_distance(m.vertices, ref).max() <= 1e-5, m.object_id


def _surface_distance(points: np.ndarray, mesh: ObjectMesh, k: int = 24) -> np.ndarray:
    """Distance of each point to the nearest of the k triangles of ``mesh`` whose centroids
    are closest (brute force on those: plane distance where the projection falls inside the
    triangle, else infinity; exact for points on the surface)."""
    tri = mesh.vertices.astype(np.float64)[mesh.faces]
    _, idx = cKDTree(tri.mean(1)).query(points, k=min(k, len(tri)))
    a, b, c = tri[idx, 0], tri[idx, 1], tri[idx, 2]
    p = points.astype(np.float64)[:, None, :]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    d = np.einsum("ijk,ijk->ij", p - a, n)
    proj = p - d[..., None] * n
    inside = np.ones(d.shape, dtype=bool)
    for u, w in ((a, b), (b, c), (c, a)):
        side = np.einsum("ijk,ijk->ij", np.cross(w - u, proj - u), n)
        inside &= side >= -1e-7
    return np.where(inside, np.abs(d), np.inf).min(1)
