"""Adjacency files in bundles: written with the bundle, added later, via the CLI.

Files are reread with the csv module and compared with references computed from the
labels reread by tifffile (neighbour scans, scipy's Delaunay), not with the code under test.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from scipy.spatial import Delaunay

from helpers import DOI
from maskbundle.bundle import adjacency as bundle_adjacency
from maskbundle.bundle.adjacency import add_adjacency
from maskbundle.bundle.build import write_segmentation_bundle
from maskbundle.cli import _physical_size_args, main
from maskbundle.errors import CorruptInputError, MaskNameError, OptionError, OutputExistsError
from maskbundle.synthetic import synthetic_nuclei_3d

SEG = Path("derived/segmentation_masks")
HEADER = ["Object ID 1", "Object ID 2", "Distance (micrometer)"]


def read_edges(path: Path) -> tuple[list[str], dict[tuple[int, int], list[float]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    edges = {(int(r[0]), int(r[1])): [float(v) for v in r[2:]] for r in rows[1:]}
    assert len(edges) == len(rows) - 1
    return rows[0], edges


def reread_labels(bundle: Path) -> np.ndarray:
    (tiff,) = (bundle / SEG).glob("*.segmentations.ome.tiff")
    with tifffile.TiffFile(tiff) as tf:
        return tf.series[0].levels[0].asarray()


def face_pairs(lab: np.ndarray) -> set[tuple[int, int]]:
    """Pairs sharing a face, by comparing each pixel with its next neighbour per axis."""
    out: set[tuple[int, int]] = set()
    for ax in range(lab.ndim):
        a = np.moveaxis(lab, ax, 0)[1:]
        b = np.moveaxis(lab, ax, 0)[:-1]
        m = (a != b) & (a > 0) & (b > 0)
        for x, y in zip(a[m].tolist(), b[m].tolist(), strict=True):
            out.add((min(x, y), max(x, y)))
    return out


def centroids(lab: np.ndarray, spacing: np.ndarray) -> dict[int, np.ndarray]:
    return {
        int(i): np.argwhere(lab == i).mean(axis=0) * spacing for i in np.unique(lab) if i
    }


@pytest.fixture
def masks(tissue: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    cells, nuclei = tissue
    # gaps in the ids and a large id: the files must use the relabelled Object IDs
    return {"cells": cells.astype(np.int64) * 3 + 70000 * (cells > 0), "nuclei": nuclei}


def test_bundle_with_adjacency_matches_references(
    tmp_path: Path, masks: dict[str, np.ndarray], checker  # type: ignore[no-untyped-def]
) -> None:
    out = write_segmentation_bundle(
        tmp_path / "ds",
        masks,
        physical_size=(0.5, 0.4),
        protocol_doi=DOI,
        adjacency=("centroid", "linkage"),
        adjacency_options={"contact": True},
    )
    levels = reread_labels(out)
    spacing = np.array([0.4, 0.5])  # (y, x)
    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    for c, name in enumerate(("cells", "nuclei")):
        lab = levels[c]
        header, linkage = read_edges(out / SEG / f"{name}-linkage-adjacency.csv")
        assert header == [*HEADER, "Contact length (micrometer)"]
        assert set(linkage) == face_pairs(lab)
        assert all(v[0] == 0 for v in linkage.values())
        header, cent = read_edges(out / SEG / f"{name}-centroid-adjacency.csv")
        assert header == HEADER
        cents = centroids(lab, spacing)
        ids = sorted(cents)
        tri = Delaunay(np.array([cents[i] for i in ids]))
        ref = set()
        for simplex in tri.simplices:
            for i in range(3):
                for j in range(i + 1, 3):
                    a, b = ids[simplex[i]], ids[simplex[j]]
                    ref.add((min(a, b), max(a, b)))
        dist = {p: float(np.linalg.norm(cents[p[0]] - cents[p[1]])) for p in ref}
        bound = 3 * float(np.median(list(dist.values())))
        assert set(cent) == {p for p, d in dist.items() if d <= bound}
        for p, (d,) in cent.items():
            assert d == pytest.approx(dist[p], rel=1e-6)
        entry = prov["adjacency"][name]
        assert entry["centroid"]["method"] == "delaunay"
        assert entry["centroid"]["max_distance"] == pytest.approx(bound)
        assert entry["linkage"]["file"] == f"{name}-linkage-adjacency.csv"
        assert "definition" in entry["linkage"] and entry["linkage"]["max_gap"] == 0.0
    checker(out)


def test_add_adjacency_equals_written_with_bundle(
    tmp_path: Path, masks: dict[str, np.ndarray], checker  # type: ignore[no-untyped-def]
) -> None:
    opts = {"max_gap": 1.0, "method": "knn", "k": 5}
    with_adj = write_segmentation_bundle(
        tmp_path / "a", masks, physical_size=(0.5, 0.5), protocol_doi=DOI,
        adjacency=("centroid", "linkage"), adjacency_options=opts,
    )
    plain = write_segmentation_bundle(
        tmp_path / "b", masks, physical_size=(0.5, 0.5), protocol_doi=DOI
    )
    assert not list((plain / SEG).glob("*adjacency*"))
    prov_before = json.loads((plain / "derived/extras/provenance.json").read_text())
    result = add_adjacency(plain, adjacency_options=opts)
    assert len(result.written) == 4
    assert result.report is not None and result.report.ok, result.report.format()
    for f in sorted((with_adj / SEG).glob("*-adjacency.csv")):
        assert (plain / SEG / f.name).read_bytes() == f.read_bytes()
    prov_a = json.loads((with_adj / "derived/extras/provenance.json").read_text())
    prov_b = json.loads((plain / "derived/extras/provenance.json").read_text())
    assert prov_a["adjacency"] == prov_b["adjacency"]
    assert {k: v for k, v in prov_b.items() if k != "adjacency"} == prov_before
    assert not [p for p in plain.rglob("*") if p.name.startswith(".")]
    checker(plain)


def test_add_adjacency_refuses_existing_and_overwrites_on_request(
    tmp_path: Path, masks: dict[str, np.ndarray]
) -> None:
    out = write_segmentation_bundle(
        tmp_path / "ds", masks, physical_size=(0.5, 0.5), protocol_doi=DOI
    )
    add_adjacency(out, adjacency="linkage", masks="cells")
    files = sorted(p.name for p in (out / SEG).glob("*-adjacency.csv"))
    assert files == ["cells-linkage-adjacency.csv"]
    target = out / SEG / "cells-linkage-adjacency.csv"
    before = target.read_bytes()
    prov_before = (out / "derived/extras/provenance.json").read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        add_adjacency(out)  # cells linkage exists: nothing at all is written
    assert sorted(p.name for p in (out / SEG).glob("*-adjacency.csv")) == files
    assert (out / "derived/extras/provenance.json").read_bytes() == prov_before
    add_adjacency(out, adjacency="linkage", masks="cells", overwrite=True,
                  adjacency_options={"contact": True})
    header, _ = read_edges(target)
    assert header[-1] == "Contact length (micrometer)" and target.read_bytes() != before
    prov = json.loads((out / "derived/extras/provenance.json").read_text())
    assert prov["adjacency"]["cells"]["linkage"]["contact"]
    assert "masks" in prov and "options" in prov


def test_add_adjacency_failure_leaves_bundle_unchanged(
    tmp_path: Path, masks: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = write_segmentation_bundle(
        tmp_path / "ds", masks, physical_size=(0.5, 0.5), protocol_doi=DOI
    )
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []
    real = bundle_adjacency.write_adjacency_csv

    def failing(path: Path, frame: object) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real(path, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle_adjacency, "write_adjacency_csv", failing)
    with pytest.raises(OSError, match="disk full"):
        add_adjacency(out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # no CSV moved in, no staging file left, provenance untouched


def test_add_adjacency_to_a_3d_label_tiff(tmp_path: Path) -> None:
    vol = synthetic_nuclei_3d((10, 48, 48), n_objects=15, seed=2)
    src = tmp_path / "nuclei.tif"
    tifffile.imwrite(src, vol)
    with pytest.raises(OptionError, match="output_dir"):
        add_adjacency(src)
    with pytest.raises(OptionError, match="physical"):
        add_adjacency(src, output_dir=tmp_path / "o")
    with pytest.raises(MaskNameError):
        add_adjacency(src, output_dir=tmp_path / "o", physical_size=(0.5, 0.5, 2.0),
                      mask_names=["Nuclei1"])
    res = add_adjacency(
        src, output_dir=tmp_path / "o", physical_size=(0.5, 0.5, 2.0), mask_names=["nuclei"],
        adjacency_options={"method": "radius", "radius": 12.0, "max_gap": 1.2},
    )
    assert res.report is None and len(res.written) == 2
    _, cent = read_edges(tmp_path / "o" / "nuclei-centroid-adjacency.csv")
    cents = centroids(vol, np.array([2.0, 0.5, 0.5]))
    ref = {
        (a, b): float(np.linalg.norm(cents[a] - cents[b]))
        for a in cents for b in cents if a < b and np.linalg.norm(cents[a] - cents[b]) <= 12
    }
    assert set(cent) == set(ref)
    for p, (d,) in cent.items():
        assert d == pytest.approx(ref[p], rel=1e-6)
    _, link = read_edges(tmp_path / "o" / "nuclei-linkage-adjacency.csv")
    assert face_pairs(vol) <= set(link)


def test_add_adjacency_bad_requests(tmp_path: Path, masks: dict[str, np.ndarray]) -> None:
    out = write_segmentation_bundle(
        tmp_path / "ds", masks, physical_size=(0.5, 0.5), protocol_doi=DOI
    )
    with pytest.raises(OptionError, match="not a channel"):
        add_adjacency(out, masks="glomeruli")
    with pytest.raises(OptionError, match="kind"):
        add_adjacency(out, adjacency="voronoi")
    with pytest.raises(OptionError, match="unknown adjacency option"):
        add_adjacency(out, adjacency_options={"max_gapp": 1.0})
    with pytest.raises(OptionError, match="centroid"):
        add_adjacency(out, adjacency="linkage", adjacency_options={"method": "knn"})
    with pytest.raises(CorruptInputError, match="bundle"):
        add_adjacency(tmp_path)
    with pytest.raises(OptionError, match="kind"):
        write_segmentation_bundle(tmp_path / "x", masks, physical_size=(0.5, 0.5),
                                  protocol_doi=DOI, adjacency="touching")
    assert not (tmp_path / "x").exists()
    assert not list((out / SEG).glob("*-adjacency.csv"))


def test_cli_adjacency_on_bundle_and_tiff(tmp_path: Path, masks: dict[str, np.ndarray]) -> None:
    out = write_segmentation_bundle(
        tmp_path / "ds", masks, physical_size=(0.5, 0.5), protocol_doi=DOI
    )
    runner = CliRunner()
    res = runner.invoke(main, ["adjacency", str(out), "--adjacency", "centroid", "--only",
                               "nuclei", "--max-distance", "9.5"])
    assert res.exit_code == 0, res.output
    _, cent = read_edges(out / SEG / "nuclei-centroid-adjacency.csv")
    assert cent and max(d for (d,) in cent.values()) <= 9.5
    assert not (out / SEG / "cells-centroid-adjacency.csv").exists()
    res = runner.invoke(main, ["adjacency", str(out), "--adjacency", "centroid", "--only", "nuclei"])
    assert res.exit_code == 2 and "overwrite" in res.output
    res = runner.invoke(main, ["adjacency", str(out)])
    assert res.exit_code == 2  # nuclei centroid exists
    res = runner.invoke(main, ["adjacency", str(out), "--overwrite", "--max-gap", "0.6"])
    assert res.exit_code == 0, res.output
    assert len(list((out / SEG).glob("*-adjacency.csv"))) == 4
    flat = tmp_path / "cells.tif"
    tifffile.imwrite(flat, reread_labels(out)[0])
    args = ["adjacency", str(flat), "-o", str(tmp_path / "csv"), "--name", "cells",
            "--physical-size", "0.5", "0.5", "--adjacency", "linkage", "--contact"]
    res = runner.invoke(main, _physical_size_args(args))
    assert res.exit_code == 0, res.output
    header, link = read_edges(tmp_path / "csv" / "cells-linkage-adjacency.csv")
    assert header[-1] == "Contact length (micrometer)"
    lab = reread_labels(out)[0]
    assert set(link) == face_pairs(lab)
    faces: Counter[tuple[int, int]] = Counter()
    for a, b in ((lab[1:], lab[:-1]), (lab[:, 1:], lab[:, :-1])):
        m = (a != b) & (a > 0) & (b > 0)
        faces.update((min(x, y), max(x, y)) for x, y in zip(a[m].tolist(), b[m].tolist(),
                                                           strict=True))
    for p, (_, length) in link.items():
        assert length == pytest.approx(0.5 * faces[p])


def test_3d_bundle_with_adjacency_passes_reference_checker(
    tmp_path: Path, checker  # type: ignore[no-untyped-def]
) -> None:
    vol = synthetic_nuclei_3d((8, 40, 40), n_objects=12, seed=4)
    out = write_segmentation_bundle(
        tmp_path / "ds", {"nuclei": vol}, physical_size=(0.5, 0.5, 2.0), protocol_doi=DOI,
        adjacency=("centroid", "linkage"), adjacency_options={"contact": True, "max_gap": 1.0},
    )
    header, _ = read_edges(out / SEG / "nuclei-linkage-adjacency.csv")
    assert header[-1] == "Contact area (square micrometer)"
    checker(out)


def test_empty_and_single_object_masks_give_header_only_files(
    tmp_path: Path, checker  # type: ignore[no-untyped-def]
) -> None:
    one = np.zeros((40, 50), np.uint8)
    one[10:20, 10:20] = 7
    out = write_segmentation_bundle(
        tmp_path / "ds", {"cells": one, "nuclei": np.zeros_like(one)},
        physical_size=(0.5, 0.5), protocol_doi=DOI, adjacency=("centroid", "linkage"),
    )
    for name in ("cells", "nuclei"):
        for kind in ("centroid", "linkage"):
            text = (out / SEG / f"{name}-{kind}-adjacency.csv").read_text()
            assert text == ",".join(HEADER) + "\n"
    checker(out)
