"""Transports move one finished message to one recipient: SMTP, a folder of .eml files, or
an in-memory capture. They know nothing about issues or subscribers.

Transports are asyncio coroutines, so that one thread can drive many SMTP connections and
the send log without contending for the interpreter lock; :func:`run_coroutine` runs them
from synchronous code.

Every send ends in an :class:`Outcome`:

- ``sent``: the server accepted the message (2xx after the end of DATA);
- ``deferred``: a temporary refusal (4xx), try again later;
- ``failed``: a permanent refusal (5xx), or an address this server cannot take (no code,
  stage ``rcpt``, nothing sent for it): a domain that is not IDNA, or a non-ASCII local
  part when the server does not offer SMTPUTF8;
- ``retry``: not delivered because the connection failed before the server could have
  accepted the message (refused, timed out, dropped before the end of DATA);
- ``uncertain``: the whole message was sent but the answer never came, so the server may
  have accepted it;
- ``cancelled``: the caller's commit point said no; nothing was delivered.

``send`` takes an optional *commit point*: an awaitable callable run once everything but
the final end-of-data dot has been transmitted. A server cannot accept a message before
that dot, so a caller can do its bookkeeping while the bytes travel and still know nothing
was delivered if it never said yes.

Addresses arrive as the store keeps them (``user@bücher.test``) and go on the wire with
the domain as A-labels (``user@xn--bcher-kva.test``); a non-ASCII local part goes out with
``MAIL FROM:<…> SMTPUTF8`` (RFC 6531) only when the server offers SMTPUTF8. ASCII
addresses, nearly all of them, cost an ``isascii()`` each; others are converted once
(cached).

The SMTP client here is deliberately small: EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT,
DATA, RSET, QUIT, with timeouts on every read. No async SMTP library offers the commit
point before the final dot, which exactly-once sending needs.
"""

import asyncio
import base64
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from digest_mailer.addresses import UnencodableAddress, wire_address
from digest_mailer.config import Config, is_loopback
from digest_mailer.errors import ConfigError, DigestMailerError

T = TypeVar("T")
MAX_LINE = 1 << 16


class TransportError(DigestMailerError):
    """A problem no retry can fix: bad credentials, no TLS where TLS is required."""

    exit_code = 5


@dataclass(frozen=True)
class Outcome:
    kind: str
    code: int | None = None
    message: str = ""
    # where an SMTP refusal came: "mail", "rcpt", "data" (the DATA command) or "end"
    # (after the message); a refusal of the recipient itself is a bounce
    stage: str = ""


CommitPoint = Callable[[], Awaitable[bool]]

NEEDS_SMTPUTF8 = "the address needs SMTPUTF8 (a non-ASCII local part)"


@dataclass(frozen=True)
class Envelope:
    """MAIL FROM and RCPT TO as they go on the wire: domains as A-labels; ``utf8`` when a
    local part is not ASCII, so the transaction needs SMTPUTF8 (RFC 6531)."""

    sender: str
    recipient: str
    utf8: bool


def wire_envelope(envelope_from: str, recipient: str) -> "Envelope | Outcome":
    """The envelope for one message, or the ``failed`` outcome of a recipient that cannot
    be written for SMTP (nothing is sent for it). An ASCII pair costs two ``isascii()``;
    other addresses are converted once and cached. An envelope sender that cannot be
    written is a :class:`TransportError`: no message could go out."""
    if envelope_from.isascii() and recipient.isascii():
        return Envelope(envelope_from, recipient, False)
    try:
        sender = wire_address(envelope_from)
    except UnencodableAddress as exc:
        raise TransportError(f"the envelope sender cannot be written for SMTP: {exc}") from None
    try:
        rcpt = wire_address(recipient)
    except UnencodableAddress as exc:
        return Outcome("failed", None, f"not sent: {exc}", "rcpt")
    return Envelope(sender.text, rcpt.text, sender.utf8 or rcpt.utf8)


class Transport(Protocol):
    async def send(
        self, envelope_from: str, recipient: str, data: bytes, commit: CommitPoint | None = None
    ) -> Outcome: ...

    async def close(self) -> None: ...


def dot_stuffed(data: bytes) -> bytes:
    """RFC 5321 4.5.2: a line that starts with a dot gets one more. ``bytes.replace`` is
    about a hundred times faster than a multiline regex on a 30 KB message (the regex
    cost 0.2 ms a message, a fifth of the sender's time on one connection)."""
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def classify(code: int, text: str, stage: str = "end") -> Outcome:
    if 200 <= code < 300:
        return Outcome("sent", code, text, stage)
    if 400 <= code < 500:
        return Outcome("deferred", code, text, stage)
    return Outcome("failed", code, text, stage)


def refuse_clear_text_login(config: Config) -> None:
    """A password goes only over TLS, or to this machine: ``security = "none"`` with a
    username is refused for any other host."""
    smtp = config.smtp
    if smtp.username and smtp.security == "none" and not is_loopback(smtp.host):
        raise ConfigError(
            f'{config.source}: [smtp] security = "none" with a username would send the '
            f'password to {smtp.host} in clear text; use security = "starttls" or '
            '"ssl" (a login without TLS is allowed to 127.0.0.1 or localhost only)'
        )


@dataclass(frozen=True)
class SMTPSettings:
    host: str
    port: int
    security: str = "starttls"
    username: str = ""
    password: str = ""
    timeout: float = 30.0
    verify_certificates: bool = True
    local_hostname: str = "localhost"

    @classmethod
    def from_config(cls, config: Config) -> "SMTPSettings":
        smtp = config.smtp
        refuse_clear_text_login(config)
        password = config.secret("smtp", "password_env") if smtp.username else ""
        return cls(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=password,
            timeout=smtp.timeout,
            verify_certificates=smtp.verify_certificates,
            local_hostname=config.newsletter.from_address.rpartition("@")[2] or "localhost",
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class _Lost(Exception):
    """The connection failed; ``str`` says how."""


class SMTPTransport:
    """One SMTP connection, opened on first use, reused, and reopened after a drop."""

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.extensions: dict[str, str] = {}
        self._lines: list[str] = []

    # -- the wire
    async def _reply(self) -> tuple[int, str]:
        assert self._reader is not None
        lines = []
        try:
            async with asyncio.timeout(self.settings.timeout):
                while True:
                    line = await self._reader.readline()
                    if not line.endswith(b"\n"):
                        raise _Lost("connection closed by the server")
                    if len(line) < 4 or not line[:3].isdigit():
                        raise _Lost(f"not an SMTP reply: {line[:80]!r}")
                    text = line[4:].strip().decode("utf-8", "replace")
                    # a server's words reach terminals and spreadsheets: no escape codes,
                    # no control characters
                    lines.append("".join(c if c.isprintable() else " " for c in text))
                    if line[3:4] != b"-":
                        self._lines = lines
                        return int(line[:3]), " ".join(lines)[:500]
        except TimeoutError:
            raise _Lost(f"no answer within {self.settings.timeout:g} s") from None
        except (OSError, ValueError) as exc:  # ValueError: a line over the reader's limit
            raise _Lost(_describe(exc)) from None

    async def _command(self, line: str) -> tuple[int, str]:
        assert self._writer is not None
        try:
            self._writer.write(line.encode("utf-8") + b"\r\n")
            await self._writer.drain()
        except OSError as exc:
            raise _Lost(_describe(exc)) from None
        return await self._reply()

    async def _ehlo(self) -> None:
        code, text = await self._command(f"EHLO {self.settings.local_hostname}")
        if code != 250:
            raise TransportError(
                f"the SMTP server {self.settings.where} refused EHLO: {code} {text}"
            )
        self.extensions = {}
        for line in self._lines[1:]:  # the first line is the greeting
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params

    async def _connect(self) -> None:
        s = self.settings
        tls = s.tls_context() if s.security == "ssl" else None
        try:
            async with asyncio.timeout(s.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    s.host, s.port, ssl=tls, limit=MAX_LINE
                )
        except TimeoutError:
            raise _Lost(f"cannot connect to {s.where}: timed out") from None
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                f"the TLS certificate of {s.where} could not be verified: {exc.verify_message}"
            ) from None
        except OSError as exc:
            raise _Lost(f"cannot connect to {s.where}: {_describe(exc)}") from None
        code, text = await self._reply()
        if code != 220:
            raise _Lost(f"{s.where} greeted with {code} {text}")
        await self._ehlo()
        if s.security == "starttls":
            if "STARTTLS" not in self.extensions:
                raise TransportError(
                    f"the SMTP server {s.where} does not offer STARTTLS; refusing to send in "
                    'clear text (set [smtp] security = "none" only for a trusted relay)'
                )
            code, text = await self._command("STARTTLS")
            if code != 220:
                raise TransportError(f"{s.where} refused STARTTLS: {code} {text}")
            try:
                assert self._writer is not None
                await self._writer.start_tls(s.tls_context(), server_hostname=s.host)
            except ssl.SSLCertVerificationError as exc:
                raise TransportError(
                    f"the TLS certificate of {s.where} could not be verified: {exc.verify_message}"
                ) from None
            except (OSError, ssl.SSLError) as exc:
                raise _Lost(f"TLS with {s.where} failed: {_describe(exc)}") from None
            await self._ehlo()
        if s.username:
            await self._login()

    async def _login(self) -> None:
        s = self.settings
        methods = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in methods:
            token = base64.b64encode(f"\0{s.username}\0{s.password}".encode()).decode()
            code, text = await self._command(f"AUTH PLAIN {token}")
        elif "LOGIN" in methods:
            code, text = await self._command("AUTH LOGIN")
            if code == 334:
                code, text = await self._command(base64.b64encode(s.username.encode()).decode())
            if code == 334:
                code, text = await self._command(base64.b64encode(s.password.encode()).decode())
        else:
            raise TransportError(
                f"the SMTP server {s.where} offers no AUTH PLAIN or LOGIN; remove [smtp] "
                "username or use a server that accepts logins"
            )
        if code != 235:
            raise TransportError(f"{s.where} refused the login for {s.username}: {code} {text}")

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    # -- one message
    async def send(
        self, envelope_from: str, recipient: str, data: bytes, commit: CommitPoint | None = None
    ) -> Outcome:
        if envelope_from.isascii() and recipient.isascii():  # the hot path: nothing to convert
            mail_from, rcpt_to, needs_utf8 = envelope_from, recipient, False
        else:
            wire = wire_envelope(envelope_from, recipient)
            if isinstance(wire, Outcome):
                return wire  # an address no server could take: nothing sent
            mail_from, rcpt_to, needs_utf8 = wire.sender, wire.recipient, wire.utf8
        try:
            if self._writer is None:
                await self._connect()
        except _Lost as exc:
            self._drop()
            return Outcome("retry", None, str(exc))
        except BaseException:
            self._drop()
            raise
        utf8 = ""
        if needs_utf8:
            if "SMTPUTF8" not in self.extensions:
                where = self.settings.where
                if not mail_from.isascii():  # every message would fail: stop the send
                    raise TransportError(
                        f"the envelope sender {mail_from} needs SMTPUTF8 (a non-ASCII local "
                        f"part) and {where} does not offer it"
                    )
                return Outcome("failed", None, f"{NEEDS_SMTPUTF8} and {where} does not offer "
                               "it; nothing was sent to it", "rcpt")  # fmt: skip
            utf8 = " SMTPUTF8"
        envelope = (f"MAIL FROM:<{mail_from}>{utf8}", f"RCPT TO:<{rcpt_to}>", "DATA")
        try:
            if "PIPELINING" in self.extensions:
                refusal = await self._envelope_pipelined(*envelope)
            else:
                refusal = await self._envelope_in_turn(*envelope)
            if refusal is not None:
                return refusal
            payload = dot_stuffed(data)
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            assert self._writer is not None and self._reader is not None
            self._writer.write(payload)
            await self._writer.drain()
            if commit is not None and not await commit():
                self._drop()  # hanging up before the dot abandons the message undelivered
                return Outcome("cancelled", None, "not sent: cancelled before the end of DATA")
            if self._reader.at_eof() or self._writer.is_closing():
                raise _Lost("closed by the server during DATA")
            self._writer.write(b".\r\n")
            await self._writer.drain()
        except (_Lost, OSError) as exc:
            self._drop()
            where = self.settings.where
            return Outcome("retry", None, f"connection to {where} lost before the end of the "
                           f"message: {exc}")  # fmt: skip
        try:
            code, text = await self._reply()
        except _Lost as exc:
            self._drop()
            return Outcome(
                "uncertain", None, f"the message was sent but {self.settings.where} did not "
                f"answer: {exc}",
            )  # fmt: skip
        if code == 421:
            self._drop()
        return classify(code, text)

    async def _envelope_in_turn(self, mail: str, rcpt: str, data: str) -> Outcome | None:
        code, text = await self._command(mail)
        if code != 250:
            return await self._refused(code, text, "mail")
        code, text = await self._command(rcpt)
        if code not in (250, 251):
            return await self._refused(code, text, "rcpt")
        code, text = await self._command(data)
        if code != 354:
            return await self._refused(code, text, "data")
        return None

    async def _envelope_pipelined(self, mail: str, rcpt: str, data: str) -> Outcome | None:
        """RFC 2920: MAIL, RCPT and DATA in one write, then their three replies."""
        assert self._writer is not None
        try:
            self._writer.write(f"{mail}\r\n{rcpt}\r\n{data}\r\n".encode())
            await self._writer.drain()
        except OSError as exc:
            raise _Lost(_describe(exc)) from None
        replies = [await self._reply() for _ in range(3)]
        (mail_code, mail_text), (rcpt_code, rcpt_text), (data_code, data_text) = replies
        refusal = None
        if mail_code != 250:
            refusal = (mail_code, mail_text, "mail")
        elif rcpt_code not in (250, 251):
            refusal = (rcpt_code, rcpt_text, "rcpt")
        if refusal is None and data_code == 354:
            return None
        if data_code == 354:  # DATA accepted although the envelope was not: send nothing
            await self._command(".")
        return await self._refused(*(refusal or (data_code, data_text, "data")))

    async def _refused(self, code: int, text: str, stage: str) -> Outcome:
        if code == 421:  # the server is closing the connection
            self._drop()
            return Outcome("deferred", code, text, stage)
        try:
            await self._command("RSET")
        except _Lost:
            self._drop()
        if code < 400:  # a positive reply where a refusal was expected
            return Outcome("deferred", code, f"unexpected reply: {text}", stage)
        return classify(code, text, stage)

    async def close(self) -> None:
        if self._writer is not None:
            try:
                await self._command("QUIT")
            except (_Lost, OSError):
                pass
            self._drop()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


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
            return Outcome("cancelled", None, "not written: cancelled")
        self._count += 1
        path = self.folder / f"{self._count:06d}-{safe_file_name(wire.recipient)}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a person's mail
        with os.fdopen(fd, "wb") as out:
            out.write(f"X-Envelope-From: <{wire.sender}>\r\n".encode() + data)
        return Outcome("sent", 250, f"written to {path.name}")

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
            return Outcome("failed", None, f"{NEEDS_SMTPUTF8} and the capture does not offer "
                           "it; nothing was captured", "rcpt")  # fmt: skip
        if commit is not None and not await commit():
            return Outcome("cancelled", None, "not captured: cancelled")
        self.messages.append(Captured(wire.sender, wire.recipient, data, wire.utf8))
        return Outcome("sent", 250, "captured")

    async def close(self) -> None:
        pass


def _runner() -> asyncio.Runner:
    """uvloop's event loop where installed (several times cheaper per network round trip
    than the standard one), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    with _runner() as runner:
        return runner.run(coroutine)


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from synchronous code, even when this thread already
    runs an event loop (a web app, a notebook): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-mailer-io") as pool:
        return pool.submit(_run, coroutine).result()
