"""`digest-mailer doctor`: check this machine's setup, one line per check."""

import textwrap
from typing import TYPE_CHECKING, Annotated

import typer

from digest_mailer.cli.state import out, print_json, state

if TYPE_CHECKING:
    from digest_mailer.doctor import Check

WIDTH = 80
INDENT = "    "


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def check_lines(check: "Check") -> list[str]:
    """The check on lines of at most 80 columns: ✓, ✗ or – (skipped), then the fix of a
    failure on indented lines. Long words (a DKIM key) are cut to fit."""
    mark = "–" if check.skipped else "✓" if check.ok else "✗"
    wrap = textwrap.TextWrapper(width=WIDTH, subsequent_indent=INDENT, break_on_hyphens=False)
    lines = wrap.wrap(f"{mark} {check.check}: {check.detail}")
    if check.fix and not check.ok:
        wrap.initial_indent, wrap.subsequent_indent = f"{INDENT}fix: ", INDENT * 2
        lines += wrap.wrap(check.fix)
    return lines


def doctor(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print a JSON list of {"check", "ok", "detail", "fix"}.')
    ] = False,
) -> None:
    """Check the setup: config, database, secret, SMTP, IMAP, templates, and the DNS
    records for DKIM, SPF, DMARC and MX. One line per check: ✓ passed, ✗ failed (with
    the fix), – skipped. Exits 1 when a check fails, 2 when the config cannot be read.
    Sends nothing and changes nothing.

    Example: digest-mailer doctor --json
    """
    from digest_mailer.doctor import exit_code, run_checks

    checks = run_checks(state(ctx).config_path)
    if as_json:
        print_json([c.to_json() for c in checks])
    else:
        for check in checks:
            for line in check_lines(check):
                out.print(line, markup=False)
        failed = sum(not c.ok for c in checks)
        if len(checks) > 1:
            skipped = sum(c.skipped for c in checks)
            passed = len(checks) - failed - skipped
            out.print(f"{passed} passed, {failed} failed, {skipped} skipped", markup=False)
    code = exit_code(checks)
    if code:
        raise typer.Exit(code)
