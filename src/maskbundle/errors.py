"""One exception tree for the whole package, and the validation report types.

Every exception raised on purpose derives from :class:`MaskBundleError`; most also derive
from the matching built-in so callers can catch either (``except ValueError`` still works).
Messages name the mask, the problem, a count or first position, and the fix.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = [
    "BundleInvalidError",
    "CorruptInputError",
    "EmptyResultError",
    "Finding",
    "HubmapConversionWarning",
    "LabelError",
    "MaskBundleError",
    "MaskBundleWarning",
    "MaskNameError",
    "MissingDependencyError",
    "OptionError",
    "OutputExistsError",
    "OutputWriteError",
    "PlausibilityWarning",
    "Report",
    "ShapeMismatchError",
    "TableFormatError",
    "UnsafeOverwriteError",
]


class MaskBundleError(Exception):
    """Root of every error maskbundle raises on purpose.

    ``cli`` is the same message phrased with the command line's flags (``--physical-size
    X Y Z`` instead of ``physical_size=(x, y, z)``); the CLI prints it when given.

    Examples
    --------
    Every error raised on purpose can be caught as ``MaskBundleError``:

    >>> from maskbundle import MaskBundleError, PhysicalSize
    >>> try:
    ...     PhysicalSize.coerce(-0.5)
    ... except MaskBundleError as exc:
    ...     print(type(exc).__name__, "-", exc)
    OptionError - physical size x must be a finite number > 0, got -0.5
    """

    def __init__(self, message: str = "", *, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli = cli

    @property
    def cli_message(self) -> str:
        """The one line the command line prints."""
        return " ".join((self.cli or str(self)).split())


class LabelError(MaskBundleError, ValueError):
    """A label array cannot be used as a mask (dtype, NaN, negative, too many objects).

    Examples
    --------
    >>> import numpy as np
    >>> from maskbundle.labels.checks import check_label_array
    >>> check_label_array("cells", np.array([[0, -1], [2, 2]]))
    Traceback (most recent call last):
    ...
    maskbundle.errors.LabelError: mask 'cells': 1 negative label value(s), first at (row, column) (0, 1); ...
    """


class MaskNameError(MaskBundleError, ValueError):
    """A mask name breaks the naming rules (SPEC section 2).

    Examples
    --------
    >>> from maskbundle.names import check_mask_name
    >>> check_mask_name("Cells 1")
    Traceback (most recent call last):
    ...
    maskbundle.errors.MaskNameError: mask name 'Cells 1' must be lower case letters, ...; use 'cells' instead
    """


class ShapeMismatchError(MaskBundleError, ValueError):
    """Arrays that must share a shape do not (masks, parent image, intensity image).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle import write_segmentation_bundle
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> write_segmentation_bundle(tmp / "ds", {"cells": np.ones((8, 8), np.uint8),
    ...     "nuclei": np.ones((8, 9), np.uint8)}, physical_size=0.5,
    ...     protocol_doi="10.17504/protocols.io.example")
    Traceback (most recent call last):
    ...
    maskbundle.errors.ShapeMismatchError: ...
    """


class OptionError(MaskBundleError, ValueError):
    """An option value is invalid (physical size, obo id, DOI, format ...).

    Examples
    --------
    >>> from maskbundle.rules import normalise_doi
    >>> normalise_doi("protocols.io/example")
    Traceback (most recent call last):
    ...
    maskbundle.errors.OptionError: protocol_doi 'protocols.io/example' is not a DOI like 10.17504/protocols.io.xxxx
    """


class TableFormatError(MaskBundleError, ValueError):
    """A table cell or header would break the objects-table format (SPEC section 5).

    Examples
    --------
    >>> from maskbundle import ColumnSpec
    >>> from maskbundle.columns import check_spec
    >>> check_spec(ColumnSpec("Area", "float", "morphology", "Area in \u00b5m^2"))
    Traceback (most recent call last):
    ...
    maskbundle.errors.TableFormatError: column 'Area': 'Area in µm^2' is not ASCII; HuBMAP accepts ASCII text only
    """


class OutputExistsError(MaskBundleError, FileExistsError):
    """The output exists and overwriting was not asked for.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from maskbundle import OutputExistsError, write_segmentation_bundle
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> options = dict(physical_size=0.5, protocol_doi="10.17504/protocols.io.example")
    >>> ds = write_segmentation_bundle(tmp / "ds", {"cells": np.ones((8, 8), np.uint8)}, **options)
    >>> try:
    ...     write_segmentation_bundle(tmp / "ds", {"cells": np.ones((8, 8), np.uint8)}, **options)
    ... except OutputExistsError:
    ...     print("refused; pass overwrite=True to replace it")
    refused; pass overwrite=True to replace it
    """


class UnsafeOverwriteError(OutputExistsError):
    """The output exists and is not a bundle this tool wrote, or it holds an input."""


class OutputWriteError(MaskBundleError, OSError):
    """The file system refused a write (disk full, read-only, name too long, no access)."""


class EmptyResultError(MaskBundleError, ValueError):
    """An input holds nothing to write (no objects) or objects would be dropped."""


class CorruptInputError(MaskBundleError, ValueError):
    """An input file is unreadable, truncated or unsafe to load.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from maskbundle import read_labels
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.npy"
    >>> _ = path.write_text("not an array")
    >>> read_labels(path)
    Traceback (most recent call last):
    ...
    maskbundle.errors.CorruptInputError: ...
    """


class BundleInvalidError(MaskBundleError):
    """A bundle failed validation where a valid one was required.

    ``report`` holds the validator's findings when the refusal came from a validation run.

    Examples
    --------
    >>> import tempfile
    >>> from maskbundle import BundleInvalidError, read_bundle
    >>> try:
    ...     read_bundle(tempfile.mkdtemp())
    ... except BundleInvalidError as exc:
    ...     print(exc.report.ok, exc.report.errors[0].code)
    False layout.required
    """

    def __init__(self, message: str, *, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report


class MissingDependencyError(MaskBundleError, ImportError):
    """An optional dependency needed by the requested feature is not installed.

    Examples
    --------
    It is also an ``ImportError``, so ``except ImportError`` keeps working:

    >>> from maskbundle import MissingDependencyError
    >>> issubclass(MissingDependencyError, ImportError)
    True
    """


class MaskBundleWarning(UserWarning):
    """Root of every warning maskbundle issues on purpose (the CLI prints them one per line).

    Examples
    --------
    >>> import warnings
    >>> from maskbundle import MaskBundleWarning, PhysicalSize
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", MaskBundleWarning)
    ...     PhysicalSize(500.0, 500.0).warn_if_implausible()
    >>> [type(w.message).__name__ for w in caught]
    ['PlausibilityWarning']
    """


class HubmapConversionWarning(MaskBundleWarning):
    """A table is valid but HuBMAP's current post-ingest conversion cannot carry some columns.

    See docs/hubmap-ingest.md: the failures, their reproduction and the converter fix.

    Examples
    --------
    Turn it into an error where a bundle must convert without losing columns:

    >>> import warnings
    >>> from maskbundle import HubmapConversionWarning, MaskBundleWarning
    >>> issubclass(HubmapConversionWarning, MaskBundleWarning)
    True
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", HubmapConversionWarning)
    """


class PlausibilityWarning(MaskBundleWarning):
    """A value is valid but outside the range seen in practice (likely a unit slip)."""


Severity = Literal["error", "warning", "info"]
Status = Literal["passed", "failed", "not applicable"]


@dataclass(frozen=True)
class Finding:
    """One result of the validator: where, which rule, what, how bad.

    Examples
    --------
    >>> from maskbundle import validate_bundle
    >>> finding = validate_bundle("no-such-directory").errors[0]
    >>> finding.code, finding.severity, finding.status
    ('bundle.directory', 'error', 'failed')
    """

    location: str
    code: str
    message: str
    severity: Severity = "error"
    status: Status = "failed"


@dataclass
class Report:
    """All findings of one validation run. ``ok`` is true when no finding is an error.

    Examples
    --------
    >>> from maskbundle import Report
    >>> report = Report("ds")
    >>> report.passed("derived/segmentation_masks", "layout.ome-tiff")
    >>> report.add("derived/segmentation_masks/cells-linkage-adjacency.csv", "adjacency.header",
    ...            "header starts Object ID 1,Object ID 2,Distance (micrometer)")
    >>> report.ok, len(report.errors), len(report.findings)
    (False, 1, 2)
    >>> print(report.format())
    ERROR derived/segmentation_masks/cells-linkage-adjacency.csv [adjacency.header] header starts ...
    FAILED: 1 error(s), 0 warning(s) in ds
    """

    path: str
    findings: list[Finding] = field(default_factory=list)

    def add(
        self,
        location: str,
        code: str,
        message: str,
        severity: Severity = "error",
        status: Status = "failed",
    ) -> None:
        self.findings.append(Finding(location, code, message, severity, status))

    def passed(self, location: str, code: str, message: str = "") -> None:
        self.findings.append(Finding(location, code, message, "info", "passed"))

    def __repr__(self) -> str:
        # the findings can number thousands; the repr says how many, format() lists them
        return (
            f"Report(path={self.path!r}, ok={self.ok}, errors={len(self.errors)}, "
            f"warnings={len(self.warnings)}, findings={len(self.findings)})"
        )

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "failed" and f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "failed" and f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "ok": self.ok, "findings": [asdict(f) for f in self.findings]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def format(self, *, verbose: bool = False) -> str:
        lines = []
        for f in self.findings:
            if f.status == "failed" or verbose:
                tag = {"error": "ERROR", "warning": "WARN", "info": "PASS"}[f.severity]
                if f.status == "not applicable":
                    tag = "N/A"
                lines.append(f"{tag:5} {f.location} [{f.code}] {f.message}".rstrip())
        verdict = "OK" if self.ok else "FAILED"
        lines.append(
            f"{verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) in {self.path}"
        )
        return "\n".join(lines)
