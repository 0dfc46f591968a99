"""The capture server (`capture-smtp`): mistakes are said at once, in one line."""

import socket
import time
from pathlib import Path

import pytest
from smtp_server import free_port

from digest_mailer.capture import start_capture
from digest_mailer.errors import InputError


def test_capture_on_a_busy_port_or_a_file_says_so_at_once(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}"):
            start_capture(tmp_path / "box", "127.0.0.1", port)
        assert time.monotonic() - started < 2
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        start_capture(plain, "127.0.0.1", free_port())
