"""Request handling on mail written by an outsider who never saw the code: eight
languages, eleven charsets, many mail clients, and attackers (tests/data/requests/outside).

Each message is decided and acted on alone against the same starting store (its
transaction is rolled back afterwards). Harmful decisions (a subscription changed, or a
pending subscriber created, that should not have been) must be 0; per-label precision
and recall are printed with ``-s`` and must not fall below the floors below.
"""

import tomllib
from collections import Counter
from pathlib import Path

import pytest
import support
from conftest import DATA, NEWSLETTER, write_config
from sqlalchemy import select

from digest_mailer import subscribers as subs
from digest_mailer.addresses import address_key
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.inbox import actions
from digest_mailer.inbox.run import HeldMessage
from digest_mailer.kinds import Label
from digest_mailer.models import Subscriber

CORPORA = {
    # the first set was used to mend the classifier after its first reading (85 %,
    # 0 harmful); the second was written later and read once, as it came
    "outside": DATA / "requests" / "outside",
    "outside2": DATA / "requests" / "outside2",
    "outside3": DATA / "requests" / "outside3",
}
FLOOR = {"precision": 0.85, "recall": 0.75}  # per label, over the whole corpus
POLICY_NEWSLETTER = (
    NEWSLETTER.replace("weekly@transit-lab.test", "digest@policy.test").replace(
        "digest.transit-lab.test", "digest.policy.test"
    )
    + '\n[inbox]\nauthserv_id = "mx.policy.test"\n'
)


@pytest.fixture
def config(tmp_path: Path, database_url: str, send_env: str) -> Config:
    text = POLICY_NEWSLETTER.replace(
        'postal_address = "Transit Lab, 9 Depot Road, Rivertown"',
        'postal_address = "Transit Lab, 9 Depot Road, Rivertown"\n'
        'bounce_address = "bounces@policy.test"',
    )
    return load_config(write_config(tmp_path / "config.toml", database_url, text))


def load(corpus: str) -> tuple[Path, dict[str, dict[str, str]], dict]:  # type: ignore[type-arg]
    expected = tomllib.loads((CORPORA[corpus] / "expected.toml").read_text("utf-8"))
    return CORPORA[corpus], expected["messages"], expected["store"]


def seed(store: Store, STORE: dict) -> None:  # type: ignore[type-arg]
    with store.Session.begin() as session:
        subs.add_subscribers(session, STORE["active"], allow_test_domains=True)
        support.add_pending(session, STORE["confirmations"])


def snapshot(session) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(session.execute(select(Subscriber.email_key, Subscriber.status)).all())


def allowed_changes(want: dict[str, str]) -> dict[str, str]:
    """The status changes the expected decision makes (address key -> new status)."""
    if want["label"] == "unsubscribe":
        return {address_key(want["address"]): "unsubscribed"}
    if want["label"] == "subscribe":
        return {address_key(want["address"]): "pending"}
    if want["label"] == "confirm" and want.get("activates"):
        return {address_key(want["activates"]): "active"}
    return {}


def harm(before: dict[str, str], after: dict[str, str], want: dict[str, str]) -> list[str]:
    allowed = allowed_changes(want)
    wrong = []
    for key, status in after.items():
        if before.get(key) != status and allowed.get(key) != status:
            if not (before.get(key) is None and status == "pending" and key in allowed):
                wrong.append(f"{key}: {before.get(key)} -> {status}")
    return wrong


def run_each(
    store: Store, config: Config, corpus: str
) -> dict[str, tuple[actions.InboxResult, list[str]]]:
    OUTSIDE, MESSAGES, STORE = load(corpus)
    seed(store, STORE)
    ctx = actions.InboxContext(config)
    out = {}
    for name in sorted(MESSAGES):
        raw = (OUTSIDE / name).read_bytes()
        session = store.Session()
        try:
            session.begin()
            before = snapshot(session)
            try:
                with session.begin_nested():
                    result = actions.handle_message(session, ctx, raw)
            except Exception as exc:  # held, as the mailbox run does
                _, held = actions.hold_message(session, ctx, name, raw, None, repr(exc))
                assert isinstance(held, HeldMessage)
                result = actions.InboxResult(None, "", Label.REVIEW, None, "held", held.error)
            out[name] = (result, harm(before, snapshot(session), MESSAGES[name]))
        finally:
            session.rollback()
            session.close()
    return out


def correct(result: actions.InboxResult, want: dict[str, str]) -> bool:
    if result.label != want["label"]:
        return False
    if want["label"] in ("subscribe", "unsubscribe"):
        return address_key(result.address or "") == address_key(want["address"])
    return True


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_outside_requests_harm_nobody_and_read_well(
    store: Store, config: Config, corpus: str
) -> None:
    outcome = run_each(store, config, corpus)
    _, MESSAGES, _ = load(corpus)
    harmful = {name: h for name, (_, h) in outcome.items() if h}
    labels = [str(label) for label in Label]
    tp, predicted, actual = Counter(), Counter(), Counter()
    wrong = []
    for name, (result, _) in outcome.items():
        want = MESSAGES[name]
        predicted[str(result.label)] += 1
        actual[want["label"]] += 1
        if correct(result, want):
            tp[want["label"]] += 1
        else:
            wrong.append(f"{name}: {result.label} {result.address} ({result.reason})")
    lines = [f"\n{corpus}: {len(outcome)} messages, harmful decisions: {len(harmful)}"]
    scores = {}
    for label in labels:
        precision = tp[label] / predicted[label] if predicted[label] else 1.0
        recall = tp[label] / actual[label] if actual[label] else 1.0
        scores[label] = (precision, recall)
        lines.append(
            f"  {label:<12} precision {precision:5.2f}  recall {recall:5.2f}  (n={actual[label]})"
        )
    lines.append(f"  overall accuracy {sum(tp.values()) / len(outcome):.2f}")
    print("\n".join(lines + ["  misread:"] + [f"    {w}" for w in wrong]))
    assert harmful == {}
    for label, (precision, recall) in scores.items():
        assert precision >= FLOOR["precision"] and recall >= FLOOR["recall"], (label, wrong)
