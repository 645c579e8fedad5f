"""Shared fixtures: small label images and the reference checker from ../shared (if present)."""

from __future__ import annotations

import numpy as np
import pytest

import helpers
from helpers import expect_reference


@pytest.fixture
def checker():  # type: ignore[no-untyped-def]
    """``checker(path, *extra)`` asserts the reference checker passes ``path``."""
    return expect_reference


@pytest.fixture(autouse=True)
def _reference_comparisons():  # type: ignore[no-untyped-def]
    """Own assertions always run; comparisons needing ../shared are reported as a skip."""
    helpers.NOT_COMPARED.clear()
    yield
    if helpers.NOT_COMPARED:
        missing = len(helpers.NOT_COMPARED)
        helpers.NOT_COMPARED.clear()
        pytest.skip(
            f"{missing} comparison(s) with the reference checker not run: "
            "../shared/tools/check_bundle.py not present (the test's own assertions passed)"
        )


@pytest.fixture
def tissue() -> tuple[np.ndarray, np.ndarray]:
    from maskbundle.synthetic import synthetic_tissue

    return synthetic_tissue((300, 260), cell_spacing=18.0, seed=3)

