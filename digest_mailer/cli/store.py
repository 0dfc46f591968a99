"""`digest-mailer init`: create or upgrade the database."""

import typer

from digest_mailer.cli.state import out, state


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(ctx: typer.Context) -> None:
    """Create the database, or upgrade it to the newest schema. Running it twice is harmless.

    Example: digest-mailer init
    """
    from digest_mailer import db, subscribers

    st = state(ctx)
    created = db.create_sqlite_folder(st.config.database_url)
    if created is not None:
        out.print(f"created the folder {created} for the database", markup=False)
    store = st.store(check=False)
    before, after = db.upgrade(store.engine)
    with st.transaction() as session:
        seed = st.config.seed.list
        subscribers.ensure_list(session, seed, "seed list for test sends")
    where = store.engine.url.render_as_string(hide_password=True)
    if before is None:
        out.print(f"created the database {where} at revision {after}", markup=False)
    elif before != after:
        out.print(f"upgraded the database {where} from {before} to {after}", markup=False)
    else:
        out.print(f"the database {where} is up to date (revision {after})", markup=False)
