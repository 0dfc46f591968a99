"""Threat: a spreadsheet formula planted in a name, an address or an SMTP reply (CWE-1236)
that runs when staff open an export. Every CSV the tool writes neutralises it; an import
of the export gives back the same text."""

import csv
import io
from pathlib import Path

import support
from conftest import Cli, write_config
from hypothesis import given
from hypothesis import strategies as st
from smtp_server import SMTPServer
from sqlalchemy import update

from digest_mailer import db
from digest_mailer.csvio import from_spreadsheet_safe, spreadsheet_safe
from digest_mailer.models import Delivery

PLANTED = [
    '=HYPERLINK("http://x.test","y")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
RISKY = ("=", "+", "-", "@", "\t", "\r")


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_an_export_neutralises_names_and_addresses_and_round_trips(
    tmp_path: Path, database_url: str
) -> None:
    config = write_config(tmp_path / "c.toml", database_url)
    cli = Cli(config)
    cli.ok("init")
    for n, name in enumerate(PLANTED):
        cli.ok("subscribers", "add", f"p{n}@formula.test", "--name", name)
    cli.ok("subscribers", "add", "=cmd|'/Ccalc'!A0@formula.test", "--name", "Plain Name")
    export = tmp_path / "all.csv"
    cli.ok("subscribers", "export", str(export))
    rows = _cells(export.read_text("utf-8"))
    for row in rows:
        for cell in row:
            assert not cell.startswith(RISKY), (row, cell)
    names = {r[0]: r[1] for r in rows[1:]}
    assert names["'=cmd|'/Ccalc'!A0@formula.test"] == "Plain Name"
    # the store keeps names on one line: tab and CR became spaces, then were trimmed
    assert names["p0@formula.test"] == "'" + PLANTED[0]
    # import the export into a fresh store: the same text comes back
    fresh = write_config(tmp_path / "o.toml", f"sqlite:///{tmp_path / 'fresh.db'}")
    again = Cli(fresh)
    again.ok("init")
    again.ok("subscribers", "import", str(export))
    export2 = tmp_path / "again.csv"
    again.ok("subscribers", "export", str(export2))
    first = {r[0]: r[1] for r in _cells(export.read_text("utf-8"))[1:]}
    second = {r[0]: r[1] for r in _cells(export2.read_text("utf-8"))[1:]}
    assert first == second and len(first) == len(PLANTED) + 1


def test_the_send_log_csv_neutralises_smtp_replies(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env
) -> None:  # type: ignore[no-untyped-def]
    cli, issue = support.newsletter_cli(tmp_path, database_url, smtp_server.port)
    cli.ok("subscribers", "add", "ana@formula.test", "bo@formula.test")
    cli.ok("send", str(issue), "--yes", "--skip-test")
    store = db.open_store(database_url)
    with store.Session.begin() as session:  # a hostile server's reply text, as recorded
        session.execute(update(Delivery).values(smtp_message=PLANTED[0]))
    store.dispose()
    out = cli.ok("log", "3.1", "--csv").stdout
    rows = _cells(out)
    assert rows[0][:2] == ["address", "state"]
    assert {r[4] for r in rows[1:]} == {"'" + PLANTED[0]}
    assert all(not c.startswith(RISKY) for r in rows for c in r)


@given(st.text(max_size=50))
def test_safe_cells_round_trip(text: str) -> None:
    safe = spreadsheet_safe(text)
    assert not safe.startswith(RISKY)
    assert from_spreadsheet_safe(safe) == text  # "'=1+1" included
