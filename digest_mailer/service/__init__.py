"""`digest-mailer run`: one long-running process for a server.

It sends the scheduled sends when due, reads the request and bounce mailboxes and sends
the outbox of replies every ``[run] poll_seconds``, and serves the readers' pages, with
one log line per event (text or JSON). In these parts:

- :mod:`~digest_mailer.service.main`: :class:`Service` (the threads, the clean stop on
  SIGTERM) and :func:`run_service`;
- :mod:`~digest_mailer.service.jobs`: the mailbox and outbox jobs;
- :mod:`~digest_mailer.service.web`: the pages on uvicorn in a thread;
- :mod:`~digest_mailer.service.logs`: the log, as text or one JSON object a line.

On PostgreSQL several `run` processes (on several machines) may share the store: each
job runs under an advisory lock (:mod:`digest_mailer.joblock`), so one process runs it
at a time. On SQLite one machine, one `run` process, is assumed.
"""

from digest_mailer.service.logs import ServiceLog
from digest_mailer.service.main import Service, ServiceOptions, run_service

__all__ = ["Service", "ServiceLog", "ServiceOptions", "run_service"]
