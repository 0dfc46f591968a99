"""What an outside attacker tried against the request mailbox (a helper that saw only the
README), each turned into a test: nothing from outside changes a subscriber without proof."""

from pathlib import Path

import pytest
import support
from conftest import NEWSLETTER, write_config
from sqlalchemy import select

from digest_mailer import subscribers as subs
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.inbox import actions
from digest_mailer.models import Reply

OURS = "mx.transit-lab.test"


@pytest.fixture
def config(tmp_path: Path, database_url: str, send_env: str) -> Config:
    extra = NEWSLETTER + f'\n[inbox]\nauthserv_id = "{OURS}"\n'
    return load_config(write_config(tmp_path / "config.toml", database_url, extra))


@pytest.fixture
def people(store: Store) -> Store:
    with store.Session.begin() as session:
        subs.add_subscribers(
            session, ["victim@corp.test", "ana@corp.test"], allow_test_domains=True
        )
    return store


def handle(store: Store, config: Config, raw: bytes) -> actions.InboxResult:
    with store.Session.begin() as session:
        return actions.handle_message(session, actions.InboxContext(config), raw)


def status(store: Store, address: str) -> str | None:
    with store.Session() as session:
        person = subs.find_subscriber(session, address)
        return person.status if person else None


def replies_to(store: Store, address: str) -> list[str]:
    with store.Session() as session:
        return list(session.scalars(select(Reply.kind).where(Reply.address == address)))


def raw(head: str, body: str = "Please unsubscribe me.") -> bytes:
    return (head.strip().replace("\n", "\r\n") + "\r\n\r\n" + body + "\r\n").encode()


def test_a_forged_from_never_unsubscribes_the_victim(people: Store, config: Config) -> None:
    result = handle(
        people,
        config,
        raw("From: victim@corp.test\nSubject: unsubscribe\nMessage-ID: <a1@evil.test>"),
    )
    assert result.label == "unsubscribe" and status(people, "victim@corp.test") == "active"
    assert "asked the subscriber to confirm" in result.action
    assert replies_to(people, "victim@corp.test") == ["confirm_unsubscribe"]


@pytest.mark.parametrize(
    "results",
    [
        "dmarc=pass header.from=evil.test",  # our server passed another domain
        "dkim=pass header.d=evil.test; spf=pass smtp.mailfrom=evil.test",
        "dmarc=permerror header.from=corp.test",
        "none",
        # what the second attacker found: comments are the writer's own words, a parent
        # domain signs nothing of corp.test's, x- methods are not DMARC or DKIM
        "dkim=pass (header.d=corp.test) header.d=evil.test",
        "dkim=pass (dmarc=pass header.from=corp.test) header.d=evil.test",
        "spf=pass (mx.transit-lab.test: domain of dmarc=pass header.from=corp.test designates"
        " 192.0.2.1 as permitted sender) smtp.mailfrom=evil.test",
        "spf=pass (domain of dmarc=pass@evil.test designates 192.0.2.1) smtp.mailfrom=evil.test"
        " header.from=corp.test",
        "dkim=pass header.d=test",
        "dmarc=none header.from=corp.test; x-dmarc=pass header.from=corp.test",
        "x-dkim=pass header.d=corp.test",
        "dkim=pass (good signature; header.d=corp.test) header.d=evil.test",
    ],
)
def test_authentication_of_another_domain_is_no_proof(
    people: Store, config: Config, results: str
) -> None:
    message = raw(
        f"Authentication-Results: {OURS}; {results}\nFrom: victim@corp.test\nSubject: unsubscribe\nMessage-ID: <a2@evil.test>"
    )
    handle(people, config, message)
    assert status(people, "victim@corp.test") == "active"


def test_our_servers_pass_for_the_senders_domain_is_proof(people: Store, config: Config) -> None:
    message = raw(
        f"Authentication-Results: {OURS}; dkim=pass header.d=corp.test; dmarc=pass header.from=corp.test\nFrom: victim@corp.test\nSubject: unsubscribe\nMessage-ID: <a3@corp.test>"
    )
    result = handle(people, config, message)
    assert (
        result.action.startswith("unsubscribed")
        and status(people, "victim@corp.test") == "unsubscribed"
    )
    forged = raw(
        "Authentication-Results: evil.test; dmarc=pass header.from=corp.test\nFrom: ana@corp.test\nSubject: unsubscribe\nMessage-ID: <a4@evil.test>"
    )
    handle(people, config, forged)  # a header another server wrote is not ours
    assert status(people, "ana@corp.test") == "active"


@pytest.mark.parametrize(
    "sender_lines",
    [
        "From: victim@corp.test\nFrom: attacker@evil.test",  # two From headers
        "From: victim@corp.test, attacker@evil.test",  # two mailboxes
        "From: a <victim@corp.test> <attacker@evil.test>",
    ],
)
def test_an_ambiguous_sender_is_held(people: Store, config: Config, sender_lines: str) -> None:
    result = handle(
        people, config, raw(f"{sender_lines}\nSubject: unsubscribe\nMessage-ID: <a5@evil.test>")
    )
    assert result.label == "review" and status(people, "victim@corp.test") == "active"


def test_an_address_in_the_display_name_is_not_the_sender(people: Store, config: Config) -> None:
    result = handle(
        people,
        config,
        raw(
            "From: victim@corp.test <attacker@evil.test>\nSubject: unsubscribe\nMessage-ID: <a6@evil.test>"
        ),
    )
    assert result.address == "attacker@evil.test"
    assert status(people, "victim@corp.test") == "active"


def test_a_token_echoed_by_a_gateway_activates_nobody(people: Store, config: Config) -> None:
    token = "ab" * 16
    with people.Session.begin() as session:
        support.add_pending(session, {token: "new@corp.test"})
    notice = raw(
        f"From: Mail Gateway <gateway@corp.test>\nSubject: Message held: Confirm your subscription [token: {token}]\nMessage-ID: <g1@corp.test>",
        "Your message to new@corp.test was held by our content filter.",
    )
    result = handle(people, config, notice)
    assert result.label == "confirm" and "not the address" in result.action
    assert status(people, "new@corp.test") == "pending"
    reply = raw(
        f"From: new@corp.test\nSubject: Re: Confirm your subscription [token: {token}]\nMessage-ID: <g2@corp.test>",
        "yes",
    )
    assert handle(people, config, reply).action == "subscribed: confirmed"


def test_a_complained_address_gets_no_confirmation(people: Store, config: Config) -> None:
    with people.Session.begin() as session:
        subs.set_status(
            session, subs.get_subscriber(session, "victim@corp.test"), "complained", actor="test"
        )
    result = handle(
        people,
        config,
        raw(
            "From: victim@corp.test\nSubject: subscribe\nMessage-ID: <c1@evil.test>",
            "Please add me.",
        ),
    )
    assert "held for review" in result.action and replies_to(people, "victim@corp.test") == []
    assert status(people, "victim@corp.test") == "complained"


@pytest.mark.parametrize(
    "body",
    ["Please unsubscribe everyone at corp.test.", "Remove the whole team from your list, thanks."],
)
def test_a_request_for_everyone_is_held(people: Store, config: Config, body: str) -> None:
    message = raw(
        f"Authentication-Results: {OURS}; dmarc=pass header.from=corp.test\nFrom: ana@corp.test\nSubject: hello\nMessage-ID: <e1@corp.test>",
        body,
    )
    assert handle(people, config, message).label == "review"
    assert status(people, "ana@corp.test") == "active"


def test_an_unreadable_sender_address_is_held(people: Store, config: Config) -> None:
    message = b"From: M\xfcller <m\xfcller@corp.test>\r\nSubject: subscribe\r\nMessage-ID: <l1@corp.test>\r\n\r\nadd me\r\n"
    assert handle(people, config, message).label == "review"


def test_a_reused_message_id_does_not_hide_a_later_request(people: Store, config: Config) -> None:
    first = raw("From: attacker@evil.test\nSubject: hi\nMessage-ID: <dup-1@x.test>", "hello")
    later = raw(
        f"Authentication-Results: {OURS}; dmarc=pass header.from=corp.test\n"
        "From: ana@corp.test\nSubject: unsubscribe\nMessage-ID: <dup-1@x.test>"
    )
    handle(people, config, first)
    result = handle(people, config, later)
    assert (
        result.action.startswith("unsubscribed")
        and status(people, "ana@corp.test") == "unsubscribed"
    )
    assert handle(people, config, later).action == "none: already processed"
