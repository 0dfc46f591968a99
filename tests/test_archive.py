"""The public archive: published when a real send starts, pages, feed, static export.

End to end through the CLI on SQLite and PostgreSQL (a real send to the test SMTP
server), then the pages through the web app, the feed through feedparser, the export on
real files. The pure parts (slugs, the site) get property tests with hostile ids, titles
and bodies.
"""

import json
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import feedparser
import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smtp_server import SMTPServer
from starlette.testclient import TestClient

from digest_mailer import db
from digest_mailer.archive.export import MARKER, export_archive
from digest_mailer.archive.paths import archive_slug, archive_url
from digest_mailer.archive.render import PublicIssue
from digest_mailer.archive.site import ArchiveSite
from digest_mailer.composer import compose_file
from digest_mailer.config import load_config
from digest_mailer.web import create_app

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
READERS = {
    "ana.lima@corp.test": "Ana Lima",
    "bjorn@corp.test": "Björn Öst",
    "chidi@corp.test": "Chidi Okafor",
}


@pytest.fixture
def archive_cli(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env) -> Cli:  # type: ignore[no-untyped-def]
    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(smtp_server.port)
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    for address, name in READERS.items():
        cli.ok("subscribers", "add", address, "--name", name)
    shutil.copy(ISSUE, tmp_path / "vol-3.1.txt")
    cli.issue = str(tmp_path / "vol-3.1.txt")  # type: ignore[attr-defined]
    cli.url = database_url  # type: ignore[attr-defined]
    return cli


def _client(cli: Cli) -> TestClient:
    config = load_config(cli.config)
    store = db.open_store(cli.url)  # type: ignore[attr-defined]
    return TestClient(create_app(store, config, SECRET.encode()))


def _archive(cli: Cli) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(cli.ok("archive", "list", "--json").stdout)


def test_a_test_send_never_publishes_a_real_send_does(
    archive_cli: Cli, smtp_server: SMTPServer
) -> None:
    issue = archive_cli.issue  # type: ignore[attr-defined]
    archive_cli.ok("send", issue, "--test")
    assert _archive(archive_cli) == []
    client = _client(archive_cli)
    assert client.get("/archive/3.1/").status_code == 404
    archive_cli.ok("send", issue, "--yes")
    [row] = _archive(archive_cli)
    assert (row["issue"], row["published"]) == ("3.1", True)

    index = client.get("/archive/")
    assert index.status_code == 200 and 'href="3.1/"' in index.text
    assert "Transit Policy Weekly" in index.text and "noindex" not in index.text
    assert 'rel="alternate" type="application/atom+xml"' in index.text
    page = client.get("/archive/3.1/")
    assert page.status_code == 200
    html = page.text
    canonical = "https://digest.transit-lab.test/archive/3.1/"
    assert f'<link rel="canonical" href="{canonical}">' in html
    assert f'<meta property="og:url" content="{canonical}">' in html
    assert re.search(r'<meta property="og:title" content="[^"]+">', html)
    assert re.search(r'<meta name="description" content="[^"]{20,}">', html)
    assert 'href="../"' in html and "Headlines" in html
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "style=" not in html and "<script" not in html
    # the links of the message: the same "View in your browser" for every recipient
    real = [m for m in smtp_server.handler.received if "[TEST]" not in m.message["Subject"]]
    assert len(real) == 1 + len(READERS)
    views = set()
    for message in real:
        parsed = message_from_bytes(message.data, policy=policy.default)
        text = parsed.get_body(("plain",)).get_content()
        html_part = parsed.get_body(("html",)).get_content()
        assert f"View in your browser: {canonical}" in text
        assert f'<a href="{canonical}"' in html_part
        views.add(re.search(r"View in your browser: (\S+)", text).group(1))  # type: ignore[union-attr]
    assert views == {canonical}


def test_nothing_personal_in_the_pages_feed_or_export(
    archive_cli: Cli, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    issue = archive_cli.issue  # type: ignore[attr-defined]
    archive_cli.ok("lists", "create", "board")
    for address in list(READERS)[:2]:
        archive_cli.ok("subscribers", "add", address, "--list", "board")
    archive_cli.ok("send", issue, "--test")
    archive_cli.ok("send", issue, "--yes", "--list", "board")
    assert [r["published"] for r in _archive(archive_cli)] == [True]
    client = _client(archive_cli)
    served = [client.get(p).text for p in ("/archive/", "/archive/3.1/", "/feed.atom")]
    archive_cli.ok("archive", "export", str(tmp_path / "site"))
    exported = [p.read_text("utf-8") for p in sorted((tmp_path / "site").rglob("*")) if p.is_file()]
    tokens = set()
    for message in smtp_server.handler.received:
        text = message_from_bytes(message.data, policy=policy.default).as_string()
        tokens.update(re.findall(r"/u/([A-Za-z0-9_.-]{10,})", text))
    assert tokens, "the messages carry unsubscribe tokens to look for"
    people = ["seed@corp.test", *READERS, *READERS.values(), "Lima", "Okafor"]
    for body in served + exported:
        for needle in [*people, *tokens, "/u/", "%%UNSUBSCRIBE"]:
            assert needle not in body, needle


def test_unpublish_publish_and_no_archive(
    archive_cli: Cli, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    issue = archive_cli.issue  # type: ignore[attr-defined]
    client = _client(archive_cli)
    # --no-archive: the test send must be of the same message (no "View in your browser")
    archive_cli.ok("send", issue, "--test")
    refused = archive_cli("send", issue, "--yes", "--no-archive")
    assert refused.exit_code == 4 and "--test --no-archive" in refused.stderr
    archive_cli.ok("send", issue, "--test", "--no-archive")
    archive_cli.ok("send", issue, "--yes", "--no-archive")
    assert [r["published"] for r in _archive(archive_cli)] == [False]
    assert client.get("/archive/3.1/").status_code == 404
    assert "<entry>" not in client.get("/feed.atom").text
    first_test, *no_archive = smtp_server.handler.received
    assert b"View in your browser" in first_test.data
    assert len(no_archive) == 2 + len(READERS)
    for message in no_archive:
        assert b"View in your browser" not in message.data
    assert "issue 3.1 published" in archive_cli.ok("archive", "publish", "3.1").stdout
    assert "already" in archive_cli.ok("archive", "publish", "3.1").stdout
    assert client.get("/archive/3.1/").status_code == 200
    archive_cli.ok("archive", "unpublish", "3.1")
    assert client.get("/archive/3.1/").status_code == 404
    unknown = archive_cli("archive", "publish", "9.9")
    assert unknown.exit_code != 0 and "no such issue" in unknown.stderr
    assert "Traceback" not in unknown.output


def test_feed_parses_and_lists_published_issues(archive_cli: Cli) -> None:
    issue = archive_cli.issue  # type: ignore[attr-defined]
    archive_cli.ok("send", issue, "--test")
    archive_cli.ok("send", issue, "--yes")
    client = _client(archive_cli)
    for path in ("/feed.atom", "/archive/feed.atom"):
        answer = client.get(path)
        assert answer.headers["content-type"].startswith("application/atom+xml")
        feed = feedparser.parse(answer.content)
        assert not feed.bozo, feed.get("bozo_exception")
        [entry] = feed.entries
        assert entry.link == "https://digest.transit-lab.test/archive/3.1/"
        assert entry.id.startswith("tag:transit-lab.test,")
        assert entry.summary and entry.content[0].value.startswith("<header")
        assert entry.updated_parsed and "Vol 3.1" in entry.title
    assert client.get("/archive", follow_redirects=False).status_code == 308
    assert client.get("/archive", follow_redirects=False).headers["location"] == "/archive/"


# --------------------------------------------------------------------------- pure parts


def _issue(n: int, **fields: object) -> PublicIssue:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=14 * n)
    values: dict[str, object] = {
        "issue_id": f"2.{n}",
        "title": f"Digest {n}",
        "subject": f"Digest {n}",
        "volume": f"2.{n}",
        "issue_date": when.strftime("%d %B %Y"),
        "description": f"Headline {n}",
        "headlines": [f"Headline {n}a", f"Headline {n}b"],
        "body_html": f"<p>Body {n}</p>",
        "body_text": f"Body {n}",
        "issued_at": when,
        "updated_at": when,
    }
    values.update(fields)
    return PublicIssue(**values)  # type: ignore[arg-type]


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text(NEWSLETTER, "utf-8")
    return load_config(path)


def test_pages_link_to_the_issues_before_and_after(config) -> None:  # type: ignore[no-untyped-def]
    issues = [_issue(3), _issue(2), _issue(1)]  # newest first
    site = ArchiveSite(config, "https://thinktank.test/digest/")
    middle = site.issue_page(issues, 1)
    assert 'href="../2.3/" rel="next"' in middle and 'href="../2.1/" rel="prev"' in middle
    assert 'href="../web.css"' in middle
    newest, oldest = site.issue_page(issues, 0), site.issue_page(issues, 2)
    assert 'rel="next"' not in newest and 'rel="prev"' in newest
    assert 'rel="prev"' not in oldest
    index = site.index_page(issues)
    assert index.index('href="2.3/"') < index.index('href="2.2/"') < index.index('href="2.1/"')


def test_export_is_deterministic_relative_and_replaces_the_old(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    issues = [_issue(2), _issue(1)]
    first, second = tmp_path / "a", tmp_path / "b"
    assert export_archive(issues, config, first, "https://thinktank.test/digest/") == 2
    export_archive(issues, config, second, "https://thinktank.test/digest/")

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert tree(first) == tree(second)
    assert set(tree(first)) == {
        MARKER,
        "index.html",
        "feed.atom",
        "web.css",
        "2.1/index.html",
        "2.2/index.html",
    }
    for path in first.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    for name, data in tree(first).items():
        if name.endswith(".html"):
            hrefs = re.findall(r'(?:href|src)="([^"]+)"', data.decode())
            local = [h for h in hrefs if not h.startswith(("https://", "mailto:"))]
            assert local and all(not h.startswith("/") for h in local), (name, local)
    # unpublished since: gone from the next export; a failed one keeps the last
    export_archive(issues[:1], config, first, "")
    assert not (first / "2.1").exists() and (first / "2.2" / "index.html").exists()


def test_export_refuses_a_folder_it_did_not_write(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer.errors import InputError

    mine = tmp_path / "website"
    mine.mkdir()
    (mine / "about.html").write_text("the think-tank's own page", "utf-8")
    with pytest.raises(InputError, match="not an earlier archive export"):
        export_archive([_issue(1)], config, mine, "")
    assert (mine / "about.html").read_text("utf-8") == "the think-tank's own page"
    with pytest.raises(InputError, match="--base-url"):
        export_archive([_issue(1)], config, tmp_path / "x", "javascript:alert(1)")


def test_cli_export_without_issues_and_bad_base(archive_cli: Cli, tmp_path: Path) -> None:
    archive_cli.ok("archive", "export", str(tmp_path / "empty"))
    assert "No issues have been published yet" in (tmp_path / "empty" / "index.html").read_text()
    bad = archive_cli("archive", "export", str(tmp_path / "x"), "--base-url", "ftp://x.test/")
    assert bad.exit_code != 0 and "--base-url" in bad.stderr and "Traceback" not in bad.output
    assert not (tmp_path / "x").exists()


ISSUE_IDS = st.text(min_size=1, max_size=100).filter(lambda s: not any(c.isspace() for c in s))


@given(issue_id=ISSUE_IDS)
def test_a_slug_is_always_one_safe_path_segment(issue_id: str) -> None:
    slug = archive_slug(issue_id)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", slug) and ".." not in slug
    assert archive_slug(issue_id) == slug
    assert archive_url("https://d.test", issue_id) == f"https://d.test/archive/{slug}/"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    issue_id=ISSUE_IDS,
    title=st.text(max_size=200),
    headline=st.text(max_size=300),
    body=st.text(max_size=2000),
)
def test_the_feed_parses_whatever_the_issue_holds(
    config, issue_id: str, title: str, headline: str, body: str
) -> None:  # type: ignore[no-untyped-def]
    issue = _issue(1, issue_id=issue_id, title=title, headlines=[headline], body_html=body)
    site = ArchiveSite(config, "https://thinktank.test/digest/")
    feed = feedparser.parse(site.feed([issue, _issue(0)]))
    assert not feed.bozo, feed.get("bozo_exception")
    assert len(feed.entries) == 2
    assert feed.entries[0].link == f"https://thinktank.test/digest/{archive_slug(issue_id)}/"
    page = site.issue_page([issue], 0)
    assert "<script" not in page.split("<article>")[0]  # the title is escaped


def test_a_dotted_or_slashed_id_never_climbs_out(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    issues = [_issue(1, issue_id="../../etc"), _issue(2, issue_id="a/b?c#d")]
    (tmp_path / "out").mkdir()
    export_archive(issues, config, tmp_path / "out" / "site", "")
    root = tmp_path / "out"
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert all(p.startswith("site/") for p in written), written
    assert len([p for p in written if p.endswith("/index.html")]) == 3
    assert not os.path.exists(tmp_path / "etc") and not os.path.exists(root / "etc")


# --------------------------------------------------------------------------- an outsider's findings


def test_a_personal_link_or_the_placeholder_in_a_draft_stops_the_send(
    archive_cli: Cli, tmp_path: Path
) -> None:
    original = ISSUE.read_text("utf-8")
    for name, planted in (
        ("u", "https://digest.transit-lab.test/u/1-0AftU8kx7h6bgSdRQ9u8i0zC"),
        ("c", "see https://elsewhere.test/c/" + "ab" * 16),
        ("p", "Bye %%UNSUBSCRIBE_URL%%."),
    ):
        draft = tmp_path / f"planted-{name}.txt"
        draft.write_text(original.replace("31 to 12", f"31 to 12 {planted}"), "utf-8")
        refused = archive_cli("send", str(draft), "--test")
        assert refused.exit_code != 0, name
        assert "personal-link" in refused.output or "placeholder-in-text" in refused.output
        assert _archive(archive_cli) == []


def test_a_draft_naming_a_subscriber_is_sent_but_not_published(
    archive_cli: Cli, tmp_path: Path
) -> None:
    draft = tmp_path / "named.txt"
    text = ISSUE.read_text("utf-8").replace("31 to 12", "31 to 12 (thanks to ana.lima@corp.test)")
    draft.write_text(text, "utf-8")
    archive_cli.ok("send", str(draft), "--test")
    sent = archive_cli.ok("send", str(draft), "--yes")
    assert "not published in the archive" in sent.output and "a***@corp.test" in sent.output
    assert [r["published"] for r in _archive(archive_cli)] == [False]
    assert _client(archive_cli).get("/archive/3.1/").status_code == 404


def test_a_send_resumed_with_changed_text_refreshes_the_page(
    tmp_path: Path, database_url: str, send_env
) -> None:
    from smtp_server import free_port

    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(free_port())
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    cli.ok("subscribers", "add", "ana.lima@corp.test")
    draft = tmp_path / "vol-3.1.txt"
    shutil.copy(ISSUE, draft)
    paused = cli("send", str(draft), "--skip-test", "--yes")  # no SMTP server: it pauses
    assert paused.exit_code == 5, paused.output
    cli.url = database_url  # type: ignore[attr-defined]
    assert "Congestion charge" in _client(cli).get("/archive/3.1/").text
    draft.write_text(ISSUE.read_text("utf-8").replace("Congestion charge", "Road pricing"), "utf-8")
    cli("send", str(draft), "--yes", "--allow-changed")  # pauses again, with the new text
    page = _client(cli).get("/archive/3.1/").text
    assert "Road pricing" in page and "Congestion charge" not in page


def test_reserved_and_hash_looking_ids_get_their_own_folders() -> None:
    slugs = {archive_slug(i) for i in ("web.css", "feed.atom", "index.html", "INDEX.HTML")}
    assert not slugs & {"web.css", "feed.atom", "index.html", "INDEX.HTML"}
    victim = archive_slug("a/b")
    assert victim.startswith("issue-") and archive_slug(victim) != victim
    assert archive_slug("2.4") == "2.4" and archive_slug("issue-7") == "issue-7"


def test_images_become_links_unless_on_the_archive_site(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer.archive.render import archive_draft, images_as_links

    body = '<p><img src="https://evil.test/t.png" alt="a &amp; b"> <img src="https://digest.transit-lab.test/i.png" alt="ok"></p>'
    out = images_as_links(body, "https://digest.transit-lab.test")
    assert '<a href="https://evil.test/t.png">Image: a &amp; b</a>' in out
    assert '<img src="https://digest.transit-lab.test/i.png" alt="ok">' in out
    article = tmp_path / "a.md"
    article.write_text(
        "# Pix\x07 \x1b[31mred\n\nText ![pixel](https://evil.test/p.gif) end.\n",
        "utf-8",
    )
    draft = archive_draft(compose_file(article, config), config)
    assert "<img" not in draft.body_html and "https://evil.test/p.gif" in draft.body_html
    assert "\x07" not in draft.title and "\x1b" not in draft.title


def test_export_replaces_only_a_folder_with_its_own_marker(config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer.errors import InputError

    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / MARKER).write_text("hi", "utf-8")
    (fake / "a.txt").write_text("mine", "utf-8")
    with pytest.raises(InputError, match="not an earlier archive export"):
        export_archive([_issue(1)], config, fake, "")
    assert (fake / "a.txt").read_text("utf-8") == "mine"
    with pytest.raises(InputError, match="--base-url"):
        export_archive([_issue(1)], config, tmp_path / "y", "https://tt.test:99999/")
