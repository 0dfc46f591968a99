"""The mailbox run shared by requests and bounces.

For each chunk of :data:`CHUNK` messages:

1. every message is read and decided with no transaction open (parsing and classifying
   are pure), so a slow message never holds the database's write lock and one-click
   unsubscribes during a run do not wait for it;
2. one transaction then acts on the chunk, each message in a savepoint of its own: any
   error while reading, deciding or acting holds that message for review with the error
   named (``error: …``), and the run goes on;
3. after the commit, the source is told which messages were processed (and which were
   acted on: on IMAP only those are marked read and moved).

A crash loses nothing (nothing is marked before its decisions commit) and repeats nothing
(each message is recorded under its key, so reading it again is a no-op). Only an error
of the store itself (a lost connection) stops the run.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from digest_mailer.db import Store
from digest_mailer.inbox.sources import MessageSource

CHUNK = 10  # messages per commit: short write transactions, so one-click POSTs wait little
D = TypeVar("D")
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class HeldMessage:
    """A message held for review because reading or acting on it failed."""

    uid: str
    sender: str
    subject: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"uid": self.uid, "from": self.sender, "subject": self.subject, "error": self.error}


@dataclass
class RunResult(Generic[T]):
    results: list[T] = field(default_factory=list)
    held: list[HeldMessage] = field(default_factory=list)


@dataclass
class Steps(Generic[D, T]):
    """What a run does with each message.

    ``decide(raw)`` reads and decides with no database (it may raise); ``act(session,
    decided)`` records and acts, returning the results and whether the message was acted
    on; ``hold(session, raw, decided_or_None, error)`` records a message held because of
    ``error`` and returns its results and a :class:`HeldMessage`."""

    decide: Callable[[bytes], D]
    act: Callable[[Session, D], tuple[list[T], bool]]
    hold: Callable[[Session, str, bytes, D | None, str], tuple[list[T], HeldMessage]]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"error: {type(exc).__name__}: {text}"[:500] if text else f"error: {type(exc).__name__}"


def _store_failed(exc: BaseException) -> bool:
    """An error of the store itself, not of one message: the run cannot go on."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def run_mailbox(
    store: Store,
    source: MessageSource,
    steps: Steps[D, T],
    *,
    dry_run: bool = False,
    chunk: int = CHUNK,
) -> RunResult[T]:
    """Run ``steps`` on every message of ``source``, then close it (see the module)."""
    run: RunResult[T] = RunResult()
    try:
        batch: list[tuple[str, bytes]] = []
        for item in source.messages():
            batch.append(item)
            if len(batch) == chunk:
                _one_chunk(store, source, steps, batch, run, dry_run)
                batch = []
        if batch:
            _one_chunk(store, source, steps, batch, run, dry_run)
    finally:
        source.close()
    return run


def _one_chunk(
    store: Store,
    source: MessageSource,
    steps: Steps[D, T],
    batch: list[tuple[str, bytes]],
    run: RunResult[T],
    dry_run: bool,
) -> None:
    decided: list[tuple[str, bytes, D | None, str]] = []
    for uid, raw in batch:  # no transaction is open here
        try:
            decided.append((uid, raw, steps.decide(raw), ""))
        except Exception as exc:  # one bad message never stops the rest
            log.debug("message %s could not be read: %s", uid, exc)
            decided.append((uid, raw, None, _describe(exc)))
    processed: list[tuple[str, bool]] = []
    session = store.Session()
    try:
        session.begin()
        for uid, raw, outcome, error in decided:
            acted = False
            if not error:
                try:
                    with session.begin_nested():
                        results, acted = steps.act(session, outcome)  # type: ignore[arg-type]
                    run.results += results
                except Exception as exc:
                    if _store_failed(exc):
                        raise
                    log.debug("message %s could not be acted on: %s", uid, exc)
                    error = _describe(exc)
            if error:
                try:
                    with session.begin_nested():
                        results, held = steps.hold(session, uid, raw, outcome, error)
                except Exception as exc:
                    if _store_failed(exc):
                        raise
                    # not even the record could be written: named here, left unmarked at
                    # its source, so the next run reads it again
                    log.debug("message %s could not be held: %s", uid, exc)
                    run.held.append(HeldMessage(uid, "", "", f"{error}; not recorded: {exc}"))
                    continue
                run.results += results
                run.held.append(held)
            processed.append((uid, acted))
        if dry_run:
            session.rollback()
            return
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    source.mark_processed(processed)
