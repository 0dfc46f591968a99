"""The pure parts (reading mailboxes, classifying, reading reports, addresses) import
nothing from the store, so they can be used and tested without a database."""

import subprocess
import sys

PURE = [
    "digest_mailer.addresses",
    "digest_mailer.kinds",
    "digest_mailer.inbox.classify",
    "digest_mailer.inbox.lexicon",
    "digest_mailer.inbox.sources",
    "digest_mailer.bounces.reports",
    "digest_mailer.csvio",
    "digest_mailer.typos",
    "digest_mailer.tokens",
]
STORE = ["digest_mailer.db", "digest_mailer.models", "digest_mailer.subscribers", "sqlalchemy.orm"]


def test_pure_parts_import_nothing_from_the_store() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {PURE!r}: importlib.import_module(name)\n"
        f"print(' '.join(m for m in {STORE!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
