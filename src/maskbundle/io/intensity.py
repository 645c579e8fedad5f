"""Read a marker (intensity) image for the objects-table features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..errors import CorruptInputError, MaskBundleError
from .limits import check_npy_file, check_tiff_level0, check_tiff_structure
from .ometiff import ome_metadata, to_czyx

__all__ = ["IntensityImage", "read_intensity_image"]


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
