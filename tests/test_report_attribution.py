"""Which issue an unsubscribe is put down to, and the list's size week by week.

- The issue mark of an unsubscribe link (``?i=ISSUE.SIG``): signed for one reader, so a
  forged, altered, moved or stretched mark is put down to no issue, while the
  unsubscribe itself works exactly as without it; the token is still checked before
  any byte of the body is read.
- An unsubscribe by email: the last issue sent to that reader within 30 days before.
- The weekly list size, rebuilt in one pass over the events, against a brute-force
  reading of the same history (Hypothesis on the pure part; a random history in the
  store on each back end)."""

import random
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import anyio
import pytest
from conftest import NEWSLETTER, SECRET, write_config
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from starlette.testclient import TestClient

from digest_mailer import subscribers as subs
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.models import Delivery, Event, Issue, Subscriber
from digest_mailer.reports.across import weekly_list_size
from digest_mailer.reports.attribution import email_unsubscribers, link_unsubscribers
from digest_mailer.reports.issue import issue_report
from digest_mailer.reports.weekly import STATUSES, sizes_at, week_ends
from digest_mailer.send.envelope import unsubscribe_url
from digest_mailer.tokens import issue_mark, make_token, read_issue_mark
from digest_mailer.web import create_app

OLD = b"old-secret-4f0c1d9a8b7e6f5a4b3c2d1e0f9a8b7c"
NEW = b"new-secret-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- the mark


def test_a_mark_names_its_issue_for_its_reader_only() -> None:
    mark = issue_mark(NEW, "2.4", 7)
    assert mark.startswith("2.4.") and read_issue_mark(NEW, mark, 7) == "2.4"
    issue, _, signature = mark.rpartition(".")
    altered = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (
        f"2.5.{signature}",  # another issue, the same signature
        f"{issue}.{altered}",
        f"{issue}.{signature}x",
        f"{issue}.{signature[:-1]}",
        signature,
        f".{signature}",
        "",
        "2.4",
        issue_mark(OLD, "2.4", 7),  # a secret that is not ours
        issue_mark(NEW, "2.4", 8),  # another reader's
        f"{'x' * 500}.{signature}",
    ):
        assert read_issue_mark(NEW, bad, 7) is None, bad
    assert read_issue_mark(NEW, mark, 8) is None


def test_marks_survive_a_rotation_of_the_secret() -> None:
    old_mark = issue_mark(OLD, "vol-9", 3)
    both = NEW + b" " + OLD
    assert read_issue_mark(both, old_mark, 3) == "vol-9"
    assert issue_mark(both, "vol-9", 3) == issue_mark(NEW, "vol-9", 3)
    assert read_issue_mark(NEW, old_mark, 3) is None


@given(st.text(min_size=1, max_size=100).filter(lambda s: not any(c.isspace() for c in s)))
def test_any_issue_id_goes_through_the_link_and_back(issue_id: str) -> None:
    mark = issue_mark(NEW, issue_id, 42)
    assert read_issue_mark(NEW, mark, 42) == issue_id


def test_the_link_carries_the_mark_quoted(newsletter_config: Config) -> None:
    plain = unsubscribe_url(newsletter_config, NEW, 5, "a1b2")
    assert plain is not None and "?" not in plain
    url = unsubscribe_url(newsletter_config, NEW, 5, "a1b2", "Vol 3/ü")
    assert url is not None and url.startswith(f"{plain}?i=")
    assert url.isascii() and " " not in url and "/" not in urlsplit(url).query
    assert url.endswith(quote(issue_mark(NEW, "Vol 3/ü", 5), safe=""))
    # a very long non-ASCII id would stretch List-Unsubscribe: the link goes without it
    assert unsubscribe_url(newsletter_config, NEW, 5, "a1b2", "ü" * 100) == plain


# --------------------------------------------------------------------------- the web page


@pytest.fixture
def config(tmp_path, database_url: str) -> Config:  # type: ignore[no-untyped-def]
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


@pytest.fixture
def readers(store: Store) -> dict[str, Subscriber]:
    addresses = [f"p{i}@corp.test" for i in range(12)]
    with store.Session.begin() as session:
        subs.add_subscribers(session, addresses, allow_test_domains=True)
        session.add(Issue(id="3.1", subject="Vol 3.1", fingerprint="f" * 64, state="sent"))
        people = {p.email: p for p in subs.list_subscribers(session)}
        session.expunge_all()
    return people


def link(person: Subscriber, mark: str | None = None) -> str:
    token = make_token(SECRET.encode(), "unsubscribe", person.id, person.link_salt)
    return f"/u/{token}" + ("" if mark is None else f"?i={quote(mark, safe='')}")


def unsubscribe_event(store: Store, person: Subscriber) -> Event:
    with store.Session() as session:
        events = session.scalars(
            select(Event).where(
                Event.subscriber_id == person.id, Event.new_status == "unsubscribed"
            )
        ).all()
        assert len(events) == 1, events
        assert session.get(Subscriber, person.id).status == "unsubscribed"
        return events[0]


def test_the_signed_issue_is_recorded_by_page_and_one_click(
    store: Store, config: Config, readers: dict[str, Subscriber]
) -> None:
    client = TestClient(create_app(store, config, SECRET.encode()))
    secret = SECRET.encode()
    page_reader, one_click_reader = readers["p0@corp.test"], readers["p1@corp.test"]
    url = link(page_reader, issue_mark(secret, "3.1", page_reader.id))
    page = client.get(url)
    # the form has no action: it posts back to the very address, its ?i= included
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert client.post(url, data={"action": "unsubscribe"}).status_code == 200
    assert unsubscribe_event(store, page_reader).issue_id == "3.1"
    url = link(one_click_reader, issue_mark(secret, "3.1", one_click_reader.id))
    done = client.post(url, content=b"List-Unsubscribe=One-Click", headers=FORM)
    assert done.status_code == 200 and done.text == "Unsubscribed.\n"
    event = unsubscribe_event(store, one_click_reader)
    assert (event.issue_id, event.actor, event.detail) == (
        "3.1", "web", "one-click unsubscribe (RFC 8058)",
    )  # fmt: skip
    with store.Session() as session:
        found = link_unsubscribers(session, ["3.1"])
    assert found == {"3.1": {page_reader.id, one_click_reader.id}}


def test_forged_or_altered_marks_unsubscribe_but_name_no_issue(
    store: Store, config: Config, readers: dict[str, Subscriber]
) -> None:
    client = TestClient(create_app(store, config, SECRET.encode()))
    secret = SECRET.encode()
    people = iter(p for p in readers.values() if p.email != "p11@corp.test")

    def good(person: Subscriber, issue: str = "3.1") -> str:
        return issue_mark(secret, issue, person.id)

    cases = {
        "altered issue": lambda p: "3.2" + good(p)[3:],
        "altered signature": lambda p: good(p)[:-1] + ("A" if good(p)[-1] != "A" else "B"),
        "another reader's": lambda p: good(readers["p11@corp.test"]),
        "another secret": lambda p: issue_mark(b"not-our-secret-0123456789abcdef0123", "3.1", p.id),
        "no signature": lambda p: "3.1",
        "empty": lambda p: "",
        "stretched": lambda p: "9" * 5000 + "." + good(p).rpartition(".")[2],
        "missing": lambda p: None,
    }
    for name, make in cases.items():
        person = next(people)
        reply = client.post(link(person, make(person)), content=b"List-Unsubscribe=One-Click",
                            headers=FORM)  # fmt: skip
        assert reply.status_code == 200, name
        assert unsubscribe_event(store, person).issue_id is None, name
    person = next(people)  # two marks, one good: neither is believed
    twice = f"{link(person, good(person))}&i={quote(good(person), safe='')}"
    assert (
        client.post(twice, content=b"List-Unsubscribe=One-Click", headers=FORM).status_code == 200
    )
    assert unsubscribe_event(store, person).issue_id is None
    with store.Session() as session:
        assert link_unsubscribers(session, ["3.1", "3.2"]) == {}


def test_a_forged_token_with_a_good_mark_is_404_before_its_body_is_read(
    store: Store, config: Config, readers: dict[str, Subscriber]
) -> None:
    app = create_app(store, config, SECRET.encode())
    person = readers["p0@corp.test"]
    mark = quote(issue_mark(SECRET.encode(), "3.1", person.id), safe="")
    real = link(person)[3:]
    forged = real[:-1] + ("A" if real[-1] != "A" else "B")
    pulled = []

    async def receive() -> dict[str, object]:
        pulled.append(1)
        return {"type": "http.request", "body": b"List-Unsubscribe=One-Click", "more_body": False}

    answers: list[int] = []

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            answers.append(message["status"])  # type: ignore[arg-type]

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": f"/u/{forged}", "raw_path": f"/u/{forged}".encode(),
        "root_path": "", "query_string": f"i={mark}".encode(),
        "headers": [(b"content-type", FORM["Content-Type"].encode()), (b"content-length", b"26")],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    assert answers == [404] and pulled == []
    with store.Session() as session:
        assert session.get(Subscriber, person.id).status == "active"


# --------------------------------------------------------------------------- by email


def test_an_unsubscribe_by_email_goes_to_the_last_issue_sent_within_30_days(
    store: Store, readers: dict[str, Subscriber]
) -> None:
    people = list(readers.values())
    issues = {"A": T0, "B": T0 + timedelta(days=14), "C": T0 + timedelta(days=28)}
    deliveries = []
    events = []
    # (reader, [(issue, state)], days after T0 the request came) -> the issue it counts for
    story = [
        ([("A", "sent")], 3, "A"),
        ([("A", "sent"), ("B", "sent")], 20, "B"),  # the later of two
        ([("A", "sent"), ("B", "failed")], 20, "A"),  # a failed delivery is no delivery
        ([("A", "sent")], 31, None),  # 31 days after A: too late for it
        ([("A", "sent")], 29.9, "A"),
        ([("B", "sent"), ("C", "sent")], 27, "B"),  # C went out after the request
        ([], 5, None),  # never sent anything
    ]
    for person, (sent, after, _) in zip(people, story, strict=False):
        for issue, state in sent:
            deliveries.append(
                {"issue_id": issue, "subscriber_id": person.id, "address": person.email,
                 "state": state, "sent_at": issues[issue] if state == "sent" else None,
                 "queued_at": issues[issue], "updated_at": issues[issue]}
            )  # fmt: skip
        events.append(
            {"subscriber_id": person.id, "kind": "status", "old_status": "active",
             "new_status": "unsubscribed", "actor": "email-request",
             "detail": "unsubscribe request (email)", "created_at": T0 + timedelta(days=after)}
        )  # fmt: skip
    # a staff removal counts for no issue; an unsubscribe through a link without a mark
    # (the link in the mail confirming an emailed unsubscribe) follows the 30-day rule
    staff, unmarked = people[len(story)], people[len(story) + 1]
    for person, actor in ((staff, "cli"), (unmarked, "web")):
        deliveries.append(
            {"issue_id": "A", "subscriber_id": person.id, "address": person.email,
             "state": "sent", "sent_at": T0, "queued_at": T0, "updated_at": T0}
        )  # fmt: skip
        events.append(
            {"subscriber_id": person.id, "kind": "status", "old_status": "active",
             "new_status": "unsubscribed", "actor": actor, "detail": "",
             "created_at": T0 + timedelta(days=1)}
        )  # fmt: skip
    with store.Session.begin() as session:
        for issue, at in issues.items():
            session.add(Issue(id=issue, subject=issue, fingerprint="f" * 64, state="sent",
                              started_at=at, finished_at=at + timedelta(minutes=5)))  # fmt: skip
        session.flush()
        session.execute(insert(Delivery), deliveries)
        session.execute(insert(Event), events)
    expected: dict[str, set[int]] = {}
    for person, (_, _, issue) in zip(people, story, strict=False):
        if issue is not None:
            expected.setdefault(issue, set()).add(person.id)
    expected["A"].add(unmarked.id)
    with store.Session() as session:
        assert dict(email_unsubscribers(session, T0)) == expected
        for issue in issues:
            assert issue_report(session, issue)["unsubscribes"] == {
                "link": 0, "email": len(expected.get(issue, ())),
                "total": len(expected.get(issue, ())),
            }  # fmt: skip
        # the figures of an issue do not depend on the window a report looks at
        later = email_unsubscribers(session, T0 + timedelta(days=14))
        assert later.get("B") == expected["B"]


# --------------------------------------------------------------------------- weekly size


def brute_force(
    events: list[tuple[datetime, int, str]], ends: list[datetime]
) -> list[dict[str, int]]:
    out = []
    for end in ends:
        status: dict[int, str] = {}
        for at, who, new in events:
            if at < end:
                status[who] = new
        out.append({s: sum(v == s for v in status.values()) for s in STATUSES})
    return out


histories = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60 * 24 * 50),  # minutes after T0: 50 days
        st.integers(min_value=1, max_value=8),
        st.sampled_from(STATUSES),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(histories, st.integers(min_value=0, max_value=60 * 24 * 20))
def test_one_pass_agrees_with_brute_force(
    raw: list[tuple[int, int, str]], since_minutes: int
) -> None:
    events = sorted(
        ((T0 + timedelta(minutes=m), who, new) for m, who, new in raw), key=lambda e: e[0]
    )
    since = T0 + timedelta(minutes=since_minutes)
    now = T0 + timedelta(days=45)
    ends = week_ends(since, now)
    assert ends[-1] == now and all(a < b for a, b in zip(ends, ends[1:], strict=False))
    assert all(e.weekday() == 0 and e.hour == 0 for e in ends[:-1])
    assert sizes_at(iter(events), ends) == brute_force(events, ends)


def test_the_weekly_size_from_the_store_agrees_with_brute_force(
    store: Store, readers: dict[str, Subscriber]
) -> None:
    rng = random.Random(20261120)
    ids = [p.id for p in readers.values()]
    rows = []
    for _ in range(300):
        at = T0 + timedelta(minutes=rng.randrange(60 * 24 * 70))
        rows.append(
            {"subscriber_id": rng.choice(ids), "kind": "status", "actor": "test", "detail": "",
             "new_status": rng.choice(STATUSES), "created_at": at}
        )  # fmt: skip
    with store.Session.begin() as session:
        # (the readers were created now, after the weeks looked at: not counted)
        session.execute(insert(Event), rows)
        history = [
            (at, who, new)
            for at, who, new in session.execute(
                select(Event.created_at, Event.subscriber_id, Event.new_status)
                .where(Event.new_status.is_not(None))
                .order_by(Event.created_at, Event.id)
            )
        ]
    now = T0 + timedelta(days=60)
    with store.Session() as session:
        weeks = weekly_list_size(session, T0 + timedelta(days=10), now)
    ends = week_ends(T0 + timedelta(days=10), now)
    assert [w["end"] for w in weeks] == [e.isoformat() for e in ends]
    assert [w["counts"] for w in weeks] == brute_force(history, ends)
    assert [w["complete"] for w in weeks] == [True] * (len(weeks) - 1) + [False]
    assert weeks[0]["week"] == "2026-W37" and len(weeks) == 8


def test_a_reason_s_example_names_no_one() -> None:
    from digest_mailer.reports.issue import example_of

    assert example_of("550 5.1.1 <ana.b+x@corp.test>:\n  Recipient address rejected") == (
        "550 5.1.1 <***@corp.test>: Recipient address rejected"
    )
    assert example_of("user bo@mx.test unknown (ana@[192.0.2.1])") == (
        "user ***@mx.test unknown (***@[192.0.2.1])"
    )
    assert example_of(None) == "" and len(example_of("x " * 500)) == 120
