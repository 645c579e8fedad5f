"""The upload-level metadata TSV (SPEC section 1) for one or more dataset directories."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import CorruptInputError, OptionError
from ..io.readers import read_table_grid
from ..io.staging import staged_path
from ..io.tables import write_tsv
from ..rules import HEADER_ROWS, MASK_ID, OBJECT_TYPE, check_text_cell
from . import layout
from .contributors import METADATA_COLUMNS, METADATA_SCHEMA_ID

__all__ = ["write_upload_metadata"]

HUBMAP_ID_RE = re.compile(r"^(?:HBM|SNT)\d{3}\.[A-Z]{4}\.\d{3}$")


def _annotation_included(dataset: Path) -> str:
    """'Yes' when some object's ``Object type`` is more specific than its ``Mask ID``.

    The writer fills Object type with the mask's own id where nothing more specific is
    known (HuBMAP's conversion needs every row filled), and that is no annotation.
    """
    for table in sorted((dataset / layout.SEG_DIR).glob("*-objects.*")):
        rows = read_table_grid(table, strict=False).rows
        names = rows[HEADER_ROWS - 1] if len(rows) > HEADER_ROWS else []
        if {OBJECT_TYPE, MASK_ID} <= set(names):
            j, m = names.index(OBJECT_TYPE), names.index(MASK_ID)
            if any(len(r) > max(j, m) and r[j].strip() not in ("", r[m].strip())
                   for r in rows[HEADER_ROWS:]):
                return "Yes"
    return "No"


def write_upload_metadata(
    path: str | Path,
    datasets: Sequence[str | Path],
    *,
    parent_dataset_id: str | Sequence[str],
    lab_id: str = "",
    program_url: str = "",
    overwrite: bool = False,
) -> Path:
    """Write ``path`` (a ``*metadata.tsv`` at the upload's top level), one row per dataset.

    The protocol DOI comes from each bundle's provenance, ``contributors_path`` and
    ``data_path`` are relative to the TSV's folder, and ``is_cell_type_annotation_included``
    is Yes when an objects table gives some object an ``Object type`` other than its
    ``Mask ID``.

    Examples
    --------
    >>> from maskbundle.demo import example_bundle
    >>> import pathlib, tempfile
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> ds = example_bundle(tmp / "ds")  # three cells in 32 x 32 pixels
    >>> from maskbundle import write_upload_metadata
    >>> tsv = write_upload_metadata(tmp / "upload-metadata.tsv", [ds],
    ...                             parent_dataset_id="HBM386.ZGKG.235")
    >>> header, row = tsv.read_text().splitlines()
    >>> dict(zip(header.split("\\t"), row.split("\\t")))["data_path"]
    './ds'
    """
    path = Path(path)
    if not path.name.endswith("metadata.tsv"):
        raise OptionError(f"{path.name}: the upload metadata file name must end in 'metadata.tsv'")
    parents = [parent_dataset_id] if isinstance(parent_dataset_id, str) else list(parent_dataset_id)
    parents = [p.strip() for item in parents for p in item.split(",") if p.strip()]
    bad = [p for p in parents if not HUBMAP_ID_RE.fullmatch(p)]
    if not parents or bad:
        raise OptionError(
            f"parent_dataset_id {bad or parents!r}: give the parent's HuBMAP ID, e.g. HBM386.ZGKG.235"
        )
    for field, value in (("lab_id", lab_id), ("program_url", program_url)):
        if not isinstance(value, str):
            raise OptionError(f"{field} must be text, got {type(value).__name__}")
        check_text_cell(value, field, OptionError)
    rows = []
    top = path.parent.resolve()
    for ds in datasets:
        d = Path(ds).resolve()
        prov_file = d / layout.PROVENANCE
        if not prov_file.is_file():
            raise OptionError(f"{ds} is not a maskbundle dataset directory (no {layout.PROVENANCE})")
        try:
            rel = Path(os.path.relpath(d, top))
        except ValueError as exc:  # another drive on Windows
            raise OptionError(f"{ds} must lie inside the upload folder {top}") from exc
        if rel.parts[:1] == ("..",):
            raise OptionError(
                f"{ds} must lie inside the upload folder {top} (the folder of the metadata "
                f"TSV); put the TSV in a folder that holds the dataset, e.g. "
                f"{Path(ds).parent / path.name}"
            )
        data_path = "." if str(rel) == "." else f"./{rel.as_posix()}"
        prov = layout.read_provenance(prov_file)
        options = prov.get("options")
        doi = options.get("protocol_doi") if isinstance(options, dict) else None
        if not isinstance(doi, str) or not doi:
            raise CorruptInputError(
                f"{prov_file}: records no options.protocol_doi; rewrite the bundle with "
                "maskbundle (it records the DOI there)"
            )
        rows.append([
            ",".join(parents),
            lab_id,
            doi,
            "Segmentation Mask",
            program_url,
            f"{data_path}/{layout.CONTRIBUTORS.as_posix()}",
            data_path,
            _annotation_included(d),
            METADATA_SCHEMA_ID,
        ])
    with staged_path(path, overwrite=overwrite) as stage:
        write_tsv(stage, METADATA_COLUMNS, rows)
    return path
