"""The ``link_clicks`` rows: each counted link of an issue, its URL and how often it was
followed (a count per link; nothing about who followed it).

The rows are what ``/r/TOKEN`` trusts: the URL a click is sent to comes from here, never
from the request. They are written when an issue is sent, by the caller's transaction:

- a test send of an issue not yet sent: the rows of the version tested, so the links of
  the test copies work (and staff clicks on them count until the real send starts);
- the real send's start: the rows again, every count at zero (test clicks are not
  readers' clicks);
- a resumed send, or one more audience: the rows the text has and the table lacks are
  added; a link whose URL is not the one already recorded (the text changed, sent with
  ``--allow-changed``) refuses the send: the mail already out must keep leading where it
  did, and no token leads to a URL it was not signed for.
"""

from datetime import datetime

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from digest_mailer.clicks.links import trackable
from digest_mailer.errors import SendRefused
from digest_mailer.models import LinkClick, UTCDateTime

_L = LinkClick.__table__


def record_links(session: Session, issue_id: str, links: list[str], *, fresh: bool) -> int:
    """Keep the URL of each counted link of ``issue_id`` (link n at index n-1); returns
    how many rows were written. ``fresh``: the send starts, every row of the issue is
    written again with no clicks; else missing rows are added and the others checked."""
    if any(not trackable(url) for url in links):  # the composer never gives one
        raise ValueError("only http(s) URLs are counted")
    if fresh:
        session.execute(delete(_L).where(_L.c.issue_id == issue_id))
        known: dict[int, str] = {}
    else:
        rows = session.execute(
            select(_L.c.link_number, _L.c.url).where(_L.c.issue_id == issue_id)
        ).all()
        known = {row.link_number: row.url for row in rows}
    changed = [n for n, url in enumerate(links, 1) if n in known and known[n] != url]
    if changed:
        listed = ", ".join(str(n) for n in changed[:5])
        raise SendRefused(
            f"issue {issue_id} changed its counted link(s) {listed} since the send started "
            f"(link {changed[0]} was {known[changed[0]]!r}, now {links[changed[0] - 1]!r}); "
            "the mail already sent must keep leading where it did. Send the original, or "
            "set [tracking] clicks = false to send the changed text with direct links"
        )
    new = [
        {"issue_id": issue_id, "link_number": n, "url": url, "clicks": 0}
        for n, url in enumerate(links, 1)
        if n not in known
    ]
    if new:
        session.execute(insert(_L), new)
    return len(new)


def link_url(session: Session, issue_id: str, number: int) -> str | None:
    """The URL recorded for link ``number`` of ``issue_id``; None when there is none."""
    return session.scalar(
        select(_L.c.url).where(_L.c.issue_id == issue_id, _L.c.link_number == number)
    )


def count_click(session: Session, issue_id: str, number: int, now: datetime) -> bool:
    """One more click on a link, in one atomic UPDATE (concurrent clicks all count);
    False when the link has no row (deleted meanwhile)."""
    at = literal(now, UTCDateTime())
    result = session.execute(
        update(_L)
        .where(_L.c.issue_id == issue_id, _L.c.link_number == number)
        .values(clicks=_L.c.clicks + 1, first_at=func.coalesce(_L.c.first_at, at), last_at=at)
    )
    return bool(result.rowcount)


def link_counts(session: Session, issue_id: str) -> list[LinkClick]:
    """Every counted link of an issue, by number (the report's clicks per link)."""
    return list(
        session.scalars(
            select(LinkClick).where(LinkClick.issue_id == issue_id).order_by(LinkClick.link_number)
        )
    )
