"""Stage progress on the terminal: silent in library calls unless asked (``progress=True``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from tqdm import tqdm

__all__ = ["Advance", "stage_progress"]


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
