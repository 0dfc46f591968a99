"""Click counts ([tracking] clicks): the composer's counted links, the rows a send keeps,
a real send to the test SMTP server with the links followed through the web app, and
the archive keeping the links as written. SQLite and PostgreSQL.

The threats (forged tokens, open redirects) are tests/security/test_click_links.py."""

import dataclasses
import json
import re
from email import message_from_bytes, policy
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_server import SMTPServer
from sqlalchemy import select
from starlette.testclient import TestClient

from digest_mailer import db, send
from digest_mailer import subscribers as subs
from digest_mailer.archive.render import archive_draft
from digest_mailer.clicks.links import trackable
from digest_mailer.clicks.store import link_counts, record_links
from digest_mailer.composer import compose, compose_file
from digest_mailer.config import Config, TrackingConfig, load_config, parse_config
from digest_mailer.errors import ConfigError, SendRefused
from digest_mailer.models import LinkClick
from digest_mailer.source import parse_issue, read_issue
from digest_mailer.web import create_app

PUBLIC = "https://digest.transit-lab.test"
COUNTED = f"{PUBLIC}/r/"
VIEW = f"{PUBLIC}/archive/7.2/"
TRACKING = "\n[tracking]\nclicks = true\n"
KEY = SECRET.encode()

# every kind of link a draft has: query, fragment, unicode, a bare address, a repeat,
# mailto, a placeholder, a link to our own site, images (never rewritten)
DRAFT = """---
id: "7.2"
title: Links of every kind
preheader: Every kind of link, counted or not
image: https://img.example.org/hero.jpg
image_alt: A bus at a stop
image_credit: Photo Desk
image_credit_url: https://photos.example.org/desk?id=7&size=large
---

Read the [report](https://example.org/report?x=1&y=2#part-3) and the
[summary](https://example.org/summary), then the [report](https://example.org/report?x=1&y=2#part-3)
again. In Japanese: [資料](https://例え.jp/パス?q=ä&r=%E2%9C%93#節), and plainly
<https://bare.example.org/path?a=b>. The [older issue](https://digest.transit-lab.test/archive/7.1/),
an [http link](http://plain.example.org/a_(b)_c), a [placeholder](#) and
[the desk](mailto:desk@transit-lab.test?subject=Hello).

![A chart of journey times](https://img.example.org/chart.png)

---

"To receive Transit Policy Weekly by email, write to weekly@transit-lab.test."
"""


class Links(HTMLParser):
    """The hrefs and images of an HTML part, attribute values unescaped."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[dict[str, str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "a":
            self.hrefs.append(values.get("href", ""))
        elif tag == "img":
            self.images.append(values)


@pytest.fixture(autouse=True)
def _secret(send_env: str) -> None:
    """Counted links are signed with the secret of [newsletter] secret_env."""


def references(text: str) -> list[str]:
    return re.findall(r"^\[\d+\] (\S+)$", text, re.M)


def configs(tmp_path: Path, extra: str = "") -> tuple[Config, Config]:
    """The newsletter without and with click counts (the same otherwise)."""
    base = NEWSLETTER + "\n[subscribers]\nallow_test_domains = true\n" + extra
    off = parse_config(base, "off.toml", tmp_path)
    return off, dataclasses.replace(off, tracking=TrackingConfig(clicks=True))


def draft(tmp_path: Path, text: str = DRAFT, name: str = "vol-7.2.md") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


# --------------------------------------------------------------------------- config


def test_off_by_default_and_needs_public_url(tmp_path: Path) -> None:
    assert Config().tracking.clicks is False
    on = parse_config(NEWSLETTER + TRACKING, "c.toml", tmp_path)
    assert on.tracking.clicks is True
    with pytest.raises(ConfigError) as missing:
        parse_config(TRACKING, "c.toml", tmp_path)
    message = str(missing.value)
    assert "[tracking] clicks" in message and "[newsletter] public_url" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"\[tracking\] clicks must be true or false"):
        parse_config(NEWSLETTER + '\n[tracking]\nclicks = "yes"\n', "c.toml", tmp_path)
    with pytest.raises(ConfigError, match="unknown key 'opens'"):
        parse_config(NEWSLETTER + "\n[tracking]\nopens = true\n", "c.toml", tmp_path)
    example = Path(__file__).parent.parent / "config.example.toml"
    parsed = parse_config(example.read_text("utf-8"), str(example), example.parent)
    assert parsed.tracking.clicks is False


def test_lint_warns_when_counted_links_leave_the_from_domain(tmp_path: Path) -> None:
    from digest_mailer.lint import lint_config

    off, on = configs(tmp_path)
    assert not [f for f in lint_config(on) if f.code == "click-domain"]  # digest.<from domain>
    assert not [f for f in lint_config(off) if f.code == "click-domain"]
    other = dataclasses.replace(
        on, newsletter=dataclasses.replace(on.newsletter, public_url="https://links.elsewhere.test")
    )
    [finding] = [f for f in lint_config(other) if f.code == "click-domain"]
    assert "links.elsewhere.test" in finding.message and "transit-lab.test" in finding.message


# --------------------------------------------------------------------------- composing


def test_off_leaves_every_link_as_written(tmp_path: Path) -> None:
    off, _ = configs(tmp_path)
    explicit = parse_config(
        NEWSLETTER + "\n[tracking]\nclicks = false\n", "explicit.toml", tmp_path
    )
    for path in [draft(tmp_path), *sorted((DATA / "issues").iterdir())]:
        plain = compose_file(path, off)
        assert (plain.html, plain.text, plain.links) == (
            compose_file(path, explicit).html,
            compose_file(path, explicit).text,
            [],
        )
        assert "/r/" not in plain.html + plain.text and plain.original_text == plain.text


def test_on_counts_every_http_link_and_nothing_else(tmp_path: Path) -> None:
    off, on = configs(tmp_path)
    path = draft(tmp_path)
    plain, counted = compose_file(path, off), compose_file(path, on)
    before, after = Links(plain.html).hrefs, Links(counted.html).hrefs
    assert len(before) == len(after)
    kept = []
    for original, href in zip(before, after, strict=True):
        if href.startswith(COUNTED):
            assert trackable(original) and original != VIEW
        else:
            assert href == original
            kept.append(original)
    # left as written: the view link, mailto links, the unsubscribe placeholder
    assert kept == [
        VIEW,
        "mailto:desk@transit-lab.test?subject=Hello",
        "mailto:weekly@transit-lab.test?subject=subscribe",
        "%%UNSUBSCRIBE_URL%%",
    ]
    # one number per URL, in reading order: the credit first; a repeat is the same link
    assert counted.links == [
        "https://photos.example.org/desk?id=7&size=large",
        "https://example.org/report?x=1&y=2#part-3",
        "https://example.org/summary",
        "https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9?q=%C3%A4&r=%E2%9C%93#%E7%AF%80",
        "https://bare.example.org/path?a=b",
        "https://digest.transit-lab.test/archive/7.1/",
        "http://plain.example.org/a_(b)_c",
    ]
    counted_hrefs = [h for h in after if h.startswith(COUNTED)]
    assert len(set(counted_hrefs)) == len(counted.links) and len(counted_hrefs) == 8
    # images are never rewritten: the same sources as without counting
    assert Links(counted.html).images == Links(plain.html).images
    # the text part: every reference is a counted link; view and unsubscribe as written
    refs = references(counted.text)
    assert "mailto:desk@transit-lab.test?subject=Hello" in refs
    web = [r for r in refs if not r.startswith("mailto:")]
    assert all(r.startswith(COUNTED) for r in web)
    assert set(web) == set(counted_hrefs[1:])  # the image credit is written out instead
    assert f"Image source: Photo Desk <{counted_hrefs[0]}>" in counted.text
    assert f"View in your browser: {VIEW}" in counted.text
    assert "Unsubscribe: %%UNSUBSCRIBE_URL%%" in counted.text
    assert "https://bare.example.org/path?a=b [" in counted.text  # kept, and counted
    # deterministic; the fingerprint covers the counted links (and so the signing key)
    again = compose_file(path, on)
    assert (again.html, again.text, again.fingerprint) == (
        counted.html,
        counted.text,
        counted.fingerprint,
    )
    assert counted.fingerprint != plain.fingerprint
    other = compose(read_issue(path), on, secret=b"another-secret-0123456789abcdefXYZ")
    assert other.fingerprint != counted.fingerprint and other.links == counted.links


def test_the_archive_keeps_the_links_as_written(tmp_path: Path) -> None:
    off, on = configs(tmp_path)
    path = draft(tmp_path)
    plain, counted = compose_file(path, off), compose_file(path, on)
    page, page_off = archive_draft(counted, on), archive_draft(plain, off)
    assert (page.body_html, page.body_text) == (page_off.body_html, page_off.body_text)
    assert "/r/" not in page.body_html + page.body_text
    assert "https://example.org/report?x=1&amp;y=2#part-3" in page.body_html
    assert counted.original_text == plain.text


@pytest.mark.parametrize("tracking", [False, True])
@pytest.mark.parametrize("image", ["", "https://img.example.org/hero.jpg", f"{PUBLIC}/hero.png"])
def test_there_is_never_an_open_pixel(tmp_path: Path, tracking: bool, image: str) -> None:
    """No 1x1 image, no image on our own site with a token in it, whatever the config."""
    off, on = configs(tmp_path)
    config = on if tracking else off
    hero = "image: https://img.example.org/hero.jpg\n"
    text = DRAFT.replace(hero, f"image: {image}\n" if image else "")
    composed = compose_file(draft(tmp_path, text), config)
    images = Links(composed.html).images
    assert len(images) == (2 if image else 1)
    for img in images:
        assert img.get("width") not in ("0", "1") and img.get("height") not in ("0", "1")
        assert "/r/" not in img["src"] and "/u/" not in img["src"] and "?" not in img["src"]
        assert img["src"] in (image, "https://img.example.org/chart.png")
        tiny = r"(?i)(width|height)\s*:\s*[01](px)?\s*(;|$)"
        assert not re.search(tiny, img.get("style", ""))
    # our own site appears only in links (<a href>), never as something a client loads
    hrefs = Links(composed.html).hrefs
    ours = sum(h.startswith(PUBLIC) for h in hrefs) + (image.startswith(PUBLIC) and 1)
    assert composed.html.count(PUBLIC) == ours
    assert "background=" not in composed.html and "url(" not in composed.html


# --------------------------------------------------------------------------- the rows


def test_rows_at_start_resume_and_a_changed_link(tmp_path: Path, store: db.Store) -> None:
    _, on = configs(tmp_path)
    path = draft(tmp_path)
    first = compose_file(path, on)
    with store.Session.begin() as session:
        subs.add_subscribers(session, READERS, allow_test_domains=True)  # stay queued
        send.prepare_send(session, first, skip_test=True)
    with store.Session() as session:
        rows = link_counts(session, "7.2")
    assert [(r.link_number, r.url, r.clicks) for r in rows] == [
        (n, url, 0) for n, url in enumerate(first.links, 1)
    ]
    # the text changed during the send (--allow-changed): a new link at the end is added
    longer = compose_file(draft(tmp_path, DRAFT.replace("(#)", "(https://new.example.org/)")), on)
    with store.Session.begin() as session:
        plan = send.prepare_send(session, longer, allow_changed=True)
    assert plan.resuming
    with store.Session() as session:
        assert [r.url for r in link_counts(session, "7.2")] == longer.links
    # ...but a link that leads elsewhere now is refused: the mail already sent keeps its
    changed = compose_file(
        draft(tmp_path, DRAFT.replace("https://example.org/summary", "https://evil.test/")), on
    )
    with store.Session.begin() as session, pytest.raises(SendRefused) as refused:
        send.prepare_send(session, changed, allow_changed=True)
    assert "link(s) 3" in str(refused.value) and "[tracking] clicks = false" in str(refused.value)
    with store.Session() as session:
        assert [r.url for r in link_counts(session, "7.2")] == longer.links


# --------------------------------------------------------------------------- a real send

READERS = ["ana.lima@corp.test", "bjorn@corp.test", "chidi@corp.test"]


@pytest.fixture
def click_cli(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env) -> Cli:  # type: ignore[no-untyped-def]
    config = write_config(
        tmp_path / "config.toml",
        database_url,
        NEWSLETTER + TRACKING + smtp_section(smtp_server.port),
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    for address in READERS:
        cli.ok("subscribers", "add", address)
    cli.issue = str(draft(tmp_path))  # type: ignore[attr-defined]
    cli.url = database_url  # type: ignore[attr-defined]
    return cli


def _client(cli: Cli) -> tuple[TestClient, db.Store]:
    store = db.open_store(cli.url)  # type: ignore[attr-defined]
    app = create_app(store, load_config(cli.config), KEY)
    return TestClient(app, follow_redirects=False), store


def _counts(store: db.Store) -> dict[int, int]:
    with store.Session() as session:
        rows = session.scalars(select(LinkClick).where(LinkClick.issue_id == "7.2"))
        return {r.link_number: r.clicks for r in rows}


def _parts(data: bytes) -> tuple[str, str, str]:
    parsed = message_from_bytes(data, policy=policy.default)
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html, text, str(parsed["List-Unsubscribe"])


def test_a_real_send_counts_links_for_nobody_in_particular(
    click_cli: Cli, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    issue = click_cli.issue  # type: ignore[attr-defined]
    client, store = _client(click_cli)
    click_cli.ok("send", issue, "--test")
    [test_copy] = smtp_server.handler.received
    test_link = next(h for h in Links(_parts(test_copy.data)[0]).hrefs if h.startswith(COUNTED))
    assert client.get(test_link.removeprefix(PUBLIC)).status_code == 302  # staff check it
    assert sum(_counts(store).values()) == 1
    click_cli.ok("send", issue, "--yes")
    assert set(_counts(store).values()) == {0}  # the real send starts the counts at zero

    real = smtp_server.handler.received[1:]
    assert len(real) == 1 + len(READERS)
    untracked = dataclasses.replace(load_config(click_cli.config), tracking=TrackingConfig())
    plain = compose_file(Path(issue), untracked)
    original = Links(plain.html).hrefs
    bodies = set()
    for message in real:
        html, text, list_unsubscribe = _parts(message.data)
        hrefs = Links(html).hrefs
        counted = [h for h in hrefs if h.startswith(COUNTED)]
        assert len(counted) == 8
        # view online, mailto and unsubscribe as written; the unsubscribe link is personal
        assert VIEW in hrefs and "mailto:desk@transit-lab.test?subject=Hello" in hrefs
        assert any(h.startswith(f"{PUBLIC}/u/") for h in hrefs)
        assert "/r/" not in list_unsubscribe and f"{PUBLIC}/u/" in list_unsubscribe
        assert all(r.startswith((COUNTED, "mailto:")) for r in references(text))
        assert f"View in your browser: {VIEW}" in text
        # the same message for everyone but the unsubscribe link
        personal = re.compile(rf"{re.escape(PUBLIC)}/u/[^\"\s<]+")
        bodies.add((personal.sub("U", html), personal.sub("U", text)))
        # each counted link leads exactly where the draft's link does
        for href, target in zip(hrefs, original, strict=True):
            if href.startswith(COUNTED):
                reply = client.get(href.removeprefix(PUBLIC))
                assert reply.status_code == 302 and reply.headers["location"] == target
    assert len(bodies) == 1
    # every click counted once per request, per link; nothing per person
    counts = _counts(store)
    assert counts[2] == 2 * len(real) and counts[1] == len(real)  # the report twice a mail
    assert set(counts.values()) == {len(real), 2 * len(real)}
    link = next(h for h in Links(_parts(real[0].data)[0]).hrefs if h.startswith(COUNTED))
    head = client.head(link.removeprefix(PUBLIC))
    assert head.status_code == 302 and head.headers["location"] == counted_target(store, 1)
    assert _counts(store) == counts  # a HEAD (a link checker) counts nothing
    with store.Session() as session:
        row = session.get(LinkClick, ("7.2", 1))
        assert row is not None and row.first_at is not None and row.last_at >= row.first_at  # type: ignore[operator]
        assert set(LinkClick.__table__.c.keys()) == {
            "issue_id", "link_number", "url", "clicks", "first_at", "last_at",
        }  # fmt: skip

    # the archive shows the links as written, never a counted one
    page = client.get("/archive/7.2/")
    assert page.status_code == 200 and "/r/" not in page.text
    assert 'href="https://example.org/report?x=1&amp;y=2#part-3"' in page.text
    feed = client.get("/feed.atom")
    assert "/r/" not in feed.text and "example.org/report" in feed.text
    click_cli.ok("archive", "export", str(tmp_path / "site"))
    for exported in (tmp_path / "site").rglob("*.html"):
        assert "/r/" not in exported.read_text("utf-8")
    status = json.loads(click_cli.ok("status", "7.2", "--json").stdout)
    assert status["state"] == "sent"
    store.dispose()


def counted_target(store: db.Store, number: int) -> str:
    with store.Session() as session:
        row = session.get(LinkClick, ("7.2", number))
        assert row is not None
        return row.url


# --------------------------------------------------------------------------- property

_URL_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="<>\\\n\r"
)
_HOSTS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,6}){1,2}", fullmatch=True),
    st.text(alphabet="例え日本語üßé", min_size=1, max_size=6).map(lambda h: f"{h}.jp"),
)
URLS = st.builds(
    lambda scheme, host, path, query, fragment: f"{scheme}://{host}/{path}{query}{fragment}",
    st.sampled_from(["http", "https", "HTTPS"]),
    _HOSTS,
    st.text(_URL_CHARS, max_size=30),
    st.one_of(st.just(""), st.text(_URL_CHARS, max_size=20).map(lambda q: f"?{q}")),
    st.one_of(st.just(""), st.text(_URL_CHARS, max_size=10).map(lambda f: f"#{f}")),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(urls=st.lists(URLS, min_size=1, max_size=6))
def test_any_link_is_counted_and_leads_back_to_itself(
    tmp_path: Path, store: db.Store, urls: list[str]
) -> None:
    off, on = configs(tmp_path)
    body = "\n\n".join(f"Item {n}: [link {n}](<{url}>) and more." for n, url in enumerate(urls))
    text = f'---\nid: "p.1"\ntitle: Property\npreheader: p\n---\n\n{body}\n'
    source = lambda: parse_issue(text, tmp_path / "p.md")  # noqa: E731
    plain, counted = compose(source(), off), compose(source(), on, secret=KEY)
    with store.Session.begin() as session:
        send.record_issue(session, counted)
        record_links(session, "p.1", counted.links, fresh=True)
    client = TestClient(create_app(store, on, KEY), follow_redirects=False)
    before, after = Links(plain.html).hrefs, Links(counted.html).hrefs
    assert len(before) == len(after)
    for original, href in zip(before, after, strict=True):
        if href.startswith(COUNTED):
            reply = client.get(href.removeprefix(PUBLIC))
            assert reply.status_code == 302 and reply.headers["location"] == original
        else:  # left as written: only what is no http(s) link the redirect could carry
            assert href == original
            assert not trackable(original) or original == f"{PUBLIC}/archive/p.1/"
    for ref in references(counted.text):
        if ref.startswith(COUNTED):
            assert client.get(ref.removeprefix(PUBLIC)).headers["location"] in counted.links
    assert archive_draft(counted, on).body_html == archive_draft(plain, off).body_html
