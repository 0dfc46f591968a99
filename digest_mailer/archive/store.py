"""The archive's rows: written when an issue's real send starts, then only published or
unpublished by staff (``archive publish`` / ``archive unpublish``).

The caller owns the transaction (a command, or :func:`~digest_mailer.send.prepare_send`).
"""

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.addresses import address_key, find_addresses
from digest_mailer.archive.render import ArchiveDraft, PublicIssue
from digest_mailer.errors import NotFoundError
from digest_mailer.models import ArchiveEntry, Issue, Subscriber, utcnow


def record(session: Session, draft: ArchiveDraft, *, publish: bool, when: datetime) -> bool:
    """Keep ``draft`` as the issue's archive page unless it has one already (a resumed
    send, a send to one more list): the page is written once. True when written."""
    if session.get(ArchiveEntry, draft.issue_id) is not None:
        return False
    session.add(
        ArchiveEntry(
            issue_id=draft.issue_id,
            title=draft.title,
            subject=draft.subject,
            volume=draft.volume,
            issue_date=draft.issue_date,
            description=draft.description,
            headlines=json.dumps(draft.headlines, ensure_ascii=False),
            body_html=draft.body_html,
            body_text=draft.body_text,
            published=publish,
            issued_at=when,
            updated_at=when,
        )
    )
    session.flush()
    return True


def subscribers_named(session: Session, draft: ArchiveDraft, limit: int = 5) -> list[str]:
    """The subscribers whose address the page's text holds, masked (``j***@corp.test``):
    staff pasted a reader's address into the draft, and a public page must not show it
    without a person deciding so."""
    text = "\n".join([draft.title, draft.description, draft.body_text, *draft.headlines])
    keys = {address_key(a) for a in find_addresses(text, limit=1000)}
    if not keys:
        return []
    found = session.scalars(
        select(Subscriber.email).where(Subscriber.email_key.in_(sorted(keys))).limit(limit)
    ).all()
    return [f"{e[:1]}***@{e.rpartition('@')[2]}" for e in found]


def refresh(session: Session, draft: ArchiveDraft) -> bool:
    """Rewrite an issue's page with ``draft`` (a send resumed with ``--allow-changed``:
    the public copy follows the text that is sent), keeping whether and since when it is
    published. False when the issue has no page."""
    entry = session.get(ArchiveEntry, draft.issue_id)
    if entry is None:
        return False
    entry.title, entry.subject = draft.title, draft.subject
    entry.volume, entry.issue_date = draft.volume, draft.issue_date
    entry.description = draft.description
    entry.headlines = json.dumps(draft.headlines, ensure_ascii=False)
    entry.body_html, entry.body_text = draft.body_html, draft.body_text
    entry.updated_at = utcnow()
    return True


def set_published(session: Session, issue_id: str, published: bool) -> bool:
    """Publish or unpublish an issue's page; False when it was so already. An issue whose
    real send never started has no page: that is a :class:`NotFoundError`."""
    entry = session.get(ArchiveEntry, issue_id)
    if entry is None:
        known = session.get(Issue, issue_id) is not None
        why = "its send has not started" if known else "no such issue"
        raise NotFoundError(f"issue {issue_id} has no archive page ({why})")
    if entry.published == published:
        return False
    entry.published, entry.updated_at = published, utcnow()
    return True


_A = ArchiveEntry
_LISTED = (_A.issue_id, _A.title, _A.subject, _A.volume, _A.issue_date, _A.description)
_NEWEST_FIRST = (_A.issued_at.desc(), _A.issue_id.desc())


def _public(entry: Any, bodies: bool = True) -> PublicIssue:
    try:
        headlines = [str(h) for h in json.loads(entry.headlines or "[]")]
    except (ValueError, TypeError):
        headlines = []
    return PublicIssue(
        issue_id=entry.issue_id,
        title=entry.title,
        subject=entry.subject,
        volume=entry.volume,
        issue_date=entry.issue_date,
        description=entry.description,
        headlines=headlines,
        body_html=entry.body_html if bodies else "",
        body_text=entry.body_text if bodies else "",
        issued_at=entry.issued_at,
        updated_at=entry.updated_at,
    )


def published_issues(session: Session, *, bodies: bool = True) -> list[PublicIssue]:
    """Every published issue, newest first (by the start of its send, then id);
    ``bodies=False`` leaves the pages' bodies unread (for the index)."""
    columns = [*_LISTED, _A.headlines, _A.issued_at, _A.updated_at]
    if bodies:
        columns += [_A.body_html, _A.body_text]
    rows = session.execute(select(*columns).where(_A.published.is_(True)).order_by(*_NEWEST_FIRST))
    return [_public(r, bodies) for r in rows]


def published_body(session: Session, issue_id: str) -> tuple[str, str] | None:
    """The HTML and text body of a published issue, or None."""
    row = session.execute(
        select(_A.body_html, _A.body_text).where(_A.issue_id == issue_id, _A.published.is_(True))
    ).first()
    return (row[0], row[1]) if row is not None else None


def latest_published(session: Session) -> PublicIssue | None:
    """The newest published issue (for the welcome mail's link), or None."""
    row = session.scalars(
        select(ArchiveEntry)
        .where(ArchiveEntry.published.is_(True))
        .order_by(ArchiveEntry.issued_at.desc(), ArchiveEntry.issue_id.desc())
        .limit(1)
    ).first()
    return _public(row) if row is not None else None


def archive_rows(session: Session) -> list[tuple[str, str, bool, datetime]]:
    """(issue id, title, published, issued at) of every archive row, newest first, for
    ``archive list``."""
    rows = session.execute(
        select(
            ArchiveEntry.issue_id,
            ArchiveEntry.title,
            ArchiveEntry.published,
            ArchiveEntry.issued_at,
        ).order_by(ArchiveEntry.issued_at.desc(), ArchiveEntry.issue_id.desc())
    )
    return [(r[0], r[1], bool(r[2]), r[3]) for r in rows]
