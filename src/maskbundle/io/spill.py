"""Numeric table columns parked on disk while a memory peak passes (whole-slide masks).

At ten million objects the feature table is ~1.5 GB; the centroid graph's Delaunay
triangulation needs ~400 bytes per object on top of whatever is held. The streaming
writer writes the feature columns to ``.npy`` files in a scratch directory beside the
output, triangulates, and reads them back: same dtypes, same values, same frame.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .staging import write_error

__all__ = ["SpilledFrame"]


class SpilledFrame:
    """The numeric columns of ``frame`` written to ``directory`` (a fresh hidden
    sub-directory); other columns, the index and ``attrs`` stay in memory.

    The caller drops its own references to the frame after this, so its columns are
    freed; :meth:`load` returns an equal frame (columns in order) and removes the files.
    """

    def __init__(self, frame: pd.DataFrame, directory: Path) -> None:
        self._names = list(frame.columns)
        self._index = frame.index
        self._attrs = dict(frame.attrs)
        self._kept: dict[int, np.ndarray] = {}
        try:
            self._dir = Path(tempfile.mkdtemp(prefix=".maskbundle-spill-", dir=directory))
        except OSError as exc:
            raise write_error(exc, directory) from exc
        try:
            for j in range(len(self._names)):
                values = frame.iloc[:, j].to_numpy()
                if values.dtype.kind in "biuf":
                    np.save(self._dir / f"{j}.npy", values, allow_pickle=False)
                else:  # text / object cells: not .npy material, and rare here
                    self._kept[j] = values
        except OSError as exc:
            self.close()
            raise write_error(exc, self._dir) from exc

    def load(self) -> pd.DataFrame:
        """The frame back (and the scratch files removed)."""
        try:
            data = {
                name: self._kept[j] if j in self._kept
                else np.load(self._dir / f"{j}.npy", allow_pickle=False)
                for j, name in enumerate(self._names)
            }
        finally:
            self.close()
        frame = pd.DataFrame(data, index=self._index, copy=False)
        frame.attrs.update(self._attrs)
        return frame

    def close(self) -> None:
        """Remove the scratch directory (idempotent)."""
        shutil.rmtree(self._dir, ignore_errors=True)
