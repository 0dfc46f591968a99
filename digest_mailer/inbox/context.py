"""What acting on a request needs and what it reports: :class:`InboxContext` (config, our
addresses, the time) and :class:`InboxResult` (what happened to one message).

Shared by the mailbox run (:mod:`digest_mailer.inbox.actions`), the actions on a
subscription (:mod:`digest_mailer.inbox.subscriptions`) and staff review
(:mod:`digest_mailer.inbox.review`).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest_mailer.addresses import normalize_address
from digest_mailer.bounces.process import BounceContext
from digest_mailer.composer import template_environment
from digest_mailer.config import Config
from digest_mailer.inbox.classify import Policy
from digest_mailer.models import utcnow


@dataclass
class InboxResult:
    """What happened to one message; ``address`` is the address whose subscription
    changes (the token for ``confirm``)."""

    message_id: str | None
    sender: str
    label: str
    address: str | None
    action: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "from": self.sender,
            "label": self.label,
            "address": self.address,
            "action": self.action,
            "reason": self.reason,
        }


class InboxContext:
    """What handling a message needs besides the session: config, our addresses, time."""

    def __init__(
        self, config: Config, *, now: datetime | None = None, dry_run: bool = False
    ) -> None:
        self.config = config
        self.now = now or utcnow()
        self.dry_run = dry_run  # replies are recorded but not built
        self.bounces = BounceContext(config, now=self.now)
        self.ours = self.bounces.ours
        self.policy = Policy(self.ours, config.inbox.authserv_id, config.inbox.max_message_bytes)
        self._env: Any = None

    @property
    def env(self) -> Any:
        if self._env is None:
            self._env = template_environment(self.config)
        return self._env

    def normalized(self, address: str) -> str:
        return normalize_address(
            address, allow_test_domains=self.config.subscribers.allow_test_domains
        )
