"""Which issue each unsubscribe is put down to.

- Through a link: the issue the link's signed ``?i=`` mark names, recorded on the event
  when it happened (``Event.issue_id``, see :mod:`digest_mailer.web.app`).
- By email (``requests process``), or through a link that names no issue (the link in
  the mail that confirms an emailed unsubscribe, the welcome mail's, mail sent before
  links carried marks): at report time, the last issue *sent* to that reader (a
  ``sent`` delivery) within :data:`EMAIL_WINDOW` before it. Nothing is recorded for it:
  the rule can be changed and past reports follow.

Everything else (staff removals, bounces, complaints) is put down to no issue. Counts are
of readers, each at most once per issue and way.
"""

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased

from digest_mailer.kinds import DeliveryState, SubscriberStatus
from digest_mailer.models import Delivery, Event

EMAIL_WINDOW = timedelta(days=30)
# the actor of an unsubscribe by email (digest_mailer.inbox.subscriptions.ACTOR; the
# inbox's modules are not loaded for a report)
EMAIL_ACTOR = "email-request"
WEB_ACTOR = "web"  # an unsubscribe page or one-click POST (digest_mailer.web.app)

_UNSUBSCRIBE = and_(Event.kind == "status", Event.new_status == SubscriberStatus.UNSUBSCRIBED)


def link_unsubscribers(session: Session, issue_ids: Iterable[str]) -> dict[str, set[int]]:
    """issue -> the readers who unsubscribed through a link of it (its signed mark)."""
    found: dict[str, set[int]] = defaultdict(set)
    ids = list(issue_ids)
    if not ids:
        return found
    for issue_id, subscriber_id in session.execute(
        select(Event.issue_id, Event.subscriber_id)
        .where(_UNSUBSCRIBE, Event.issue_id.in_(ids), Event.subscriber_id.is_not(None))
        .distinct()
    ):
        found[issue_id].add(subscriber_id)
    return found


def email_unsubscribers(
    session: Session, since: datetime, issue_id: str | None = None
) -> dict[str, set[int]]:
    """issue -> the readers who unsubscribed by email since ``since`` and whose last issue
    sent within 30 days before it is that issue. With ``issue_id``, only readers who were
    sent that issue are looked at (the result may still name other issues)."""
    sent = aliased(Delivery)
    query = (
        select(Event.id, Event.subscriber_id, Event.created_at, sent.issue_id, sent.sent_at)
        .join(
            sent,
            and_(
                sent.subscriber_id == Event.subscriber_id,
                sent.state == DeliveryState.SENT,
                sent.sent_at.is_not(None),
                sent.sent_at <= Event.created_at,
                sent.sent_at >= since - EMAIL_WINDOW,
            ),
        )
        .where(
            _UNSUBSCRIBE,
            Event.actor.in_((EMAIL_ACTOR, WEB_ACTOR)),
            Event.issue_id.is_(None),
            Event.created_at >= since,
        )
        .order_by(Event.id)
    )
    if issue_id is not None:
        theirs = aliased(Delivery)
        query = query.where(
            exists().where(
                theirs.subscriber_id == Event.subscriber_id,
                theirs.issue_id == issue_id,
                theirs.state == DeliveryState.SENT,
            )
        )
    # per event, the latest delivery sent within the window before it
    latest: dict[int, tuple[datetime, str, int]] = {}
    for event_id, subscriber_id, at, delivered_issue, sent_at in session.execute(query):
        if sent_at < at - EMAIL_WINDOW:
            continue
        best = latest.get(event_id)
        if best is None or (sent_at, delivered_issue) > best[:2]:
            latest[event_id] = (sent_at, delivered_issue, subscriber_id)
    found: dict[str, set[int]] = defaultdict(set)
    for _, delivered_issue, subscriber_id in latest.values():
        found[delivered_issue].add(subscriber_id)
    return found
