"""Readers of segmentation-tool outputs: files in, :class:`~maskbundle.model.Segmentation` out.

One module per tool (Cellpose, StarDist, QuPath, Mesmer) plus generic label files. The
readers never write files and never execute code stored in an input (Cellpose's pickled
``_seg.npy`` is read with a restricted unpickler).
"""

from __future__ import annotations

from .cellpose import read_cellpose
from .generic import read_labels
from .match import match_labels, match_masks
from .mesmer import read_mesmer
from .qupath import read_qupath
from .stardist import read_stardist

__all__ = [
    "match_labels",
    "match_masks",
    "read_cellpose",
    "read_labels",
    "read_mesmer",
    "read_qupath",
    "read_stardist",
]
