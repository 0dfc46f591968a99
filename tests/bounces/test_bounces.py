"""Bounces and complaints: the report corpus, matching, scoring, idempotence."""

import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import support
from conftest import DATA, NEWSLETTER, write_config
from sqlalchemy import func, select

from digest_mailer import subscribers as subs
from digest_mailer.bounces import process as bp
from digest_mailer.bounces import scoring as bn
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.inbox.sources import MaildirSource
from digest_mailer.models import Bounce, Delivery, Event, Subscriber
from digest_mailer.transport import Outcome

CORPUS = DATA / "bounces"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text("utf-8"))
REPORTS: dict[str, list[dict[str, str]]] = EXPECTED["reports"]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BOUNCES_NEWSLETTER = NEWSLETTER.replace(
    'postal_address = "Transit Lab, 9 Depot Road, Rivertown"',
    'postal_address = "Transit Lab, 9 Depot Road, Rivertown"\n'
    'bounce_address = "bounces@transit-lab.test"',
)


def process_bounces(*args, **kwargs):  # type: ignore[no-untyped-def]
    return bp.process_bounces(*args, **kwargs).results


def corpus_addresses() -> list[str]:
    found = {f["address"] for failures in REPORTS.values() for f in failures if f["by"]}
    return sorted(found | set(EXPECTED["store"]["untouched"]))


@pytest.fixture
def config(tmp_path: Path, database_url: str, send_env: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, BOUNCES_NEWSLETTER))


def seed_sent_issue(store: Store, config: Config, addresses: list[str]) -> None:
    """Every address active with a sent delivery of issue 3.1; then the unsubscribed."""
    support.seed_sent_issue(store, addresses, "transit-lab.test")
    with store.Session.begin() as session:
        for address in set(EXPECTED["store"]["unsubscribed"]) & set(addresses):
            subs.remove_subscriber(session, address, reason="left")


def fill(store: Store, config: Config, raw: bytes, *, strict: bool = True) -> bytes:
    """The report with {VERP:address} and {MSGID:address} filled in (not strict: an
    address with no delivery gets the plain bounce address)."""
    raw = support.fill_report(store, config, raw)
    if not strict:
        raw = re.sub(rb"\{VERP:[^}]*\}", config.newsletter.bounce_address.encode(), raw)
    assert b"{VERP:" not in raw and b"{MSGID:" not in raw
    return raw


def handle(store: Store, config: Config, raw: bytes, now: datetime = NOW) -> list[bp.BounceResult]:
    raw = fill(store, config, raw, strict=False)
    ctx = bp.BounceContext(config, now=now)
    with store.Session.begin() as session:
        return bp.handle_bounce_message(session, ctx, raw)


def status_of(store: Store, address: str) -> str:
    with store.Session() as session:
        person = subs.find_subscriber(session, address)
        assert person is not None
        return person.status


def test_the_corpus_has_every_shape_asked_for() -> None:
    files = sorted(p.name for p in CORPUS.glob("*.eml"))
    listed = set(REPORTS) | set(EXPECTED["store"]["ignored"]) | set(EXPECTED["store"]["no_failure"])
    assert sorted(listed) == files
    assert len(REPORTS) >= 25
    kinds = {f["kind"] for failures in REPORTS.values() for f in failures}
    assert kinds == {"hard", "soft", "delayed", "complaint", "unknown"}
    assert {f["by"] for failures in REPORTS.values() for f in failures} == {
        "verp",
        "message-id",
        "unverified",
        "",
    }


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_each_report_records_what_it_says(store: Store, config: Config, name: str) -> None:
    seed_sent_issue(store, config, corpus_addresses())
    raw = fill(store, config, (CORPUS / name).read_bytes())
    results = handle(store, config, raw)
    want = REPORTS[name]
    got = [(r.address, r.kind, r.status) for r in results]
    assert got == [(w["address"], w["kind"], w["status"]) for w in want], results
    with store.Session() as session:
        rows = session.scalars(select(Bounce).order_by(Bounce.id)).all()
        assert [(b.address, b.matched_by) for b in rows] == [(w["address"], w["by"]) for w in want]
        for row, w in zip(rows, want, strict=True):
            if w["by"] in ("verp", "message-id"):
                delivery = session.get(Delivery, row.delivery_id)
                assert delivery is not None and delivery.address == w["address"]
    for w in want:
        if w["then"]:
            assert status_of(store, w["address"]) == w["then"], (name, w)
    with store.Session() as session:  # nobody else changed
        others = session.scalars(
            select(Subscriber.status).where(
                Subscriber.email_key.not_in([w["address"] for w in want]),
                Subscriber.email_key.not_in(EXPECTED["store"]["unsubscribed"]),
            )
        ).all()
        assert set(others) == {"active"}


@pytest.mark.parametrize("name", EXPECTED["store"]["ignored"] + EXPECTED["store"]["no_failure"])
def test_auto_replies_and_success_notices_change_nothing(
    store: Store, config: Config, name: str
) -> None:
    seed_sent_issue(store, config, corpus_addresses())
    with store.Session() as session:
        events = session.scalar(select(func.count()).select_from(Event))
    results = handle(store, config, fill(store, config, (CORPUS / name).read_bytes()))
    assert [r.kind for r in results] == [None]
    assert results[0].action.startswith("ignored" if name.startswith("n") else "none")
    with store.Session() as session:
        assert session.scalar(select(func.count()).select_from(Bounce)) == 0
        assert session.scalar(select(func.count()).select_from(Event)) == events
        assert set(session.scalars(select(Subscriber.status)).all()) == {"active", "unsubscribed"}


def _corpus_maildir(store: Store, config: Config, tmp_path: Path) -> Path:
    import mailbox

    box = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    for path in sorted(CORPUS.glob("*.eml")):
        box.add(fill(store, config, path.read_bytes()))
    box.close()
    return tmp_path / "bounces"


def test_processing_the_mailbox_twice_changes_nothing_the_second_time(
    store: Store, config: Config, tmp_path: Path
) -> None:
    seed_sent_issue(store, config, corpus_addresses())
    folder = _corpus_maildir(store, config, tmp_path)
    dry = process_bounces(store, config, MaildirSource(folder), dry_run=True, now=NOW)
    with store.Session() as session:
        assert session.scalar(select(func.count()).select_from(Bounce)) == 0
    first = process_bounces(store, config, MaildirSource(folder), now=NOW)
    assert [r.as_dict() for r in first] == [r.as_dict() for r in dry]
    failures = sum(len(v) for v in REPORTS.values())
    assert sum(r.kind is not None for r in first) == failures
    with store.Session() as session:
        counts = (
            session.scalar(select(func.count()).select_from(Bounce)),
            session.scalar(select(func.count()).select_from(Event)),
            sorted(session.execute(select(Subscriber.email_key, Subscriber.status)).all()),
        )
    assert counts[0] == failures
    again = process_bounces(store, config, MaildirSource(folder), now=NOW + timedelta(days=1))
    assert {r.action for r in again if r.kind} == {"none: already processed"}
    with store.Session() as session:
        assert (
            session.scalar(select(func.count()).select_from(Bounce)),
            session.scalar(select(func.count()).select_from(Event)),
            sorted(session.execute(select(Subscriber.email_key, Subscriber.status)).all()),
        ) == counts
    statuses = dict(counts[2])
    for failures in REPORTS.values():
        for w in failures:
            if w["then"]:
                assert statuses[w["address"]] == w["then"], w


# --------------------------------------------------------------------------- scoring


def dsn(address: str, status: str, message_id: str, *, day: str = "19 Nov 2026") -> bytes:
    action = "delayed" if status.startswith("4") and "delay" in message_id else "failed"
    return (
        f"From: MAILER-DAEMON@mx.corp.test\nTo: {{VERP:{address}}}\n"
        f"Date: Thu, {day} 10:00:00 +0000\nSubject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: <{message_id}@mx.corp.test>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.corp.test\n\n"
        f"Final-Recipient: rfc822; {address}\nAction: {action}\nStatus: {status}\n\n--b--\n"
    ).encode()


def score(store: Store, address: str) -> tuple[float, str]:
    with store.Session() as session:
        person = subs.find_subscriber(session, address)
        assert person is not None
        return person.bounce_score, person.status


def test_hard_bounces_count_once_a_day_and_three_make_bounced(store: Store, config: Config) -> None:
    seed_sent_issue(store, config, ["ines@corp.test"])
    day = NOW
    handle(store, config, dsn("ines@corp.test", "5.2.1", "a1"), now=day)
    handle(store, config, dsn("ines@corp.test", "5.2.1", "a2"), now=day)  # same day
    assert score(store, "ines@corp.test") == (1.0, "active")
    results = handle(store, config, dsn("ines@corp.test", "5.2.1", "a3"), now=day)
    assert results[0].action == "noted: counted once today already"
    # a report dated another day but received today counts for today: Date can say anything
    handle(store, config, dsn("ines@corp.test", "5.2.1", "b0", day="22 Nov 2026"), now=day)
    assert score(store, "ines@corp.test") == (1.0, "active")
    handle(store, config, dsn("ines@corp.test", "5.2.1", "b1"), now=day + timedelta(days=1))
    assert score(store, "ines@corp.test") == (2.0, "active")
    result = handle(
        store,
        config,
        dsn("ines@corp.test", "5.2.1", "c1", day="21 Nov 2026"),
        now=day + timedelta(days=2),
    )
    assert result[0].action == "bounced"
    assert score(store, "ines@corp.test") == (3.0, "bounced")
    with store.Session() as session:
        person = subs.find_subscriber(session, "ines@corp.test")
        assert person is not None
        kinds = [(e.kind, e.actor, e.new_status) for e in person.events]
    assert kinds[-1] == ("status", "bounces", "bounced")
    assert [k for k in kinds if k[0] == "bounce"] == [("bounce", "bounces", None)] * 3


def test_soft_bounces_add_half_and_a_hard_one_the_same_day_adds_the_rest(
    store: Store, config: Config
) -> None:
    seed_sent_issue(store, config, ["joel@corp.test"])
    handle(store, config, dsn("joel@corp.test", "4.2.2", "s1"))
    assert score(store, "joel@corp.test") == (0.5, "active")
    handle(store, config, dsn("joel@corp.test", "5.1.1", "s2"))  # no such user: threshold 1
    assert score(store, "joel@corp.test") == (1.0, "bounced")


def test_delay_warnings_score_nothing(store: Store, config: Config) -> None:
    seed_sent_issue(store, config, ["kora@corp.test"])
    results = handle(store, config, dsn("kora@corp.test", "4.4.1", "delay1"))
    assert results[0].kind == "delayed" and results[0].action.startswith("noted")
    assert score(store, "kora@corp.test") == (0.0, "active")


def test_the_score_starts_again_after_the_reset_period(store: Store, config: Config) -> None:
    seed_sent_issue(store, config, ["liam@corp.test"])
    handle(
        store,
        config,
        dsn("liam@corp.test", "5.2.1", "r1", day="1 Sep 2026"),
        now=NOW - timedelta(days=80),
    )
    handle(
        store,
        config,
        dsn("liam@corp.test", "5.2.1", "r2", day="2 Sep 2026"),
        now=NOW - timedelta(days=79),
    )
    assert score(store, "liam@corp.test") == (2.0, "active")
    handle(store, config, dsn("liam@corp.test", "5.2.1", "r3"))  # 78 days later: starts at 0
    assert score(store, "liam@corp.test") == (1.0, "active")
    with store.Session() as session:
        details = session.scalars(select(Event.detail).where(Event.kind == "bounce-score")).all()
    assert len(details) == 1 and "reset" in details[0] and "30 days" in details[0]


def test_thresholds_come_from_the_config(
    store: Store, tmp_path: Path, database_url: str, send_env: str
) -> None:
    config = load_config(
        write_config(
            tmp_path / "strict.toml",
            database_url,
            BOUNCES_NEWSLETTER + "\n[bounces]\nbounce_threshold = 0.5\n",
        )
    )
    seed_sent_issue(store, config, ["mona@corp.test"])
    handle(store, config, dsn("mona@corp.test", "4.2.2", "t1"))
    assert score(store, "mona@corp.test") == (0.5, "bounced")


def test_reactivating_a_bounced_subscriber_clears_the_score(store: Store, config: Config) -> None:
    seed_sent_issue(store, config, ["nils@corp.test"])
    handle(store, config, dsn("nils@corp.test", "5.1.1", "x1"))
    assert score(store, "nils@corp.test") == (1.0, "bounced")
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["nils@corp.test"], resubscribe=True, allow_test_domains=True)
    assert score(store, "nils@corp.test") == (0.0, "active")


def test_refusals_at_send_time_are_hard_bounces() -> None:
    assert bn.is_recipient_refusal(Outcome("failed", 550, "5.1.1 no such user", "rcpt"))
    assert bn.is_recipient_refusal(Outcome("failed", 550, "5.2.1 mailbox disabled", "end"))
    assert not bn.is_recipient_refusal(Outcome("failed", 554, "5.7.1 spam", "end"))
    assert not bn.is_recipient_refusal(Outcome("failed", 553, "sender refused", "mail"))
    assert not bn.is_recipient_refusal(Outcome("deferred", 450, "4.2.0 later", "rcpt"))
    assert bn.refusal_status(Outcome("failed", 550, "5.1.1 <x>: unknown", "rcpt")) == "5.1.1"
    assert bn.refusal_status(Outcome("failed", 550, "no such user", "rcpt")) == "550"


def test_a_bounce_for_an_address_we_never_had_records_without_a_subscriber(
    store: Store, config: Config
) -> None:
    seed_sent_issue(store, config, ["olga@corp.test"])
    results = handle(store, config, dsn("stranger@else.test", "5.1.1", "u1"))
    assert [(r.address, r.action) for r in results] == [
        ("stranger@else.test", "none: no subscriber has this address")
    ]
    with store.Session() as session:
        row = session.scalars(select(Bounce)).one()
        assert row.subscriber_id is None and row.delivery_id is None


def test_purge_erases_the_persons_bounce_records(store: Store, config: Config) -> None:
    seed_sent_issue(store, config, ["pia@corp.test", "quin@corp.test"])
    handle(store, config, dsn("pia@corp.test", "4.2.2", "p1"))
    handle(store, config, dsn("quin@corp.test", "4.2.2", "q1"))
    with store.Session.begin() as session:
        subs.purge_subscriber(session, "pia@corp.test")
    with store.Session() as session:
        assert session.scalars(select(Bounce.address)).all() == ["quin@corp.test"]
