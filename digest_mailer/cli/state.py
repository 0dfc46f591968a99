"""What every command shares: the config, the store, the consoles, JSON output."""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from digest_mailer.config import Config, load_config, require_database_folder
from digest_mailer.db import Store, open_store
from digest_mailer.inbox.run import HeldMessage

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class State:
    config_path: str | None = None
    _config: Config | None = None
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self, *, check: bool = True) -> Store:
        """The store; ``check=False`` is for ``init`` alone (it may create the folder)."""
        if self._store is None:
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
