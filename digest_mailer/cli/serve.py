"""`digest-mailer serve`: the one-click unsubscribe and confirmation pages."""

from typing import Annotated

import typer

from digest_mailer.cli.state import err, state
from digest_mailer.errors import ExitCode


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)
    ] = 8000,
) -> None:
    """Serve the readers' pages: unsubscribe, confirm, signup and the archive.

    /u/TOKEN (unsubscribe, RFC 8058 one-click), /c/TOKEN (confirm), /subscribe (the
    signup form), /archive/ and /feed.atom (past issues), /healthz.

    Put it behind the https address in [newsletter] public_url (a reverse proxy that
    terminates TLS). It shares the store with the other commands.

    Example: digest-mailer serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from digest_mailer.tokens import signing_secret
    from digest_mailer.web import create_app, server_config
    from digest_mailer.web.server import refuse_taken

    st = state(ctx)
    secret = signing_secret(st.config)
    refuse_taken(host, port)
    application = create_app(st.store(), st.config, secret)
    server = uvicorn.Server(server_config(application, host, port))
    err.print(f"serving on http://{host}:{port} (Ctrl-C stops)", markup=False)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        raise typer.Exit(ExitCode.STORE)  # as uvicorn does when it cannot listen
