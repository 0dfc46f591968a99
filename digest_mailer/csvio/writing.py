"""Writing CSV files: exports that open safely in a spreadsheet and come back whole.

- Every cell goes through :func:`spreadsheet_safe`: a cell a spreadsheet would run as a
  formula is written as text (CWE-1236); the reader undoes it
  (:func:`from_spreadsheet_safe`), so an export imports back as it was.
- :func:`write_csv` writes subscribers in the standard columns, then one column per
  attribute, in the order the imported files had them.
- :func:`write_private_file` writes a file readable by its owner only, whole or not at
  all.

Pure: no store (the rows come from :mod:`digest_mailer.csv_transfer`).
"""

import csv
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from digest_mailer.errors import InputError

EXPORT_FIELDS = ("email", "name", "status", "lists", "source", "created_at", "unsubscribed_at")

# A cell a spreadsheet would run as a formula (CWE-1236): =, +, -, @, tab, carriage
# return. OWASP's advice: write it with a leading apostrophe, which spreadsheets show as
# text; reading strips the apostrophe again, so export and import round-trip.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_RISKY = "=+-@\t\r"


def spreadsheet_safe(value: object) -> str:
    """A cell as every CSV the tool writes holds it."""
    text = "" if value is None else str(value)
    # a cell that already starts with ' before a formula sign gets one more, which the
    # import takes away again: "'=1+1" comes back as written
    risky = text.startswith(FORMULA_STARTS) or _quoted(text)
    return "'" + text if risky else text


def _quoted(cell: str) -> bool:
    """A ' before a formula sign or another ': what the import takes one ' from."""
    return len(cell) > 1 and cell[0] == "'" and cell[1] in _RISKY + "'"


def from_spreadsheet_safe(cell: str) -> str:
    """A cell read back: the apostrophe :func:`spreadsheet_safe` added is removed."""
    return cell[1:] if _quoted(cell) else cell


class SafeWriter:
    """``csv.writer`` whose every cell goes through :func:`spreadsheet_safe`."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, cells: Iterable[object]) -> None:
        self._writer.writerow([spreadsheet_safe(c) for c in cells])


def write_csv(out: TextIO, rows: Iterable[dict[str, object]]) -> int:
    """Write subscriber rows (as ``subscriber_dict`` gives them) as CSV to ``out``: the
    standard columns, then one column per attribute name found in any row. Returns the
    row count."""
    rows = list(rows)
    names = _attribute_order(list(data["attributes"]) for data in rows)  # type: ignore[call-overload]
    writer = SafeWriter(out)
    writer.writerow([*EXPORT_FIELDS, *names])
    for data in rows:
        values = {**data, "lists": ";".join(data["lists"])}  # type: ignore[arg-type]
        attributes: dict[str, str] = data["attributes"]  # type: ignore[assignment]
        writer.writerow(
            ["" if values[f] is None else values[f] for f in EXPORT_FIELDS]
            + [attributes.get(n, "") for n in names]
        )
    return len(rows)


def _attribute_order(name_lists: Iterable[list[str]]) -> list[str]:
    """Every name once, each list's names kept in their order where they can be: a name
    first met goes right after the one before it in its list, so the columns of one
    imported file come back in that file's order whichever subscriber has which."""
    order: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for names in name_lists:
        key = tuple(names)
        if key in seen:
            continue
        seen.add(key)
        at = -1
        for name in names:
            if name in order:
                at = order.index(name)
            else:
                at += 1
                order.insert(at, name)
    return order


def write_private_file(path: Path, write: Callable[[TextIO], int]) -> int:
    """Write a UTF-8 text file readable by its owner only (0600), whole or not at all:
    ``write`` fills a hidden temporary file beside ``path``, which then replaces it.
    Errors name ``path``, never the temporary file. Returns what ``write`` returns."""
    try:
        # mkstemp creates the file 0600 whatever the umask
        fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            result = write(handle)
        os.replace(partial, path)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return result
