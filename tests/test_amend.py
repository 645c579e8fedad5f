"""The writer's plan, the one result type, and the one way to amend a bundle."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import DOI
from maskbundle import BundleResult, add_adjacency, add_meshes, write_segmentation_bundle
from maskbundle.bundle import amend
from maskbundle.bundle.plan import plan_bundle
from maskbundle.errors import BundleInvalidError, LabelError

SEG = Path("derived/segmentation_masks")


def _cells() -> np.ndarray:
    labels = np.zeros((40, 40), np.uint16)
    labels[2:12, 2:12] = 4
    labels[2:12, 12:22] = 8
    labels[20:30, 5:15] = 15
    labels[20:30, 15:30] = 16
    return labels


def _volume() -> np.ndarray:
    labels = np.zeros((6, 16, 16), np.uint16)
    labels[1:4, 2:7, 2:7] = 1
    labels[2:5, 9:14, 8:13] = 2
    return labels


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_result_behaves_as_the_directory(tmp_path: Path) -> None:
    out = write_segmentation_bundle(tmp_path / "ds", {"cells": _cells()},
                                    physical_size=(0.5, 0.5), protocol_doi=DOI)
    assert isinstance(out, BundleResult) and isinstance(out, os.PathLike)
    assert out == tmp_path / "ds" and tmp_path / "ds" == out
    assert os.fspath(out) == str(tmp_path / "ds") and out.name == "ds"
    assert hash(out) == hash(tmp_path / "ds")
    assert (out / SEG).is_dir() and Path(out) == tmp_path / "ds"
    # what was written, against a listing of the directory (provenance.json aside)
    on_disk = {p for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    assert set(out.written) == on_disk - {tmp_path / "ds/derived/extras/provenance.json"}
    prov = json.loads((tmp_path / "ds/derived/extras/provenance.json").read_text())
    assert json.loads(json.dumps(dict(out.provenance))) == prov
    assert out.report is None


def test_plan_is_frozen_and_reads_no_pixels(tmp_path: Path) -> None:
    bad = np.ones((8, 8), bool)  # refused by the label rules, but only when read
    plan = plan_bundle(tmp_path / "p", {"cells": bad}, physical_size=(0.5, 0.5),
                       mask_ids=None, protocol_doi=DOI, parent_image=None, stem=None,
                       annotation_tool="In-house", object_types=None, objects_format="tsv",
                       contributors=None, compression="zlib", intensity_image=None,
                       marker_names=None, alternative_ids=None, features=True,
                       extra_columns=None, adjacency="linkage", adjacency_options=None,
                       meshes=False, mesh_options=None, overwrite=False, progress=False)
    assert plan.masks[0].mask_id == "CL:0000000" and plan.shape == (8, 8)
    assert plan.adjacency == ("linkage",) and plan.n_stages == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stem = "x"  # type: ignore[misc]
    with pytest.raises(LabelError, match="boolean"):
        write_segmentation_bundle(tmp_path / "p", {"cells": bad}, physical_size=(0.5, 0.5),
                                  protocol_doi=DOI)
    assert not (tmp_path / "p").exists()


def test_old_keywords_warn_and_give_the_same_bytes(tmp_path: Path) -> None:
    kw = {"physical_size": (0.5, 0.5), "protocol_doi": DOI, "stem": "ds"}
    new = write_segmentation_bundle(tmp_path / "new", {"cells": _cells()}, **kw)
    old = write_segmentation_bundle(tmp_path / "old", {"cells": _cells()}, **kw)
    add_adjacency(new, adjacency="linkage", adjacency_options={"max_gap": 1.0})
    with pytest.warns(DeprecationWarning, match="adjacency") as seen:
        add_adjacency(old, kinds="linkage", max_gap=1.0)  # type: ignore[call-arg]
    assert len(seen) == 2  # kinds=, then the option keyword
    assert _files(old.path) == _files(new.path)
    vol_kw = {"physical_size": (0.5, 0.5, 1.0), "protocol_doi": DOI, "stem": "vol"}
    a = write_segmentation_bundle(tmp_path / "va", {"nuclei": _volume()}, **vol_kw)
    b = write_segmentation_bundle(tmp_path / "vb", {"nuclei": _volume()}, **vol_kw)
    add_meshes(a, mesh_options={"simplify": False})
    with pytest.warns(DeprecationWarning, match="mesh_options"):
        add_meshes(b, simplify=False)  # type: ignore[call-arg]
    assert _files(a.path) == _files(b.path)


def test_a_failed_check_moves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_segmentation_bundle(tmp_path / "ds", {"nuclei": _volume()},
                                    physical_size=(0.5, 0.5, 1.0), protocol_doi=DOI)
    before = _files(out.path)
    real = amend.AmendFile

    def failing(*args: object, **kwargs: object) -> amend.AmendFile:
        kwargs["check"] = lambda path: [f"{path.name}: broken on purpose"]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    import maskbundle.bundle.meshes as meshes

    monkeypatch.setattr(meshes, "AmendFile", failing)
    with pytest.raises(BundleInvalidError, match="broken on purpose"):
        add_meshes(out)
    assert _files(out.path) == before  # no mesh, provenance untouched, no stage left


def test_amend_report_covers_the_files_written(tmp_path: Path) -> None:
    out = write_segmentation_bundle(tmp_path / "ds", {"cells": _cells()},
                                    physical_size=(0.5, 0.5), protocol_doi=DOI)
    result = add_adjacency(out, adjacency=("centroid", "linkage"))
    assert result == out and result.report is not None and result.report.ok
    checked = {f.location for f in result.report.findings}
    assert checked == {f"{SEG.as_posix()}/cells-{k}-adjacency.csv" for k in ("centroid",
                                                                            "linkage")}
    # the linkage file against a brute-force count of 4-connected touching pairs
    lab = _cells()
    pairs = set()
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
        m = (a != b) & (a > 0) & (b > 0)
        pairs |= {tuple(sorted(p)) for p in zip(a[m].tolist(), b[m].tolist(), strict=True)}
    ids = {4: 1, 8: 2, 15: 3, 16: 4}
    assert result.provenance["adjacency"]["cells"]["linkage"]["n_edges"] == len(
        {tuple(sorted((ids[x], ids[y]))) for x, y in pairs})


def test_name_is_the_deprecated_spelling_of_stem(tmp_path: Path) -> None:
    kw = {"physical_size": (0.5, 0.5), "protocol_doi": DOI}
    new = write_segmentation_bundle(tmp_path / "a", {"cells": _cells()}, stem="S1", **kw)
    with pytest.warns(DeprecationWarning, match="stem="):
        old = write_segmentation_bundle(tmp_path / "b", {"cells": _cells()}, name="S1", **kw)
    assert _files(old.path) == _files(new.path)
    assert (new / SEG / "S1.segmentations.ome.tiff").is_file()
