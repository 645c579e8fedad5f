"""The objects table of one mask as data: required columns (SPEC section 5) plus extras."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..model import ColumnSpec, ObjectTypes, RelabelledMask

__all__ = ["ANNOTATION_TOOLS", "OBO_RE", "object_type_values", "objects_frame", "required_specs"]

OBO_RE = re.compile(r"^[A-Za-z]+:[0-9]{7}$")
ANNOTATION_TOOLS = ("Azimuth", "STELLAR", "FUSION", "In-house", "Manual", "Not applicable")
_CENTROID = (
    "The {axis} value of the object's centroid in pixels: the mean {what} index of the "
    "object's pixels, rounded to the nearest integer; the top left corner of the image is 0."
)


def required_specs(annotation_tool: str) -> list[ColumnSpec]:
    """Header cells of the nine required columns after Object ID, as in the template."""
    _annotation_tool(annotation_tool)
    return [
        ColumnSpec("Source file", "text", "mask", "The name of the OME TIFF file that contains the mask.",
                   requirement="REQUIRED"),
        ColumnSpec("Mask name", "text", "mask",
                   "The name of the mask. THIS MUST MATCH A CHANNEL IN THE OME TIFF FILE.",
                   requirement="REQUIRED"),
        ColumnSpec("Mask ID", "obo id", "mask",
                   "The ontological ID defining the mask, from an OBO Foundry ontology.",
                   requirement="REQUIRED"),
        ColumnSpec("Protocol for mask creation (DOI)", "doi", "mask",
                   "The protocol used to define the mask.", requirement="REQUIRED"),
        ColumnSpec("Annotation tool", "text", "mask", "This is the tool used to annotate the objects.",
                   permissible_values=ANNOTATION_TOOLS, requirement="REQUIRED"),
        ColumnSpec("Object type", "obo id", "ontology",
                   "The ontological ID for the specific object identified in the mask.",
                   requirement="OPTIONAL"),
        ColumnSpec("X", "integer", "spatial", _CENTROID.format(axis="X", what="column"), unit="pixel",
                   requirement="REQUIRED"),
        ColumnSpec("Y", "integer", "spatial", _CENTROID.format(axis="Y", what="row"), unit="pixel",
                   requirement="REQUIRED"),
        ColumnSpec("Z", "integer", "spatial",
                   _CENTROID.format(axis="Z", what="plane").replace(
                       "the top left corner of the image is 0", "the first plane is 0; 0 in 2D"),
                   unit="pixel", requirement="REQUIRED"),
    ]


def _annotation_tool(value: str) -> str:
    for tool in ANNOTATION_TOOLS:
        if value.casefold() == tool.casefold():
            return tool
    raise OptionError(
        f"annotation_tool {value!r} is not one of {list(ANNOTATION_TOOLS)}; "
        "use 'In-house' for your own pipeline"
    )


def check_obo_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not OBO_RE.fullmatch(value):
        raise OptionError(
            f"{what}: {value!r} is not an OBO id (prefix, colon, seven digits, e.g. CL:0000000)"
        )
    return value


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
        return np.full(n, default, dtype=object)
    if isinstance(object_types, str):
        check_obo_id(object_types, f"object_types for mask {mask.name!r}")
        return np.full(n, object_types, dtype=object)
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
    out = np.full(n, default, dtype=object)
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
    data: dict[str, object] = {
        "Object ID": np.arange(1, n + 1, dtype=np.int64),
        "Source file": np.full(n, source_file, dtype=object),
        "Mask name": np.full(n, mask.name, dtype=object),
        "Mask ID": np.full(n, mask_id, dtype=object),
        "Protocol for mask creation (DOI)": np.full(n, protocol_doi, dtype=object),
        "Annotation tool": np.full(n, _annotation_tool(annotation_tool), dtype=object),
        "Object type": object_types,
        "X": rounded[:, 2],
        "Y": rounded[:, 1],
        "Z": rounded[:, 0],
    }
    specs = required_specs(annotation_tool)
    for spec, values in extra:
        data[spec.name] = values
        specs.append(spec)
    return specs, pd.DataFrame(data)


def ontology_abbreviation(obo_id: str) -> str:
    return obo_id.split(":", 1)[0]
