"""The streaming pass on a Dask cluster of worker *processes*: the mask is read from its
file on each worker (the source pickles as its path) and the bundle is the same."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from helpers import DOI
from maskbundle import write_segmentation_bundle
from maskbundle.synthetic import synthetic_tissue


def _sums(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def test_process_workers_read_the_file_and_give_the_same_bytes(tmp_path):
    distributed = pytest.importorskip("distributed")
    cells = synthetic_tissue((700, 600), seed=5)[0].astype(np.uint32)
    tif = tmp_path / "cells.tif"
    tifffile.imwrite(tif, cells, tile=(256, 256), compression="zlib")
    opts = dict(physical_size=(0.5, 0.5), protocol_doi=DOI, stem="ds", streaming=True,
                tile=256, adjacency=("centroid", "linkage"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_segmentation_bundle(tmp_path / "one", {"cells": tif}, **opts)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            write_segmentation_bundle(tmp_path / "two", {"cells": tif}, client=client, **opts)
            # the tasks ran in the worker processes, not in this one
            ran = client.run(lambda: __import__("sys").modules.get("maskbundle.measure.tiled")
                             is not None)
    assert len(ran) == 2 and any(ran.values())
    assert _sums(tmp_path / "one") == _sums(tmp_path / "two")
