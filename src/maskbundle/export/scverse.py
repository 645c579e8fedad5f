"""A bundle as AnnData (one mask) or MuData (every mask), in HuBMAP's layout.

See :mod:`maskbundle.export.layout` for where each Feature class lands. Beyond HuBMAP's
layout, ``obsm["spatial"]`` holds the centroids as a float array (x, y[, z]) in pixels,
where squidpy and scanpy's plotting look for coordinates.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import OptionError
from ._optional import require
from .layout import (
    MaskParts,
    Modality,
    as_storable,
    mask_parts,
    merge_frames,
    merge_modalities,
)

if TYPE_CHECKING:
    from ..bundle.read import Bundle

__all__ = ["mudata_writing", "to_anndata", "to_mudata"]

EXTRA = "anndata"
# exact centroids (float, pixels) when the table has them, else the rounded X/Y/Z
_EXACT = ("centroid x", "centroid y", "centroid z")
_ROUNDED = ("x", "y", "z")


def _parts(bundle: Bundle, masks: Sequence[str] | None) -> list[MaskParts]:
    names = list(bundle.mask_names if masks is None else masks)
    for m in names:
        if m not in bundle.mask_names:
            raise OptionError(f"no mask {m!r} in {bundle.path}; masks: {list(bundle.mask_names)}")
    return [mask_parts(m, bundle.objects[m], bundle.headers[m]) for m in names]


def _spatial(frame: pd.DataFrame, is_3d: bool) -> np.ndarray:
    """(n, 2) or (n, 3) float centroids x, y[, z] in pixels from the X_spatial frame."""
    axes = 3 if is_3d else 2
    out = np.full((len(frame), axes), np.nan)
    for j in range(axes):
        for name in (_EXACT[j], _ROUNDED[j]):
            if name in frame.columns:
                out[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
                break
    return out


def _uns(bundle: Bundle, parts: Sequence[MaskParts]) -> dict[str, Any]:
    names: dict[str, Any] = {"obs": {}, "obsm": {}, "mod": {}}
    for p in parts:  # HuBMAP merges the per-table mappings the same way
        for key, value in p.names.items():
            if key == "obs":
                names["obs"].update(value)
            else:
                for sub, mapping in value.items():
                    names[key].setdefault(sub, {}).update(mapping)
    return {
        "column_orig_name_mapping": names,
        "maskbundle": {
            "masks": [p.mask for p in parts],
            "source_file": bundle.ome_tiff.name,
            "physical_size_um_zyx": [float(v) for v in bundle.um_zyx],
            "spatial_units": "obsm['spatial'] and obsm['X_spatial'] are in pixels",
        },
    }


def _adata(ad: Any, mod: Modality, obs: pd.DataFrame | None = None, **kw: Any) -> Any:
    obs = pd.DataFrame(index=pd.Index(mod.obs_names, name="Object")) if obs is None else obs
    return ad.AnnData(X=mod.X, obs=obs, var=as_storable(mod.var), **kw)


def to_anndata(bundle: Bundle, mask: str | None = None) -> Any:
    """One mask's objects table as an AnnData (see the module docstring for the layout).

    X holds the antibody/gene/IMS columns (var ``feature_class`` says which class each
    came from); a table without such columns gives X of shape (n_objects, 0).
    """
    ad = require("anndata", EXTRA, "Bundle.to_anndata()")
    if mask is None:
        if len(bundle.mask_names) != 1:
            raise OptionError(
                f"{bundle.path} holds masks {list(bundle.mask_names)}; name one: "
                "to_anndata('cells'), or use to_mudata() for all of them"
            )
        mask = bundle.mask_names[0]
    (part,) = _parts(bundle, [mask])
    mods = {k: m for k, m in part.mods.items() if m.X.shape[1]}
    if mods:
        x = np.hstack([m.X for m in mods.values()])
        var = pd.concat([m.var.assign(feature_class=k) for k, m in mods.items()])
    else:
        x = np.zeros((len(part.obs), 0))
        var = pd.DataFrame(index=pd.Index([], dtype=object))
    obsm: dict[str, Any] = {k: as_storable(v) for k, v in part.obsm.items()}
    obsm["spatial"] = _spatial(part.obsm["X_spatial"], bundle.is_3d)
    merged = Modality(list(part.obs.index), x, var)
    return _adata(ad, merged, as_storable(part.obs), obsm=obsm, uns=_uns(bundle, [part]))


@contextlib.contextmanager
def _mudata_options(md: Any) -> Iterator[None]:
    # mudata 0.3 warns unless told not to pull modality columns into the global frames
    try:
        ctx = md.set_options(pull_on_update=False)
    except Exception:  # the option does not exist in this mudata version
        ctx = contextlib.nullcontext()
    with ctx:
        yield


@contextlib.contextmanager
def mudata_writing() -> Iterator[None]:
    """Around our own writes: mudata's pull option set, anndata's notice on future zarr
    defaults (autosharding) silenced; neither is something a user of the export can act on.
    """
    md = require("mudata", EXTRA, "writing MuData")
    with warnings.catch_warnings(), _mudata_options(md):
        warnings.filterwarnings("ignore", message=".*autosharding.*", category=UserWarning)
        yield


def to_mudata(bundle: Bundle, masks: Sequence[str] | None = None) -> Any:
    """Every mask's objects table in one MuData, laid out as HuBMAP's conversion intends."""
    ad = require("anndata", EXTRA, "Bundle.to_mudata()")
    md = require("mudata", EXTRA, "Bundle.to_mudata()")
    parts = _parts(bundle, masks)
    index = pd.Index([o for p in parts for o in p.obs.index], name="Object")
    keys: list[str] = []
    for p in parts:
        keys += [k for k in p.mods if k not in keys]
    mods = {
        k: _adata(ad, merge_modalities([p.mods[k] for p in parts if k in p.mods])) for k in keys
    }
    obsm_keys: list[str] = []
    for p in parts:
        obsm_keys += [k for k in p.obsm if k not in obsm_keys]
    with _mudata_options(md):
        mdata = md.MuData(mods)
        order = mdata.obs_names
        # MuData orders objects by modality; every frame follows its order
        obs = merge_frames([p.obs for p in parts], index).reindex(order)
        for col in obs.columns:
            mdata.obs[col] = obs[col].to_numpy() if not isinstance(
                obs[col].dtype, pd.CategoricalDtype) else obs[col].array
        for key in obsm_keys:
            mdata.obsm[key] = merge_frames(
                [p.obsm[key] for p in parts if key in p.obsm], index).reindex(order)
        spatial = merge_frames([p.obsm["X_spatial"] for p in parts], index).reindex(order)
        mdata.obsm["spatial"] = _spatial(spatial, bundle.is_3d)
        mdata.uns.update(_uns(bundle, parts))
    return mdata
