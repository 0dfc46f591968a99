"""The SMTP transport: one connection, opened on first use, reused, reopened after a drop.

The SMTP client here is deliberately small: EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT,
DATA, RSET, QUIT, with timeouts on every read. No async SMTP library offers the commit
point before the final dot, which exactly-once sending needs.

Server replies are :class:`Reply` values, reply codes the named constants below (RFC 5321
4.2, RFC 4954 for AUTH). A refused recipient, MAIL or DATA command becomes an
:class:`~digest_mailer.transport.base.Outcome` with its stage; what no retry can fix (no
STARTTLS, a refused login, an unverifiable certificate) is a
:class:`~digest_mailer.errors.TransportError`.

Imports nothing from the store: :mod:`digest_mailer.config` (which reads database URLs
with SQLAlchemy) is imported only where a configuration is read.
"""

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from digest_mailer.errors import ConfigError, TransportError
from digest_mailer.kinds import OutcomeKind
from digest_mailer.transport.base import (
    NEEDS_SMTPUTF8,
    CommitPoint,
    Outcome,
    dot_stuffed,
    wire_envelope,
)

if TYPE_CHECKING:
    from digest_mailer.config import Config

MAX_LINE = 1 << 16
MAX_REPLY_TEXT = 500  # characters of a reply kept for the send log and error messages

# reply codes
SERVICE_READY = 220  # the greeting; STARTTLS: go ahead
AUTH_SUCCESS = 235
OK = 250
USER_NOT_LOCAL = 251  # RCPT: "user not local; will forward", as good as 250
AUTH_CONTINUE = 334  # AUTH LOGIN: the server asks for the next item
START_MAIL_INPUT = 354  # DATA: send the message, end it with <CRLF>.<CRLF>
SERVICE_CLOSING = 421  # service not available, closing the transmission channel

RCPT_ACCEPTED = (OK, USER_NOT_LOCAL)


@dataclass(frozen=True)
class Reply:
    """One server reply: its code and its text (the lines joined by spaces, clipped).
    ``lines`` keeps the lines apart, for EHLO's list of extensions."""

    code: int
    text: str
    lines: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def positive(self) -> bool:
        """2xx: the command was done."""
        return 200 <= self.code < 300

    @property
    def transient(self) -> bool:
        """4xx: not done this time; the same command may work later."""
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        """5xx: not done, and it will not be."""
        return 500 <= self.code < 600

    @property
    def negative(self) -> bool:
        """A refusal: 4xx or 5xx (a code above counts as one too)."""
        return self.code >= 400

    @property
    def closing(self) -> bool:
        """421: the server is closing the connection."""
        return self.code == SERVICE_CLOSING

    def outcome(self, stage: str = "end") -> Outcome:
        """``sent`` for 2xx, ``deferred`` for 4xx, else ``failed``."""
        if self.positive:
            return Outcome(OutcomeKind.SENT, self.code, self.text, stage)
        if self.transient:
            return Outcome(OutcomeKind.DEFERRED, self.code, self.text, stage)
        return Outcome(OutcomeKind.FAILED, self.code, self.text, stage)

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def refuse_clear_text_login(config: "Config") -> None:
    """A password goes only over TLS, or to this machine: ``security = "none"`` with a
    username is refused for any other host."""
    from digest_mailer.config import is_loopback  # see the module's docstring

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
    def from_config(cls, config: "Config") -> "SMTPSettings":
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

    # -- the wire
    async def _reply(self) -> Reply:
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
                    if not text.isprintable():  # rare: filter character by character
                        text = "".join(c if c.isprintable() else " " for c in text)
                    lines.append(text)
                    if line[3:4] != b"-":
                        joined = " ".join(lines)[:MAX_REPLY_TEXT]
                        return Reply(int(line[:3]), joined, tuple(lines))
        except TimeoutError:
            raise _Lost(f"no answer within {self.settings.timeout:g} s") from None
        except (OSError, ValueError) as exc:  # ValueError: a line over the reader's limit
            raise _Lost(_describe(exc)) from None

    async def _command(self, line: str) -> Reply:
        assert self._writer is not None
        try:
            self._writer.write(line.encode("utf-8") + b"\r\n")
            await self._writer.drain()
        except OSError as exc:
            raise _Lost(_describe(exc)) from None
        return await self._reply()

    async def _ehlo(self) -> None:
        reply = await self._command(f"EHLO {self.settings.local_hostname}")
        if reply.code != OK:
            raise TransportError(f"the SMTP server {self.settings.where} refused EHLO: {reply}")
        self.extensions = {}
        for line in reply.lines[1:]:  # the first line is the greeting
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
        greeting = await self._reply()
        if greeting.code != SERVICE_READY:
            raise _Lost(f"{s.where} greeted with {greeting}")
        await self._ehlo()
        if s.security == "starttls":
            if "STARTTLS" not in self.extensions:
                raise TransportError(
                    f"the SMTP server {s.where} does not offer STARTTLS; refusing to send in "
                    'clear text (set [smtp] security = "none" only for a trusted relay)'
                )
            reply = await self._command("STARTTLS")
            if reply.code != SERVICE_READY:
                raise TransportError(f"{s.where} refused STARTTLS: {reply}")
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
            reply = await self._command(f"AUTH PLAIN {token}")
        elif "LOGIN" in methods:
            reply = await self._command("AUTH LOGIN")
            if reply.code == AUTH_CONTINUE:
                reply = await self._command(base64.b64encode(s.username.encode()).decode())
            if reply.code == AUTH_CONTINUE:
                reply = await self._command(base64.b64encode(s.password.encode()).decode())
        else:
            raise TransportError(
                f"the SMTP server {s.where} offers no AUTH PLAIN or LOGIN; remove [smtp] "
                "username or use a server that accepts logins"
            )
        if reply.code != AUTH_SUCCESS:
            raise TransportError(f"{s.where} refused the login for {s.username}: {reply}")

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
            return Outcome(OutcomeKind.RETRY, None, str(exc))
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
                return Outcome(OutcomeKind.FAILED, None, f"{NEEDS_SMTPUTF8} and {where} does "
                               "not offer it; nothing was sent to it", "rcpt")  # fmt: skip
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
                return Outcome(
                    OutcomeKind.CANCELLED, None, "not sent: cancelled before the end of DATA"
                )
            if self._reader.at_eof() or self._writer.is_closing():
                raise _Lost("closed by the server during DATA")
            self._writer.write(b".\r\n")
            await self._writer.drain()
        except (_Lost, OSError) as exc:
            self._drop()
            where = self.settings.where
            return Outcome(OutcomeKind.RETRY, None, f"connection to {where} lost before the "
                           f"end of the message: {exc}")  # fmt: skip
        try:
            reply = await self._reply()
        except _Lost as exc:
            self._drop()
            return Outcome(
                OutcomeKind.UNCERTAIN, None, f"the message was sent but "
                f"{self.settings.where} did not answer: {exc}",
            )  # fmt: skip
        if reply.closing:
            self._drop()
        return reply.outcome()

    async def _envelope_in_turn(self, mail: str, rcpt: str, data: str) -> Outcome | None:
        reply = await self._command(mail)
        if reply.code != OK:
            return await self._refused(reply, "mail")
        reply = await self._command(rcpt)
        if reply.code not in RCPT_ACCEPTED:
            return await self._refused(reply, "rcpt")
        reply = await self._command(data)
        if reply.code != START_MAIL_INPUT:
            return await self._refused(reply, "data")
        return None

    async def _envelope_pipelined(self, mail: str, rcpt: str, data: str) -> Outcome | None:
        """RFC 2920: MAIL, RCPT and DATA in one write, then their three replies."""
        assert self._writer is not None
        try:
            self._writer.write(f"{mail}\r\n{rcpt}\r\n{data}\r\n".encode())
            await self._writer.drain()
        except OSError as exc:
            raise _Lost(_describe(exc)) from None
        mail_reply, rcpt_reply, data_reply = [await self._reply() for _ in range(3)]
        refusal = None
        if mail_reply.code != OK:
            refusal = (mail_reply, "mail")
        elif rcpt_reply.code not in RCPT_ACCEPTED:
            refusal = (rcpt_reply, "rcpt")
        if refusal is None and data_reply.code == START_MAIL_INPUT:
            return None
        if data_reply.code == START_MAIL_INPUT:
            await self._command(".")  # DATA accepted although the envelope was not: send nothing
        return await self._refused(*(refusal or (data_reply, "data")))

    async def _refused(self, reply: Reply, stage: str) -> Outcome:
        if reply.closing:
            self._drop()
            return Outcome(OutcomeKind.DEFERRED, reply.code, reply.text, stage)
        try:
            await self._command("RSET")
        except _Lost:
            self._drop()
        if not reply.negative:  # a positive reply where a refusal was expected
            return Outcome(
                OutcomeKind.DEFERRED, reply.code, f"unexpected reply: {reply.text}", stage
            )
        return reply.outcome(stage)

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
