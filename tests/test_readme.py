"""The README's "Using it" block runs as written (like sqlite-utils' documentation tests).

The first ```sh block under "## Using it" is read from README.md and run command by
command with bash, in a scratch folder that stands for the checkout, with
``.venv/bin`` first on PATH (what ``source .venv/bin/activate`` does) and the variables the
block exports. Three rules adapt it to a test, each visible here and nowhere else:

- ``# edit config.toml: [section] key, key; [section] key`` is a step the reader does by
  hand. The test does it with ``edits()``, and checks that the keys it sets are exactly
  the keys that line names, so the README and the test cannot drift apart. The [smtp]
  values point at the capture server, started in-process by the code behind
  ``digest-mailer capture-smtp`` on a free loopback port. One more key is set, not the
  reader's: ``[dns] nameserver``, a DNS server on loopback publishing the SPF, DMARC and
  MX records a reader's domain would have, so ``digest-mailer doctor`` asks nothing
  outside this machine.
- A command ending in ``# ... (runs until Ctrl-C)`` is not run (the capture server above
  stands in for it); only ``capture-smtp`` and ``serve`` may carry that comment.
- A command whose comment says ``after confirmation`` gets "y" on stdin; every other
  command gets no stdin, so an unexpected question fails the test.

The files the README calls the reader's own are put in the scratch folder first:
config.example.toml and examples/vol-2.4.txt from the checkout, and a members.csv as a
spreadsheet exports it.
"""

import mailbox
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from dns_server import DNSServer
from smtp_server import free_port

from digest_mailer.capture import start_capture

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # the project's .venv/bin

MEMBERS_CSV = (
    "Email Address;First Name;Last Name\r\n"
    "bo@example.org;Bo;Chen\r\n"
    "carla@example.org;Carla;Diaz\r\n"
    "dev@example.org;Dev;Patel\r\n"
)

EDIT_MARKER = "# edit config.toml:"
FOREVER_MARKER = "(runs until Ctrl-C)"
FOREVER_COMMANDS = ("digest-mailer capture-smtp", "digest-mailer serve")
CONFIRM_MARKER = "after confirmation"


def using_it_block(text: str) -> list[str]:
    """The logical lines (backslash continuations joined) of the first ```sh block
    under "## Using it", before the next "## " heading."""
    section = text.split("\n## Using it\n", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    match = re.search(r"^```sh\n(.*?)^```", section, re.S | re.M)
    assert match, 'no ```sh block under "## Using it" in README.md'
    lines: list[str] = []
    pending = ""
    for raw in match.group(1).splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return [line.strip() for line in lines if line.strip()]


def comment_of(line: str) -> str:
    """The trailing ``# comment`` of a shell line ('' if none): a '#' that starts a word
    outside quotes, as bash reads it."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i:]
    return ""


def edits(smtp_port: int) -> dict[str, dict[str, object]]:
    """What a reader would set: their own addresses (``send`` refuses the example's)
    and the SMTP server, here the capture server on loopback without TLS or login."""
    return {
        "newsletter": {
            "from_address": "digest@policy-lab.test",
            "request_address": "digest@policy-lab.test",
            "list_id": "digest.policy-lab.test",
            "postal_address": "Policy Lab, 4 Quay Street, Bristol",
        },
        "smtp": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "username": "",
        },
    }


def published_dns(domain: str) -> dict[str, list[tuple[str, str]]]:
    """The records a reader publishes for their From domain (what `digest-mailer doctor`
    checks), served by a DNS server on loopback so no lookup leaves this machine."""
    return {
        domain: [("TXT", "v=spf1 ip4:127.0.0.1 ~all"), ("MX", f"10 mx.{domain}")],
        f"_dmarc.{domain}": [("TXT", f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}")],
    }


def named_keys(marker_line: str) -> dict[str, set[str]]:
    """``# edit config.toml: [newsletter] a, b; [smtp] c`` -> {"newsletter": {"a", "b"}, …}"""
    named: dict[str, set[str]] = {}
    for part in marker_line[len(EDIT_MARKER) :].split(";"):
        found = re.fullmatch(r"\s*\[(\w+)\]\s*(.+?)\s*", part)
        assert found, f"cannot read {part!r} in the README line {marker_line!r}"
        named[found.group(1)] = {key.strip() for key in found.group(2).split(",")}
    return named


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_keys(path: Path, changes: dict[str, dict[str, object]]) -> None:
    """Change ``key = value`` lines in their [section], as an editor would; every key must
    already be in the file (config.example.toml documents them all)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    section = ""
    done: set[tuple[str, str]] = set()
    for i, line in enumerate(lines):
        header = re.fullmatch(r"\[(\w+)\]\s*", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"(\w+)\s*=", line)
        if key and key.group(1) in changes.get(section, {}):
            lines[i] = f"{key.group(1)} = {toml_value(changes[section][key.group(1)])}"
            done.add((section, key.group(1)))
    wanted = {(s, k) for s, keys in changes.items() for k in keys}
    assert wanted <= done, f"not in {path.name}: {sorted(wanted - done)}"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read = tomllib.loads(path.read_text(encoding="utf-8"))
    for s, keys in changes.items():
        for k, v in keys.items():
            assert read[s][k] == v, (s, k, read[s][k])


def run_line(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    stdin = "y\n" if CONFIRM_MARKER in comment_of(line) else None
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", line],
        cwd=cwd,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_comment_of_reads_bash_comments() -> None:
    assert comment_of("digest-mailer send x.txt   # everyone, after confirmation") == (
        "# everyone, after confirmation"
    )
    assert comment_of('digest-mailer subscribers add "a #b@example.org"') == ""
    assert comment_of("echo a#b") == ""
    assert comment_of("digest-mailer init") == ""


def test_named_keys_reads_the_edit_line() -> None:
    assert named_keys("# edit config.toml: [newsletter] a, b; [smtp] c") == {
        "newsletter": {"a", "b"},
        "smtp": {"c"},
    }


@pytest.mark.slow
def test_using_it_block_runs_as_written(tmp_path: Path) -> None:
    lines = using_it_block(README.read_text(encoding="utf-8"))
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copy(ROOT / "config.example.toml", work / "config.example.toml")
    shutil.copy(ROOT / "examples" / "vol-2.4.txt", work / "vol-2.4.txt")
    (work / "members.csv").write_text(MEMBERS_CSV, encoding="utf-8")

    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAILER_")}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(BIN.parent)
    env["COLUMNS"] = "120"

    smtp_port = free_port()
    maildir = tmp_path / "captured"
    capture = start_capture(maildir, port=smtp_port)
    from_domain = str(edits(smtp_port)["newsletter"]["from_address"]).split("@")[1]
    dns = DNSServer(published_dns(from_domain)).start()
    ran: list[str] = []
    skipped: list[str] = []
    edited = False
    try:
        for line in lines:
            if line.startswith(EDIT_MARKER):
                changes = edits(smtp_port)
                assert named_keys(line) == {s: set(keys) for s, keys in changes.items()}, (
                    f"the README's edit step names other keys than the test sets: {line!r}"
                )
                assert (work / "config.toml").exists(), "the edit step comes before the cp"
                # not the reader's edit: their resolver, here the loopback DNS server
                set_keys(work / "config.toml", {**changes, "dns": {"nameserver": dns.nameserver}})
                edited = True
                continue
            if line.startswith("#"):
                continue
            if comment_of(line).endswith(FOREVER_MARKER):
                assert line.startswith(FOREVER_COMMANDS), (
                    f"only {FOREVER_COMMANDS} may be skipped as running forever: {line!r}"
                )
                skipped.append(line)
                continue
            export = re.match(r"export (\w+)=", line)
            started = time.monotonic()
            if export:
                name = export.group(1)
                result = run_line(f'{line}\nprintf %s "${name}"', work, env)
                if result.returncode == 0:
                    assert result.stdout, f"{line!r} set {name} to nothing"
                    env[name] = result.stdout
            else:
                result = run_line(line, work, env)
            assert result.returncode == 0, (
                f"README command failed (exit {result.returncode}, "
                f"{time.monotonic() - started:.1f} s):\n  {line}\n"
                f"stderr:\n{result.stderr}\nstdout:\n{result.stdout[-3000:]}"
            )
            ran.append(line)
            print(f"{time.monotonic() - started:5.1f} s  {line}")  # shown when the test fails
    finally:
        capture.stop()
        dns.stop()

    assert edited, f"no {EDIT_MARKER!r} line in the README block"
    assert skipped == [line for line in lines if line.startswith(FOREVER_COMMANDS)], skipped
    assert any(" send " in line and "--test" not in line for line in ran), ran
    # The block sent mail: the capture server holds it, and the reader removed (then
    # erased) before the send got nothing but the test copies addressed to others.
    captured = [
        message_from_bytes(m.as_bytes(), policy=policy.default)
        for m in mailbox.Maildir(str(maildir), create=False)
    ]
    assert captured, "the README block sent nothing to the capture server"
    delivered_to = [str(m["Delivered-To"]) for m in captured]
    assert "bo@example.org" not in delivered_to, delivered_to
    assert {"ana@example.org", "carla@example.org", "dev@example.org"} <= set(delivered_to)
