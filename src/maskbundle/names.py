"""Mask-name checks (SPEC section 2; the rule is in ``maskbundle.rules``) and file-name stems."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import MaskNameError
from .rules import MASK_NAME_RE, MAX_NAME_LENGTH  # the rule itself (SPEC section 2)

__all__ = ["check_mask_name", "check_mask_names", "safe_stem", "suggest_mask_name"]


def suggest_mask_name(name: str) -> str:
    """A valid spelling close to ``name`` ('' when nothing usable remains)."""
    s = name.strip().lower()
    s = re.sub(r"[^a-z_-]+", "-", s)  # digits and other characters become separators
    s = re.sub(r"[-_]{2,}", lambda m: m.group(0)[0], s).strip("-_")
    return s[:MAX_NAME_LENGTH].strip("-_")


def check_mask_name(name: object) -> str:
    """Return ``name`` if it is a valid mask name, else raise :class:`MaskNameError`."""
    if not isinstance(name, str):
        raise MaskNameError(f"mask name {name!r} is not a string; use a lower-case word such as 'cells'")
    if MASK_NAME_RE.fullmatch(name) and len(name) <= MAX_NAME_LENGTH:
        return name
    hint = suggest_mask_name(name)
    why = (
        f"is longer than {MAX_NAME_LENGTH} characters"
        if len(name) > MAX_NAME_LENGTH and MASK_NAME_RE.fullmatch(name)
        else "must be lower case letters, with single '-' or '_' between words, and no digits "
        "(HuBMAP's portal lower-cases names and reads the first digits as the object number)"
    )
    fix = f"; use {hint!r} instead" if hint and hint != name else "; choose a name such as 'cells'"
    raise MaskNameError(f"mask name {name!r} {why}{fix}")


def check_mask_names(names: Iterable[object]) -> list[str]:
    """Check every name and that no two are equal ignoring case."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        good = check_mask_name(name)
        if good.casefold() in seen:
            raise MaskNameError(f"mask name {good!r} is given twice; every mask needs its own name")
        seen[good.casefold()] = good
        out.append(good)
    if not out:
        raise MaskNameError("no masks given; pass at least one, e.g. {'cells': labels}")
    return out


def safe_stem(text: str) -> str:
    """A file-name stem from free text: ASCII letters, digits, '-', '_' and '.' only."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip()).strip("-._")
    return s or "segmentation"
