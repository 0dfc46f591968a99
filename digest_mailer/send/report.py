"""What a send did: counts by state, each issue's status card, the workers that took
part, and the send log row by row. Read-only."""

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest_mailer.errors import NotFoundError
from digest_mailer.kinds import BounceKind, WorkerState
from digest_mailer.models import (
    DELIVERY_STATES,
    Bounce,
    Delivery,
    Issue,
    SendWorker,
    TestSend,
    utcnow,
)


@dataclass
class SendReport:
    """How one run of a send (one process's part in it) ended."""

    issue_id: str
    state: str
    counts: dict[str, int]
    paused_reason: str = ""


def get_issue(session: Session, issue_id: str) -> Issue:
    issue = session.get(Issue, issue_id)
    if issue is None:
        known = session.scalars(select(Issue.id).order_by(Issue.created_at)).all()
        hint = f" (issues: {', '.join(known)})" if known else ""
        raise NotFoundError(f"no issue {issue_id!r} in the send log{hint}")
    return issue


def delivery_counts(session: Session, issue_id: str) -> dict[str, int]:
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    for state, n in session.execute(
        select(Delivery.state, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.state)
    ):
        counts[state] = n
    return counts


def issue_status(session: Session, issue_id: str | None = None) -> list[dict[str, object]]:
    issues = (
        [get_issue(session, issue_id)]
        if issue_id
        else session.scalars(select(Issue).order_by(Issue.created_at)).all()
    )
    out = []
    for issue in issues:
        tests = session.scalar(
            select(func.count()).select_from(TestSend).where(TestSend.issue_id == issue.id)
        )
        out.append(
            {
                "issue": issue.id,
                "subject": issue.subject,
                "fingerprint": issue.fingerprint,
                "state": issue.state,
                "tested": issue.tested_fingerprint == issue.fingerprint,
                "test_sends": tests or 0,
                "skipped_test": issue.skipped_test,
                "counts": delivery_counts(session, issue.id),
                # subscribers whose delivery of this issue bounced, or who complained
                "bounces": issue_bounce_counts(session, issue.id),
                "audiences": issue.audiences.splitlines(),
                "workers": worker_status(session, issue.id),
                "started_at": issue.started_at.isoformat() if issue.started_at else None,
                "finished_at": issue.finished_at.isoformat() if issue.finished_at else None,
                "note": issue.note,
            }
        )
    return out


def issue_bounce_counts(session: Session, issue_id: str) -> dict[str, int]:
    """Subscribers of one issue whose delivery bounced (hard or soft), or who complained."""
    counts = {"bounced": 0, "complained": 0}
    for kinds, name in (
        ((BounceKind.HARD, BounceKind.SOFT), "bounced"),
        ((BounceKind.COMPLAINT,), "complained"),
    ):
        counts[name] = (
            session.scalar(
                select(func.count(func.distinct(Bounce.address)))
                .join(Delivery, Delivery.id == Bounce.delivery_id)
                .where(Delivery.issue_id == issue_id, Bounce.kind.in_(kinds))
            )
            or 0
        )
    return counts


def worker_status(session: Session, issue_id: str) -> list[dict[str, object]]:
    """The workers that took part in an issue's send, each with its delivery counts."""
    per_worker: dict[str, dict[str, int]] = {}
    for worker_id, state, n in session.execute(
        select(Delivery.worker_id, Delivery.state, func.count())
        .where(Delivery.issue_id == issue_id, Delivery.worker_id.is_not(None))
        .group_by(Delivery.worker_id, Delivery.state)
    ):
        per_worker.setdefault(worker_id, dict.fromkeys(DELIVERY_STATES, 0))[state] = n
    now = utcnow()
    out = []
    for w in session.scalars(
        select(SendWorker).where(SendWorker.issue_id == issue_id).order_by(SendWorker.started_at)
    ):
        state = w.state
        if state == WorkerState.RUNNING and w.lease_until < now:
            state = WorkerState.LOST
        out.append(
            {
                "id": w.id,
                "kind": w.kind,
                "host": w.host,
                "pid": w.pid,
                "connections": w.connections,
                "state": state,
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": w.heartbeat_at.isoformat(),
                "counts": per_worker.get(w.id, dict.fromkeys(DELIVERY_STATES, 0)),
            }
        )
    return out


LOG_FIELDS = ("address", "state", "attempts", "code", "message", "time", "message_id")


def delivery_log(
    session: Session, issue_id: str, state: str | None = None
) -> Iterable[dict[str, object]]:
    get_issue(session, issue_id)
    query = select(Delivery).where(Delivery.issue_id == issue_id).order_by(Delivery.id)
    if state:
        query = query.where(Delivery.state == state)
    for d in session.scalars(query.execution_options(yield_per=1000)):
        yield {
            "address": d.address,
            "state": d.state,
            "attempts": d.attempts,
            "code": d.smtp_code,
            "message": d.smtp_message or "",
            "time": (d.sent_at or d.updated_at).isoformat(),
            "message_id": d.message_id or "",
        }
