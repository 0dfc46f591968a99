"""Every command's help: plain text that keeps every word, fits 80 columns, no "<bool>",
and an example that can be copied as one line."""

import inspect

import pytest
import typer
from typer.testing import CliRunner

from digest_mailer.cli.app import app


def _commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(command, path: list[str]) -> None:  # type: ignore[no-untyped-def]
        found.append(path)
        if hasattr(command, "list_commands"):
            ctx = command.make_context(
                path[-1] if path else "digest-mailer", [], resilient_parsing=True
            )
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])

    walk(root, [])
    return found


COMMANDS = _commands()


def test_the_walk_finds_the_command_groups() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"", "send", "status", "subscribers import", "requests process", "doctor"} <= names
    assert len(names) > 25


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "root")
def test_help_is_whole_and_readable(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "<bool>" not in text
    assert all(len(line) <= 80 for line in text.splitlines()), text  # examples too
    examples = [line.strip() for line in text.splitlines() if "Example:" in line]
    assert examples, f"{' '.join(path)} has no example"
    assert all(e.startswith("Example: digest-mailer") for e in examples), examples


def test_section_names_in_brackets_survive() -> None:
    text = CliRunner().invoke(app, ["requests", "process", "--help"]).output
    assert "the [inbox] config decides" in text
    assert "Read the IMAP folder in [inbox]." in text


def test_every_docstring_word_reaches_the_help() -> None:
    """No markup eats text: each word of each command's docstring is printed."""
    root = typer.main.get_command(app)
    ctx = root.make_context("digest-mailer", [], resilient_parsing=True)
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        assert command is not None
        doc = inspect.cleandoc((command.help or "").replace("\b", ""))
        text = " ".join(CliRunner().invoke(app, [name, "--help"]).output.split())
        for word in doc.split():
            assert word in text, (name, word)
