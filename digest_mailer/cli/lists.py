"""`digest-mailer lists ...`: named lists such as the seed list."""

from typing import Annotated

import typer

from digest_mailer.cli.state import out, print_json, state

app = typer.Typer(
    rich_markup_mode=None,
    help="Named lists of subscribers (the seed list is one).\n\n"
    "Example: digest-mailer lists create board",
    no_args_is_help=True,
)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="One-word list name.")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
) -> None:
    """Create a list.

    Example: digest-mailer lists create board --description "Board members"
    """
    from digest_mailer import subscribers

    with state(ctx).transaction() as session:
        subscribers.create_list(session, name, description)
    out.print(f"created list {name}", markup=False)


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every list with its member counts.

    Example: digest-mailer lists list --json
    """
    from rich.table import Table

    from digest_mailer import subscribers

    with state(ctx).transaction() as session:
        rows = subscribers.list_counts(session)
    if as_json:
        print_json(
            [
                {"name": m.name, "description": m.description, "members": n, "active": a}
                for m, n, a in rows
            ]
        )
        return
    table = Table("list", "description", "members", "active")
    for m, n, a in rows:
        table.add_row(m.name, m.description, str(n), str(a))
    out.print(table)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="List to delete; its members stay subscribed.")],
) -> None:
    """Delete a list. Its members remain subscribers.

    Example: digest-mailer lists delete board
    """
    from digest_mailer import subscribers

    with state(ctx).transaction() as session:
        members = subscribers.delete_list(session, name)
    out.print(f"deleted list {name} ({members} members, who remain subscribers)", markup=False)
