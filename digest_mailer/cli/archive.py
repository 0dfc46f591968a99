"""`digest-mailer archive ...`: the public archive of past issues and its static export."""

from pathlib import Path
from typing import Annotated

import typer

from digest_mailer.cli.state import out, print_json, state

app = typer.Typer(
    rich_markup_mode=None,
    help="The public archive of past issues (pages, feed, static export).\n\n"
    "An issue is published when its real send starts (not with --no-archive).\n\n"
    "Example: digest-mailer archive export site/digest",
    no_args_is_help=True,
)


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the archive's issues, newest first.

    Every issue whose real send has started, and whether it is published.

    Example: digest-mailer archive list --json
    """
    from digest_mailer.archive.render import clean
    from digest_mailer.archive.store import archive_rows

    with state(ctx).transaction() as session:
        rows = archive_rows(session)
    if as_json:
        print_json(
            [
                {"issue": i, "title": t, "published": p, "issued_at": w.isoformat()}
                for i, t, p, w in rows
            ]
        )
        return
    if not rows:
        out.print("no issue has an archive page yet (one is made when a send starts)")
    for issue_id, title, published, when in rows:
        mark = "published  " if published else "unpublished"
        out.print(f"{mark}  {when:%Y-%m-%d}  {clean(issue_id)}  {clean(title)}", markup=False)


def _set(ctx: typer.Context, issue_id: str, published: bool) -> None:
    from digest_mailer.archive.store import set_published

    with state(ctx).transaction() as session:
        changed = set_published(session, issue_id, published)
    word = "published" if published else "unpublished"
    out.print(f"issue {issue_id} {word}" + ("" if changed else " already"), markup=False)


@app.command("publish")
def publish(
    ctx: typer.Context,
    issue_id: Annotated[str, typer.Argument(help="The issue's id (as `status` shows it).")],
) -> None:
    """Put an issue in the archive and the feed.

    For an issue sent with --no-archive, or unpublished.

    Example: digest-mailer archive publish 2.4
    """
    _set(ctx, issue_id, True)


@app.command("unpublish")
def unpublish(
    ctx: typer.Context,
    issue_id: Annotated[str, typer.Argument(help="The issue's id (as `status` shows it).")],
) -> None:
    """Take an issue out of the archive and the feed.

    Its page then answers 404, and the next export leaves it out.

    Example: digest-mailer archive unpublish 2.4
    """
    _set(ctx, issue_id, False)


@app.command("export")
def export(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The folder to write (replaced whole).")],
    base_url: Annotated[
        str,
        typer.Option(
            "--base-url",
            help="The folder's address on the website, for canonical links (default: "
            "public_url/archive/).",
            metavar="URL",
        ),
    ] = "",
) -> None:
    """Write the archive as static files for a website.

    index.html, ID/index.html, feed.atom and web.css. The same archive always gives
    the same bytes; links between pages are relative.

    Example: digest-mailer archive export site/d --base-url https://tt.test/d/
    """
    from digest_mailer.archive.export import export_archive
    from digest_mailer.archive.store import published_issues

    st = state(ctx)
    with st.transaction() as session:
        issues = published_issues(session)
    count = export_archive(issues, st.config, folder, base_url)
    out.print(f"wrote {count} issue page(s), the index and feed.atom to {folder}/", markup=False)
