"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and injects the
faults a sender must survive: temporary and permanent refusals, a connection dropped at
DATA or after the message, slowness, being stopped and started again, and not offering
SMTPUTF8 (``SMTPServer(smtputf8=False)``)."""

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


@dataclass
class Received:
    mail_from: str
    rcpt: str
    data: bytes
    mail_options: list[str] = field(default_factory=list)  # e.g. ["SMTPUTF8"]

    @property
    def message(self):  # type: ignore[no-untyped-def]
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class FaultHandler:
    temp_fail: dict[str, int] = field(default_factory=dict)  # address -> 451s before success
    perm_fail: set[str] = field(default_factory=set)  # address -> 550 at RCPT
    drop_at_data: dict[str, int] = field(default_factory=dict)  # address -> drops at DATA
    drop_after_message: set[str] = field(default_factory=set)  # accept, then hang up
    delay: float = 0.0  # seconds per message
    pipelining: bool = False  # advertise RFC 2920 PIPELINING
    on_message: object = None  # callable(count) after each accepted message
    received: list[Received] = field(default_factory=list)
    mail_commands: list[str] = field(default_factory=list)  # every MAIL FROM accepted

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def count(self, address: str) -> int:
        with self.lock:
            return sum(r.rcpt == address for r in self.received)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        with self.lock:
            self.mail_commands.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        with self.lock:
            if address in self.perm_fail:
                return "550 5.1.1 No such user here"
            if self.temp_fail.get(address, 0) > 0:
                self.temp_fail[address] -= 1
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append(
                    Received(
                        envelope.mail_from, rcpt, envelope.content, list(envelope.mail_options)
                    )
                )
            count = len(self.received)
            hang_up = any(r in self.drop_after_message for r in envelope.rcpt_tos)
            if hang_up:
                self.drop_after_message.difference_update(envelope.rcpt_tos)
        if self.on_message is not None:
            self.on_message(count)  # type: ignore[operator]
        if hang_up:
            server.transport.close()  # accepted, but the client never hears so
        return "250 2.0.0 Accepted"


class FaultySMTP(SMTP):
    async def smtp_DATA(self, arg):  # type: ignore[no-untyped-def]
        handler = self.event_handler
        with handler.lock:
            victim = next((r for r in self.envelope.rcpt_tos if handler.drop_at_data.get(r)), None)
            if victim:
                handler.drop_at_data[victim] -= 1
        if victim:
            self.transport.close()  # hang up on the DATA command: nothing was accepted
            return
        return await super().smtp_DATA(arg)


class FaultyController(Controller):
    def factory(self):  # type: ignore[no-untyped-def]
        return FaultySMTP(self.handler, **self.SMTP_kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPServer:
    """Start, stop and restart a FaultyController on a fixed loopback port."""

    def __init__(self, handler: FaultHandler | None = None, *, smtputf8: bool = True) -> None:
        self.handler = handler or FaultHandler()
        self.port = free_port()
        self.smtputf8 = smtputf8  # offer SMTPUTF8 in the EHLO reply (aiosmtpd's default)
        self.controller: FaultyController | None = None

    def start(self) -> "SMTPServer":
        for _ in range(50):  # the port may take a moment to be free again after a stop
            try:
                self.controller = FaultyController(
                    self.handler,
                    hostname="127.0.0.1",
                    port=self.port,
                    ready_timeout=10,
                    enable_SMTPUTF8=self.smtputf8,
                )
                self.controller.start()
                return self
            except (OSError, RuntimeError):
                time.sleep(0.1)
        raise RuntimeError(f"cannot start the test SMTP server on port {self.port}")

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def addresses(self) -> list[str]:
        with self.handler.lock:
            return [r.rcpt for r in self.handler.received]
