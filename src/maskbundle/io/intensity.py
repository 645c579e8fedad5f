"""Read a marker (intensity) image for the objects-table features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import CorruptInputError, MaskBundleError
from .limits import check_npy_file, check_tiff_level0, check_tiff_structure
from .ometiff import ome_metadata, to_czyx
from .tifftiles import TiffTiles, tiff_tiles

__all__ = ["IntensityImage", "IntensityTiles", "open_intensity_tiles", "read_intensity_image"]


@dataclass(frozen=True)
class IntensityImage:
    """Level 0 of a multi-channel image as (C, Z, Y, X) plus its OME channel names."""

    data: np.ndarray
    channel_names: list[str] | None
    # True when the file does not say whether its leading axis is channels or planes
    # (a plain multi-page TIFF, a 3D .npy)
    leading_axis_ambiguous: bool = False

    def for_masks(self, shape: tuple[int, ...]) -> np.ndarray:
        """(C, Y, X) for 2D masks of ``shape`` (a single plane is dropped), (C, Z, Y, X)
        for 3D; an unlabelled leading axis as long as the masks' Z is read as planes."""
        data = self.data
        if len(shape) == 2 and data.shape[1] == 1:
            return data[:, 0]
        if (len(shape) == 3 and self.leading_axis_ambiguous and data.shape[1] == 1
                and data.shape[0] == shape[0] and data.shape[2:] == tuple(shape[1:])):
            return data[:, 0][np.newaxis]  # one channel of Z planes (ZYX)
        return data


def read_intensity_image(path: Path | str) -> IntensityImage:
    """Read a (OME-)TIFF or .npy intensity image; OME channel names become marker names.

    Names are returned only when every channel has one; otherwise ``channel_names`` is
    None and the caller names the markers.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptInputError(f"intensity image {path} does not exist")
    if path.name.lower().endswith(".npy"):
        check_npy_file(path, str(path))
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptInputError(f"{path}: cannot read the intensity image ({exc})") from exc
        if arr.dtype.kind not in "uifb":
            raise CorruptInputError(f"{path}: the intensity image holds {arr.dtype}, not numbers")
        if arr.ndim == 2:
            arr = arr[np.newaxis, np.newaxis]
        elif arr.ndim == 3:
            return IntensityImage(arr[:, np.newaxis], None, leading_axis_ambiguous=True)
        elif arr.ndim != 4:
            raise CorruptInputError(
                f"{path}: the intensity image has {arr.ndim} axes; expected (Y, X), (C, Y, X), "
                "(Z, Y, X) or (C, Z, Y, X)"
            )
        return IntensityImage(arr, None)
    check_tiff_structure(path, str(path))
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            check_tiff_level0(series, path, str(path))
            data = series.asarray(level=0)
            axes = series.axes
            meta = ome_metadata(tf, f"intensity image {path}")
    except MaskBundleError:
        raise
    except Exception as exc:  # tifffile raises struct.error, TypeError ... on damage
        raise CorruptInputError(f"{path}: intensity image is not a readable TIFF ({exc})") from exc
    # plain TIFFs call a leading channel axis Q (or I); read it as C
    ambiguous = "C" not in axes and "Z" not in axes and ("Q" in axes or "I" in axes)
    axes = axes.replace("Q", "C").replace("I", "C") if "C" not in axes else axes
    czyx = to_czyx(data, axes, "intensity image")
    names = None if meta is None else meta.names_for(czyx.shape[0])
    return IntensityImage(czyx, names, leading_axis_ambiguous=ambiguous and names is None)


@dataclass(frozen=True)
class IntensityTiles:
    """A tiled (OME-)TIFF intensity image read by windows, seen as (C, Y, X) or (C, Z, Y, X).

    ``read(window)`` takes one slice per axis of ``shape`` and returns the same pixels
    :func:`read_intensity_image` would hold there (same dtype); nothing is read up front.
    """

    tiles: TiffTiles
    axes: str  # the file's axes, Q/I read as C
    out_axes: str  # "CYX" or "CZYX"
    shape: tuple[int, ...]
    channel_names: list[str] | None

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.tiles.dtype

    def read(self, window: Sequence[slice]) -> np.ndarray:
        key: list[int | slice] = []
        for ax in self.axes:
            key.append(window[self.out_axes.index(ax)] if ax in self.out_axes else 0)
        data = self.tiles[tuple(key)]
        kept = [ax for ax in self.axes if ax in self.out_axes]
        if "C" not in kept:
            data, kept = data[np.newaxis], ["C", *kept]
        return np.ascontiguousarray(np.transpose(data, [kept.index(ax) for ax in self.out_axes]))

    def close(self) -> None:
        self.tiles.close()


def open_intensity_tiles(path: Path | str, mask_shape: tuple[int, ...]) -> IntensityTiles | None:
    """The intensity image at ``path`` opened for reading by windows, for masks of
    ``mask_shape``; None when it is not a tiled TIFF that can be read that way, or its
    axes leave a doubt (the caller then reads it whole with :func:`read_intensity_image`,
    which also gives the errors)."""
    path = Path(path)
    if not path.is_file() or not path.name.lower().endswith((".tif", ".tiff")):
        return None
    try:
        check_tiff_structure(path, str(path))
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            check_tiff_level0(series, path, str(path))
            level = series.levels[0] if series.levels else series
            axes = level.axes
            shape = tuple(int(n) for n in level.shape)
            dtype = np.dtype(level.dtype)
            meta = ome_metadata(tf, f"intensity image {path}")
            tiles = tiff_tiles(str(path), level, shape, dtype)
    except Exception:  # read_intensity_image then reports what is wrong
        return None
    if tiles is None:
        return None
    if "C" not in axes and "Z" not in axes and ("Q" in axes or "I" in axes):
        tiles.close()  # channels or planes? read_intensity_image decides
        return None
    sizes = dict(zip(axes, shape, strict=True))
    z = sizes.get("Z", 1)
    out_axes = "CZYX" if len(mask_shape) == 3 else "CYX"
    if (len(mask_shape) == 2 and z != 1) or (len(mask_shape) == 3 and "Z" not in sizes) or any(
            ax not in "CZYX" and n != 1 for ax, n in sizes.items()):
        tiles.close()
        return None
    out_shape = (sizes.get("C", 1), *((z,) if len(mask_shape) == 3 else ()),
                 sizes["Y"], sizes["X"])
    names = None if meta is None else meta.names_for(out_shape[0])
    return IntensityTiles(tiles, axes, out_axes, out_shape, names)
