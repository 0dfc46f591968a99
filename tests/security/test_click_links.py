"""Threat: ``/r/TOKEN`` ([tracking] clicks) used as an open redirect, or to count, or to
lead to a URL nobody put in an issue.

The Location of a redirect only ever comes from a ``link_clicks`` row (an http(s) URL
recorded when the issue was sent), and only for a token we signed for that very issue,
link number and URL. A forged, altered, truncated, overlong, cross-issue or replayed token
(one signed for another URL) gets the 404 page every other bad token gets, with no
Location. A HEAD counts nothing; a count that cannot be written still redirects; a link
whose URL cannot be read does not. SQLite and PostgreSQL."""

import logging
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import NEWSLETTER, SECRET, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from digest_mailer import db
from digest_mailer.clicks.links import (
    MAX_TOKEN,
    LinkTracker,
    click_token,
    read_link,
    token_matches,
)
from digest_mailer.clicks.store import link_counts, record_links
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.models import Issue, LinkClick, utcnow
from digest_mailer.web import HEADERS, create_app
from digest_mailer.web import clicks as web_clicks

KEY = SECRET.encode()
OLD = b"an-older-secret-still-verifying-0123456789"
LINKS = {
    "3.1": ["https://example.org/report?x=1&y=2#part-3", "https://example.org/summary"],
    "9.9": ["https://example.org/report?x=1&y=2#part-3", "https://other.example.org/"],
    "ü/…": ["https://example.org/unicode-issue"],
}


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    extra = NEWSLETTER + "\n[tracking]\nclicks = true\n"
    return load_config(write_config(tmp_path / "config.toml", database_url, extra))


def _issue(issue_id: str) -> Issue:
    now = utcnow()
    return Issue(
        id=issue_id, subject="s", fingerprint="f" * 64, state="sending", skipped_test=False,
        note="", created_at=now, updated_at=now,
    )  # fmt: skip


@pytest.fixture
def issues(store: Store) -> Store:
    with store.Session.begin() as session:
        for issue_id, links in LINKS.items():
            session.add(_issue(issue_id))
            session.flush()
            record_links(session, issue_id, links, fresh=True)
        session.add(_issue("bad"))
        session.flush()  # a row no send writes: a URL the redirect must never answer with
        session.execute(
            insert(LinkClick.__table__),
            [{"issue_id": "bad", "link_number": 1, "url": "javascript:alert(1)", "clicks": 0}],
        )
    return store


@pytest.fixture
def client(issues: Store, config: Config) -> TestClient:
    # two secrets: the first signs, both verify (rotation)
    secret = KEY + b" " + OLD
    return TestClient(create_app(issues, config, secret), follow_redirects=False)


def token(issue_id: str, number: int, secret: bytes = KEY) -> str:
    return click_token(secret, issue_id, number, LINKS[issue_id][number - 1])


def clicks(store: Store, issue_id: str) -> list[int]:
    with store.Session() as session:
        return [row.clicks for row in link_counts(session, issue_id)]


def not_found(reply: httpx.Response) -> bool:
    """The plain 404 page, with no Location and every security header."""
    return (
        reply.status_code == 404
        and "location" not in reply.headers
        and all(reply.headers.get(k) == v for k, v in HEADERS.items())
    )


def test_a_signed_token_counts_and_redirects_exactly(client: TestClient, issues: Store) -> None:
    for issue_id, links in LINKS.items():
        for number, url in enumerate(links, 1):
            reply = client.get(f"/r/{token(issue_id, number)}")
            assert reply.status_code == 302 and reply.headers["location"] == url
            assert reply.headers["cache-control"] == "no-store"
            assert reply.headers["referrer-policy"] == "no-referrer"
    assert clicks(issues, "3.1") == [1, 1]
    again = client.get(f"/r/{token('3.1', 1, OLD)}")  # signed before a rotation
    assert again.headers["location"] == LINKS["3.1"][0]
    assert clicks(issues, "3.1") == [2, 1]
    head = client.head(f"/r/{token('3.1', 2)}")
    assert head.status_code == 302 and head.headers["location"] == LINKS["3.1"][1]
    assert clicks(issues, "3.1") == [2, 1]  # a link checker's HEAD counts nothing
    slash = client.get(f"/r/{token('3.1', 2)}/")
    assert slash.headers["location"] == LINKS["3.1"][1]
    assert clicks(issues, "3.1") == [2, 2]


def test_forged_altered_truncated_and_foreign_tokens_are_404(
    client: TestClient, issues: Store
) -> None:
    good = token("3.1", 1)
    issue_part, number, signature = good.split(".")
    other_issue = token("9.9", 1).split(".")[0]
    bad = {
        "another secret": token("3.1", 1, b"not-our-secret-0123456789abcdefghij"),
        "another number": f"{issue_part}.2.{signature}",
        "another issue, same URL": f"{other_issue}.{number}.{signature}",
        "another URL": click_token(KEY, "3.1", 1, "https://evil.test/"),
        "a link that was never recorded": click_token(KEY, "3.1", 3, "https://evil.test/"),
        "an unknown issue": click_token(KEY, "0.0", 1, LINKS["3.1"][0]),
        "a stored URL that is no http(s)": click_token(KEY, "bad", 1, "javascript:alert(1)"),
        "padding": f"{issue_part}=.{number}.{signature}",
        "a leading zero": f"{issue_part}.0{number}.{signature}",
        "number zero": f"{issue_part}.0.{signature}",
        "no issue": f".{number}.{signature}",
        "extra part": f"{good}.x",
        "a prefix": f"x{good}",
        "other separators": good.replace(".", "-"),
        "huge": "A" * 5000,
        "huge but well formed": f"{'A' * 2000}.1.{signature}",
        "unicode": good + "ü",
        "empty signature": f"{issue_part}.{number}.",
    }  # fmt: skip
    for i in range(len(signature)):  # every character of the signature, changed
        flipped = "B" if signature[i] == "A" else "A"
        bad[f"signature char {i}"] = f"{issue_part}.{number}.{signature[:i]}{flipped}{signature[i + 1:]}"  # fmt: skip
    for cut in range(1, len(good)):
        bad[f"truncated to {cut}"] = good[:cut]
    for name, value in bad.items():
        assert value != good
        reply = client.get(f"/r/{quote(value, safe='')}")
        assert not_found(reply), name
        head = client.head(f"/r/{quote(value, safe='')}")
        assert head.status_code == 404 and "location" not in head.headers, name
    assert clicks(issues, "3.1") == [0, 0] and clicks(issues, "9.9") == [0, 0]
    for path in ("/r/", "/r", "/r//", f"/r/{good}/x", f"/r/{good}?next=https://evil.test"):
        reply = client.get(path)
        if reply.status_code == 302:  # a query is not the token's: the stored URL still
            assert reply.headers["location"] == LINKS["3.1"][0], path
        else:
            assert not_found(reply), path
    assert client.post(f"/r/{good}").status_code == 404  # only GET and HEAD
    assert clicks(issues, "3.1") == [1, 0]


def test_the_one_canonical_form() -> None:
    # stray bits in the last base64 character: the same bytes, not the same token
    good = click_token(KEY, "3.10", 1, "https://example.org/")
    issue_part, rest = good.split(".", 1)
    assert read_link(good) == ("3.10", 1)
    stray = issue_part[:-1] + chr(ord(issue_part[-1]) + 1)
    assert read_link(f"{stray}.{rest}") is None
    assert read_link("A" * (MAX_TOKEN + 1)) is None
    eleventh = click_token(KEY, "3.10", 11, "https://example.org/")
    assert eleventh.split(".")[1] == "b" and read_link(eleventh) == ("3.10", 11)
    assert read_link(eleventh.replace(".b.", ".B.")) is None
    invalid_utf8 = "_w"  # 0xff
    assert read_link(f"{invalid_utf8}.1.{rest.split('.')[1]}") is None
    assert not token_matches(KEY, good, "3.10", 2, "https://example.org/")
    assert not token_matches(KEY, good, "3.10", 1, "https://example.org/?")
    with pytest.raises(ValueError):
        click_token(KEY, "3.1", 0, "https://example.org/")
    # no recipient in a link: every reader gets the same one
    one, two = (LinkTracker("https://d.test", KEY, "3.1") for _ in range(2))
    assert one.url("https://example.org/a") == two.url("https://example.org/a")
    for kept in ("mailto:a@b.test", "#", "", "/relative", "ftp://x.test/", "javascript:x()"):
        assert one.url(kept) == kept
    assert one.links == ["https://example.org/a"]


# --------------------------------------------------------------------------- failures


def test_a_count_that_fails_still_redirects_and_is_logged(
    client: TestClient, issues: Store, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:  # type: ignore[no-untyped-def]
    def broken(*args: object) -> bool:
        raise OperationalError("UPDATE link_clicks", {}, Exception("database is locked"))

    monkeypatch.setattr(web_clicks, "count_click", broken)
    with caplog.at_level(logging.ERROR, logger="digest_mailer.web.clicks"):
        reply = client.get(f"/r/{token('3.1', 1)}")
    assert reply.status_code == 302 and reply.headers["location"] == LINKS["3.1"][0]
    assert "click on link 1 of issue 3.1 not counted" in caplog.text
    assert clicks(issues, "3.1") == [0, 0]


def test_a_database_that_cannot_be_read_gives_no_redirect(tmp_path: Path, config: Config) -> None:
    gone = db.open_store(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}", check=False)
    try:
        app = create_app(gone, config, KEY)
        reply = TestClient(app, raise_server_exceptions=False, follow_redirects=False).get(
            f"/r/{token('3.1', 1)}"
        )
    finally:
        gone.dispose()
    assert reply.status_code == 500 and "location" not in reply.headers


def test_concurrent_clicks_all_count(issues: Store, config: Config) -> None:
    routes = web_clicks.ClickRoutes(issues, KEY, pages=None)  # type: ignore[arg-type]
    threads = [
        threading.Thread(target=lambda: [routes._count("3.1", 2) for _ in range(10)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert clicks(issues, "3.1") == [0, 40]


# --------------------------------------------------------------------------- property

_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=%/~ü\0"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    random=st.one_of(
        st.text(alphabet=_TOKEN_CHARS, max_size=80),
        st.text(max_size=40),
    ),
)
def test_nothing_but_a_token_we_signed_redirects(
    client: TestClient, random: str, data: st.DataObject
) -> None:
    signed = {token(i, n): url for i, links in LINKS.items() for n, url in enumerate(links, 1)}
    # a random string, or a signed token with one character changed, cut or added
    base = data.draw(st.sampled_from(sorted(signed)))
    at = data.draw(st.integers(0, len(base)))
    char = data.draw(st.sampled_from(_TOKEN_CHARS))
    candidates = [
        random,
        base[:at] + char + base[at + 1 :],
        base[:at],
        base[:at] + char + base[at:],
    ]
    for candidate in candidates:
        reply = client.get(f"/r/{quote(candidate, safe='')}")
        if candidate in signed:
            assert reply.status_code == 302 and reply.headers["location"] == signed[candidate]
        else:
            assert 300 > reply.status_code or reply.status_code >= 400, candidate
            assert "location" not in reply.headers, candidate
