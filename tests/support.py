"""Helpers the tests share (the guide: shared helpers live here, not in conftest)."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer import subscribers as subs
from digest_mailer.addresses import address_key
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.actions import token_hash
from digest_mailer.message import make_message_id
from digest_mailer.models import Confirmation, Delivery, Issue, Subscriber, utcnow
from digest_mailer.send.plan import queue_recipients
from digest_mailer.tokens import signing_secret, verp_address


def seed_sent_issue(store: Store, addresses: list[str], domain: str) -> None:
    """Every address active with a sent delivery of issue 3.1, each with its own
    Message-ID on ``domain``."""
    with store.Session.begin() as session:
        subs.add_subscribers(session, addresses, allow_test_domains=True)
        session.add(Issue(id="3.1", subject="Vol 3.1", fingerprint="f" * 64, state="sent"))
        session.flush()
        queue_recipients(session, "3.1")
        for delivery in session.scalars(select(Delivery)):
            delivery.state = "sent"
            delivery.message_id = make_message_id(domain, "3.1", delivery.id)


def fill_report(store: Store, config: Config, raw: bytes) -> bytes:
    """A report with {VERP:address} and {MSGID:address} filled in from the deliveries."""
    secret = signing_secret(config)
    with store.Session() as session:
        for delivery in session.scalars(select(Delivery)):
            verp = verp_address(secret, config.newsletter.bounce_address, delivery.id)
            raw = raw.replace(f"{{VERP:{delivery.address}}}".encode(), verp.encode())
            raw = raw.replace(
                f"{{MSGID:{delivery.address}}}".encode(), delivery.message_id.encode()
            )
    return raw


def add_pending(session: Session, confirmations: dict[str, str]) -> None:
    """Pending subscribers, each with a valid confirmation token (token -> address)."""
    now = utcnow()
    for token, address in confirmations.items():
        person = Subscriber(
            email=address, email_key=address_key(address), name="", status="pending",
            source="email-request", created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(person)
        session.flush()
        session.add(
            Confirmation(
                subscriber_id=person.id,
                token_hash=token_hash(token),
                created_at=now,
                expires_at=now + timedelta(days=7),
            )
        )


@contextmanager
def serving(app: Any, **settings: Any) -> Iterator[int]:
    """uvicorn in a thread with the settings `serve` uses (``settings`` overrides some,
    e.g. a shorter header timeout), on a free loopback port; stopped on the way out."""
    import uvicorn
    from smtp_server import free_port

    from digest_mailer.web import server_config

    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the server did not stop"


def newsletter_cli(tmp_path: Any, database_url: str, smtp_port: int) -> tuple[Any, Any]:
    """An initialised store, the tests' newsletter config pointed at the SMTP server on
    ``smtp_port``, and a copy of the sample issue: (the CLI runner, the issue file)."""
    import shutil

    from conftest import DATA, NEWSLETTER, Cli, smtp_section, write_config

    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(smtp_port)
    )
    cli = Cli(config)
    cli.ok("init")
    issue = tmp_path / "vol-3.1.txt"
    shutil.copy(DATA / "issues" / "digest-vol-3.1.txt", issue)
    return cli, issue
