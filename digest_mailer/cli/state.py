"""What every command shares: the config, the store, the consoles, JSON output.

The config, the store and the consoles are made when a command first uses them, and
their modules loaded then: `--help` (Click's plain text) needs none of them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.orm import Session

    from digest_mailer.config import Config
    from digest_mailer.db import Store
    from digest_mailer.inbox.run import HeldMessage


class LazyConsole:
    """A rich ``Console`` made on first use (importing rich's console is a good part of
    the start-up of `--help`, which prints without it). Every attribute, read, written
    or deleted, is the console's, ``__dict__`` too (the proxy keeps its own two in
    slots), so ``monkeypatch.setattr(out, "_width", 80)`` works as on the console;
    ``.console`` is the console itself."""

    __slots__ = ("_options", "_console")

    def __init__(self, **options: Any) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            object.__setattr__(self, "_console", Console(**self._options))
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.console, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.console, name)


out = LazyConsole(highlight=False, soft_wrap=True)
err = LazyConsole(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class State:
    config_path: str | None = None
    _config: Config | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            from digest_mailer.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def store(self, *, check: bool = True) -> Store:
        """The store; ``check=False`` is for ``init`` alone (it may create the folder)."""
        if self._store is None:
            from digest_mailer.config import require_database_folder
            from digest_mailer.db import open_store

            if check:
                require_database_folder(self.config)
            self._store = open_store(self.config.database_url, check=check)
        return self._store

    @contextmanager
    def transaction(self, *, dry_run: bool = False) -> Iterator[Session]:
        """One transaction for the command: committed at the end unless ``dry_run``."""
        with self.store().Session() as session:
            yield session
            if dry_run:
                session.rollback()
            else:
                session.commit()

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
        root.call_on_close(root.obj.close)
    return root.obj


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def warn(message: str) -> None:
    err.print(message, style="yellow", markup=False)


def print_held(held: Sequence[HeldMessage]) -> None:
    """Name, on stderr, the messages a mailbox run held for review because of errors."""
    if not held:
        return
    err.print(
        f"{len(held)} message(s) held for review because of errors "
        "(see `digest-mailer requests review`):",
        style="yellow",
        markup=False,
    )
    for h in held:
        who = h.sender or "(no sender)"
        err.print(f"  {h.uid}: {who} {h.subject[:60]!r}: {h.error}", style="yellow", markup=False)


IssueIdOption = Annotated[
    str | None,
    typer.Option("--issue-id", help="The issue's id when the file has no Vol: line or id."),
]
EncodingOption = Annotated[
    str | None,
    typer.Option("--encoding", help="Read the file in this encoding (default: detected)."),
]
