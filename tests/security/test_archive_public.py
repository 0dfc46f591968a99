"""Threat: the public archive as a way in. An attacker shapes paths and Host headers to
get a redirect off the site, to reach an unpublished issue, or to make the server read
outside the archive; a hostile draft tries to put script or style into the pages or to
break the feed.

The only redirects are ``/archive`` and ``/archive/ID`` to the same path with a slash;
their Location is always a path on this site. Unpublished and unknown issues get the same
404 page. Whatever a draft holds, the pages carry no script or inline style, and the feed
stays well-formed."""

from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest
from conftest import NEWSLETTER, SECRET, write_config
from starlette.testclient import TestClient

from digest_mailer.archive.render import ArchiveDraft, archive_draft
from digest_mailer.archive.store import record, set_published
from digest_mailer.composer import compose_file
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.models import Issue
from digest_mailer.web import HEADERS, create_app

HOSTS = ("evil.test", "evil.test:8080", "127.0.0.1")
HOSTILE = """---
id: "x1"
title: 'Hello <script>alert(1)</script> "quoted" <b onmouseover=alert(2)>'
date: 1 March 2026
---

A [link](javascript:alert(3)) and [another](https://ok.test/?a=<b>&c="d") and
<img src=x onerror=alert(4)> and <style>body{display:none}</style> and \x0b control.

<script>alert(5)</script>
"""


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


@pytest.fixture
def client(store: Store, config: Config, tmp_path: Path) -> TestClient:
    hostile = tmp_path / "hostile.md"
    hostile.write_text(HOSTILE, "utf-8")
    drafts = [
        ("pub", ArchiveDraft("pub", "Published", "s", "1", "d", "desc", ["h"], "<p>a</p>", "a")),
        ("hidden", ArchiveDraft("hidden", "Secret", "s", "2", "d", "desc", [], "<p>b</p>", "b")),
    ]
    with store.Session.begin() as session:
        for issue_id, draft in drafts:
            session.add(Issue(id=issue_id, subject="s", fingerprint="f"))
            session.flush()
            record(session, draft, publish=True, when=datetime(2026, 1, 1, tzinfo=UTC))
        set_published(session, "hidden", False)
        composed = compose_file(hostile, config)
        session.add(Issue(id=composed.issue_id, subject=composed.subject, fingerprint="f"))
        session.flush()
        record(session, archive_draft(composed, config), publish=True, when=datetime.now(UTC))
    return TestClient(create_app(store, config, SECRET.encode()), follow_redirects=False)


def _elements(html: str) -> tuple[set[str], list[tuple[str, str]]]:
    """The element names and (attribute, value) pairs a browser's parser would see."""

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: set[str] = set()
            self.attributes: list[tuple[str, str]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.add(tag)
            self.attributes += [(k, v or "") for k, v in attrs]

    parser = Collect()
    parser.feed(html)
    return parser.tags, parser.attributes


def test_only_same_site_redirects_whatever_the_host(client: TestClient) -> None:
    for host in HOSTS:
        for path, where in (("/archive", "/archive/"), ("/archive/pub", "/archive/pub/")):
            reply = client.get(path, headers={"Host": host})
            assert reply.status_code == 308 and reply.headers["location"] == where
            assert "evil.test" not in reply.text
            for name, value in HEADERS.items():
                assert reply.headers.get(name) == value, (path, name)
        for path in (
            "//archive/",
            "/archive//",
            "/archive///evil.test/",
            "/archive/%2F%2Fevil.test",
            "/archive/%2F%2Fevil.test/",
            "/archive/..%2F..%2Fetc/",
            "/archive/../",
            "/archive/" + "x" * 5000,
            "/archive/" + "x" * 5000 + "/",
        ):
            reply = client.get(path, headers={"Host": host})
            assert not 300 <= reply.status_code < 400 or reply.headers["location"].startswith(
                "/archive/"
            ), path
            assert "evil.test" not in reply.headers.get("location", ""), path


def test_unpublished_and_unknown_issues_are_the_same_404(client: TestClient) -> None:
    assert client.get("/archive/pub/").status_code == 200
    hidden, unknown = client.get("/archive/hidden/"), client.get("/archive/nope/")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.content == unknown.content
    index, feed = client.get("/archive/").text, client.get("/feed.atom").text
    assert "Secret" not in index and "Secret" not in feed and "hidden" not in feed
    for method in ("POST", "PUT", "DELETE"):
        assert client.request(method, "/archive/pub/").status_code in (404, 405)


def test_a_hostile_draft_cannot_script_style_or_break_the_feed(client: TestClient) -> None:
    page = client.get("/archive/x1/")
    assert page.status_code == 200
    html = page.text
    tags, attributes = _elements(html)
    assert not {"script", "style", "iframe", "object", "embed", "base"} & tags, tags
    assert not [a for a in attributes if a[0].startswith("on") or a[0] == "style"], attributes
    urls = [v.lower().strip() for k, v in attributes if k in ("href", "src", "action")]
    assert not [u for u in urls if u.startswith(("javascript:", "data:", "vbscript:"))], urls
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the title is shown, escaped
    feed = feedparser.parse(client.get("/feed.atom").content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert {e.link.rstrip("/").rsplit("/", 1)[1] for e in feed.entries} == {"pub", "x1"}
