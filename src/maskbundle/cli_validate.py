"""``maskbundle validate PATH``: check a dataset directory and print the findings.

Kept apart from :mod:`maskbundle.cli` so the validator can land on its own; the group
registers it with ``main.add_command(validate_command, "validate")``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["validate_command"]


@click.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--parent",
    "parent",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Parent OME-TIFF whose sizes and physical sizes the masks must equal.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every finding to this JSON file.",
)
@click.option("--verbose", "-v", is_flag=True, help="Print passed and not-applicable checks too.")
def validate_command(path: Path, parent: Path | None, json_out: Path | None, verbose: bool) -> None:
    """Check the dataset directory PATH against the Segmentation Mask format.

    Exit status 0 when no error was found (warnings allowed), 1 otherwise.
    """
    from .bundle.validate import validate_bundle

    report = validate_bundle(path, parent_image=parent)
    click.echo(report.format(verbose=verbose))
    if json_out is not None:
        json_out.write_text(report.to_json() + "\n", encoding="utf-8")
    sys.exit(0 if report.ok else 1)
