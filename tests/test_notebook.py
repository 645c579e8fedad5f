"""The quickstart notebook is executed so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_quickstart_notebook_runs(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert (tmp_path / "out/quickstart/derived/segmentation_masks/cells-objects.tsv").is_file()
