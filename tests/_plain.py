"""Plain rereads of bundle files with pandas and tifffile (no maskbundle), for expectations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

SEG = Path("derived/segmentation_masks")


def plain_table(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(data cells as strings, header block indexed by label) of an objects table."""
    if path.suffix == ".xlsx":
        raw = pd.read_excel(path, engine="openpyxl", header=None, dtype=str, keep_default_na=False)
    else:
        raw = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    names = list(raw.iloc[9])
    head = raw.iloc[:8].set_axis(names, axis=1).set_index("Object ID")
    data = raw.iloc[10:].set_axis(names, axis=1).reset_index(drop=True)
    return data, head


def table_path(ds: Path, mask: str) -> Path:
    (path,) = [p for p in (ds / SEG).glob(f"{mask}-objects.*") if p.suffix in (".tsv", ".xlsx")]
    return path


def tiff_levels(ds: Path) -> list[np.ndarray]:
    """Every pyramid level of the bundle's OME-TIFF as (C, [Z,] Y, X)."""
    (tiff,) = (ds / SEG).glob("*.ome.tiff")
    with tifffile.TiffFile(tiff) as tf:
        s = tf.series[0]
        levels = [s.asarray(level=k) for k in range(len(s.levels))]
        # tifffile drops a channel axis of length one: put it back
        return levels if "C" in s.axes else [lv[np.newaxis] for lv in levels]
