"""`digest-mailer report`: every figure checked against the send log.

A real send to a test SMTP server that refuses some recipients (permanently, then for
ever temporarily) and hangs up on one after its message; a real bounce report, a soft
one, a complaint and an unverified report through `bounces process`; unsubscribes
through the RFC 8058 one-click POST of each reader's own signed link (one with an
altered issue mark) and one by email through `requests process`. Then every figure of
`report ISSUE --json` is compared with counts made here from `log --csv`, the
deliveries table and what the test itself did; the text, the report over time and its
HTML page (opened in Chromium) come from the same figures."""

import csv
import io
import json
import mailbox
import re
import shutil
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import ARTIFACTS, DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer
from sqlalchemy import func, select
from starlette.testclient import TestClient

from digest_mailer import db
from digest_mailer.config import load_config
from digest_mailer.models import Delivery, Event, Issue, LinkClick, Subscriber, utcnow
from digest_mailer.web import create_app

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
AXE = Path(__file__).parent / "node" / "node_modules" / "axe-core" / "axe.min.js"
BOUNCE_ADDRESS = "bounces@transit-lab.test"
READERS = [f"r{i}@corp.test" for i in range(10)]
REFUSED = ["gone0@corp.test", "gone1@corp.test"]  # 550 5.1.1 at RCPT: hard at send time
LATE = "late@corp.test"  # 451 every time: deferred
LOST = "lost@corp.test"  # accepted, then the connection drops: uncertain
HARD, SOFT, COMPLAINS, UNVERIFIED = "r1@corp.test", "r2@corp.test", "r3@corp.test", "r4@corp.test"
ONE_CLICK = ["r5@corp.test", "r6@corp.test"]  # with the issue's signed mark
ALTERED = "r7@corp.test"  # the mark altered: unsubscribed, attributed as if by email
BY_EMAIL = "r8@corp.test"
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def dsn(return_path: str, address: str, status: str, key: str) -> bytes:
    action = "failed"
    return (
        f"From: MAILER-DAEMON@mx.corp.test\nTo: {return_path}\n"
        "Date: Fri, 20 Nov 2026 10:00:00 +0000\nSubject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: <{key}@mx.corp.test>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.corp.test\n\n"
        f"Final-Recipient: rfc822; {address}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox trouble\n\n--b--\n"
    ).encode()


def arf(return_path: str, address: str) -> bytes:
    return (
        f"From: fbl@isp.test\nTo: {BOUNCE_ADDRESS}\nDate: Fri, 20 Nov 2026 11:00:00 +0000\n"
        "Subject: abuse report\nMessage-ID: <arf-1@isp.test>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="f"\n\n'
        "--f\nContent-Type: text/plain\n\nA user reported this message as spam.\n\n"
        "--f\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
        f"User-Agent: ISP-FBL/1\nVersion: 1\nOriginal-Mail-From: <{return_path}>\n\n"
        f"--f\nContent-Type: text/rfc822-headers\n\nTo: {address}\n\n--f--\n"
    ).encode()


def unsubscribe_mail(address: str, message_id: str) -> bytes:
    return (
        f"From: {address}\nTo: weekly@transit-lab.test\nSubject: unsubscribe\n"
        f"Message-ID: <leave-{address}>\nIn-Reply-To: {message_id}\n"
        "Date: Fri, 20 Nov 2026 12:00:00 +0000\n\nPlease unsubscribe me.\n"
    ).encode()


def one_click_path(message) -> str:  # type: ignore[no-untyped-def]
    """The path and query of the https link in a message's List-Unsubscribe."""
    header = " ".join(str(message["List-Unsubscribe"]).split())
    url = re.search(r"<(https://[^>]+)>", header).group(1)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@pytest.fixture
def sent(tmp_path: Path, database_url: str, send_env: str):  # type: ignore[no-untyped-def]
    """The whole story above, done once: (the CLI, the store's URL, the SMTP server)."""
    server = SMTPServer().start()
    handler = server.handler
    handler.perm_fail.update(REFUSED)
    handler.temp_fail[LATE] = 10_000
    handler.drop_after_message.add(LOST)
    newsletter = NEWSLETTER.replace(
        'postal_address = "Transit Lab, 9 Depot Road, Rivertown"',
        'postal_address = "Transit Lab, 9 Depot Road, Rivertown"\n'
        f'bounce_address = "{BOUNCE_ADDRESS}"',
    )
    config = write_config(
        tmp_path / "config.toml", database_url, newsletter + smtp_section(server.port)
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    cli.ok("subscribers", "add", *READERS, *REFUSED, LATE, LOST)
    shutil.copy(ISSUE, tmp_path / "vol-3.1.txt")
    issue = str(tmp_path / "vol-3.1.txt")
    cli.ok("send", issue, "--test")
    result = cli("send", issue, "--yes")
    assert result.exit_code in (0, 5), result.output  # 5: paused with LATE deferred
    copies = {r.rcpt: r for r in handler.received[1:]}  # the first is the test copy
    paths = {rcpt: r.mail_from for rcpt, r in copies.items()}

    box = mailbox.mbox(str(tmp_path / "bounces.mbox"))
    box.add(dsn(paths[HARD], HARD, "5.1.1", "dsn-hard"))
    box.add(dsn(paths[SOFT], SOFT, "4.2.2", "dsn-soft"))
    box.add(arf(paths[COMPLAINS], COMPLAINS))
    box.add(dsn(BOUNCE_ADDRESS, UNVERIFIED, "5.2.1", "dsn-unverified"))  # no token of ours
    box.close()
    cli.ok("bounces", "process", "--mbox", str(tmp_path / "bounces.mbox"))

    store = db.open_store(database_url)
    web = TestClient(create_app(store, load_config(config), SECRET.encode()))
    for address in ONE_CLICK:
        path = one_click_path(copies[address].message)
        assert "?i=3.1." in path
        assert web.post(path, content=ONE_CLICK_BODY, headers=FORM).status_code == 200
    path = one_click_path(copies[ALTERED].message).replace("?i=3.1.", "?i=3.2.")
    assert web.post(path, content=ONE_CLICK_BODY, headers=FORM).status_code == 200
    store.dispose()

    box = mailbox.mbox(str(tmp_path / "requests.mbox"))
    box.add(unsubscribe_mail(BY_EMAIL, copies[BY_EMAIL].message["Message-ID"]))
    box.close()
    handled = json.loads(
        cli.ok("requests", "process", "--mbox", str(tmp_path / "requests.mbox"), "--json").stdout
    )
    assert handled[0]["label"] == "unsubscribe" and "unsubscribed" in handled[0]["action"]
    cli.url = database_url  # type: ignore[attr-defined]
    yield cli, database_url, server
    server.stop()


def add_clicks(url: str) -> None:
    store = db.open_store(url)
    now = utcnow()
    with store.Session.begin() as session:
        session.add_all(
            [
                LinkClick(issue_id="3.1", link_number=1, url="https://a.test/x", clicks=5,
                          first_at=now, last_at=now),
                LinkClick(issue_id="3.1", link_number=2, url="https://b.test/y", clicks=2,
                          first_at=now, last_at=now),
            ]
        )  # fmt: skip
    store.dispose()


def test_every_figure_of_the_report_matches_the_send_log(sent) -> None:  # type: ignore[no-untyped-def]
    cli, url, server = sent
    report = json.loads(cli.ok("report", "3.1", "--json").stdout)
    assert report["clicks"] == {"total": 0, "links": []}  # tracking off: none
    add_clicks(url)
    report = json.loads(cli.ok("report", "3.1", "--json").stdout)

    # the send log, as `log --csv` prints it
    rows = list(csv.DictReader(io.StringIO(cli.ok("log", "3.1", "--csv").stdout)))
    states = {r["address"]: r["state"] for r in rows}
    assert (
        report["recipients"] == len(rows) == len(READERS) + len(REFUSED) + 3
    )  # + seed, LATE, LOST
    for state in ("sent", "deferred", "failed", "uncertain", "queued", "skipped"):
        assert report["counts"][state] == sum(s == state for s in states.values()), state
    assert {a for a, s in states.items() if s == "failed"} == set(REFUSED)
    assert [a for a, s in states.items() if s == "deferred"] == [LATE]
    assert [a for a, s in states.items() if s == "uncertain"] == [LOST]
    assert states[HARD] == states[BY_EMAIL] == "sent"

    # the time the send took, from the deliveries table and the issue
    store = db.open_store(url)
    with store.Session() as session:
        issue = session.get(Issue, "3.1")
        first, last = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                Delivery.issue_id == "3.1", Delivery.state == "sent"
            )
        ).one()
        if issue.finished_at is not None:
            first, last = issue.started_at, issue.finished_at
        attributed = {
            session.get(Subscriber, e.subscriber_id).email: e.issue_id
            for e in session.scalars(select(Event).where(Event.new_status == "unsubscribed"))
        }
    store.dispose()
    took = report["time_to_send"]
    assert took["seconds"] == pytest.approx((last - first).total_seconds(), abs=0.001)
    assert (took["from"], took["to"]) == (first.isoformat(), last.isoformat())
    sent_times = sorted(r["time"] for r in rows if r["state"] == "sent")
    if took["measured"] == "deliveries":
        assert (took["from"], took["to"]) == (sent_times[0], sent_times[-1])

    # bounces: the refusals at send time and the reports this test wrote
    assert report["bounces"]["hard"] == len(REFUSED) + 1  # + HARD's report
    assert report["bounces"]["soft"] == 1
    assert report["bounces"]["unverified"] == 1  # UNVERIFIED: counted apart
    assert report["complaints"] == 1
    reasons = {(r["kind"], r["status"]): r["addresses"] for r in report["bounces"]["reasons"]}
    assert reasons == {("hard", "5.1.1"): len(REFUSED) + 1, ("soft", "4.2.2"): 1}
    assert report["bounces"]["reasons"][0]["status"] == "5.1.1"  # the most common first

    # unsubscribes: two by the signed link; one by email and the one whose mark was altered
    # (no mark, so the 30-day rule: the last issue sent to them, 3.1) by the other way
    assert attributed == {ONE_CLICK[0]: "3.1", ONE_CLICK[1]: "3.1", ALTERED: None,
                          BY_EMAIL: None}  # fmt: skip
    assert report["unsubscribes"] == {"link": 2, "email": 2, "total": 4}
    assert report["clicks"]["total"] == 7
    assert [(c["link"], c["url"], c["clicks"]) for c in report["clicks"]["links"]] == [
        (1, "https://a.test/x", 5),
        (2, "https://b.test/y", 2),
    ]

    # the report over time gives the same figures for the issue
    across = json.loads(cli.ok("report", "--since", "2020-01-01", "--json").stdout)
    assert across["issues"] == [report]
    last_week = across["weeks"][-1]
    assert last_week["counts"]["unsubscribed"] == 4  # ONE_CLICK, ALTERED, BY_EMAIL
    assert last_week["counts"]["complained"] == 1
    assert last_week["counts"]["bounced"] == len(REFUSED) + 1  # 5.1.x: bounced at once
    assert last_week["total"] == len(rows)


def test_the_text_report_fits_80_columns(sent, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cli, url, _ = sent
    add_clicks(url)
    from digest_mailer.cli.state import out

    monkeypatch.setattr(out, "_width", 80)
    text = cli.ok("report", "3.1").stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    lines = {line.split("  ")[0]: " ".join(line.split()) for line in text.splitlines()}
    assert lines["recipients"] == f"recipients {len(READERS) + len(REFUSED) + 3}"
    assert lines["failed"] == "failed 2" and lines["deferred"] == "deferred 1"
    assert lines["uncertain"] == "uncertain 1" and lines["complaints"].startswith("complaints 1 (")
    assert "4 (" in lines["unsubscribes"] and "2 by link, 2 otherwise" in lines["unsubscribes"]
    assert lines["clicks"] == "clicks 7 on 2 link(s)"
    assert "Most common bounce reasons" in text and "https://a.test/x" in text
    over_time = cli.ok("report", "--since", "2020-01-01").stdout
    assert all(len(line) <= 80 for line in over_time.splitlines()), over_time
    assert re.search(r"^3\.1 .* 4 +7 ", over_time, re.M), over_time  # unsub 4, clicks 7


def test_the_html_report_in_chromium(sent, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli, url, _ = sent
    add_clicks(url)
    page_file = tmp_path / "report.html"
    since = (utcnow() - timedelta(days=60)).strftime("%Y-%m-%d")
    done = cli.ok("report", "--since", since, "--html", str(page_file))
    assert f"wrote {page_file} (1 issue(s)," in done.stdout
    assert page_file.stat().st_mode & 0o777 == 0o600
    text = page_file.read_text("utf-8")
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert text.count('role="img"') == 2 and text.count("<desc id=") == 2
    assert len(set(re.findall(r'\bid="([^"]+)"', text))) == len(re.findall(r'\bid="', text))

    context = browser.new_context(viewport={"width": 1100, "height": 900})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    console: list[str] = []
    context.on("console", lambda m: console.append(m.text))
    page = context.new_page()
    page.goto(page_file.as_uri())
    page.wait_for_load_state("networkidle")
    assert requests == [page_file.as_uri()]  # nothing else was fetched
    assert page.evaluate("document.scripts.length") == 0
    assert console == []  # no Content-Security-Policy violation, no error
    charts = page.locator("svg[role=img]")
    assert charts.count() == 2
    for i in range(2):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
    assert page.locator("svg title").first.text_content() == "List size by status, weekly"
    row = page.locator("table").first.locator("tbody tr").first
    assert row.locator("th").text_content() == "3.1"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    context.close()
    if AXE.exists():  # WCAG 2.1 AA, as the reader pages (tests/test_web_a11y.py)
        checked = browser.new_context(bypass_csp=True)
        page = checked.new_page()
        page.goto(page_file.as_uri())
        page.add_script_tag(content=AXE.read_text("utf-8"))
        result = page.evaluate(
            "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})",
            ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"],
        )
        checked.close()
        assert result["passes"] and not [
            f"{v['id']}: {v['nodes'][0]['html'][:120]}" for v in result["violations"]
        ]


def test_the_html_page_is_the_same_for_the_same_figures(sent) -> None:  # type: ignore[no-untyped-def]
    cli, _, _ = sent
    from digest_mailer.reports.html import report_page

    figures = json.loads(cli.ok("report", "--since", "2026-01-01", "--json").stdout)
    page = report_page(figures, "Transit Policy Weekly")
    assert report_page(figures, "Transit Policy Weekly") == page
    again = json.loads(cli.ok("report", "--since", "2026-01-01", "--json").stdout)
    again["now"] = figures["now"]
    again["weeks"][-1]["end"] = figures["weeks"][-1]["end"]
    assert report_page(again, "Transit Policy Weekly") == page


def test_only_the_html_report_loads_matplotlib(tmp_path: Path) -> None:
    from test_cli_startup import imports_of

    config = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path / 's' / 'd.db'}")
    Cli(config).ok("init")
    store = db.open_store(f"sqlite:///{tmp_path / 's' / 'd.db'}")
    with store.Session.begin() as session:
        session.add(Issue(id="3.1", subject="Vol 3.1", fingerprint="f" * 64, state="sent"))
    store.dispose()
    for args in (["report", "3.1"], ["report", "--since", "2026-01-01", "--json"]):
        chains = imports_of("--config", str(config), *args, cwd=tmp_path)
        assert {"digest_mailer.reports.issue", "digest_mailer.reports.across"} & set(chains)
        assert not [m for m in chains if m.startswith("matplotlib")], args
    page = tmp_path / "r.html"
    chains = imports_of(
        "--config", str(config), "report", "--since", "2026-01-01", "--html", str(page),
        cwd=tmp_path,
    )  # fmt: skip
    assert "matplotlib" in chains and page.exists()


def test_bad_input_is_one_line(cli: Cli, tmp_path: Path) -> None:
    for args, words in (
        ([], "give an issue id"),
        (["3.1", "--since", "2026-01-01"], "not both"),
        (["3.1", "--html", "x.html"], "use it with --since"),
        (["--since", "last week"], "a date such as"),
        (["--since", "2999-01-01"], "in the future"),
        (["9.9"], "no issue '9.9'"),
        (["--since", "2026-01-01", "--html", str(tmp_path / "no" / "r.html")], "cannot write"),
    ):
        result = cli("report", *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.count("\n") == 1 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert not (tmp_path / "no").exists()


def test_a_since_before_2000_is_one_clear_error(tmp_path: Path, database_url: str) -> None:
    cli = Cli(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))
    cli.ok("init")
    for value in ("0001-01-01", "1000-01-01"):
        result = cli("report", "--since", value)
        assert result.exit_code == 1 and "from 2000 on" in result.stderr
        assert "Traceback" not in result.output
