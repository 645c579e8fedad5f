"""Read a label image from a plain file (TIFF/OME-TIFF, NPY, NPZ, PNG) without pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from ..errors import CorruptInputError

__all__ = ["read_label_file"]


def read_label_file(path: Path | str) -> np.ndarray:
    """The label array stored in ``path`` (level 0 of a pyramid; singleton axes removed)."""
    path = Path(path)
    suffix = path.name.lower()
    if not path.is_file():
        raise CorruptInputError(f"label file {path} does not exist")
    try:
        if suffix.endswith((".tif", ".tiff")):
            with tifffile.TiffFile(path) as tf:
                arr = tf.series[0].asarray(level=0)
        elif suffix.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        elif suffix.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise CorruptInputError(
                        f"{path} holds arrays {z.files}; save exactly one label array per file"
                    )
                arr = z[z.files[0]]
        elif suffix.endswith(".png"):
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)
        else:
            raise CorruptInputError(
                f"{path}: unknown label file type; use .tif/.tiff, .npy, .npz or .png"
            )
    except CorruptInputError:
        raise
    except (OSError, ValueError) as exc:
        raise CorruptInputError(f"{path}: cannot read labels ({exc})") from exc
    return np.squeeze(arr) if arr.ndim > 2 else arr
