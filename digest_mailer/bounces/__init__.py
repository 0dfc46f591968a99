"""Bounces and complaints: delivery reports turned into subscriber status, on proof only.

- :mod:`~digest_mailer.bounces.reports`: reading reports (pure, no database);
- :mod:`~digest_mailer.bounces.scoring`: scoring and the bounce queries;
- :mod:`~digest_mailer.bounces.process`: matching reports to deliveries, the mailbox run.
"""

from digest_mailer.bounces.scoring import (
    is_recipient_refusal,
    issue_bounce_counts,
    list_bounces,
    refusal_status,
    score_pending,
)

__all__ = [
    "is_recipient_refusal",
    "issue_bounce_counts",
    "list_bounces",
    "refusal_status",
    "score_pending",
]
