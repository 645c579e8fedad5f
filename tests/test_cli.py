"""The command line, run in-process through click's runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image
from skimage.segmentation import relabel_sequential

from helpers import DOI, expect_reference
from maskbundle.cli import _physical_size_args, main
from maskbundle.io.ometiff import read_label_ome_tiff


def test_physical_size_takes_two_or_three_values() -> None:
    assert _physical_size_args(["bundle", "o", "--physical-size", "0.5", "0.6", "--mask", "a=b"]) == [
        "bundle", "o", "--physical-size", "0.5", "--physical-size", "0.6", "--mask", "a=b"]


def test_bundle_from_tiff_npy_and_png_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 30, (40, 50)).astype(np.uint16)
    nuclei = np.where(cells % 3 == 0, cells, 0).astype(np.int32)
    glom = (cells > 25).astype(np.uint8) * 7
    tifffile.imwrite(tmp_path / "cells.tif", cells)
    np.save(tmp_path / "nuclei.npy", nuclei)
    Image.fromarray(glom).save(tmp_path / "glom.png")
    args = ["bundle", str(tmp_path / "out"), "--mask", f"cells={tmp_path / 'cells.tif'}",
            "--mask", f"nuclei={tmp_path / 'nuclei.npy'}", "--mask",
            f"glomeruli={tmp_path / 'glom.png'}", "--physical-size", "0.5", "--physical-size",
            "0.5", "--mask-id", "glomeruli=UBERON:0000074", "--protocol-doi", DOI]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    img = read_label_ome_tiff(next((tmp_path / "out").rglob("*.ome.tiff")))
    assert img.channel_names == ["cells", "nuclei", "glomeruli"]
    for ch, raw in enumerate((cells, nuclei, glom)):
        assert np.array_equal(img.labels[ch, 0], relabel_sequential(raw)[0])
    expect_reference(tmp_path / "out")
    # the same target again is refused with exit status 2 and a message naming the fix
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_errors_are_one_line_with_exit_status_2(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.ones((5, 5), bool))
    result = CliRunner().invoke(main, ["bundle", str(tmp_path / "o"), "--mask",
                                       f"cells={tmp_path / 'm.npy'}", "--physical-size", "1",
                                       "--protocol-doi", DOI])
    assert result.exit_code == 2
    assert "a boolean array has no object ids" in result.output
    bad = CliRunner().invoke(main, ["bundle", str(tmp_path / "o"), "--mask", "cells",
                                    "--protocol-doi", DOI])
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output
    assert not (tmp_path / "o").exists()


def test_demo_writes_a_valid_two_mask_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    img = read_label_ome_tiff(next((tmp_path / "demo").rglob("*.ome.tiff")))
    assert img.channel_names == ["cells", "nuclei"]
    n_cells = int(img.labels[0].max())
    assert n_cells > 100 and f"cells: {n_cells} objects" in result.output
    assert "OK: 0 error(s)" in result.output
    # every nucleus lies inside the cell grown from it
    cells, nuclei = img.labels[0, 0], img.labels[1, 0]
    assert np.all(cells[nuclei > 0] > 0)
    # stain intensities per cell equal the plain mean over the cell's pixels
    import pandas as pd
    from skimage import color, data

    table = pd.read_csv(tmp_path / "demo/derived/segmentation_masks/cells-objects.tsv", sep="\t",
                        skiprows=9)
    dab = color.rgb2hed(data.immunohistochemistry())[..., 2]
    for oid in (1, n_cells // 2, n_cells):
        got = table.loc[table["Object ID"] == oid, "dab mean intensity"].item()
        assert got == pytest.approx(float(dab[cells == oid].mean()), rel=1e-5)
    expect_reference(tmp_path / "demo")


def test_bundle_with_adjacency_and_contributors(tmp_path: Path) -> None:
    from maskbundle.synthetic import synthetic_tissue

    cells, _ = synthetic_tissue((120, 140), cell_spacing=15, seed=4)
    np.save(tmp_path / "cells.npy", cells)
    (tmp_path / "contrib.tsv").write_text(
        "first_name\tlast_name\taffiliation\torcid\tis_contact\n"
        "Grace\tHopper\tNavy Lab\t0000-0002-1825-0097\tYes\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "bundle", str(out), "--mask", f"cells={tmp_path / 'cells.npy'}", "--physical-size",
        "0.5", "--protocol-doi", DOI, "--adjacency", "centroid", "--adjacency", "linkage",
        "--max-gap", "1.0", "--contributors", str(tmp_path / "contrib.tsv")])
    assert result.exit_code == 0, result.output
    seg = out / "derived/segmentation_masks"
    assert (seg / "cells-centroid-adjacency.csv").is_file()
    assert (seg / "cells-linkage-adjacency.csv").is_file()
    row = (out / "extras/contributors.tsv").read_text().splitlines()[1].split("\t")
    assert row[:2] == ["Grace", "Hopper"] and row[5] == "0000-0002-1825-0097"
    expect_reference(out)
    # a gap without linkage adjacency is refused before anything is written
    bad = CliRunner().invoke(main, [
        "bundle", str(tmp_path / "bad"), "--mask", f"cells={tmp_path / 'cells.npy'}",
        "--physical-size", "0.5", "--protocol-doi", DOI, "--max-gap", "1.0"])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()
