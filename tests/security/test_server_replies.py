"""Threat: a hostile or broken SMTP server's reply text (escape codes, bells, control
characters) reaching the staff's terminal through `log`, or a spreadsheet through
`log --csv`. Replies are stored as printable text only."""

from pathlib import Path

import support
from smtp_server import FaultHandler, SMTPServer

EVIL = "550 5.1.1 \x1b[2J\x1b[31mgone\x07 \x00away\x1b]0;owned\x07"


class EvilHandler(FaultHandler):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address.startswith("evil"):
            return EVIL
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def test_control_characters_in_replies_never_reach_the_log(
    tmp_path: Path, database_url: str, send_env
) -> None:  # type: ignore[no-untyped-def]
    server = SMTPServer(EvilHandler()).start()
    try:
        cli, issue = support.newsletter_cli(tmp_path, database_url, server.port)
        cli.ok("subscribers", "add", "evil@replies.test", "fine@replies.test")
        cli.ok("send", str(issue), "--yes", "--skip-test")
    finally:
        server.stop()
    for args in (["log", "3.1"], ["log", "3.1", "--csv"], ["log", "3.1", "--json"]):
        out = cli.ok(*args).stdout
        assert "gone" in out, out  # the words are kept (the table may shorten the rest)
        assert not any(c in out for c in "\x1b\x07\x00"), repr(out)
