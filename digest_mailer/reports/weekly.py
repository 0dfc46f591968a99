"""The list's size by status at the end of each week, rebuilt from the events history.

Pure: it takes the events as plain tuples, in the order they happened, and reads them
once, keeping one status per subscriber and one count per status. So the work is one
pass over the events and the memory one entry per subscriber, however many weeks.

Weeks run Monday 00:00 UTC to the next Monday (ISO weeks); the last one ends now.
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, time, timedelta

from digest_mailer.kinds import SubscriberStatus

WEEK = timedelta(days=7)
STATUSES = tuple(str(s) for s in SubscriberStatus)


def week_ends(since: datetime, now: datetime) -> list[datetime]:
    """The end of every week from the one holding ``since`` to the one holding ``now``:
    each Monday 00:00 UTC before ``now``, then ``now`` itself."""
    day = since.astimezone(UTC).date()
    monday = datetime.combine(day - timedelta(days=day.weekday()), time(), tzinfo=UTC)
    ends = []
    end = monday + WEEK
    while end < now:
        ends.append(end)
        end += WEEK
    ends.append(now)
    return ends


def week_label(end: datetime) -> str:
    """``2026-W47``: the ISO week that ends at ``end`` (or holds it, for the last)."""
    year, week, _ = (end - timedelta(microseconds=1)).isocalendar()
    return f"{year}-W{week:02d}"


def sizes_at(
    events: Iterable[tuple[datetime, int, str]], ends: Sequence[datetime]
) -> list[dict[str, int]]:
    """Per end, how many subscribers had each status just before it: each subscriber's
    status is the ``new_status`` of its last event before that moment. ``events`` are
    (time, subscriber id, new status), in the order they happened; ``ends`` ascending."""
    status: dict[int, str] = {}
    counts = dict.fromkeys(STATUSES, 0)
    out: list[dict[str, int]] = []
    for at, subscriber_id, new in events:
        while len(out) < len(ends) and at >= ends[len(out)]:
            out.append(dict(counts))
        if len(out) == len(ends):
            break
        old = status.get(subscriber_id)
        if old is not None:
            counts[old] -= 1
        status[subscriber_id] = new
        counts[new] = counts.get(new, 0) + 1
    while len(out) < len(ends):
        out.append(dict(counts))
    return out
