"""Reading subscriber CSV files: spreadsheet exports, in any column order.

Reading never stops at a bad row. A row whose address is invalid, or whose bytes are not
text in the file's encoding (:mod:`digest_mailer.csvio.decoding`), is reported with its
row number (as a spreadsheet shows it: a blank line is a row, a cell over several lines
is one row) and left out; every other row is read. Only a file that cannot be read at all
(missing, empty, binary, no email column, a header that is not text) is refused as a
whole.

The email column is found by its header (or, failing that, by its content); the name
from a name column or first and last name. Other columns are kept per subscriber as
attributes (:mod:`digest_mailer.csvio.attributes`), but those `export` writes besides
(status, lists, source, dates), which an import does not change. A cell written
spreadsheet-safe (:mod:`digest_mailer.csvio.writing`) is read back as it was.

Pure: no store.
"""

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from email_validator import EmailNotValidError

from digest_mailer.addresses import _validate, display_name
from digest_mailer.csvio.attributes import MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTE_VALUE, MAX_ATTRIBUTES
from digest_mailer.csvio.decoding import Lines, decode_lines, read_bytes
from digest_mailer.csvio.writing import from_spreadsheet_safe
from digest_mailer.errors import InputError
from digest_mailer.typos import address_typo

MAX_ATTRIBUTE_COLUMNS = 1000  # extra columns read from one file (an export has one per name)

# the headers of the columns the importer reads (casefolded, letters and digits only)
EMAIL_HEADERS = {"email", "emailaddress", "mail", "emails", "mailaddress", "address", "courriel"}
NAME_HEADERS = {"name", "fullname", "displayname", "contactname", "subscribername"}
FIRST_HEADERS = {"firstname", "givenname", "first", "forename"}
LAST_HEADERS = {"lastname", "surname", "familyname", "last"}
# what `export` writes besides email and name: the store's own record of each person,
# which an import does not change (statuses change by their own commands, lists by --list)
STORE_HEADERS = {
    "status", "lists", "list", "source", "createdat", "updatedat", "unsubscribedat",
    "unsubscribereason",
}  # fmt: skip
DELIMITERS = (",", ";", "\t", "|")
TEST_DOMAIN_HINT = " (set [subscribers] allow_test_domains = true for trials)"


@dataclass
class Entry:
    """One address to add, as read from the command line or a file row."""

    email: str
    name: str = ""
    row: int = 0
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Invalid:
    """A row left out, and why; ``message`` is the whole line to show when the row
    number and value do not say it (a row that is not text in the file's encoding)."""

    row: int
    value: str
    reason: str
    message: str = ""


@dataclass
class Note:
    """A warning about a row that was read anyway (``row`` 0: about the whole file)."""

    row: int
    message: str


@dataclass
class ParsedCsv:
    entries: list[Entry]
    invalid: list[Invalid]
    notes: list[Note]
    rows: int  # data rows read, without the header and blank lines
    size: int  # bytes read


def sniff_delimiter(text: str | Iterable[str]) -> str:
    """The delimiter that splits the first lines into the same, largest number of fields."""
    source = text.splitlines() if isinstance(text, str) else text
    lines: list[str] = []
    for line in source:
        if line.strip():
            lines.append(line)
        if len(lines) == 20:
            break
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        try:
            counts = {len(r) for r in csv.reader(lines, delimiter=delimiter) if any(r)}
        except csv.Error:
            continue
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = delimiter, fields
    return best


# --------------------------------------------------------------------------- columns


def _header_key(cell: str) -> str:
    return "".join(ch for ch in cell.casefold() if ch.isalnum())


@dataclass
class _Columns:
    email: int
    name: int | None = None
    first: int | None = None
    last: int | None = None
    header: bool = True
    attributes: list[tuple[int, str]] = field(default_factory=list)
    unnamed: set[int] = field(default_factory=set)  # columns without a header

    def name_of(self, cells: list[str]) -> str:
        def cell(i: int | None) -> str:
            return cells[i].strip() if i is not None and i < len(cells) else ""

        if self.name is not None and cell(self.name):
            return cell(self.name)
        return " ".join(p for p in (cell(self.first), cell(self.last)) if p)


def _find_columns(
    first_row: list[str], path: Path, notes: list[Note], sample: list[list[str]] | None = None
) -> _Columns:
    """The columns, from the header; failing that (a header in another language: "Adresse
    e-mail", "Correo electrónico", "メールアドレス"), from the content of the rows below."""
    keys = [_header_key(c) for c in first_row]

    def find(names: set[str]) -> int | None:
        return next((i for i, k in enumerate(keys) if k in names), None)

    email = find(EMAIL_HEADERS)
    if email is None:
        email = next((i for i, k in enumerate(keys) if k.startswith("email")), None)
    if email is not None:
        columns = _Columns(email, find(NAME_HEADERS), find(FIRST_HEADERS), find(LAST_HEADERS))
        _attribute_columns(columns, first_row, keys, notes)
        return columns
    with_at = [i for i, cell in enumerate(first_row) if "@" in cell]
    if with_at:  # no header row: the column holding addresses, the next non-empty is the name
        others = [i for i, cell in enumerate(first_row) if i != with_at[0] and cell.strip()]
        return _Columns(with_at[0], others[0] if others else None, header=False)
    by_content = _email_column_by_content(len(first_row), sample or [])
    if by_content is not None:
        notes.append(
            Note(1, f"column {by_content + 1} ({first_row[by_content].strip()!r}) holds the "
                 "addresses: found by its content, its header is not one this importer knows")
        )  # fmt: skip
        columns = _Columns(by_content, find(NAME_HEADERS), find(FIRST_HEADERS), find(LAST_HEADERS))
        _attribute_columns(columns, first_row, keys, notes)
        return columns
    shown = ", ".join(repr(c) for c in first_row) or "nothing"
    raise InputError(
        f"{path} has no email column: expected a header such as 'email', 'e-mail' or "
        f"'Email Address' (first row has {shown}); nothing was imported"
    )


def _email_column_by_content(width: int, sample: list[list[str]]) -> int | None:
    """The one column where most filled cells of the sample rows look like addresses."""
    best: list[int] = []
    for i in range(width):
        cells = [r[i].strip() for r in sample if i < len(r) and r[i].strip()]
        looks = sum("@" in c and "." in c.rpartition("@")[2] and " " not in c for c in cells)
        if cells and looks >= max(1, 0.6 * len(cells)):
            best.append(i)
    return best[0] if len(best) == 1 else None


def _attribute_columns(
    columns: _Columns, header: list[str], keys: list[str], notes: list[Note]
) -> None:
    """The columns kept as attributes: every one the importer does not read itself (a
    second address or name column is kept) but those `export` writes."""
    read = {columns.email, columns.name, columns.first, columns.last}
    taken: set[str] = set()
    over: list[str] = []
    for i, cell in enumerate(header):
        if i in read or keys[i] in STORE_HEADERS:
            continue
        name = cell.replace("\ufeff", "").strip()  # a BOM left by joined files
        if not name:
            columns.unnamed.add(i)
            continue
        if len(name) > MAX_ATTRIBUTE_NAME:
            cut_to = f"cut to {MAX_ATTRIBUTE_NAME} characters"
            notes.append(Note(1, f"column {i + 1} header {name[:30]!r}… {cut_to}"))
            name = name[:MAX_ATTRIBUTE_NAME]
        if columns.email is not None and keys[i] == keys[columns.email]:  # "email" twice
            notes.append(
                Note(1, f"column {i + 1} ({name!r}) is a second email column: its addresses "
                     "are NOT imported as subscribers (only column "
                     f"{(columns.email or 0) + 1}); they are kept as an attribute. Put "
                     "each person on a row of their own to import them")
            )  # fmt: skip
            taken.add(header[columns.email or 0].strip())
        if len(columns.attributes) == MAX_ATTRIBUTE_COLUMNS:
            over.append(name)
            continue
        if name in taken:  # a second "Phone": kept as "Phone 2"
            n = 2
            while f"{name} {n}" in taken:
                n += 1
            notes.append(Note(1, f"column {i + 1} is a second {name!r}: kept as '{name} {n}'"))
            name = f"{name} {n}"
        taken.add(name)
        columns.attributes.append((i, name))
    if over:
        shown = ", ".join(repr(n) for n in over[:5]) + (", …" if len(over) > 5 else "")
        shown = f"{len(over)} more not kept ({shown})"
        notes.append(Note(1, f"only {MAX_ATTRIBUTE_COLUMNS} extra columns are read: {shown}"))


# --------------------------------------------------------------------------- reading


def read_csv(
    path: Path, *, allow_test_domains: bool = False, encoding: str | None = None
) -> ParsedCsv:
    """Parse a spreadsheet export: valid entries, rows left out with reasons, warnings."""
    data = read_bytes(path)
    decoded = decode_lines(path, data, encoding)
    reader = _Reader(path, decoded, allow_test_domains, ParsedCsv([], [], [], 0, len(data)))
    return reader.read()


@dataclass
class _Reader:
    path: Path
    decoded: Lines
    allow_test_domains: bool
    parsed: ParsedCsv
    columns: _Columns | None = None
    cut: dict[str, list[int]] = field(default_factory=dict)  # attribute -> rows cut
    unnamed_rows: list[int] = field(default_factory=list)
    over_rows: list[int] = field(default_factory=list)  # more than MAX_ATTRIBUTES filled
    sample: list[list[str]] = field(default_factory=list)
    fallback_rows: list[int] = field(default_factory=list)

    def read(self) -> ParsedCsv:
        lines = self.decoded.lines
        delimiter = sniff_delimiter(lines[:50])
        # the rows under the header, for a header no name matches (read again below)
        try:
            self.sample = [r for r in csv.reader(lines[1:41], delimiter=delimiter) if any(r)]
        except csv.Error:  # a quoted cell cut by the sample's end: no sample, no guess
            self.sample = []
        reader = csv.reader(iter(lines), delimiter=delimiter)
        row = line = 0
        try:
            for cells in reader:
                cells = [from_spreadsheet_safe(c) for c in cells]
                row += 1
                first_line, line = line, reader.line_num  # the row is lines first_line..line-1
                self._record(row, range(first_line, line), cells)
        except csv.Error as exc:
            raise InputError(
                f"{self.path} line {reader.line_num}: not readable as CSV: {exc}"
            ) from None
        if self.columns is None:
            raise InputError(f"{self.path} is empty: no rows to import")
        self._summarise()
        return self.parsed

    def _record(self, row: int, lines: range, cells: list[str]) -> None:
        decoded = self.decoded
        bad = ""
        if decoded.bad:
            bad = next((decoded.bad[i] for i in lines if i in decoded.bad), "")
        if decoded.fallback and any(i in decoded.fallback for i in lines):
            self.fallback_rows.append(row)
        if not any(c.strip() for c in cells):
            return
        if self.columns is None:
            try:
                self.columns = _find_columns(cells, self.path, self.parsed.notes, self.sample)
            except InputError:
                if not bad:
                    raise
            if bad and (self.columns is None or self.columns.header):
                raise InputError(
                    f"{self.path}: row {row} (the header) is {bad}; {decoded.hint}; "
                    "nothing was imported"
                ) from None
            if self.columns.header:  # type: ignore[union-attr]
                return
        self.parsed.rows += 1
        if bad:
            reason = f"{bad}; {decoded.hint}"
            message = f"{self.path}: row {row} is {reason}"
            self.parsed.invalid.append(Invalid(row, "", reason, message))
            return
        self._row(row, lines, cells)

    def _row(self, row: int, lines: range, cells: list[str]) -> None:
        columns = self.columns
        assert columns is not None
        raw = cells[columns.email].strip() if columns.email < len(cells) else ""
        name = columns.name_of(cells)
        if "<" in raw:  # "Ana Lima <ana@corp.test>" pasted into the email cell
            display, raw = parseaddr(raw)
            name = name or display
        if not raw:
            self.parsed.invalid.append(Invalid(row, "", "no email address in this row"))
            return
        try:
            email = _validate(raw, self.allow_test_domains)
        except EmailNotValidError as exc:
            reason = str(exc)
            if not self.allow_test_domains and raw.casefold().rstrip(".").endswith(".test"):
                reason += TEST_DOMAIN_HINT
            if "\n" in raw:  # a quote left open swallows the rows after it
                reason += (
                    f" (this row runs over lines {lines.start + 1}-{lines.stop}: "
                    "is a quote left open?)"
                )
            shown = raw if len(raw) <= 100 else raw[:100] + "…"
            self.parsed.invalid.append(Invalid(row, shown, reason))
            return
        attributes: dict[str, str] = {}
        for i, attribute in columns.attributes:
            value = cells[i].strip() if i < len(cells) else ""
            if len(value) > MAX_ATTRIBUTE_VALUE:
                self.cut.setdefault(attribute, []).append(row)
                value = value[:MAX_ATTRIBUTE_VALUE]
            if value:
                if len(attributes) == MAX_ATTRIBUTES:  # per person; empty cells do not count
                    self.over_rows.append(row)
                    break
                attributes[attribute] = value
        if columns.unnamed and any(i < len(cells) and cells[i].strip() for i in columns.unnamed):
            self.unnamed_rows.append(row)
        if typo := address_typo(email):
            self.parsed.notes.append(Note(row, f"{typo.describe()}; imported as written"))
        self.parsed.entries.append(Entry(email, display_name(name), row, attributes))

    def _summarise(self) -> None:
        notes = self.parsed.notes
        if self.over_rows:
            notes.append(
                Note(0, f"{len(self.over_rows)} row(s) have over {MAX_ATTRIBUTES} filled extra "
                     f"columns: the first {MAX_ATTRIBUTES} are kept ({_rows(self.over_rows)})")
            )  # fmt: skip
        for attribute, rows in self.cut.items():
            notes.append(
                Note(0, f"column {attribute!r}: {len(rows)} value(s) longer than "
                     f"{MAX_ATTRIBUTE_VALUE} characters cut to {MAX_ATTRIBUTE_VALUE} "
                     f"({_rows(rows)})")
            )  # fmt: skip
        if self.unnamed_rows:
            notes.append(
                Note(0, "cells in columns without a header were not kept "
                     f"({_rows(self.unnamed_rows)})")
            )  # fmt: skip
        if self.fallback_rows:
            notes.append(
                Note(0, f"{len(self.fallback_rows)} row(s) not valid UTF-8 read as "
                     f"{self.decoded.fallback_name} ({_rows(self.fallback_rows)})")
            )  # fmt: skip


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    more = ", …" if len(rows) > 10 else ""
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}{more}"
