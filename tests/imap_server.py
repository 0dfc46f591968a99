"""A real IMAP server for the tests: Debian's Dovecot on a loopback port, TLS with a
certificate from a throwaway CA (trustme), one user with a Maildir, all in a temp folder."""

import grp
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import trustme
from smtp_server import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "requests", "imap-test-password"


class Dovecot:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.ca_file = folder / "ca.pem"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Dovecot":
        f = self.folder
        f.chmod(0o755)  # the auth and mail processes run as another user: they must enter
        (f / "run").mkdir(parents=True)
        (f / "home" / USER).mkdir(parents=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(f / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(f / "cert.pem"))
        (f / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        if os.geteuid() == 0:  # Dovecot refuses mail for uid 0: use its own account
            owner = pwd.getpwnam("dovecot")
            internal, login = "dovecot", "dovenull"
            for path in (f / "home", f / "home" / USER):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            uid, gid = owner.pw_uid, owner.pw_gid
        else:
            me = pwd.getpwuid(os.getuid()).pw_name
            internal = login = me
            uid, gid = os.getuid(), os.getgid()
        group = grp.getgrgid(gid).gr_name
        (f / "dovecot.conf").write_text(
            f"""
base_dir = {f}/run
state_dir = {f}/run
log_path = {f}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_internal_group = {group if internal != "dovecot" else "dovecot"}
default_login_user = {login}
first_valid_uid = {uid}
ssl = required
ssl_cert = <{f}/cert.pem
ssl_key = <{f}/key.pem
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {f}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={f}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(f / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("dovecot did not start listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def connect(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, flags: str = "", folder: str = "INBOX") -> None:
        conn = self.connect()
        try:
            kind, data = conn.append(folder, flags or None, None, raw)
            assert kind == "OK", data
        finally:
            conn.logout()

    def folder_state(self, folder: str) -> list[tuple[bytes, str]]:
        """(flags, Message-ID) of every message in a folder."""
        conn = self.connect()
        try:
            conn.select(folder, readonly=True)
            kind, data = conn.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            out = []
            for item in data:
                if isinstance(item, tuple):
                    flags = item[0][item[0].find(b"FLAGS (") + 7 :].split(b")")[0]
                    out.append((flags, item[1].decode().strip()))
            return out
        except imaplib.IMAP4.error:
            return []
        finally:
            conn.logout()
