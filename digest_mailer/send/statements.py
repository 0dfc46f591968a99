"""The SQL of the send loop, built once and compiled once per dialect.

Each statement here runs thousands of times a second, through
:class:`~digest_mailer.db.FastStatement` on the driver's cursor. Batches are single
statements (``= ANY(:ids)``, ``UPDATE … FROM (VALUES …)``) where the dialect allows, so
that a group commit costs a few round trips however many connections it serves.

Nothing here decides anything: :mod:`digest_mailer.send.claims` says which statements a
sender uses, :mod:`digest_mailer.send.loop` when.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect

from digest_mailer.bounces.scoring import refusal_status
from digest_mailer.kinds import CLAIMABLE_DELIVERY_STATES, DeliveryState, SubscriberStatus
from digest_mailer.models import Bounce, Delivery, Subscriber, UTCDateTime
from digest_mailer.subscribers import address_key

DELIVERIES = Delivery.__table__
SUBSCRIBERS = Subscriber.__table__
_D = DELIVERIES

# Still active: a row is sent only while its subscriber is (checked at claim time).
STILL_ACTIVE = exists().where(
    SUBSCRIBERS.c.id == _D.c.subscriber_id,
    SUBSCRIBERS.c.status == SubscriberStatus.ACTIVE,
)
NOT_ACTIVE_MESSAGE = "not sent: the subscriber is no longer active"


def claim_statements(claimable: Any, **values: Any) -> tuple[Any, Any]:
    """The statements that turn one claimable row ``sending`` (only while its subscriber
    is still active; ``values`` are set too) or ``skipped`` (when no longer active)."""
    claim = (
        update(_D)
        .where(claimable, STILL_ACTIVE)
        .values(
            state=DeliveryState.SENDING,
            attempts=_D.c.attempts + 1,
            message_id=bindparam("message_id"),
            updated_at=bindparam("now", type_=UTCDateTime()),
            **values,
        )
    )
    skip = (
        update(_D)
        .where(claimable)
        .values(
            state=DeliveryState.SKIPPED,
            smtp_message=NOT_ACTIVE_MESSAGE,
            updated_at=bindparam("now", type_=UTCDateTime()),
        )
    )
    return claim, skip


# A single sender claims rows that are queued or deferred.
LOCAL_CLAIMABLE = and_(
    _D.c.id == bindparam("b_id"),
    or_(*(_D.c.state == s for s in CLAIMABLE_DELIVERY_STATES)),
)
LOCAL_CLAIM, LOCAL_SKIP = claim_statements(LOCAL_CLAIMABLE)

# A worker turns only its own claimed rows ``sending`` (or ``skipped``).
WORKER_CLAIMABLE = and_(
    _D.c.id == bindparam("b_id"),
    _D.c.state == DeliveryState.CLAIMED,
    _D.c.worker_id == bindparam("w"),
)
WORKER_CLAIM, WORKER_SKIP = claim_statements(
    WORKER_CLAIMABLE, lease_until=bindparam("lease", type_=UTCDateTime())
)

# One statement for a batch of outcomes (executemany); compiled once.
RECORD = (
    update(_D)
    .where(_D.c.id == bindparam("b_id"))
    .values(
        state=bindparam("state"),
        smtp_code=bindparam("smtp_code"),
        smtp_message=bindparam("smtp_message"),
        sent_at=func.coalesce(bindparam("sent_at", type_=UTCDateTime()), _D.c.sent_at),
        updated_at=bindparam("updated_at", type_=UTCDateTime()),
    )
)

# A refusal of the recipient, recorded with its outcome; scored by score_pending.
BOUNCE_COLUMNS = (
    "report_key",
    "report_message_id",
    "address",
    "subscriber_id",
    "delivery_id",
    "kind",
    "status",
    "diagnostic",
    "matched_by",
    "score_added",
    "action",
    "occurred_at",
    "created_at",
)


def bounce_insert(dialect: Dialect) -> Any:
    """The INSERT of a refusal, ignoring one already there: a commit that failed as the
    connection died may have been applied, and its outcomes are then recorded again."""
    values = {c: bindparam(c) for c in BOUNCE_COLUMNS}
    table = Bounce.__table__
    if dialect.name == "postgresql":
        return pg_insert(table).values(values).on_conflict_do_nothing()
    if dialect.name == "sqlite":
        return sqlite_insert(table).values(values).on_conflict_do_nothing()
    return insert(table).values(values)


def candidates(issue_id: str, after_id: int, limit: int) -> Any:
    """The next rows a single sender may send, in id order, with what a message needs."""
    return (
        select(_D.c.id, _D.c.subscriber_id, _D.c.address, Subscriber.name, Subscriber.link_salt)
        .outerjoin(Subscriber, Subscriber.id == _D.c.subscriber_id)
        .where(
            _D.c.issue_id == issue_id,
            _D.c.state.in_(CLAIMABLE_DELIVERY_STATES),
            _D.c.id > after_id,
        )
        .order_by(_D.c.id)
        .limit(limit)
    )


def bounce_row(row: Any, outcome: Any, now: datetime) -> dict[str, Any]:
    """The refusal of ``row``'s recipient at send time, for :data:`BOUNCE_COLUMNS`."""
    return {
        "report_key": f"smtp:{row.delivery_id}",
        "report_message_id": None,
        "address": address_key(row.address),
        "subscriber_id": row.subscriber_id,
        "delivery_id": row.delivery_id,
        "kind": "hard",
        "status": refusal_status(outcome),
        "diagnostic": f"refused at send time: {outcome.code} {outcome.message}"[:1000],
        "matched_by": "send",
        "score_added": 0.0,
        "action": "",
        "occurred_at": now,
        "created_at": now,
    }
