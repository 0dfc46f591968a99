"""Scoring bounces like Mailman does, and the bounce queries.

A hard bounce adds ``hard_weight`` (1.0), a soft one ``soft_weight`` (0.5), at most one
bounce's worth per subscriber per day (the day we received the report, never its Date
header); at ``bounce_threshold`` (3.0, or ``no_such_user_threshold``, 1.0, when the report
says the destination does not exist: 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10) the subscriber
becomes ``bounced``; the score starts again after ``bounce_reset_days`` without a bounce.
A complaint makes the subscriber ``complained`` at once. Every change is an event.

Only a bounce with proof is scored (:class:`~digest_mailer.kinds.Proof`): one matched by
the recipient address alone is ``unverified`` and changes nobody, unless ``[bounces]
trust_unverified`` is set.

A permanent refusal of the recipient at send time (5xx to RCPT, or a 5.1.x/5.2.x refusal
after the message) is recorded by the sender in the same commit as the outcome and scored
here (:func:`score_pending`).
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest_mailer.bounces.reports import ENHANCED, Failure
from digest_mailer.config import Config
from digest_mailer.kinds import BounceKind, Proof
from digest_mailer.models import Bounce, Delivery, Subscriber
from digest_mailer.subscribers import record_event, set_status
from digest_mailer.transport import Outcome

ACTOR = "bounces"
SCORED_STATUSES = ("active", "pending")


def apply_bounce(
    session: Session,
    config: Config,
    bounce: Bounce,
    subscriber: Subscriber | None,
    *,
    report_id: str | None = None,
) -> None:
    """Score one recorded bounce against its subscriber; sets ``bounce.action``."""
    where = f"report {report_id}" if report_id else "the send log"
    if subscriber is None:
        bounce.action = "none: no subscriber has this address"
        return
    if bounce.matched_by == Proof.UNVERIFIED and not config.bounces.trust_unverified:
        bounce.action = "unverified: not scored (no VERP token or Message-ID of ours)"
        return
    if bounce.kind == "complaint":
        if set_status(
            session,
            subscriber,
            "complained",
            actor=ACTOR,
            detail=f"complaint ({bounce.diagnostic}) in {where}",
        ):
            bounce.action = "complained"
        else:
            bounce.action = "none: already complained"
        return
    if bounce.kind not in ("hard", "soft"):
        bounce.action = f"noted: {bounce.kind}, not scored"
        return
    if subscriber.status not in SCORED_STATUSES:
        bounce.action = f"noted: the subscriber is {subscriber.status}"
        return
    rules = config.bounces
    at = bounce.occurred_at
    last = subscriber.last_bounce_at
    if (
        last is not None
        and subscriber.bounce_score
        and at - last > timedelta(days=rules.bounce_reset_days)
    ):
        record_event(
            session,
            subscriber,
            "bounce-score",
            ACTOR,
            f"bounce score {subscriber.bounce_score:g} reset: no bounce for more than "
            f"{rules.bounce_reset_days} days",
        )
        subscriber.bounce_score = 0.0
    weight = rules.hard_weight if bounce.kind == "hard" else rules.soft_weight
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    counted_today = session.scalar(
        select(func.coalesce(func.sum(Bounce.score_added), 0.0)).where(
            Bounce.subscriber_id == subscriber.id,
            Bounce.occurred_at >= day,
            Bounce.occurred_at < day + timedelta(days=1),
        )
    )
    added = max(0.0, weight - float(counted_today or 0.0))
    old = subscriber.bounce_score
    if added:
        subscriber.bounce_score = old + added
        bounce.score_added = added
        record_event(
            session,
            subscriber,
            "bounce",
            ACTOR,
            f"{bounce.kind} bounce {bounce.status or '(no code)'} in {where}: "
            f"score {old:g} -> {subscriber.bounce_score:g}",
        )
    if last is None or at > last:
        subscriber.last_bounce_at = at
    no_such_user = Failure(bounce.address, BounceKind(bounce.kind), bounce.status,
                           bounce.diagnostic).no_such_user  # fmt: skip
    threshold = rules.no_such_user_threshold if no_such_user else rules.bounce_threshold
    if subscriber.bounce_score >= threshold:
        set_status(
            session,
            subscriber,
            "bounced",
            actor=ACTOR,
            detail=f"bounce score {subscriber.bounce_score:g} reached {threshold:g} "
            f"({bounce.kind} bounce {bounce.status or 'without a code'})",
        )
        bounce.action = "bounced"
    elif added:
        bounce.action = f"scored: {subscriber.bounce_score:g} of {threshold:g}"
    else:
        bounce.action = "noted: counted once today already"


# --------------------------------------------------------------------------- send-time refusals


def is_recipient_refusal(outcome: Outcome) -> bool:
    """A permanent failure that blames the recipient: 5xx to RCPT TO, or a refusal after
    the message whose enhanced code says the mailbox (5.1.x, 5.2.x) is the problem."""
    if outcome.kind != "failed" or outcome.code is None or outcome.code < 500:
        return False
    if outcome.stage == "rcpt":
        return True
    enhanced = ENHANCED.search(outcome.message or "")
    return outcome.stage == "end" and bool(enhanced) and enhanced.group(2) in ("1", "2")


def refusal_status(outcome: Outcome) -> str:
    enhanced = ENHANCED.search(outcome.message or "")
    return enhanced.group(0) if enhanced else str(outcome.code or "")


def score_pending(session: Session, config: Config) -> int:
    """Score the bounces recorded but not yet scored (refusals at send time)."""
    pending = session.scalars(select(Bounce).where(Bounce.action == "").order_by(Bounce.id)).all()
    for bounce in pending:
        subscriber = session.get(Subscriber, bounce.subscriber_id) if bounce.subscriber_id else None
        apply_bounce(session, config, bounce, subscriber)
    return len(pending)


# --------------------------------------------------------------------------- queries


def list_bounces(session: Session, since: datetime | None = None) -> Iterable[dict[str, Any]]:
    query = (
        select(Bounce, Delivery.issue_id)
        .outerjoin(Delivery, Delivery.id == Bounce.delivery_id)
        .order_by(Bounce.occurred_at, Bounce.id)
    )
    if since is not None:
        query = query.where(Bounce.occurred_at >= since)
    for bounce, issue_id in session.execute(query):
        yield {
            "time": bounce.occurred_at.isoformat(),
            "address": bounce.address,
            "kind": bounce.kind,
            "status": bounce.status,
            "issue": issue_id,
            "matched_by": bounce.matched_by,
            "action": bounce.action,
            "diagnostic": bounce.diagnostic,
            "report": bounce.report_message_id or bounce.report_key,
        }
