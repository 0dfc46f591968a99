"""The pure parts (reading mailboxes, classifying, reading reports, addresses) import
nothing from the store, so they can be used and tested without a database."""

import subprocess
import sys

PURE = [
    "digest_mailer.addresses",
    "digest_mailer.kinds",
    "digest_mailer.inbox.classify",
    "digest_mailer.inbox.authentication",
    "digest_mailer.inbox.automatic",
    "digest_mailer.inbox.confirm_tokens",
    "digest_mailer.inbox.quoting",
    "digest_mailer.inbox.reading",
    "digest_mailer.inbox.lexicon",
    "digest_mailer.inbox.sources",
    "digest_mailer.bounces.reports",
    "digest_mailer.csvio",
    "digest_mailer.csvio.attributes",
    "digest_mailer.csvio.decoding",
    "digest_mailer.csvio.reading",
    "digest_mailer.csvio.writing",
    "digest_mailer.typos",
    "digest_mailer.tokens",
    "digest_mailer.reports.charts",
    "digest_mailer.reports.html",
    "digest_mailer.reports.weekly",
    "digest_mailer.reports.wording",
]
STORE = ["digest_mailer.db", "digest_mailer.models", "digest_mailer.subscribers", "sqlalchemy.orm"]
# the send engine and the mail transports: the web pages need none of them
SEND_ENGINE = ["digest_mailer.send", "digest_mailer.transport"]


def test_pure_parts_import_nothing_from_the_store() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {PURE!r}: importlib.import_module(name)\n"
        f"print(' '.join(m for m in {STORE!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_web_app_imports_no_send_engine() -> None:
    code = (
        "import sys\n"
        "import digest_mailer.web\n"
        f"print(' '.join(m for m in sys.modules if m.split('.')[:2] in "
        f"[n.split('.') for n in {SEND_ENGINE!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
