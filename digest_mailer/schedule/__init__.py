"""Scheduled sends (``digest-mailer schedule``), sent when due by ``digest-mailer run``:

- :mod:`~digest_mailer.schedule.times`: reading ``--at`` and ``--tz`` (pure);
- :mod:`~digest_mailer.schedule.records`: recording, listing and cancelling them;
- :mod:`~digest_mailer.schedule.due`: :func:`run_due`, sending what is due through the
  same planning, lease and send loop as `send`.

A scheduled send is bound to the fingerprint of the tested version of its file: when it
is due the file is composed again and a changed file is refused, never sent.
"""

from digest_mailer.schedule.due import DueResult, run_due
from digest_mailer.schedule.records import (
    cancel_scheduled,
    compose_scheduled,
    list_scheduled,
    schedule_dict,
    schedule_send,
)
from digest_mailer.schedule.times import DueTime, due_time, local_zone_name

__all__ = [
    "DueResult", "DueTime", "cancel_scheduled", "compose_scheduled", "due_time",
    "list_scheduled", "local_zone_name", "run_due", "schedule_dict", "schedule_send",
]  # fmt: skip
