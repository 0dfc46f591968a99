"""Sending an issue, in small parts a newcomer can read on their own:

- :mod:`~digest_mailer.send.plan`: check a send may start or resume, recover what a crashed
  run left, queue the recipients;
- :mod:`~digest_mailer.send.proof`: test sends and dry runs;
- :mod:`~digest_mailer.send.loop`: :class:`SendLoop`, exactly once to every recipient;
- :mod:`~digest_mailer.send.run`: ``run_send`` (alone) and ``run_worker`` (one of several);
- :mod:`~digest_mailer.send.claims`: which rows a sender holds (alone, or as one worker of
  several on PostgreSQL), a policy handed to the loop;
- :mod:`~digest_mailer.send.statements`: the loop's SQL;
- :mod:`~digest_mailer.send.envelope`: the envelope sender and the unsubscribe link;
- :mod:`~digest_mailer.send.report`: status, counts and the send log.

The names below are imported from their module on first use, so that ``status`` loads
the report alone and not the composer, the signer and the loop.
"""

import importlib
from typing import Any

_WHERE = {
    "Audience": "plan",
    "SendPlan": "plan",
    "prepare_send": "plan",
    "queue_recipients": "plan",
    "recover_crashed": "plan",
    "expire_leases": "plan",
    "live_workers": "plan",
    "record_issue": "plan",
    "refuse_reused_id": "plan",
    "refuse_on_lint_errors": "plan",
    "TestResult": "proof",
    "test_recipients": "proof",
    "test_send": "proof",
    "dry_run": "proof",
    "SendLoop": "loop",
    "Job": "loop",
    "ProgressCallback": "loop",
    "run_send": "run",
    "run_worker": "run",
    "ClaimPolicy": "claims",
    "LocalClaims": "claims",
    "LeasedClaims": "claims",
    "require_postgresql": "claims",
    "envelope_sender": "envelope",
    "unsubscribe_url": "envelope",
    "SendReport": "report",
    "get_issue": "report",
    "delivery_counts": "report",
    "issue_status": "report",
    "worker_status": "report",
    "delivery_log": "report",
    "LOG_FIELDS": "report",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
