"""`maskbundle convert labels` streams big single-mask files like `bundle --mask` does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import tifffile
from click.testing import CliRunner

from helpers import DOI
from maskbundle.cli import main
from maskbundle.synthetic import synthetic_tissue

COMMON = ["--physical-size", "0.5", "--physical-size", "0.5", "--protocol-doi", DOI,
          "--stem", "ds", "--adjacency", "linkage"]


def _sums(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output


def test_convert_labels_streams_and_writes_the_same_bundle(tmp_path, monkeypatch):
    cells, nuclei = synthetic_tissue((700, 600), seed=5)
    files = []
    for name, arr in (("cells", cells), ("nuclei", nuclei)):
        files.append(tmp_path / f"{name}.tif")
        tifffile.imwrite(files[-1], arr.astype(np.uint32), tile=(256, 256), compression="zlib")
    names = ["--mask-name", "cells", "--mask-name", "nuclei"]
    _run("convert", "labels", *map(str, files), "-o", str(tmp_path / "mem"), *names, *COMMON,
         "--no-streaming")
    # the reader of whole files must not be used on the streamed run
    import maskbundle.convert.generic as generic

    def refuse(*a, **k):
        raise AssertionError("read_labels read a file that should stream")

    monkeypatch.setattr(generic, "read_label_arrays", refuse)
    _run("convert", "labels", *map(str, files), "-o", str(tmp_path / "st"), *names, *COMMON,
         "--streaming", "--memory-limit", "64MiB")
    a, b = _sums(tmp_path / "mem"), _sums(tmp_path / "st")
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == ["derived/extras/provenance.json"]
    prov = json.loads((tmp_path / "st/derived/extras/provenance.json").read_text())
    assert prov["masks"]["cells"]["objects"] == len(np.unique(cells)) - 1


def test_convert_labels_names_an_unnamed_streamed_file_cells(tmp_path):
    cells = synthetic_tissue((300, 300), seed=2)[0].astype(np.uint32)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, cells, tile=(256, 256))
    _run("convert", "labels", str(path), "-o", str(tmp_path / "ds"), *COMMON, "--streaming")
    assert (tmp_path / "ds/derived/segmentation_masks/cells-objects.tsv").is_file()
