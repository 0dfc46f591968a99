"""Threat: someone holding a reader's unsubscribe link (a forwarded issue, a shared
inbox) resubscribes the reader, or reactivates an address that staff removed, that
bounced or that complained.

Resubscribe is an undo only: the button after an unsubscribe on the page carries a signed
undo token for that very unsubscribe, valid 30 minutes, and works only while that
unsubscribe is the subscriber's latest change of status."""

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import NEWSLETTER, SECRET, write_config
from starlette.testclient import TestClient

from digest_mailer import subscribers as subs
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.models import utcnow
from digest_mailer.tokens import make_token
from digest_mailer.web import create_app, read_undo_token, undo_token

OTHER_SECRET = "another-secret-7d1e0c9b8a7f6e5d4c3b2a19"
PEOPLE = ["jo@corp.test", "kai@corp.test", "ana@corp.test"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


class Reader(NamedTuple):
    id: int
    url: str  # the unsubscribe link of the reader's messages (its path)


@pytest.fixture
def people(store: Store) -> dict[str, Reader]:
    with store.Session.begin() as session:
        subs.add_subscribers(session, PEOPLE, allow_test_domains=True)
        return {
            p.email: Reader(
                p.id, f"/u/{make_token(SECRET.encode(), 'unsubscribe', p.id, p.link_salt)}"
            )
            for p in subs.list_subscribers(session)
        }


def web(store: Store, config: Config, secret: str = SECRET, later: timedelta | None = None):  # type: ignore[no-untyped-def]
    """The pages; ``later``: as if that much time had passed."""
    clock: Callable[[], datetime] = utcnow
    if later is not None:
        clock = lambda: utcnow() + later  # noqa: E731
    return TestClient(create_app(store, config, secret.encode(), clock=clock))


def undo_of(page: str) -> str | None:
    found = re.search(r'name="undo" value="([^"]+)"', page)
    return found.group(1) if found else None


def unsubscribe(client: TestClient, reader: Reader) -> str:
    """Unsubscribes on the page; the undo token its Resubscribe button carries."""
    page = client.post(reader.url, data={"action": "unsubscribe"})
    assert page.status_code == 200 and "You are unsubscribed" in page.text
    undo = undo_of(page.text)
    assert undo is not None and 'value="resubscribe"' in page.text
    return undo


def resubscribe(client: TestClient, reader: Reader, undo: str | None) -> int:
    data = {"action": "resubscribe"} if undo is None else {"action": "resubscribe", "undo": undo}
    reply = client.post(reader.url, data=data)
    if reply.status_code == 410:
        assert "This link has expired" in reply.text and "weekly@transit-lab.test" in reply.text
    else:
        assert reply.status_code == 200 and "Welcome back" in reply.text
    return reply.status_code


def status_of(store: Store, address: str) -> str:
    with store.Session() as session:
        return subs.get_subscriber(session, address).status


def history(store: Store, address: str) -> list[tuple[str | None, str]]:
    with store.Session() as session:
        person = subs.get_subscriber(session, address)
        return [(e.new_status, e.actor) for e in person.events if e.new_status][1:]


def test_the_undo_works_for_30_minutes(
    store: Store, config: Config, people: dict[str, Reader]
) -> None:
    client = web(store, config)
    jo, kai = people["jo@corp.test"], people["kai@corp.test"]
    undo_jo, undo_kai = unsubscribe(client, jo), unsubscribe(client, kai)
    assert resubscribe(web(store, config, later=timedelta(minutes=29)), jo, undo_jo) == 200
    assert status_of(store, "jo@corp.test") == "active"
    assert history(store, "jo@corp.test") == [("unsubscribed", "web"), ("active", "web")]
    assert resubscribe(web(store, config, later=timedelta(minutes=31)), kai, undo_kai) == 410
    assert status_of(store, "kai@corp.test") == "unsubscribed"
    # once it is too late the page offers no button at all
    late = web(store, config, later=timedelta(minutes=31))
    page = late.post(kai.url, data={"action": "unsubscribe"})
    assert "You are unsubscribed" in page.text and undo_of(page.text) is None


def test_resubscribe_without_an_undo_changes_nothing(
    store: Store, config: Config, people: dict[str, Reader]
) -> None:
    client = web(store, config)
    jo, kai = people["jo@corp.test"], people["kai@corp.test"]
    client.post(jo.url, data={"action": "unsubscribe"})  # jo: on the page, just now
    with store.Session.begin() as session:  # kai: removed by staff long ago
        subs.remove_subscriber(session, "kai@corp.test", reason="asked by phone")
    for person in (jo, kai):
        for undo in (None, "", "0.0." + "A" * 24, "x" * 5000):
            assert resubscribe(client, person, undo) == 410
    assert status_of(store, "jo@corp.test") == status_of(store, "kai@corp.test") == "unsubscribed"
    # the RFC 8058 one-click POST never resubscribes, whatever else its body says
    client.post(jo.url, data={"List-Unsubscribe": "One-Click", "action": "resubscribe"})
    assert status_of(store, "jo@corp.test") == "unsubscribed"


def test_a_foreign_forged_or_reused_undo_is_refused(
    store: Store, config: Config, people: dict[str, Reader]
) -> None:
    client = web(store, config)
    jo, kai = people["jo@corp.test"], people["kai@corp.test"]
    undo_jo, undo_kai = unsubscribe(client, jo), unsubscribe(client, kai)
    event, minute = read_undo_token(SECRET.encode(), kai.id, undo_kai)  # type: ignore[misc]
    head, _, signature = undo_kai.rpartition(".")
    for undo in [
        undo_jo,  # jo's undo on kai's link
        undo_token(OTHER_SECRET.encode(), kai.id, event, minute),  # another secret's
        undo_token(SECRET.encode(), kai.id, event, minute + 1),  # a later minute, no signature
        f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",  # altered
        f"0{undo_kai}",  # not canonical
        f"{undo_kai}\n",
    ]:
        assert resubscribe(client, kai, undo) == 410, undo
    assert status_of(store, "kai@corp.test") == "unsubscribed"
    assert resubscribe(client, kai, undo_kai) == 200
    assert status_of(store, "kai@corp.test") == "active"
    # used once: a second use, or a use after the next unsubscribe, does nothing
    assert resubscribe(client, kai, undo_kai) == 410
    undo_again = unsubscribe(client, kai)
    assert undo_again != undo_kai and resubscribe(client, kai, undo_kai) == 410
    assert status_of(store, "kai@corp.test") == "unsubscribed"
    assert status_of(store, "jo@corp.test") == "unsubscribed"


def test_a_rotated_secret_still_takes_the_undo(
    store: Store, config: Config, people: dict[str, Reader]
) -> None:
    jo = people["jo@corp.test"]
    undo = unsubscribe(web(store, config), jo)
    rotated = web(store, config, secret=f"{OTHER_SECRET} {SECRET}")  # a new first secret
    assert resubscribe(rotated, jo, undo) == 200
    assert status_of(store, "jo@corp.test") == "active"


@pytest.mark.parametrize(
    ("then", "actor"),
    [("bounced", "bounces"), ("complained", "bounces"), ("unsubscribed", "cli")],
)
def test_no_undo_after_staff_a_bounce_or_a_complaint(
    store: Store, config: Config, people: dict[str, Reader], then: str, actor: str
) -> None:
    client = web(store, config)
    jo = people["jo@corp.test"]
    undo = unsubscribe(client, jo)
    with store.Session.begin() as session:
        person = subs.get_subscriber(session, "jo@corp.test")
        if then == "unsubscribed":  # back on, then removed by staff: a later decision
            subs.set_status(session, person, "active", actor="cli", detail="added back")
            subs.remove_subscriber(session, "jo@corp.test", reason="asked by phone")
        else:
            subs.set_status(session, person, then, actor=actor, detail=f"{then} (test)")
    assert resubscribe(client, jo, undo) == 410
    assert status_of(store, "jo@corp.test") == then
    # and no unsubscribe on the page now offers an undo of that
    page = client.post(jo.url, data={"action": "unsubscribe"})
    assert undo_of(page.text) is None and status_of(store, "jo@corp.test") == then


def test_a_one_click_unsubscribe_offers_no_undo(
    store: Store, config: Config, people: dict[str, Reader]
) -> None:
    client = web(store, config)
    ana = people["ana@corp.test"]
    reply = client.post(ana.url, content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert reply.text == "Unsubscribed.\n"
    page = client.post(ana.url, data={"action": "unsubscribe"})
    assert "You are unsubscribed" in page.text and undo_of(page.text) is None
    assert 'value="resubscribe"' not in page.text  # no button at all
    assert resubscribe(client, ana, None) == 410
    assert status_of(store, "ana@corp.test") == "unsubscribed"


def test_staff_removing_a_reader_already_unsubscribed_ends_the_undo(
    store: Store, config: Config, people: dict[str, Reader]
) -> None:
    """Jo unsubscribes on the page; staff then record "legal: do not contact" for the
    already unsubscribed Jo. The Resubscribe button must not undo that decision."""
    client = web(store, config)
    jo = people["jo@corp.test"]
    undo = unsubscribe(client, jo)
    with store.Session.begin() as session:
        _, changed = subs.remove_subscriber(session, "jo@corp.test", reason="legal: do not contact")
    assert changed is False  # the status was already unsubscribed
    assert resubscribe(client, jo, undo) == 410
    assert status_of(store, "jo@corp.test") == "unsubscribed"
    with store.Session() as session:
        person = subs.get_subscriber(session, "jo@corp.test")
        assert person.unsubscribe_reason == "legal: do not contact"
        assert person.events[-1].actor == "cli"
