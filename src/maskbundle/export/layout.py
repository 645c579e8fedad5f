"""HuBMAP's AnnData/MuData layout of objects tables, as plain pandas/numpy (no anndata here).

The layout is the one of HuBMAP's post-ingest conversion (epic-obj-csv-to-mudata
``bin/obj_feature_to_mudata.py``), with the fixes of docs/hubmap-ingest.md applied:

- obs index ``<mask>-<Object ID>`` (name ``Object``); Feature class ``mask`` columns go to
  obs, plus ``object id`` (the Object ID as int64);
- ``spatial`` columns go to ``obsm["X_spatial"]`` (a DataFrame);
- ``antibody``, ``gene`` and ``IMS`` columns go to one AnnData each (X float64, var index
  = column name, var columns ``alternative_id``, ``description``, ``protocol_doi``);
  objects of tables without such columns go to a ``default`` modality with no variables;
- every other class (``morphology``, ``ontology``, ``neighborhood``) gets its own obsm
  DataFrame under its name;
- column names are case-folded as HuBMAP does (``object type``, ``x``); the original
  names are kept in ``uns["column_orig_name_mapping"]``.

Text-like columns become ``category`` (never ``object``): h5ad/h5mu/zarr writers store
them without guessing, and a missing value is a missing category, not a float NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..rules import (
    ALTERNATIVE_ID_ROW,
    DESCRIPTION_ROW,
    FEATURE_CLASS_ROW,
    FEATURE_DOI_ROW,
    MODALITY_CLASSES,
)

__all__ = [
    "MODALITIES",
    "MaskParts",
    "Modality",
    "as_storable",
    "mask_parts",
    "merge_frames",
    "merge_modalities",
]

# case-folded Feature class -> modality key (HuBMAP's X_cols)
MODALITIES: dict[str, str] = {c.casefold(): c for c in MODALITY_CLASSES}
DEFAULT_MODALITY = "default"
VAR_COLUMNS = {
    "alternative_id": ALTERNATIVE_ID_ROW,
    "description": DESCRIPTION_ROW,
    "protocol_doi": FEATURE_DOI_ROW,
}


@dataclass
class Modality:
    """The X of one Feature class: values (objects x features) and the var frame."""

    obs_names: list[str]
    X: np.ndarray
    var: pd.DataFrame


@dataclass
class MaskParts:
    """One objects table split by Feature class (HuBMAP's layout)."""

    mask: str
    obs: pd.DataFrame
    obsm: dict[str, pd.DataFrame]
    mods: dict[str, Modality]
    names: dict[str, dict[str, Any]] = field(default_factory=dict)


def _folded(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    folded = [str(c).casefold() for c in frame.columns]
    return frame.set_axis(folded, axis=1), dict(zip(folded, map(str, frame.columns), strict=True))


def mask_parts(mask: str, objects: pd.DataFrame, header: pd.DataFrame) -> MaskParts:
    """Split one objects table (as :func:`maskbundle.read_bundle` returns it) by class."""
    index = pd.Index([f"{mask}-{int(i)}" for i in objects.index], name="Object")
    frame = objects.set_axis(index, axis=0)
    classes = {
        str(c): str(header.at[FEATURE_CLASS_ROW, c]).strip().casefold() for c in header.columns
    }
    by_class: dict[str, list[str]] = {}
    for col in frame.columns:
        by_class.setdefault(classes.get(str(col), ""), []).append(str(col))

    obs, obs_names = _folded(frame[by_class.pop("mask", [])])
    obs["object id"] = objects.index.to_numpy(np.int64)
    spatial, spatial_names = _folded(frame[by_class.pop("spatial", [])])
    obsm: dict[str, pd.DataFrame] = {"X_spatial": spatial}
    names: dict[str, dict[str, Any]] = {"obs": obs_names, "obsm": {"X_spatial": spatial_names},
                                        "mod": {}}
    mods: dict[str, Modality] = {}
    for cls, key in MODALITIES.items():
        cols = by_class.pop(cls, [])
        if not cols:
            continue
        values, mapping = _folded(frame[cols])
        var = pd.DataFrame(
            {k: [str(header.at[row, c]) for c in cols] for k, row in VAR_COLUMNS.items()},
            index=pd.Index(list(values.columns)),
        )
        x = np.column_stack(
            [pd.to_numeric(values[c], errors="coerce").to_numpy(np.float64) for c in values]
        )
        mods[key] = Modality(list(index), x, var)
        names["mod"][key] = mapping
    for cls, cols in sorted(by_class.items()):
        key = cls or "unclassified"
        obsm[key], names["obsm"][key] = _folded(frame[cols])
    if not mods:
        mods[DEFAULT_MODALITY] = Modality(
            list(index), np.zeros((len(index), 0)), pd.DataFrame(index=pd.Index([], dtype=str))
        )
    return MaskParts(mask, obs, obsm, mods, names)


def as_storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Text-like (object/string) columns as ``category``; numbers and categories unchanged."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_numeric_dtype(s.dtype):
            continue
        if pd.api.types.is_bool_dtype(s.dtype):
            continue
        present = s.notna().to_numpy()
        text = s.to_numpy(dtype=object).copy()
        distinct = set(text[present].tolist())  # a set, not pd.unique (NUL-safe)
        if not all(isinstance(v, str) for v in distinct):
            text[present] = [str(v) for v in text[present]]
            distinct = set(text[present].tolist())
        cats = pd.Index(sorted(distinct), dtype=object)
        codes = np.full(len(text), -1, np.int64)
        codes[present] = cats.get_indexer(text[present])
        out[col] = pd.Categorical.from_codes(codes, categories=cats)
    out.columns = [str(c) for c in out.columns]
    return out


def _column(pieces: list[pd.Series]) -> pd.Series:
    """One column from the masks that have it: numbers stay numbers, the rest text."""
    out: pd.Series
    if all(pd.api.types.is_numeric_dtype(p.dtype) and not pd.api.types.is_bool_dtype(p.dtype)
           for p in pieces):
        out = pd.concat([p.astype(np.float64) if not pd.api.types.is_integer_dtype(p.dtype)
                         else p for p in pieces])
    else:
        out = pd.concat([p.astype(object) for p in pieces])
    return out


def merge_frames(frames: Sequence[pd.DataFrame], index: pd.Index) -> pd.DataFrame:
    """Row-wise union of frames (columns in first-seen order), reindexed to ``index``.

    A column missing for some objects becomes float (NaN) if numeric, or a category with
    missing values if text; integer columns present everywhere stay int64.
    """
    names: list[str] = []
    for f in frames:
        names += [str(c) for c in f.columns if str(c) not in names]
    columns: dict[str, pd.Series] = {}
    for name in names:
        col = _column([f[name] for f in frames if name in f.columns]).reindex(index)
        if pd.api.types.is_integer_dtype(col.dtype) or pd.api.types.is_float_dtype(col.dtype):
            columns[name] = col
        elif col.isna().any() and pd.api.types.is_numeric_dtype(col.dtype):
            columns[name] = col.astype(np.float64)
        else:
            columns[name] = col
    return as_storable(pd.DataFrame(columns, index=index))


def merge_modalities(parts: Sequence[Modality]) -> Modality:
    """Stack one modality of several masks: union of features, NaN where a mask lacks one."""
    names: list[str] = []
    for p in parts:
        names += [n for n in p.var.index if n not in names]
    pos = {n: i for i, n in enumerate(names)}
    blocks = []
    var = pd.DataFrame(index=pd.Index(names, dtype=object), columns=list(VAR_COLUMNS),
                       dtype=object)
    for p in parts:
        block = np.full((p.X.shape[0], len(names)), np.nan)
        cols = [pos[n] for n in p.var.index]
        block[:, cols] = p.X
        blocks.append(block)
        for n in p.var.index:
            if var.loc[n].isna().all():
                var.loc[n] = p.var.loc[n, list(VAR_COLUMNS)].to_numpy() if len(
                    p.var.columns) else [""] * len(VAR_COLUMNS)
    obs_names = [o for p in parts for o in p.obs_names]
    x = np.vstack(blocks) if blocks else np.zeros((0, len(names)))
    return Modality(obs_names, x, var.fillna("").astype(str) if len(names) else var)
