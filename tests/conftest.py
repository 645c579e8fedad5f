"""Shared fixtures: small label images and the reference checker from ../shared (if present)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import run_reference_checker


@pytest.fixture
def checker():  # type: ignore[no-untyped-def]
    return run_reference_checker


@pytest.fixture
def tissue() -> tuple[np.ndarray, np.ndarray]:
    from maskbundle.synthetic import synthetic_tissue

    return synthetic_tissue((300, 260), cell_spacing=18.0, seed=3)

