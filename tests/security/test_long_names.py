"""Threat: a display name (typed by staff, imported, or written by an outsider in a
subscribe email) so long that the message breaks RFC 5322's 998-octet line limit and the
server refuses it ("500 Line too long"), or that overflows a database column."""

import email
from email.header import decode_header, make_header
from pathlib import Path

import pytest
import support
from conftest import NEWSLETTER
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_server import SMTPServer
from sqlalchemy import select

from digest_mailer import composer, db
from digest_mailer.addresses import MAX_NAME
from digest_mailer.config import parse_config
from digest_mailer.message import MessageTemplate, format_recipient
from digest_mailer.models import Subscriber
from digest_mailer.source import parse_issue

DRAFT = Path(__file__).parent.parent / "data" / "issues" / "digest-vol-3.1.txt"
LONG_NAMES = ["A" * 5000, "é" * 3000, "Zoë " * 900, "🙂" * 1200, "x\r\ny" * 800]


def _template() -> MessageTemplate:
    config = parse_config(NEWSLETTER, "c.toml", Path("/srv"))
    composed = composer.compose(parse_issue(DRAFT.read_text("utf-8"), DRAFT), config)
    return MessageTemplate(composed, config)


@pytest.mark.parametrize("name", LONG_NAMES, ids=["ascii", "e-acute", "words", "emoji", "crlf"])
def test_every_header_line_stays_within_998_octets(name: str) -> None:
    data = _template().render("ana@lab.test", name, "<m1@lab.test>", "https://x.test/u/1-a")
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    raw_to = email.message_from_bytes(data)["To"]
    # decoded as RFC 2047 says: the folding between encoded words is not part of the name
    shown = str(make_header(decode_header(raw_to)))
    shown_name, _, address = shown.rpartition(" <")
    assert address == "ana@lab.test>"
    assert len(shown_name.strip('"')) <= MAX_NAME
    assert "\n" not in shown_name and "\r" not in shown_name


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=3000))
def test_any_name_folds(name: str) -> None:
    header = format_recipient("ana@lab.test", name)
    assert all(len(line.encode()) <= 998 for line in header.split("\r\n"))
    assert header.endswith("ana@lab.test>") or header == "ana@lab.test"


@pytest.mark.slow
def test_long_names_go_through_a_server_that_enforces_line_limits(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env
) -> None:  # type: ignore[no-untyped-def]
    cli, issue = support.newsletter_cli(tmp_path, database_url, smtp_server.port)
    for n, name in enumerate(LONG_NAMES[:2]):
        cli.ok("subscribers", "add", f"long{n}@corp.test", "--name", name, "--list", "seed")
    store = db.open_store(database_url)
    with store.Session() as session:
        names = session.scalars(select(Subscriber.name).order_by(Subscriber.id)).all()
    store.dispose()
    assert [len(n) for n in names] == [200, 200]  # cut on the way in, on every back end
    result = cli("send", str(issue), "--test")
    assert result.exit_code == 0, result.output
    assert len(smtp_server.handler.received) == 2  # aiosmtpd refuses lines over 1001


def test_a_name_that_looks_like_an_encoded_word_is_encoded() -> None:
    """Typed as a name, "=?utf-8?q?Admin_<admin@evil.test>?=" must not reach a reader's
    client as text it decodes into another address."""
    header = format_recipient("ana@lab.test", "=?utf-8?q?Admin_<admin@evil.test>?=")
    assert "=?utf-8?q?Admin" not in header
    decoded = str(make_header(decode_header(header)))
    assert decoded.endswith("<ana@lab.test>") and "=?utf-8?q?Admin_" in decoded
    assert all(len(word) <= 75 for word in header.replace("\r\n", " ").split())
