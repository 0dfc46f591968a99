import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import Cli, write_config


def out_json(result) -> object:  # type: ignore[no-untyped-def]
    return json.loads(result.stdout)


def test_add_list_show_remove(cli: Cli) -> None:
    cli.ok("subscribers", "add", "ana@corp.test", "--name", "Ana Lima", "--list", "seed")
    cli.ok("subscribers", "add", "bo@corp.test", "cy@corp.test")
    cli.ok("subscribers", "remove", "cy@corp.test", "--reason", "asked by phone")
    rows = out_json(cli.ok("subscribers", "list", "--json"))
    assert [(r["email"], r["status"], r["lists"]) for r in rows] == [
        ("ana@corp.test", "active", ["seed"]),
        ("bo@corp.test", "active", []),
        ("cy@corp.test", "unsubscribed", []),
    ]
    assert rows[0]["name"] == "Ana Lima"
    active = out_json(
        cli.ok("subscribers", "list", "--status", "active", "--list", "seed", "--json")
    )
    assert [r["email"] for r in active] == ["ana@corp.test"]
    shown = out_json(cli.ok("subscribers", "show", "cy@corp.test", "--json"))
    assert shown["unsubscribe_reason"] == "asked by phone"
    assert [e["to"] for e in shown["events"]] == ["active", "unsubscribed"]
    text = cli.ok("subscribers", "show", "cy@corp.test").stdout
    assert "asked by phone" in text and "history" in text


def test_errors_are_one_line_and_change_nothing(cli: Cli, tmp_path: Path) -> None:
    cases = [
        (["subscribers", "add", "ok@corp.test", "bad@"], "is not a valid email address"),
        (["subscribers", "add", "ok@corp.test", "--list", "nope"], "no list named 'nope'"),
        (["subscribers", "remove", "ghost@corp.test"], "no subscriber"),
        (["subscribers", "import", str(tmp_path / "absent.csv")], "cannot read"),
        (["subscribers", "list", "--list", "nope"], "no list named 'nope'"),
        (["subscribers", "add", "a@corp.test", "b@corp.test", "--name", "X"], "single address"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 1, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
        assert "Traceback" not in result.output
    assert out_json(cli.ok("subscribers", "list", "--json")) == []


def test_bad_status_is_a_usage_error(cli: Cli) -> None:
    result = cli("subscribers", "list", "--status", "happy")
    assert result.exit_code == 2 and "happy" in result.output


def test_import_dry_run_then_real(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text("Email Address;Name\nana@corp.test;Ana\nnope;X\nana@corp.test;\n", "utf-8")
    dry = out_json(cli.ok("subscribers", "import", str(path), "--dry-run", "--json"))
    assert dry["dry_run"] is True and dry["summary"]["added"] == 1
    assert dry["invalid"] == [{"row": 3, "value": "nope", "reason": dry["invalid"][0]["reason"]}]
    assert out_json(cli.ok("subscribers", "list", "--json")) == []
    result = cli.ok("subscribers", "import", str(path), "--list", "seed")
    assert "1 added" in result.stdout and "1 invalid" in result.stdout
    assert "row 3" in result.stderr and "'nope'" in result.stderr
    assert [r["email"] for r in out_json(cli.ok("subscribers", "list", "--json"))] == [
        "ana@corp.test"
    ]


def test_export_and_purge(cli: Cli, tmp_path: Path) -> None:
    cli.ok("subscribers", "add", "ana@corp.test", "bo@corp.test")
    target = tmp_path / "out" / "all.csv"
    target.parent.mkdir()
    assert "wrote 2 subscriber(s)" in cli.ok("subscribers", "export", str(target)).stdout
    assert target.read_text("utf-8").splitlines()[0].startswith("email,name,status")
    assert not list(target.parent.glob(".*partial"))
    assert target.stat().st_mode & 0o777 == 0o600
    assert cli("subscribers", "purge", "ana@corp.test", input="n\n").exit_code == 1
    cli.ok("subscribers", "purge", "ana@corp.test", "--yes")
    assert [r["email"] for r in out_json(cli.ok("subscribers", "list", "--json"))] == [
        "bo@corp.test"
    ]


def test_import_reports_bad_rows_and_goes_on(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    head = b"email,name,Organisation\nana@corp.test,Ana,Transit Lab\nbo@corp.test,Bo,\n"
    path.write_bytes(head + b"zoe@corp.test,Zo\xe9,\ncy@gmail.con,Cy,\nnope,X,\n")
    result = cli.ok("subscribers", "import", str(path))
    offset = len(head) + len(b"zoe@corp.test,Zo")
    assert result.stderr.splitlines() == [
        f"{path}: row 4 is not valid UTF-8 (byte 0xe9 at offset {offset}); "
        "save the file as UTF-8 or pass --encoding cp1252",
        "invalid row 6: 'nope': An email address must have an @-sign.",
        "row 5: gmail.con looks like a typo for gmail.com (cy@gmail.con → cy@gmail.com?); "
        "imported as written",
    ]
    assert result.stdout.strip() == (
        f"read 5 row(s), {path.stat().st_size} bytes from {path}: 3 added, 0 updated, "
        "0 unchanged, 0 skipped, 0 duplicates, 2 invalid"
    )
    data = out_json(cli.ok("subscribers", "import", str(path), "--encoding", "cp1252", "--json"))
    assert data["read"] == {"rows": 5, "bytes": path.stat().st_size}
    assert data["summary"]["added"] == 1 and data["summary"]["unchanged"] == 3
    assert [w["row"] for w in data["warnings"]] == [5, 0]
    zoe = out_json(cli.ok("subscribers", "show", "zoe@corp.test", "--json"))
    assert zoe["name"] == "Zoé" and zoe["attributes"] == {}


def test_attributes_show_and_round_trip(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("email;name;Organisation;Country\nana@corp.test;Ana;Transit Lab;PT\n", "utf-8")
    cli.ok("subscribers", "import", str(path), "--list", "seed")
    text = cli.ok("subscribers", "show", "ana@corp.test").stdout
    assert "      attributes: Organisation: Transit Lab\n                  Country: PT\n" in text
    rows = out_json(cli.ok("subscribers", "list", "--json"))
    assert rows[0]["attributes"] == {"Organisation": "Transit Lab", "Country": "PT"}
    cli.ok("subscribers", "add", "bo@corp.test")
    assert "      attributes: -\n" in cli.ok("subscribers", "show", "bo@corp.test").stdout
    before = out_json(cli.ok("subscribers", "list", "--json"))
    target = tmp_path / "all.csv"
    cli.ok("subscribers", "export", str(target))
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.read_text("utf-8").splitlines()[0].endswith(",Organisation,Country")
    again = out_json(cli.ok("subscribers", "import", str(target), "--json"))
    assert again["summary"]["unchanged"] == 2 and again["invalid"] == []
    assert out_json(cli.ok("subscribers", "list", "--json")) == before


def test_messages_say_what_happened(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "x.csv"
    result = cli("subscribers", "export", str(missing))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot write {missing}: No such file or directory"
    result = cli("lists", "delete", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: no list named 'nope' (lists: seed)"
    result = cli.ok("subscribers", "add", "ana@gmial.com")
    assert result.stderr.strip() == (
        "gmial.com looks like a typo for gmail.com (ana@gmial.com → ana@gmail.com?); "
        "added as written"
    )
    assert "1 added" in result.stdout


def test_test_domains_name_the_setting(tmp_path: Path, database_url: str) -> None:
    config = tmp_path / "strict.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', "utf-8")
    cli = Cli(config)
    cli.ok("init")
    result = cli("subscribers", "add", "ana@corp.test")
    assert result.exit_code == 1
    assert "[subscribers] allow_test_domains = true" in result.stderr
    path = tmp_path / "in.csv"
    path.write_text("email\nana@corp.test\nbo@example.org\n", "utf-8")
    result = cli.ok("subscribers", "import", str(path))
    assert "invalid row 2: 'ana@corp.test'" in result.stderr
    assert "[subscribers] allow_test_domains = true" in result.stderr
    assert "1 added" in result.stdout


def test_help_is_true_and_has_examples(cli: Cli) -> None:
    text = cli.ok("subscribers", "import", "--help").stdout
    flat = " ".join(text.split())
    assert "all of it or nothing" not in flat
    assert "skipped and reported" in flat and "the rest is imported" in flat
    assert "kept as attributes" in flat and "--encoding" in flat
    for group, commands in {
        "subscribers": ["add", "remove", "purge", "list", "show", "import", "export"],
        "lists": ["create", "list", "delete"],
    }.items():
        for command in commands:
            shown = cli.ok(group, command, "--help").stdout
            assert f"Example: digest-mailer {group} {command}" in " ".join(shown.split()), command
            assert "[/" not in shown and "[bold" not in shown


def test_lists_commands(cli: Cli) -> None:
    cli.ok("lists", "create", "board", "--description", "Board members")
    assert cli("lists", "create", "board").exit_code == 1
    cli.ok("subscribers", "add", "ana@corp.test", "--list", "board")
    rows = out_json(cli.ok("lists", "list", "--json"))
    assert {r["name"]: r["members"] for r in rows} == {"board": 1, "seed": 0}
    cli.ok("lists", "delete", "board")
    assert out_json(cli.ok("subscribers", "list", "--json"))[0]["lists"] == []


def test_uninitialised_and_bad_config(tmp_path: Path, database_url: str) -> None:
    cli = Cli(write_config(tmp_path / "c.toml", database_url))
    (tmp_path / "store").mkdir(exist_ok=True)  # SQLite: the folder, but no database yet
    result = cli("subscribers", "list")
    assert result.exit_code == 3 and "run `digest-mailer init`" in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp]\nport = 'x'\n")
    result = Cli(bad)("subscribers", "list")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {bad}: [smtp] port must be an integer, got 'x'"
    result = Cli(tmp_path / "missing.toml")("init")
    assert result.exit_code == 2 and "not found" in result.stderr


def test_console_script_runs_as_a_subprocess(config_file: Path, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "digest-mailer"
    env = {**os.environ, "DIGEST_MAILER_CONFIG": str(config_file)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], env=env, capture_output=True, text=True, timeout=60
        )

    assert run("init").returncode == 0
    assert run("subscribers", "add", "ana@corp.test").returncode == 0
    listed = run("subscribers", "list", "--json")
    assert json.loads(listed.stdout)[0]["email"] == "ana@corp.test"
    bad = run("subscribers", "add", "not an address")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    module = subprocess.run(
        [sys.executable, "-m", "digest_mailer", "--version"], capture_output=True, text=True
    )
    assert module.returncode == 0 and module.stdout.startswith("digest-mailer ")
