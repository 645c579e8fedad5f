"""napari reader and writer, headless: npe2's read/write API and napari's ViewerModel (no Qt).

Expected values come from tifffile and pandas on the bundle's files, never from the
reader under test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tifffile
from ome_types import from_xml

from maskbundle import (
    OptionError,
    OutputExistsError,
    validate_bundle,
    write_segmentation_bundle,
)
from maskbundle.synthetic import synthetic_tissue

napari = pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

DOI = "10.17504/protocols.io.example"
SEG = Path("derived/segmentation_masks")


def _levels(ds: Path) -> dict[str, list[np.ndarray]]:
    """Every pyramid level of every mask, read with tifffile."""
    (tiff,) = (ds / SEG).glob("*.ome.tiff")
    with tifffile.TiffFile(tiff) as tf:
        s = tf.series[0]
        levels = [s.asarray(level=k) for k in range(len(s.levels))]
        names = [c.name for c in from_xml(tf.ome_metadata).images[0].pixels.channels]
    return {m: [lv.reshape(-1, *lv.shape[-2:])[i] for lv in levels] for i, m in enumerate(names)}


def _table(ds: Path, mask: str) -> pd.DataFrame:
    raw = pd.read_csv(ds / SEG / f"{mask}-objects.tsv", sep="\t", header=None, dtype=str,
                      keep_default_na=False)
    return raw.iloc[10:].set_axis(list(raw.iloc[9]), axis=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three pyramid levels, a parent image beside the bundle, linkage adjacency."""
    root = tmp_path_factory.mktemp("napari")
    cells, nuclei = synthetic_tissue((1100, 1040), cell_spacing=30.0, seed=5)
    parent = np.stack([cells % 251, nuclei % 251]).astype(np.uint8)
    tifffile.imwrite(root / "parent.ome.tiff", parent, metadata={
        "axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
        "Channel": {"Name": ["DAPI", "CD45"]}})
    return write_segmentation_bundle(
        root / "ds", {"cells": cells, "nuclei": nuclei}, parent_image=root / "parent.ome.tiff",
        protocol_doi=DOI, adjacency="linkage", features=["morphology"],
    )


@pytest.fixture(scope="module")
def manager() -> Any:
    pm = npe2.PluginManager.instance()
    pm.discover()
    return pm


def test_manifest_is_shipped_and_import_stays_light(manager: Any) -> None:
    manifest = manager.get_manifest("maskbundle")
    assert [r.command for r in manifest.contributions.readers] == ["maskbundle.get_reader"]
    assert manifest.contributions.readers[0].accepts_directories
    assert manifest.contributions.writers[0].layer_types == ["labels+", "image*", "vectors*"]
    code = "import sys, maskbundle; print(sorted(m for m in ('napari', 'npe2', 'vispy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("which", ["root", "seg_dir", "tiff"])
def test_reader_layers(bundle: Path, manager: Any, which: str) -> None:
    path = {"root": bundle, "seg_dir": bundle / SEG,
            "tiff": next((bundle / SEG).glob("*.ome.tiff"))}[which]
    layers = npe2.read([str(path)], stack=False, plugin_name="maskbundle")
    kinds = [(kind, kw["name"]) for _, kw, kind in layers]
    assert kinds == [("image", "parent.ome.tiff DAPI"), ("image", "parent.ome.tiff CD45"),
                     ("labels", "cells"), ("labels", "nuclei")]
    with tifffile.TiffFile(bundle.parent / "parent.ome.tiff") as tf:
        parent = tf.series[0].asarray()
    for c in (0, 1):
        np.testing.assert_array_equal(np.asarray(layers[c][0]), parent[c])
        assert layers[c][1]["scale"] == (0.5, 0.5)
    truth = _levels(bundle)
    for data, kw, _kind in layers[2:]:
        mask = kw["name"]
        assert kw["multiscale"] and len(data) == len(truth[mask]) == 3
        assert kw["scale"] == (0.5, 0.5)
        assert kw["units"] == ("micrometer", "micrometer")
        for k in (1, 2):  # the small levels; level 0 is checked on a corner only
            np.testing.assert_array_equal(np.asarray(data[k]), truth[mask][k])
        np.testing.assert_array_equal(data[0][:64, 100:130], truth[mask][0][:64, 100:130])
        table = _table(bundle, mask)
        feats = kw["features"]
        assert feats["index"].tolist() == table["Object ID"].astype(int).tolist()
        assert feats["Area (square micrometer)"].tolist() == pytest.approx(
            table["Area (square micrometer)"].astype(float).tolist())
        assert kw["metadata"]["protocol_doi"] == DOI


def test_not_a_bundle_is_declined(tmp_path: Path) -> None:
    from maskbundle.viewers.napari_plugin import napari_get_reader

    (tmp_path / "image.ome.tiff").write_bytes(b"")
    assert napari_get_reader(str(tmp_path)) is None
    assert napari_get_reader(str(tmp_path / "image.ome.tiff")) is None
    assert napari_get_reader([str(tmp_path), str(tmp_path)]) is None


def test_viewer_never_reads_level0(bundle: Path, manager: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari.components import ViewerModel

    from maskbundle.bundle.read import LabelArray

    reads: list[tuple[int, ...]] = []
    original = LabelArray.__getitem__

    def spy(self: LabelArray, key: Any) -> np.ndarray:
        reads.append(self.shape)
        return original(self, key)

    monkeypatch.setattr(LabelArray, "__getitem__", spy)
    layers = npe2.read([str(bundle)], stack=False, plugin_name="maskbundle")
    viewer = ViewerModel()
    for data, kw, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kw)
    truth = _levels(bundle)
    level0 = truth["cells"][0].shape
    assert reads and level0 not in reads
    cells = viewer.layers["cells"]
    assert cells.multiscale and cells.data_level > 0
    # hovering an object names it: the value under the cursor and its features row
    level, value = cells.get_value((100.0, 150.0), world=True)
    assert value == truth["cells"][level][200 >> level, 300 >> level] == truth["cells"][0][200, 300]
    status = cells.get_status((100.0, 150.0), world=True)["coordinates"]
    assert f"Object ID: {value}," in status
    assert level0 not in reads


def test_adjacency_on_request(bundle: Path) -> None:
    from napari.components import ViewerModel

    from maskbundle.viewers.napari_plugin import bundle_layers

    layers = bundle_layers(bundle, adjacency="linkage")
    vec = [(d, kw) for d, kw, kind in layers if kind == "vectors"]
    assert [kw["name"] for _, kw in vec] == ["cells linkage adjacency", "nuclei linkage adjacency"]
    data, kw = vec[0]
    edges = pd.read_csv(bundle / SEG / "cells-linkage-adjacency.csv")
    table = _table(bundle, "cells").set_index("Object ID")
    table.index = table.index.astype(int)
    assert data.shape == (len(edges), 2, 2)
    a = table.loc[edges["Object ID 1"], ["Y", "X"]].astype(float).to_numpy()
    b = table.loc[edges["Object ID 2"], ["Y", "X"]].astype(float).to_numpy()
    np.testing.assert_array_equal(data[:, 0], a)
    np.testing.assert_array_equal(data[:, 0] + data[:, 1], b)
    viewer = ViewerModel()
    viewer.add_vectors(data, **kw)
    with pytest.raises(OptionError, match="no centroid adjacency"):
        bundle_layers(bundle, masks=["cells"], adjacency="centroid")


def test_writer_round_trip_through_the_viewer(bundle: Path, manager: Any, tmp_path: Path) -> None:
    from napari.components import ViewerModel

    from maskbundle.viewers.napari_plugin import bundle_layers

    viewer = ViewerModel()
    for data, kw, kind in bundle_layers(bundle, adjacency="linkage"):
        getattr(viewer, f"add_{kind}")(data, **kw)
    # an edited, in-memory layer next to the lazy one: nuclei of the bundle, plus one object
    nuclei = np.array(_levels(bundle)["nuclei"][0])
    nuclei[:4, :4] = nuclei.max() + 1
    viewer.layers.remove("nuclei")
    viewer.add_labels(nuclei, name="nuclei", scale=(0.5, 0.5), units="um",
                      metadata={"protocol_doi": DOI})
    out = tmp_path / "saved"
    # "save all layers": parent image channels and adjacency vectors are skipped
    assert {type(layer).__name__ for layer in viewer.layers} == {"Image", "Labels", "Vectors"}
    written = viewer.layers.save(str(out), plugin="maskbundle")
    assert written == [str(out)]
    assert sorted(p.name for p in (out / SEG).iterdir()) == [
        "cells-objects.tsv", "nuclei-objects.tsv", "saved.segmentations.ome.tiff",
        "segmentation-masks.csv"]
    assert validate_bundle(out).ok
    got = _levels(out)
    np.testing.assert_array_equal(got["cells"][0], _levels(bundle)["cells"][0])
    np.testing.assert_array_equal(got["nuclei"][0], nuclei)
    with pytest.raises(OutputExistsError):
        npe2.write(str(out), [viewer.layers["cells"].as_layer_data_tuple()],
                   plugin_name="maskbundle")


def test_writer_asks_for_what_the_bundle_needs(tmp_path: Path, manager: Any) -> None:
    from napari.layers import Labels

    from maskbundle.viewers.napari_plugin import LayerNotSavableError, write_labels

    labels = np.zeros((40, 50), dtype=np.uint16)
    labels[5:15, 5:20] = 1

    def save(**kw: Any) -> list[str]:
        layer = Labels(labels, **kw)
        return write_labels(str(tmp_path / "out"), [layer.as_layer_data_tuple()])

    # not ValueErrors: napari's save would take them for "writer does not apply"
    with pytest.raises(LayerNotSavableError, match=r"metadata\['protocol_doi'\]"):
        save(name="cells", scale=(0.5, 0.5), units="um")
    with pytest.raises(LayerNotSavableError, match="no physical pixel size"):
        save(name="cells", metadata={"protocol_doi": DOI})
    with pytest.raises(LayerNotSavableError, match=r"metadata\['mask_id'\]"):
        save(name="glomeruli", scale=(0.5, 0.5), units="um", metadata={"protocol_doi": DOI})
    with pytest.raises(LayerNotSavableError, match="rename the layer"):
        save(name="Cells 2", scale=(0.5, 0.5), units="um", metadata={"protocol_doi": DOI})
    # the same message reaches a napari user saving from the viewer
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.add_labels(labels, name="cells", scale=(0.5, 0.5), units="um")
    with pytest.raises(LayerNotSavableError, match="protocol_doi"):
        viewer.layers.save(str(tmp_path / "out"), plugin="maskbundle")
    assert not (tmp_path / "out").exists()
    # micrometres from nanometre units; the mask id from metadata
    (path,) = save(name="glomeruli", scale=(500.0, 250.0), units="nm",
                   metadata={"protocol_doi": DOI, "mask_id": "UBERON:0000074"})
    with tifffile.TiffFile(next((Path(path) / SEG).glob("*.ome.tiff"))) as tf:
        xml = tf.ome_metadata
    assert 'PhysicalSizeX="0.25"' in xml and 'PhysicalSizeY="0.5"' in xml
    assert (Path(path) / SEG / "glomeruli-objects.tsv").is_file()
