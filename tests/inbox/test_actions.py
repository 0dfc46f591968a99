"""Acting on email requests: the corpus against a real store, double opt-in end to end
through a real SMTP server, idempotence, the reply limit, review and resolve."""

import mailbox
import re
import tomllib
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import support
from conftest import DATA, NEWSLETTER, write_config, write_mbox
from smtp_server import SMTPServer
from sqlalchemy import func, select

from digest_mailer import subscribers as subs
from digest_mailer.config import load_config
from digest_mailer.db import Store
from digest_mailer.inbox import actions as rq
from digest_mailer.inbox.sources import MaildirSource, MboxSource
from digest_mailer.models import Confirmation, Event, InboxMessage, Reply, Subscriber, utcnow
from digest_mailer.transport import SMTPSettings, SMTPTransport

CORPUS = DATA / "requests"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text("utf-8"))


def process_source(*args, **kwargs):  # type: ignore[no-untyped-def]
    """The run's results and replies (held messages are among the results)."""
    run, replies = rq.process_inbox(*args, **kwargs)
    return run.results, replies


@pytest.fixture
def config(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str):  # type: ignore[no-untyped-def]
    extra = (
        NEWSLETTER.replace(
            'postal_address = "Transit Lab, 9 Depot Road, Rivertown"',
            'postal_address = "Transit Lab, 9 Depot Road, Rivertown"\n'
            'bounce_address = "bounces@transit-lab.test"',
        )
        + f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_server.port}\nsecurity = "none"\n'
        "timeout = 5\nretry_base_seconds = 0.02\n"
    )
    return load_config(write_config(tmp_path / "config.toml", database_url, extra))


def smtp(config):  # type: ignore[no-untyped-def]
    return lambda: SMTPTransport(SMTPSettings.from_config(config))


def seed(store: Store) -> None:
    """The store the corpus expects: active subscribers and pending confirmations."""
    with store.Session.begin() as session:
        subs.add_subscribers(session, EXPECTED["store"]["active"], allow_test_domains=True)
        support.add_pending(session, EXPECTED["confirmations"])


def snapshot(store: Store) -> tuple[list[tuple[str, str]], int, int, int]:
    with store.Session() as session:
        people = session.execute(
            select(Subscriber.email_key, Subscriber.status).order_by(Subscriber.email_key)
        ).all()
        events = session.scalar(select(func.count()).select_from(Event))
        replies = session.scalar(select(func.count()).select_from(Reply))
        confirmations = session.scalar(select(func.count()).select_from(Confirmation))
    return [tuple(p) for p in people], events, replies, confirmations  # type: ignore[return-value]


def status_of(store: Store, address: str) -> str | None:
    with store.Session() as session:
        person = subs.find_subscriber(session, address)
        return person.status if person else None


def by_label(*labels: str) -> list[str]:
    return sorted(n for n, m in EXPECTED["messages"].items() if m["label"] in labels)


def test_ignored_bounced_and_reviewed_messages_change_nothing(
    store: Store, config, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    seed(store)
    before = snapshot(store)
    names = by_label("ignore", "bounce", "review")
    source = MboxSource(write_mbox(tmp_path / "quiet.mbox", names))
    results, replies = process_source(store, config, source, make_transport=smtp(config))
    assert sorted(r.label for r in results) == sorted(
        EXPECTED["messages"][n]["label"] for n in names
    )
    assert snapshot(store) == before
    assert replies == [] and smtp_server.handler.received == []
    with store.Session() as session:
        kept = session.scalars(select(InboxMessage).where(InboxMessage.label == "bounce")).all()
        assert len(kept) == len(by_label("bounce")) and all(r.raw for r in kept)
        held = rq.review_queue(session)
        assert len(held) == len(by_label("review"))


def test_the_whole_corpus_acts_as_expected_and_a_second_run_does_nothing(
    store: Store, config, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    seed(store)
    names = sorted(EXPECTED["messages"])
    path = write_mbox(tmp_path / "all.mbox", names)
    results, replies = process_source(store, config, MboxSource(path), make_transport=smtp(config))
    assert len(results) == len(names)
    expected = [EXPECTED["messages"][n] for n in names]
    assert [r.label for r in results] == [e["label"] for e in expected]
    for result, want in zip(results, expected, strict=True):
        if "address" in want:
            assert (result.address or "").lower() == want["address"], result
    # subscribe: pending (a new address) with a confirmation; active stays active
    assert status_of(store, "carla@mail.test") == "pending"
    assert status_of(store, "dana@work.test") == "pending"
    assert status_of(store, "dana.home@mail.test") is None
    assert status_of(store, "ana@corp.test") == "active"
    # unsubscribe: nothing proves these senders own their From address (no Authentication-
    # Results, no reply to our mail, no unsubscribe link of theirs), so each subscriber is
    # asked to confirm and stays active until then; not subscribed: nothing created
    for address in ("ben@corp.test", "ichiro@corp.test", "quin@corp.test", "rin@corp.test"):
        assert status_of(store, address) == "active"
    assert status_of(store, "stranger@else.test") is None
    # confirm: the pending ones whose token came back are active
    for address in ("pend1@corp.test", "pend2@corp.test", "pend3@corp.test", "pend4@corp.test"):
        assert status_of(store, address) == "active"
    # review targets untouched
    assert status_of(store, "carl@corp.test") == "active"
    assert status_of(store, "wes@corp.test") == "active"
    sent_to = sorted(smtp_server.addresses())
    assert "ana@corp.test" not in sent_to  # already active: no second confirmation
    assert "dana@work.test" in sent_to and "dana.home@mail.test" not in sent_to
    assert "stranger@else.test" in sent_to  # told that address is not on the list
    assert all(r.outcome.kind == "sent" for r in replies)
    assert len(replies) == len(sent_to)
    for got in smtp_server.handler.received:
        message = got.message
        assert message["Auto-Submitted"] == "auto-replied"
        assert message["In-Reply-To"].endswith("@corpus.test>")
        assert got.mail_from == "bounces@transit-lab.test"
    with store.Session() as session:
        event = session.scalars(
            select(Event).join(Subscriber).where(Subscriber.email_key == "ben@corp.test")
        ).all()[-1]
        assert event.actor == "email-request" and "u01-subject-only" in event.detail
        assert event.kind == "request" and "asked to confirm" in event.detail
        assert session.scalar(select(func.count()).select_from(InboxMessage)) == len(names)
    # ben replies to the confirmation request: a reply to our own message is the proof
    asked = next(
        g.message for g in smtp_server.handler.received
        if g.rcpt == "ben@corp.test" and "Confirm: stop sending" in str(g.message["Subject"])
    )  # fmt: skip
    answer = (
        f"From: ben@corp.test\r\nTo: weekly@transit-lab.test\r\nSubject: Re: {asked['Subject']}\r\n"
        f"Message-ID: <ben-yes@corp.test>\r\nIn-Reply-To: {asked['Message-ID']}\r\n\r\nYes.\r\n"
    ).encode()
    with store.Session.begin() as session:
        confirmed = rq.handle_message(session, rq.InboxContext(config), answer)
    assert confirmed.label == "unsubscribe" and confirmed.action.startswith("unsubscribed;")
    assert status_of(store, "ben@corp.test") == "unsubscribed"
    names.append("ben-yes")  # recorded like every other message

    before = snapshot(store)
    received = len(smtp_server.handler.received)
    again, replies_again = process_source(
        store, config, MboxSource(path), make_transport=smtp(config)
    )
    assert {r.action for r in again} == {"none: already processed"}
    assert snapshot(store) == before and replies_again == []
    assert len(smtp_server.handler.received) == received


def test_double_opt_in_round_trip_through_smtp(
    store: Store, config, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    box = tmp_path / "Maildir"
    inbox = mailbox.Maildir(str(box))
    inbox.add((CORPUS / "s02-please-add-me.eml").read_bytes())
    results, replies = process_source(
        store, config, MaildirSource(box), make_transport=smtp(config)
    )
    assert [r.action for r in results] == ["pending: confirmation sent to carla.ruiz@mail.test"]
    assert [r.outcome.kind for r in replies] == ["sent"]
    (confirmation,) = smtp_server.handler.received
    message = confirmation.message
    # the requester's display name is not repeated: someone else may have written it
    assert message["To"] == "carla.ruiz@mail.test"
    assert message["In-Reply-To"].startswith("<s02-please-add-me.")
    token = message["Subject"].split("[token: ")[1].rstrip("]")
    assert message["Subject"] == f"Confirm your subscription [token: {token}]"
    text = message.get_body(("plain",)).get_content()
    assert f"https://digest.transit-lab.test/c/{token}" in text
    with store.Session() as session:  # only the hash is stored
        stored = session.scalars(select(Confirmation)).one()
        assert stored.token_hash == rq.token_hash(token) and token not in stored.token_hash
        assert session.scalars(select(Reply)).one().data is None  # cleared once sent

    # the person replies to the confirmation, quoting it
    reply = (
        f"From: Carla Ruiz <carla.ruiz@mail.test>\r\nTo: weekly@transit-lab.test\r\n"
        f"Subject: Re: {message['Subject']}\r\nMessage-ID: <yes.1@mail.test>\r\n"
        f"In-Reply-To: {message['Message-ID']}\r\n\r\nYes!\r\n\r\n> "
        + text.splitlines()[0]
        + "\r\n"
    ).encode()
    inbox.add(reply)
    results, replies = process_source(
        store, config, MaildirSource(box), make_transport=smtp(config)
    )
    assert [(r.label, r.action) for r in results] == [
        ("subscribe", "none: already processed"),
        ("confirm", "subscribed: confirmed"),
    ]
    assert status_of(store, "carla.ruiz@mail.test") == "active"
    with store.Session() as session:
        person = subs.get_subscriber(session, "carla.ruiz@mail.test")
        assert person.name == "Carla Ruiz" and person.source == "email-request"
        assert [(e.kind, e.old_status, e.new_status) for e in person.events] == [
            ("status", None, "pending"),
            ("status", "pending", "active"),
            ("welcome", None, None),  # her welcome mail, queued (tests/test_welcome.py)
        ]
    # the welcome answers her confirmation
    assert [(r.kind, r.outcome.kind) for r in replies] == [("welcome", "sent")]
    assert smtp_server.handler.received[-1].message["In-Reply-To"] == "<yes.1@mail.test>"


def test_one_reply_per_address_per_hour_and_expired_tokens(
    store: Store, config, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    def ask(n: int, when) -> list[rq.InboxResult]:  # type: ignore[no-untyped-def]
        raw = (
            f"From: lee@mail.test\r\nSubject: subscribe\r\nMessage-ID: <ask{n}@mail.test>\r\n\r\n"
        ).encode()
        with store.Session.begin() as session:
            return [rq.handle_message(session, rq.InboxContext(config, now=when), raw)]

    start = utcnow()
    assert ask(1, start)[0].action.startswith("pending: confirmation sent")
    assert "within the hour" in ask(2, start + timedelta(minutes=30))[0].action
    assert ask(3, start + timedelta(minutes=61))[0].action.startswith("pending: confirmation")
    with store.Session() as session:
        assert session.scalar(select(func.count()).select_from(Reply)) == 2

    # a confirmation used after 7 days does not activate; a new one is sent instead
    token = "ab" * 16
    with store.Session.begin() as session:
        person = subs.get_subscriber(session, "lee@mail.test")
        session.add(
            Confirmation(
                subscriber_id=person.id,
                token_hash=rq.token_hash(token),
                created_at=start,
                expires_at=start + timedelta(days=7),
            )
        )
    late = start + timedelta(days=8)
    raw = f"From: lee@mail.test\r\nSubject: Re: [token: {token}]\r\nMessage-ID: <c@m.test>\r\n\r\nok".encode()
    with store.Session.begin() as session:
        result = rq.handle_message(session, rq.InboxContext(config, now=late), raw)
    assert result.label == "confirm"
    # an expired code activates nobody; the sender is told how to subscribe again
    assert result.action == "none: expired token; told how to subscribe again"
    assert status_of(store, "lee@mail.test") == "pending"


def test_unsubscribing_cancels_an_outstanding_confirmation(store: Store, config) -> None:
    now = utcnow()
    ctx = rq.InboxContext(config, now=now)
    with store.Session.begin() as session:
        rq.start_subscription(session, ctx, "mo@mail.test", "", None, None)
        token = "cd" * 16
        person = subs.get_subscriber(session, "mo@mail.test")
        session.add(
            Confirmation(
                subscriber_id=person.id,
                token_hash=rq.token_hash(token),
                expires_at=now + timedelta(days=7),
            )
        )
    later = rq.InboxContext(config, now=now + timedelta(hours=2))
    with store.Session.begin() as session:
        rq.unsubscribe(session, later, "mo@mail.test", None, None)
        assert rq.confirm_token(session, later, token) == "none: expired token"
    assert status_of(store, "mo@mail.test") == "unsubscribed"


def test_dry_run_changes_and_sends_nothing(
    store: Store, config, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    seed(store)
    before = snapshot(store)
    path = write_mbox(tmp_path / "all.mbox", sorted(EXPECTED["messages"]))
    results, replies = process_source(store, config, MboxSource(path), dry_run=True)
    assert len(results) == len(EXPECTED["messages"]) and replies == []
    assert {r.label for r in results} >= {"subscribe", "unsubscribe", "confirm"}
    assert snapshot(store) == before and smtp_server.handler.received == []
    with store.Session() as session:
        assert session.scalar(select(func.count()).select_from(InboxMessage)) == 0


def test_review_then_resolve(store: Store, config, smtp_server: SMTPServer) -> None:
    seed(store)
    ctx = rq.InboxContext(config)
    with store.Session.begin() as session:
        for name in ("r01-change-of-address.eml", "r07-remove-another-address.eml"):
            rq.handle_message(session, ctx, (CORPUS / name).read_bytes())
        held = rq.review_queue(session)
        assert [r.reason for r in held] == [
            "asks to change an address",
            "asks to remove another address (carl@corp.test)",
        ]
        change, remove = held[0].id, held[1].id
    with store.Session.begin() as session:
        done = rq.resolve_message(session, ctx, change, "subscribe", "ron@newcorp.test")
        assert done.action == "resolved by staff: pending: confirmation sent to ron@newcorp.test"
        rq.resolve_message(session, ctx, remove, "unsubscribe", "carl@corp.test")
    with store.Session.begin() as session, pytest.raises(rq.InputError, match="not waiting"):
        rq.resolve_message(session, ctx, change, "ignore")
    with store.Session.begin() as session, pytest.raises(rq.NotFoundError):
        rq.resolve_message(session, ctx, 9999, "ignore")
    assert status_of(store, "carl@corp.test") == "unsubscribed"
    assert status_of(store, "ron@newcorp.test") == "pending"
    replies = rq.send_replies(store, config, SMTPTransport(SMTPSettings.from_config(config)))
    assert sorted(r.address for r in replies) == ["carl@corp.test", "ron@newcorp.test"]
    by_rcpt = {r.rcpt: r.message for r in smtp_server.handler.received}
    assert by_rcpt["ron@newcorp.test"]["In-Reply-To"].startswith("<r01-change-of-address.")


def test_replies_wait_in_the_outbox_while_the_server_is_down(store: Store, config) -> None:
    server = SMTPServer()  # not started: connections are refused
    down = config.__class__(**{**config.__dict__, "smtp": config.smtp.__class__(
        **{**config.smtp.__dict__, "port": server.port})})  # fmt: skip
    ctx = rq.InboxContext(down)
    with store.Session.begin() as session:
        rq.start_subscription(session, ctx, "nia@mail.test", "", None, None)
    replies = rq.send_replies(store, down, SMTPTransport(SMTPSettings.from_config(down)))
    assert [r.outcome.kind for r in replies] == ["unavailable"]
    with store.Session() as session:
        assert session.scalars(select(Reply.state)).all() == ["deferred"]
    server.start()
    try:
        replies = rq.send_replies(store, down, SMTPTransport(SMTPSettings.from_config(down)))
        assert [r.outcome.kind for r in replies] == ["sent"]
        assert server.addresses() == ["nia@mail.test"]
    finally:
        server.stop()


def test_a_broken_message_never_stops_the_run(store: Store, config, tmp_path: Path) -> None:
    path = tmp_path / "mixed.mbox"
    box = mailbox.mbox(str(path))
    box.add(b"\x00\x01 not an email \xff")
    box.add(b"From: ok@mail.test\r\nSubject: unsubscribe\r\n\r\n")
    box.add(
        b"From: ko@mail.test\r\nSubject: subscribe\r\nContent-Type: text/plain; charset=x-nope\r\n\r\nhi"
    )
    box.close()
    results, _ = process_source(store, config, MboxSource(path))
    assert [r.label for r in results] == ["review", "unsubscribe", "subscribe"]


def test_an_invalid_address_is_held_for_review(store: Store, config) -> None:
    raw = b"From: joe@bad_domain.test\r\nSubject: subscribe\r\nMessage-ID: <j@x.test>\r\n\r\n"
    with store.Session.begin() as session:
        result = rq.handle_message(session, rq.InboxContext(config), raw)
        assert result.label == "review" and "not a valid email address" in result.reason
        assert [r.from_address for r in rq.review_queue(session)] == ["joe@bad_domain.test"]
    assert status_of(store, "joe@bad_domain.test") is None


def test_purge_erases_requests_and_replies(store: Store, config) -> None:
    ctx = rq.InboxContext(config)
    raw = (CORPUS / "s01-subject-only.eml").read_bytes()
    with store.Session.begin() as session:
        rq.handle_message(session, ctx, raw)
        subs.purge_subscriber(session, "carla@mail.test")
    with store.Session() as session:
        request = session.scalars(select(InboxMessage)).one()
        assert "carla" not in (request.from_address + (request.address or ""))
        assert session.scalar(select(func.count()).select_from(Reply)) == 0
        assert session.scalar(select(func.count()).select_from(Confirmation)) == 0


def test_reply_message_shape(store: Store, config) -> None:
    seed(store)
    ctx = rq.InboxContext(config)
    incoming_raw = (CORPUS / "u02-please-remove.eml").read_bytes()
    with store.Session.begin() as session:
        rq.handle_message(session, ctx, incoming_raw)
        asked = message_from_bytes(session.scalars(select(Reply)).one().data, policy=policy.default)
    assert asked["Subject"] == "Confirm: stop sending Transit Policy Weekly to cleo@corp.test?"
    link = re.search(r"https://\S+/u/\S+", asked.get_body(("plain",)).get_content())
    assert link is not None  # the signed one-click link: the web page confirms
    # a reply carrying cleo's own unsubscribe link (as a reply quoting an issue does) is proof
    proven = incoming_raw.replace(b"Message-ID: <", b"Message-ID: <again.") + (
        f"\r\n> Unsubscribe: {link.group(0)}\r\n".encode()
    )
    later = rq.InboxContext(config, now=ctx.now + timedelta(hours=2))
    with store.Session.begin() as session:
        result = rq.handle_message(session, later, proven)
        data = session.scalars(select(Reply).order_by(Reply.id.desc())).first().data
    assert result.action == "unsubscribed; acknowledgement sent"
    message = message_from_bytes(data, policy=policy.default)
    assert message["Subject"] == "You are unsubscribed from Transit Policy Weekly"
    assert message["From"] == "Transit Policy Weekly <weekly@transit-lab.test>"
    assert message["References"] == message["In-Reply-To"]
    assert message.get_content_type() == "multipart/alternative"
    assert "cleo@corp.test is unsubscribed" in message.get_body(("plain",)).get_content()
