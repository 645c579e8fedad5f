"""The in-memory label OME-TIFF writer: unstacked channels, tiles, cancellation (issue 11)."""

from __future__ import annotations

import errno
import threading
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.segmentation import relabel_sequential

import maskbundle.bundle.write as write
import maskbundle.io.ometiff as ometiff
from maskbundle import write_segmentation_bundle
from maskbundle.errors import LabelError, OutputWriteError
from maskbundle.io.ometiff import WriteCancelled, build_ome_xml, write_label_ome_tiff
from maskbundle.model import PhysicalSize

DOI = "10.17504/protocols.io.example"
TILE = 512


def _labels(shape: tuple[int, ...], seed: int, n: int, dtype: type) -> np.ndarray:
    """Blocky labels (runs of equal values, as real masks)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n, size=(*shape[:-2], -(-shape[-2] // 7), -(-shape[-1] // 13)))
    full = np.repeat(np.repeat(coarse, 7, axis=-2), 13, axis=-1)
    return np.ascontiguousarray(full[..., : shape[-2], : shape[-1]]).astype(dtype)


def _xml(n_c: int, zyx: tuple[int, int, int], dtype: np.dtype) -> bytes:
    return build_ome_xml(
        channel_names=[f"mask{i}" for i in range(n_c)], shape_zyx=zyx, dtype=dtype,
        physical_size=PhysicalSize(0.5, 0.5, 2.0 if zyx[0] > 1 else None), image_name="t",
    )


def _tifffile_reference(path: Path, stack: np.ndarray, xml: bytes) -> None:
    """tifffile on the stacked array, with the options the writer documents (zlib 6,
    512 tiles, stride pyramid as SubIFDs): the file the channel list must reproduce."""
    h, w = stack.shape[-2:]
    n = 0
    while min(h, w) > TILE:
        h, w, n = (h + 1) // 2, (w + 1) // 2, n + 1
    opts = {"photometric": "minisblack", "tile": (TILE, TILE), "compression": "zlib",
            "compressionargs": {"level": 6}, "metadata": None, "software": "maskbundle"}
    with tifffile.TiffWriter(path, ome=False) as tif:
        tif.write(stack, subifds=n, description=xml, **opts)
        for k in range(1, n + 1):
            tif.write(stack[..., :: 2**k, :: 2**k], subfiletype=1, **opts)


@pytest.mark.parametrize("zyx", [(1, 700, 1300), (2, 530, 515)])
def test_channel_list_is_the_stacked_file_and_tiles_decode(tmp_path: Path, zyx) -> None:  # type: ignore[no-untyped-def]
    # a uint16 and a uint32 channel: the first is widened tile by tile, never as a whole
    a = _labels(zyx, 1, 60_000, np.uint16)
    b = _labels(zyx, 2, 200_000, np.uint32)
    stack = np.stack([a.astype(np.uint32), b])
    xml = _xml(2, zyx, np.dtype(np.uint32))
    ours, ref = tmp_path / "ours.ome.tif", tmp_path / "ref.ome.tif"
    levels = write_label_ome_tiff(ours, [a if zyx[0] > 1 else a[0], b], ome_xml=xml,
                                  dtype=np.uint32)
    _tifffile_reference(ref, stack, xml)
    assert ours.read_bytes() == ref.read_bytes()
    with tifffile.TiffFile(ours) as tf:
        series = tf.series[0]
        assert len(series.levels) == levels == 2
        for k, level in enumerate(series.levels):
            got = level.asarray().reshape(2, zyx[0], *level.shape[-2:])
            np.testing.assert_array_equal(got, stack[..., :: 2**k, :: 2**k])
        # one raw tile, decoded by zlib alone: the bottom-right (edge) tile of the last
        # plane of channel 0 at level 0, zero-padded to 512 x 512
        page = tf.pages[zyx[0] - 1]
        key = page.keyframe
        assert key.compression == 8 and (key.tilelength, key.tilewidth) == (TILE, TILE)
        fh = tf.filehandle
        fh.seek(page.dataoffsets[-1])
        raw = fh.read(page.databytecounts[-1])
    assert raw[:1] == b"x"  # a zlib stream (Adobe deflate), not raw deflate
    tile = np.frombuffer(zlib.decompress(raw), np.uint32).reshape(TILE, TILE)
    plane = stack[0, zyx[0] - 1]
    y0, x0 = (plane.shape[0] - 1) // TILE * TILE, (plane.shape[1] - 1) // TILE * TILE
    want = np.zeros((TILE, TILE), np.uint32)
    want[: plane.shape[0] - y0, : plane.shape[1] - x0] = plane[y0:, x0:]
    np.testing.assert_array_equal(tile, want)


def test_writes_are_deterministic(tmp_path: Path) -> None:
    labels = [_labels((1, 1100, 600), s, 5000, np.uint16) for s in (3, 4)]
    xml = _xml(2, (1, 1100, 600), np.dtype(np.uint16))
    for name in ("a", "b"):
        write_label_ome_tiff(tmp_path / f"{name}.tif", labels, ome_xml=xml)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()


def test_channels_are_never_stacked(tmp_path: Path) -> None:
    # two 3072^2 uint16 masks written as uint32: a stack would be 72 MiB at once; the
    # writer holds at most 32 MiB of widened tiles (ometiff._TILES_IN_FLIGHT) and its
    # compressed output
    masks = [_labels((3072, 3072), s, 60_000, np.uint16) for s in (5, 6)]
    xml = _xml(2, (1, 3072, 3072), np.dtype(np.uint32))
    tracemalloc.start()
    try:
        write_label_ome_tiff(tmp_path / "x.tif", masks, ome_xml=xml, dtype=np.uint32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 44 << 20, peak / 2**20


def test_narrowing_and_shape_mismatch_are_refused(tmp_path: Path) -> None:
    xml = _xml(1, (1, 8, 8), np.dtype(np.uint16))
    with pytest.raises(LabelError, match="cannot store"):
        write_label_ome_tiff(tmp_path / "x.tif", [np.ones((8, 8), np.uint32)], ome_xml=xml,
                             dtype=np.uint16)
    with pytest.raises(LabelError, match="one shape"):
        write_label_ome_tiff(tmp_path / "x.tif", [np.ones((8, 8), np.uint16),
                                                  np.ones((8, 9), np.uint16)], ome_xml=xml)
    assert not (tmp_path / "x.tif").exists()


def test_failure_mid_write_removes_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ometiff._array_tiles

    def fills_disk(levels, dtype, cancel):  # type: ignore[no-untyped-def]
        it = real(levels, dtype, cancel)
        for _ in range(3):
            yield next(it)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ometiff, "_array_tiles", fills_disk)
    out = tmp_path / "x.tif"
    with pytest.raises(OutputWriteError, match="disk is full"):
        write_label_ome_tiff(out, [_labels((1500, 1500), 7, 900, np.uint16)],
                             ome_xml=_xml(1, (1, 1500, 1500), np.dtype(np.uint16)))
    assert list(tmp_path.iterdir()) == []


def test_cancel_stops_before_the_next_tile(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(WriteCancelled):
        write_label_ome_tiff(tmp_path / "x.tif", [np.ones((600, 600), np.uint16)],
                             ome_xml=_xml(1, (1, 600, 600), np.dtype(np.uint16)), cancel=stop)
    assert list(tmp_path.iterdir()) == []


def _bundle(path: Path, masks: dict[str, np.ndarray]) -> Path:
    return write_segmentation_bundle(path, masks, physical_size=(0.5, 0.5), protocol_doi=DOI,
                                     features=False)


def test_bundle_of_masks_of_two_dtypes(tmp_path: Path) -> None:
    # 66,049 cells (uint32) and a few nuclei (relabelled to uint16), one uint32 image
    cells = np.arange(1, 257 * 257 + 1, dtype=np.int64).reshape(257, 257) * 3
    nuclei = np.zeros((257, 257), np.int32)
    nuclei[10:40, 10:40], nuclei[100:120, 50:90] = 9, 4
    out = _bundle(tmp_path / "ds", {"cells": cells, "nuclei": nuclei})
    tiff = next((out / "derived/segmentation_masks").glob("*.ome.tiff"))
    with tifffile.TiffFile(tiff) as tf:
        got = tf.series[0].asarray()
    assert got.dtype == np.uint32 and got.shape == (2, 257, 257)
    np.testing.assert_array_equal(got[0], relabel_sequential(cells)[0])
    np.testing.assert_array_equal(got[1], relabel_sequential(nuclei)[0])


def test_bundle_failure_in_the_tiff_thread_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ometiff._array_tiles

    def fills_disk(levels, dtype, cancel):  # type: ignore[no-untyped-def]
        it = real(levels, dtype, cancel)
        yield next(it)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ometiff, "_array_tiles", fills_disk)
    with pytest.raises(OutputWriteError, match="disk is full"):
        _bundle(tmp_path / "ds", {"cells": _labels((1100, 700), 8, 400, np.uint16)})
    assert list(tmp_path.iterdir()) == []


def test_table_failure_cancels_the_tiff_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ometiff._array_tiles
    started, seen = threading.Event(), []

    def waits_for_cancel(levels, dtype, cancel):  # type: ignore[no-untyped-def]
        it = real(levels, dtype, cancel)
        yield next(it)
        started.set()
        assert cancel is not None and cancel.wait(30)
        try:
            yield from it
        except WriteCancelled:
            seen.append("cancelled")
            raise

    def broken_table(*args: object, **kwargs: object) -> None:
        assert started.wait(30)
        raise ValueError("table broke")

    monkeypatch.setattr(ometiff, "_array_tiles", waits_for_cancel)
    monkeypatch.setattr(write, "write_objects_table", broken_table)
    with pytest.raises(ValueError, match="table broke"):
        _bundle(tmp_path / "ds", {"cells": _labels((1100, 700), 9, 400, np.uint16)})
    assert seen == ["cancelled"]  # the writer stopped, and was waited for
    assert not any(t.name.startswith("maskbundle-ome-tiff") for t in threading.enumerate())
    assert list(tmp_path.iterdir()) == []
