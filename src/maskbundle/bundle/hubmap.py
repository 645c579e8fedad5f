"""What HuBMAP's post-ingest conversion (objects table -> MuData) cannot carry today.

Pure: column names and Feature classes in, the warning text out. The writer issues it as
a :class:`~maskbundle.errors.HubmapConversionWarning`, the validator as a warning finding
(``objects.hubmap-conversion``). docs/hubmap-ingest.md has the reproduction and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..rules import MODALITY_CLASSES

__all__ = [
    "CONVERTER",
    "INGEST_DOC",
    "X_CLASSES",
    "conversion_problem",
    "x_class_columns",
]

CONVERTER = "epic-obj-csv-to-mudata bin/obj_feature_to_mudata.py at aef3ff9 (mudata ~=0.3)"
INGEST_DOC = "docs/hubmap-ingest.md"
# Feature classes the conversion turns into one AnnData each (compared case-folded)
X_CLASSES = frozenset(c.casefold() for c in MODALITY_CLASSES)
_SHOW = 3


def x_class_columns(names: Sequence[str], feature_classes: Sequence[str]) -> list[str]:
    """Names of the columns whose Feature class is antibody, gene or IMS (any case)."""
    return [
        n for n, c in zip(names, feature_classes, strict=False)
        if c.strip().casefold() in X_CLASSES
    ]


def _shown(cols: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in cols[:_SHOW]) + (
        f" ... ({len(cols)} in all)" if len(cols) > _SHOW else ""
    )


def conversion_problem(names: Sequence[str], feature_classes: Sequence[str]) -> str | None:
    """Why HuBMAP's current conversion cannot carry this table's antibody/gene/IMS columns.

    antibody and gene columns make the conversion fail (KeyError for a name that differs
    from its case-fold, then the MuData constructor for any such column); IMS columns pass
    but land in ``obsm["ims"]`` instead of their own AnnData (it compares the case-folded
    class with ``"IMS"``). Returns None when the table has none of them.
    """
    classes = [c.strip().casefold() for c in feature_classes]
    failing = [n for n, c in zip(names, classes, strict=False) if c in ("antibody", "gene")]
    ims = [n for n, c in zip(names, classes, strict=False) if c == "ims"]
    if not failing and not ims:
        return None
    parts = []
    if failing:
        why = "its MuData constructor rejects the per-class AnnData"
        unfolded = [c for c in failing if c != c.casefold()]
        if unfolded:
            why += (
                f"; {len(unfolded)} name(s) differ from their case-fold (e.g. "
                f"{unfolded[0]!r}) and raise KeyError before that"
            )
        parts.append(
            f"antibody/gene column(s) {_shown(failing)} make it fail ({why}), so HuBMAP "
            "derives no .h5mu from this dataset"
        )
    if ims:
        parts.append(
            f"IMS column(s) {_shown(ims)} land in obsm['ims'] instead of their own AnnData"
        )
    return (
        f"HuBMAP's post-ingest conversion ({CONVERTER}): " + "; ".join(parts)
        + f". The bundle is valid and uploads. Fix: send HuBMAP {INGEST_DOC} (reproduction "
        "and converter change); meanwhile Bundle.to_mudata() or `maskbundle export --to h5mu` "
        "builds the intended MuData"
    )
