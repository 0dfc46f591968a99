"""Bounce handling on reports written by an outsider who never saw the code: genuine
reports from many servers, forgeries and non-reports (tests/data/bounces/outside).

Every report is processed alone on a fresh store. A report with proof must change its
subscriber as expected; a forged one must change nobody. Harmful decisions (a status
changed that should not have been) must be 0; the figures are printed with ``-s``.
"""

import mailbox
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
import support
from conftest import DATA, NEWSLETTER, write_config
from sqlalchemy import select

from digest_mailer import subscribers as subs
from digest_mailer.bounces import process as bp
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.inbox.sources import MboxSource
from digest_mailer.models import Bounce, Subscriber, utcnow

OUTSIDE = DATA / "bounces" / "outside"
EXPECTED = tomllib.loads((OUTSIDE / "expected.toml").read_text("utf-8"))
REPORTS: dict[str, list[dict[str, str]]] = EXPECTED["reports"]
PEOPLE = [
    "alba.reyes@corp.test", "bjorn.olsen@mail.test", "carmen.ortiz@uni.test",
    "deepa.rao@corp.test", "emeka.obi@ngo.test", "freya.hansen@mail.test",
    "goro.tanaka@jp-mail.test", "hyun.park@kr-mail.test", "ilse.braun@firma.test",
    "jamal.haddad@corp.test", "kasia.nowak@mail.test", "liam.walsh@corp.test",
    "mateo.silva@correo.test", "noor.aziz@corp.test", "olga.ivanova@mail.test",
    "pablo.ruiz@correo.test", "qiu.ying@cn-mail.test", "rafael.costa@mail.test",
    "sven.larsen@corp.test", "tomoko.ito@jp-mail.test", "victim.one@corp.test",
    "victim.two@corp.test", "victim.three@corp.test",
]  # fmt: skip
POLICY_NEWSLETTER = NEWSLETTER.replace(
    'postal_address = "Transit Lab, 9 Depot Road, Rivertown"',
    'postal_address = "Transit Lab, 9 Depot Road, Rivertown"\n'
    'bounce_address = "bounces@policy.test"',
).replace("weekly@transit-lab.test", "digest@policy.test")


@pytest.fixture
def config(tmp_path: Path, database_url: str, send_env: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, POLICY_NEWSLETTER))


def seed(store: Store) -> None:
    support.seed_sent_issue(store, PEOPLE, "policy.test")


def fill(store: Store, config: Config, raw: bytes) -> bytes:
    raw = support.fill_report(store, config, raw)
    assert b"{VERP:" not in raw and b"{MSGID:" not in raw
    return raw


def statuses(store: Store) -> dict[str, str]:
    with store.Session() as session:
        return dict(session.execute(select(Subscriber.email, Subscriber.status)).all())


def process_one(
    store: Store, config: Config, name: str
) -> tuple[list[bp.BounceResult], dict[str, str]]:
    raw = fill(store, config, (OUTSIDE / name).read_bytes())
    ctx = bp.BounceContext(config)
    with store.Session.begin() as session:
        results = bp.handle_bounce_message(session, ctx, raw)
    return results, statuses(store)


def judge(name: str, results: list[bp.BounceResult], after: dict[str, str]) -> list[str]:
    """What went wrong with one report: 'harmful: …' for a status changed that should not
    have been, 'missed: …' for a proven failure not applied as expected."""
    problems = []
    expected_changes = {
        w["address"]: w["then"]
        for w in REPORTS[name]
        if w["proof"] != "none" and w["then"] != "active"
    }
    for address, status in after.items():
        if status != "active" and expected_changes.get(address) != status:
            problems.append(f"harmful: {address} became {status}")
    for w in REPORTS[name]:
        if w["proof"] == "none":
            continue
        got = [r for r in results if r.address == w["address"]]
        if not got or got[0].proof not in ("verp", "message-id") or got[0].kind != w["kind"]:
            problems.append(f"missed: {w['address']} {w['kind']} ({[r.as_dict() for r in got]})")
        elif after.get(w["address"]) != w["then"]:
            problems.append(f"missed: {w['address']} is {after.get(w['address'])}, not {w['then']}")
    return problems


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_outside_report(store: Store, config: Config, name: str) -> None:
    seed(store)
    results, after = process_one(store, config, name)
    assert judge(name, results, after) == []
    if not REPORTS[name]:  # not a report: nothing recorded
        with store.Session() as session:
            assert session.scalars(select(Bounce)).all() == []


def test_three_reports_received_the_same_day_count_once(store: Store, config: Config) -> None:
    sequence = EXPECTED["sequences"]["same-day-5-7-1"]
    seed(store)
    for name in sequence["files"]:
        process_one(store, config, name)
    with store.Session() as session:
        person = subs.find_subscriber(session, sequence["address"])
        assert person is not None
        assert (person.bounce_score, person.status) == (sequence["score"], sequence["then"])


def test_the_whole_outside_mailbox_in_one_run_harms_nobody(
    store: Store, config: Config, tmp_path: Path
) -> None:
    """All reports in one mbox through the real run: nothing stops it, forged reports
    change nobody, and the figures are printed."""
    seed(store)
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"))
    for name in sorted(REPORTS):
        box.add(fill(store, config, (OUTSIDE / name).read_bytes()))
    box.close()
    run = bp.process_bounces(store, config, MboxSource(tmp_path / "bounces.mbox"), now=utcnow())
    assert run.held == []
    after = statuses(store)
    proven = {w["address"]: w["then"] for f in REPORTS.values() for w in f if w["proof"] != "none"}
    forged_only = {w["address"] for f in REPORTS.values() for w in f} - set(proven)
    harmful = [a for a in forged_only if after.get(a, "active") != "active"]
    assert harmful == []
    with store.Session() as session:
        rows = session.scalars(select(Bounce)).all()
    verified = [b for b in rows if b.matched_by in ("verp", "message-id")]
    forged = sum(len(f) for f in REPORTS.values() if all(w["proof"] == "none" for w in f))
    print(
        f"\noutside bounce corpus: {len(REPORTS)} messages, {len(rows)} failures recorded, "
        f"{len(verified)} verified, {len(rows) - len(verified)} unverified; "
        f"{forged} forged entries; harmful decisions: {len(harmful)}"
    )
    again = bp.process_bounces(
        store, config, MboxSource(tmp_path / "bounces.mbox"), now=utcnow() + timedelta(days=1)
    )
    assert statuses(store) == after
    assert all(
        r.action in ("none: already processed",) or r.action.startswith(("ignored", "none"))
        for r in again.results
    )
