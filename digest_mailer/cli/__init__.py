"""The command line: Typer apps, one module per command group. Only this package imports
typer and rich."""

from digest_mailer.cli.app import app, main

__all__ = ["app", "main"]
