"""Untrusted strings (clip ids, labels, file names) on their way out: shown in a rich
terminal without being read as markup, and written to CSV without a spreadsheet running
them as formulas."""

from __future__ import annotations

from typing import Any

from rich.text import Text

#: first characters a spreadsheet reads as the start of a formula (OWASP's list, with tab and CR)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def plain(value: Any) -> Any:
    """`value` as a rich ``Text`` that prints literally (``[red]`` stays ``[red]``)."""
    return Text(str(value))


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: strings starting with = + - @ (or tab, CR)
    get a leading apostrophe.  Numbers are kept as they are (a negative number is no formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
