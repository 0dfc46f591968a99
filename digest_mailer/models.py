"""The store's tables, as SQLAlchemy 2.0 typed models.

The schema itself is created and changed only by the Alembic migrations in
``digest_mailer/migrations``; a test checks that the two agree.
"""

import secrets
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from digest_mailer.kinds import DeliveryState, IssueState, ScheduleState, SubscriberStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

STATUSES = tuple(SubscriberStatus)
SOURCES = ("cli", "import", "email-request", "web")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value  # type: ignore[attr-defined]

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


list_members = Table(
    "list_members",
    Base.metadata,
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_list_members_subscriber_id", "subscriber_id"),
)


def new_link_salt() -> str:
    """The random value a new subscriber's links sign (see ``tokens.make_token``)."""
    return secrets.token_hex(8)


class Subscriber(Base):
    __tablename__ = "subscribers"
    # ids are never reused (SQLite would reuse the highest after a purge)
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # lower-cased address: the unique key, so Ana@Corp.test and ana@corp.test are one person
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribe_reason: Mapped[str | None] = mapped_column(Text)
    # bounce score (Mailman-like): hard bounces add 1.0, soft 0.5, at most once a day;
    # reset after [bounces] bounce_reset_days without a bounce
    bounce_score: Mapped[float] = mapped_column(Float, server_default="0")
    last_bounce_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # a JSON object: the extra columns of imported CSV files (header -> cell text)
    attributes: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    # the random value its unsubscribe links sign: a purged person's link matches nobody
    # ("" for subscribers older than links bound this way: their links keep working)
    link_salt: Mapped[str] = mapped_column(String(32), default=new_link_salt, server_default="")
    # when its one welcome message was queued (None: never; see digest_mailer.welcome)
    welcomed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    lists: Mapped[list["MailingList"]] = relationship(
        secondary=list_members, back_populates="members", order_by="MailingList.name"
    )
    events: Mapped[list["Event"]] = relationship(
        back_populates="subscriber",
        order_by="Event.id",
        passive_deletes=True,
        cascade="save-update, merge",
    )

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.email} {self.status}>"


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[Subscriber]] = relationship(
        secondary=list_members, back_populates="lists", passive_deletes=True
    )


class Event(Base):
    """Append-only history: one row for every change to a subscriber.

    ``subscriber_id`` is NULL only for the record that a subscriber was erased, which keeps
    no personal data.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(30))
    old_status: Mapped[str | None] = mapped_column(String(20))
    new_status: Mapped[str | None] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the issue whose signed link caused it (an unsubscribe through a message's link)
    issue_id: Mapped[str | None] = mapped_column(String(100), index=True)

    subscriber: Mapped[Subscriber | None] = relationship(back_populates="events")


# The states themselves are StrEnums in digest_mailer.kinds; these tuples keep their order.
ISSUE_STATES = tuple(IssueState)
DELIVERY_STATES = tuple(DeliveryState)


class Issue(Base):
    """One edition of the newsletter (e.g. Vol 2.4) and the state of its send."""

    __tablename__ = "issues"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="draft")
    tested_fingerprint: Mapped[str | None] = mapped_column(String(64))
    skipped_test: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    # the audiences of its sends, one a line: "everyone" or "lists: a, b; not: c"
    audiences: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ArchiveEntry(Base):
    """The public page of one issue whose real send has started: written once, then only
    published or unpublished (:mod:`digest_mailer.archive`). Nothing personal is in it."""

    __tablename__ = "archive_entries"
    __table_args__ = (Index("ix_archive_entries_published", "published", "issued_at"),)

    issue_id: Mapped[str] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    title: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    volume: Mapped[str] = mapped_column(String(100), default="", server_default="")
    issue_date: Mapped[str] = mapped_column(String(100), default="", server_default="")
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    headlines: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")  # JSON list
    body_html: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(default=False, server_default=false())
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(Base):
    """One recipient of one issue: the send log's row, committed before and after SMTP."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("uq_deliveries_issue_subscriber", "issue_id", "subscriber_id", unique=True),
        Index("ix_deliveries_issue_state", "issue_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[str] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    address: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_message: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # with several senders (PostgreSQL): which worker holds or held the row, and until
    # when its claim stands unless renewed
    worker_id: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SendWorker(Base):
    """One process sending an issue, with its lease: a `send --worker` taking part, or a
    plain `send` holding the issue alone."""

    __tablename__ = "send_workers"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    issue_id: Mapped[str] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    connections: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))  # a kinds.WorkerState, ``lost`` included
    # a kinds.WorkerKind: "worker" shares the send (`send --worker`); "single" sends alone
    kind: Mapped[str] = mapped_column(String(20), default="worker", server_default="worker")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)


class TestSend(Base):
    """A test send of one fingerprint to one address; never touches deliveries."""

    __tablename__ = "test_sends"
    __test__ = False  # not a pytest test class

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[str] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(20))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_message: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboxMessage(Base):
    """One message read from the request mailbox and what was decided about it: its
    :class:`~digest_mailer.kinds.Label` and :class:`~digest_mailer.kinds.InboxState`.
    (The table keeps its first name, ``email_requests``.)

    ``message_key`` (the Message-ID, else a hash of the bytes) makes processing the same
    mailbox again change nothing. ``excerpt`` keeps what the sender wrote, for review;
    ``raw`` keeps delivery and complaint reports (for bounce handling) and messages held
    for review (so a reply to them can refer to the original).
    """

    __tablename__ = "email_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_key: Mapped[str] = mapped_column(String(255), unique=True)
    message_id: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    label: Mapped[str] = mapped_column(String(20), index=True)
    address: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    excerpt: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(20), index=True)
    resolution: Mapped[str | None] = mapped_column(String(20))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Confirmation(Base):
    """A double opt-in in progress: the hash of the token mailed to the address."""

    __tablename__ = "confirmations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_requests.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


REPLY_STATES = ("queued", "sending", "sent", "deferred", "failed", "uncertain")


class Reply(Base):
    """The outbox of automatic replies (confirmations, acknowledgements).

    Queued in the same transaction as the decision that needs it, sent after that commit,
    so a crash neither loses a reply nor sends one for a decision that was rolled back.
    ``data`` (the whole message) is cleared once the reply has its final state.
    """

    __tablename__ = "replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_requests.id", ondelete="SET NULL")
    )
    address: Mapped[str] = mapped_column(String(320))
    address_key: Mapped[str] = mapped_column(String(320), index=True)
    # the mailbox without its +tag, and the domain: what confirmation caps count by
    mailbox_key: Mapped[str] = mapped_column(String(320), index=True, server_default="")
    domain: Mapped[str] = mapped_column(String(255), index=True, server_default="")
    kind: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


BOUNCE_KINDS = ("hard", "soft", "delayed", "complaint", "unknown")


class Bounce(Base):
    """One failed recipient named by a delivery report, a complaint, or a permanent
    refusal at send time, and what it did to the subscriber.

    ``report_key`` is the report's Message-ID (else a hash of its bytes), or
    ``smtp:DELIVERY_ID`` for a refusal at send time; with the address it makes
    processing the same report again change nothing.
    """

    __tablename__ = "bounces"
    __table_args__ = (Index("uq_bounces_report_address", "report_key", "address", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_key: Mapped[str] = mapped_column(String(255))
    report_message_id: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str] = mapped_column(String(320), default="")
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    matched_by: Mapped[str] = mapped_column(String(20), default="")
    score_added: Mapped[float] = mapped_column(Float, default=0.0)
    action: Mapped[str] = mapped_column(Text, default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ScheduledSend(Base):
    """A send of one issue file at one time (``digest-mailer schedule``), bound to the
    fingerprint of its tested version: a file changed since is refused when due."""

    __tablename__ = "scheduled_sends"
    __table_args__ = (
        Index("ix_scheduled_sends_state_due", "state", "due_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[str] = mapped_column(String(100))
    source_path: Mapped[str] = mapped_column(Text)  # absolute
    fingerprint: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    lists: Mapped[str] = mapped_column(Text, default="", server_default="")  # one a line
    exclude_lists: Mapped[str] = mapped_column(Text, default="", server_default="")
    no_archive: Mapped[bool] = mapped_column(default=False, server_default=false())
    state: Mapped[str] = mapped_column(String(20), default=ScheduleState.SCHEDULED)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LinkClick(Base):
    """How often one link of one issue was followed through ``/r/TOKEN`` (opt-in,
    ``[tracking] clicks``): a count per link, nothing per person."""

    __tablename__ = "link_clicks"

    issue_id: Mapped[str] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    link_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
