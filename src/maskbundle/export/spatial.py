"""A bundle as SpatialData: each mask a multiscale labels element, each table annotating it.

- labels ``<mask>``: our own pyramid (level k = level0[..., ::2**k, ::2**k], the OME-TIFF's
  levels, read lazily through dask), not one recomputed by spatialdata; the ``global``
  coordinate system is in micrometres (a Scale by the pixel size);
- table ``<mask>_table``: :meth:`Bundle.to_anndata` of the mask, obs column names with
  characters other than letters, digits, ``_ . -`` replaced by ``_`` (spatialdata's naming
  rule: ``mask name`` -> ``mask_name``, ``object id`` -> ``object_id``), plus
  ``obs["region"]`` (the labels element's name); ``region`` and ``object_id`` (the Object
  ID = the label value) are the region and instance keys that link rows to labels.

The SpatialData reads pixels from the open bundle: keep it open until written or computed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..rules import TILE_SIZE
from ._optional import require
from .scverse import to_anndata

if TYPE_CHECKING:
    from ..bundle.read import Bundle

__all__ = ["INSTANCE_KEY", "REGION_KEY", "table_name", "to_spatialdata"]

EXTRA = "spatialdata"
REGION_KEY = "region"
INSTANCE_KEY = "object_id"
CHUNK = TILE_SIZE  # one dask chunk decodes one tile of the OME-TIFF


def table_name(mask: str) -> str:
    return f"{mask}_table"


def _labels(bundle: Bundle, mask: str) -> Any:
    da = require("dask.array", EXTRA, "Bundle.to_spatialdata()")
    models = require("spatialdata.models", EXTRA, "Bundle.to_spatialdata()")
    pyr = require("spatialdata.models.pyramids_utils", EXTRA, "Bundle.to_spatialdata()")
    tr = require("spatialdata.transformations", EXTRA, "Bundle.to_spatialdata()")
    dims = ("z", "y", "x") if bundle.is_3d else ("y", "x")
    chunks = (1, CHUNK, CHUNK) if bundle.is_3d else (CHUNK, CHUNK)
    levels = [
        da.from_array(lv, chunks=chunks, name=f"maskbundle-{mask}-level{k}", asarray=True)
        for k, lv in enumerate(bundle.levels(mask))
    ]
    z, y, x = bundle.um_zyx
    scale = tr.Scale([z, y, x] if bundle.is_3d else [y, x], axes=dims)
    model = models.Labels3DModel if bundle.is_3d else models.Labels2DModel
    if len(levels) == 1:
        return model.parse(levels[0], dims=dims, transformations={"global": scale})
    tree = pyr.dask_arrays_to_datatree(levels, dims=dims)
    tr.set_transformation(tree, {"global": scale}, set_all=True)
    try:  # coordinates per level, as spatialdata's own parser adds them
        from spatialdata.transformations._utils import compute_coordinates

        tree = compute_coordinates(tree)
    except ImportError:  # pragma: no cover - private helper moved; coordinates are optional
        pass
    model.validate(tree)
    return tree


def _safe(name: str) -> str:
    # spatialdata accepts only these characters in obs/var column names
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _table(bundle: Bundle, mask: str) -> Any:
    models = require("spatialdata.models", EXTRA, "Bundle.to_spatialdata()")
    adata = to_anndata(bundle, mask)
    renames = {c: _safe(c) for c in adata.obs.columns}  # "object id" -> "object_id"
    adata.obs = adata.obs.rename(columns=renames)
    mapping = adata.uns["column_orig_name_mapping"]
    mapping["obs"] = {renames.get(k, k): v for k, v in mapping["obs"].items()}
    adata.obs[REGION_KEY] = pd.Categorical([mask] * adata.n_obs, categories=[mask])
    adata.obs[INSTANCE_KEY] = bundle.objects[mask].index.to_numpy(np.int64)
    return models.TableModel.parse(
        adata, region=mask, region_key=REGION_KEY, instance_key=INSTANCE_KEY
    )


def to_spatialdata(bundle: Bundle, masks: Sequence[str] | None = None) -> Any:
    """Masks as labels elements and their objects tables as annotating tables."""
    sd = require("spatialdata", EXTRA, "Bundle.to_spatialdata()")
    names = list(bundle.mask_names if masks is None else masks)
    for m in names:
        if m not in bundle.mask_names:
            raise OptionError(f"no mask {m!r} in {bundle.path}; masks: {list(bundle.mask_names)}")
    return sd.SpatialData(
        labels={m: _labels(bundle, m) for m in names},
        tables={table_name(m): _table(bundle, m) for m in names},
    )
