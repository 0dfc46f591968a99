"""`report --since DATE`: every issue started since a date, one row of figures each, and
the list's size by status at the end of each week since then."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.errors import InputError
from digest_mailer.models import Event, Issue, utcnow
from digest_mailer.reports.attribution import email_unsubscribers, link_unsubscribers
from digest_mailer.reports.issue import issue_figures
from digest_mailer.reports.weekly import sizes_at, week_ends, week_label


def status_events(session: Session, until: datetime) -> Iterator[tuple[datetime, int, str]]:
    """Every change of status before ``until``, oldest first, streamed (not loaded whole)."""
    rows = session.execute(
        select(Event.created_at, Event.subscriber_id, Event.new_status)
        .where(
            Event.new_status.is_not(None),
            Event.subscriber_id.is_not(None),
            Event.created_at < until,
        )
        .order_by(Event.created_at, Event.id)
        .execution_options(yield_per=5000)
    )
    yield from rows  # type: ignore[misc]


def weekly_list_size(session: Session, since: datetime, now: datetime) -> list[dict[str, Any]]:
    ends = week_ends(since, now)
    sizes = sizes_at(status_events(session, ends[-1]), ends)
    return [
        {
            "week": week_label(end),
            "end": end.isoformat(),
            "complete": i < len(ends) - 1,
            "counts": counts,
            "total": sum(counts.values()),
        }
        for i, (end, counts) in enumerate(zip(ends, sizes, strict=True))
    ]


def across_report(session: Session, since: datetime, now: datetime | None = None) -> dict[str, Any]:
    """The issues whose send started since ``since`` (oldest first) with their figures,
    and the weekly list size from the week holding ``since`` to now."""
    now = now or utcnow()
    if since > now:
        raise InputError(f"--since {since:%Y-%m-%d} is in the future")
    issues = session.scalars(
        select(Issue).where(Issue.started_at >= since).order_by(Issue.started_at, Issue.id)
    ).all()
    ids = [i.id for i in issues]
    link = link_unsubscribers(session, ids)
    email = email_unsubscribers(session, since) if ids else {}
    return {
        "since": since.isoformat(),
        "now": now.isoformat(),
        "issues": [issue_figures(session, i, link.get(i.id), email.get(i.id)) for i in issues],
        "weeks": weekly_list_size(session, since, now),
    }
