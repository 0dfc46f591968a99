"""A new user's setup mistakes, end to end through the CLI: one line, the right exit code,
nothing created where nothing should be."""

import shutil
from pathlib import Path

import pytest
import support
from conftest import DATA, Cli
from smtp_server import SMTPServer

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"


def test_a_mistyped_sqlite_folder_is_an_error_not_a_new_database(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "sqlite:///subscriber/digest.db"\n', "utf-8")
    cli = Cli(config)
    for command in (["subscribers", "list"], ["status"], ["lists", "list"]):
        result = cli(*command)
        assert result.exit_code == 2, (command, result.output)
        line = result.stderr.strip()
        assert line.count("\n") == 0
        assert "[database] url names" in line and "subscriber does not exist" in line
        assert "`digest-mailer init`" in line
    assert not (tmp_path / "subscriber").exists()  # nothing was created


def test_init_creates_the_folder_and_says_so(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "sqlite:///data/digest.db"\n', "utf-8")
    cli = Cli(config)
    result = cli.ok("init")
    assert f"created the folder {tmp_path / 'data'} for the database" in result.stdout
    assert (tmp_path / "data" / "digest.db").is_file()
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert "created the folder" not in cli.ok("init").stdout  # the second time: nothing new
    cli.ok("subscribers", "list")


def test_an_existing_folder_without_a_database_is_not_filled_with_an_empty_file(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "sqlite:///digest.db"\n', "utf-8")
    result = Cli(config)("subscribers", "list")
    assert result.exit_code == 3 and "is not initialised: run `digest-mailer init`" in result.stderr
    assert not (tmp_path / "digest.db").exists()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('from_address = "digest at thinktank"', "[newsletter] from_address must be an email"),
        ('request_address = "nobody"', "[newsletter] request_address must be an email"),
    ],
)
def test_a_bad_address_in_the_config_is_one_line_exit_2(
    tmp_path: Path, line: str, expected: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[newsletter]\n{line}\n", "utf-8")
    result = Cli(config)("subscribers", "list")
    assert result.exit_code == 2 and expected in result.stderr
    assert "internal error" not in result.output and "Traceback" not in result.output


def test_sends_refuse_the_example_values(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env
) -> None:  # type: ignore[no-untyped-def]
    example = (Path(__file__).parent.parent / "config.example.toml").read_text("utf-8")
    example = example.replace('url = "sqlite:///subscribers/digest.db"', f'url = "{database_url}"')
    example = example.replace('host = "localhost"', 'host = "127.0.0.1"')
    example = example.replace("port = 587", f"port = {smtp_server.port}")
    example = example.replace('security = "starttls"', 'security = "none"')
    example = example.replace("allow_test_domains = false", "allow_test_domains = true")
    config = tmp_path / "config.toml"
    config.write_text(example, "utf-8")
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    issue = tmp_path / "vol-3.1.txt"
    shutil.copy(ISSUE, issue)
    for args in (["--test"], ["--yes", "--skip-test"]):
        result = cli("send", str(issue), *args)
        assert result.exit_code == 2, result.output
        assert "[newsletter] from_address (digest@example.org)" in result.stderr
        assert "[newsletter] postal_address" in result.stderr
    assert smtp_server.handler.received == []
    # a dry run writes files only: it may go ahead to show what would go out
    cli.ok("send", str(issue), "--dry-run", str(tmp_path / "dry"))


def test_the_newsletter_config_of_the_tests_is_not_a_placeholder(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env
) -> None:  # type: ignore[no-untyped-def]
    cli, issue = support.newsletter_cli(tmp_path, database_url, smtp_server.port)
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    assert "1 of 1 accepted" in cli.ok("send", str(issue), "--test").stdout


@pytest.mark.parametrize("target", ["folder", "csv"])
def test_init_on_a_url_naming_something_else_changes_nothing(tmp_path: Path, target: str) -> None:
    (tmp_path / "data").mkdir(mode=0o755)
    (tmp_path / "data").chmod(0o755)
    members = tmp_path / "members.csv"
    members.write_text("email\nana@lab.test\n")
    members.chmod(0o644)
    name = "data/sub" if target == "folder" else "members.csv"
    if target == "folder":
        (tmp_path / "data" / "sub").mkdir()
        (tmp_path / "data" / "sub").chmod(0o755)
    (tmp_path / "config.toml").write_text(f'[database]\nurl = "sqlite:///{name}"\n')
    result = Cli(tmp_path / "config.toml")("init")
    assert result.exit_code == 3, result.output
    assert "is a folder" in result.stderr or "is not a SQLite database" in result.stderr
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o755
    assert members.stat().st_mode & 0o777 == 0o644 and members.read_text().startswith("email")
    if target == "folder":
        assert (tmp_path / "data" / "sub").stat().st_mode & 0o777 == 0o755


def test_a_test_send_to_a_large_seed_list_asks_first(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env
) -> None:  # type: ignore[no-untyped-def]
    cli, issue = support.newsletter_cli(tmp_path, database_url, smtp_server.port)
    cli.ok("subscribers", "add", *[f"s{i}@corp.test" for i in range(12)], "--list", "seed")
    declined = cli("send", str(issue), "--test", input="n\n")
    assert declined.exit_code == 1 and "to 12 addresses on the seed list 'seed'" in declined.output
    assert smtp_server.handler.received == []
    assert "12 of 12 accepted" in cli.ok("send", str(issue), "--test", "--yes").stdout
