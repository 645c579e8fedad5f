"""The direct tiled-TIFF reader (io/tifftiles.py) against tifffile's own reading."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from maskbundle.errors import CorruptInputError
from maskbundle.io.sources import SourceReadError, open_label_source

WINDOWS_2D = [(slice(0, 1100), slice(0, 700)), (slice(255, 513), slice(1, 699)),
              (slice(1099, 1100), slice(0, 1)), (slice(300, 300), slice(0, 700))]


def _labels(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    top = min(np.iinfo(dtype).max, 70000)
    # runs of equal labels, as masks have, plus noise so every tile differs
    base = rng.integers(0, top, size=(*shape[:-1], shape[-1] // 7 + 1)).astype(dtype)
    return np.repeat(base, 7, axis=-1)[..., : shape[-1]]


def _served_directly(src) -> bool:
    return type(src._array).__name__ == "TiffTiles"


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32])
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("compression", [None, "zlib", "zstd", "predictor"])
def test_2d_windows_equal_tifffile(tmp_path, dtype, byteorder, compression):
    labels = _labels((1100, 700), dtype)
    path = tmp_path / "m.tif"
    kwargs = {"compression": "zlib", "predictor": True} if compression == "predictor" else {
        "compression": compression}
    tifffile.imwrite(path, labels, tile=(256, 256), byteorder=byteorder, **kwargs)
    with open_label_source(path, name="cells") as src:
        assert _served_directly(src)
        for win in WINDOWS_2D:
            got = src.read(win)
            assert got.dtype.isnative and got.dtype.itemsize == np.dtype(dtype).itemsize
            np.testing.assert_array_equal(got, tifffile.imread(path)[win])


def test_3d_stack_and_ome_singleton_channel(tmp_path):
    vol = _labels((3, 300, 500), np.uint32)
    stack = tmp_path / "z.tif"
    tifffile.imwrite(stack, vol, tile=(128, 128), compression="zlib", photometric="minisblack")
    ome = tmp_path / "c.ome.tif"
    tifffile.imwrite(ome, vol[:, np.newaxis], tile=(128, 128), compression="zlib",
                     metadata={"axes": "ZCYX"})
    for path in (stack, ome):
        with open_label_source(path, name="nuclei") as src:
            assert _served_directly(src) and src.shape == (3, 300, 500)
            win = (slice(1, 3), slice(100, 257), slice(0, 500))
            np.testing.assert_array_equal(src.read(win), vol[win])


@pytest.mark.parametrize("layout", [{"rowsperstrip": 64}, {"tile": (256, 256), "compression": "lzw"}])
def test_other_layouts_use_tifffile(tmp_path, layout):
    labels = _labels((600, 500), np.uint16)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, labels, **layout)
    with open_label_source(path, name="cells") as src:
        assert not _served_directly(src)
        np.testing.assert_array_equal(src.read((slice(10, 400), slice(3, 500))), labels[10:400, 3:])


def _tile_extent(path, index):
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        return int(page.dataoffsets[index]), int(page.databytecounts[index])


def test_damaged_tile_is_a_named_error(tmp_path):
    labels = _labels((600, 600), np.uint32)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, labels, tile=(256, 256), compression="zlib")
    offset, count = _tile_extent(path, 4)  # the middle tile
    raw = bytearray(path.read_bytes())
    raw[offset + 2 : offset + count] = bytes(count - 2)  # deflate header kept, body zeroed
    path.write_bytes(bytes(raw))
    with open_label_source(path, name="cells") as src:
        assert _served_directly(src)
        np.testing.assert_array_equal(src.read((slice(0, 256), slice(0, 256))), labels[:256, :256])
        with pytest.raises(SourceReadError, match="tile 4 of page 0"):
            src.read((slice(300, 310), slice(300, 310)))


def test_truncated_file_is_a_named_error(tmp_path):
    labels = _labels((600, 600), np.uint32)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, labels, tile=(256, 256), compression="zlib")
    offset, _ = _tile_extent(path, 8)  # tiles are written in order: cut inside the last
    raw = path.read_bytes()
    path.write_bytes(raw[: offset + 5])
    try:
        src = open_label_source(path, name="cells")
    except CorruptInputError:
        return  # refused on open: fine too
    with src, pytest.raises(CorruptInputError, match=r"truncated|damaged"):
        src.read((slice(0, 600), slice(0, 600)))


def test_short_tile_is_refused(tmp_path):
    # a tile whose stream decodes to fewer bytes than a tile: swap in a smaller tile's data
    labels = _labels((512, 512), np.uint16)
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, labels[:128, :128], tile=(128, 128), compression="zlib")
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, labels, tile=(256, 256), compression="zlib")
    s_off, s_count = _tile_extent(small, 0)
    offset, count = _tile_extent(path, 0)
    if s_count > count:
        pytest.skip("the smaller tile does not fit in place")
    raw = bytearray(path.read_bytes())
    raw[offset : offset + s_count] = small.read_bytes()[s_off : s_off + s_count]
    path.write_bytes(bytes(raw))
    with open_label_source(path, name="cells") as src, pytest.raises(
        SourceReadError, match=r"decodes to|cannot be decoded"
    ):
        src.read((slice(0, 10), slice(0, 10)))


def test_a_forked_child_reads_with_its_own_threads(tmp_path):
    import multiprocessing

    labels = _labels((1100, 700), np.uint16)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, labels, tile=(256, 256), compression="zlib")
    with open_label_source(path, name="cells") as src:
        src.read((slice(0, 1100), slice(0, 700)))  # the parent's pool now has threads
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        total = pool.apply_async(_sum_in_child, (str(path),)).get(timeout=60)
    assert total == int(labels.astype(np.int64).sum())


def _sum_in_child(path: str) -> int:
    with open_label_source(path, name="cells") as src:
        return int(src.read((slice(0, 1100), slice(0, 700))).astype(np.int64).sum())


def test_oversized_tiles_are_left_to_tifffile_and_its_checks(tmp_path, monkeypatch):
    import maskbundle.io.tifftiles as tifftiles
    from maskbundle.io.intensity import open_intensity_tiles

    path = tmp_path / "m.tif"
    tifffile.imwrite(path, _labels((600, 500), np.uint16), tile=(256, 256), compression="zlib")
    monkeypatch.setattr(tifftiles, "MAX_TILE_BYTES", 256 * 256 * 2 - 1)
    with open_label_source(path, name="cells") as src:
        assert not _served_directly(src)
    assert open_intensity_tiles(path, (600, 500)) is None
