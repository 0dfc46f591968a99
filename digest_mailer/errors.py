"""Errors the library raises, with messages written for people.

The CLI turns each into one red line and an exit code; nothing else catches them. Every
error class and its exit code is defined here (README.md lists the codes), and this module
imports nothing from the project, so any module can raise them.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code the CLI uses, in one place (the README's table says the same)."""

    OK = 0
    INPUT = 1  # a bad file, address or argument; something named does not exist
    CONFIG = 2  # the configuration is missing, unreadable or wrong
    STORE = 3  # the database is unreachable, uninitialised or too old; `serve` cannot listen
    REFUSED = 4  # lint errors, or a send that may not start
    PAUSED = 5  # a send stopped part-way with nothing lost: the same command resumes it
    TEST_SEND_FAILED = 6  # some seed address did not accept the test send
    MAILBOX = 7  # a mailbox (IMAP, mbox, Maildir) cannot be read
    INTERNAL = 70  # a bug (EX_SOFTWARE): DIGEST_MAILER_DEBUG=1 shows the traceback


class DigestMailerError(Exception):
    """Base class: ``str(err)`` is a complete sentence for the person at the terminal."""

    exit_code = ExitCode.INPUT


class ConfigError(DigestMailerError):
    """The configuration file is missing, unreadable or has a bad key."""

    exit_code = ExitCode.CONFIG


class InputError(DigestMailerError):
    """A file, address or argument given by the user cannot be used."""

    exit_code = ExitCode.INPUT


class NotFoundError(DigestMailerError):
    """A named thing (subscriber, list, issue) does not exist."""

    exit_code = ExitCode.INPUT


class StoreError(DigestMailerError):
    """The database is unreachable, uninitialised or at an unexpected revision."""

    exit_code = ExitCode.STORE


class SendRefused(DigestMailerError):
    """The send cannot start: lint errors, no test send, a changed issue, another send."""

    exit_code = ExitCode.REFUSED


class SendPaused(DigestMailerError):
    """The send stopped part-way with nothing lost; the same command resumes it."""

    exit_code = ExitCode.PAUSED


class TestSendFailed(DigestMailerError):
    """A test send was not accepted for every seed address; nothing went to subscribers."""

    __test__ = False  # not a pytest test class
    exit_code = ExitCode.TEST_SEND_FAILED


class TemplateError(DigestMailerError):
    """A template cannot be found, parsed or rendered."""

    exit_code = ExitCode.INPUT


class SigningError(ConfigError):
    """The DKIM key or its settings cannot be used."""


class UnencodableAddress(InputError):
    """The address cannot be written for SMTP (a domain that is not valid IDNA)."""


class ScreenshotsUnavailable(DigestMailerError):
    """Chromium or Playwright is not installed: the pictures cannot be taken."""


class TransportError(DigestMailerError):
    """A problem no retry can fix: bad credentials, no TLS where TLS is required."""

    exit_code = ExitCode.PAUSED


class MailboxError(DigestMailerError):
    """A mailbox (an IMAP server, an mbox file or a Maildir) cannot be read: unreachable,
    login refused, folder missing."""

    exit_code = ExitCode.MAILBOX
