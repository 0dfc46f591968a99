from dataclasses import fields
from pathlib import Path

import pytest

from digest_mailer.config import Config, load_config, parse_config
from digest_mailer.errors import ConfigError


def test_defaults_when_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_MAILER_CONFIG", raising=False)
    config = load_config()
    assert config.source == "(built-in defaults)"
    assert config.database_url == f"sqlite:///{tmp_path}/subscribers/digest.db"
    assert config.seed.list == "seed"
    assert config.subscribers.allow_test_domains is False


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.toml").write_text('[newsletter]\ntitle = "From cwd"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text('[newsletter]\ntitle = "From env"\n')
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[newsletter]\ntitle = "Explicit"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_MAILER_CONFIG", raising=False)
    assert load_config().newsletter.title == "From cwd"
    monkeypatch.setenv("DIGEST_MAILER_CONFIG", str(env_file))
    assert load_config().newsletter.title == "From env"
    assert load_config(explicit).newsletter.title == "Explicit"


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    file = folder / "digest.toml"
    file.write_text('[database]\nurl = "sqlite:///data/x.db"\n[newsletter]\ntemplates = "tpl"\n')
    config = load_config(file)
    assert config.database_url == f"sqlite:///{folder}/data/x.db"
    assert config.path(config.newsletter.templates) == folder / "tpl"


def test_postgres_url_untouched() -> None:
    config = parse_config(
        '[database]\nurl = "postgresql+psycopg://u@127.0.0.1:5432/db"\n', "x.toml", Path("/")
    )
    assert config.database_url == "postgresql+psycopg://u@127.0.0.1:5432/db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[smtp]\nport = "25"\n', "[smtp] port must be an integer, got '25'"),
        ('[smtp]\nsecurity = "tls"\n', "[smtp] security must be one of starttls, ssl, none"),
        ("[smtp]\nconnections = 0\n", "[smtp] connections must be at least 1"),
        ('[smtp]\nhots = "x"\n', "[smtp] has an unknown key 'hots'"),
        ('[smpt]\nhost = "x"\n', "unknown section [smpt]"),
        ("[subscribers]\nallow_test_domains = 1\n", "must be true or false, got 1"),
        ('[newsletter]\nwelcome = "yes"\n', "[newsletter] welcome must be true or false"),
        ("[newsletter]\ntitle = 3\n", "[newsletter] title must be a string"),
        ('[database]\nurl = "not a url"\n', "[database] url must be a database URL"),
        ("[smtp\n", "not valid TOML"),
        ("smtp = 3\n", "[smtp] must be a table"),
    ],
)
def test_bad_values_name_file_and_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "/etc/digest.toml", Path("/etc"))
    assert str(info.value).startswith("/etc/digest.toml")
    assert expected in str(info.value)
    assert info.value.exit_code == 2


def test_int_accepted_for_float_and_bool_refused_for_int() -> None:
    config = parse_config("[smtp]\nmax_per_second = 5\n", "x", Path("/"))
    assert config.smtp.max_per_second == 5.0
    with pytest.raises(ConfigError, match="port must be an integer, got True"):
        parse_config("[smtp]\nport = true\n", "x", Path("/"))


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_secret_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config('[smtp]\npassword_env = "DM_TEST_PW"\n', "c.toml", Path("/"))
    monkeypatch.delenv("DM_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match="DM_TEST_PW .*is not set"):
        config.secret("smtp", "password_env")
    monkeypatch.setenv("DM_TEST_PW", "hunter2")
    assert config.secret("smtp", "password_env") == "hunter2"
    assert "hunter2" not in repr(config)


def test_require_names_the_key() -> None:
    config = Config(source="c.toml")
    with pytest.raises(ConfigError, match=r"c.toml: \[newsletter\] public_url is required"):
        config.require("newsletter", "public_url")


def test_example_config_parses_and_documents_every_key() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    config = parse_config(text, str(example), example.parent)
    lines = text.splitlines()
    for section in fields(config):
        if section.name in ("source", "base_dir"):
            continue
        assert f"[{section.name}]" in text
        for key in fields(getattr(config, section.name)):
            index = next(
                (
                    i
                    for i, line in enumerate(lines)
                    if line.lstrip("# ").startswith(f"{key.name} =")
                ),
                None,
            )
            assert index is not None, f"[{section.name}] {key.name} is not in the example"
            assert lines[index - 1].startswith("#"), f"{key.name} has no comment above it"


# --------------------------------------------------------------------------- setup mistakes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[newsletter]\nfrom_address = "digest at thinktank"',
            "[newsletter] from_address must be an email address",
        ),
        ('[newsletter]\nreply_to = "reply@"', "[newsletter] reply_to must be an email address"),
        (
            '[newsletter]\nrequest_address = "Ana <ana@lab.test>"',
            "[newsletter] request_address must be an email address",
        ),
        (
            '[newsletter]\nbounce_address = "bounces@@lab.test"',
            "[newsletter] bounce_address must be an email address",
        ),
        (
            '[database]\nurl = "postgres://digest@db.lab.test/digest"',
            "write it as 'postgresql+psycopg://digest@db.lab.test/digest'",
        ),
        (
            '[database]\nurl = "postgresql://digest:pw@db.lab.test:5433/digest"',
            "write it as 'postgresql+psycopg://digest:***@db.lab.test:5433/digest'",
        ),
        (
            '[database]\nurl = "postgresql+psycopg2://digest@db.lab.test/digest"',
            "uses postgresql+psycopg2://",
        ),
        ('[database]\nurl = "mysql://digest@db.lab.test/digest"', "mysql:// is not supported"),
        ('[database]\nurl = "sqlite://"', "must name a SQLite file"),
    ],
)
def test_setup_mistakes_are_one_line_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "site.toml", Path("/srv"))
    message = str(caught.value)
    assert message.startswith("site.toml: ") and expected in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_reply_to_and_bounce_address_may_be_empty_and_test_domains_are_fine() -> None:
    config = parse_config(
        '[newsletter]\nfrom_address = "digest@lab.test"\nreply_to = ""\nbounce_address = ""',
        "site.toml",
        Path("/srv"),
    )
    assert config.newsletter.from_address == "digest@lab.test"


def test_placeholders_of_the_example_config_are_named() -> None:
    from digest_mailer.config import placeholder_keys, refuse_placeholders

    example = Path(__file__).parent.parent / "config.example.toml"
    config = parse_config(example.read_text("utf-8"), "config.toml", Path("/srv"))
    keys = placeholder_keys(config)
    assert [k.split(" (")[0] for k in keys] == [
        "[newsletter] from_address",
        "[newsletter] request_address",
        "[newsletter] list_id",
        "[newsletter] postal_address",
    ]
    with pytest.raises(ConfigError, match=r"set your own value for \[newsletter\] from_address"):
        refuse_placeholders(config)
    assert "postal_address (empty" in placeholder_keys(Config())[-1]
    real = parse_config(
        '[newsletter]\nfrom_address = "digest@policy-lab.test"\n'
        'request_address = "digest@policy-lab.test"\n'
        'list_id = "digest.policy-lab.test"\n'
        'postal_address = "Policy Lab, 4 Harbour Row, Portsea"',
        "config.toml",
        Path("/srv"),
    )
    assert placeholder_keys(real) == []
    refuse_placeholders(real)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[newsletter]\npublic_url = "news.policy-lab.test"', "public_url must be the https://"),
        ('[newsletter]\npublic_url = "javascript:alert(1)"', "public_url must be the https://"),
        ('[newsletter]\npublic_url = "https://x.test/?a=1"', "no ?query"),
        ('[newsletter]\nlist_id = "my list <x>"', "list_id must be a dotted name"),
        ("[smtp]\nport = 99999", "[smtp] port must be 1 to 65535"),
        ('[seed]\nlist = " "', "[seed] list must name a list"),
        ('[dns]\nnameserver = "not-an-ip"', "[dns] nameserver must be an IP address"),
        ('[database]\nurl = "sqlite://subscribers/digest.db"', "three slashes"),
        ('[database]\nurl = "sqlite:///digest.db?mode=ro"', "three slashes"),
        ('[database]\nurl = "sqlite:///subscribers/"', "names a folder"),
        ('[database]\nurl = "sqlite:///."', "names a folder"),
    ],
)
def test_values_of_known_form_are_checked_on_load(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "site.toml", Path("/srv"))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_rejected_postgres_url_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            '[database]\nurl = "postgres://digest:S3cretPassw0rd@db.lab.test/digest"',
            "site.toml",
            Path("/srv"),
        )
    assert "S3cretPassw0rd" not in str(caught.value)
    assert "postgresql+psycopg://digest:***@db.lab.test/digest" in str(caught.value)


def test_good_forms_pass() -> None:
    for text in (
        '[newsletter]\npublic_url = "https://digest.lab.test/news"',
        '[newsletter]\npublic_url = "http://127.0.0.1:8000"',
        '[dns]\nnameserver = "::1"',
        '[dns]\nnameserver = "127.0.0.1:5353"',
        '[newsletter]\nlist_id = "weekly.transit-lab.test"',
    ):
        parse_config(text, "site.toml", Path("/srv"))
