"""Old spellings of renamed keywords and CLI flags still work, warn, and mean the same.

Issue 12 gave each concept one word (``mask_name=``/``mask_names=``, ``class_types=``,
``--adjacency``, ``--only``); each old spelling must give the very result of the new one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from helpers import DOI
from maskbundle import write_segmentation_bundle
from maskbundle.bundle.adjacency import check_adjacency_file
from maskbundle.cli import main
from maskbundle.convert import read_cellpose, read_labels, read_mesmer, read_qupath, read_stardist
from maskbundle.errors import OptionError


def _labels() -> np.ndarray:
    lab = np.zeros((16, 16), np.uint16)
    lab[1:6, 1:6], lab[8:14, 2:9], lab[3:7, 10:15] = 3, 7, 9
    return lab


def _same(a: Any, b: Any) -> None:
    assert list(a.masks) == list(b.masks)
    for name in a.masks:
        np.testing.assert_array_equal(a.masks[name].labels, b.masks[name].labels)
        assert a.masks[name].object_types == b.masks[name].object_types


def test_reader_mask_name_keywords(tmp_path: Path) -> None:
    npy = tmp_path / "lab.npy"
    np.save(npy, _labels())
    tif = tmp_path / "lab.tif"
    tifffile.imwrite(tif, _labels())
    cases = [
        (read_cellpose, npy, "name", "mask_name", "nuclei"),
        (read_stardist, tif, "name", "mask_name", "cells"),
        (read_labels, npy, "name", "mask_names", "tissue"),
    ]
    for read, path, old, new, value in cases:
        with pytest.warns(DeprecationWarning, match=f"{old}=.*use {new}="):
            seg_old = read(path, **{old: value})
        seg_new = read(path, **{new: value})
        assert list(seg_new.masks) == [value]
        _same(seg_old, seg_new)
        with pytest.raises(TypeError, match="old spelling"):
            read(path, **{old: value, new: value})
        with pytest.raises(TypeError, match="unexpected keyword argument 'nmae'"):
            read(path, nmae=value)
    both = tmp_path / "mesmer.npy"
    np.save(both, np.stack([_labels(), (_labels() > 0).astype(np.uint16) * 0], axis=-1))
    with pytest.warns(DeprecationWarning, match="names=.*use mask_names="):
        old_m = read_mesmer(both, names=("cell", "nucleus"))
    _same(old_m, read_mesmer(both, mask_names=("cell", "nucleus")))
    assert list(old_m.masks) == ["cell", "nucleus"]


def test_read_qupath_class_types_and_mask_names(tmp_path: Path) -> None:
    def square(x0: int, y0: int, x1: int, y1: int) -> dict[str, Any]:
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        return {"type": "Polygon", "coordinates": [ring]}

    feats = [
        {"type": "Feature", "geometry": square(1, 1, 8, 8), "nucleusGeometry": square(3, 3, 6, 6),
         "properties": {"objectType": "cell", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "geometry": square(10, 2, 15, 9),
         "properties": {"objectType": "cell", "classification": {"name": "Immune"}}},
    ]
    path = tmp_path / "q.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    types = {"Tumor": "CL:0001064", "Immune": "CL:0000738"}
    new = read_qupath(path, shape=(16, 16), class_types=types, mask_names=("cell", "nucleus"))
    assert new.masks["cell"].object_types == {1: "CL:0001064", 2: "CL:0000738"}
    with pytest.warns(DeprecationWarning) as caught:
        old = read_qupath(path, shape=(16, 16), object_types=types, cell_mask="cell",
                          nucleus_mask="nucleus")
    assert {str(w.message).split("(")[1].split("=")[0] for w in caught} == {
        "object_types", "cell_mask", "nucleus_mask"}
    _same(old, new)
    with pytest.raises(TypeError, match="old spelling"):
        read_qupath(path, shape=(16, 16), class_types=types, object_types=types)
    with pytest.raises(OptionError, match="class_types"):
        read_qupath(path, shape=(16, 16), class_types={"Tumor": "CL:0001064"})


def test_cli_old_flags_still_work_and_are_hidden(tmp_path: Path) -> None:
    ds = write_segmentation_bundle(tmp_path / "ds", {"cells": _labels(), "nuclei": _labels()},
                                   physical_size=(0.5, 0.5), protocol_doi=DOI)
    seg = ds / "derived/segmentation_masks"
    runner = CliRunner()
    new = runner.invoke(main, ["adjacency", str(ds), "--adjacency", "linkage", "--only", "cells"])
    assert new.exit_code == 0, new.output
    written = sorted(p.name for p in seg.glob("*-adjacency.csv"))
    assert written == ["cells-linkage-adjacency.csv"]
    first = (seg / written[0]).read_bytes()
    old = runner.invoke(main, ["adjacency", str(ds), "--kind", "linkage", "--mask", "cells",
                               "--overwrite"])
    assert old.exit_code == 0, old.output
    assert sorted(p.name for p in seg.glob("*-adjacency.csv")) == written
    assert (seg / written[0]).read_bytes() == first
    for command in ("adjacency", "mesh", "export"):
        shown = runner.invoke(main, [command, "--help"]).output
        assert "--only" in shown and "--mask " not in shown and "--kind" not in shown


def test_staged_adjacency_check_uses_the_validator_rule(tmp_path: Path) -> None:
    path = tmp_path / "cells-linkage-adjacency.csv"
    path.write_text("Object ID 1,Object ID 2,Distance (micrometer)\n1,2,0\n2,2,0\n1,2,0\n"
                    "1,4,0.5\n3,1,x\n")
    problems = check_adjacency_file(path, n_objects=3)
    assert problems == [
        f"{path.name}: line 3 '2,2,0' (self edge)",
        f"{path.name}: line 5 '1,4,0.5' (unknown id)",
        f"{path.name}: line 6 '3,1,x' (unparsable)",
        f"{path.name}: edge 1,2 x2 occurs more than once",
    ]
    path.write_text("a,b,c\n1,2,0\n")
    assert check_adjacency_file(path, n_objects=3) == [
        f"{path.name}: header does not start Object ID 1,Object ID 2,Distance (micrometer)"]
