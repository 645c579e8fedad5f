"""Tile-wise pass 1 (measure.tiled) against the in-memory path, bitwise.

The reference is the in-memory route on the whole array: relabel, compute_features,
object_centroids, linkage_adjacency and centroid_adjacency; every value must be equal
(assert_array_equal, not allclose) for tile sizes that do and do not divide the image.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maskbundle.errors import LabelError, OptionError
from maskbundle.labels.relabel import relabel
from maskbundle.measure.adjacency import centroid_adjacency, linkage_adjacency
from maskbundle.measure.centroids import object_centroids
from maskbundle.measure.features import compute_features
from maskbundle.measure.tiled import measure_tiled, plan_tiles
from maskbundle.synthetic import synthetic_nuclei_3d, synthetic_tissue

STATS = ("mean", "median", "std", "min", "max", "sum")


def _mask_2d(shape: tuple[int, int] = (203, 177)) -> np.ndarray:
    """Cells, a disc and a ring much larger than the tiles, a label in two far places,
    objects on every image edge; original ids large and not contiguous."""
    cells, _ = synthetic_tissue(shape, cell_spacing=11.0, seed=3)
    lab = cells.astype(np.int64)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab[(yy - 95) ** 2 + (xx - 80) ** 2 < 55**2] = 10**6
    ring = ((yy - 60) ** 2 + (xx - 140) ** 2 < 40**2) & ((yy - 60) ** 2 + (xx - 140) ** 2 > 30**2)
    lab[ring] = 10**6 + 7
    lab[0:5, 0:60] = 10**6 + 11  # top edge
    lab[190:203, 150:177] = 10**6 + 11  # same label, far away (disconnected object)
    lab[:, 170:177][lab[:, 170:177] == 0] = 0
    lab[lab % 13 == 5] = 0  # some holes in the id sequence
    ids = np.unique(lab)
    perm = np.zeros(int(ids[-1]) + 1, np.int64)
    perm[ids] = ids * 7 + (ids > 0) * 3  # monotone: keeps relabel order interesting
    return perm[lab]


def _intensity(shape: tuple[int, ...], dtype: str, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        return rng.normal(100.0, 30.0, (channels, *shape)).astype(dtype)
    return rng.integers(0, 60000, (channels, *shape)).astype(dtype)


def _reference(lab: np.ndarray, inten: np.ndarray | None, ps: tuple[float, ...],
               max_gap: float = 0.0) -> dict[str, object]:
    rel, orig = relabel(lab)
    n = orig.size
    ft = compute_features(rel, physical_size=ps, intensity_image=inten,
                          statistics=STATS if inten is not None else ("mean",))
    counts, cents = object_centroids(rel, n)
    link = linkage_adjacency(rel, physical_size=ps, max_gap=max_gap, contact=True)
    return {"rel": rel, "orig": orig, "ft": ft, "counts": counts, "cents": cents, "link": link}


def _assert_same(res, ref, ps) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(res.original_ids, ref["orig"])
    assert res.original_ids.dtype == ref["orig"].dtype
    assert list(res.features.frame.columns) == list(ref["ft"].frame.columns)
    assert res.features.specs == ref["ft"].specs
    assert res.features.frame.index.equals(ref["ft"].frame.index)
    for col in ref["ft"].frame.columns:
        a = res.features.frame[col].to_numpy()
        b = ref["ft"].frame[col].to_numpy()
        assert a.dtype == b.dtype, col
        np.testing.assert_array_equal(a, b, err_msg=col)
    np.testing.assert_array_equal(res.counts, ref["counts"])
    np.testing.assert_array_equal(res.centroids, ref["cents"])
    pd.testing.assert_frame_equal(res.linkage, ref["link"], check_exact=True)
    assert res.linkage.attrs == ref["link"].attrs
    rel = ref["rel"]
    cref = centroid_adjacency(rel, physical_size=ps)
    cgot = centroid_adjacency(rel, physical_size=ps, centroids=res.centroids_um(ps))
    pd.testing.assert_frame_equal(cgot, cref, check_exact=True)


@pytest.mark.parametrize("tile", [48, 64, 101, 512])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_2d_bitwise_equal_to_in_memory(tile: int, dtype: str) -> None:
    lab = _mask_2d()
    inten = _intensity(lab.shape, dtype)
    ps = (0.5, 0.75)
    res = measure_tiled(lab, physical_size=ps, intensity=inten, statistics=STATS, tile=tile,
                        contact=True)
    if tile < 100:
        assert res.crossing.size > 10  # objects do span tiles
    _assert_same(res, _reference(lab, inten, ps), ps)


def test_2d_gap_linkage_and_no_intensity() -> None:
    lab = _mask_2d((150, 131))
    ps = (0.5, 0.5)
    res = measure_tiled(lab, physical_size=ps, tile=40, max_gap=1.6, contact=True)
    ref = _reference(lab, None, ps, max_gap=1.6)
    _assert_same(res, ref, ps)


@pytest.mark.parametrize("tile", [24, 37])
def test_3d_bitwise_equal_to_in_memory(tile: int) -> None:
    lab = synthetic_nuclei_3d((7, 61, 58), n_objects=25, radius=(4.0, 12.0), seed=2)
    lab = lab.astype(np.uint32)
    _, yy, xx = np.mgrid[:7, :61, :58]
    lab[((yy - 30) ** 2 + (xx - 29) ** 2 < 22**2) & (lab == 0)] = 500  # spans all tiles
    inten = _intensity(lab.shape, "float64", channels=1)[0]
    ps = (0.5, 0.5, 2.0)
    res = measure_tiled(lab, physical_size=ps, intensity=inten, statistics=STATS, tile=tile,
                        contact=True)
    assert res.crossing.size > 3
    _assert_same(res, _reference(lab, inten[np.newaxis], ps), ps)


def test_zarr_and_reader_inputs_match_numpy() -> None:
    zarr = pytest.importorskip("zarr")
    lab = _mask_2d((130, 120)).astype(np.uint32)
    z = zarr.create_array(store={}, shape=lab.shape, chunks=(32, 32), dtype=lab.dtype)
    z[:] = lab

    class Reader:  # the read(window) protocol
        shape = lab.shape
        dtype = lab.dtype

        def read(self, window):  # type: ignore[no-untyped-def]
            return lab[window].copy()

    a = measure_tiled(lab, physical_size=1.0, tile=50)
    sources: list[object] = [z, Reader()]
    try:
        import dask.array as da

        sources.append(da.from_array(lab, chunks=(40, 40)))
    except ImportError:  # the dask extra is optional
        pass
    for src in sources:
        b = measure_tiled(src, physical_size=1.0, tile=50)
        pd.testing.assert_frame_equal(a.features.frame, b.features.frame, check_exact=True)
        pd.testing.assert_frame_equal(a.linkage, b.linkage, check_exact=True)


def test_refusals() -> None:
    lab = _mask_2d((60, 60))
    inten = _intensity(lab.shape, "uint16")
    big = np.ones((300, 300), np.uint8)  # one object crossing every tile
    with pytest.raises(OptionError, match=r"median.*memory_limit"):
        measure_tiled(big, physical_size=1.0, intensity=inten[:, :1, :1].repeat(300, 1)
                      .repeat(300, 2), statistics=("median",), tile=64, memory_limit=1 << 20)
    with pytest.raises(LabelError, match="negative"):
        measure_tiled(np.full((10, 10), -1, np.int32), physical_size=1.0)
    with pytest.raises(LabelError, match="integer"):
        measure_tiled(np.zeros((10, 10), np.float32), physical_size=1.0)
    with pytest.raises(OptionError, match="memory_limit"):
        plan_tiles((4096, 4096), np.uint32, memory_limit=1000)


def test_plan_tiles_follows_memory_limit() -> None:
    small = plan_tiles((20000, 20000), np.uint32, memory_limit=64 << 20)
    big = plan_tiles((20000, 20000), np.uint32, n_channels=3, intensity_dtype=np.uint16,
                     memory_limit=4 << 30)
    assert small.tile[0] % 512 == 0 and big.tile[0] % 512 == 0
    assert small.tile < big.tile
    assert small.tile_bytes <= 64 << 20
    assert big.tile_bytes <= 4 << 30
    # one more 512 would not fit
    t = small.tile[0] + 512 + 2 * small.halo
    assert t * t * small.bytes_per_pixel > 64 << 20


def test_dask_cluster_same_as_single_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    distributed = pytest.importorskip("distributed")
    zarr = pytest.importorskip("zarr")
    lab = _mask_2d((140, 150)).astype(np.uint32)
    inten = _intensity(lab.shape, "uint16")
    z = zarr.create_array(store=str(tmp_path / "labels.zarr"), shape=lab.shape,
                          chunks=(64, 64), dtype=lab.dtype)
    z[:] = lab
    ps = (0.5, 0.5)
    ref = measure_tiled(lab, physical_size=ps, intensity=inten, statistics=STATS, tile=64)
    seen: list[tuple[int, int]] = []
    # threads, not processes: worker processes take ~40 s to start on a loaded 2-core
    # machine; that the tasks survive pickling is checked in test_tile_tasks_pickle
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        # numpy input: each task gets its block; zarr input: each task reads its window
        for src in (lab, z):
            got = measure_tiled(src, physical_size=ps, intensity=inten, statistics=STATS,
                                tile=64, client=client,
                                progress=lambda d, t, _px: seen.append((d, t)))
            pd.testing.assert_frame_equal(got.features.frame, ref.features.frame,
                                          check_exact=True)
            pd.testing.assert_frame_equal(got.linkage, ref.linkage, check_exact=True)
            np.testing.assert_array_equal(got.centroids, ref.centroids)
        # the tasks ran on the workers, not in this process
        assert len(client.run(lambda: 1)) == 2
    assert seen[-1][0] == seen[-1][1] and len(seen) == 2 * seen[-1][1]


def test_tile_tasks_pickle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Tasks sent to workers survive pickling: numpy blocks, zarr readers, options."""
    import pickle

    zarr = pytest.importorskip("zarr")
    from maskbundle.measure.tiled import _Options, measure_tile, tile_tasks
    from maskbundle.model import PhysicalSize

    lab = _mask_2d((90, 100)).astype(np.uint32)
    z = zarr.create_array(store=str(tmp_path / "l.zarr"), shape=lab.shape, chunks=(32, 32),
                          dtype=lab.dtype)
    z[:] = lab
    plan = plan_tiles(lab.shape, lab.dtype, tile=40)
    opt = _Options(n_markers=0, medians=False, moments=False, extremes=False, morphology=True,
                   linkage=True, physical_size=PhysicalSize.coerce(1.0), max_gap=0.0, ndim=2)
    for src, blocks in ((lab, True), (z, False)):
        for task in tile_tasks(src, None, plan, opt, send_blocks=blocks):
            a = measure_tile(task)
            b = measure_tile(pickle.loads(pickle.dumps(task)))
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.acc.s2, b.acc.s2)
            np.testing.assert_array_equal(a.link.keys, b.link.keys)


_PEAK_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
from _memory import reset_peak_rss, peak_rss_mib
from maskbundle.synthetic import synthetic_tissue
from maskbundle.measure.tiled import measure_tiled, bytes_per_object
cells, _ = synthetic_tissue((2048, 2048), cell_spacing=9.0, seed=1)
inten = np.random.default_rng(0).integers(0, 1000, (2, 2048, 2048), dtype=np.uint16)
kw = dict(physical_size=0.5, intensity=inten, statistics=("mean", "std"))
measure_tiled(cells[:600, :600], tile=512, **{**kw, "intensity": inten[:, :600, :600]})
base = reset_peak_rss()
limit = 16 << 20
r = measure_tiled(cells, memory_limit=limit, **kw)
extra = (peak_rss_mib() - base) * 2**20
print(extra, limit, r.counts.size, bytes_per_object(4), r.plan.tile[0])
"""


def test_peak_memory_within_limit_plus_objects() -> None:
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak RSS reset needs Linux /proc")
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(bench)], check=True,
                         capture_output=True, text=True, timeout=300).stdout.split()
    extra, limit, n, per, tile = (float(v) for v in out)
    assert tile == 512  # the limit forced small tiles
    assert n > 40000
    assert extra <= limit + n * per, (extra, limit, n, per)


def test_tile_progress_bar_counts_tiles_and_pixels() -> None:
    import io

    from maskbundle.progress import tile_progress

    lab = _mask_2d((100, 90))
    buf = io.StringIO()
    with tile_progress(lab.size, enabled=True, file=buf) as done:
        calls: list[tuple[int, int, int]] = []

        def record(d: int, t: int, px: int) -> None:
            calls.append((d, t, px))
            done(d, t, px)

        measure_tiled(lab, physical_size=1.0, tile=40, progress=record)
    n = calls[-1][1]
    assert [c[0] for c in calls] == list(range(1, n + 1))
    assert sum(c[2] for c in calls) == lab.size  # tiles partition the image
    out = buf.getvalue()
    assert f"tile {n}/{n}" in out and "px/s" in out  # tiles done / total, pixel rate


@pytest.mark.parametrize("offset", [0, 2**63])
def test_uint64_ids_and_spread_ids(offset: int) -> None:
    """Ids above 2**63 (kept as uint64), and tiles whose ids are spread (hash path)."""
    lab = _mask_2d((90, 80)).astype(np.uint64)
    lab[lab != 0] += np.uint64(offset)
    lab[:10, :10] = np.uint64(2**64 - 5)  # far from the other ids in its tile
    ref = _reference(lab, None, (1.0, 1.0))
    res = measure_tiled(lab, physical_size=1.0, tile=32, contact=True)
    _assert_same(res, ref, (1.0, 1.0))
