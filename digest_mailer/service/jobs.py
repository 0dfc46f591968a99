"""The jobs `digest-mailer run` repeats every ``[run] poll_seconds``: the request
mailbox, the bounce mailbox and the outbox of replies. Each is what `requests process`,
`bounces process` and the replies' half of `requests process` do, on the mailboxes the
configuration names, as a job of its own under :func:`~digest_mailer.joblock.job_lock`.

A job that fails (the IMAP server down, the database away) is logged and tried again
at the next poll; it never stops the service. A mailbox the configuration does not name
is skipped, and said once.
"""

from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from digest_mailer.bounces.process import process_bounces
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.actions import process_inbox
from digest_mailer.inbox.outbox import send_replies
from digest_mailer.inbox.sources import open_source
from digest_mailer.joblock import job_lock
from digest_mailer.models import Reply
from digest_mailer.service.logs import ServiceLog, one_line
from digest_mailer.transport import Transport

ALREADY = "none: already processed"
JobResult = tuple[str, dict[str, Any]]  # (level, fields) of the job's "finished" line


def mailbox_configured(config: Config, *, bounces: bool) -> bool:
    """Whether the configuration names the request (or bounce) mailbox."""
    box = config.bounces if bounces else config.inbox
    imap = config.bounces.imap_folder if bounces else config.inbox.imap_host
    return bool(imap or box.mbox or box.maildir)


class MailJobs:
    """The three jobs, each run by :meth:`run` under its lock."""

    def __init__(
        self,
        store: Store,
        config: Config,
        log: ServiceLog,
        make_transport: Callable[[], Transport],
    ) -> None:
        self.store = store
        self.config = config
        self.log = log
        self.make_transport = make_transport
        self.said_skipped: set[str] = set()
        self.jobs: dict[str, Callable[[], JobResult | None]] = {
            "requests": self.requests,
            "bounces": self.bounces,
            "outbox": self.outbox,
        }

    def run(self, name: str) -> bool:
        """Run job ``name`` here unless another process runs it; False when it failed."""
        try:
            with job_lock(self.store, name) as mine:
                if not mine:
                    self.log(name, "elsewhere", "debug")
                    return True
                return self._run_locked(name)
        except Exception as exc:  # the lock itself could not be asked for: no database
            self.log(name, "failed", "error", error=one_line(exc), retry="next poll")
            return False

    def _run_locked(self, name: str) -> bool:
        self.log(name, "started", "debug")
        try:
            done = self.jobs[name]()
        except Exception as exc:  # logged while the lock is held, tried again next poll
            self.log(name, "failed", "error", error=one_line(exc), retry="next poll")
            return False
        if done is None:
            self.log(name, "finished", "debug", skipped=True)
        else:
            level, fields = done
            self.log(name, "finished", level, **fields)
        return True

    def _skip(self, name: str, why: str) -> None:
        if name not in self.said_skipped:
            self.said_skipped.add(name)
            self.log(name, "skipped", "info", reason=why)

    def requests(self) -> JobResult | None:
        if not mailbox_configured(self.config, bounces=False):
            self._skip("requests", "no request mailbox: set [inbox] maildir, mbox or imap_host")
            return None
        source = open_source(self.config)
        run, _ = process_inbox(self.store, self.config, source)  # replies: the outbox job
        new = [r for r in run.results if r.action != ALREADY]
        for held in run.held:
            self.log(
                "requests", "held", "warning", uid=held.uid, error=held.error,
                see="digest-mailer requests review",
            )  # fmt: skip
        fields: dict[str, Any] = {"mailbox": source.name, "messages": len(new)}
        fields |= dict(Counter(r.label for r in new))
        if run.held:
            fields["held"] = len(run.held)
        return ("info" if new or run.held else "debug"), fields

    def bounces(self) -> JobResult | None:
        if not mailbox_configured(self.config, bounces=True):
            self._skip("bounces", "no bounce mailbox: set [bounces] maildir, mbox or imap_folder")
            return None
        source = open_source(self.config, bounces=True)
        run = process_bounces(self.store, self.config, source)
        new = [r for r in run.results if not r.action.startswith(ALREADY)]
        for held in run.held:
            self.log("bounces", "held", "warning", uid=held.uid, error=held.error)
        fields: dict[str, Any] = {"mailbox": source.name, "reports": len(new)}
        fields |= dict(Counter(r.kind or "not a report" for r in new))
        if run.held:
            fields["held"] = len(run.held)
        return ("info" if new or run.held else "debug"), fields

    def outbox(self) -> JobResult | None:
        with self.store.Session() as session:
            waiting = session.scalar(
                select(func.count())
                .select_from(Reply)
                .where(Reply.state.in_(("queued", "deferred")), Reply.data.is_not(None))
            )
        if not waiting:
            return None
        results = send_replies(self.store, self.config, self.make_transport())
        outcomes = Counter(r.outcome.kind for r in results)
        kinds = Counter(r.kind for r in results)
        level = "info" if set(outcomes) <= {"sent"} else "warning"
        return level, {"replies": len(results), "outcomes": dict(outcomes), "kinds": dict(kinds)}
