"""The lead CSV reader: encodings, delimiters, header mapping, row errors, streaming."""

from __future__ import annotations

import codecs
import io
import tracemalloc
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pytest
from paitho_tenant.csvimport import (
    AUTO_MAP,
    CANONICAL_FIELDS,
    MAX_CELL_CHARS,
    MAX_LINE_CHARS,
    SAMPLE_BYTES,
    CsvFormatError,
    LeadCsvReader,
    LeadRow,
    RowError,
    header_key,
    is_valid_email,
    normalise_email,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MARKER = "CANARY-7f3a"  # a value that must never reach an error message


def read_all(
    data: bytes, mapping: Mapping[str, str] | None = None
) -> tuple[LeadCsvReader, list[LeadRow | RowError]]:
    reader = LeadCsvReader(io.BytesIO(data), mapping)
    return reader, list(reader.rows())


def leads(items: list[LeadRow | RowError]) -> list[LeadRow]:
    return [item for item in items if isinstance(item, LeadRow)]


def errors(items: list[LeadRow | RowError]) -> list[RowError]:
    return [item for item in items if isinstance(item, RowError)]


def format_error(data: bytes, mapping: Mapping[str, str] | None = None) -> CsvFormatError:
    with pytest.raises(CsvFormatError) as caught:
        read_all(data, mapping)
    return caught.value


class GeneratedCsv(io.RawIOBase):
    """A CSV made on the fly as it is read, so the test itself holds no copy of the file."""

    def __init__(self, header: bytes, row: Callable[[int], bytes], count: int) -> None:
        super().__init__()
        self._pending = bytearray(header)
        self._row = row
        self._next = 1
        self._count = count
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        while len(self._pending) < len(view) and self._next <= self._count:
            self._pending += self._row(self._next)
            self._next += 1
        size = min(len(view), len(self._pending))
        view[:size] = self._pending[:size]
        del self._pending[:size]
        self.bytes_read += size
        return size


# --- encodings ---------------------------------------------------------------------------------

TEXT = "email,first_name,city\r\nzoe@example.com,Zoë,Köln\r\n"


def test_utf8_without_bom() -> None:
    """Plain UTF-8 is detected and non-ASCII letters come through intact."""
    reader, items = read_all(TEXT.encode("utf-8"))
    assert reader.encoding == "utf-8"
    assert leads(items)[0].fields == {
        "email": "zoe@example.com",
        "first_name": "Zoë",
        "city": "Köln",
    }


def test_utf8_with_bom() -> None:
    """A UTF-8 byte-order mark is consumed, not glued to the first header name."""
    reader, items = read_all(codecs.BOM_UTF8 + TEXT.encode("utf-8"))
    assert reader.encoding == "utf-8-sig"
    assert reader.header == ["email", "first_name", "city"]
    assert leads(items)[0].fields["first_name"] == "Zoë"


@pytest.mark.parametrize(
    ("bom", "codec"), [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]
)
def test_utf16_with_bom(bom: bytes, codec: str) -> None:
    """UTF-16 in either byte order (Excel's "Unicode text") is detected from its BOM."""
    reader, items = read_all(bom + TEXT.replace(",", "\t").encode(codec))
    assert reader.encoding == "utf-16"
    assert reader.delimiter == "\t"
    assert leads(items)[0].fields["city"] == "Köln"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom(codec: str) -> None:
    """UTF-16 without a BOM is recognised by its NUL high bytes instead of read as garbage."""
    reader, items = read_all(TEXT.encode(codec))
    assert reader.encoding == codec
    assert leads(items)[0].fields["first_name"] == "Zoë"


def test_utf32_with_bom() -> None:
    """A UTF-32 BOM is not mistaken for UTF-16 (its first two bytes are the same)."""
    reader, items = read_all(codecs.BOM_UTF32_LE + TEXT.encode("utf-32-le"))
    assert reader.encoding == "utf-32"
    assert leads(items)[0].fields["city"] == "Köln"


def test_windows_1252() -> None:
    """Bytes that are not UTF-8 are read as Windows-1252, including its € and curly quotes."""
    text = "email;last_name;notes\r\nm@example.com;Müller;Budget 5 000 € “urgent”\r\n"
    reader, items = read_all(text.encode("cp1252"))
    assert reader.encoding == "cp1252"
    assert leads(items)[0].fields["last_name"] == "Müller"
    assert leads(items)[0].fields["notes"] == "Budget 5 000 € “urgent”"


def test_utf8_split_in_the_sample_is_still_utf8() -> None:
    """A multi-byte character cut by the sample boundary does not demote the file to cp1252."""
    line = b"a@example.com,plain ascii notes\r\n"
    body = b"email,notes\r\n" + line * ((SAMPLE_BYTES - 200) // len(line)) + b"c@example.com,"
    body += b"y" * (SAMPLE_BYTES - 1 - len(body))
    data = body + "é\r\nb@example.com,Zoë\r\n".encode()
    assert data[SAMPLE_BYTES - 1 : SAMPLE_BYTES + 1] == "é".encode()
    reader, items = read_all(data)
    assert reader.encoding == "utf-8"
    assert errors(items) == []
    assert leads(items)[-2].fields["notes"].endswith("yé")
    assert leads(items)[-1].fields["notes"] == "Zoë"


def test_late_bytes_that_are_not_utf8_are_a_row_error_at_the_exact_cell() -> None:
    """Past an ASCII sample, a cp1252 byte gets a RowError naming its row and column, no value."""
    head = b"email,last_name\r\n"
    rows = [b"p%05d@example.com,Plain\r\n" % n for n in range(1, 4001)]
    assert len(head) + sum(map(len, rows)) > SAMPLE_BYTES
    late = "late@example.com,Müller".encode("cp1252") + b"\r\n"
    reader, items = read_all(head + b"".join(rows) + late + b"z@example.com,Zed\r\n")
    assert reader.encoding == "utf-8"
    [error] = errors(items)
    assert (error.row_number, error.column) == (4002, "last_name")
    assert "utf-8" in error.reason and "ller" not in error.reason
    assert len(leads(items)) == 4001


def test_bytes_in_no_supported_encoding_are_refused() -> None:
    """A file that is neither UTF-8 nor Windows-1252 (undefined 0x81, 0x8D) is a format error."""
    error = format_error(b"email,name\r\na@example.com,\x81\x8d\xff\xfe\x81\r\n")
    assert "UTF-8" in error.message


def test_broken_utf16_is_a_format_error() -> None:
    """An unpaired UTF-16 surrogate cannot be escaped, so the file is refused with a clear error."""
    data = codecs.BOM_UTF16_LE + "email\r\na@example.com\r\n".encode("utf-16-le") + b"\x00\xd8A\x00"
    with pytest.raises(CsvFormatError, match="not valid utf-16"):
        read_all(data)


# --- delimiters --------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(delimiter: str) -> None:
    """Each supported delimiter is detected from the sample and splits the cells."""
    text = "\r\n".join(
        delimiter.join(cells)
        for cells in [
            ("Email", "First Name", "Company"),
            ("a@example.com", "Ann", "Acme"),
            ("b@example.com", "Bob", "Beta"),
        ]
    )
    reader, items = read_all(text.encode())
    assert reader.delimiter == delimiter
    assert [lead.fields["company"] for lead in leads(items)] == ["Acme", "Beta"]


def test_semicolon_file_with_decimal_commas() -> None:
    """A European semicolon CSV whose values hold commas is not mistaken for comma-separated."""
    text = "email;notes;city\na@example.com;score 1,5;Paris\nb@example.com;2,75, high;Lyon\n"
    reader, items = read_all(text.encode())
    assert reader.delimiter == ";"
    assert leads(items)[1].fields["notes"] == "2,75, high"


def test_comma_file_with_semicolons_in_values() -> None:
    """A comma CSV whose notes hold semicolons stays comma-separated."""
    text = "email,notes,city\na@example.com,a; b; c,Paris\nb@example.com,x;y,Lyon\n"
    reader, items = read_all(text.encode())
    assert reader.delimiter == ","
    assert leads(items)[0].fields["notes"] == "a; b; c"


def test_excel_sep_line_names_the_delimiter_and_is_not_a_row() -> None:
    """Excel's `sep=;` first line sets the delimiter, is skipped, and does not shift row numbers."""
    text = "\ufeffsep=;\r\nEmail;Notes\r\na@example.com;x,y,z,w\r\nbad;q\r\n"
    reader, items = read_all(text.encode())
    assert (reader.delimiter, reader.header) == (";", ["Email", "Notes"])
    assert leads(items)[0].fields["notes"] == "x,y,z,w"
    assert errors(items) == [RowError(3, "Email", "the email address is not valid")]


@pytest.mark.parametrize("newline", ["\n", "\r", "\r\n"])
def test_line_endings(newline: str) -> None:
    """LF, old-Mac CR and Windows CRLF line endings all split rows the same way."""
    text = newline.join(["email,first_name", "a@example.com,Ann", "", "b@example.com,Bob", ""])
    _, items = read_all(text.encode())
    assert [(lead.row_number, lead.fields["first_name"]) for lead in leads(items)] == [
        (2, "Ann"),
        (4, "Bob"),
    ]


def test_single_column_file() -> None:
    """A file with only an email column is read (no delimiter to find)."""
    reader, items = read_all(b"email\nA@Example.com\nb@example.com\n")
    assert reader.header == ["email"]
    assert [lead.email for lead in leads(items)] == ["a@example.com", "b@example.com"]


# --- quoting, blank lines, cells -----------------------------------------------------------------


def test_quoted_newlines_delimiters_and_quotes() -> None:
    """Quoted cells keep delimiters, doubled quotes and line breaks, and count as one row."""
    text = (
        'email,company,notes\r\n"a@example.com","Acme, Inc.","line one\r\nline two\nthree"\r\n'
        'b@example.com,"The ""Best"" Co",x\r\n'
    )
    _, items = read_all(text.encode())
    first, second = leads(items)
    assert first.fields["company"] == "Acme, Inc."
    assert first.fields["notes"] == "line one\r\nline two\nthree"
    assert second.fields["company"] == 'The "Best" Co'
    assert (first.row_number, second.row_number) == (2, 3)


def test_blank_lines_are_skipped_but_counted() -> None:
    """Blank and all-empty rows yield nothing, yet row numbers match the spreadsheet's."""
    text = "\n\nemail,first_name\n\na@example.com,Ann\n,\n   ,  \nb@example.com,Bob\n\n"
    _, items = read_all(text.encode())
    assert [(item.row_number, item.email) for item in leads(items)] == [
        (5, "a@example.com"),
        (8, "b@example.com"),
    ]
    assert errors(items) == []


def test_cells_are_stripped() -> None:
    """Surrounding spaces, tabs and no-break spaces are removed from every cell."""
    _, items = read_all("email,first_name\n  a@example.com \t,\u00a0 Ann  \n".encode())
    assert leads(items)[0].fields == {"email": "a@example.com", "first_name": "Ann"}


def test_empty_cells_are_left_out_of_fields() -> None:
    """Only non-empty mapped values appear in `fields`."""
    _, items = read_all(b"email,first_name,company,Tag\na@example.com,,  ,\n")
    assert leads(items)[0].fields == {"email": "a@example.com"}


def test_nul_in_a_cell_is_a_row_error() -> None:
    """A NUL character (PostgreSQL text cannot hold one) rejects the row, naming the column."""
    _, items = read_all(b"email,notes\na@example.com,ab\x00cd\nb@example.com,ok\n")
    assert errors(items) == [RowError(2, "notes", "the value contains a NUL character")]
    assert [lead.email for lead in leads(items)] == ["b@example.com"]


# --- header --------------------------------------------------------------------------------------


def test_header_whitespace_quotes_bom_and_case() -> None:
    """Header names are cleaned of spaces, stray quotes and BOMs, and matched in any case."""
    text = '\ufeff"  EMAIL ", \'First Name\' ," \ufeffSURNAME"\na@example.com,Ann,Lee\n'
    reader, items = read_all(text.encode())
    assert reader.header == ["EMAIL", "First Name", "SURNAME"]
    assert reader.column_map == {
        "EMAIL": "email",
        "First Name": "first_name",
        "SURNAME": "last_name",
    }
    assert leads(items)[0].fields["last_name"] == "Lee"


def test_header_after_blank_lines_sets_row_numbers() -> None:
    """The first non-blank row is the header; data rows are numbered from it."""
    reader, items = read_all(b"\n  \nemail\nbad\n")
    assert reader.header == ["email"]
    assert errors(items) == [RowError(4, "email", "the email address is not valid")]


def test_blank_and_repeated_header_names() -> None:
    """Blank names become `column N`; repeats get a suffix and go to custom fields."""
    reader, items = read_all(b"Email,,email,Tag,TAG\na@example.com,x,b@example.com,t1,t2\n")
    assert reader.header == ["Email", "column 2", "email (2)", "Tag", "TAG (2)"]
    assert leads(items)[0].fields == {
        "email": "a@example.com",
        "custom:column 2": "x",
        "custom:email (2)": "b@example.com",
        "custom:Tag": "t1",
        "custom:TAG (2)": "t2",
    }


def test_empty_file() -> None:
    """An empty (or BOM-only, or whitespace-only) file is refused as empty."""
    for data in (b"", codecs.BOM_UTF8, b"  \r\n\r\n"):
        assert "empty" in format_error(data).message


def test_no_header_row_when_every_record_is_blank() -> None:
    """A file of blank records has no header."""
    assert "no header row" in format_error(b",,\n  \n\t,\n\n").message


def test_headerless_file_is_refused_without_echoing_data() -> None:
    """A first row holding an address means no header; the message does not repeat the row."""
    error = format_error(f"{MARKER}@example.com,{MARKER}\nb@example.com,x\n".encode())
    assert "no header" in error.message
    assert MARKER not in error.message


def test_no_email_column_does_not_list_header_names() -> None:
    """Without an email column the file is refused, and the header (maybe data) is not echoed."""
    error = format_error(f"name,{MARKER}\nAnn,x\n".encode())
    assert "no email column" in error.message
    assert MARKER not in error.message


# --- auto-mapping --------------------------------------------------------------------------------

AUTO_MAPPED = [
    ("E-mail", "email"),
    ("Email", "email"),
    ("Email Address", "email"),
    ("email_address", "email"),
    ("Work Email", "email"),
    ("EMAIL-ADDRESS", "email"),
    ("First Name", "first_name"),
    ("first_name", "first_name"),
    ("FirstName", "first_name"),
    ("Given name", "first_name"),
    ("Surname", "last_name"),
    ("Last name", "last_name"),
    ("last-name", "last_name"),
    ("Company", "company"),
    ("Company Name", "company"),
    ("Organisation", "company"),
    ("Organization", "company"),
    ("Job Title", "title"),
    ("Title", "title"),
    ("Phone", "phone"),
    ("Phone Number", "phone"),
    ("Mobile", "phone"),
    ("Website", "website"),
    ("URL", "website"),
    ("LinkedIn", "linkedin_url"),
    ("LinkedIn URL", "linkedin_url"),
    ("linkedin_url", "linkedin_url"),
    ("City", "city"),
    ("Country", "country"),
    ("Time zone", "timezone"),
    ("Timezone", "timezone"),
    ("TZ", "timezone"),
    ("Notes", "notes"),
]


@pytest.mark.parametrize(("name", "field"), AUTO_MAPPED)
def test_auto_mapping_table(name: str, field: str) -> None:
    """Common column names map to their canonical field, whatever their case and punctuation."""
    assert AUTO_MAP[header_key(name)] == field
    if field == "email":
        text, value = f"{name}\na@example.com\n", "a@example.com"
    else:
        text, value = f"email,{name}\na@example.com,v\n", "v"
    reader, items = read_all(text.encode())
    assert reader.column_map[name] == field
    assert leads(items)[0].fields[field] == value


def test_every_canonical_field_maps_to_itself() -> None:
    """Each canonical field name is in the auto-mapping table."""
    assert all(AUTO_MAP[header_key(field)] == field for field in CANONICAL_FIELDS)


def test_header_key_removes_case_spaces_and_punctuation() -> None:
    """`header_key` folds case and drops everything but letters and digits."""
    assert header_key(" E-Mail_Address: ") == "emailaddress"
    assert header_key("Ｅｍａｉｌ") == "email"


def test_unmapped_columns_become_custom_fields() -> None:
    """A column with no canonical field is kept under `custom:<its name>`."""
    reader, items = read_all(b"email,Lead Source,Deal Size\na@example.com,Webinar,10k\n")
    assert reader.column_map["Lead Source"] == "custom:Lead Source"
    assert leads(items)[0].fields["custom:Deal Size"] == "10k"


def test_first_column_wins_a_field() -> None:
    """When two columns auto-map to one field, the first takes it and the second is custom."""
    reader, items = read_all(b"Email,Work Email\na@example.com,b@example.com\n")
    assert reader.column_map == {"Email": "email", "Work Email": "custom:Work Email"}
    assert leads(items)[0].email == "a@example.com"


# --- override mapping ----------------------------------------------------------------------------


def test_mapping_names_the_email_column() -> None:
    """A mapping can point the email field at a column auto-mapping would not recognise."""
    reader, items = read_all(b"Contact,Name\na@example.com,Ann\n", {"Contact": "email"})
    assert reader.column_map == {"Contact": "email", "Name": "custom:Name"}
    assert leads(items)[0].email == "a@example.com"


def test_mapping_overrides_and_demotes_the_auto_mapped_column() -> None:
    """Mapping a column to a field takes it from the column auto-mapping gave it to."""
    reader, items = read_all(
        b"Email,Work Email\na@example.com,w@example.com\n", {"Work Email": "email"}
    )
    assert reader.column_map == {"Email": "custom:Email", "Work Email": "email"}
    assert leads(items)[0].email == "w@example.com"


def test_mapping_keys_match_header_loosely() -> None:
    """A mapping key matches a header name in another case or punctuation."""
    reader, _ = read_all(b"E-Mail Contact,x\na@example.com,1\n", {"e-mail contact": "email"})
    assert reader.column_map["E-Mail Contact"] == "email"


def test_mapping_to_a_custom_name() -> None:
    """A mapping may rename a column into a custom field."""
    _, items = read_all(b"email,Src\na@example.com,web\n", {"Src": "custom:source"})
    assert leads(items)[0].fields["custom:source"] == "web"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"Missing": "email"}, "does not have"),
        ({"Contact": "favourite_colour"}, "not a lead field"),
        ({"Contact": "custom:"}, "not a lead field"),
        ({"Contact": "email", "Name": "email"}, "two columns"),
    ],
)
def test_bad_mappings_are_refused(mapping: dict[str, str], message: str) -> None:
    """A mapping naming an absent header, an unknown field, or one field twice is refused."""
    assert message in format_error(b"Contact,Name\na@example.com,Ann\n", mapping).message


# --- row errors ----------------------------------------------------------------------------------


def test_missing_and_invalid_email() -> None:
    """A row without an email, or with a malformed one, is a RowError on the email column."""
    text = "First Name,E-mail\nAnn,\nBob,not-an-address\nCy,cy@example.com\nDi,a..b@example.com\n"
    _, items = read_all(text.encode())
    assert errors(items) == [
        RowError(2, "E-mail", "the email address is missing"),
        RowError(3, "E-mail", "the email address is not valid"),
        RowError(5, "E-mail", "the email address is not valid"),
    ]
    assert [lead.row_number for lead in leads(items)] == [4]


def test_too_few_and_too_many_columns() -> None:
    """Short and long rows are RowErrors naming the first missing or extra column."""
    text = "email,first_name,last_name\na@example.com,Ann\nb@example.com,Bob,Lee,extra\n"
    _, items = read_all(text.encode())
    assert [(e.row_number, e.column) for e in errors(items)] == [(2, "last_name"), (3, "column 4")]
    assert "2 cells" in errors(items)[0].reason
    assert "4 cells" in errors(items)[1].reason


def test_trailing_empty_cells_are_tolerated() -> None:
    """Extra cells that are empty (as spreadsheets write) are not an error."""
    _, items = read_all(b"email,first_name\na@example.com,Ann,,\n")
    assert leads(items)[0].fields == {"email": "a@example.com", "first_name": "Ann"}


def test_field_length_cap() -> None:
    """A cell of MAX_CELL_CHARS passes; one more character is a RowError on that column."""
    ok = "x" * MAX_CELL_CHARS
    text = f"email,notes\na@example.com,{ok}\nb@example.com,{ok}y\n"
    _, items = read_all(text.encode())
    assert leads(items)[0].fields["notes"] == ok
    assert errors(items) == [RowError(3, "notes", "the value is longer than 10000 characters")]


def test_every_error_of_a_row_is_reported() -> None:
    """A row with several bad cells yields one RowError per cell and no LeadRow."""
    _, items = read_all(f"email,notes\n{MARKER},{'n' * (MAX_CELL_CHARS + 1)}\n".encode())
    assert leads(items) == []
    assert [(e.column, e.reason) for e in errors(items)] == [
        ("notes", "the value is longer than 10000 characters"),
        ("email", "the email address is not valid"),
    ]


def test_ragged_majority_in_sample_is_a_format_error() -> None:
    """When most rows disagree with the header the whole file is refused at construction."""
    text = "email,first_name,last_name\n" + "a@example.com;Ann;Lee\n" * 12
    assert "More than half" in format_error(text.encode()).message


def test_ragged_majority_later_in_the_stream_is_a_format_error() -> None:
    """Ragged rows becoming the majority after the sample stop the stream with a format error."""
    good = b"".join(b"good%05d@example.com,Ann\n" % n for n in range(4000))
    assert len(good) > SAMPLE_BYTES
    bad = b"".join(b"bad%05d@example.com,Ann,Lee,Extra\n" % n for n in range(4001))
    reader = LeadCsvReader(io.BytesIO(b"email,first_name\n" + good + bad))
    items: list[LeadRow | RowError] = []
    with pytest.raises(CsvFormatError, match="More than half of the first 8001 rows"):
        items.extend(reader.rows())
    assert (len(leads(items)), len(errors(items))) == (4000, 4000)


def test_a_few_ragged_rows_are_only_row_errors() -> None:
    """A minority of ragged rows among many good ones stays per-row."""
    good = b"".join(b"g%d@example.com,Ann\n" % n for n in range(30))
    _, items = read_all(b"email,first_name\n" + good + b"x@example.com\n" * 5)
    assert len(leads(items)) == 30
    assert len(errors(items)) == 5


def test_unclosed_quote_is_a_format_error() -> None:
    """A quote never closed swallows the file until the csv field limit: a clear format error."""
    data = b'email,notes\na@example.com,"unclosed\n' + b"b@example.com,fine\n" * 10_000
    reader = LeadCsvReader(io.BytesIO(data))
    with pytest.raises(CsvFormatError, match="never closed"):
        list(reader.rows())


def test_overlong_line_is_a_format_error() -> None:
    """A physical line over MAX_LINE_CHARS stops the read instead of filling memory."""
    data = b"email,notes\n" + b"a@example.com," + b"x" * MAX_LINE_CHARS + b"\n"
    with pytest.raises(CsvFormatError, match="longer than"):
        read_all(data)


def test_no_error_carries_a_cell_value() -> None:
    """Every RowError and CsvFormatError is free of the values in the file (canary)."""
    text = (
        f"email,first_name,last_name\n{MARKER},{MARKER},{MARKER}\n,{MARKER},{MARKER}\n"
        f"{MARKER}@example.com,{MARKER}\n{MARKER}@example.com,{MARKER},{MARKER},{MARKER}\n"
        f"{MARKER}@example.com,{MARKER}\x00,{MARKER * 1000}\n"
    )
    items = read_all(text.encode())[1]
    assert len(errors(items)) == 6
    assert all(MARKER not in repr(error) for error in errors(items))
    messages = [
        format_error(f"email,a,b\n{MARKER};{MARKER};x\n{MARKER}\n".encode() * 12),
        format_error(f"email\n{MARKER}".encode() + b"\x81\x8d\xff"),
        format_error(f"{MARKER},x\n{MARKER},y\n".encode()),
    ]
    assert all(MARKER not in str(error) for error in messages)


# --- email ---------------------------------------------------------------------------------------


def test_normalise_email_strips_nfc_and_lowercases() -> None:
    """Surrounding space goes, accents are composed, the whole address is lower-cased."""
    assert normalise_email("  Jane.DOE@Example.COM \t") == "jane.doe@example.com"
    assert normalise_email("Jose\u0301@Example.com") == "jos\u00e9@example.com"
    assert normalise_email("STRASSE.ß@X.DE") == "strasse.ß@x.de"
    assert normalise_email("not an address") == "not an address"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("a@example.com", True),
        ("first.last+tag@sub.example.co.uk", True),
        ("josé@bücher.de", True),
        ("a@no-such-domain-paitho-test.com", True),  # no DNS lookup is made
        ("", False),
        ("plain", False),
        ("a@b", False),
        ("a@@example.com", False),
        ("a..b@example.com", False),
        ("a b@example.com", False),
        ("Ann <a@example.com>", False),
        ("a@localhost", False),
        ("x" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 60 + ".com", False),
        ("a@example.test", False),
    ],
)
def test_is_valid_email(value: str, valid: bool) -> None:
    """Syntax validation accepts real-world and international addresses, rejects malformed ones."""
    assert is_valid_email(value) is valid


def test_lead_email_is_normalised() -> None:
    """LeadRow.email and fields["email"] hold the normalised address."""
    _, items = read_all(b"email\n  Ann@Example.COM \n")
    assert leads(items)[0].email == "ann@example.com"
    assert leads(items)[0].fields["email"] == "ann@example.com"


# --- reader behaviour, streaming -----------------------------------------------------------------


def test_rows_can_be_read_once() -> None:
    """A second call to rows() is a programming error, not an empty result."""
    reader, _ = read_all(b"email\na@example.com\n")
    with pytest.raises(RuntimeError):
        next(reader.rows())


def test_construction_reads_only_the_sample() -> None:
    """Encoding, delimiter, header and mapping are ready after reading one bounded sample."""
    raw = GeneratedCsv(b"email;city\n", lambda n: b"u%d@example.com;Paris\n" % n, 100_000)
    reader = LeadCsvReader(io.BufferedReader(raw))
    assert (reader.encoding, reader.delimiter) == ("utf-8", ";")
    assert reader.column_map == {"email": "email", "city": "city"}
    assert raw.bytes_read <= SAMPLE_BYTES + io.DEFAULT_BUFFER_SIZE


def test_100k_rows_stream_in_bounded_memory() -> None:
    """100,000 rows (a ~24 MB file) stream through with a traced peak under 20 MB."""
    notes = "n" * 180

    def row(n: int) -> bytes:
        return f"user{n}@example.com,First{n},Last{n},Company {n},{notes}\r\n".encode()

    raw = GeneratedCsv(b"Email,First Name,Last Name,Company,Notes\r\n", row, 100_000)
    tracemalloc.start()
    try:
        reader = LeadCsvReader(io.BufferedReader(raw))
        count = 0
        last = None
        for item in reader.rows():
            assert isinstance(item, LeadRow)
            count += 1
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert raw.bytes_read > 23_000_000
    assert last is not None and last.row_number == 100_001
    assert peak < 20 * 1024 * 1024, f"peak {peak} bytes"
