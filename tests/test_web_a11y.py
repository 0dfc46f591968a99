"""Every page readers see, in Debian's Chromium: axe-core finds no WCAG 2.1 AA violation,
the page works with JavaScript off, breaks no rule of its Content-Security-Policy, and is
photographed at phone and desktop sizes into tests/artifacts/.

axe-core is the npm package (tests/node, installed by .ci/run), injected into the page
through Playwright in a context that bypasses the CSP (the pages allow no script, ours
included); the no-JavaScript visits keep the CSP and fail on any violation it logs.
"""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, write_config
from support import serving

from digest_mailer import subscribers as subs
from digest_mailer.archive.render import archive_draft
from digest_mailer.archive.store import record
from digest_mailer.composer import compose_file
from digest_mailer.config import load_config
from digest_mailer.db import Store
from digest_mailer.inbox import actions as rq
from digest_mailer.inbox.confirmations import token_hash
from digest_mailer.models import Confirmation, Issue, Subscriber, utcnow
from digest_mailer.tokens import make_token
from digest_mailer.web import create_app

AXE = Path(__file__).parent / "node" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SAMPLES = ["digest-vol-3.1.txt", "frontmatter-vol-3.1.md", "article.md"]

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path: Path, store: Store, database_url: str):  # type: ignore[no-untyped-def]
    """Three published issues, readers with unsubscribe links, confirmations fresh and
    expired; served by uvicorn on a loopback port."""
    config = load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))
    now = utcnow()
    links: dict[str, str] = {}
    with store.Session.begin() as session:
        for n, name in enumerate(SAMPLES):
            composed = compose_file(DATA / "issues" / name, config, issue_id=f"4.{n + 1}")
            session.add(Issue(id=composed.issue_id, subject=composed.subject, fingerprint="f"))
            session.flush()
            record(
                session,
                archive_draft(composed, config),
                publish=True,
                when=now - timedelta(days=14 * (3 - n)),
            )
        readers = [f"reader{i}@corp.test" for i in range(4)]
        subs.add_subscribers(session, readers, allow_test_domains=True)
        for i, address in enumerate(readers):
            person = subs.get_subscriber(session, address)
            links[f"u{i}"] = make_token(SECRET.encode(), "unsubscribe", person.id, person.link_salt)
        ctx = rq.InboxContext(config, now=now)
        for address in ("new@corp.test", "new2@corp.test", "late@corp.test"):
            rq.start_subscription(session, ctx, address, "", None, None)  # pending
        for address, token, expires in (
            ("new@corp.test", "ab" * 16, now + timedelta(days=7)),
            ("new2@corp.test", "ac" * 16, now + timedelta(days=7)),
            ("late@corp.test", "cd" * 16, now - timedelta(days=1)),
            ("late@corp.test", "ce" * 16, now - timedelta(days=1)),
        ):
            person = subs.get_subscriber(session, address)
            session.add(
                Confirmation(
                    subscriber_id=person.id, token_hash=token_hash(token), expires_at=expires
                )
            )
    app = create_app(store, config, SECRET.encode())
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}", links, store


def _click(label: str) -> Callable:  # type: ignore[type-arg]
    return lambda page: page.get_by_role("button", name=label).click()


def _visits(links: dict[str, str], second: bool) -> list[tuple[str, str, Callable | None]]:  # type: ignore[type-arg]
    """(artifact name, path, then what to do there): a page, or the page a form gives."""
    u = links["u1" if second else "u0"]
    confirm, expired = ("ac" if second else "ab") * 16, ("ce" if second else "cd") * 16
    return [
        ("archive-index", "/archive/", None),
        ("archive-issue", "/archive/4.2/", None),
        ("archive-article", "/archive/4.3/", None),
        ("unsubscribe", f"/u/{u}", None),
        ("unsubscribed", f"/u/{u}", _click("Unsubscribe")),
        ("confirm", f"/c/{confirm}", None),
        ("confirmed", f"/c/{confirm}", _click("Confirm")),
        ("expired", f"/c/{expired}", None),
        ("not-found", "/archive/no-such-issue/", None),
    ]


def test_every_page_passes_axe_and_works_without_javascript(site, browser, artifacts: Path) -> None:  # type: ignore[no-untyped-def]
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci --prefix tests/node; .ci/run does)")
    base, links, store = site
    axe_source = AXE.read_text("utf-8")

    # with JavaScript off and the CSP kept: each page renders and each form works
    plain = browser.new_context(java_script_enabled=False, viewport=PHONE)
    plain.set_default_timeout(5000)
    violations: list[str] = []
    plain.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    headings: dict[str, str] = {}
    for name, path, then in _visits(links, second=False):
        page = plain.new_page()
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
        )
        answer = page.goto(base + path)
        assert answer is not None
        if then is not None:
            then(page)
            page.wait_for_load_state()
        headings[name] = page.locator("h1").first.inner_text()
        page.screenshot(path=str(artifacts / f"web-{name}-phone.png"), full_page=True)
        page.close()
    plain.close()
    assert not violations, violations
    assert headings["unsubscribed"] != headings["unsubscribe"]
    assert headings["confirmed"] == "You are subscribed"
    assert headings["not-found"] and headings["archive-index"] == "Past issues"
    with store.Session() as session:
        assert subs.get_subscriber(session, "reader0@corp.test").status == "unsubscribed"
        assert subs.get_subscriber(session, "new@corp.test").status == "active"
        assert session.get(Subscriber, 1) is not None

    # axe-core, at desktop size, on the same pages (the second set of links)
    checked = browser.new_context(bypass_csp=True, viewport=DESKTOP)
    checked.set_default_timeout(5000)
    report: dict[str, list[str]] = {}
    for name, path, then in _visits(links, second=True):
        page = checked.new_page()
        page.goto(base + path)
        if then is not None:
            then(page)
            page.wait_for_load_state()
        page.add_script_tag(content=axe_source)
        result = page.evaluate(
            "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})",
            WCAG_AA,
        )
        report[name] = [
            f"{v['id']}: {v['help']} ({len(v['nodes'])} node(s): {v['nodes'][0]['html'][:120]})"
            for v in result["violations"]
        ]
        assert result["passes"], f"axe ran no check on {name}"
        page.screenshot(path=str(artifacts / f"web-{name}-desktop.png"), full_page=True)
        page.close()
    checked.close()
    assert not any(report.values()), {k: v for k, v in report.items() if v}
