from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import DOI
from maskbundle import (
    OptionError,
    OutputExistsError,
    write_segmentation_bundle,
    write_upload_metadata,
)
from maskbundle.cli import main


def test_upload_metadata_rows_for_two_datasets(tmp_path: Path) -> None:
    labels = np.eye(12, dtype=np.uint8)
    a = write_segmentation_bundle(tmp_path / "up" / "a", {"cells": labels}, physical_size=1.0,
                                  protocol_doi=f"https://doi.org/{DOI}")
    b = write_segmentation_bundle(tmp_path / "up" / "b", {"cells": labels}, physical_size=1.0,
                                  protocol_doi=DOI, object_types={"cells": "CL:0000236"})
    tsv = write_upload_metadata(tmp_path / "up" / "seg-metadata.tsv", [a, b],
                                parent_dataset_id="HBM386.ZGKG.235", lab_id="lab-1")
    rows = [line.split("\t") for line in tsv.read_text().splitlines()]
    assert rows[0] == ["parent_dataset_id", "lab_id", "derived_dataset_protocol_doi",
                       "derived_dataset_type", "program_url", "contributors_path", "data_path",
                       "is_cell_type_annotation_included", "metadata_schema_id"]
    assert rows[1] == ["HBM386.ZGKG.235", "lab-1", DOI, "Segmentation Mask", "",
                       "./a/extras/contributors.tsv", "./a", "No",
                       "271bdcd3-b4ac-48e0-ac0f-d666652988af"]
    assert rows[2][6:8] == ["./b", "Yes"]
    with pytest.raises(OutputExistsError):
        write_upload_metadata(tsv, [a], parent_dataset_id="HBM386.ZGKG.235")
    with pytest.raises(OptionError, match="HuBMAP ID"):
        write_upload_metadata(tmp_path / "up" / "x-metadata.tsv", [a], parent_dataset_id="abc")
    with pytest.raises(OptionError, match="inside the upload folder"):
        write_upload_metadata(tmp_path / "up" / "sub" / "metadata.tsv", [a],
                              parent_dataset_id="HBM386.ZGKG.235")
    result = CliRunner().invoke(main, ["metadata", str(tmp_path / "up" / "cli-metadata.tsv"),
                                       str(a), "--parent-dataset-id", "HBM386.ZGKG.235"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "up" / "cli-metadata.tsv").read_text().splitlines()[1].startswith("HBM386")
