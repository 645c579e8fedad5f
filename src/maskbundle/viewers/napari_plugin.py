"""napari reader and writer for Segmentation Mask bundles (contributed through ``napari.yaml``).

Nothing here imports napari: the reader returns layer data tuples and the writer takes
them, which is napari's plugin contract (npe2). napari imports this module only when a
bundle is opened or saved, and ``import maskbundle`` never imports napari.

Reader: a bundle directory (or its ``derived/segmentation_masks`` folder, or its
``*.segmentations.ome.tiff``) opens as one multiscale Labels layer per mask: every pyramid
level stays on disk and napari reads only the tiles it shows, so a 65536 x 65536 bundle
opens without reading level 0. Each layer is named by its mask, scaled by the physical
pixel size in micrometres, and has the mask's objects table as ``features`` (hovering an
object shows its Object ID and features). The parent image goes beneath when it is at
hand (``parent=`` or the file named in provenance beside the bundle); adjacency edges are
a Vectors layer on request (``adjacency="linkage"`` / ``"centroid"``).

Writer: Labels layers are saved as a bundle through :func:`write_segmentation_bundle`.
What a bundle needs that a layer lacks is read from the layer's ``metadata``
(``protocol_doi``, ``mask_id``, ``physical_size``, ``parent_image``, ``object_type``) and
refused with a message saying how to set it when absent.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..bundle import layout
from ..bundle.build import DEFAULT_MASK_IDS, write_segmentation_bundle
from ..errors import MaskBundleError, MaskNameError, OptionError
from ..io.lazy import LazyArray
from ..model import PhysicalSize
from ..names import check_mask_name
from ..rules import MASK_ID, OBJECT_ID, PROTOCOL_DOI

if TYPE_CHECKING:
    from ..bundle.read import Bundle

__all__ = [
    "LayerNotSavableError",
    "bundle_layers",
    "find_bundle",
    "napari_get_reader",
    "write_labels",
]

LayerData = tuple[Any, dict[str, Any], str]


class LayerNotSavableError(MaskBundleError):
    """Layers lack what a bundle needs (DOI, mask id, pixel size, a valid name or labels).

    Deliberately not a ValueError: napari's save treats a ValueError from a writer as
    "this writer does not apply" and drops its message.
    """
_UM = "micrometer"


def find_bundle(path: str | Path) -> Path | None:
    """The dataset directory of a bundle path, or None when ``path`` is not part of one."""
    p = Path(path)
    if p.is_file():
        if not p.name.endswith(layout.OME_SUFFIX):
            return None
        p = p.parent
    if p.name == layout.SEG_DIR.name and p.parent.name == layout.SEG_DIR.parent.name:
        p = p.parent.parent
    elif p.name == layout.SEG_DIR.parent.name and (p / layout.SEG_DIR.name).is_dir():
        p = p.parent
    seg = p / layout.SEG_DIR
    if not seg.is_dir() or len(list(seg.glob(f"*{layout.OME_SUFFIX}"))) != 1:
        return None
    return p


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader entry: a reader function for a bundle path, None for anything else."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    root = find_bundle(path)
    if root is None:
        return None
    return lambda _path: bundle_layers(root)


def _first_text(table: pd.DataFrame, column: str) -> str | None:
    if column not in table.columns or table.empty:
        return None
    values = table[column].dropna()
    return str(values.iloc[0]) if len(values) else None


def _features(table: pd.DataFrame) -> pd.DataFrame:
    """The objects table as napari Labels features: column ``index`` = the label value."""
    frame = table.reset_index()
    frame.insert(0, "index", frame[OBJECT_ID].to_numpy())
    return frame


def _scale(bundle: Bundle) -> tuple[float, ...]:
    z, y, x = bundle.um_zyx
    return (z, y, x) if bundle.is_3d else (y, x)


def _units(bundle: Bundle, ndim: int) -> tuple[str, ...]:
    return ((_UM if bundle.physical_size is not None else "pixel"),) * ndim


class _Owner:
    """Shared by the lazy levels of one open file; the file closes when the last one goes."""


def _owned(close: Callable[[], None]) -> _Owner:
    owner = _Owner()
    weakref.finalize(owner, close)  # holds ``close``, never ``owner``
    return owner


def _mask_layer(bundle: Bundle, mask: str, owner: _Owner) -> LayerData:
    levels = [LazyArray(level, level.axes, keep_alive=owner) for level in bundle.levels(mask)]
    table = bundle.objects[mask]
    scale = _scale(bundle)
    meta: dict[str, Any] = {"bundle": str(bundle.path), "mask": mask}
    for key, column in (("protocol_doi", PROTOCOL_DOI), ("mask_id", MASK_ID)):
        value = _first_text(table, column)
        if value:
            meta[key] = value
    if bundle.physical_size is not None:
        ps = bundle.physical_size
        meta["physical_size"] = (ps.x, ps.y) if ps.z is None else (ps.x, ps.y, ps.z)
    kwargs: dict[str, Any] = {
        "name": mask,
        "scale": scale,
        "units": _units(bundle, len(scale)),
        "axis_labels": ("z", "y", "x")[-len(scale):],
        "features": _features(table),
        "metadata": meta,
        "multiscale": len(levels) > 1,
    }
    return (levels if len(levels) > 1 else levels[0], kwargs, "labels")


def _parent_path(bundle: Bundle, parent: str | Path | None) -> Path | None:
    if parent is not None:
        p = Path(parent)
        if not p.is_file():
            raise OptionError(f"parent image {p} does not exist; give the parent OME-TIFF's path")
        return p
    opts = bundle.provenance.get("options") if isinstance(bundle.provenance, dict) else None
    name = opts.get("parent_image") if isinstance(opts, dict) else None
    if not isinstance(name, str) or not name or Path(name).name != name:
        return None  # only a bare file name is looked up, never a path from the file
    for folder in (bundle.path.parent, bundle.path, bundle.path / layout.DERIVED_EXTRAS):
        if (folder / name).is_file():
            return folder / name
    return None


def _parent_layers(path: Path, bundle: Bundle) -> list[LayerData]:
    """The parent image, one layer per channel, lazily per pyramid level, on the masks' grid."""
    from ..io.ometiff import open_label_pyramid

    pyramid = open_label_pyramid(path)
    owner = _owned(pyramid.close)
    axes = pyramid.axes
    shape = dict(zip(axes, (int(n) for n in pyramid.levels[0].shape), strict=True))
    # other axes than C, Z, Y, X, S (time points ...) are shown at index 0
    fixed = {a: 0 for a in axes if a not in "CZYXS"}
    if shape.get("Z", 1) == 1 and "Z" in axes:
        fixed["Z"] = 0
    z, y, x = bundle.um_zyx
    per_axis = {"Z": z, "Y": y, "X": x}
    rgb = axes.endswith("S") and shape["S"] in (3, 4)
    channels = list(range(shape["C"])) if "C" in axes else [0]
    layers: list[LayerData] = []
    for c in channels:
        pinned = {**fixed, "C": c} if "C" in axes else dict(fixed)
        levels = [LazyArray(level, axes, pinned, keep_alive=owner) for level in pyramid.levels]
        dims = [a for a in axes if a not in pinned and a != "S"]
        kwargs: dict[str, Any] = {
            "name": path.name if len(channels) == 1 else f"{path.name} {pyramid.channel_names[c]}",
            "multiscale": len(levels) > 1,
            "scale": tuple(per_axis[a] for a in dims),
            "units": tuple(_UM if bundle.physical_size is not None else "pixel" for _ in dims),
            "rgb": rgb,
            "blending": "additive" if len(channels) > 1 else "translucent",
        }
        if len(channels) > 1:
            kwargs["colormap"] = ("magenta", "green", "cyan", "yellow", "red", "blue")[c % 6]
        layers.append((levels if len(levels) > 1 else levels[0], kwargs, "image"))
    return layers


def _adjacency_layer(bundle: Bundle, mask: str, kind: str) -> LayerData:
    edges = bundle.adjacency_edges(mask, kind)  # type: ignore[arg-type]  # an unknown kind is refused as a missing file
    table = bundle.objects[mask]
    axes = ["Z", "Y", "X"] if bundle.is_3d else ["Y", "X"]
    pos = table[axes].to_numpy(dtype=np.float64)
    ids = table.index.to_numpy()
    a = np.searchsorted(ids, edges.iloc[:, 0].to_numpy())
    b = np.searchsorted(ids, edges.iloc[:, 1].to_numpy())
    if len(edges) and (a.max() >= ids.size or b.max() >= ids.size
                       or np.any(ids[a] != edges.iloc[:, 0].to_numpy())
                       or np.any(ids[b] != edges.iloc[:, 1].to_numpy())):
        raise OptionError(f"{mask} {kind} adjacency names objects not in its objects table")
    vectors = np.stack([pos[a], pos[b] - pos[a]], axis=1)  # (N, 2, D): start, projection
    kwargs = {
        "name": f"{mask} {kind} adjacency",
        "scale": _scale(bundle),
        "units": _units(bundle, len(axes)),
        "features": edges.reset_index(drop=True),
        "edge_width": 1.0,
        "vector_style": "line",
        "length": 1.0,
    }
    return (vectors, kwargs, "vectors")


def bundle_layers(
    path: str | Path | Bundle,
    *,
    masks: Sequence[str] | None = None,
    parent: str | Path | None = None,
    adjacency: str | Sequence[str] | None = None,
) -> list[LayerData]:
    """Layer data tuples of a bundle: parent image (when at hand), masks, adjacency.

    Parameters
    ----------
    path : path or Bundle
        The dataset directory, its ``derived/segmentation_masks`` folder or its
        OME-TIFF (or a :class:`~maskbundle.Bundle`, which must stay open while shown).
    masks : sequence of str, optional
        Masks to show (default: all).
    parent : path, optional
        Parent OME-TIFF shown beneath the masks; by default the one named in provenance
        when it lies beside the bundle.
    adjacency : "linkage", "centroid" or both, optional
        Also show each mask's adjacency edges (centroid to centroid) as a Vectors layer.

    Use with napari: ``for data, kwargs, kind in bundle_layers(p):
    getattr(viewer, f"add_{kind}")(data, **kwargs)``.
    """
    from ..bundle.read import read_bundle

    if isinstance(path, str | os.PathLike):  # a path, or a BundleResult standing for one
        root = find_bundle(Path(path))
        if root is None:
            raise OptionError(
                f"{path} is not a bundle: expected a directory holding "
                f"{layout.SEG_DIR.as_posix()}/<name>{layout.OME_SUFFIX}"
            )
        # the validator reads every pixel; a viewer must not
        bundle = read_bundle(root, validate=False)
        owner = _owned(bundle.close)  # closed when napari lets go of the last level
    else:
        bundle = path  # the caller's: stays open until the caller closes it
        owner = _Owner()
    chosen = list(bundle.mask_names) if masks is None else list(masks)
    for m in chosen:
        if m not in bundle.mask_names:
            raise OptionError(f"{bundle.path} has no mask {m!r}; masks: {list(bundle.mask_names)}")
    kinds = [adjacency] if isinstance(adjacency, str) else list(adjacency or [])
    for k in kinds:
        if k not in ("linkage", "centroid"):
            raise OptionError(f"adjacency must be 'linkage' or 'centroid', got {k!r}")
    layers: list[LayerData] = []
    parent_path = _parent_path(bundle, parent)
    if parent_path is not None:
        layers.extend(_parent_layers(parent_path, bundle))
    layers.extend(_mask_layer(bundle, m, owner) for m in chosen)
    for m in chosen:
        for k in kinds:
            if masks is None and k not in bundle.adjacency.get(m, {}):
                continue  # "all masks": show the adjacency files that exist
            layers.append(_adjacency_layer(bundle, m, k))
    return layers


# -- writer ------------------------------------------------------------------------------


def _layer_um(meta: dict[str, Any], ndim: int, name: str) -> tuple[float, ...] | None:
    """Micrometres per pixel (x, y[, z]) of a layer: its scale in length units, else metadata."""
    raw_scale = meta.get("scale")
    scale = [float(s) for s in raw_scale] if raw_scale is not None else []
    units = list(meta.get("units") or [])
    if len(scale) == ndim and len(units) == ndim:
        import pint  # napari's units are pint units, so pint is there when napari is

        try:
            um = [float(pint.Quantity(s, u).to(_UM).magnitude)
                  for s, u in zip(scale, units, strict=True)]
            return tuple(reversed(um))
        except (pint.errors.DimensionalityError, pint.errors.UndefinedUnitError, TypeError,
                ValueError):
            pass  # pixels (napari's default unit): no physical size from the layer itself
    given = (meta.get("metadata") or {}).get("physical_size")
    if given is None:
        return None
    try:
        size = PhysicalSize.coerce(given)
    except (TypeError, ValueError) as exc:
        raise OptionError(
            f"layer {name!r}: metadata['physical_size'] {given!r} is not (x, y[, z]) in "
            "micrometres"
        ) from exc
    return (size.x, size.y) if size.z is None else (size.x, size.y, size.z)


def write_labels(path: str, layer_data: list[LayerData]) -> list[str]:
    """npe2 writer entry: save Labels layers as a Segmentation Mask bundle at ``path``.

    Each Labels layer becomes the mask named by the layer (other layers, such as the
    parent image and adjacency vectors shown with a bundle, are skipped). The bundle needs, from the layers'
    ``metadata`` when the layer itself does not say it: ``protocol_doi`` (any layer),
    ``mask_id`` (layers not named cells or nuclei), the pixel size (a scale in length
    units, or ``physical_size`` = (x, y[, z]) micrometres); optional ``parent_image`` and
    ``object_type``. An existing ``path`` is never replaced.

    Raises
    ------
    LayerNotSavableError
        What is missing or wrong, and the line that sets it.
    OutputExistsError
        ``path`` exists.
    """
    try:
        return _write_labels(path, layer_data)
    except ValueError as exc:  # OptionError, MaskNameError, LabelError ...
        if not isinstance(exc, MaskBundleError):
            raise
        raise LayerNotSavableError(str(exc)) from exc


def _write_labels(path: str, layer_data: list[LayerData]) -> list[str]:
    masks: dict[str, np.ndarray] = {}
    mask_ids: dict[str, str] = {}
    object_types: dict[str, str] = {}
    dois: set[str] = set()
    parents: set[str] = set()
    sizes: dict[str, tuple[float, ...] | None] = {}
    for data, meta, kind in layer_data:
        name = str(meta.get("name", ""))
        if kind != "labels":
            continue  # the parent image or adjacency shown with a bundle: not part of one
        try:
            check_mask_name(name)
        except MaskNameError as exc:
            raise MaskNameError(f"layer {name!r} names the mask: {exc} (rename the layer)") from exc
        level0 = data[0] if meta.get("multiscale") else data
        labels = np.asarray(level0)
        extra = dict(meta.get("metadata") or {})
        if extra.get("protocol_doi"):
            dois.add(str(extra["protocol_doi"]))
        if extra.get("parent_image"):
            parents.add(str(extra["parent_image"]))
        mid = extra.get("mask_id") or DEFAULT_MASK_IDS.get(name)
        if not mid:
            raise OptionError(
                f"layer {name!r} has no mask id: set viewer.layers[{name!r}].metadata['mask_id'] "
                "= 'UBERON:0000074' (the OBO id of its objects' class) and save again"
            )
        mask_ids[name] = str(mid)
        if extra.get("object_type"):
            object_types[name] = str(extra["object_type"])
        sizes[name] = _layer_um(meta, labels.ndim, name)
        masks[name] = labels
    if not masks:
        raise OptionError("no Labels layer to save; select the mask layers and save again")
    first = next(iter(masks))
    if not dois:
        raise OptionError(
            f"no layer names the segmentation protocol: set viewer.layers[{first!r}]"
            ".metadata['protocol_doi'] = '10.17504/protocols.io.xxxx' and save again"
        )
    if len(dois) > 1:
        raise OptionError(f"the layers name different protocol DOIs {sorted(dois)}; keep one")
    if len(parents) > 1:
        raise OptionError(f"the layers name different parent images {sorted(parents)}; keep one")
    parent = next(iter(parents)) if parents else None
    known = {s for s in sizes.values() if s is not None}
    if len(known) > 1:
        raise OptionError(
            f"the layers have different pixel sizes {sorted(known)} (x, y[, z] micrometres); "
            "masks of one bundle share the pixel grid"
        )
    if not known and parent is None:
        raise OptionError(
            f"layer {first!r} has no physical pixel size: give it a scale in micrometres "
            f"(viewer.layers[{first!r}].scale = (0.5, 0.5); .units = 'um') or set "
            f".metadata['physical_size'] = (x, y) micrometres, or .metadata['parent_image']"
        )
    out = write_segmentation_bundle(
        path,
        masks,
        physical_size=next(iter(known)) if known and parent is None else None,
        mask_ids=mask_ids,
        protocol_doi=next(iter(dois)),
        parent_image=parent,
        object_types=object_types or None,
    )
    return [str(out)]
