"""The demo data: nuclei and cells segmented classically in scikit-image's IHC image.

``skimage.data.immunohistochemistry()`` ships inside scikit-image, so nothing is
downloaded. Nuclei: haematoxylin channel (colour deconvolution), Otsu threshold,
watershed split on the distance transform. Cells: nuclei grown by a fixed distance.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import color, data, feature, filters, measure, morphology, segmentation

from .bundle.build import write_segmentation_bundle
from .bundle.result import BundleResult
from .synthetic import example_labels

__all__ = [
    "DEMO_MARKERS",
    "DEMO_PHYSICAL_SIZE",
    "demo_markers",
    "demo_masks",
    "example_bundle",
]

# The image carries no calibration; 0.5 um per pixel is a typical 20x scan and only
# serves the demonstration.
DEMO_PHYSICAL_SIZE = (0.5, 0.5)
DEMO_MARKERS = ("Hematoxylin", "Eosin", "DAB")


def demo_masks() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The RGB image (Y, X, 3) and its ``{"cells": ..., "nuclei": ...}`` label images."""
    rgb = data.immunohistochemistry()
    hema = color.rgb2hed(rgb)[..., 0]
    smooth = filters.gaussian(hema, sigma=1.5)
    fg = smooth > filters.threshold_otsu(smooth)
    fg = ndimage.binary_opening(fg, structure=morphology.disk(2))
    comp, _ = ndimage.label(fg)
    fg &= (np.bincount(comp.ravel()) > 40)[comp]  # drop specks of 40 pixels or fewer
    dist = ndimage.distance_transform_edt(fg)
    peaks = feature.peak_local_max(dist, min_distance=7, labels=measure.label(fg),
                                   exclude_border=False)
    markers = np.zeros(fg.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    nuclei = segmentation.watershed(-dist, markers, mask=fg).astype(np.uint32)
    cells = segmentation.expand_labels(nuclei, distance=6).astype(np.uint32)
    return rgb, {"cells": cells, "nuclei": nuclei}


def demo_markers(rgb: np.ndarray) -> np.ndarray:
    """Stain intensities (3, Y, X) by colour deconvolution, in the order of DEMO_MARKERS."""
    return np.ascontiguousarray(np.moveaxis(color.rgb2hed(rgb), -1, 0)).astype(np.float32)


def example_bundle(path: str | Path | None = None, **options: Any) -> BundleResult:
    """A small bundle to try things on: :func:`~maskbundle.synthetic.example_labels` as the
    mask "cells", 0.5 um pixels, an example protocol DOI.

    ``path`` defaults to ``ds`` in a new temporary directory (left for the caller to
    remove); ``options`` go to :func:`~maskbundle.write_segmentation_bundle` and override
    the defaults.

    Examples
    --------
    >>> from maskbundle.demo import example_bundle
    >>> ds = example_bundle(adjacency="linkage")
    >>> ds.name, [p.name for p in ds.written if "adjacency" in p.name]
    ('ds', ['cells-linkage-adjacency.csv'])
    """
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="maskbundle-example-")) / "ds"
    kwargs: dict[str, Any] = {"physical_size": (0.5, 0.5),
                              "protocol_doi": "10.17504/protocols.io.example", **options}
    return write_segmentation_bundle(path, {"cells": example_labels()}, **kwargs)
