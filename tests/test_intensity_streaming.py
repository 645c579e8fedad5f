"""On the streaming path a tiled (OME-)TIFF intensity image is read by windows, not whole."""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from helpers import DOI
from maskbundle import write_segmentation_bundle
from maskbundle.io.intensity import open_intensity_tiles, read_intensity_image
from maskbundle.synthetic import synthetic_tissue

SHAPE = (700, 600)


def _sums(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def _write(path, masks, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_segmentation_bundle(path, masks, physical_size=(0.5, 0.5), stem="ds",
                                         protocol_doi=DOI, **kw)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_streamed_intensity_file_gives_the_same_bundle(tmp_path, monkeypatch, dtype):
    cells = synthetic_tissue(SHAPE, seed=3)[0]
    img = (np.random.default_rng(2).random((3, *SHAPE)) * 4000).astype(dtype)
    path = tmp_path / "markers.ome.tif"
    tifffile.imwrite(path, img, tile=(256, 256), compression="zlib", photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "CD3", "CD8"]}})
    opts = dict(intensity_image=path, features=["morphology", "mean", "median", "std", "max"])
    _write(tmp_path / "mem", {"cells": cells}, **opts)

    import maskbundle.bundle.plan as plan

    def refuse(*a, **k):
        raise AssertionError("the streaming path read the whole intensity image")

    monkeypatch.setattr(plan, "read_intensity_image", refuse)
    _write(tmp_path / "st", {"cells": cells}, streaming=True, tile=256, **opts)
    assert _sums(tmp_path / "mem") == _sums(tmp_path / "st")
    table = (tmp_path / "st/derived/segmentation_masks/cells-objects.tsv").read_text()
    assert "DAPI" in table and "CD8" in table  # marker names from the OME channels


def test_windows_equal_the_whole_read_and_survive_pickling(tmp_path):
    img = np.random.default_rng(4).integers(0, 9000, (2, 1, 300, 500), dtype=np.uint16)
    path = tmp_path / "m.ome.tif"
    tifffile.imwrite(path, img, tile=(128, 128), compression="zlib", metadata={"axes": "CZYX"})
    whole = read_intensity_image(path).for_masks((300, 500))
    tiles = open_intensity_tiles(path, (300, 500))
    assert tiles is not None and tiles.shape == whole.shape == (2, 300, 500)
    again = pickle.loads(pickle.dumps(tiles))
    for reader in (tiles, again):
        win = (slice(0, 2), slice(100, 299), slice(7, 500))
        np.testing.assert_array_equal(reader.read(win), whole[win])
        reader.close()


def test_ambiguous_or_untiled_files_are_read_whole(tmp_path):
    img = np.zeros((2, 64, 64), np.uint16)
    plain = tmp_path / "plain.tif"  # a plain page stack: channels or planes?
    tifffile.imwrite(plain, img, tile=(32, 32), photometric="minisblack")
    strips = tmp_path / "strips.ome.tif"
    tifffile.imwrite(strips, img, metadata={"axes": "CYX"})
    assert open_intensity_tiles(plain, (64, 64)) is None
    assert open_intensity_tiles(strips, (64, 64)) is None


@pytest.mark.parametrize("kind", ["dask", "zarr"])
def test_lazy_intensity_arrays_stream_to_the_same_bundle(tmp_path, kind):
    cells = synthetic_tissue(SHAPE, seed=3)[0]
    img = np.random.default_rng(5).integers(0, 3000, (2, *SHAPE), dtype=np.uint16)
    if kind == "dask":
        da = pytest.importorskip("dask.array")
        lazy = da.from_array(img, chunks=(1, 256, 256))
    else:
        import zarr

        lazy = zarr.create_array(str(tmp_path / "img.zarr"), shape=img.shape, dtype=img.dtype,
                                 chunks=(1, 256, 256))
        lazy[:] = img
    opts = dict(features=["morphology", "mean", "max"], marker_names=["DAPI", "CD3"])
    _write(tmp_path / "mem", {"cells": cells}, intensity_image=img, **opts)
    _write(tmp_path / "st", {"cells": cells}, intensity_image=lazy, streaming=True, tile=256,
           **opts)
    _write(tmp_path / "lazy-mem", {"cells": cells}, intensity_image=lazy, streaming=False,
           **opts)
    assert _sums(tmp_path / "mem") == _sums(tmp_path / "st") == _sums(tmp_path / "lazy-mem")


def test_lazy_array_checksum_equals_the_whole_array_checksum():
    da = pytest.importorskip("dask.array")
    from maskbundle.bundle.plan import array_checksum, lazy_array_checksum

    img = np.random.default_rng(6).random((2, 3, 130, 70)).astype(">f4")
    assert lazy_array_checksum(da.from_array(img, chunks=(1, 1, 64, 64)), band_rows=50) == \
        array_checksum(img)
