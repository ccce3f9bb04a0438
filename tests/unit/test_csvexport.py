"""CSV export: formula neutralisation (OWASP CSV injection), cell formatting, round trip."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from paitho_tenant.csvexport import neutralise, write_csv
from paitho_tenant.csvimport import LeadCsvReader, LeadRow


def written(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO(newline="")
    write_csv(out, header, rows)
    return out.getvalue()


@pytest.mark.parametrize(
    "cell",
    [
        "=1+1",
        '=HYPERLINK("http://evil.example","click")',
        "+1 555 0100",
        "+A1",
        "-A1",
        "-1+1",
        "-",
        "+",
        "@SUM(A1:A2)",
        "\t=1+1",
        "\r=1+1",
        "\tplain",
        "=",
        "-12 ",
        "-١٢",
    ],
)
def test_formula_cells_are_neutralised(cell: str) -> None:
    """A cell starting with = + - @ tab or CR gets a leading apostrophe."""
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["-12", "+4.5", "-0.25", "-.5", "+12.", "-1e3", "+2E-4", "-0"])
def test_plain_signed_numbers_are_left_alone(cell: str) -> None:
    """A cell that is exactly a signed decimal number is not a formula and keeps its sign."""
    assert neutralise(cell) == cell


@pytest.mark.parametrize(
    "cell", ["", "Jane", "a=b", "1+1", " =1+1", "'=1+1", "jane@example.com", "\n=1", "12"]
)
def test_harmless_cells_are_unchanged(cell: str) -> None:
    """Cells not starting with a trigger character are written as they are."""
    assert neutralise(cell) == cell


@pytest.mark.parametrize("cell", ["=1+1", "-A1", "'=x", "@x", "-5", "plain"])
def test_neutralise_is_idempotent(cell: str) -> None:
    """Neutralising twice adds no second apostrophe."""
    assert neutralise(neutralise(cell)) == neutralise(cell)


def test_write_csv_neutralises_every_cell_header_included() -> None:
    """Header and body cells are all neutralised when written."""
    text = written(["=name", "email"], [["=cmd|' /C calc'!A0", "@a.example"], ["-5", "-x"]])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["'=name", "email"],
        ["'=cmd|' /C calc'!A0", "'@a.example"],
        ["-5", "'-x"],
    ]


def test_write_csv_minimal_quoting_and_crlf() -> None:
    """Only cells that need it are quoted; lines end in CRLF; embedded newlines survive."""
    text = written(["a", "b", "c"], [["plain", "x, y", 'say "hi"'], ["two\nlines", "", "z"]])
    assert text == 'a,b,c\r\nplain,"x, y","say ""hi"""\r\n"two\nlines",,z\r\n'


def test_write_csv_formats_values() -> None:
    """None is empty, numbers use str(), dates and times ISO 8601."""
    when = dt.datetime(2026, 12, 4, 15, 30, tzinfo=dt.UTC)
    row: list[object] = [None, 42, -3, Decimal("1.50"), True, dt.date(2026, 1, 2), when]
    text = written(["a", "b", "c", "d", "e", "f", "g"], [row])
    assert text.splitlines()[1] == ",42,-3,1.50,True,2026-01-02,2026-12-04T15:30:00+00:00"


def test_write_csv_number_objects_are_neutralised_too() -> None:
    """A non-string value is neutralised after str(), so an object cannot smuggle a formula."""

    class Sneaky:
        def __str__(self) -> str:
            return "=1+1"

    assert written(["a"], [[Sneaky()]]).splitlines()[1] == "'=1+1"


def test_write_csv_refuses_bytes() -> None:
    """Bytes are a caller bug, not text to print as b'...'."""
    with pytest.raises(TypeError, match="not bytes"):
        written(["a"], [[b"secret"]])


def test_write_csv_refuses_ragged_rows_without_echoing_values() -> None:
    """A row of the wrong length raises ValueError naming its position only."""
    with pytest.raises(ValueError, match="row 2 has 1 cells") as caught:
        written(["a", "b"], [["x", "y"], ["CANARY-7f3a"]])
    assert "CANARY" not in str(caught.value)


def test_round_trip_through_the_importer() -> None:
    """Leads written by write_csv read back with the same values; formulas keep their quote."""
    header = ["email", "first_name", "last_name", "company", "notes", "phone"]
    rows: list[list[object]] = [
        ["ann@example.com", "Ann", "O'Brien", "Acme, Inc.", 'said "yes"\nthen left', "-5"],
        ["zoe@example.com", "Zoë", "Łukasiewicz", "Ünïcødé GmbH", "naïve; café | tab\tin", None],
        ["eve@example.com", "=HYPERLINK(1)", "@evil", "+cmd", "-A1", "+44 20 7946 0000"],
    ]
    data = written(header, rows).encode("utf-8")
    reader = LeadCsvReader(io.BytesIO(data))
    assert reader.delimiter == ","
    items = list(reader.rows())
    assert all(isinstance(item, LeadRow) for item in items)
    fields = [item.fields for item in items if isinstance(item, LeadRow)]
    assert fields[0] == dict(zip(header, rows[0], strict=True))
    assert fields[1] == {k: v for k, v in zip(header, rows[1], strict=True) if v is not None}
    assert fields[2] == {
        "email": "eve@example.com",
        "first_name": "'=HYPERLINK(1)",
        "last_name": "'@evil",
        "company": "'+cmd",
        "notes": "'-A1",
        "phone": "'+44 20 7946 0000",
    }


def test_round_trip_is_stable() -> None:
    """Exporting what was re-imported from an export gives the same bytes: no quote creep."""
    header = ["email", "notes"]
    first = written(header, [["a@example.com", "=1+1"]])
    items = list(LeadCsvReader(io.BytesIO(first.encode())).rows())
    again: list[list[object]] = [
        [item.email, item.fields["notes"]] for item in items if isinstance(item, LeadRow)
    ]
    assert written(header, again) == first
