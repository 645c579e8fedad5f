"""The objects table of one mask as data: required columns (SPEC section 5) plus extras."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..model import ColumnSpec, ObjectTypes, RelabelledMask
from ..rules import ANNOTATION_TOOLS, REQUIRED_COLUMNS, check_obo_id

__all__ = ["object_type_values", "objects_frame", "ontology_abbreviation", "required_specs"]


def _same_text(n: int, text: str) -> np.ndarray:
    """``n`` references to one ``text`` (8 bytes per row).

    ``np.full(n, text, dtype=object)`` converts the text to a numpy string first and then
    makes a new Python string for every row (~60 bytes each): a third of the objects
    table's memory at 646,000 objects for six constant columns.
    """
    out = np.empty(n, dtype=object)
    out.fill(text)
    return out

_CENTROID = (
    "The {axis} value of the object's centroid in pixels: the mean {what} index of the "
    "object's pixels, rounded to the nearest integer; the top left corner of the image is 0."
)


def required_specs(annotation_tool: str) -> list[ColumnSpec]:
    """Header cells of the nine required columns after Object ID, as in the template."""
    _annotation_tool(annotation_tool)
    z_description = _CENTROID.format(axis="Z", what="plane").replace(
        "the top left corner of the image is 0", "the first plane is 0; 0 in 2D")
    # (Type, Feature class, Description, other cells) in the order of REQUIRED_COLUMNS
    cells: list[tuple[Any, Any, str, dict[str, Any]]] = [
        ("text", "mask", "The name of the OME TIFF file that contains the mask.",
         {"requirement": "REQUIRED"}),
        ("text", "mask", "The name of the mask. THIS MUST MATCH A CHANNEL IN THE OME TIFF FILE.",
         {"requirement": "REQUIRED"}),
        ("obo id", "mask", "The ontological ID defining the mask, from an OBO Foundry ontology.",
         {"requirement": "REQUIRED"}),
        ("doi", "mask", "The protocol used to define the mask.", {"requirement": "REQUIRED"}),
        ("text", "mask", "This is the tool used to annotate the objects.",
         {"permissible_values": ANNOTATION_TOOLS, "requirement": "REQUIRED"}),
        ("obo id", "ontology", "The ontological ID for the specific object identified in the mask.",
         {"requirement": "OPTIONAL"}),
        ("integer", "spatial", _CENTROID.format(axis="X", what="column"),
         {"unit": "pixel", "requirement": "REQUIRED"}),
        ("integer", "spatial", _CENTROID.format(axis="Y", what="row"),
         {"unit": "pixel", "requirement": "REQUIRED"}),
        ("integer", "spatial", z_description, {"unit": "pixel", "requirement": "REQUIRED"}),
    ]
    return [
        ColumnSpec(name, typ, fclass, description, **other)
        for name, (typ, fclass, description, other) in zip(
            REQUIRED_COLUMNS[1:], cells, strict=True)
    ]


def _annotation_tool(value: str) -> str:
    for tool in ANNOTATION_TOOLS:
        if value.casefold() == tool.casefold():
            return tool
    raise OptionError(
        f"annotation_tool {value!r} is not one of {list(ANNOTATION_TOOLS)}; "
        "use 'In-house' for your own pipeline"
    )


def object_type_values(
    mask: RelabelledMask, object_types: ObjectTypes | None, default: str
) -> np.ndarray:
    """Per-object `Object type` values from one id or a label mapping, ``default`` elsewhere.

    ``object_types`` maps ORIGINAL labels (as given by the user) to obo ids; labels not
    in the mask are refused so a typo does not pass silently. Every row is filled (with
    ``default``, the mask's own class id, where nothing more specific is known): HuBMAP's
    conversion turns a blank into NaN in its derived metadata, which is then not JSON.
    """
    n = mask.n_objects
    if object_types is None:
        return _same_text(n, default)
    if isinstance(object_types, str):
        check_obo_id(object_types, f"object_types for mask {mask.name!r}")
        return _same_text(n, object_types)
    keys = np.array([int(k) for k in object_types], dtype=np.int64)
    vals = [check_obo_id(v, f"object_types[{k!r}] for mask {mask.name!r}")
            for k, v in object_types.items()]
    pos = np.searchsorted(mask.original_ids, keys)
    pos = np.clip(pos, 0, max(n - 1, 0))
    known = (n > 0) & (mask.original_ids[pos] == keys) if n else np.zeros(keys.size, bool)
    if not np.all(known):
        bad = int(keys[~known][0])
        raise OptionError(
            f"object_types for mask {mask.name!r} names label {bad}, which is not in the mask; "
            "key the mapping by the original labels of the mask"
        )
    out = _same_text(n, default)
    out[pos] = vals
    return out


def objects_frame(
    mask: RelabelledMask,
    *,
    source_file: str,
    mask_id: str,
    protocol_doi: str,
    annotation_tool: str,
    centroids_zyx: np.ndarray,
    object_types: np.ndarray,
    extra: Sequence[tuple[ColumnSpec, np.ndarray]] = (),
) -> tuple[list[ColumnSpec], pd.DataFrame]:
    """Specs and rows of the objects table: required columns first, then ``extra``."""
    n = mask.n_objects
    rounded = np.rint(centroids_zyx).astype(np.int64) if n else np.zeros((0, 3), np.int64)
    data: dict[str, object] = dict(zip(REQUIRED_COLUMNS, (
        np.arange(1, n + 1, dtype=np.int64),
        _same_text(n, source_file),
        _same_text(n, mask.name),
        _same_text(n, mask_id),
        _same_text(n, protocol_doi),
        _same_text(n, _annotation_tool(annotation_tool)),
        object_types,
        rounded[:, 2],
        rounded[:, 1],
        rounded[:, 0],
    ), strict=True))
    specs = required_specs(annotation_tool)
    for spec, values in extra:
        data[spec.name] = values
        specs.append(spec)
    # copy=False: the columns as given, not consolidated into one copied block per dtype
    return specs, pd.DataFrame(data, copy=False)


def ontology_abbreviation(obo_id: str) -> str:
    return obo_id.split(":", 1)[0]
