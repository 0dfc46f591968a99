"""Errors the library raises, with messages written for people.

The CLI turns each into one red line and an exit code; nothing else catches them.
"""


class DigestMailerError(Exception):
    """Base class: ``str(err)`` is a complete sentence for the person at the terminal."""

    exit_code = 1


class ConfigError(DigestMailerError):
    """The configuration file is missing, unreadable or has a bad key."""

    exit_code = 2


class InputError(DigestMailerError):
    """A file, address or argument given by the user cannot be used."""

    exit_code = 1


class NotFoundError(DigestMailerError):
    """A named thing (subscriber, list, issue) does not exist."""

    exit_code = 1


class StoreError(DigestMailerError):
    """The database is unreachable, uninitialised or at an unexpected revision."""

    exit_code = 3


class SendRefused(DigestMailerError):
    """The send cannot start: lint errors, no test send, a changed issue, another send."""

    exit_code = 4


class SendPaused(DigestMailerError):
    """The send stopped part-way with nothing lost; the same command resumes it."""

    exit_code = 5


class TestSendFailed(DigestMailerError):
    """A test send was not accepted for every seed address; nothing went to subscribers."""

    __test__ = False  # not a pytest test class
    exit_code = 6
