"""The bounce mailbox run: reports matched to our deliveries, on proof only.

A report (read by :mod:`digest_mailer.bounces.reports`) changes a subscriber only when
it is proven to be about one of our deliveries (:class:`~digest_mailer.kinds.Proof`):

- ``verp``: a validly signed VERP return path of ours (``bounces+TOKEN@domain``, an HMAC:
  it cannot be forged or guessed) appears in the report, and the failed recipient it
  names is that delivery's address. A report sent to one delivery's VERP address that
  names one recipient who is not a subscriber (the reader's mail was forwarded) is about
  that delivery too;
- ``message-id``: the Message-ID of a message in our send log (each recipient's copy has
  its own) is in the report, attached or quoted, and the failed recipient is that
  delivery's address. A complaint whose recipient is redacted is matched by the one
  delivery its attached original proves.

Anything else is recorded as ``unverified`` (matched by the address alone, shown in
``bounces list``) and never scored, unless ``[bounces] trust_unverified`` is set. Each
report is recorded once per address, so reading it again changes nothing; scoring counts
the time we received it (:mod:`digest_mailer.bounces.scoring`).
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.addresses import MAX_ADDRESS, address_key, clip
from digest_mailer.bounces.reports import Failure, Report, read_report
from digest_mailer.bounces.scoring import apply_bounce, score_pending
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.classify import (
    Incoming,
    OurAddresses,
    Policy,
    Unreadable,
    decide,
    message_key,
    parse,
)
from digest_mailer.inbox.held import record_held
from digest_mailer.inbox.run import HeldMessage, RunResult, Steps, run_mailbox
from digest_mailer.inbox.sources import MessageSource
from digest_mailer.kinds import Label, Proof
from digest_mailer.models import Bounce, Delivery, Subscriber, utcnow
from digest_mailer.subscribers import find_subscriber
from digest_mailer.tokens import signing_secret, verp_deliveries

ENVELOPE_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")


@dataclass
class BounceResult:
    message_id: str | None
    address: str | None
    kind: str | None
    status: str
    action: str
    proof: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class BounceContext:
    """What handling a report needs besides the session: config, our addresses, the
    VERP secret (when ``bounce_address`` is set) and the time."""

    def __init__(self, config: Config, *, now: datetime | None = None) -> None:
        nl = config.newsletter
        self.config = config
        self.now = now or utcnow()
        self.ours = OurAddresses.of(
            nl.from_address, nl.request_address, nl.reply_to, nl.bounce_address
        )
        self.policy = Policy(self.ours, "", config.inbox.max_message_bytes)
        self._secret: bytes | None = None
        self.seen: set[tuple[str, str]] = set()  # (report key, address) this run

    def verp_ids(self, text: str) -> list[int]:
        """Deliveries named by valid VERP addresses in ``text``. The secret is read on
        first use: reading reports needs it only when VERP is on (``bounce_address``)."""
        bounce = self.config.newsletter.bounce_address
        if not bounce or not text:
            return []
        if self._secret is None:
            self._secret = signing_secret(self.config)
        return verp_deliveries(self._secret, bounce, text)


# --------------------------------------------------------------------------- matching


@dataclass
class Match:
    delivery: Delivery | None
    subscriber: Subscriber | None
    proof: Proof


def _envelope_text(incoming: Incoming) -> str:
    msg = incoming.message
    return "\n".join(str(v)[:1000] for h in ENVELOPE_HEADERS for v in (msg.get_all(h) or []))


def _match(
    session: Session, ctx: BounceContext, incoming: Incoming, report: Report, failure: Failure
) -> Match:
    wanted = {address_key(a) for a in (failure.address, failure.final) if a}
    verp = _by_ids(session, ctx.verp_ids(report.searchable))
    by_id = _by_message_ids(session, report.original_ids)
    for proof, candidates in ((Proof.VERP, verp), (Proof.MESSAGE_ID, by_id)):
        for delivery in candidates:
            if address_key(delivery.address) in wanted:
                return Match(delivery, _subscriber_of(session, delivery), proof)
    single = len(report.failures) == 1
    if single and not wanted and len(verp or by_id) == 1:  # a redacted complaint
        delivery = (verp or by_id)[0]
        return Match(delivery, _subscriber_of(session, delivery), Proof(_proof(verp)))
    if single and len(verp) == 1 and verp[0].id in ctx.verp_ids(_envelope_text(incoming)):
        named = [find_subscriber(session, a) for a in (failure.address, failure.final) if a]
        if not any(named):  # forwarded: the reader's forwarding target failed
            return Match(verp[0], _subscriber_of(session, verp[0]), Proof.VERP)
    for address in (failure.address, failure.final):
        subscriber = find_subscriber(session, address) if address else None
        if subscriber is not None:
            delivery = session.scalars(
                select(Delivery)
                .where(Delivery.subscriber_id == subscriber.id)
                .order_by(Delivery.id.desc())
                .limit(1)
            ).first()
            return Match(delivery, subscriber, Proof.UNVERIFIED)
    return Match(None, None, Proof.NONE)


def _proof(verp: Sequence[Delivery]) -> str:
    return Proof.VERP if verp else Proof.MESSAGE_ID


def _subscriber_of(session: Session, delivery: Delivery) -> Subscriber | None:
    return session.get(Subscriber, delivery.subscriber_id) if delivery.subscriber_id else None


def _by_ids(session: Session, ids: list[int]) -> Sequence[Delivery]:
    if not ids:
        return []
    ids = [i for i in ids if i < 1 << 62][:100]
    return session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()


def _by_message_ids(session: Session, ids: list[str]) -> Sequence[Delivery]:
    keys = {f"<{i.strip().strip('<>')}>" for i in ids[:100] if i.strip("<> ")}
    keys = {k for k in keys if len(k) <= 255}
    if not keys:
        return []
    return session.scalars(
        select(Delivery).where(Delivery.message_id.in_(keys)).order_by(Delivery.id)
    ).all()


# --------------------------------------------------------------------------- recording


def handle_report(
    session: Session, ctx: BounceContext, incoming: Incoming, report: Report | None = None
) -> list[BounceResult]:
    """Record every failure of one report that :func:`decide` called a bounce, and score
    those with proof. Reading the same report again changes nothing."""
    report = report or read_report(incoming, ctx.ours)
    if not report.failures:
        return [BounceResult(incoming.message_id, None, None, "", "none: no failed recipient")]
    results = []
    for failure in report.failures:
        match = _match(session, ctx, incoming, report, failure)
        subscriber = match.subscriber
        address = subscriber.email if subscriber is not None else failure.address
        key = (incoming.key, clip(address_key(address), MAX_ADDRESS))
        if key in ctx.seen or session.scalar(
            select(Bounce.id).where(Bounce.report_key == key[0], Bounce.address == key[1])
        ):
            results.append(
                BounceResult(
                    incoming.message_id, address, failure.kind, failure.status,
                    "none: already processed", match.proof,
                )
            )  # fmt: skip
            continue
        ctx.seen.add(key)
        bounce = Bounce(
            report_key=incoming.key,
            report_message_id=incoming.message_id,
            address=key[1],
            subscriber_id=subscriber.id if subscriber is not None else None,
            delivery_id=match.delivery.id if match.delivery is not None else None,
            kind=str(failure.kind),
            status=clip(failure.status, 20),
            diagnostic=failure.diagnostic,
            matched_by=str(match.proof),
            score_added=0.0,
            action="",
            occurred_at=ctx.now,  # when we received it: a report's Date can say anything
            created_at=ctx.now,
        )
        session.add(bounce)
        apply_bounce(session, ctx.config, bounce, subscriber, report_id=incoming.message_id)
        results.append(
            BounceResult(
                incoming.message_id, address, failure.kind, failure.status, bounce.action,
                match.proof,
            )
        )  # fmt: skip
    if report.left_out:
        results.append(
            BounceResult(
                incoming.message_id, None, None, "",
                f"none: {report.left_out} more recipients in this report were not read",
            )
        )  # fmt: skip
    return results


# --------------------------------------------------------------------------- the mailbox run


@dataclass
class DecidedReport:
    incoming: Incoming | None
    report: Report | None
    reason: str


def decide_report(raw: bytes, ctx: BounceContext) -> DecidedReport:
    """Read one message from the bounce mailbox (pure): a report, or why it is none."""
    try:
        incoming = parse(raw, max_bytes=ctx.policy.max_message_bytes)
    except Unreadable as exc:
        return DecidedReport(None, None, f"ignored: {exc}")
    verdict = decide(incoming, ctx.policy)
    if verdict.label != Label.BOUNCE:
        return DecidedReport(incoming, None, f"ignored: not a report ({verdict.reason})")
    return DecidedReport(incoming, read_report(incoming, ctx.ours), "")


def handle_bounce_message(session: Session, ctx: BounceContext, raw: bytes) -> list[BounceResult]:
    """One message from the bounce mailbox: a report is recorded, anything else (an
    auto-reply, a person writing back) is ignored."""
    results, _ = _act(session, ctx, decide_report(raw, ctx))
    return results


def _act(
    session: Session, ctx: BounceContext, decided: DecidedReport
) -> tuple[list[BounceResult], bool]:
    if decided.report is None or decided.incoming is None:
        message_id = decided.incoming.message_id if decided.incoming else None
        return [BounceResult(message_id, None, None, "", decided.reason)], False
    return handle_report(session, ctx, decided.incoming, decided.report), True


def _hold(
    session: Session, ctx: BounceContext, uid: str, raw: bytes, decided: DecidedReport | None,
    error: str,
) -> tuple[list[BounceResult], HeldMessage]:  # fmt: skip
    """A report that could not be read or recorded waits for staff in the review queue
    (``requests review``), the error named."""
    incoming = decided.incoming if decided else None
    key = incoming.key if incoming else message_key(None, raw)
    record_held(
        session, key=key, raw=raw, incoming=incoming, error=error,
        action="held for review (from the bounce mailbox)", now=ctx.now,
    )  # fmt: skip
    message_id = incoming.message_id if incoming else None
    sender, subject = (incoming.sender, incoming.subject) if incoming else ("", "")
    return [BounceResult(message_id, None, None, "", f"held for review: {error}")], HeldMessage(
        uid, sender, subject, error
    )


def process_bounces(
    store: Store,
    config: Config,
    source: MessageSource,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RunResult[BounceResult]:
    """Read every message from ``source`` and record the reports (see
    :mod:`digest_mailer.inbox.run` for commits, crashes and messages held on errors)."""
    ctx = BounceContext(config, now=now)
    if not dry_run:
        with store.Session.begin() as session:
            score_pending(session, config)
    steps: Steps[DecidedReport, BounceResult] = Steps(
        decide=lambda raw: decide_report(raw, ctx),
        act=lambda session, decided: _act(session, ctx, decided),
        hold=lambda session, uid, raw, decided, error: _hold(
            session, ctx, uid, raw, decided, error
        ),
    )
    return run_mailbox(store, source, steps, dry_run=dry_run)
