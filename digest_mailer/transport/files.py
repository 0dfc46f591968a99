"""Transports that deliver nowhere: a folder of .eml files (dry runs) and an in-memory
capture (library tests, previews). Like an SMTP server they take the envelope in its wire
form and refuse an address no server could take."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from digest_mailer.kinds import OutcomeKind
from digest_mailer.transport.base import NEEDS_SMTPUTF8, CommitPoint, Outcome, wire_envelope
from digest_mailer.transport.smtp import OK

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")
MAX_NAME = 100  # of the address part of a file name (file systems allow 255 bytes)


def safe_file_name(address: str) -> str:
    """``address`` as part of a file name on any file system: ASCII letters, digits and
    ``@._+-`` only (others, a non-ASCII local part too, become ``_``), clipped."""
    return _UNSAFE.sub("_", address)[:MAX_NAME]


class FileTransport:
    """Writes each message as an .eml file into a folder, for dry runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._count = 0

    async def send(
        self, envelope_from: str, recipient: str, data: bytes, commit: CommitPoint | None = None
    ) -> Outcome:
        wire = wire_envelope(envelope_from, recipient)
        if isinstance(wire, Outcome):
            return wire
        if commit is not None and not await commit():
            return Outcome(OutcomeKind.CANCELLED, None, "not written: cancelled")
        self._count += 1
        path = self.folder / f"{self._count:06d}-{safe_file_name(wire.recipient)}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a person's mail
        with os.fdopen(fd, "wb") as out:
            out.write(f"X-Envelope-From: <{wire.sender}>\r\n".encode() + data)
        return Outcome(OutcomeKind.SENT, OK, f"written to {path.name}")

    async def close(self) -> None:
        pass


@dataclass
class Captured:
    """One message as a server would see it: the envelope in its wire form."""

    envelope_from: str
    recipient: str
    data: bytes
    smtputf8: bool = False  # the transaction would use SMTPUTF8


class CaptureTransport:
    """Keeps messages in memory (for library tests and previews). Like an SMTP server it
    takes addresses in their wire form; ``smtputf8=False`` acts as a server that does not
    offer SMTPUTF8."""

    def __init__(self, *, smtputf8: bool = True) -> None:
        self.messages: list[Captured] = []
        self.smtputf8 = smtputf8

    async def send(
        self, envelope_from: str, recipient: str, data: bytes, commit: CommitPoint | None = None
    ) -> Outcome:
        wire = wire_envelope(envelope_from, recipient)
        if isinstance(wire, Outcome):
            return wire
        if wire.utf8 and not self.smtputf8:
            return Outcome(OutcomeKind.FAILED, None, f"{NEEDS_SMTPUTF8} and the capture does "
                           "not offer it; nothing was captured", "rcpt")  # fmt: skip
        if commit is not None and not await commit():
            return Outcome(OutcomeKind.CANCELLED, None, "not captured: cancelled")
        self.messages.append(Captured(wire.sender, wire.recipient, data, wire.utf8))
        return Outcome(OutcomeKind.SENT, OK, "captured")

    async def close(self) -> None:
        pass
