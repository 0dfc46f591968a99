"""`digest-mailer dkim ...`: DKIM keys."""

from pathlib import Path
from typing import Annotated

import typer

from digest_mailer.cli.state import out

app = typer.Typer(
    rich_markup_mode=None,
    help="DKIM signing keys.\n\n"
    "Example: digest-mailer dkim keygen --selector digest2026 --domain lab.org",
    no_args_is_help=True,
)


@app.command("keygen")
def keygen(
    selector: Annotated[str, typer.Option("--selector", help="DKIM selector, e.g. digest2026.")],
    domain: Annotated[str, typer.Option("--domain", help="Signing domain, e.g. example.org.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the key files.", file_okay=False)
    ] = Path("."),
) -> None:
    """Make a 2048-bit RSA key pair: SELECTOR.private.pem (mode 0600) and
    SELECTOR.public.pem; never overwrites a key. Prints the DNS TXT record to publish.

    Example: digest-mailer dkim keygen --selector d26 --domain lab.org --out k
    """
    from digest_mailer.signing import generate_key

    key = generate_key(selector, domain, out_dir)
    out.print(f"wrote {key.private_path} (private, mode 0600) and {key.public_path}", markup=False)
    out.print("publish this DNS TXT record:", markup=False)
    out.print(key.dns_record(), markup=False, soft_wrap=True)
    out.print("then set [dkim] selector, domain and private_key_file in the config", markup=False)
