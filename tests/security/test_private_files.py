"""Threat: another user of the machine reading subscribers, captured mail or the DKIM
key. Every file the tool creates is 0600, every folder 0700; a DKIM key open to its
group or to everyone is refused."""

import os
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest
from smtp_server import free_port

from digest_mailer.capture import start_capture
from digest_mailer.signing import SigningError, generate_key, load_private_key


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _run(tmp_path: Path, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """The installed command, as a person runs it, under a permissive umask."""
    code = f"import os, sys; os.umask({umask}); from digest_mailer.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(tmp_path / "config.toml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DIGEST_MAILER_SECRET": "private-files-secret-5e4d3c2b1a0f9e8d7c"},
    )


@pytest.mark.slow
def test_the_database_its_journals_and_its_folder_are_private(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[database]\nurl = "sqlite:///data/digest.db"\n[subscribers]\nallow_test_domains = true\n'
    )
    assert _run(tmp_path, "init").returncode == 0
    added = _run(tmp_path, "subscribers", "add", "ana@private.test")
    assert added.returncode == 0, added.stderr
    data = tmp_path / "data"
    assert _mode(data) == 0o700
    files = sorted(data.iterdir())
    assert files and all(_mode(f) == 0o600 for f in files), [(f.name, oct(_mode(f))) for f in files]
    export = tmp_path / "everyone.csv"
    assert _run(tmp_path, "subscribers", "export", str(export)).returncode == 0
    assert _mode(export) == 0o600


@pytest.mark.slow
def test_init_tightens_a_database_created_world_readable(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[database]\nurl = "sqlite:///digest.db"\n')
    db_file = tmp_path / "digest.db"
    db_file.touch(mode=0o644)
    db_file.chmod(0o644)
    assert _run(tmp_path, "init").returncode == 0
    assert _mode(db_file) == 0o600


def test_captured_mail_is_private(tmp_path: Path) -> None:
    box, port = tmp_path / "captured", free_port()
    controller = start_capture(box, "127.0.0.1", port)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@private.test", ["b@private.test"], b"Subject: hi\r\n\r\nbody\r\n")
    finally:
        controller.stop()
    assert _mode(box) == 0o700 and _mode(box / "new") == 0o700
    stored = list((box / "new").iterdir())
    assert len(stored) == 1 and _mode(stored[0]) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_dkim_key_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    generate_key("sel", "private.test", tmp_path)
    key = next(tmp_path.glob("*.private.pem"))
    assert _mode(key) == 0o600
    load_private_key(key)
    key.chmod(mode)
    with pytest.raises(SigningError, match=r"chmod 600"):
        load_private_key(key)


def test_dry_run_messages_are_private(tmp_path: Path) -> None:
    import asyncio

    from digest_mailer.transport import FileTransport

    folder = tmp_path / "dry" / "run"
    transport = FileTransport(folder)
    outcome = asyncio.run(transport.send("a@private.test", "b@private.test", b"Subject: x\r\n\r\n"))
    assert outcome.kind == "sent"
    assert _mode(folder) == 0o700
    assert [_mode(f) for f in folder.iterdir()] == [0o600]


def test_keygen_makes_its_private_folder(tmp_path: Path) -> None:
    made = generate_key("sel", "private.test", tmp_path / "keys" / "dkim")
    assert _mode(tmp_path / "keys" / "dkim") == 0o700
    assert _mode(made.private_path) == 0o600
