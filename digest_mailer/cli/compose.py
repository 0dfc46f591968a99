"""`digest-mailer compose`: turn an issue's text into HTML, text and a preview message."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest_mailer.cli.state import EncodingOption, IssueIdOption, err, out, print_json, state, warn
from digest_mailer.errors import ExitCode

if TYPE_CHECKING:
    from digest_mailer import lint


def register(app: typer.Typer) -> None:
    app.command("compose")(compose)


def print_findings(findings: "list[lint.Finding]", *, summary_for: Path | None = None) -> None:
    """Every finding; with ``summary_for``, the errors and one line counting the warnings
    (a send repeats what ``compose`` already listed in full)."""
    warnings = [f for f in findings if f.level != "error"]
    for f in findings:
        if summary_for is not None and f.level != "error":
            continue
        style = "bold red" if f.level == "error" else "yellow"
        err.print(f"{f.level}: {f.message} [{f.code}]", style=style, markup=False)
    if summary_for is not None and warnings:
        err.print(
            f"{len(warnings)} warning(s): `digest-mailer compose {summary_for}` lists them "
            "(or pass --verbose)",
            style="yellow",
            markup=False,
        )


def compose(
    ctx: typer.Context,
    issue_file: Annotated[Path, typer.Argument(help="The issue: digest text or Markdown.")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder (default: next to the issue file)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    issue_id: IssueIdOption = None,
    encoding: EncodingOption = None,
    screenshots: Annotated[
        bool,
        typer.Option(
            "--screenshots", help="Also write phone, desktop and dark-mode pictures (Chromium)."
        ),
    ] = False,
) -> None:
    """Compose an issue into issue.html, issue.txt and preview.eml, and lint it.

    Exits 0 when there are only warnings, 4 when a lint error would stop the send.

    Example: digest-mailer compose issues/vol-2.4.md --out build/vol-2.4
    """
    from digest_mailer import composer, lint, message
    from digest_mailer.screenshots import ScreenshotsUnavailable, take_screenshots

    config = state(ctx).config
    composed = composer.compose_file(issue_file, config, issue_id=issue_id, encoding=encoding)
    if composed.source.encoding not in ("UTF-8", encoding):
        warn(
            f"{issue_file} was read as {composed.source.encoding} (it is not UTF-8); "
            "pass --encoding to choose another"
        )
    findings = lint.lint(composed) + lint.lint_config(config)
    target = out_dir or issue_file.with_suffix("")
    if target == issue_file:
        target = issue_file.with_name(issue_file.name + ".out")
    written = composer.write_outputs(composed, target, message.preview_message(composed, config))
    if screenshots:
        try:
            for picture in take_screenshots(written["issue.html"], target):
                written[picture.name] = picture
        except ScreenshotsUnavailable as exc:
            warn(str(exc))
    if as_json:
        print_json(
            {
                "fingerprint": composed.fingerprint,
                "subject": composed.subject,
                "issue": composed.issue_id,
                "html_bytes": composed.html_bytes,
                "files": {k: str(v) for k, v in written.items()},
                "lint": [f.as_dict() for f in findings],
            }
        )
    else:
        print_findings(findings)
        out.print(f"issue {composed.issue_id}: {composed.subject}", markup=False)
        out.print(f"fingerprint {composed.fingerprint}", markup=False)
        out.print(f"HTML {composed.html_bytes:,} bytes; wrote {target}/", markup=False)
    if lint.has_errors(findings):
        raise typer.Exit(ExitCode.REFUSED)
