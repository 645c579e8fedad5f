"""The rules of the Segmentation Mask format (/work/shared/SPEC.md), each stated once.

The writer (``maskbundle.bundle``, ``maskbundle.io``), the validator
(``maskbundle.bundle.validate``) and the converters (``maskbundle.convert``) import the
rules from here; no other module spells a pattern, a vocabulary, a column list or a limit
out again. Rules and where they live:

============================  ==========================================================
SPEC section                  here
============================  ==========================================================
2 mask names                  :data:`MASK_NAME_RE`, :data:`MAX_NAME_LENGTH` (the checks
                              with a suggested spelling: ``maskbundle.names``)
3 OME-TIFF                    :data:`OME_NS`, :data:`PIXEL_TYPES`, :data:`MAX_OBJECTS`,
                              :data:`TILE_SIZE`
5 objects table, layout       :data:`HEADER_LABELS`, :data:`HEADER_ROWS`,
                              :data:`REQUIRED_COLUMNS` (each name also on its own:
                              :data:`OBJECT_ID`, :data:`MASK_ID`, ...,
                              :data:`POSITION_COLUMNS`), :data:`ANNOTATION_TOOLS`,
                              :data:`XLSX_SHEET`, :data:`OBJECTS_FORMATS`
5 header vocabularies         :data:`COLUMN_TYPES` (:data:`TEXT_TYPES`),
                              :data:`COLUMN_UNITS`, :data:`FEATURE_CLASSES`,
                              :data:`REQUIREMENT_LEVELS` (and their ``Literal`` types)
5 HuBMAP's conversion         :data:`MODALITY_CLASSES`
5 value rules                 :data:`DOI_RE` + :func:`normalise_doi`, :data:`OBO_ID_RE` +
                              :func:`check_obo_id`, the text-cell rule
                              (:func:`text_cell_problem`, :func:`check_text_cell`), the
                              ASCII rule (:func:`check_ascii_text`)
5 spreadsheet limits          :data:`EXCEL_MAX_ROWS`, :data:`EXCEL_MAX_OBJECTS`,
                              :data:`EXCEL_EXACT_INT`
6 adjacency files             :data:`ADJACENCY_COLUMNS`
============================  ==========================================================

Sections 1 and 4 (paths, file-name patterns, the manifest's columns) are data in
``maskbundle.bundle.layout``; section 1's upload metadata and contributors columns in
``maskbundle.bundle.contributors``: each is stated there only.

The text-cell rule. Every text cell of a file we write (objects tables,
``extras/contributors.tsv``, the upload metadata TSV, CSV cells) and every cell the
validator reads passes :func:`text_cell_problem`. A cell is refused when a spreadsheet
could run it or a terminal or parser could be confused by it:

- it starts, after any leading whitespace, with ``=``, ``+``, ``-`` or ``@`` (Excel,
  LibreOffice and Google Sheets read these as formulas), unless the whole cell is a
  plain number such as ``-2.5`` or ``+1e3``;
- it holds ``|`` anywhere (DDE payloads such as ``=cmd|' /C calc'!A0``; it is also the
  separator of Permissible values);
- it holds a control character: any of U+0000-U+001F (NUL, tab, CR, LF, ESC ...),
  U+007F-U+009F.

Numbers written as numbers are not text cells and are not checked here.

Patterns are compiled without anchors: match them with ``fullmatch``.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from .errors import OptionError

__all__ = [
    "ADJACENCY_COLUMNS",
    "ALTERNATIVE_ID_ROW",
    "ANNOTATION_TOOL",
    "ANNOTATION_TOOLS",
    "COLUMN_TYPES",
    "COLUMN_UNITS",
    "DESCRIPTION_ROW",
    "DOI_RE",
    "EXCEL_EXACT_INT",
    "EXCEL_MAX_OBJECTS",
    "EXCEL_MAX_ROWS",
    "FEATURE_CLASSES",
    "FEATURE_CLASS_ROW",
    "FEATURE_DOI_ROW",
    "FORMULA_PREFIXES",
    "HEADER_LABELS",
    "HEADER_ROWS",
    "MASK_ID",
    "MASK_NAME",
    "MASK_NAME_RE",
    "MAX_NAME_LENGTH",
    "MAX_OBJECTS",
    "MODALITY_CLASSES",
    "NOT_ASCII",
    "NUMBER_RE",
    "OBJECTS_FORMATS",
    "OBJECT_ID",
    "OBJECT_TYPE",
    "OBO_ID_RE",
    "OME_NS",
    "PERMISSIBLE_ROW",
    "PIXEL_TYPES",
    "POSITION_COLUMNS",
    "PROTOCOL_DOI",
    "REQUIRED_COLUMNS",
    "REQUIREMENT_LEVELS",
    "REQUIREMENT_ROW",
    "SOURCE_FILE",
    "TEXT_TYPES",
    "TILE_SIZE",
    "TYPE_ROW",
    "UNIT_ROW",
    "XLSX_SHEET",
    "ColumnType",
    "ColumnUnit",
    "FeatureClass",
    "ObjectsFormat",
    "RequirementLevel",
    "check_ascii_text",
    "check_obo_id",
    "check_text_cell",
    "is_ascii_text",
    "normalise_doi",
    "text_cell_problem",
]

# ----------------------------------------------------------------- 2. mask names

MASK_NAME_RE = re.compile(r"[a-z]+(?:[-_][a-z]+)*")
"""A mask name: lower-case words joined by single ``-`` or ``_``, no digits (OURS)."""
MAX_NAME_LENGTH = 64

# ----------------------------------------------------------------- 3. the OME-TIFF

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
PIXEL_TYPES = frozenset({"uint8", "uint16", "uint32"})
"""Pixel types of a label plane: OME 2016-06 has no 64-bit integer type."""
MAX_OBJECTS = 2**32 - 1
"""Most objects one channel can number (uint32)."""
TILE_SIZE = 512
"""Tile edge in pixels; the pyramid stops when the smaller side fits in one tile."""

# ----------------------------------------------------------------- 5. the objects table

TYPE_ROW = "Type"
UNIT_ROW = "Unit"
FEATURE_CLASS_ROW = "Feature class"
DESCRIPTION_ROW = "Description"
FEATURE_DOI_ROW = "Protocol used to derive this feature value (DOI)"
ALTERNATIVE_ID_ROW = "Alternative ID"
PERMISSIBLE_ROW = "Permissible values"
REQUIREMENT_ROW = "Requirement level"
HEADER_LABELS: tuple[str, ...] = (
    TYPE_ROW,
    UNIT_ROW,
    FEATURE_CLASS_ROW,
    DESCRIPTION_ROW,
    FEATURE_DOI_ROW,
    ALTERNATIVE_ID_ROW,
    PERMISSIBLE_ROW,
    REQUIREMENT_ROW,
)
"""Column A of rows 1-8 (each label also on its own: :data:`TYPE_ROW` ...)."""
HEADER_ROWS = len(HEADER_LABELS) + 2
"""Rows before the first object: the eight header rows, the empty separator, the names."""
OBJECT_ID = "Object ID"
SOURCE_FILE = "Source file"
MASK_NAME = "Mask name"
MASK_ID = "Mask ID"
PROTOCOL_DOI = "Protocol for mask creation (DOI)"
ANNOTATION_TOOL = "Annotation tool"
OBJECT_TYPE = "Object type"
POSITION_COLUMNS: tuple[str, str, str] = ("X", "Y", "Z")
"""The rounded centroid (column, row, plane) in pixels."""
REQUIRED_COLUMNS: tuple[str, ...] = (
    OBJECT_ID, SOURCE_FILE, MASK_NAME, MASK_ID, PROTOCOL_DOI, ANNOTATION_TOOL, OBJECT_TYPE,
    *POSITION_COLUMNS,
)
"""The required columns, first and in this order."""
ANNOTATION_TOOLS: tuple[str, ...] = (
    "Azimuth", "STELLAR", "FUSION", "In-house", "Manual", "Not applicable",
)
"""Permissible values of ``Annotation tool``."""
MODALITY_CLASSES: tuple[str, ...] = ("antibody", "gene", "IMS")
"""Feature classes HuBMAP's conversion turns into an AnnData each (``mask`` goes to obs,
``spatial`` to ``obsm["X_spatial"]``, any other class to its own obsm frame)."""
XLSX_SHEET = "MAIN"
"""The one sheet of an ``.xlsx`` objects table."""
ObjectsFormat = Literal["tsv", "xlsx"]
OBJECTS_FORMATS: tuple[str, ...] = get_args(ObjectsFormat)
"""File formats of an objects table (``<mask>-objects.tsv`` or ``.xlsx``)."""

ColumnType = Literal["text", "integer", "float", "doi", "boolean", "obo id"]
ColumnUnit = Literal["", "pixel", "intensity", "count", "square micrometer"]
FeatureClass = Literal[
    "gene", "neighborhood", "mask", "spatial", "morphology", "ontology", "antibody", "IMS"
]
RequirementLevel = Literal["REQUIRED", "OPTIONAL"]
# The published header vocabularies (Type, Unit, Feature class and Type are compared
# case-insensitively by the validator; we write them exactly as here).
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)
COLUMN_UNITS: tuple[str, ...] = get_args(ColumnUnit)
FEATURE_CLASSES: tuple[str, ...] = get_args(FeatureClass)
REQUIREMENT_LEVELS: tuple[str, ...] = get_args(RequirementLevel)
TEXT_TYPES: tuple[str, ...] = ("text", "doi", "obo id", "boolean")
"""Types whose cells are text (an empty string is a blank cell)."""
NOT_ASCII = "is not ASCII; HuBMAP accepts ASCII text only"
"""Why a column name, mask name or text cell HuBMAP reads is refused when not ASCII."""

DOI_RE = re.compile(r"10\.\d{4,9}/[-._;()/:a-zA-Z0-9]+")
"""A bare DOI (no ``https://doi.org/``)."""
_DOI_URL_RE = re.compile(r"^(?:https?://)?(?:dx\.)?doi\.org/", re.IGNORECASE)
OBO_ID_RE = re.compile(r"[A-Za-z]+:[0-9]{7}")
"""An obo id: ontology prefix, colon, seven digits (``CL:0000000``)."""

EXCEL_MAX_ROWS = 1_048_576
"""Rows of an Excel sheet, header block included."""
EXCEL_MAX_OBJECTS = EXCEL_MAX_ROWS - HEADER_ROWS
"""Objects an ``.xlsx`` table can hold; larger tables are written as ``.tsv``."""
EXCEL_EXACT_INT = 10**15 - 1
"""Largest integer an ``.xlsx`` cell keeps exactly (Excel keeps 15 significant digits)."""

# ----------------------------------------------------------------- 6. adjacency files

ADJACENCY_COLUMNS: tuple[str, str, str] = (
    "Object ID 1", "Object ID 2", "Distance (micrometer)",
)
"""Header row of ``<mask>-centroid-adjacency.csv`` and ``-linkage-adjacency.csv`` (OURS)."""


# ----------------------------------------------------------------- value rules


def normalise_doi(value: object) -> str:
    """A bare DOI from a DOI or a doi.org URL; anything else is refused.

    Examples
    --------
    >>> normalise_doi("https://doi.org/10.17504/protocols.io.example")
    '10.17504/protocols.io.example'
    """
    if not isinstance(value, str) or not value.strip():
        raise OptionError(
            "protocol_doi is required: the DOI of the protocol that made the masks, "
            "e.g. '10.17504/protocols.io.xxxx' (register one at protocols.io)"
        )
    doi = _DOI_URL_RE.sub("", value.strip())
    if not DOI_RE.fullmatch(doi):
        raise OptionError(f"protocol_doi {value!r} is not a DOI like 10.17504/protocols.io.xxxx")
    return doi


def check_obo_id(value: object, what: str) -> str:
    """Return ``value`` if it is an obo id such as ``CL:0000236``, else raise OptionError.

    Examples
    --------
    >>> check_obo_id("CL:0000236", "mask id of 'cells'")
    'CL:0000236'
    """
    if isinstance(value, str) and OBO_ID_RE.fullmatch(value):
        return value
    raise OptionError(
        f"{what}: {value!r} is not an OBO id; use the form PREFIX:0000000, a prefix, a colon "
        "and seven digits (e.g. CL:0000000)"
    )


FORMULA_PREFIXES = ("=", "+", "-", "@")
NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {"\x00": "NUL", "\t": "tab", "\n": "line feed", "\r": "carriage return",
                  "\x1b": "ESC"}


def text_cell_problem(value: str) -> str | None:
    """Why ``value`` may not be a text cell, or None when it may."""
    bad = _CONTROL_RE.search(value)
    if bad:
        ch = bad.group()
        name = _CONTROL_NAMES.get(ch, f"U+{ord(ch):04X}")
        return f"holds the control character {name}; remove it"
    if "|" in value:
        return "holds '|', which spreadsheets use to call other programs; rephrase it"
    stripped = value.lstrip()
    if stripped[:1] in FORMULA_PREFIXES and not NUMBER_RE.fullmatch(stripped):
        return (
            f"starts with {stripped[0]!r} and a spreadsheet would run it as a formula; "
            "rephrase it"
        )
    return None


def is_ascii_text(value: str) -> bool:
    """Whether HuBMAP can read ``value``: names and text cells are ASCII only."""
    return value.isascii()


def check_ascii_text(value: str, where: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``where`` when ``value`` is not ASCII (HuBMAP reads ASCII).

    Examples
    --------
    >>> check_ascii_text("Area", "column 'Area'", ValueError)
    >>> check_ascii_text("Typ\u00e9", "column 'Type'", ValueError)
    Traceback (most recent call last):
    ValueError: column 'Type': 'Typé' is not ASCII; HuBMAP accepts ASCII text only
    """
    if not is_ascii_text(value):
        raise error(f"{where}: {value!r} {NOT_ASCII}")


def check_text_cell(value: str, where: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``where`` when ``value`` breaks the rule."""
    problem = text_cell_problem(value)
    if problem is not None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise error(f"{where}: {shown!r} {problem}")
