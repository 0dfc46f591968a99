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
