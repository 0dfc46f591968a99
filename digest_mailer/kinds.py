"""Labels and kinds used by the mail-reading parts, defined once.

Pure (no store imports), so classification and report parsing can use them; the models
store their values as plain strings.
"""

from enum import StrEnum


class Label(StrEnum):
    """What a message to the request address is, one per message."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    CONFIRM = "confirm"
    BOUNCE = "bounce"
    IGNORE = "ignore"
    REVIEW = "review"


class InboxState(StrEnum):
    """Where a recorded inbox message stands."""

    DONE = "done"
    REVIEW = "review"
    RESOLVED = "resolved"


class ReplyKind(StrEnum):
    """What a message in the outbox (``replies``) is: the automatic replies to requests
    (``templates/requests/KIND.*.j2``) and the welcome mail (``templates/welcome.*.j2``)."""

    CONFIRM = "confirm"
    UNKNOWN_TOKEN = "unknown_token"
    NOT_SUBSCRIBED = "not_subscribed"
    UNSUBSCRIBED = "unsubscribed"
    CONFIRM_UNSUBSCRIBE = "confirm_unsubscribe"
    WELCOME = "welcome"


class BounceKind(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    DELAYED = "delayed"
    COMPLAINT = "complaint"
    UNKNOWN = "unknown"


class Proof(StrEnum):
    """How a report was tied to one of our deliveries. Only ``verp`` and ``message-id``
    are proof; ``unverified`` (the recipient address alone) never changes a subscriber
    unless ``[bounces] trust_unverified`` says so."""

    VERP = "verp"
    MESSAGE_ID = "message-id"
    UNVERIFIED = "unverified"
    NONE = ""


# --------------------------------------------------------------------------- sending


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class IssueState(StrEnum):
    """Where one edition of the newsletter stands in its life."""

    DRAFT = "draft"
    TESTED = "tested"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"


class DeliveryState(StrEnum):
    """One recipient of one issue, in the send log.

    ``queued`` waits; ``claimed`` is held by one worker (PostgreSQL, several senders);
    ``sending`` is committed before the message's final dot and holds at most one row per
    connection; ``deferred`` waits for a retry after a temporary refusal. The rest are
    final: ``uncertain`` (the message may have been accepted: not resent unless asked),
    ``skipped`` (the subscriber left before their turn)."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"


# A row a send has still to finish; the one place this set is written down.
OPEN_DELIVERY_STATES = frozenset(
    {DeliveryState.QUEUED, DeliveryState.CLAIMED, DeliveryState.SENDING, DeliveryState.DEFERRED}
)
# A row a sender may pick up and claim (``claimed`` ones belong to their worker).
CLAIMABLE_DELIVERY_STATES = (DeliveryState.QUEUED, DeliveryState.DEFERRED)
FINAL_DELIVERY_STATES = frozenset(set(DeliveryState) - OPEN_DELIVERY_STATES)


class OutcomeKind(StrEnum):
    """How one attempt to hand one message to the mail server ended.

    ``sent``: accepted (2xx after the end of DATA). ``deferred``: a temporary refusal
    (4xx). ``failed``: a permanent refusal (5xx), or an address this server cannot take
    (nothing sent). ``retry``: the connection failed before the server could have
    accepted the message. ``uncertain``: the whole message went but no answer came.
    ``cancelled``: the caller's commit point said no; nothing was delivered.
    ``unavailable``: the server stayed unreachable after reconnecting (the send pauses).
    ``fatal``: no retry can fix it (bad credentials, no TLS where required)."""

    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    RETRY = "retry"
    UNCERTAIN = "uncertain"
    CANCELLED = "cancelled"
    UNAVAILABLE = "unavailable"
    FATAL = "fatal"


class WorkerState(StrEnum):
    """A process taking part in a send (``send_workers``). ``lost``: its lease ran out
    without a word (it crashed or was killed); another took its rows back."""

    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    LOST = "lost"


class WorkerKind(StrEnum):
    WORKER = "worker"  # `send --worker`: shares the send
    SINGLE = "single"  # a plain `send`: sends alone and excludes others


class ScheduleState(StrEnum):
    """A scheduled send (``digest-mailer schedule``), from recorded to done."""

    SCHEDULED = "scheduled"  # waiting for its time
    RUNNING = "running"  # its send is under way (a stop pauses it; `run` resumes it)
    SENT = "sent"  # the send finished
    CANCELLED = "cancelled"  # `schedule cancel`
    REFUSED = "refused"  # not sent: the file changed, or the send was refused (see note)
    FAILED = "failed"  # stopped on an error it cannot get past by itself (see note)


OPEN_SCHEDULE_STATES = (ScheduleState.SCHEDULED, ScheduleState.RUNNING)
