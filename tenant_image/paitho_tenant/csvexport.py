"""Writing CSV that is safe to open in a spreadsheet (OWASP "CSV Injection").

A spreadsheet treats a cell starting with `=`, `+`, `-` or `@` (and, in some programs, a tab or
carriage return before one) as a formula, so a lead named `=HYPERLINK(...)` or `@SUM(...)` would
run when the customer opens the export. Every such cell gets a leading `'`, which makes the
spreadsheet read it as text.

Decision on plain numbers: a cell that is exactly a decimal number (`-12`, `+4.5`, `-1e3`,
ASCII digits only) is left alone. Spreadsheets parse it as a number, it can never be a formula,
and prefixing it would turn negative amounts and `+4420...` phone numbers into text with a
stray quote. Anything more (`-1+1`, `+1 555 0100`, `-A1`) is neutralised.

`neutralise` is idempotent and the importer keeps a leading `'`, so an export re-imported and
exported again gains no second quote.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import TextIO

FORMULA_TRIGGERS = frozenset("=+-@\t\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def neutralise(cell: str) -> str:
    """The cell with a leading `'` if a spreadsheet could read it as a formula."""
    if cell and cell[0] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raise TypeError("write_csv takes text, not bytes: decode the value first")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def write_csv(fh: TextIO, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write `header` then `rows` as RFC 4180 CSV (minimal quoting, CRLF), every cell neutralised.

    `None` becomes an empty cell, dates and times ISO 8601, anything else `str()`. Open `fh` with
    `newline=""` so quoted line breaks survive. A row whose length differs from the header's is a
    caller bug and raises `ValueError` (naming the row's position, never its values).
    """
    writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow([neutralise(_text(name)) for name in header])
    width = len(header)
    for position, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"row {position} has {len(row)} cells but the header has {width}")
        writer.writerow([neutralise(_text(value)) for value in row])
