"""Reading a customer's lead CSV the way people actually make them.

Detection reads only a bounded sample (`SAMPLE_BYTES`) and then the file is streamed, one
record at a time, so memory stays flat for any number of rows:

- **Encoding**: a byte-order mark wins (UTF-8, UTF-16 LE/BE, UTF-32); else UTF-16 without a
  mark when every other byte of the sample is NUL; else the sample is decoded as strict UTF-8;
  else as Windows-1252; else the file is refused. Bytes later in the file that do not fit the
  detected encoding are not guessed at: the row holding them gets a `RowError` naming its row
  and column (they are decoded with `surrogateescape`, so they can be found exactly).
- **Delimiter**: `,` `;` tab `|`, whichever parses the sample into the most consistent table,
  unless the first line is Excel's `sep=<delimiter>` hint, which is obeyed and skipped.
- **Header**: the first non-blank record. Names are cleaned of surrounding whitespace, BOMs and
  quotes; blank names become `column N`, repeats get ` (2)`, ` (3)`...; auto-mapping compares
  names with case, punctuation and spaces removed (`_ALIASES`).
- **Row numbers** are 1-based spreadsheet rows: every CSV record counts, blank ones included, and
  a quoted cell spanning several lines is still one row. With no blank lines before it the
  header is row 1 and the first lead row 2, as a person sees the file in a spreadsheet.

Errors never carry a cell value (the canary test scans error output for plaintext):

    ValueError
    └── CsvFormatError (HTTP 400)   the whole file is unusable; the message says what to do
    RowError (a value, not raised)  one row is unusable: row number, column name, reason
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import email_validator

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)

CANONICAL_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "website",
    "linkedin_url",
    "city",
    "country",
    "timezone",
    "notes",
)
CUSTOM_PREFIX = "custom:"
SAMPLE_BYTES = 64 * 1024
MAX_CELL_CHARS = 10_000
MAX_LINE_CHARS = 1_000_000
DELIMITERS = (",", ";", "\t", "|")
# Ragged rows are per-row errors until, after at least this many rows, they are the majority:
# then the delimiter or the header is wrong and the whole file is refused.
RAGGED_MIN_ROWS = 10

_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# Canonical field -> other names people give its column, "|"-separated; each field's own name
# also maps to it. Compared through `header_key`, so case, spaces and punctuation do not matter.
_ALIASES: dict[str, str] = {
    "email": "E-mail|Email Address|E-mail Address|Mail|Work Email|Business Email|Contact Email"
    "|Primary Email",
    "first_name": "First Name|FirstName|Given Name|Forename|First",
    "last_name": "Last Name|LastName|Surname|Family Name|Last",
    "company": "Company|Company Name|Organisation|Organization|Organisation Name"
    "|Organization Name|Account Name|Employer",
    "title": "Title|Job Title|Position|Role|Job Role",
    "phone": "Phone|Phone Number|Mobile|Mobile Phone|Mobile Number|Telephone|Tel|Cell|Work Phone"
    "|Direct Phone",
    "website": "Website|Web Site|URL|Web|Homepage|Company Website|Company URL|Website URL",
    "linkedin_url": "LinkedIn|LinkedIn URL|LinkedIn Profile|LinkedIn Profile URL"
    "|Person LinkedIn URL",
    "city": "City|Town",
    "country": "Country|Country Name",
    "timezone": "Time zone|Timezone|TZ",
    "notes": "Notes|Note|Comments|Comment|Remarks",
}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_SEP_LINE = re.compile(r"sep=([,;\t|])[ \t]*(?:\r\n|\r|\n|$)", re.IGNORECASE)
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_RESAVE = "save it from your spreadsheet as 'CSV UTF-8' and upload it again"


class CsvFormatError(ValueError):
    """The file as a whole cannot be imported. The message names the problem and the fix."""

    status = 400
    code = "import_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class LeadRow:
    row_number: int
    email: str
    fields: dict[str, str]


@dataclass(frozen=True)
class RowError:
    row_number: int
    column: str
    reason: str


def header_key(name: str) -> str:
    """What auto-mapping compares: case, punctuation and spaces removed ("E-mail" -> "email")."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


AUTO_MAP: dict[str, str] = {
    header_key(alias): field
    for field, aliases in _ALIASES.items()
    for alias in (field, *aliases.split("|"))
}


def normalise_email(value: str) -> str:
    """The one form an address is stored, deduplicated and blind-indexed in.

    The whole address is lower-cased, local part included. RFC 5321 lets a server treat the local
    part as case-sensitive, but no mainstream mailbox provider does, and people type addresses in
    any case; without one canonical form "Jane@X.com" and "jane@x.com" would become two leads and
    be contacted twice. The cost, merging two mailboxes that differ only by case on an unusual
    server, errs towards contacting fewer people, never more. `lower()`, not `casefold()`, so no
    character is rewritten into another ("ß" stays "ß"). NFC makes composed and decomposed accents
    equal. Nothing is rejected here: validity is `is_valid_email`'s job.
    """
    return unicodedata.normalize("NFC", value.strip()).lower()


def is_valid_email(value: str) -> bool:
    """Syntax only (no DNS: deliverability checks are off), internationalised addresses allowed."""
    if not value:
        return False
    try:
        email_validator.validate_email(value, check_deliverability=False)
    except ValueError:  # EmailNotValidError, and any codec error on odd input: not valid either
        return False
    return True


class _Rejoined(io.RawIOBase):
    """The bytes already read for detection, then the rest of the caller's stream."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._tail.read(len(view)) or b""
        view[: len(data)] = data
        return len(data)


def _read_sample(stream: BinaryIO) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < SAMPLE_BYTES:
        chunk = stream.read(SAMPLE_BYTES - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _decodes(sample: bytes, encoding: str, final: bool) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)("strict").decode(sample, final=final)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(sample: bytes, at_eof: bool) -> str:
    """The codec name for a file that starts with `sample` (see the module docstring)."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    even, odd = sample[0::2], sample[1::2]
    if len(sample) >= 4:
        if odd.count(0) * 2 > len(odd) and even.count(0) * 10 < len(even):
            return "utf-16-le"
        if even.count(0) * 2 > len(even) and odd.count(0) * 10 < len(odd):
            return "utf-16-be"
    if _decodes(sample, "utf-8", at_eof):
        return "utf-8"
    if _decodes(sample, "cp1252", at_eof):
        return "cp1252"
    raise CsvFormatError("The file is not text in UTF-8, UTF-16 or Windows-1252; " + _RESAVE + ".")


def _is_blank(record: list[str]) -> bool:
    return all(not cell.strip() for cell in record)


def _fit(record: list[str], width: int) -> list[str] | None:
    """The record cut to the header's width if only empty cells stick out, or None if ragged."""
    if len(record) == width:
        return record
    if len(record) > width and _is_blank(record[width:]):
        return record[:width]
    return None


def _sniff_delimiter(
    text: str, truncated: bool, candidates: tuple[str, ...] = DELIMITERS
) -> tuple[str, int, int]:
    """(delimiter, data rows in the sample, ragged rows among them) for the best delimiter."""
    best: tuple[tuple[bool, float, int], str, int, int] | None = None
    for delimiter in candidates:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            records = [record for record in reader if not _is_blank(record)]
        except csv.Error:
            continue
        if truncated and len(records) > 1:
            records.pop()  # the sample may have cut the last record short
        if not records:
            return delimiter, 0, 0  # the sample is blank rows of this delimiter: ",,,"
        width = len(records[0])
        data = records[1:]
        ragged = sum(1 for record in data if _fit(record, width) is None)
        ratio = 1.0 - ragged / len(data) if data else 1.0
        score = (width > 1, ratio, width)
        if best is None or score > best[0]:
            best = (score, delimiter, len(data), ragged)
    if best is None:
        return candidates[0], 0, 0
    return best[1], best[2], best[3]


def _ragged_beyond_tolerance(seen: int, ragged: int) -> bool:
    return seen >= RAGGED_MIN_ROWS and ragged * 2 > seen


def _ragged_message(seen: int, width: int) -> str:
    return (
        f"More than half of the first {seen} rows do not have the header's {width} columns. "
        "Check that the first row is the header and that every value containing the delimiter "
        "is quoted, then upload the file again."
    )


def _clean_header_name(cell: str) -> str:
    name = cell.replace("\ufeff", "").replace("\x00", "").strip().strip("\"'").strip()
    return _ESCAPED_BYTE.sub("\ufffd", name)


def _unique_header(record: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for position, cell in enumerate(record, start=1):
        base = _clean_header_name(cell) or f"column {position}"
        name, copy = base, 1
        while name.casefold() in seen:
            copy += 1
            name = f"{base} ({copy})"
        seen.add(name.casefold())
        names.append(name)
    return names


def _find_header(header: list[str], wanted: str) -> str | None:
    if wanted in header:
        return wanted
    key = header_key(wanted)
    return next((name for name in header if key and header_key(name) == key), None)


def _build_column_map(header: list[str], mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Each header name -> the key its values go under: a canonical field or "custom:<name>"."""
    chosen: dict[str, str] = {}
    for wanted, field in (mapping or {}).items():
        name = _find_header(header, wanted)
        if name is None:
            raise CsvFormatError(
                f"The mapping names a column {wanted!r} that the file's header does not have. "
                "Use the column names exactly as they appear in the first row."
            )
        custom = field.startswith(CUSTOM_PREFIX) and len(field) > len(CUSTOM_PREFIX)
        if field not in CANONICAL_FIELDS and not custom:
            raise CsvFormatError(
                f"The mapping sends a column to {field!r}, which is not a lead field. "
                f"Use one of: {', '.join(CANONICAL_FIELDS)}, or 'custom:<name>'."
            )
        if field in chosen.values():
            raise CsvFormatError(
                f"The mapping sends two columns to {field!r}; map each field from one column."
            )
        chosen[name] = field
    taken = set(chosen.values())
    column_map: dict[str, str] = {}
    for name in header:
        if name in chosen:
            column_map[name] = chosen[name]
            continue
        auto = AUTO_MAP.get(header_key(name))
        if auto is None or auto in taken:
            column_map[name] = CUSTOM_PREFIX + name
        else:
            column_map[name] = auto
            taken.add(auto)
    return column_map


class LeadCsvReader:
    """A lead CSV: detection at construction, then `rows()` streams `LeadRow`s and `RowError`s.

    `mapping` (CSV header -> canonical field, or "custom:<name>") overrides auto-mapping; a
    column it takes a field from falls back to "custom:<its name>". Raises `CsvFormatError` for
    whole-file problems, at construction or, for ones only visible later, from `rows()`.
    """

    def __init__(self, stream: BinaryIO, mapping: Mapping[str, str] | None = None) -> None:
        sample = _read_sample(stream)
        if not sample.strip(b" \t\r\n\x00" + codecs.BOM_UTF8 + codecs.BOM_UTF16_LE):
            raise CsvFormatError("The file is empty; export the leads again and upload it.")
        at_eof = len(sample) < SAMPLE_BYTES
        self.encoding = detect_encoding(sample, at_eof)
        text = codecs.getincrementaldecoder(self.encoding)("replace").decode(sample, at_eof)
        # Excel's "sep=;" first line names the delimiter; Excel hides it, so it is not a row.
        sep_line = _SEP_LINE.match(text)
        if sep_line:
            self.delimiter, sample_rows, sample_ragged = _sniff_delimiter(
                text[sep_line.end() :], not at_eof, (sep_line.group(1),)
            )
        else:
            self.delimiter, sample_rows, sample_ragged = _sniff_delimiter(text, not at_eof)
        self._skip_sep_line = sep_line is not None
        self._text = io.TextIOWrapper(
            io.BufferedReader(_Rejoined(sample, stream)),
            encoding=self.encoding,
            errors="surrogateescape",
            newline="",
        )
        self._records = csv.reader(self._lines(), delimiter=self.delimiter, strict=False)
        self._row_number = 0
        self._consumed = False
        self.header = _unique_header(self._read_header())
        if _ragged_beyond_tolerance(sample_rows, sample_ragged):
            raise CsvFormatError(_ragged_message(sample_rows, len(self.header)))
        self.column_map = _build_column_map(self.header, mapping)
        if "email" not in self.column_map.values():
            raise CsvFormatError(
                "The file has no email column. Name a column 'email' (or 'E-mail', 'Email "
                "Address'...) or choose the email column in the column mapping."
            )
        logger.info(
            "lead csv: encoding=%s delimiter=%s columns=%d",
            self.encoding,
            _DELIMITER_NAMES[self.delimiter],
            len(self.header),
        )

    def _lines(self) -> Iterator[str]:
        while line := self._text.readline(MAX_LINE_CHARS + 1):
            if len(line) > MAX_LINE_CHARS:
                raise CsvFormatError(
                    f"A line after row {self._row_number} is longer than {MAX_LINE_CHARS} "
                    "characters, so this is not a lead CSV (or a line break is missing)."
                )
            yield line

    def _next_record(self) -> list[str] | None:
        try:
            record = next(self._records)
        except StopIteration:
            return None
        except UnicodeDecodeError as exc:
            raise CsvFormatError(
                f"The file is not valid {self.encoding} near row {self._row_number + 1}; "
                + _RESAVE
                + "."
            ) from exc
        except csv.Error as exc:
            raise CsvFormatError(
                f"The file cannot be read as CSV after row {self._row_number}: a quoted value "
                "is probably never closed. Check the quotes near that row and upload it again."
            ) from exc
        self._row_number += 1
        return record

    def _read_header(self) -> list[str]:
        if self._skip_sep_line:
            self._next_record()
            self._row_number = 0
        while (record := self._next_record()) is not None:
            if _is_blank(record):
                continue
            if any(is_valid_email(normalise_email(cell)) for cell in record):
                raise CsvFormatError(
                    "The first row holds an email address, so the file seems to have no header "
                    "row. Add a first row naming the columns (for example email,first_name) and "
                    "upload it again."
                )
            return record
        raise CsvFormatError("The file has no header row: every line is blank.")

    def rows(self) -> Iterator[LeadRow | RowError]:
        """Each non-blank data row in file order: a `LeadRow`, or one `RowError` per problem."""
        if self._consumed:
            raise RuntimeError("LeadCsvReader.rows() reads the stream once; make a new reader")
        self._consumed = True
        width = len(self.header)
        columns = [(index, name, self.column_map[name]) for index, name in enumerate(self.header)]
        seen = ragged = 0
        while (record := self._next_record()) is not None:
            if _is_blank(record):
                continue
            seen += 1
            fitted = _fit(record, width)
            if fitted is None:
                ragged += 1
                if _ragged_beyond_tolerance(seen, ragged):
                    raise CsvFormatError(_ragged_message(seen, width))
                yield self._ragged_error(len(record), width)
                continue
            yield from self._row(fitted, columns)

    def _ragged_error(self, cells: int, width: int) -> RowError:
        delimiter = _DELIMITER_NAMES[self.delimiter]
        if cells < width:
            return RowError(
                self._row_number,
                self.header[cells],
                f"the row has {cells} cells but the header has {width} columns; a cell is missing",
            )
        return RowError(
            self._row_number,
            f"column {width + 1}",
            f"the row has {cells} cells but the header has {width} columns; "
            f"quote values that contain a {delimiter}",
        )

    def _row(
        self, record: list[str], columns: list[tuple[int, str, str]]
    ) -> Iterator[LeadRow | RowError]:
        row = self._row_number
        fields: dict[str, str] = {}
        errors: list[RowError] = []
        email_column = ""
        for index, name, key in columns:
            if key == "email":
                email_column = name
            value = record[index].strip()
            if not value:
                continue
            if not value.isascii() and _ESCAPED_BYTE.search(value):
                reason = f"the value has bytes that are not valid {self.encoding}; " + _RESAVE
                errors.append(RowError(row, name, reason))
            elif "\x00" in value:
                errors.append(RowError(row, name, "the value contains a NUL character"))
            elif len(value) > MAX_CELL_CHARS:
                reason = f"the value is longer than {MAX_CELL_CHARS} characters"
                errors.append(RowError(row, name, reason))
            else:
                fields[key] = value
        email = normalise_email(fields.get("email", ""))
        if "email" in fields and not is_valid_email(email):
            errors.append(RowError(row, email_column, "the email address is not valid"))
        elif not email and not any(error.column == email_column for error in errors):
            errors.append(RowError(row, email_column, "the email address is missing"))
        if errors:
            yield from errors
            return
        fields["email"] = email
        yield LeadRow(row, email, fields)
