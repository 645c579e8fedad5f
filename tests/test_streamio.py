"""Lazy label sources, tile relabelling and the streaming OME-TIFF writer (issue 10, I/O)."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from skimage.segmentation import relabel_sequential

from helpers import fill_disk_after
from maskbundle.bundle.build import array_checksum
from maskbundle.errors import CorruptInputError, LabelError, OutputWriteError
from maskbundle.io.ometiff import (
    StreamChannel,
    build_ome_xml,
    read_label_ome_tiff,
    write_label_ome_tiff,
    write_label_ome_tiff_streaming,
)
from maskbundle.io.sources import BandChecksum, SourceReadError, open_label_source
from maskbundle.io.staging import staged_path
from maskbundle.labels.relabel import TileRelabel, label_dtype, relabel
from maskbundle.model import PhysicalSize


def _labels(shape: tuple[int, ...], seed: int, n: int = 300, scale: int = 7) -> np.ndarray:
    """Blocky labels (runs of equal values, as real masks) with gaps in the ids."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n, size=(*shape[:-2], -(-shape[-2] // 9), -(-shape[-1] // 11)))
    full = np.repeat(np.repeat(coarse, 9, axis=-2), 11, axis=-1)
    return (full[..., : shape[-2], : shape[-1]] * scale).astype(np.uint32)


def _xml(n_c: int, zyx: tuple[int, int, int], dtype: np.dtype) -> bytes:
    return build_ome_xml(
        channel_names=[f"mask{i}" for i in range(n_c)], shape_zyx=zyx, dtype=dtype,
        physical_size=PhysicalSize(0.5, 0.5, 2.0 if zyx[0] > 1 else None), image_name="t",
    )


def _in_memory(path: Path, raws: list[np.ndarray], compression: str) -> tuple[np.dtype, bytes]:
    """The reference: today's writer on the stack of masks relabelled in memory."""
    rel = [relabel(r)[0] for r in raws]
    dtype = label_dtype(max(int(r.max()) for r in rel))
    zyx = raws[0].shape if raws[0].ndim == 3 else (1, *raws[0].shape)
    stack = np.stack([r.astype(dtype).reshape(zyx) for r in rel])
    xml = _xml(len(raws), zyx, dtype)
    write_label_ome_tiff(path, stack, ome_xml=xml, compression=compression)  # type: ignore[arg-type]
    return dtype, xml


def _channels(sources: list, raws: list[np.ndarray], dtype: np.dtype) -> list[StreamChannel]:
    return [
        StreamChannel(s, TileRelabel(relabel(r)[1], dtype)) for s, r in zip(sources, raws, strict=True)
    ]


@pytest.mark.parametrize(
    ("shape", "n_c", "compression", "band_bytes"),
    [
        ((700, 1300), 1, "zlib", 1 << 20),  # several bands, edge tiles both ways
        ((1100, 513), 2, "zstd", 1 << 30),  # one band, two channels
        ((3, 520, 1030), 2, "zlib", 1 << 20),  # 3D, two channels
        ((2, 300, 200), 1, "zstd", 1 << 20),  # 3D, smaller than one tile: no reduced level
    ],
)
def test_streaming_bytes_equal_in_memory_writer(tmp_path, shape, n_c, compression, band_bytes):
    raws = [_labels(shape, seed) for seed in range(n_c)]
    dtype, xml = _in_memory(tmp_path / "a.ome.tif", raws, compression)
    sources = [open_label_source(r, name=f"m{i}") for i, r in enumerate(raws)]
    out = write_label_ome_tiff_streaming(
        tmp_path / "b.ome.tif", _channels(sources, raws, dtype), ome_xml=xml, dtype=dtype,
        compression=compression, band_bytes=band_bytes,
    )
    assert (tmp_path / "a.ome.tif").read_bytes() == (tmp_path / "b.ome.tif").read_bytes()
    # checksums from the bands read equal the in-memory path's input checksum
    assert out.input_sha256 == [array_checksum(r) for r in raws]
    back = read_label_ome_tiff(tmp_path / "b.ome.tif")
    assert back.n_levels == out.levels
    for c, r in enumerate(raws):  # independent relabel: scikit-image
        want = relabel_sequential(r)[0].reshape(back.labels.shape[1:])
        np.testing.assert_array_equal(back.labels[c], want)
    assert not list(tmp_path.glob(".pyramid-spill-*"))  # spill files removed


def _write_sources(tmp_path: Path, raw: np.ndarray) -> dict[str, Path]:
    """The same mask as a tiled TIFF, an OME-TIFF with singleton C and T, a zarr array,
    an OME-Zarr (0.4) group and an .npy file."""
    paths = {}
    paths["tiff"] = tmp_path / "m.tif"
    tifffile.imwrite(paths["tiff"], raw, tile=(256, 256), compression="zlib")
    paths["ometiff"] = tmp_path / "m.ome.tif"
    tifffile.imwrite(paths["ometiff"], raw[None, None], tile=(128, 128), compression="zstd",
                     metadata={"axes": "TCYX"}, ome=True)
    paths["zarr"] = tmp_path / "m.zarr"
    arr = zarr.create_array(str(paths["zarr"]), shape=raw.shape, dtype=raw.dtype, chunks=(300, 400))
    arr[:] = raw
    paths["omezarr"] = tmp_path / "ome.zarr"
    group = zarr.open_group(str(paths["omezarr"]), mode="w", zarr_format=2)
    level = group.create_array("0", shape=(1, *raw.shape), dtype=raw.dtype, chunks=(1, 1024, 256))
    level[:] = raw[None]
    group.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}],
                                   "axes": [{"name": "c"}, {"name": "y"}, {"name": "x"}]}]
    paths["npy"] = tmp_path / "m.npy"
    np.save(paths["npy"], raw)
    return paths


def test_file_sources_stream_to_the_same_bytes(tmp_path):
    raw = _labels((1200, 900), 3)
    dtype, xml = _in_memory(tmp_path / "ref.ome.tif", [raw], "zlib")
    ref = (tmp_path / "ref.ome.tif").read_bytes()
    for kind, path in _write_sources(tmp_path, raw).items():
        with open_label_source(path, name="cells") as src:
            assert src.shape == raw.shape and src.dtype == raw.dtype, kind
            assert src.provenance["file"] == path.name
            out = write_label_ome_tiff_streaming(
                tmp_path / f"{kind}.ome.tif", _channels([src], [raw], dtype), ome_xml=xml,
                dtype=dtype, band_bytes=1 << 20,
            )
        assert (tmp_path / f"{kind}.ome.tif").read_bytes() == ref, kind
        assert out.input_sha256 == [array_checksum(raw)], kind


def test_converted_in_memory_input_keeps_its_checksum(tmp_path):
    # floats and big-endian arrays are converted by the checker; the checksum recorded
    # is still that of the array as given (what the in-memory path records)
    raw = _labels((600, 700), 11)
    dtype = np.dtype(np.uint16)
    xml = _xml(1, (1, *raw.shape), dtype)
    for given in (raw.astype(np.float32), raw.astype(">u4")):
        src = open_label_source(given)
        out = write_label_ome_tiff_streaming(
            tmp_path / "x.ome.tif", _channels([src], [raw], dtype), ome_xml=xml, dtype=dtype)
        assert out.input_sha256 == [array_checksum(given)]
        (tmp_path / "x.ome.tif").unlink()


def test_dask_source_and_window_reads(tmp_path):
    da = pytest.importorskip("dask.array")
    raw = _labels((2, 500, 600), 4)
    src = open_label_source(da.from_array(raw, chunks=(1, 256, 300)), name="nuclei")
    assert (src.shape, src.ndim, src.chunks) == (raw.shape, 3, (1, 256, 300))
    window = (slice(1, 2), slice(17, 333), slice(250, 600))
    np.testing.assert_array_equal(src.read(window), raw[window])


def test_sources_read_nothing_when_opened(tmp_path, monkeypatch):
    raw = _labels((600, 600), 5)
    paths = _write_sources(tmp_path, raw)
    calls = []
    real = os.pread  # how the tiled-TIFF reader (io/tifftiles.py) reads a stored tile
    monkeypatch.setattr(os, "pread", lambda *a, **k: calls.append(1) or real(*a, **k))
    src = open_label_source(paths["tiff"])
    assert not calls
    src.read((slice(0, 10), slice(0, 10)))
    assert calls  # reading decodes; opening did not
    src.close()


def test_source_refusals(tmp_path):
    with pytest.raises(LabelError, match="boolean"):
        open_label_source(zarr.zeros((10, 10), dtype=bool))
    with pytest.raises(LabelError, match="integer dtype"):
        open_label_source(zarr.zeros((10, 10), dtype="f4"))
    # in memory, floats follow the one checker: whole numbers are accepted ...
    assert open_label_source(np.ones((4, 4), "f4")).dtype == np.uint64
    with pytest.raises(LabelError, match="fractional"):  # ... fractions are not
        open_label_source(np.full((4, 4), 0.5))
    two = tmp_path / "two.tif"
    tifffile.imwrite(two, np.zeros((2, 64, 64), np.uint16), metadata={"axes": "CYX"}, ome=True)
    with pytest.raises(LabelError, match="'C' has 2 positions"):
        open_label_source(two)
    with pytest.raises(LabelError, match="2D"):
        open_label_source(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(CorruptInputError, match="does not exist"):
        open_label_source(tmp_path / "missing.tif")
    # an OME-Zarr whose dataset path leaves the store
    bad = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w", zarr_format=2)
    bad.attrs["multiscales"] = [{"datasets": [{"path": "../m.zarr"}]}]
    with pytest.raises(CorruptInputError, match="not a plain relative name"):
        open_label_source(tmp_path / "bad.zarr")
    neg = open_label_source(zarr.array(np.array([[0, 3], [-2, 1]], np.int32)))
    with pytest.raises(LabelError, match=r"negative label value\(s\), first at \(1, 0\)"):
        neg.read((slice(0, 2), slice(0, 2)))


@pytest.mark.parametrize("big", [False, True])
def test_tile_relabel_matches_whole_relabel(big):
    raw = _labels((300, 400), 6, n=2000).astype(np.uint64)
    if big:  # ids far beyond any lookup table: the per-tile remap path
        raw = np.where(raw > 0, raw + np.uint64(2**40), 0).astype(np.uint64)
    whole, ids = relabel(raw)
    tr = TileRelabel(ids, whole.dtype)
    assert (tr._lut is None) == big
    for y, x in [(0, 0), (128, 256), (250, 399)]:
        tile = raw[y : y + 100, x : x + 100]
        np.testing.assert_array_equal(tr(tile), whole[y : y + 100, x : x + 100])
    missing = raw[:50, :50].copy()
    missing[3, 4] = raw.max() + 1  # above every id
    with pytest.raises(LabelError, match="not in the relabel map"):
        tr(missing)
    missing[3, 4] = ids[0] + 1 if ids[1] != ids[0] + 1 else ids[1] + 1  # inside the range, absent
    assert int(missing[3, 4]) not in set(ids.tolist())
    with pytest.raises(LabelError, match="not in the relabel map"):
        tr(missing)
    with pytest.raises(LabelError, match="do not fit uint8"):
        TileRelabel(np.arange(1, 300), np.uint8)
    with pytest.raises(LabelError, match="ascending"):
        TileRelabel(np.array([3, 2]), np.uint16)


def test_band_checksum_needs_every_pixel():
    a = _labels((40, 30), 7)
    bc = BandChecksum(a.shape, a.dtype)
    bc.update(a[:25])
    with pytest.raises(ValueError, match="fed 750 of 1200"):
        bc.hexdigest()
    bc.update(a[25:])
    assert bc.hexdigest() == array_checksum(a)


def _stage_leftovers(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".staging-" in p.name or ".pyramid-spill-" in p.name]


def _write_staged(target: Path, channels, xml: bytes, dtype) -> None:
    # as the bundle writer does: write into the stage, which moves into place on success
    with staged_path(target) as stage:
        write_label_ome_tiff_streaming(stage, channels, ome_xml=xml, dtype=dtype, band_bytes=1 << 20)


def test_damaged_tile_mid_write_leaves_nothing(tmp_path):
    raw = _labels((1536, 1024), 8)
    path = tmp_path / "in" / "m.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, raw, tile=(256, 256), compression="zlib")
    with tifffile.TiffFile(path) as tf:  # damage a tile in the last band of rows
        off, n = tf.pages[0].dataoffsets[-3], tf.pages[0].databytecounts[-3]
    data = bytearray(path.read_bytes())
    data[off : off + n] = b"\xff" * n
    path.write_bytes(bytes(data))
    dtype, xml = np.dtype(np.uint16), _xml(1, (1, *raw.shape), np.dtype(np.uint16))
    out = tmp_path / "out"
    out.mkdir()
    with open_label_source(path, name="cells") as src, pytest.raises(SourceReadError, match="cells"):
        _write_staged(out / "x.ome.tif", _channels([src], [raw], dtype), xml, dtype)
    assert not (out / "x.ome.tif").exists()
    assert not _stage_leftovers(out)


def test_dtype_change_between_tiles_is_named(tmp_path):
    da = pytest.importorskip("dask.array")
    raw = _labels((1100, 700), 9)
    lazy = da.from_array(raw, chunks=(512, 700)).map_blocks(
        lambda b, block_info=None: b.astype(np.uint16)
        if block_info[0]["chunk-location"][0] == 2 else b,
        dtype=np.uint32,
    )
    dtype = np.dtype(np.uint16)
    out = tmp_path / "out"
    out.mkdir()
    src = open_label_source(lazy, name="cells")
    with pytest.raises(SourceReadError, match="one dtype throughout"):
        _write_staged(out / "x.ome.tif", _channels([src], [raw], dtype), _xml(1, (1, 1100, 700), dtype), dtype)
    assert not list(out.iterdir())
    # a relabel step that changes the output dtype mid-way is named as well
    seen = []

    def flaky(tile: np.ndarray) -> np.ndarray:
        seen.append(1)
        return tile.astype(np.uint16 if len(seen) < 2 else np.uint32)

    with pytest.raises(LabelError, match="relabel every tile"):
        _write_staged(out / "y.ome.tif", [StreamChannel(open_label_source(raw % 60000), flaky)],
                      _xml(1, (1, 1100, 700), dtype), dtype)
    assert not list(out.iterdir())


def test_disk_full_mid_write(tmp_path, monkeypatch):
    raw = _labels((1100, 1100), 10)
    dtype = np.dtype(np.uint16)
    count = fill_disk_after(monkeypatch, 10)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputWriteError, match="disk is full"):
        _write_staged(out / "x.ome.tif", _channels([open_label_source(raw)], [raw], dtype),
                      _xml(1, (1, *raw.shape), dtype), dtype)
    assert len(count) >= 10
    assert not list(out.iterdir())


def test_peak_memory_is_a_band_not_the_image(tmp_path):
    # 6000 x 7000 uint32 (168 MB) read from a memory-mapped .npy: traced allocations stay
    # at a few bands of rows (the mapped file's pages are the OS's, not allocations)
    h, w = 6000, 7000
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint32, shape=(h, w))
    for y0 in range(0, h, 500):
        rows = np.arange(y0, min(h, y0 + 500))[:, None] // 40
        mm[y0 : y0 + 500] = (rows * 1000 + np.arange(w)[None, :] // 40 + 1).astype(np.uint32)
    del mm
    src = open_label_source(path, name="cells")
    ids = np.unique(np.concatenate([
        np.unique(src.read((slice(y, min(h, y + 1000)), slice(0, w)))) for y in range(0, h, 1000)
    ]))
    ids = ids[ids != 0]
    dtype = label_dtype(ids.size)
    xml = _xml(1, (1, h, w), dtype)
    tracemalloc.start()
    try:
        res = write_label_ome_tiff_streaming(
            tmp_path / "big.ome.tif", [StreamChannel(src, TileRelabel(ids, dtype))], ome_xml=xml,
            dtype=dtype, compression="zstd", band_bytes=16 << 20,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    image_bytes = h * w * 4
    assert peak < image_bytes / 4, (peak, image_bytes)
    with tifffile.TiffFile(tmp_path / "big.ome.tif") as tf:
        level2 = tf.series[0].levels[2].asarray()
        assert json.loads(json.dumps(res.levels)) == len(tf.series[0].levels)
    # the reduced level equals the stride sample of the relabelled image (independent)
    want = np.searchsorted(ids, np.load(path, mmap_mode="r")[::4, ::4]) + 1
    np.testing.assert_array_equal(level2, want)
