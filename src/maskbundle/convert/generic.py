"""Label images in common containers: TIFF / OME-TIFF, NPY / NPZ, PNG, zarr and OME-Zarr.

An existing bundle's ``*.segmentations.ome.tiff`` is an OME-TIFF whose channels are the
masks, so it reads here too (one mask per channel, named from the channel names, with
the physical pixel size of its OME-XML).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptInputError, MaskNameError, OptionError
from ..io.limits import check_tiff_level0, check_tiff_structure
from ..io.ometiff import OmeMetadata, ome_metadata
from ..labels.checks import check_label_array
from ..model import Mask, PhysicalSize, Segmentation
from ..names import check_mask_name, check_mask_names, suggest_mask_name
from ._common import file_source, renamed_keywords
from ._safe_npy import load_npy_safely, load_npz_safely

__all__ = ["LabelFile", "read_label_arrays", "read_labels"]

# OME-Zarr axis units (UDUNITS names) to the OME-XML symbols PhysicalSize understands.
_ZARR_UNITS = {
    "micrometer": "µm",
    "micron": "µm",
    "nanometer": "nm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "picometer": "pm",
    "angstrom": "Å",
}


@dataclass
class LabelFile:
    """Label arrays as found in one file, before they become masks.

    ``arrays`` are (Y, X) or (Z, Y, X); ``names`` the channel / key names found in the
    file (``None`` where the file has none); ``metadata`` what the container says.
    """

    arrays: list[np.ndarray]
    names: list[str | None]
    fmt: str
    physical_size: PhysicalSize | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _ome_pixels(meta: OmeMetadata) -> tuple[list[str | None], PhysicalSize | None, dict[str, Any]]:
    """Channel names and physical size of the first Image of parsed OME-XML."""
    if not meta.n_images:
        return [], None, {}
    px = meta.pixels
    names: list[str | None] = [ch.name for ch in px.channels]
    size: PhysicalSize | None = None
    if px.physical_size_x is not None and px.physical_size_y is not None:
        # PhysicalSizeZ is kept whenever given (the mask may be a stack of planes)

        def unit(u: Any) -> str:
            return str(getattr(u, "value", u) or "µm")

        try:
            z = px.physical_size_z
            size = PhysicalSize(
                float(px.physical_size_x),
                float(px.physical_size_y),
                float(z) if z is not None else None,
                unit_x=unit(px.physical_size_x_unit),
                unit_y=unit(px.physical_size_y_unit),
                unit_z=unit(px.physical_size_z_unit),
            )
        except (ValueError, OptionError):
            size = None  # unusable sizes: the caller must give them
    attrs = {
        "SizeX": px.size_x, "SizeY": px.size_y, "SizeZ": px.size_z, "SizeC": px.size_c,
        "SizeT": px.size_t, "Type": getattr(px.type, "value", px.type),
        "DimensionOrder": meta.dimension_order,
    }
    return names, size, {k: str(v) for k, v in attrs.items()}


def _split_axes(data: np.ndarray, axes: str, what: str) -> tuple[list[np.ndarray], str]:
    """(C, Z, Y, X)-normalise ``data`` with tifffile ``axes``; return per-channel arrays."""
    axes = axes.upper()
    if len(axes) != data.ndim:
        raise CorruptInputError(f"{what}: axes {axes!r} do not match the array shape {data.shape}")
    # drop length-1 axes that are not Y or X (T, S, C, Z ... of size 1)
    keep = [i for i, a in enumerate(axes) if data.shape[i] != 1 or a in "YX"]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if "S" in axes:
        raise CorruptInputError(
            f"{what}: the TIFF stores {data.shape[axes.index('S')]} samples per pixel (RGB); "
            "a label image has one integer per pixel. Save the labels as a grayscale image"
        )
    if "T" in axes:
        raise CorruptInputError(
            f"{what}: the file holds {data.shape[axes.index('T')]} time points; masks are "
            "one time point. Save the labels of one time point"
        )
    if "Y" not in axes or "X" not in axes:
        raise CorruptInputError(f"{what}: no Y and X axes in {axes!r}")
    other = [a for a in axes if a not in "CYX"]
    if len(other) > 1:
        raise CorruptInputError(
            f"{what}: axes {axes!r} have more than one plane axis ({''.join(other)}); "
            "labels must be (Y, X) or (Z, Y, X), optionally with channels"
        )
    order = [axes.index(a) for a in "C" + "".join(other) + "YX" if a in axes]
    data = np.transpose(data, order)
    if "C" not in axes:
        data = data[np.newaxis]
    return [np.ascontiguousarray(c) for c in data], "CZYX" if other else "CYX"


def _read_tiff(path: Path) -> LabelFile:
    import tifffile

    what = str(path)
    check_tiff_structure(path, what)
    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise CorruptInputError(f"{what}: the TIFF holds no image")
            series = tf.series[0]
            level0 = series.levels[0] if series.levels else series
            check_tiff_level0(series, path, what)
            data = level0.asarray()
            axes = level0.axes
            ome = ome_metadata(tf, what) if tf.is_ome else None
            n_levels = len(series.levels) if series.levels else 1
    except CorruptInputError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise CorruptInputError(f"{what}: not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    arrays, _ = _split_axes(data, axes, what)
    names: list[str | None] = [None] * len(arrays)
    size = None
    meta: dict[str, Any] = {"axes": axes, "pyramid_levels": n_levels}
    if ome:
        ome_names, size, pix = _ome_pixels(ome)
        if len(ome_names) == len(arrays):
            names = ome_names
        meta["ome_pixels"] = pix
    fmt = "ome-tiff" if ome else "tiff"
    return LabelFile(arrays, names, fmt, size, meta)


def _read_png(path: Path) -> LabelFile:
    import imagecodecs

    try:
        data = imagecodecs.png_decode(path.read_bytes())
    except Exception as exc:
        raise CorruptInputError(f"{path}: not a readable PNG ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 3:
        raise CorruptInputError(
            f"{path}: the PNG has {data.shape[2]} colour channels; a label image is grayscale "
            "(8 or 16 bit) with one object number per pixel"
        )
    return LabelFile([data], [None], "png")


def _read_npy(path: Path) -> LabelFile:
    obj = load_npy_safely(path)
    if isinstance(obj, dict) and "masks" in obj:
        return LabelFile([np.asarray(obj["masks"])], [None], "npy-dict")
    if not isinstance(obj, np.ndarray) or obj.dtype.hasobject:
        raise CorruptInputError(
            f"{path}: holds a {type(obj).__name__}, not a label array; save the labels with "
            "np.save(path, labels)"
        )
    return LabelFile([obj], [None], "npy")


def _read_npz(path: Path) -> LabelFile:
    data = load_npz_safely(path)
    keys = list(data)
    arrays = list(data.values())
    if not keys:
        raise CorruptInputError(f"{path}: the .npz holds no arrays")
    return LabelFile(arrays, list(keys), "npz")


def _zarr_attrs(node: Any) -> dict[str, Any]:
    attrs = dict(node.attrs)
    if "ome" in attrs and isinstance(attrs["ome"], Mapping):  # OME-Zarr 0.5
        merged = dict(attrs["ome"])
        merged.update({k: v for k, v in attrs.items() if k != "ome"})
        return merged
    return attrs


def _read_multiscale(group: Any, what: str) -> tuple[np.ndarray, PhysicalSize | None, str]:
    ms = _zarr_attrs(group)["multiscales"][0]
    datasets = ms.get("datasets") or []
    if not datasets:
        raise CorruptInputError(f"{what}: OME-Zarr multiscales lists no datasets")
    ds0 = datasets[0]
    data = np.asarray(group[ds0["path"]][...])
    axes_meta = ms.get("axes")
    if axes_meta is None:  # OME-Zarr 0.1-0.3: always 5D TCZYX
        axes_meta = [{"name": a} for a in "tczyx"[-data.ndim :]]
    names = [(a["name"] if isinstance(a, Mapping) else str(a)).lower() for a in axes_meta]
    if len(names) != data.ndim:
        raise CorruptInputError(f"{what}: axes {names} do not match the array shape {data.shape}")
    size: PhysicalSize | None = None
    scale = None
    for t in ds0.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = t.get("scale")
    if scale is not None and "x" in names and "y" in names:
        units = {
            (a["name"].lower() if isinstance(a, Mapping) else ""): (
                a.get("unit") if isinstance(a, Mapping) else None
            )
            for a in axes_meta
        }

        def unit(ax: str) -> str:
            return _ZARR_UNITS.get(str(units.get(ax) or "micrometer").lower(), "µm")

        try:
            size = PhysicalSize(
                float(scale[names.index("x")]),
                float(scale[names.index("y")]),
                float(scale[names.index("z")]) if "z" in names else None,
                unit_x=unit("x"),
                unit_y=unit("y"),
                unit_z=unit("z"),
            )
        except (ValueError, OptionError, IndexError):
            size = None
    axes = "".join({"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}.get(n, "Q") for n in names)
    return data, size, axes


def _read_zarr(path: Path) -> LabelFile:
    import zarr

    what = str(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise CorruptInputError(f"{what}: not a readable zarr store ({type(exc).__name__}: {exc})") from exc
    if isinstance(node, zarr.Array):
        data = np.asarray(node[...])
        axes = "ZYX"[-data.ndim :] if data.ndim in (2, 3) else "Q" * data.ndim
        parts, _ = _split_axes(data, axes, what)
        return LabelFile(parts, [None], "zarr")
    group: Any = node
    attrs = _zarr_attrs(group)
    groups: list[tuple[str | None, Any]] = []
    if "multiscales" in attrs:
        if "image-label" in attrs or "labels" not in group:
            groups = [(path.name.removesuffix(".zarr") or None, group)]
        else:  # an image root with labels beside it: read its labels
            group = group["labels"]
            attrs = _zarr_attrs(group)
    if not groups and "labels" in attrs:
        groups = [(str(n), group[str(n)]) for n in attrs["labels"]]
    if not groups and "labels" in group:
        sub = group["labels"]
        groups = [(str(n), sub[str(n)]) for n in _zarr_attrs(sub).get("labels", [])]
    if not groups:
        raise CorruptInputError(
            f"{what}: a zarr group without OME-Zarr 'multiscales' or 'labels' metadata; point "
            "to the label array itself (e.g. image.zarr/labels/cells)"
        )
    arrays: list[np.ndarray] = []
    names: list[str | None] = []
    size: PhysicalSize | None = None
    for name, g in groups:
        data, gsize, axes = _read_multiscale(g, f"{what}/{name}")
        parts, _ = _split_axes(data, axes, f"{what}/{name}")
        if len(parts) > 1:
            raise CorruptInputError(f"{what}/{name}: a label array must have one channel")
        arrays.append(parts[0])
        names.append(name)
        size = size or gsize
    return LabelFile(arrays, names, "ome-zarr", size, {"label_groups": [n for n, _ in groups]})


def read_label_arrays(path: str | os.PathLike[str]) -> LabelFile:
    """Read the label arrays of one file, choosing the reader by its extension.

    Parameters
    ----------
    path : path-like
        ``.tif``/``.tiff``/``.ome.tif(f)``, ``.png``, ``.npy``, ``.npz`` or a zarr / OME-Zarr
        directory (``.zarr`` or any directory holding zarr metadata).

    Returns
    -------
    LabelFile
        Arrays of shape (Y, X) or (Z, Y, X), in file order.
    """
    p = Path(path)
    if not p.exists():
        raise CorruptInputError(f"{p}: no such file or directory")
    suffix = p.suffix.lower()
    if p.is_dir() or suffix == ".zarr":
        return _read_zarr(p)
    if suffix in (".tif", ".tiff", ".btf", ".tf8"):
        return _read_tiff(p)
    if suffix == ".png":
        return _read_png(p)
    if suffix == ".npy":
        return _read_npy(p)
    if suffix == ".npz":
        return _read_npz(p)
    raise CorruptInputError(
        f"{p}: unknown label file type {suffix!r}; use TIFF/OME-TIFF, PNG, NPY, NPZ or zarr"
    )


def _mask_names(lf: LabelFile, name: str | Sequence[str] | None, what: str) -> list[str]:
    n = len(lf.arrays)
    if isinstance(name, str):
        given: list[str] | None = [name]
    else:
        given = list(name) if name is not None else None
    if given is not None:
        if len(given) != n:
            raise OptionError(
                f"{what}: {len(given)} mask name(s) given for {n} label array(s) "
                f"(found names: {lf.names}); give one name per array"
            )
        return check_mask_names(given)
    if n == 1 and lf.names[0] is None:
        return ["cells"]
    out: list[str] = []
    for i, found in enumerate(lf.names):
        if found is None:
            raise OptionError(
                f"{what}: label array {i} has no name in the file; pass name=[...] with one "
                "mask name per array",
                cli=f"{what}: label array {i} has no name in the file; give one --mask-name "
                "(or --name for adjacency) per array",
            )
        try:
            out.append(check_mask_name(found))
        except MaskNameError:
            hint = suggest_mask_name(found)
            if not hint:
                raise OptionError(
                    f"{what}: channel name {found!r} cannot become a mask name; pass name=[...]",
                    cli=f"{what}: channel name {found!r} cannot become a mask name; give "
                    "--mask-name (or --name for adjacency) per array",
                ) from None
            out.append(hint)
    return check_mask_names(out)


def read_labels(
    path: str | os.PathLike[str],
    *,
    mask_names: str | Sequence[str] | None = None,
    physical_size: PhysicalSize | tuple[float, ...] | float | None = None,
    **deprecated: Any,
) -> Segmentation:
    """Read a label image file as a :class:`~maskbundle.model.Segmentation`.

    Parameters
    ----------
    path : path-like
        Label TIFF or OME-TIFF (level 0 of a pyramid; one mask per channel), PNG, NPY,
        NPZ (one mask per array, named by its key), zarr array or OME-Zarr labels (one mask
        per label group), or an existing bundle's ``*.segmentations.ome.tiff``.
    mask_names : str or sequence of str, optional
        Mask name(s), one per array in file order (``name=`` is the deprecated spelling). By default the channel / key / label
        group names (made valid: ``Cells`` -> ``cells``), or ``cells`` for one unnamed
        array.
    physical_size : PhysicalSize or (x, y[, z]) in micrometres, optional
        Overrides the size found in the file's OME metadata.

    Returns
    -------
    Segmentation
        ``masks[mask_name].labels`` has the file's values unchanged, shape (Y, X) or (Z, Y, X).

    Raises
    ------
    CorruptInputError
        Unreadable file or unsupported layout (RGB, time series, several plane axes).
    LabelError
        Negative, NaN or fractional labels.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle.synthetic import example_labels
    >>> labels = example_labels()  # three cells in 32 x 32 pixels
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> from maskbundle import read_labels
    >>> np.save(tmp / "labels.npy", labels)
    >>> seg = read_labels(tmp / "labels.npy", mask_names="nuclei")
    >>> list(seg.masks), np.array_equal(seg.masks["nuclei"].labels, labels)
    (['nuclei'], True)
    """
    name = renamed_keywords("read_labels", deprecated, {
        "name": ("mask_names", mask_names, None)}).get("mask_names", mask_names)
    p = Path(path)
    lf = read_label_arrays(p)
    names = _mask_names(lf, name, str(p))
    size = PhysicalSize.coerce(physical_size) if physical_size is not None else lf.physical_size
    tool = "maskbundle" if p.name.endswith(".segmentations.ome.tiff") else "labels"
    source = file_source(p, tool=tool, fmt=lf.fmt, metadata=lf.metadata)
    masks: dict[str, Mask] = {}
    for mask_name, found, arr in zip(names, lf.names, lf.arrays, strict=True):
        labels = check_label_array(mask_name, arr, what=f"{p} ({mask_name})", convert=False)
        src = dict(source)
        if found is not None:
            src["name_in_file"] = found
        masks[mask_name] = Mask(labels=labels, source=src)
    return Segmentation(masks=masks, physical_size=size, source=source)

