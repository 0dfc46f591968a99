import asyncio

import pytest
from smtp_server import SMTPServer, free_port

from digest_mailer.transport import (
    CaptureTransport,
    SMTPSettings,
    SMTPTransport,
    TransportError,
    run_coroutine,
)

MESSAGE = b"Subject: hello\r\n\r\n.leading dot\r\nbody\r\n"


def settings(server: SMTPServer, **kw) -> SMTPSettings:  # type: ignore[no-untyped-def]
    return SMTPSettings("127.0.0.1", server.port, **{"security": "none", "timeout": 5, **kw})


async def send_one(transport, rcpt="a@corp.test", commit=None):  # type: ignore[no-untyped-def]
    try:
        return await transport.send("from@corp.test", rcpt, MESSAGE, commit)
    finally:
        await transport.close()


def test_send_and_dot_stuffing(smtp_server: SMTPServer) -> None:
    outcome = run_coroutine(send_one(SMTPTransport(settings(smtp_server))))
    assert (outcome.kind, outcome.code) == ("sent", 250)
    received = smtp_server.handler.received[0]
    assert received.data.endswith(b".leading dot\r\nbody\r\n")
    assert received.mail_from == "from@corp.test"


def test_starttls_required_but_not_offered(smtp_server: SMTPServer) -> None:
    with pytest.raises(TransportError, match="does not offer STARTTLS; refusing"):
        run_coroutine(send_one(SMTPTransport(settings(smtp_server, security="starttls"))))
    assert smtp_server.handler.received == []


def test_login_without_auth_offered(smtp_server: SMTPServer) -> None:
    transport = SMTPTransport(settings(smtp_server, username="editor", password="pw"))
    with pytest.raises(TransportError, match="offers no AUTH"):
        run_coroutine(send_one(transport))


def test_connection_refused_is_a_retry() -> None:
    transport = SMTPTransport(SMTPSettings("127.0.0.1", free_port(), security="none", timeout=2))
    outcome = run_coroutine(send_one(transport))
    assert outcome.kind == "retry" and "cannot connect" in outcome.message


def test_commit_point_refusal_delivers_nothing(smtp_server: SMTPServer) -> None:
    async def no() -> bool:
        return False

    outcome = run_coroutine(send_one(SMTPTransport(settings(smtp_server)), commit=no))
    assert outcome.kind == "cancelled"
    assert smtp_server.handler.received == []


def test_run_coroutine_inside_a_running_loop() -> None:
    async def outer() -> str:
        capture = CaptureTransport()
        outcome = run_coroutine(capture.send("f@corp.test", "a@corp.test", MESSAGE))
        return outcome.kind

    assert asyncio.run(outer()) == "sent"


def test_dot_stuffing_matches_the_rfc_rule_on_random_input() -> None:
    """RFC 5321 4.5.2, written as the multiline regex it replaced (0.2 ms a message)."""
    import random
    import re

    from digest_mailer.transport import dot_stuffed

    rule = re.compile(rb"(?m)^\.")
    rng = random.Random(11)
    for _ in range(5000):
        data = bytes(rng.choice(b".a\r\n") for _ in range(rng.randint(0, 24)))
        assert dot_stuffed(data) == rule.sub(b"..", data), data
    assert dot_stuffed(b".x\r\n..y\r\nz.\r\n") == b"..x\r\n...y\r\nz.\r\n"
