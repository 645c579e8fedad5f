"""The one rule for text cells maskbundle writes or accepts.

Every text cell of a file we write (objects tables, ``extras/contributors.tsv``, the
upload metadata TSV, CSV cells) and every cell the validator reads passes
:func:`text_cell_problem`. A cell is refused when a spreadsheet could run it or a
terminal or parser could be confused by it:

- it starts, after any leading whitespace, with ``=``, ``+``, ``-`` or ``@`` (Excel,
  LibreOffice and Google Sheets read these as formulas), unless the whole cell is a
  plain number such as ``-2.5`` or ``+1e3``;
- it holds ``|`` anywhere (DDE payloads such as ``=cmd|' /C calc'!A0``; it is also the
  separator of Permissible values);
- it holds a control character: any of U+0000-U+001F (NUL, tab, CR, LF, ESC ...),
  U+007F-U+009F.

Numbers written as numbers are not text cells and are not checked here.
"""

from __future__ import annotations

import re

__all__ = ["FORMULA_PREFIXES", "NUMBER_RE", "check_text_cell", "text_cell_problem"]

FORMULA_PREFIXES = ("=", "+", "-", "@")
NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {"\x00": "NUL", "\t": "tab", "\n": "line feed", "\r": "carriage return",
                  "\x1b": "ESC"}


def text_cell_problem(value: str) -> str | None:
    """Why ``value`` may not be a text cell, or None when it may."""
    bad = _CONTROL_RE.search(value)
    if bad:
        ch = bad.group()
        name = _CONTROL_NAMES.get(ch, f"U+{ord(ch):04X}")
        return f"holds the control character {name}; remove it"
    if "|" in value:
        return "holds '|', which spreadsheets use to call other programs; rephrase it"
    stripped = value.lstrip()
    if stripped[:1] in FORMULA_PREFIXES and not NUMBER_RE.fullmatch(stripped):
        return (
            f"starts with {stripped[0]!r} and a spreadsheet would run it as a formula; "
            "rephrase it"
        )
    return None


def check_text_cell(value: str, where: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``where`` when ``value`` breaks the rule."""
    problem = text_cell_problem(value)
    if problem is not None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise error(f"{where}: {shown!r} {problem}")
