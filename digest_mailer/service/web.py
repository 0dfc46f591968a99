"""The readers' pages inside `digest-mailer run`: the app `serve` runs
(:func:`~digest_mailer.web.create_app`, :func:`~digest_mailer.web.server_config`), on
uvicorn in a thread of the same process, its messages in the service's log."""

import threading
import time

import uvicorn

from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.errors import InputError
from digest_mailer.service.logs import ServiceLog, bridge
from digest_mailer.web import create_app, server_config
from digest_mailer.web.server import refuse_taken

START_SECONDS = 15.0  # uvicorn binds and starts within this
STOP_SECONDS = 15.0  # and stops within this (timeout_graceful_shutdown is 5 s)


class WebThread:
    """uvicorn serving the pages in a thread (signals stay the main thread's)."""

    def __init__(
        self, store: Store, config: Config, secret: bytes, host: str, port: int, log: ServiceLog
    ) -> None:
        self.host, self.port, self.log = host, port, log
        refuse_taken(host, port)
        settings = server_config(create_app(store, config, secret), host, port)
        # uvicorn set up its loggers just now: their lines go to the service's log
        bridge(log, "web", "uvicorn", "uvicorn.error", "uvicorn.access")
        self.server = uvicorn.Server(settings)
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise InputError(
                    f"cannot listen on {self.host}:{self.port} (see the log line above)"
                )
            time.sleep(0.02)
        self.log("web", "listening", address=f"http://{self.host}:{self.port}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STOP_SECONDS)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout=5)
