from __future__ import annotations

import pytest

from maskbundle.errors import MaskNameError
from maskbundle.names import check_mask_name, check_mask_names, suggest_mask_name


@pytest.mark.parametrize("name", ["cells", "nuclei", "cell-boundaries", "ftu_glomeruli", "a"])
def test_valid_names(name: str) -> None:
    assert check_mask_name(name) == name


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("Cells", "cells"), ("nuclei2", "nuclei"), ("my cells", "my-cells"), ("../x", "x"),
     ("a//b", "a-b"), ("Tubules 3D", "tubules-d")],
)
def test_invalid_names_suggest_valid_spelling(name: str, suggestion: str) -> None:
    with pytest.raises(MaskNameError, match=f"use '{suggestion}'"):
        check_mask_name(name)
    assert suggest_mask_name(name) == suggestion
    check_mask_name(suggestion)  # the suggestion itself is valid


def test_refuses_long_non_string_duplicate_and_empty() -> None:
    with pytest.raises(MaskNameError, match="longer than 64"):
        check_mask_name("a" * 65)
    with pytest.raises(MaskNameError, match="not a string"):
        check_mask_name(3)
    with pytest.raises(MaskNameError, match="given twice"):
        check_mask_names(["cells", "cells"])
    with pytest.raises(MaskNameError, match="no masks"):
        check_mask_names([])
    with pytest.raises(MaskNameError):
        check_mask_name("")
