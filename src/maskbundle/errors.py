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
    """

    def __init__(self, message: str = "", *, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli = cli

    @property
    def cli_message(self) -> str:
        """The one line the command line prints."""
        return " ".join((self.cli or str(self)).split())


class LabelError(MaskBundleError, ValueError):
    """A label array cannot be used as a mask (dtype, NaN, negative, too many objects)."""


class MaskNameError(MaskBundleError, ValueError):
    """A mask name breaks the naming rules (SPEC section 2)."""


class ShapeMismatchError(MaskBundleError, ValueError):
    """Arrays that must share a shape do not (masks, parent image, intensity image)."""


class OptionError(MaskBundleError, ValueError):
    """An option value is invalid (physical size, obo id, DOI, format ...)."""


class TableFormatError(MaskBundleError, ValueError):
    """A table cell or header would break the objects-table format (SPEC section 5)."""


class OutputExistsError(MaskBundleError, FileExistsError):
    """The output exists and overwriting was not asked for."""


class UnsafeOverwriteError(OutputExistsError):
    """The output exists and is not a bundle this tool wrote, or it holds an input."""


class OutputWriteError(MaskBundleError, OSError):
    """The file system refused a write (disk full, read-only, name too long, no access)."""


class EmptyResultError(MaskBundleError, ValueError):
    """An input holds nothing to write (no objects) or objects would be dropped."""


class CorruptInputError(MaskBundleError, ValueError):
    """An input file is unreadable, truncated or unsafe to load."""


class BundleInvalidError(MaskBundleError):
    """A bundle failed validation where a valid one was required.

    ``report`` holds the validator's findings when the refusal came from a validation run.
    """

    def __init__(self, message: str, *, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report


class MissingDependencyError(MaskBundleError, ImportError):
    """An optional dependency needed by the requested feature is not installed."""


class MaskBundleWarning(UserWarning):
    """Root of every warning maskbundle issues on purpose (the CLI prints them one per line)."""


class HubmapConversionWarning(MaskBundleWarning):
    """A table is valid but HuBMAP's current post-ingest conversion cannot carry some columns.

    See docs/hubmap-ingest.md: the failures, their reproduction and the converter fix.
    """


class PlausibilityWarning(MaskBundleWarning):
    """A value is valid but outside the range seen in practice (likely a unit slip)."""


Severity = Literal["error", "warning", "info"]
Status = Literal["passed", "failed", "not applicable"]


@dataclass(frozen=True)
class Finding:
    """One result of the validator: where, which rule, what, how bad."""

    location: str
    code: str
    message: str
    severity: Severity = "error"
    status: Status = "failed"


@dataclass
class Report:
    """All findings of one validation run. ``ok`` is true when no finding is an error."""

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
