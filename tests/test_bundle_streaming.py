"""write_segmentation_bundle on the streaming path (tiles) against the in-memory path.

Every check compares the sha256 of every file of the two bundles: the streaming path
must give the same bytes for the same labels and options (issue 10).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from helpers import fill_disk_after
from maskbundle import write_segmentation_bundle
from maskbundle.bundle.plan import parse_memory_limit, plan_bundle
from maskbundle.errors import LabelError, OptionError, OutputWriteError
from maskbundle.io.sources import SourceReadError
from maskbundle.synthetic import synthetic_tissue

DOI = "10.17504/protocols.io.example"
SHAPE = (700, 600)


def _sums(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def _same_bundle(a: Path, b: Path) -> None:
    sa, sb = _sums(a), _sums(b)
    assert sorted(sa) == sorted(sb)
    assert {k for k in sa if sa[k] != sb[k]} == set()


def _write(path: Path, masks, **kw):
    kw.setdefault("physical_size", (0.5, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HubmapConversionWarning for marker columns
        return write_segmentation_bundle(path, masks, stem="ds", protocol_doi=DOI, **kw)


@pytest.fixture(scope="module")
def tissue():
    cells, nuclei = synthetic_tissue(SHAPE, seed=5)
    return cells, nuclei


def _leftovers(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if ".staging-" in p.name or ".pyramid-spill-" in p.name]


def test_two_masks_with_intensities_and_adjacency_cross_tiles(tmp_path, tissue):
    cells, nuclei = tissue
    img = np.random.default_rng(1).integers(0, 4000, size=(2, *SHAPE), dtype=np.uint16)
    opts = dict(intensity_image=img, marker_names=["DAPI", "CD3"],
                adjacency=("centroid", "linkage"), adjacency_options={"max_gap": 1.0},
                features=["morphology", "mean", "median", "std", "min", "max", "sum"])
    mem = _write(tmp_path / "mem", {"cells": cells, "nuclei": nuclei}, **opts)
    # tiles of 256 px: most objects of this tissue cross a tile edge somewhere
    st = _write(tmp_path / "st", {"cells": cells, "nuclei": nuclei}, streaming=True, tile=256,
                **opts)
    _same_bundle(tmp_path / "mem", tmp_path / "st")
    assert mem.provenance["masks"]["cells"]["input_sha256"] == \
        st.provenance["masks"]["cells"]["input_sha256"]
    assert (tmp_path / "st/derived/segmentation_masks/cells-linkage-adjacency.csv").exists()


def test_xlsx_object_types_no_features(tmp_path, tissue):
    cells = tissue[0] * 7  # not 1..N: a label map is written
    opts = dict(objects_format="xlsx", adjacency="linkage", features=False,
                object_types={"cells": {7: "CL:0000236"}})
    _write(tmp_path / "mem", {"cells": cells}, **opts)
    _write(tmp_path / "st", {"cells": cells}, streaming=True, tile=256, **opts)
    _same_bundle(tmp_path / "mem", tmp_path / "st")


def test_3d_with_meshes_and_adjacency(tmp_path, tissue):
    z = np.stack([tissue[0][:96, :80]] * 5)
    opts = dict(physical_size=(0.5, 0.5, 1.0), meshes=True, adjacency=("centroid", "linkage"))
    _write(tmp_path / "mem", {"cells": z}, **opts)
    _write(tmp_path / "st", {"cells": z}, streaming=True, tile=32, **opts)
    _same_bundle(tmp_path / "mem", tmp_path / "st")
    # meshes read the whole mask: refused, with the fix, when it does not fit the limit
    with pytest.raises(OptionError, match="raise memory_limit"):
        _write(tmp_path / "small", {"cells": z}, streaming=True, memory_limit=200_000, tile=32,
               **opts)
    assert not (tmp_path / "small").exists()


def test_lazy_inputs_stream_to_the_same_bytes(tmp_path, tissue):
    da = pytest.importorskip("dask.array")
    cells = tissue[0].astype(np.uint32)
    opts = dict(adjacency="centroid")
    _write(tmp_path / "mem", {"cells": cells}, **opts)
    tif = tmp_path / "in" / "cells.tif"
    tif.parent.mkdir()
    tifffile.imwrite(tif, cells, tile=(256, 256), compression="zlib")
    zdir = tmp_path / "in" / "cells.zarr"
    zarr.create_array(str(zdir), shape=cells.shape, chunks=(200, 300), dtype=cells.dtype)[:] = cells
    npy = tmp_path / "in" / "cells.npy"
    np.save(npy, cells)
    inputs = {
        "dask": da.from_array(cells, chunks=(300, 250)),
        "zarr": zarr.open_array(str(zdir), mode="r"),
        "tiff-path": tif,
        "zarr-path": str(zdir),
        "npy-path": npy,
    }
    for kind, value in inputs.items():
        plan = plan_bundle(tmp_path / kind, {"cells": value}, **_plan_defaults())
        assert plan.streaming, kind  # lazy input streams by default
        _write(tmp_path / kind, {"cells": value}, tile=256, **opts)
        _same_bundle(tmp_path / "mem", tmp_path / kind)


def _plan_defaults() -> dict:
    import inspect

    sig = inspect.signature(write_segmentation_bundle)
    out = {k: p.default for k, p in sig.parameters.items()
           if p.default is not inspect.Parameter.empty and k != "name"}
    out.update(physical_size=(0.5, 0.5), protocol_doi=DOI)
    return out


def test_automatic_choice_and_option_errors(tmp_path, tissue):
    cells = tissue[0]
    base = _plan_defaults()
    assert not plan_bundle(tmp_path / "a", {"cells": cells}, **base).streaming
    # 4 x the label bytes above the limit: streamed
    small = {**base, "memory_limit": cells.nbytes * 3}
    assert plan_bundle(tmp_path / "a", {"cells": cells}, **small).streaming
    assert not plan_bundle(tmp_path / "a", {"cells": cells},
                           **{**base, "memory_limit": "1GiB"}).streaming
    assert parse_memory_limit("4GiB") == 4 << 30
    assert parse_memory_limit("512MB") == 512 * 10**6
    assert parse_memory_limit(1234) == 1234
    for bad in ("lots", -1, True):
        with pytest.raises(OptionError, match="memory_limit"):
            parse_memory_limit(bad)
    with pytest.raises(OptionError, match="tile must be"):
        _write(tmp_path / "m", {"cells": cells}, streaming=True, tile=0)
    with pytest.raises(OptionError, match="lazy sources"):
        _write(tmp_path / "m", {"cells": zarr.array(cells)}, streaming=False)
    assert not (tmp_path / "m").exists()


def test_bad_tiles_leave_nothing(tmp_path, tissue):
    da = pytest.importorskip("dask.array")
    cells = tissue[0].astype(np.uint32)
    path = tmp_path / "in" / "cells.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, cells, tile=(256, 256), compression="zlib")
    with tifffile.TiffFile(path) as tf:  # damage one stored tile
        off, n = tf.pages[0].dataoffsets[-2], tf.pages[0].databytecounts[-2]
    data = bytearray(path.read_bytes())
    data[off: off + n] = b"\xff" * n
    path.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SourceReadError, match="cells"):
        _write(out / "ds", {"cells": path}, tile=256)
    assert not (out / "ds").exists() and not _leftovers(out)
    # a dtype that changes between tiles
    lazy = da.from_array(cells, chunks=(256, 600)).map_blocks(
        lambda b, block_info=None: b.astype(np.uint16)
        if block_info[0]["chunk-location"][0] == 1 else b, dtype=np.uint32)
    with pytest.raises(SourceReadError, match="one dtype throughout"):
        _write(out / "ds", {"cells": lazy}, tile=256)
    assert not (out / "ds").exists() and not _leftovers(out)


def test_too_many_objects_after_merging(tmp_path, tissue, monkeypatch):
    import maskbundle.labels.relabel as relabel_mod

    n = int(np.unique(tissue[0]).size - 1)
    monkeypatch.setattr(relabel_mod, "MAX_OBJECTS", n - 1)  # stands for 2**32 - 1
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(LabelError, match="exceed"):
        _write(out / "ds", {"cells": tissue[0]}, streaming=True, tile=256)
    assert not (out / "ds").exists() and not _leftovers(out)


def test_disk_full_while_writing_the_image(tmp_path, tissue, monkeypatch):
    count = fill_disk_after(monkeypatch, 5)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputWriteError, match="disk is full"):
        _write(out / "ds", {"cells": tissue[0]}, streaming=True, tile=256)
    assert len(count) >= 5
    assert not list(out.iterdir())


def test_dask_client_gives_the_same_bytes(tmp_path, tissue):
    distributed = pytest.importorskip("distributed")
    cells = tissue[0]
    _write(tmp_path / "one", {"cells": cells}, streaming=True, tile=256, adjacency="linkage")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        _write(tmp_path / "two", {"cells": cells}, streaming=True, tile=256, adjacency="linkage",
               client=client)
    _same_bundle(tmp_path / "one", tmp_path / "two")


def test_cli_streams_zarr_dirs_and_files_above_the_limit(tmp_path, tissue):
    from click.testing import CliRunner

    from maskbundle.cli import main

    cells = tissue[0].astype(np.uint32)
    _write(tmp_path / "mem", {"cells": cells}, adjacency=("centroid", "linkage"))
    zdir = tmp_path / "in" / "cells.zarr"
    zdir.parent.mkdir()
    zarr.create_array(str(zdir), shape=cells.shape, chunks=(256, 256), dtype=cells.dtype)[:] = cells
    tif = tmp_path / "in" / "cells.tif"
    tifffile.imwrite(tif, cells, tile=(256, 256))
    common = ["--physical-size", "0.5", "--physical-size", "0.5", "--protocol-doi", DOI, "--stem", "ds",
              "--adjacency", "centroid", "--adjacency", "linkage"]
    for out, mask, extra in (("z", f"cells={zdir}", []),
                             ("t", f"cells={tif}", ["--streaming", "--memory-limit", "64MiB"])):
        result = CliRunner().invoke(main, ["bundle", str(tmp_path / out), "--mask", mask,
                                           *common, *extra])
        assert result.exit_code == 0, result.output
        a, b = _sums(tmp_path / "mem"), _sums(tmp_path / out)
        # provenance names the input file on the CLI; every other file is the same
        assert sorted(a) == sorted(b)
        assert [k for k in a if a[k] != b[k]] == ["derived/extras/provenance.json"]
        import json

        prov = json.loads((tmp_path / out / "derived/extras/provenance.json").read_text())
        assert prov["masks"]["cells"]["source"]["file"] == Path(mask.split("=")[1]).name
        assert prov["masks"]["cells"]["input_sha256"] == \
            json.loads((tmp_path / "mem/derived/extras/provenance.json").read_text()
                       )["masks"]["cells"]["input_sha256"]
    bad = CliRunner().invoke(main, ["bundle", str(tmp_path / "bad"), "--mask", f"cells={tif}",
                                    *common, "--memory-limit", "lots"])
    assert bad.exit_code == 2 and "--memory-limit" in bad.output


def test_file_sources_pickle_by_reopening(tmp_path, tissue):
    """Dask workers in other processes get a path source by reopening it (no file handles)."""
    import pickle

    from maskbundle.io.sources import open_label_source

    cells = tissue[0].astype(np.uint32)
    tif = tmp_path / "cells.tif"
    tifffile.imwrite(tif, cells, tile=(256, 256), compression="zlib")
    with open_label_source(tif, name="cells") as src:
        again = pickle.loads(pickle.dumps(src))
        window = (slice(100, 400), slice(250, 600))
        assert again.name == "cells" and again.shape == cells.shape
        np.testing.assert_array_equal(again.read(window), cells[window])
        again.close()
