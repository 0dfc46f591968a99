"""The service: threads for the jobs and the pages, a clean stop on SIGTERM or SIGINT.

- ``sends`` (a thread): every :data:`TICK` seconds, the scheduled sends that are due
  (:func:`~digest_mailer.schedule.run_due`), one after the other. A send whose setup
  failed or that paused (the database or the mail server away) is tried again after
  ``[run] poll_seconds``.
- ``mail`` (a thread): every ``[run] poll_seconds``, the request mailbox, the bounce
  mailbox and the outbox of replies (:mod:`digest_mailer.service.jobs`).
- ``web`` (a thread): the readers' pages (:mod:`digest_mailer.service.web`).
- the main thread waits for a signal. On SIGTERM or SIGINT it asks every thread to
  stop: a send in progress finishes the messages in hand, records them and pauses (the
  next `run` resumes it); a mailbox run finishes its messages; the web server closes.
  Then :meth:`Service.run` returns (exit 0). A second signal stops at once.

A failing job is logged and tried again; it never stops the service.
"""

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from digest_mailer import __version__
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.schedule.due import run_due
from digest_mailer.service.jobs import MailJobs, mailbox_configured
from digest_mailer.service.logs import ServiceLog, bridge, one_line, secrets_of
from digest_mailer.signing import DkimSigner
from digest_mailer.tokens import signing_secret
from digest_mailer.transport import SMTPSettings, SMTPTransport, Transport

TICK = 1.0  # seconds between two looks for scheduled sends that are due
BACK_OFF = ("retry", "paused", "busy")  # outcomes tried again after poll_seconds


@dataclass(frozen=True)
class ServiceOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    web: bool = True
    log_format: str = "text"
    verbose: bool = False


class Service:
    """One `digest-mailer run` process (see the module)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        secret: bytes,
        log: ServiceLog,
        options: ServiceOptions,
        *,
        make_transport: Callable[[], Transport] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.secret = secret
        self.log = log
        self.options = options
        self.stop = stop or threading.Event()
        self.poll = config.run.poll_seconds
        if make_transport is None:
            settings = SMTPSettings.from_config(config)  # a missing password stops here

            def make_transport() -> Transport:
                return SMTPTransport(settings)

        self.make_transport = make_transport
        self.mail = MailJobs(store, config, log, make_transport)
        self.web = None
        if options.web:
            from digest_mailer.service.web import WebThread

            self.web = WebThread(store, config, secret, options.host, options.port, log)

    def run(self) -> None:
        """Until :attr:`stop` is set (by a signal, see :func:`stop_on_signals`)."""
        self.log(
            "service", "started", version=__version__, pid=os.getpid(),
            database=self.store.engine.dialect.name, poll_seconds=self.poll,
            web=f"http://{self.options.host}:{self.options.port}" if self.web else "off",
            requests=mailbox_configured(self.config, bounces=False),
            bounces=mailbox_configured(self.config, bounces=True),
        )  # fmt: skip
        if self.store.engine.dialect.name == "sqlite":
            self.log("service", "single machine", "debug", reason="SQLite: one run process")
        if self.web is not None:
            self.web.start()
        threads = [
            threading.Thread(target=self._guard, args=("sends", self._sends), name="sends"),
            threading.Thread(target=self._guard, args=("mail", self._mail), name="mail"),
        ]
        for thread in threads:
            thread.daemon = True  # a second signal ends the process without them
            thread.start()
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            self.stop.set()
            self.log("service", "stopping")
            if self.web is not None:
                self.web.stop()
            for thread in threads:
                thread.join()
            self.log("service", "stopped")

    def _guard(self, name: str, loop: Callable[[], None]) -> None:
        """Run a job loop; should it ever end by an error, log it and start it again."""
        while not self.stop.is_set():
            try:
                loop()
            except Exception as exc:
                self.log(name, "crashed", "error", error=one_line(exc), retry=f"{self.poll:g} s")
                self.stop.wait(self.poll)

    def _sends(self) -> None:
        later: dict[int, float] = {}  # schedule id -> when to try it again (monotonic)
        while not self.stop.is_set():
            now = time.monotonic()
            skip = {i for i, t in later.items() if t > now}
            try:
                results = run_due(
                    self.store, self.config, self.secret, stop=self.stop, report=self.log,
                    make_transport=self.make_transport, skip=skip,
                )  # fmt: skip
            except Exception as exc:  # the database away: look again at the next poll
                self.log("schedule", "failed", "error", error=one_line(exc), retry="next poll")
                self.stop.wait(self.poll)
                continue
            for result in results:
                if result.outcome in BACK_OFF:
                    later[result.schedule_id] = time.monotonic() + self.poll
            self.stop.wait(TICK)

    def _mail(self) -> None:
        while not self.stop.is_set():
            for name in self.mail.jobs:
                if self.stop.is_set():
                    break
                self.mail.run(name)
            self.stop.wait(self.poll)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM or SIGINT: set ``stop`` (the service then stops cleanly). A second one
    stops at once (a send's messages in hand are then uncertain on resume)."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_service(store: Store, config: Config, options: ServiceOptions) -> None:
    """`digest-mailer run`: check the setup, then serve until SIGTERM or SIGINT."""
    secret = signing_secret(config)
    DkimSigner.from_config(config)  # a bad key stops here, not at the first send
    log = ServiceLog(options.log_format, verbose=options.verbose, secrets=secrets_of(config))
    # the libraries' own warnings (a mailbox run's, SQLAlchemy's) in the same form
    bridge(log, "library", "digest_mailer", "sqlalchemy")
    stop = threading.Event()
    with stop_on_signals(stop):
        Service(store, config, secret, log, options, stop=stop).run()
