"""Threat: the SMTP password sent in clear text, and one-click unsubscribe offered over
plain http (RFC 8058 allows it only with https)."""

from pathlib import Path

import pytest
from conftest import NEWSLETTER, Cli, smtp_section, write_config

from digest_mailer import composer, lint
from digest_mailer.config import Config, NewsletterConfig, SmtpConfig, parse_config
from digest_mailer.errors import ConfigError
from digest_mailer.message import MessageTemplate, one_click_allowed
from digest_mailer.source import parse_issue
from digest_mailer.transport import SMTPSettings

DRAFT = Path(__file__).parent.parent / "data" / "issues" / "digest-vol-3.1.txt"


@pytest.mark.parametrize("host", ["smtp.lab.test", "192.0.2.10", "10.0.0.1", "::ffff:1.2.3.4"])
def test_a_login_without_tls_to_another_host_is_refused(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DM_SMTP_PW", "hunter2-hunter2")
    config = Config(
        smtp=SmtpConfig(host=host, security="none", username="digest", password_env="DM_SMTP_PW")
    )
    with pytest.raises(ConfigError) as caught:
        SMTPSettings.from_config(config)
    message = str(caught.value)
    assert "in clear text" in message and host in message and "hunter2" not in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "localhost", "::1"])
def test_a_login_without_tls_to_this_machine_is_allowed(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DM_SMTP_PW", "hunter2-hunter2")
    config = Config(
        smtp=SmtpConfig(host=host, security="none", username="digest", password_env="DM_SMTP_PW")
    )
    assert SMTPSettings.from_config(config).password == "hunter2-hunter2"


def test_tls_logins_and_anonymous_relays_are_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DM_SMTP_PW", "hunter2-hunter2")
    for security in ("starttls", "ssl"):
        smtp = SmtpConfig(
            host="smtp.lab.test", security=security, username="d", password_env="DM_SMTP_PW"
        )
        assert SMTPSettings.from_config(Config(smtp=smtp)).username == "d"
    relay = SmtpConfig(host="relay.lab.test", security="none")
    assert SMTPSettings.from_config(Config(smtp=relay)).password == ""


def test_the_send_command_refuses_before_connecting(
    tmp_path: Path, database_url: str, send_env, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DM_SMTP_PW", "hunter2-hunter2")
    smtp = smtp_section(25, extra='username = "digest"\npassword_env = "DM_SMTP_PW"\n')
    config = write_config(
        tmp_path / "c.toml", database_url, NEWSLETTER + smtp.replace("127.0.0.1", "smtp.lab.test")
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    result = cli("send", str(DRAFT), "--test")
    assert result.exit_code == 2 and "in clear text" in result.stderr
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://digest.lab.test", True),
        ("http://digest.lab.test", False),
        ("http://127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
    ],
)
def test_one_click_only_with_https(url: str, allowed: bool) -> None:
    assert one_click_allowed(url) is allowed
    config = parse_config(
        f'[newsletter]\npublic_url = "{url}"\npostal_address = "Lab, 1 Row, Town"\n',
        "c.toml",
        Path("/srv"),
    )
    composed = composer.compose(parse_issue(DRAFT.read_text("utf-8"), DRAFT), config)
    data = MessageTemplate(composed, config).render(
        "ana@lab.test", "Ana", "<m1@lab.test>", f"{url}/u/1-x"
    )
    assert (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in data) is allowed
    if url.startswith("http"):
        assert f"<{url}/u/1-x>".encode() in data  # the link itself is still offered
    warnings = [f.code for f in lint.lint_config(config)]
    assert ("one-click-needs-https" in warnings) is (not allowed)


def test_no_public_url_no_warning() -> None:
    assert lint.lint_config(Config(newsletter=NewsletterConfig(public_url=""))) == []


@pytest.mark.parametrize(
    "url", ["http://evil.test\\@127.0.0.1", "http://user@127.0.0.1", "https://a b.test"]
)
def test_a_public_url_parsers_disagree_on_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="public_url must be a plain address"):
        parse_config(f'[newsletter]\npublic_url = "{url}"\n'.replace("\\", "\\\\"), "c", Path("/"))
    assert not one_click_allowed(url)


def test_localhost_with_a_dot_is_not_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DM_SMTP_PW", "hunter2-hunter2")
    smtp = SmtpConfig(host="localhost.", security="none", username="d", password_env="DM_SMTP_PW")
    with pytest.raises(ConfigError, match="in clear text"):
        SMTPSettings.from_config(Config(smtp=smtp))


def test_no_post_header_without_a_web_link() -> None:
    """A test copy to an address that is no subscriber carries the mailto alone: then no
    List-Unsubscribe-Post either (RFC 8058)."""
    config = parse_config(
        '[newsletter]\npublic_url = "https://d.lab.test"\npostal_address = "Lab, 1 Row"\n',
        "c.toml",
        Path("/srv"),
    )
    composed = composer.compose(parse_issue(DRAFT.read_text("utf-8"), DRAFT), config)
    template = MessageTemplate(composed, config)
    mailto = template.unsubscribe_target(None)
    data = template.render("x@lab.test", "", "<m@lab.test>", mailto)
    assert b"List-Unsubscribe-Post" not in data and b"List-Unsubscribe: <mailto:" in data
    upper = template.render("x@lab.test", "", "<m@lab.test>", "HTTPS://d.lab.test/u/1-x")
    assert b"List-Unsubscribe-Post" in upper and b"<HTTPS://d.lab.test/u/1-x>" in upper
