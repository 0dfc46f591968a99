"""One message never stops the others: a real failure while acting on one message (a
database trigger refuses its row) holds that message for review with the error named,
and the run goes on, on SQLite and PostgreSQL. Also: an internationalised address asks
to subscribe, and its confirmation goes out with SMTPUTF8; confirmation caps."""

import json
import mailbox
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from conftest import NEWSLETTER, Cli, write_config
from smtp_server import SMTPServer
from sqlalchemy import select, text

from digest_mailer import subscribers as subs
from digest_mailer.bounces import process as bp
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.inbox import actions
from digest_mailer.inbox.sources import MboxSource
from digest_mailer.models import InboxMessage, Reply, Subscriber
from digest_mailer.transport import SMTPSettings, SMTPTransport


@pytest.fixture
def config(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str) -> Config:
    extra = NEWSLETTER + (
        f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
        "timeout = 5\nretry_base_seconds = 0.02\n"
        "[inbox]\nconfirmations_per_hour_per_domain = 2\nconfirmations_per_hour = 3\n"
        'authserv_id = "mx.transit-lab.test"\n'
    )
    return load_config(write_config(tmp_path / "config.toml", database_url, extra))


def refuse(store: Store, table: str, condition: str) -> None:
    """A trigger that makes the database refuse some inserts: a real failure, not a mock."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    f"WHEN {condition.replace('NEW.', 'NEW.')} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE FUNCTION refuse_{table}() RETURNS trigger AS $$ BEGIN "
                    f"IF {condition} THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
                )
            )


def mail(sender: str, subject: str, body: str = "", mid: str = "") -> bytes:
    mid = mid or f"<{abs(hash((sender, subject)))}@mail.test>"
    return (
        # our own server vouches for the sender's domain, so an unsubscribe acts at once
        "Authentication-Results: mx.transit-lab.test; dmarc=pass header.from="
        f"{sender.rpartition('@')[2]}\r\n"
        f"From: {sender}\r\nTo: weekly@transit-lab.test\r\nSubject: {subject}\r\n"
        f"Message-ID: {mid}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(str(path))
    for raw in messages:
        box.add(raw)
    box.close()
    return path


def smtp(config: Config):  # type: ignore[no-untyped-def]
    return lambda: SMTPTransport(SMTPSettings.from_config(config))


def statuses(store: Store) -> dict[str, str]:
    with store.Session() as session:
        return dict(session.execute(select(Subscriber.email_key, Subscriber.status)).all())


def test_a_failing_message_is_held_and_the_run_goes_on(
    store: Store, config: Config, tmp_path: Path
) -> None:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["ben@corp.test", "cleo@corp.test"], allow_test_domains=True)
    refuse(
        store, "email_requests", "NEW.label = 'subscribe' AND NEW.from_address = 'fault@corp.test'"
    )
    path = write_mbox(
        tmp_path / "in.mbox",
        [
            mail("ben@corp.test", "unsubscribe"),
            mail("fault@corp.test", "subscribe"),
            mail("cleo@corp.test", "please remove me"),
        ],
    )
    run, _ = actions.process_inbox(store, config, MboxSource(path))
    assert [h.sender for h in run.held] == ["fault@corp.test"]
    assert run.held[0].error.startswith("error: ") and "refused by a trigger" in run.held[0].error
    assert statuses(store) == {"ben@corp.test": "unsubscribed", "cleo@corp.test": "unsubscribed"}
    with store.Session() as session:
        held = session.scalars(select(InboxMessage).where(InboxMessage.state == "review")).one()
    assert held.from_address == "fault@corp.test" and held.reason.startswith("error: ")
    assert held.raw and b"fault@corp.test" in held.raw
    again, _ = actions.process_inbox(store, config, MboxSource(path))  # nothing twice
    assert again.held == [] and {r.action for r in again.results} == {"none: already processed"}


def test_a_message_that_cannot_even_be_recorded_does_not_stop_the_run(
    store: Store, config: Config, tmp_path: Path
) -> None:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["ben@corp.test"], allow_test_domains=True)
    refuse(store, "email_requests", "NEW.from_address = 'fault@corp.test'")
    path = write_mbox(
        tmp_path / "in.mbox", [mail("fault@corp.test", "subscribe"), mail("ben@corp.test", "stop")]
    )
    run, _ = actions.process_inbox(store, config, MboxSource(path))
    assert len(run.held) == 1 and "not recorded" in run.held[0].error
    assert statuses(store)["ben@corp.test"] == "unsubscribed"


def test_a_report_that_fails_is_held_and_the_other_reports_count(
    store: Store, config: Config, tmp_path: Path
) -> None:
    refuse(store, "bounces", "NEW.address = 'broken@corp.test'")
    dsn = (
        "From: MAILER-DAEMON@mx.corp.test\r\nTo: bounces@transit-lab.test\r\nSubject: Undelivered\r\n"
        "Message-ID: <{n}@mx>\r\nContent-Type: multipart/report; report-type=delivery-status;"
        ' boundary="b"\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n'
        "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; {a}\r\nAction: failed\r\n"
        "Status: 5.1.1\r\n\r\n--b--\r\n"
    )
    path = write_mbox(
        tmp_path / "b.mbox",
        [dsn.format(n=1, a="broken@corp.test").encode(), dsn.format(n=2, a="x@corp.test").encode()],
    )
    run = bp.process_bounces(store, config, MboxSource(path))
    assert [h.error for h in run.held if "refused by a trigger" in h.error]
    assert any(r.address == "x@corp.test" for r in run.results)  # the next report was read
    with store.Session() as session:
        queue = session.scalars(select(InboxMessage).where(InboxMessage.state == "review")).all()
    assert [q.action for q in queue] == ["held for review (from the bounce mailbox)"]


def test_the_command_names_held_messages_on_stderr(
    store: Store, config: Config, tmp_path: Path
) -> None:
    refuse(
        store, "email_requests", "NEW.label = 'subscribe' AND NEW.from_address = 'fault@corp.test'"
    )
    path = write_mbox(tmp_path / "in.mbox", [mail("fault@corp.test", "subscribe", mid="<f1@m>")])
    cli = Cli(Path(config.source))
    result = cli("requests", "process", "--mbox", str(path), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "1 message(s) held for review because of errors" in result.stderr
    assert "fault@corp.test" in result.stderr and "Traceback" not in result.output
    assert json.loads(result.stdout)[0]["label"] == "review"


def test_an_internationalised_address_subscribes_and_gets_its_confirmation(
    store: Store, config: Config, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    path = write_mbox(
        tmp_path / "in.mbox",
        [
            "From: Pöison <pöison@bücher.test>\r\nTo: weekly@transit-lab.test\r\n"
            "Subject: subscribe\r\nMessage-ID: <idn-1@mail.test>\r\n\r\nplease add me\r\n".encode(),
            mail("ana@xn--bcher-kva.test", "sign me up"),
        ],
    )
    run, replies = actions.process_inbox(
        store, config, MboxSource(path), make_transport=smtp(config)
    )
    assert run.held == []
    assert [r.address for r in run.results] == ["pöison@bücher.test", "ana@bücher.test"]
    assert sorted(statuses(store)) == ["ana@bücher.test", "pöison@bücher.test"]
    assert [r.outcome.kind for r in replies] == ["sent", "sent"]
    with smtp_server.handler.lock:
        received = {m.rcpt: m for m in smtp_server.handler.received}
    assert set(received) == {"pöison@xn--bcher-kva.test", "ana@xn--bcher-kva.test"}
    first = received["pöison@xn--bcher-kva.test"]
    assert "SMTPUTF8" in first.mail_options
    to = message_from_bytes(first.data, policy=policy.SMTPUTF8)["To"]
    assert "pöison@xn--bcher-kva.test" in str(to)


def test_confirmation_mails_are_capped_per_mailbox_domain_and_overall(
    store: Store, config: Config, tmp_path: Path
) -> None:
    asks = [
        mail("ann+a@corp.test", "subscribe"),
        mail("ann+b@corp.test", "subscribe"),  # the same mailbox: one reply an hour
        mail("bob@corp.test", "subscribe"),
        mail("cat@corp.test", "subscribe"),  # third to corp.test: over the domain cap of 2
        mail("dan@other.test", "subscribe"),
        mail("eve@third.test", "subscribe"),  # fourth in all: over the overall cap of 3
    ]
    run, _ = actions.process_inbox(store, config, MboxSource(write_mbox(tmp_path / "m", asks)))
    actions_by = {r.sender: r.action for r in run.results}
    assert actions_by["ann+a@corp.test"].startswith("pending: confirmation sent")
    assert "this mailbox had a reply within the hour" in actions_by["ann+b@corp.test"]
    assert actions_by["bob@corp.test"].startswith("pending: confirmation sent")
    assert "confirmations_per_hour_per_domain" in actions_by["cat@corp.test"]
    assert actions_by["dan@other.test"].startswith("pending: confirmation sent")
    assert "([inbox] confirmations_per_hour)" in actions_by["eve@third.test"]
    with store.Session() as session:
        assert len(session.scalars(select(Reply)).all()) == 3
