"""The service's log: one line per event, as text or as JSON, on stderr.

Every line names the time (UTC), the level, the job (``service``, ``web``,
``requests``, ``bounces``, ``outbox``, ``schedule:ID``), the event (``started``,
``finished``, ``sent``, ``refused``, ``failed``…) and its fields:

    2026-12-08T00:00:00.412Z info  schedule:3 sent issue=2.4 counts={"sent": 812}

    {"time": "2026-12-08T00:00:00.412Z", "level": "info", "job": "schedule:3",
     "event": "sent", "fields": {"issue": "2.4", "counts": {"sent": 812}}}

(one object per line in the JSON form). Secrets never reach the log: the values of the
environment variables the configuration names (the signing secret, the SMTP and IMAP
passwords) are replaced by ``***`` wherever they would appear, and the database is named
by its kind, never by its URL. Messages of the libraries underneath (uvicorn, the mailbox
runs) come through :class:`LogBridge` in the same form.
"""

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

from digest_mailer.config import Config

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def secrets_of(config: Config) -> list[str]:
    """The secret values the configuration points at (set in the environment)."""
    names = [
        config.newsletter.secret_env,
        config.smtp.password_env,
        config.inbox.imap_password_env,
    ]
    values = []
    for name in filter(None, names):
        value = os.environ.get(name, "")
        values += [v for v in [value, *value.split()] if len(v) >= 4]
    return sorted(set(values), key=len, reverse=True)


def one_line(exc: BaseException) -> str:
    """An error as one line: its type and the first line of its text."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    first = text[0] if text else ""
    name = type(orig).__name__
    return f"{name}: {first}"[:500] if first else name


class ServiceLog:
    """Writes the events (call it as ``log(job, event, level="info", **fields)``)."""

    def __init__(
        self,
        fmt: str = "text",
        *,
        stream: TextIO | None = None,
        verbose: bool = False,
        secrets: list[str] | None = None,
    ) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(fmt)
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.threshold = LEVELS["debug" if verbose else "info"]
        self.secrets = secrets or []
        self.lock = threading.Lock()

    def __call__(self, job: str, event: str, level: str = "info", **fields: Any) -> None:
        if LEVELS.get(level, 20) < self.threshold:
            return
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        if self.fmt == "json":
            line = json.dumps(
                {"time": stamp, "level": level, "job": job, "event": event, "fields": fields},
                ensure_ascii=False,
                default=str,
            )
        else:
            parts = [stamp, f"{level:<5}", job, event]
            parts += [f"{key}={_text_value(value)}" for key, value in fields.items()]
            line = " ".join(parts)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        with self.lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed stream must not stop the service
                pass


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        plain = value and not any(c.isspace() or c in "\"'=" for c in value)
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


class LogBridge(logging.Handler):
    """Records of Python's logging (uvicorn's, the libraries') as service events."""

    def __init__(self, log: ServiceLog, job: str) -> None:
        super().__init__(logging.DEBUG)
        self.log = log
        self.job = job

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format
            message = str(record.msg)
        level = record.levelname.lower()
        level = level if level in LEVELS else ("error" if record.levelno >= 40 else "info")
        fields: dict[str, Any] = {"logger": record.name}
        if record.exc_info and record.exc_info[1] is not None:
            fields["error"] = one_line(record.exc_info[1])
        self.log(self.job, message.splitlines()[0] if message else "message", level, **fields)


def bridge(log: ServiceLog, job: str, *names: str, level: int = logging.WARNING) -> None:
    """Send the records of the loggers ``names`` (at ``level`` and above) to ``log``."""
    handler = LogBridge(log, job)
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
