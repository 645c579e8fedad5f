"""Several readers' results on one image as one Segmentation (for multi-file conversions)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..errors import MaskNameError, OptionError
from ..model import Mask, Segmentation

__all__ = ["combine_segmentations", "rename_masks"]


def rename_masks(segmentation: Segmentation, names: Sequence[str]) -> Segmentation:
    """The same masks under ``names`` (one per mask, in order)."""
    if len(names) != len(segmentation.masks):
        raise OptionError(
            f"{len(names)} mask name(s) given for {len(segmentation.masks)} mask(s) "
            f"{list(segmentation.masks)}; give one per mask"
        )
    masks = dict(zip(names, segmentation.masks.values(), strict=True))
    if len(masks) != len(names):
        raise MaskNameError(f"mask names {list(names)} repeat a name; each mask needs its own")
    return dataclasses.replace(segmentation, masks=masks)


def combine_segmentations(segmentations: Sequence[Segmentation]) -> Segmentation:
    """Merge the masks of several inputs; names must not repeat, physical sizes must agree.

    The result's ``source`` lists each input's source under ``inputs``.
    """
    if not segmentations:
        raise OptionError("no input files given")
    if len(segmentations) == 1:
        return segmentations[0]
    masks: dict[str, Mask] = {}
    size = None
    for seg in segmentations:
        for name, mask in seg.masks.items():
            if name in masks:
                raise MaskNameError(
                    f"two inputs give a mask named {name!r}; name them apart "
                    "(e.g. --mask-name cells --mask-name nuclei)"
                )
            masks[name] = mask
        if seg.physical_size is not None:
            if size is not None and seg.physical_size != size:
                raise OptionError(
                    f"inputs disagree on the physical pixel size ({size} vs {seg.physical_size}); "
                    "give --physical-size or --parent"
                )
            size = seg.physical_size
    return Segmentation(
        masks=masks, physical_size=size, source={"inputs": [dict(s.source) for s in segmentations]}
    )
