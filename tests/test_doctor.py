"""`digest-mailer doctor` against real parts: a SQLite database, an SMTP server with
STARTTLS (or implicit TLS) and AUTH whose certificate comes from a throwaway CA (trustme),
and an authoritative DNS server on loopback answering for policy-lab.test."""

import json
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import Cli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dns_server import DNSServer
from smtp_server import free_port

from digest_mailer import db
from digest_mailer.signing import dns_txt_value

SECRET = "doctor-test-secret-6f1c0a9e4b7d2c58e3a1"  # 39 characters
SMTP_USER, SMTP_PASSWORD = "editor", "smtp-test-password-41"
SELECTOR, DOMAIN = "digest2026", "policy-lab.test"
DKIM_NAME = f"{SELECTOR}._domainkey.{DOMAIN}"
ORDER = ["config", "database", "secret", "smtp", "imap", "templates"]
ORDER += ["dkim", "spf", "dmarc", "dmarc-alignment", "mx"]


def make_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="module")
def dkim_key() -> rsa.RSAPrivateKey:
    return make_key()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


class Handler:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.received.append(envelope.content)
        return "250 OK"


class TLSSMTPServer:
    """aiosmtpd with STARTTLS required (or implicit TLS) and AUTH of one user."""

    def __init__(self, ca: trustme.CA, *, implicit: bool = False) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        # aiosmtpd counts only STARTTLS as TLS for AUTH: with implicit TLS it must be told
        tls = (
            {"ssl_context": context, "auth_require_tls": False}
            if implicit
            else {"tls_context": context}
        )
        self.handler = Handler()
        self.logins: list[tuple[str, bool]] = []
        self.port = free_port()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="mail.policy-lab.test",
            authenticator=self._authenticate,
            require_starttls=not implicit,
            ready_timeout=10,
            **tls,  # type: ignore[arg-type]
        )

    def _authenticate(self, server, session, envelope, mechanism, data):  # type: ignore[no-untyped-def]
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        self.logins.append((data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)  # aiosmtpd then answers 535

    def __enter__(self) -> "TLSSMTPServer":
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def good_records(key: rsa.RSAPrivateKey) -> dict[str, list[tuple[str, str]]]:
    return {
        DKIM_NAME: [("TXT", dns_txt_value(key.public_key()))],
        DOMAIN: [
            ("TXT", "v=spf1 ip4:127.0.0.1 -all"),
            ("TXT", "google-site-verification=not-spf"),
            ("MX", "10 mx.policy-lab.test"),
        ],
        f"_dmarc.{DOMAIN}": [("TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@policy-lab.test")],
    }


def toml(sections: dict[str, dict[str, object]]) -> str:
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()) + "\n"
        for name, keys in sections.items()
    )


class Setup:
    """A staff member's whole setup in tmp_path; ``run`` writes the config and runs doctor."""

    def __init__(self, tmp_path: Path, smtp: TLSSMTPServer, dns: DNSServer, key_file: Path):
        self.tmp_path, self.smtp, self.dns = tmp_path, smtp, dns
        self.db_file = tmp_path / "store" / "digest.db"
        self.sections: dict[str, dict[str, object]] = {
            "database": {"url": f"sqlite:///{self.db_file}"},
            "newsletter": {
                "title": "Harbour Policy Notes",
                "from_address": f"notes@{DOMAIN}",
                "request_address": f"notes@{DOMAIN}",
                "bounce_address": f"bounces@{DOMAIN}",
                "list_id": f"notes.{DOMAIN}",
                "postal_address": "Policy Lab, 4 Quay Lane, Northmere",
                "secret_env": "DOCTOR_TEST_SECRET",
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "starttls",
                "username": SMTP_USER,
                "password_env": "DOCTOR_TEST_SMTP_PASSWORD",
                "timeout": 5,
            },
            "dkim": {"selector": SELECTOR, "domain": DOMAIN, "private_key_file": str(key_file)},
            "dns": {"nameserver": dns.nameserver},
            "subscribers": {"allow_test_domains": True},
        }

    @property
    def config(self) -> Path:
        path = self.tmp_path / "config.toml"
        path.write_text(toml(self.sections), encoding="utf-8")
        return path

    def init(self) -> None:
        engine = db.make_engine(f"sqlite:///{self.db_file}")
        db.upgrade(engine)
        engine.dispose()

    def run(self, *args: str):  # type: ignore[no-untyped-def]
        result = Cli(self.config)("doctor", *args)
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        assert "Traceback" not in result.output
        return result

    def lines(self) -> tuple[int, dict[str, str], list[str]]:
        """(exit code, check -> its text with the fix, every line)."""
        result = self.run()
        lines = result.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), lines
        checks: dict[str, str] = {}
        current = ""
        for line in lines[:-1]:
            if line[:2] in ("✓ ", "✗ ", "– "):
                current = line[2:].partition(":")[0]
                checks[current] = line
            else:
                assert line.startswith("    "), line
                checks[current] += "\n" + line
        assert list(checks) == ORDER
        return result.exit_code, checks, lines

    def failures(self) -> dict[str, str]:
        """The failed checks: marked ✗ with a fix line in the text output (exit code 1),
        and each one's "detail fix: fix" from the JSON output (unwrapped)."""
        code, checks, _ = self.lines()
        assert code == 1
        data = json.loads(self.run("--json").stdout)
        failed = {c["check"]: f"{c['detail']} fix: {c['fix']}" for c in data if not c["ok"]}
        marked = [name for name, text in checks.items() if text.startswith("✗")]
        assert marked == list(failed), (marked, failed)
        assert all("\n    fix: " in checks[name] for name in marked)
        return failed


@pytest.fixture
def setup(tmp_path: Path, ca: trustme.CA, dkim_key, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setenv("DOCTOR_TEST_SECRET", SECRET)
    monkeypatch.setenv("DOCTOR_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.delenv("DIGEST_MAILER_CONFIG", raising=False)
    key_file = tmp_path / "keys" / f"{SELECTOR}.private.pem"
    key_file.parent.mkdir()
    pem = dkim_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    with TLSSMTPServer(ca) as smtp, DNSServer(good_records(dkim_key)) as dns:
        made = Setup(tmp_path, smtp, dns, key_file)
        made.init()
        yield made


def test_a_good_setup_passes_every_check(setup: Setup) -> None:
    code, checks, lines = setup.lines()
    assert code == 0, "\n".join(lines)
    assert all(text.startswith("✓") for name, text in checks.items() if name != "imap"), lines
    assert checks["imap"].startswith("– imap: skipped: IMAP is not configured")
    assert lines[-1] == "10 passed, 0 failed, 1 skipped"
    assert "fix:" not in "\n".join(lines)
    smtp = " ".join(checks["smtp"].split())
    assert "(starttls), certificate verified" in smtp and "logged in as editor" in smtp
    assert "mail.policy-lab.test" in smtp and "AUTH" in smtp
    assert setup.smtp.logins == [(SMTP_USER, True)]
    assert setup.smtp.handler.received == []  # nothing was sent
    assert f"{DKIM_NAME} publishes the public key" in checks["dkim"]
    assert (
        "aligned with the From domain policy-lab.test: DKIM d=policy-lab.test, SPF policy-lab.test"
        in " ".join(checks["dmarc-alignment"].split())
    )
    assert "10 mx.policy-lab.test." in checks["mx"]
    asked = setup.dns.resolver.queries
    assert (DKIM_NAME, "TXT") in asked and (DOMAIN, "MX") in asked


def test_json_output(setup: Setup) -> None:
    setup.dns.records.pop(f"_dmarc.{DOMAIN}")
    result = setup.run("--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [c["check"] for c in data] == ORDER
    assert all(set(c) == {"check", "ok", "detail", "fix"} for c in data)
    assert all(isinstance(c["ok"], bool) and isinstance(c["detail"], str) for c in data)
    assert [c["check"] for c in data if not c["ok"]] == ["dmarc"]
    dmarc = next(c for c in data if c["check"] == "dmarc")
    assert dmarc["fix"].startswith(f'add a TXT record at _dmarc.{DOMAIN}: "v=DMARC1; p=none')
    imap = next(c for c in data if c["check"] == "imap")
    assert imap["ok"] is True and imap["detail"].startswith("skipped:")
    assert all(c["fix"] == "" for c in data if c["ok"])
    # no DMARC record: nothing to be aligned with, so no ✓ "aligned" either
    alignment = next(c for c in data if c["check"] == "dmarc-alignment")
    assert alignment["detail"].startswith("skipped: no DMARC record"), alignment


def other_dkim(records: dict, key: rsa.RSAPrivateKey) -> None:  # type: ignore[type-arg]
    records[DKIM_NAME] = [("TXT", dns_txt_value(make_key(1024).public_key()))]


def no_spf(records: dict, key: rsa.RSAPrivateKey) -> None:  # type: ignore[type-arg]
    records[DOMAIN] = [r for r in records[DOMAIN] if not r[1].startswith("v=spf1")]


def two_spf(records: dict, key: rsa.RSAPrivateKey) -> None:  # type: ignore[type-arg]
    records[DOMAIN].append(("TXT", "v=spf1 mx -all"))


def no_dmarc(records: dict, key: rsa.RSAPrivateKey) -> None:  # type: ignore[type-arg]
    records.pop(f"_dmarc.{DOMAIN}")
    records["_dmarc.other-lab.test"] = [("TXT", "v=DMARC1; p=reject")]


def no_mx(records: dict, key: rsa.RSAPrivateKey) -> None:  # type: ignore[type-arg]
    records[DOMAIN] = [r for r in records[DOMAIN] if r[0] != "MX"]


def null_mx(records: dict, key: rsa.RSAPrivateKey) -> None:  # type: ignore[type-arg]
    records[DOMAIN] = [r for r in records[DOMAIN] if r[0] != "MX"] + [("MX", "0 .")]


def no_dkim(records: dict, key: rsa.RSAPrivateKey) -> None:  # type: ignore[type-arg]
    records.pop(DKIM_NAME)


@pytest.mark.parametrize(
    ("change", "check", "detail", "fix"),
    [
        (other_dkim, "dkim", f"{DKIM_NAME} holds another public key", "publish a TXT record"),
        (no_dkim, "dkim", f"no DKIM records (TXT) at {DKIM_NAME}", "publish a TXT record"),
        (
            no_spf,
            "spf",
            f'no SPF record (TXT "v=spf1 …") at {DOMAIN}',
            '"v=spf1 ip4:127.0.0.1 ~all"',
        ),
        (two_spf, "spf", "2 SPF records at policy-lab.test", "merge them into one TXT record"),
        (no_dmarc, "dmarc", f'no DMARC record (TXT "v=DMARC1; …") at _dmarc.{DOMAIN}', "p=none"),
        (
            no_mx,
            "mx",
            f"{DOMAIN} has no MX record: bounce reports to bounces@",
            "add an MX record for policy-lab.test",
        ),
        (null_mx, "mx", "has a null MX record", "add an MX record"),
    ],
)
def test_each_dns_problem_fails_its_check_with_the_fix(
    setup: Setup, dkim_key, change, check: str, detail: str, fix: str
) -> None:  # type: ignore[no-untyped-def]
    change(setup.dns.records, dkim_key)
    failures = setup.failures()
    assert list(failures) == [check], failures
    text = failures[check]
    assert detail in text and "fix: " in text and fix in text.partition("fix: ")[2], text


def test_a_wrong_dkim_record_shows_the_whole_record_to_publish(setup: Setup, dkim_key) -> None:  # type: ignore[no-untyped-def]
    other_dkim(setup.dns.records, dkim_key)
    result = setup.run("--json")
    dkim = next(c for c in json.loads(result.stdout) if c["check"] == "dkim")
    expected = dns_txt_value(dkim_key.public_key())
    assert dkim["ok"] is False
    assert dkim["fix"] == f'publish a TXT record at {DKIM_NAME}: "{expected}"'


def test_dmarc_not_aligned_when_dkim_and_envelope_use_another_domain(
    setup: Setup, dkim_key
) -> None:  # type: ignore[no-untyped-def]
    other = "sendwell.test"
    setup.sections["dkim"]["domain"] = other
    setup.sections["newsletter"]["bounce_address"] = f"returns@{other}"
    records = setup.dns.records
    records[f"{SELECTOR}._domainkey.{other}"] = records.pop(DKIM_NAME)
    records[other] = records.pop(DOMAIN)
    failures = setup.failures()
    assert list(failures) == ["dmarc-alignment"], failures
    text = failures["dmarc-alignment"]
    assert (
        f"neither DKIM (d={other}) nor SPF ({other}) aligns with the From domain {DOMAIN}" in text
    )
    assert f'fix: set [dkim] domain = "{DOMAIN}"' in text


def test_dmarc_at_the_organisational_domain_and_relaxed_or_strict_alignment(setup: Setup) -> None:
    setup.sections["newsletter"]["from_address"] = f"notes@news.{DOMAIN}"
    code, checks, lines = setup.lines()
    assert code == 0, "\n".join(lines)
    assert checks["dmarc"].startswith(f"✓ dmarc: _dmarc.{DOMAIN}: v=DMARC1; p=quarantine")
    setup.dns.records[f"_dmarc.{DOMAIN}"] = [("TXT", "v=DMARC1; p=reject; adkim=s; aspf=s")]
    failures = setup.failures()
    assert list(failures) == ["dmarc-alignment"]
    assert "(strict alignment)" in failures["dmarc-alignment"]


@pytest.mark.slow
def test_dns_server_not_answering_is_a_failure_with_a_fix(setup: Setup) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        nameserver = f"127.0.0.1:{silent.getsockname()[1]}"
        setup.sections["dns"]["nameserver"] = nameserver
        started = time.monotonic()
        failures = setup.failures()
        elapsed = time.monotonic() - started
    assert list(failures) == ["dkim", "spf", "dmarc", "mx"]
    assert "no answer from 127.0.0.1:" in failures["dkim"] and "within 2 s" in failures["dkim"]
    assert all(f"fix: make sure {nameserver} answers DNS queries" in t for t in failures.values())
    assert elapsed < 8  # one 2-second timeout, not one per check


def test_a_bad_nameserver_setting(setup: Setup) -> None:
    setup.sections["dns"]["nameserver"] = "dns.policy-lab.test"
    result = setup.run()
    # caught when the config loads: one failing line names the key, exit 2
    assert result.exit_code == 2
    assert "[dns] nameserver must be an IP address" in result.output


def test_smtp_down(setup: Setup) -> None:
    setup.sections["smtp"]["port"] = free_port()
    failures = setup.failures()
    assert list(failures) == ["smtp"]
    assert "Connection refused" in failures["smtp"]
    assert "fix: check [smtp] host, port and security in" in failures["smtp"]


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "ssl"])
def test_smtp_certificate_not_trusted(
    setup: Setup, implicit: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    monkeypatch.setenv("SSL_CERT_FILE", str(stranger))
    with TLSSMTPServer(trustme.CA(), implicit=implicit) as server:
        setup.sections["smtp"].update(port=server.port, security="ssl" if implicit else "starttls")
        failures = setup.failures()
        assert server.logins == []  # no password went to an unverified server
    assert list(failures) == ["smtp"]
    assert "could not be verified" in failures["smtp"]
    assert "fix: install the CA that issued the server's certificate" in failures["smtp"]


def test_smtp_implicit_tls_and_unverified_certificates(setup: Setup, ca: trustme.CA) -> None:
    with TLSSMTPServer(ca, implicit=True) as server:
        setup.sections["smtp"].update(port=server.port, security="ssl")
        code, checks, lines = setup.lines()
        assert code == 0, "\n".join(lines)
        assert "(ssl), certificate verified" in " ".join(checks["smtp"].split())
    with TLSSMTPServer(trustme.CA()) as server:
        setup.sections["smtp"].update(port=server.port, security="starttls")
        setup.sections["smtp"]["verify_certificates"] = False
        code, checks, lines = setup.lines()
        assert code == 0, "\n".join(lines)
        assert "certificate NOT verified" in " ".join(checks["smtp"].split())


def test_smtp_login_rejected_or_password_unset(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCTOR_TEST_SMTP_PASSWORD", "not-the-password")
    failures = setup.failures()
    assert list(failures) == ["smtp"]
    assert f"refused the login for {SMTP_USER}: 535" in failures["smtp"]
    assert (
        "fix: check [smtp] username and the password in DOCTOR_TEST_SMTP_PASSWORD"
        in (failures["smtp"])
    )
    assert setup.smtp.logins and set(setup.smtp.logins) == {(SMTP_USER, False)}
    monkeypatch.delenv("DOCTOR_TEST_SMTP_PASSWORD")
    failures = setup.failures()
    assert "DOCTOR_TEST_SMTP_PASSWORD" in failures["smtp"] and "is not set" in failures["smtp"]
    assert "fix: set DOCTOR_TEST_SMTP_PASSWORD to the SMTP password of editor" in failures["smtp"]


def test_smtp_without_starttls(setup: Setup) -> None:
    from smtp_server import SMTPServer

    plain = SMTPServer().start()
    try:
        setup.sections["smtp"].update(port=plain.port, username="")
        failures = setup.failures()
    finally:
        plain.stop()
    assert list(failures) == ["smtp"]
    assert "does not offer STARTTLS" in failures["smtp"]
    assert "fix: use the server's submission port (587)" in failures["smtp"]


def test_database_missing_uninitialised_or_behind(setup: Setup) -> None:
    setup.db_file.unlink()
    failures = setup.failures()
    assert list(failures) == ["database"]
    assert "does not exist" in failures["database"]
    assert "fix: run `digest-mailer init` to create it" in failures["database"]
    assert not setup.db_file.exists()  # doctor created nothing
    sqlite3.connect(setup.db_file).close()  # an empty file
    failures = setup.failures()
    assert "is not initialised" in failures["database"]
    assert "fix: run `digest-mailer init` to create its tables" in failures["database"]
    setup.init()
    with sqlite3.connect(setup.db_file) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0006'")
    failures = setup.failures()
    assert "is at revision 0006, this version needs" in failures["database"]
    assert "then run `digest-mailer init` to upgrade it" in failures["database"]


def test_database_that_cannot_be_opened(setup: Setup) -> None:
    setup.db_file.unlink()
    setup.db_file.write_bytes(b"these are meeting notes, not a database\n" * 200)
    failures = setup.failures()
    assert list(failures) == ["database"]
    assert "file is not a database" in failures["database"]
    assert "fix: check [database] url in" in failures["database"]


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (None, "environment variable DOCTOR_TEST_SECRET"),
        ("short-secret", "12 characters"),
        ("twenty-characters-ab", "20 characters"),
        (SECRET + " twenty-characters-ab", "20 characters"),  # an older secret, too weak
    ],
)
def test_secret_unset_or_weak(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, value: str | None, detail: str
) -> None:
    if value is None:
        monkeypatch.delenv("DOCTOR_TEST_SECRET")
    else:
        monkeypatch.setenv("DOCTOR_TEST_SECRET", value)
    failures = setup.failures()
    assert list(failures) == ["secret"]
    assert detail in failures["secret"]
    assert "fix: set DOCTOR_TEST_SECRET to at least 32 random characters" in failures["secret"]
    assert "openssl rand -hex 32" in failures["secret"]


def test_a_rotated_secret_passes(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCTOR_TEST_SECRET", f"{SECRET}  older-secret-5d0e2b7a19c4f3e8a6b1d0c9")
    code, checks, lines = setup.lines()
    assert code == 0, "\n".join(lines)
    assert checks["secret"] == (
        "✓ secret: DOCTOR_TEST_SECRET holds a secret of 39 characters and 1 older one(s)\n"
        "    that still verify"
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("smtp", "port", "twenty-five", "[smtp] port must be an integer"),
        ("smtp", "hostname", "mail.policy-lab.test", "[smtp] has an unknown key 'hostname'"),
    ],
)
def test_a_bad_config_key_is_one_line_and_exit_2(
    setup: Setup, section: str, key: str, value: object, message: str
) -> None:
    setup.sections[section][key] = value
    result = setup.run()
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✗ config:") and message in " ".join(result.stdout.split())
    assert sum(line.startswith(("✓", "✗", "–")) for line in lines) == 1
    assert "fix: correct the value named above" in result.stdout
    assert setup.smtp.logins == [] and setup.dns.resolver.queries == []  # nothing else ran
    data = json.loads(setup.run("--json").stdout)
    assert len(data) == 1 and data[0]["check"] == "config" and data[0]["ok"] is False


def test_example_values_from_the_config_example_are_flagged(setup: Setup) -> None:
    setup.sections["newsletter"]["request_address"] = "digest@example.org"
    setup.sections["newsletter"]["postal_address"] = ""
    failures = setup.failures()
    assert list(failures) == ["config"]
    text = failures["config"]
    assert "[newsletter] request_address (digest@example.org)" in text
    assert "fix: set [newsletter] request_address, [newsletter] postal_address in" in text


def test_broken_template(setup: Setup) -> None:
    folder = setup.tmp_path / "my-templates"
    folder.mkdir()
    (folder / "issue.html.j2").write_text("<p>{% if subject %}unclosed</p>\n", encoding="utf-8")
    setup.sections["newsletter"]["templates"] = str(folder)
    failures = setup.failures()
    assert list(failures) == ["templates"]
    assert "issue.html.j2 line" in failures["templates"]
    assert "fix: correct the template named above" in failures["templates"]


def test_broken_welcome_template(setup: Setup) -> None:
    folder = setup.tmp_path / "my-templates"
    folder.mkdir()
    (folder / "welcome.txt.j2").write_text("Hello {{ adress }}\n", encoding="utf-8")
    setup.sections["newsletter"]["templates"] = str(folder)
    failures = setup.failures()
    assert list(failures) == ["templates"]
    assert "welcome.txt.j2 line 1: 'adress' is undefined" in failures["templates"]
    setup.sections["newsletter"]["welcome"] = False  # not sent: not checked
    code, checks, _ = setup.lines()
    assert code == 0 and "welcome mail" not in checks["templates"]


def test_an_unexpected_error_in_one_check_leaves_the_others(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest_mailer import composer

    def broken(*args: object) -> None:
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(composer, "compose", broken)
    failures = setup.failures()
    assert list(failures) == ["templates"]
    assert "unexpected error (RuntimeError: renderer exploded)" in failures["templates"]


def test_dkim_key_file_problems(setup: Setup) -> None:
    key_file = Path(str(setup.sections["dkim"]["private_key_file"]))
    key_file.chmod(0o644)
    failures = setup.failures()
    assert list(failures) == ["dkim"]
    assert "open to every user on this machine" in failures["dkim"]
    assert "fix: set [dkim] selector, domain and private_key_file" in failures["dkim"]


@pytest.mark.slow
def test_imap_login_and_folder(setup: Setup, dovecot, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from imap_server import PASSWORD, USER

    monkeypatch.setenv("DOCTOR_TEST_IMAP_PASSWORD", PASSWORD)
    setup.sections["inbox"] = {
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.port,
        "imap_user": USER,
        "imap_password_env": "DOCTOR_TEST_IMAP_PASSWORD",
        "imap_ca_file": str(dovecot.ca_file),
    }
    code, checks, lines = setup.lines()
    assert code == 0, "\n".join(lines)
    assert checks["imap"].startswith(f"✓ imap: logged in to IMAP {USER}@127.0.0.1:")
    monkeypatch.setenv("DOCTOR_TEST_IMAP_PASSWORD", "wrong-password")
    failures = setup.failures()
    assert list(failures) == ["imap"]
    assert (
        "fix: check [inbox] imap_user and the password in DOCTOR_TEST_IMAP_PASSWORD"
        in (failures["imap"])
    )
    monkeypatch.setenv("DOCTOR_TEST_IMAP_PASSWORD", PASSWORD)
    setup.sections["inbox"]["imap_folder"] = "No Such Folder"
    failures = setup.failures()
    assert list(failures) == ["imap"]
    assert "set [inbox] imap_folder to a folder that exists" in failures["imap"], failures


@pytest.mark.slow
def test_the_library_part_imports_no_cli_toolkit() -> None:
    code = "import sys, digest_mailer.doctor\nprint(sorted({'typer', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_a_config_file_the_fixes_say_which_file_to_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest_mailer import doctor

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_MAILER_CONFIG", raising=False)
    checks = doctor.run_checks()
    config = next(c for c in checks if c.check == "config")
    assert not config.ok and "copy config.example.toml" in config.fix
    assert "(built-in defaults)" not in " ".join(c.fix for c in checks)
    missing = doctor.run_checks(tmp_path / "nope.toml")
    assert [c.check for c in missing] == ["config"]
    assert "copy config.example.toml there" in missing[0].fix
