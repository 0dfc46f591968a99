"""One issue's figures: what `digest-mailer report ISSUE` prints.

Recipients and deliveries per state (the send log, as `status` counts them), the time the
send took, hard and soft bounces with their most common reasons, complaints, the
unsubscribes put down to the issue (:mod:`~digest_mailer.reports.attribution`) and the
clicks per link (``link_clicks``; none when click tracking is off).

Bounces and complaints count addresses, each once per kind, among the reports proven to
be about a delivery of the issue (VERP token, Message-ID, or a refusal at send time);
reports matched by the address alone are counted apart, as ``unverified``.
"""

import re
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest_mailer.kinds import BounceKind, DeliveryState, Proof
from digest_mailer.models import Bounce, Delivery, Issue, LinkClick
from digest_mailer.reports.attribution import email_unsubscribers, link_unsubscribers
from digest_mailer.send.report import delivery_counts, get_issue

TOP_REASONS = 5
EXAMPLE_CHARS = 120  # of a reason's example diagnostic
_PROVEN = Bounce.matched_by != Proof.UNVERIFIED
# a reason is about mail servers, not people: addresses in its example are masked
_ADDRESS = re.compile(r"[^\s<>()\[\]:;,\"']+@(?=[A-Za-z0-9\[])")


def example_of(diagnostic: str | None) -> str:
    """One line of a diagnostic, its addresses masked (``***@corp.test``), shortened."""
    return _ADDRESS.sub("***@", " ".join((diagnostic or "").split()))[:EXAMPLE_CHARS]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def time_to_send(session: Session, issue: Issue) -> dict[str, Any] | None:
    """From the send's start to its end (the issue's times), else from the first message
    sent to the last one; None before anything was sent."""
    start, end, measured = issue.started_at, issue.finished_at, "issue"
    if start is None or end is None:
        start, end = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                Delivery.issue_id == issue.id, Delivery.state == DeliveryState.SENT
            )
        ).one()
        measured = "deliveries"
    if start is None or end is None:
        return None
    return {
        "seconds": round((end - start).total_seconds(), 3),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "measured": measured,
    }


def bounce_figures(session: Session, issue_id: str) -> dict[str, Any]:
    """Hard and soft bounces (addresses), complaints, unverified reports, top reasons."""

    def addresses(*conditions: Any) -> int:
        query = (
            select(func.count(func.distinct(Bounce.address)))
            .join(Delivery, Delivery.id == Bounce.delivery_id)
            .where(Delivery.issue_id == issue_id, *conditions)
        )
        return session.scalar(query) or 0

    kinds = (BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT)
    reasons = session.execute(
        select(
            Bounce.kind,
            Bounce.status,
            func.count(func.distinct(Bounce.address)),
            func.min(Bounce.diagnostic),
        )
        .join(Delivery, Delivery.id == Bounce.delivery_id)
        .where(
            Delivery.issue_id == issue_id,
            _PROVEN,
            Bounce.kind.in_((BounceKind.HARD, BounceKind.SOFT)),
        )
        .group_by(Bounce.kind, Bounce.status)
    ).all()
    reasons.sort(key=lambda r: (-r[2], r[0], r[1]))
    return {
        "hard": addresses(_PROVEN, Bounce.kind == BounceKind.HARD),
        "soft": addresses(_PROVEN, Bounce.kind == BounceKind.SOFT),
        "complaints": addresses(_PROVEN, Bounce.kind == BounceKind.COMPLAINT),
        "unverified": addresses(Bounce.matched_by == Proof.UNVERIFIED, Bounce.kind.in_(kinds)),
        "reasons": [
            {
                "kind": kind,
                "status": status or "",
                "addresses": count,
                "example": example_of(example),
            }
            for kind, status, count, example in reasons[:TOP_REASONS]
        ],
    }


def click_figures(session: Session, issue_id: str) -> dict[str, Any]:
    links = [
        {
            "link": row.link_number,
            "url": row.url,
            "clicks": row.clicks,
            "first_at": _iso(row.first_at),
            "last_at": _iso(row.last_at),
        }
        for row in session.scalars(
            select(LinkClick).where(LinkClick.issue_id == issue_id).order_by(LinkClick.link_number)
        )
    ]
    return {"total": sum(link["clicks"] for link in links), "links": links}


def first_sent_at(session: Session, issue_id: str) -> datetime | None:
    return session.scalar(
        select(func.min(Delivery.sent_at)).where(
            Delivery.issue_id == issue_id, Delivery.state == DeliveryState.SENT
        )
    )


def unsubscribe_figures(link: set[int] | None, email: set[int] | None) -> dict[str, int]:
    link, email = link or set(), email or set()
    return {"link": len(link), "email": len(email), "total": len(link | email)}


def issue_figures(
    session: Session,
    issue: Issue,
    link: set[int] | None = None,
    email: set[int] | None = None,
) -> dict[str, Any]:
    """The figures of one issue, its unsubscribers given (see :func:`issue_report`)."""
    counts = delivery_counts(session, issue.id)
    bounces = bounce_figures(session, issue.id)
    complaints = bounces.pop("complaints")
    return {
        "issue": issue.id,
        "subject": issue.subject,
        "state": issue.state,
        "started_at": _iso(issue.started_at),
        "finished_at": _iso(issue.finished_at),
        "recipients": sum(counts.values()),
        "counts": counts,
        "time_to_send": time_to_send(session, issue),
        "bounces": bounces,
        "complaints": complaints,
        "unsubscribes": unsubscribe_figures(link, email),
        "clicks": click_figures(session, issue.id),
    }


def issue_report(session: Session, issue_id: str) -> dict[str, Any]:
    """`report ISSUE`: every figure of one issue (NotFoundError naming the known ones)."""
    issue = get_issue(session, issue_id)
    link = link_unsubscribers(session, [issue.id]).get(issue.id)
    first = first_sent_at(session, issue.id)
    email = email_unsubscribers(session, first, issue.id).get(issue.id) if first else None
    return issue_figures(session, issue, link, email)
