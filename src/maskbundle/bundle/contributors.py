"""Rows of ``extras/contributors.tsv`` and of the upload-level metadata TSV (SPEC section 1)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import OptionError
from ..rules import check_text_cell

__all__ = [
    "CONTRIBUTORS_SCHEMA_ID",
    "CONTRIBUTOR_COLUMNS",
    "METADATA_COLUMNS",
    "METADATA_SCHEMA_ID",
    "contributor_rows",
]

CONTRIBUTORS_SCHEMA_ID = "94dae6f8-0756-4ab0-a47b-138e446a9501"
METADATA_SCHEMA_ID = "271bdcd3-b4ac-48e0-ac0f-d666652988af"
CONTRIBUTOR_COLUMNS = (
    "first_name",
    "last_name",
    "middle_name_or_initial",
    "display_name",
    "affiliation",
    "orcid",
    "email",
    "is_contact",
    "is_principal_investigator",
    "is_operator",
    "metadata_schema_id",
)
METADATA_COLUMNS = (
    "parent_dataset_id",
    "lab_id",
    "derived_dataset_protocol_doi",
    "derived_dataset_type",
    "program_url",
    "contributors_path",
    "data_path",
    "is_cell_type_annotation_included",
    "metadata_schema_id",
)
ORCID_RE = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")
_FLAGS = ("is_contact", "is_principal_investigator", "is_operator")


def _yes_no(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    text = str(value).strip()
    if text.lower() in ("yes", "no"):
        return text.capitalize()
    raise OptionError(f"{where}: {value!r} must be Yes or No (or a bool)")


def contributor_rows(contributors: Sequence[Mapping[str, Any]] | None) -> list[list[str]]:
    """Check contributor records and return them as rows in column order."""
    rows: list[list[str]] = []
    if contributors is not None and (
        isinstance(contributors, str | bytes | Mapping) or not isinstance(contributors, Sequence)
    ):
        raise OptionError(
            "contributors must be a list of records (dicts with first_name, last_name, "
            "affiliation, ...), one per person"
        )
    for i, rec in enumerate(contributors or ()):
        if not isinstance(rec, Mapping):
            raise OptionError(
                f"contributors[{i}] is a {type(rec).__name__}; give a dict with first_name, "
                "last_name, affiliation, ..."
            )
        for key, value in rec.items():
            if not isinstance(value, str | bool | int | float) and value is not None:
                raise OptionError(
                    f"contributors[{i}].{key} is a {type(value).__name__}; give text"
                )
            if isinstance(value, str):
                check_text_cell(value.strip(), f"contributors[{i}].{key}", OptionError)
        schema = rec.get("metadata_schema_id")
        if schema not in (None, "", CONTRIBUTORS_SCHEMA_ID):
            raise OptionError(
                f"contributors[{i}].metadata_schema_id is {schema!r}, but contributors.tsv "
                f"follows schema {CONTRIBUTORS_SCHEMA_ID}; leave the field empty or use that id"
            )
        unknown = set(rec) - set(CONTRIBUTOR_COLUMNS)
        if unknown:
            raise OptionError(
                f"contributors[{i}]: unknown field(s) {sorted(unknown)}; "
                f"fields are {list(CONTRIBUTOR_COLUMNS)}"
            )
        for need in ("first_name", "last_name", "affiliation"):
            if not str(rec.get(need, "")).strip():
                raise OptionError(f"contributors[{i}]: {need} is required")
        orcid = str(rec.get("orcid", "")).strip()
        if orcid and not ORCID_RE.fullmatch(orcid):
            raise OptionError(
                f"contributors[{i}]: ORCID {orcid!r} must look like 0000-0002-1825-0097 "
                "(no https://orcid.org/ prefix)"
            )
        row = {c: str(rec.get(c, "") or "").strip() for c in CONTRIBUTOR_COLUMNS}
        row["orcid"] = orcid
        if not row["display_name"]:
            row["display_name"] = f"{row['first_name']} {row['last_name']}"
        for flag in _FLAGS:
            row[flag] = _yes_no(rec.get(flag, False), f"contributors[{i}].{flag}")
        row["metadata_schema_id"] = CONTRIBUTORS_SCHEMA_ID
        rows.append([row[c] for c in CONTRIBUTOR_COLUMNS])
    return rows
