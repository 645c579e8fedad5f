"""Stage progress on the terminal: silent in library calls unless asked (``progress=True``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Protocol

from tqdm import tqdm

__all__ = ["Advance", "TileDone", "pixel_progress", "stage_progress", "tile_progress"]


class Advance(Protocol):
    def __call__(self, label: str) -> None: ...


@contextmanager
def stage_progress(total: int, *, enabled: bool, desc: str) -> Iterator[Advance]:
    """Yield ``advance(label)``: call it when a stage is done; a bar on stderr when enabled."""
    bar = tqdm(total=total, desc=desc, unit="stage", file=sys.stderr, disable=not enabled,
               leave=False, dynamic_ncols=True)

    def advance(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    try:
        yield advance
    finally:
        bar.close()


class TileDone(Protocol):
    def __call__(self, tiles_done: int, tiles_total: int, pixels: int) -> None: ...


@contextmanager
def tile_progress(
    total_pixels: int, *, enabled: bool, desc: str = "pass 1", file: IO[str] | None = None
) -> Iterator[TileDone]:
    """Yield ``done(tiles_done, tiles_total, pixels)`` for per-tile work (the ``progress=``
    of :func:`maskbundle.measure.tiled.measure_tiled`): a bar on stderr counting pixels,
    with the pixel rate, the time left and ``tile i/n``, when enabled."""
    bar = tqdm(total=total_pixels, desc=desc, unit="px", unit_scale=True,
               file=file if file is not None else sys.stderr, disable=not enabled,
               leave=False, dynamic_ncols=True, mininterval=0.5)

    def done(tiles_done: int, tiles_total: int, pixels: int) -> None:
        bar.set_postfix_str(f"tile {tiles_done}/{tiles_total}", refresh=False)
        bar.update(pixels)
        if tiles_done == tiles_total:
            bar.refresh()  # the final count is shown even when the run beat mininterval

    try:
        yield done
    finally:
        bar.close()


@contextmanager
def pixel_progress(total_pixels: int, *, enabled: bool, desc: str) -> Iterator[Callable[[int], None]]:
    """Yield ``done(pixels)`` for work that advances by bands of pixels (the streaming
    OME-TIFF writer's ``progress=``): a bar with the pixel rate and time left."""
    bar = tqdm(total=total_pixels, desc=desc, unit="px", unit_scale=True, file=sys.stderr,
               disable=not enabled, leave=False, dynamic_ncols=True, mininterval=0.5)
    try:
        yield bar.update
    finally:
        bar.close()
