"""A local SMTP server that accepts everything and stores each message in a Maildir:
for trying the tool, the demo, and the tests (aiosmtpd)."""

import mailbox
import os
import socket
import threading
from pathlib import Path

from aiosmtpd.controller import Controller

from digest_mailer.errors import InputError


class MaildirHandler:
    """Stores one copy per recipient, with Return-Path and Delivered-To added as an MTA
    would, so the envelope can be checked (VERP, exactly-once counts)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        existed = folder.exists()
        self.maildir = mailbox.Maildir(str(folder), create=True)
        if not existed:  # captured mail is people's mail: the folders are private
            for sub in (folder, folder / "new", folder / "cur", folder / "tmp"):
                sub.chmod(0o700)
        self.count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                # SMTPUTF8 addresses arrive as text; surrogates stand for bytes not UTF-8
                head = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {rcpt}\r\n"
                key = self.maildir.add(head.encode("utf-8", "surrogateescape") + content)
                os.chmod(self.folder / "new" / key, 0o600)
                self.count += 1
        return "250 2.0.0 Message accepted"


def start_capture(folder: Path, host: str = "127.0.0.1", port: int = 8025) -> Controller:
    """Start the capture server in a background thread; call ``.stop()`` to end it."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is not a folder: --maildir names the folder to store mail in")
    try:  # a port in use is said at once (the server thread would only time out)
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    controller = Controller(
        MaildirHandler(folder),
        hostname=host,
        port=port,
        enable_SMTPUTF8=True,
        ready_timeout=10,
    )
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc}") from None
    return controller
