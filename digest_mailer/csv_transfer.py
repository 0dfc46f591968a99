"""Subscriber CSV files in and out of the store: :func:`import_csv` reads a file
(:func:`~digest_mailer.csvio.reading.read_csv`) and adds or updates its subscribers;
:func:`export_csv` and :func:`export_csv_file` write the store's subscribers
(:func:`~digest_mailer.csvio.writing.write_csv`).

The store's side of the CSV code: :mod:`digest_mailer.csvio` itself is pure (no store),
so this sits beside it. Like the rest of the subscriber store
(:mod:`digest_mailer.subscribers`, where these are reachable too), functions take the
session first and never commit: an import that fails part-way leaves the store as it was.
"""

from pathlib import Path
from typing import TextIO

from sqlalchemy.orm import Session

from digest_mailer.csvio.reading import read_csv
from digest_mailer.csvio.writing import write_csv, write_private_file
from digest_mailer.subscribers import (
    ImportReport,
    get_list,
    list_subscribers,
    merge_entries,
    subscriber_dict,
    upsert,
)


def import_csv(
    session: Session,
    path: Path,
    *,
    list_name: str | None = None,
    resubscribe: bool = False,
    allow_test_domains: bool = False,
    encoding: str | None = None,
    actor: str = "import",
) -> ImportReport:
    """Import a CSV file (see :func:`digest_mailer.csvio.read_csv`): rows that cannot be
    used are left out and reported, every other row is written, in the caller's
    transaction. A file that cannot be read at all raises :class:`InputError`."""
    mailing_list = get_list(session, list_name) if list_name else None
    parsed = read_csv(path, allow_test_domains=allow_test_domains, encoding=encoding)
    report = ImportReport(
        invalid=parsed.invalid, notes=parsed.notes, rows=parsed.rows, size=parsed.size
    )
    merged = merge_entries(parsed.entries, report)
    upsert(
        session,
        merged,
        mailing_list,
        report,
        resubscribe=resubscribe,
        source="import",
        actor=actor,
        origin=f"imported from {path.name}",
    )
    report.notes.sort(key=lambda note: (note.row == 0, note.row))  # the file's summary last
    return report


def export_csv(
    session: Session,
    out: TextIO,
    *,
    status: str | None = None,
    list_name: str | None = None,
) -> int:
    """Write subscribers as CSV (header row, then one row each) to ``out``: the standard
    columns, then their attributes; returns the row count."""
    rows = list_subscribers(session, status=status, list_name=list_name)
    return write_csv(out, (subscriber_dict(s) for s in rows))


def export_csv_file(
    session: Session,
    path: Path,
    *,
    status: str | None = None,
    list_name: str | None = None,
) -> int:
    """:func:`export_csv` to a file readable by its owner only, whole or not at all."""
    return write_private_file(
        path, lambda out: export_csv(session, out, status=status, list_name=list_name)
    )
